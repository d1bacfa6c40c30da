//! Egress by name (`fqdn` peers): which name patterns' sets an answer of the DNS server feeds,
//! and for how long. Pure; the DNS server (crate wasmnet-dns) calls it with each forwarded
//! answer and hands the elements to `Engine::learn_fqdn`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// A name pattern in force, with its sets' names (computed once per state, not per answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub pattern: String,
    /// The IPv4 and the IPv6 set.
    pub sets: [String; 2],
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        Pattern {
            pattern: pattern.to_string(),
            sets: [fqdn_set(pattern, false), fqdn_set(pattern, true)],
        }
    }
}

/// One address an answer gives a pattern: `pattern` indexes the patterns it was matched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned {
    pub pattern: usize,
    pub addr: IpAddr,
    pub ttl: Duration,
}

/// What an answer to `qname` gives: each address (with its record's TTL, bounded) for every
/// pattern `qname` matches. Addresses of CNAME targets count as the question's (that is whom
/// the client will connect to).
pub fn learned(
    patterns: &[Pattern],
    qname: &str,
    answers: &[(IpAddr, u32)],
    bounds: TtlBounds,
) -> Vec<Learned> {
    let matching = patterns.iter().enumerate();
    let matching = matching.filter(|(_, p)| fqdn_matches(&p.pattern, qname));
    matching
        .flat_map(|(pattern, _)| {
            answers.iter().map(move |&(addr, ttl)| Learned {
                pattern,
                addr,
                ttl: bounds.clamp(ttl),
            })
        })
        .collect()
}

/// What was put in the sets lately, so that a name answered again and again does not cost a
/// netlink transaction per answer: an element is written for its TTL and an eighth more, and
/// written again only once what the kernel holds would no longer cover a new answer's TTL —
/// at most once per eighth of the TTL. One per list of patterns (it keys on their indexes);
/// forgotten whole when the firewall's tables were replaced (`epoch`: the sets are empty
/// again) and when it grows past `MAX_RECENT`.
#[derive(Debug, Default)]
pub struct Recent {
    epoch: u64,
    until: HashMap<(usize, IpAddr), Instant>,
}

/// The most elements [`Recent`] remembers before it starts afresh.
pub const MAX_RECENT: usize = 65_536;

impl Recent {
    /// The set elements to write now for `learned` (on `patterns`), their timeouts raised by
    /// an eighth; `epoch`: the firewall's count of whole-table replacements.
    pub fn due(
        &mut self,
        epoch: u64,
        patterns: &[Pattern],
        learned: &[Learned],
        now: Instant,
    ) -> Vec<Element> {
        if epoch != self.epoch || self.until.len() >= MAX_RECENT {
            self.until.clear();
            self.epoch = epoch;
        }
        let mut out = Vec::new();
        for l in learned {
            let key = (l.pattern, l.addr);
            if self.until.get(&key).is_some_and(|&t| t >= now + l.ttl) {
                continue;
            }
            let written = l.ttl + l.ttl / 8;
            self.until.insert(key, now + written);
            out.push(Element {
                add: true,
                set: patterns[l.pattern].sets[usize::from(l.addr.is_ipv6())].clone(),
                addr: l.addr,
                timeout: Some(written),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::new(p)).collect()
    }

    #[test]
    fn matching_patterns_get_each_address_for_its_bounded_ttl() {
        let patterns = patterns(&["*.example.com", "api.test"]);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let bounds = TtlBounds {
            min: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let got = learned(&patterns, "WWW.example.com.", &[(v4, 1), (v6, 600)], bounds);
        let secs = Duration::from_secs;
        assert_eq!(
            got,
            [
                Learned {
                    pattern: 0,
                    addr: v4,
                    ttl: secs(2)
                },
                Learned {
                    pattern: 0,
                    addr: v6,
                    ttl: secs(60)
                },
            ],
            "raised to min, cut to max"
        );
        assert!(learned(&patterns, "example.com", &[(v4, 30)], bounds).is_empty());
        let api = learned(&patterns, "api.test", &[(v4, 30)], bounds);
        assert_eq!((api[0].pattern, api[0].ttl), (1, secs(30)));
        let due = Recent::default().due(0, &patterns, &got, Instant::now());
        assert_eq!(due[0].set, fqdn_set("*.example.com", false));
        assert_eq!(due[1].set, fqdn_set("*.example.com", true));
        assert!(due.iter().all(|e| e.add));
        assert_ne!(fqdn_set("api.test", false), fqdn_set("*.api.test", false));
    }

    #[test]
    fn an_address_answered_again_is_written_again_only_when_due() {
        let patterns = patterns(&["api.test"]);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let answer = |ttl| learned(&patterns, "api.test", &[(v4, ttl)], TtlBounds::default());
        let (mut r, t0) = (Recent::default(), Instant::now());
        let first = r.due(0, &patterns, &answer(80), t0);
        assert_eq!(
            first[0].timeout,
            Some(Duration::from_secs(90)),
            "80 s and an eighth"
        );
        let secs = |s| Duration::from_secs(s);
        let mut due = |epoch, ttl, at| r.due(epoch, &patterns, &answer(ttl), t0 + secs(at)).len();
        assert_eq!(due(0, 80, 5), 0, "still covered");
        assert_eq!(due(0, 80, 10), 0, "just covered");
        assert_eq!(due(0, 80, 11), 1, "due");
        assert_eq!(due(0, 3600, 12), 1, "a longer TTL");
        assert_eq!(due(1, 80, 13), 1, "tables replaced");
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
