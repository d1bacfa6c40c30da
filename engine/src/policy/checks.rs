//! What a policy's whole-view answer must satisfy beyond the WIT contract, against the state
//! it was asked about. Each of these used to be ignored, and ignoring it changed what is
//! enforced without a word (a drop rule naming a missing network left out, the last of two
//! decisions winning, SNAT to an address the network cannot use removing its NAT). Now each
//! is a refusal naming the network and the field; the caller names the policy and applies
//! nothing. Pure: unit-tested without a module.

use std::collections::HashSet;
use std::net::IpAddr;

use wasmnet_policy::ir::{NetworkDecision, Peer};

use crate::model::Network;

/// Checks one policy's decisions: `governed` are the networks it was asked about, `all` every
/// network a rule may name; `iptables`: the backend cannot enforce `fqdn` peers. The error
/// reads as the reason of a bad decision.
pub fn decisions(
    got: &[NetworkDecision],
    governed: &[&Network],
    all: &[&Network],
    iptables: bool,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    for d in got {
        let Some(n) = governed.iter().find(|n| n.id == d.network_id) else {
            let what = match all.iter().any(|n| n.id == d.network_id) {
                true => "a network it does not govern",
                false => "no network",
            };
            return Err(format!(
                "network-id {:?} names {what} (decisions are for the networks `evaluate` was given, by id)",
                d.network_id
            ));
        };
        if !seen.insert(n.id.as_str()) {
            return Err(format!("two decisions for network {:?}", n.name));
        }
        decision(d, n, all, iptables).map_err(|e| format!("network {:?}: {e}", n.name))?;
    }
    Ok(())
}

fn decision(
    d: &NetworkDecision,
    n: &Network,
    all: &[&Network],
    iptables: bool,
) -> Result<(), String> {
    for (i, r) in d.rules.iter().enumerate() {
        if let (Peer::Fqdn(p), true) = (&r.to, iptables) {
            return Err(format!(
                "rule {i}: `to` is fqdn {p:?}, which needs the nftables backend (this daemon enforces with iptables, which has no address sets)"
            ));
        }
        for (field, peer) in [("from", &r.from), ("to", &r.to)] {
            let Peer::Network(x) = peer else { continue };
            if !all.iter().any(|n| &n.id == x || &n.name == x) {
                return Err(format!(
                    "rule {i}: `{field}` names network {x:?}, which does not exist"
                ));
            }
        }
    }
    if let Some(to) = d.snat {
        snat(to, n)?;
    }
    Ok(())
}

/// SNAT replaces masquerading for the subnet of the address's family (the other family keeps
/// its masquerade); an address of a family the network has no subnet of would apply nowhere.
fn snat(to: IpAddr, n: &Network) -> Result<(), String> {
    if to.is_ipv6() && n.ipv6.is_none() {
        return Err(format!(
            "snat {to} is an IPv6 address and the network has no IPv6 subnet"
        ));
    }
    if n.internal {
        return Err(format!(
            "snat {to} for an internal network (it has no way out)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::net;
    use wasmnet_policy::ir::{Rule, Verdict};

    fn rule(to: Peer, verdict: Verdict) -> Rule {
        Rule {
            from: Peer::Any,
            to,
            protocol: None,
            ports: vec![],
            verdict,
            log: false,
        }
    }

    fn for_net(n: &Network) -> NetworkDecision {
        NetworkDecision {
            network_id: n.id.clone(),
            ..Default::default()
        }
    }

    fn dual_stack(id: char) -> Network {
        let mut n = net(id, "10.1.0.0/24", false, true);
        let subnet: ipnet::IpNet = "fd00::/64".parse().unwrap();
        n.ipv6 = Some(crate::model::IpConfig {
            gateway: subnet.hosts().next().unwrap(),
            subnet,
            ip_range: None,
        });
        n
    }

    #[test]
    fn a_good_answer_passes() {
        let (a, b) = (dual_stack('a'), net('b', "10.2.0.0/24", false, false));
        let mut d = for_net(&a);
        d.rules = vec![
            rule(Peer::Network(b.name.clone()), Verdict::Drop),
            rule(Peer::Network(b.id.clone()), Verdict::Accept),
        ];
        d.snat = Some("fd00::9".parse().unwrap());
        assert_eq!(
            decisions(&[d, for_net(&b)], &[&a, &b], &[&a, &b], false),
            Ok(())
        );
    }

    #[test]
    fn fail_open_answers_are_refused() {
        let (a, b) = (
            net('a', "10.1.0.0/24", false, true),
            net('b', "10.2.0.0/24", false, false),
        );
        let refused = |d: Vec<NetworkDecision>, governed: &[&Network]| {
            decisions(&d, governed, &[&a, &b], false).unwrap_err()
        };
        let mut missing = for_net(&a);
        missing.rules = vec![
            rule(Peer::Any, Verdict::Accept),
            rule(Peer::Network("nope".into()), Verdict::Drop),
        ];
        let e = refused(vec![missing], &[&a]);
        assert!(e.contains("rule 1: `to` names network \"nope\""), "{e}");
        let e = refused(vec![for_net(&a), for_net(&a)], &[&a]);
        assert!(e.contains("two decisions for network"), "{e}");
        let e = refused(vec![for_net(&b)], &[&a]);
        assert!(e.contains("a network it does not govern"), "{e}");
        let mut ghost = for_net(&a);
        ghost.network_id = "f".repeat(64);
        assert!(refused(vec![ghost], &[&a]).contains("names no network"));
        let mut by_name = for_net(&a);
        by_name.network_id = a.name.clone();
        assert!(refused(vec![by_name], &[&a]).contains("by id"));
        let mut v6 = for_net(&b);
        v6.snat = Some("fd00::9".parse().unwrap());
        let e = refused(vec![v6], &[&b]);
        assert!(
            e.contains("snat fd00::9") && e.contains("no IPv6 subnet"),
            "{e}"
        );
    }

    #[test]
    fn fqdn_peers_are_refused_where_iptables_enforces() {
        let a = net('a', "10.1.0.0/24", false, true);
        let mut d = for_net(&a);
        d.rules = vec![rule(Peer::Fqdn("*.example.com".into()), Verdict::Drop)];
        let nft = decisions(std::slice::from_ref(&d), &[&a], &[&a], false);
        assert_eq!(nft, Ok(()));
        let e = decisions(&[d], &[&a], &[&a], true).unwrap_err();
        assert!(e.contains("rule 0: `to` is fqdn \"*.example.com\""), "{e}");
        assert!(e.contains("needs the nftables backend"), "{e}");
    }
}
