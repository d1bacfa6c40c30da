//! Egress by name (`fqdn` peers): which name patterns' sets an answer of the DNS server feeds,
//! and for how long. Pure; the DNS server (crate wasmnet-dns) calls it with each forwarded
//! answer and hands the elements to [`crate::engine::Engine::learn_fqdn`].

use std::net::IpAddr;
use std::time::Duration;

use wasmnet_policy::ir::fqdn_matches;

use crate::kernel::nfset::Element;
use crate::names::fqdn_set;

/// How long a learned address may stay, whatever the answer's TTL says: at least `min` (a
/// client that caches a little longer than the TTL, or connects a moment after, still gets
/// through), at most `max` (an address the name no longer has does not stay for days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlBounds {
    pub min: Duration,
    pub max: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            min: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        }
    }
}

impl TtlBounds {
    pub fn clamp(&self, ttl_secs: u32) -> Duration {
        Duration::from_secs(ttl_secs.into()).clamp(self.min, self.max.max(self.min))
    }
}

/// The set elements for an answer to `qname`: each address (with its record's TTL) in the
/// sets of every pattern `qname` matches. Addresses of CNAME targets count as the question's
/// (that is whom the client will connect to).
pub fn elements(
    patterns: &[String],
    qname: &str,
    answers: &[(IpAddr, u32)],
    bounds: TtlBounds,
) -> Vec<Element> {
    let mut out = Vec::new();
    for p in patterns.iter().filter(|p| fqdn_matches(p, qname)) {
        for &(addr, ttl) in answers {
            out.push(Element {
                add: true,
                set: fqdn_set(p, addr.is_ipv6()),
                addr,
                timeout: Some(bounds.clamp(ttl)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_patterns_get_each_address_for_its_bounded_ttl() {
        let patterns = vec!["*.example.com".to_string(), "api.test".to_string()];
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let bounds = TtlBounds {
            min: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let got = elements(&patterns, "WWW.example.com.", &[(v4, 1), (v6, 600)], bounds);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].set, fqdn_set("*.example.com", false));
        assert_eq!(
            got[0].timeout,
            Some(Duration::from_secs(2)),
            "raised to min"
        );
        assert_eq!(got[1].set, fqdn_set("*.example.com", true));
        assert_eq!(got[1].timeout, Some(Duration::from_secs(60)), "cut to max");
        assert!(got.iter().all(|e| e.add));
        assert!(elements(&patterns, "example.com", &[(v4, 30)], bounds).is_empty());
        let api = elements(&patterns, "api.test", &[(v4, 30)], bounds);
        assert_eq!(api[0].timeout, Some(Duration::from_secs(30)));
        assert_ne!(fqdn_set("api.test", false), fqdn_set("*.api.test", false));
    }

    /// An fqdn peer lowers to a lookup in its pattern's sets, which are declared empty with
    /// timeouts and left out of the fingerprint (what the DNS server adds is not tampering).
    #[test]
    fn an_fqdn_rule_looks_up_its_patterns_sets() {
        use crate::firewall::fixtures::{rule, sample};
        use crate::firewall::{docker, policy::Plan};
        use wasmnet_policy::ir::{Peer, Verdict};
        let (nets, eps, mut plan) = sample();
        let applied = std::sync::Arc::make_mut(&mut plan.networks);
        let b = applied.get_mut(&nets[1].id).unwrap();
        let to = Peer::Fqdn("*.example.com".into());
        b[0].decision
            .rules
            .insert(0, rule(Peer::Any, to, None, vec![], Verdict::Accept));
        assert_eq!(
            Plan::fqdns(&plan).into_iter().collect::<Vec<_>>(),
            ["*.example.com"]
        );
        let eps: Vec<_> = eps.iter().collect();
        let nets: Vec<_> = nets.iter().collect();
        let rs = docker::compile(&nets, &eps, &eps, &plan);
        let text = rs.render();
        let (v4, v6) = (
            fqdn_set("*.example.com", false),
            fqdn_set("*.example.com", true),
        );
        assert!(
            text.contains(&format!("ip daddr @{v4} counter accept")),
            "{text}"
        );
        assert!(
            text.contains(&format!("ip6 daddr @{v6} counter accept")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "set {v4} {{\n\t\ttype ipv4_addr; flags timeout; size 65536;"
            )),
            "{text}"
        );
        assert_eq!(crate::names::FQDN_SET_SIZE, 65_536, "the spec's size");
        let fp = rs.fingerprint();
        assert!(!fp.keys().any(|k| k.ends_with(&v4)), "{fp:?}");
        assert!(fp.keys().any(|k| k.ends_with("/masq4")));
    }
}
