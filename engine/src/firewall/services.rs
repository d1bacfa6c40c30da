//! Services lowered to the neutral rules, the way kube-proxy's nftables mode does it: one
//! verdict map from (bridge, virtual address, protocol, port) to the service's chain, looked
//! up once in prerouting; each service's chain DNATs a port to one of its backends, picked
//! by `numgen random` (or a hash of the client, for affinity) from an anonymous map. A
//! backend joining or leaving is map elements and that one chain, never the whole table.
//!
//! Around it: the virtual addresses live on the network's bridge (so sandboxes resolve them
//! with ARP/NDP), and what reaches one without being DNATed (a port the service does not
//! have, a service without backends, another network) is rejected in the input hook, not
//! answered by whatever listens on the host. Service traffic is governed as traffic to the
//! chosen backend: forward sends it through the client network's chain (isolation, icc,
//! policies) instead of accepting it as a published port. A backend reaching its own
//! service is masqueraded (hairpin); every other client keeps its address. Networks with
//! services stay tracked (replies must be un-NATed), see `docker::add_untracked`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::rules::{ChainId, Ct, Element, Fam, Match, Rule, SetId, Table, Verdict};
use crate::model::{Endpoint, Service, ServicePort};

/// One service as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lb {
    pub id: String,
    pub network_id: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub affinity: bool,
    /// The backends' addresses (both families), in the backends' id order.
    pub backends: Vec<IpAddr>,
}

impl Lb {
    /// Service `s` with the endpoints given (those it selects are its backends).
    pub fn of<'a>(s: &Service, candidates: impl Iterator<Item = &'a Endpoint>) -> Lb {
        let mut picked: Vec<&Endpoint> = candidates.filter(|e| s.selects(e)).collect();
        picked.sort_by(|a, b| a.id.cmp(&b.id));
        Lb {
            id: s.id.clone(),
            network_id: s.network_id.clone(),
            vips: s.vips().collect(),
            ports: s.ports.clone(),
            affinity: s.affinity == crate::model::Affinity::ClientIp,
            backends: (picked.iter())
                .flat_map(|e| [e.ipv4, e.ipv6])
                .flatten()
                .collect(),
        }
    }

    fn backends_of(&self, fam: Fam) -> Vec<IpAddr> {
        (self.backends.iter().copied())
            .filter(|a| Fam::of(*a) == fam)
            .collect()
    }
}

/// The sets, the map and each service's chain, in the inet table.
pub fn add_to(t: &mut Table, lbs: &[Arc<Lb>]) {
    for fam in [Fam::V4, Fam::V6] {
        let vips = lbs.iter().flat_map(|l| &l.vips).copied();
        let vips = vips.filter(|a| Fam::of(*a) == fam).map(Element::Addr);
        t.set(SetId::Vips(fam), vips.collect());
        // A backend of two services is one element.
        let backends: BTreeSet<IpAddr> = lbs.iter().flat_map(|l| l.backends_of(fam)).collect();
        let pairs = backends.into_iter().map(Element::Pair).collect();
        t.set(SetId::Hairpin(fam), pairs);
        let mut entries = Vec::new();
        for l in lbs {
            let bridge = crate::names::bridge_name(&l.network_id);
            for vip in l.vips.iter().filter(|a| Fam::of(**a) == fam) {
                entries.extend(l.ports.iter().map(|p| Element::Service {
                    bridge: bridge.clone(),
                    vip: *vip,
                    proto: p.protocol,
                    port: p.port,
                    chain: ChainId::Service(l.id.clone()),
                }));
            }
        }
        t.set(SetId::Services(fam), entries);
    }
    for l in lbs {
        t.chain(ChainId::Service(l.id.clone()), chain_rules(l));
    }
    t.chain(ChainId::Input, input_rules());
}

/// Per port and family with backends, one DNAT to one of them. A family without backends
/// has no rule: its packets reach the input hook, which rejects them.
fn chain_rules(l: &Lb) -> Vec<Rule> {
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let to = l.backends_of(fam);
        if to.is_empty() || !l.vips.iter().any(|a| Fam::of(*a) == fam) {
            continue;
        }
        for p in &l.ports {
            let m = Match::Proto {
                proto: proto(p.protocol),
                ports: vec![(p.port, p.port)],
            };
            let v = Verdict::DnatPick {
                to: to.clone(),
                port: p.target_port,
                affinity: l.affinity,
            };
            out.push(Rule::counted(vec![m], v).pinned(Some(fam)));
        }
    }
    out
}

fn proto(p: crate::model::Protocol) -> wasmnet_policy::ir::Protocol {
    use wasmnet_policy::ir::Protocol as P;
    match p {
        crate::model::Protocol::Tcp => P::Tcp,
        crate::model::Protocol::Udp => P::Udp,
        crate::model::Protocol::Sctp => P::Sctp,
    }
}

/// What reaches a virtual address undelivered is refused at once: a TCP reset, else an
/// ICMP port unreachable.
fn input_rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let to_vip = || Match::Daddr(super::rules::Addrs::Set(SetId::Vips(fam)));
        let tcp = Match::Proto {
            proto: wasmnet_policy::ir::Protocol::Tcp,
            ports: vec![],
        };
        out.push(
            Rule::counted(vec![to_vip(), tcp], Verdict::Reject { tcp_reset: true })
                .pinned(Some(fam)),
        );
        out.push(
            Rule::counted(vec![to_vip()], Verdict::Reject { tcp_reset: false }).pinned(Some(fam)),
        );
    }
    out
}

/// Prerouting, before the published ports: a service's address and port go to its chain.
pub fn prerouting_rules() -> Vec<Rule> {
    [Fam::V4, Fam::V6]
        .into_iter()
        .map(|fam| {
            Rule::uncounted(vec![], Verdict::DispatchService(SetId::Services(fam)))
                .pinned(Some(fam))
        })
        .collect()
}

/// Forward, before published ports' accept: a DNATed service connection goes through its
/// client network's chain, as traffic to the backend.
pub fn forward_rules() -> Vec<Rule> {
    [Fam::V4, Fam::V6]
        .into_iter()
        .map(|fam| {
            let m = vec![Match::Ct(Ct::Dnat), Match::CtOrigDaddr(SetId::Vips(fam))];
            Rule::uncounted(m, Verdict::DispatchIif(SetId::FromBridge)).pinned(Some(fam))
        })
        .collect()
}

/// Postrouting, first: a backend reaching its own service is masqueraded (its answer must
/// come back through the host); every other service connection keeps its client's address
/// (the published ports' hairpin masquerade, which follows, is not for it).
pub fn postrouting_rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for fam in [Fam::V4, Fam::V6] {
        let hairpin = vec![Match::Ct(Ct::Dnat), Match::SaddrDaddr(SetId::Hairpin(fam))];
        out.push(Rule::counted(hairpin, Verdict::Masquerade).pinned(Some(fam)));
    }
    for fam in [Fam::V4, Fam::V6] {
        let service = vec![Match::Ct(Ct::Dnat), Match::CtOrigDaddr(SetId::Vips(fam))];
        out.push(Rule::uncounted(service, Verdict::Return).pinned(Some(fam)));
    }
    out
}

/// What changed from `before` to `after` when only backends did (the same services, with
/// the same addresses, ports and affinity): each changed service's chain anew and the
/// hairpin elements, as netlink can send it. `None` for anything else (a service added or
/// removed, a port changed): the caller applies the ruleset difference instead.
pub fn backend_change(
    before: &[Arc<Lb>],
    after: &[Arc<Lb>],
) -> Option<crate::kernel::nfservice::ServiceChange> {
    use crate::kernel::nfservice::{PickRule, ServiceChange};
    let same = |b: &Lb, a: &Lb| {
        (&b.id, &b.vips, &b.ports, b.affinity) == (&a.id, &a.vips, &a.ports, a.affinity)
    };
    if before.len() != after.len() || before.iter().zip(after).any(|(b, a)| !same(b, a)) {
        return None;
    }
    let mut change = ServiceChange::default();
    for (b, a) in before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.backends != a.backends)
    {
        let rules = (chain_rules(a).iter())
            .filter_map(|r| match (&r.verdict, r.matches.as_slice()) {
                (
                    Some(Verdict::DnatPick { to, port, affinity }),
                    [Match::Proto { proto, ports }],
                ) => Some(PickRule {
                    v6: r.fam == Some(Fam::V6),
                    proto: ip_proto(*proto),
                    dport: ports.first()?.0,
                    to: to.clone(),
                    port: *port,
                    affinity: *affinity,
                }),
                _ => None,
            })
            .collect();
        change
            .chains
            .push((crate::names::service_chain(&b.id), rules));
    }
    let union = |lbs: &[Arc<Lb>]| -> BTreeSet<IpAddr> {
        lbs.iter()
            .flat_map(|l| l.backends.iter().copied())
            .collect()
    };
    let (was, is) = (union(before), union(after));
    let set = |a: &IpAddr| super::render_nft::set_name(&SetId::Hairpin(Fam::of(*a)));
    change
        .hairpin
        .extend(is.difference(&was).map(|a| (true, set(a), *a)));
    change
        .hairpin
        .extend(was.difference(&is).map(|a| (false, set(a), *a)));
    Some(change)
}

/// The IP protocol number.
fn ip_proto(p: wasmnet_policy::ir::Protocol) -> u8 {
    use wasmnet_policy::ir::Protocol as P;
    match p {
        P::Tcp => 6,
        P::Udp => 17,
        P::Sctp => 132,
        P::Icmp => 1,
    }
}

/// The networks that have a service.
pub fn networks_with_services(lbs: &[Arc<Lb>]) -> BTreeSet<&str> {
    lbs.iter().map(|l| l.network_id.as_str()).collect()
}

/// The part of the inet table that services make alone (their sets, map and chains): two of
/// these differ by what a backend joining or leaving changes, and nothing else.
pub fn part(lbs: &[Arc<Lb>]) -> super::rules::Rules {
    let mut t = Table::new(super::rules::Family::Inet);
    add_to(&mut t, lbs);
    t.chains.retain(|c| matches!(c.id, ChainId::Service(_)));
    let mut bridge = Table::new(super::rules::Family::Bridge);
    add_to_bridge(&mut bridge, lbs);
    bridge.chains.clear();
    super::rules::Rules {
        tables: vec![t, bridge],
    }
}

/// In the bridge family's table, while there are services: the virtual IPv4 addresses, and
/// a rule in its forward hook dropping the copies of an ARP request for one that the bridge
/// floods to its ports. The bridge answers it itself (the address is its own); flooded to a
/// thousand ports, the copies fill the receiving CPU's backlog and the answer, queued
/// behind them, is dropped: a sandbox could not resolve the address on a large network.
/// (An IPv6 neighbour solicitation is not matched: this nft cannot look up its target.)
pub fn add_to_bridge(t: &mut Table, lbs: &[Arc<Lb>]) {
    if lbs.is_empty() {
        return;
    }
    let vips = lbs.iter().flat_map(|l| &l.vips).copied();
    let vips = vips.filter(|a| a.is_ipv4()).map(Element::Addr);
    t.set(SetId::Vips(Fam::V4), vips.collect());
    let rule = Rule::counted(
        vec![Match::ArpRequestFor(SetId::Vips(Fam::V4))],
        Verdict::Drop,
    );
    match t.chains.iter_mut().find(|c| c.id == ChainId::BridgeForward) {
        Some(c) => c.rules.push(rule),
        None => t.chain(ChainId::BridgeForward, vec![rule]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{desired, endpoint, net};
    use crate::firewall::{diff, render_nft};
    use crate::model::Protocol;

    fn lb(backends: &[&str]) -> Arc<Lb> {
        Arc::new(Lb {
            id: "5".repeat(64),
            network_id: "a".repeat(64),
            vips: vec!["10.1.0.100".parse().unwrap()],
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                port: 80,
                target_port: 8080,
            }],
            affinity: false,
            backends: backends.iter().map(|b| b.parse().unwrap()).collect(),
        })
    }

    /// A service is a map element to its chain, which DNATs to one of its backends; its
    /// address is rejected on input; its network stays tracked; a backend's own connection
    /// to it is masqueraded.
    #[test]
    fn a_service_lowers_to_a_map_element_and_its_chain() {
        let a = net('a', "10.1.0.0/24", false, true);
        let mut d = desired(vec![a], vec![], Default::default());
        d.services = vec![lb(&["10.1.0.2", "10.1.0.3"])];
        let nft = crate::firewall::nft::compile(&d).render();
        let has = |line: &str| assert!(nft.contains(line), "{line:?} missing in:\n{nft}");
        has("\"wnbraaaaaaaaaaa\" . 10.1.0.100 . tcp . 80 : goto svc_555555555555");
        has("tcp dport 80 counter dnat ip addr . port to numgen random mod 2 map { 0 : 10.1.0.2 . 8080, 1 : 10.1.0.3 . 8080 }");
        has("iifname . ip daddr . meta l4proto . th dport vmap @services4");
        has("ct status dnat ct original ip daddr @svc_vips4 iifname vmap @from_bridge");
        has("ct status dnat ip saddr . ip daddr @svc_hairpin4 counter masquerade");
        has("ip daddr @svc_vips4 meta l4proto tcp counter reject with tcp reset");
        has("elements = { 10.1.0.2 . 10.1.0.2, 10.1.0.3 . 10.1.0.3 }");
        // The bridge drops the copies of an ARP request for the address it floods.
        let bridge = &nft[nft.find("table bridge").unwrap()..];
        assert!(
            bridge.contains("arp operation request arp daddr ip @svc_vips4 counter drop"),
            "{bridge}"
        );
        assert!(
            !nft.contains("\"wnbraaaaaaaaaaa\" . 10.1.0.2-"),
            "tracked:\n{nft}"
        );
        // Services come before the published ports, in prerouting and forward.
        let at = |s: &str| nft.find(s).unwrap();
        assert!(at("vmap @services4") < at("jump publish"));
        assert!(at("ct original ip daddr @svc_vips4 iifname") < at("ct status dnat oifname"));
        assert!(at("@svc_hairpin4 counter masquerade") < at("ip saddr @subnets4 oifname"));
    }

    /// A backend joining changes the service's chain and the hairpin set, nothing else; a
    /// service without backends has an empty chain.
    #[test]
    fn a_backend_joining_is_one_chain_and_one_element() {
        let part = |l: &[Arc<Lb>]| render_nft::ruleset(&part(l));
        let script = diff::script(
            &part(&[lb(&["10.1.0.2"])]),
            &part(&[lb(&["10.1.0.2", "10.1.0.3"])]),
        )
        .unwrap();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "flush chain inet wasmnet svc_555555555555",
                "add rule inet wasmnet svc_555555555555 tcp dport 80 counter dnat ip addr . port to numgen random mod 2 map { 0 : 10.1.0.2 . 8080, 1 : 10.1.0.3 . 8080 }",
                "add element inet wasmnet svc_hairpin4 { 10.1.0.3 . 10.1.0.3 }",
            ],
            "{script}"
        );
        let empty = part(&[lb(&[])]).render();
        assert!(empty.contains("chain svc_555555555555 {\n\t}"), "{empty}");
    }

    /// Backends alone changed: the chain anew and the hairpin element, for netlink; a port
    /// or a service more is not that (the ruleset difference does it).
    #[test]
    fn a_backend_change_is_sent_as_chains_and_elements() {
        let change = backend_change(&[lb(&["10.1.0.2"])], &[lb(&["10.1.0.2", "10.1.0.3"])])
            .expect("backends alone");
        assert_eq!(change.chains.len(), 1);
        let (chain, rules) = &change.chains[0];
        assert_eq!(chain, "svc_555555555555");
        assert_eq!(
            (rules[0].proto, rules[0].dport, rules[0].port),
            (6, 80, 8080)
        );
        assert_eq!(rules[0].to.len(), 2);
        let three: std::net::IpAddr = "10.1.0.3".parse().unwrap();
        assert_eq!(change.hairpin, [(true, "svc_hairpin4".to_string(), three)]);
        let mut other_port = (*lb(&["10.1.0.2"])).clone();
        other_port.ports[0].port = 81;
        assert!(backend_change(&[lb(&["10.1.0.2"])], &[Arc::new(other_port)]).is_none());
        assert!(backend_change(&[], &[lb(&[])]).is_none());
        let none = backend_change(&[lb(&["10.1.0.2"])], &[lb(&[])]).unwrap();
        assert_eq!(none.chains[0].1, [], "no backends: an empty chain");
    }

    #[test]
    fn affinity_hashes_the_client() {
        let mut l = (*lb(&["10.1.0.2", "fd00::2"])).clone();
        l.affinity = true;
        l.vips.push("fd00::100".parse().unwrap());
        let text = render_nft::ruleset(&part(&[Arc::new(l)])).render();
        assert!(text.contains("dnat ip addr . port to jhash ip saddr mod 1 seed 0x5eed map { 0 : 10.1.0.2 . 8080 }"), "{text}");
        assert!(text.contains("dnat ip6 addr . port to jhash ip6 saddr mod 1 seed 0x5eed map { 0 : fd00::2 . 8080 }"), "{text}");
    }

    #[test]
    fn backends_are_the_selected_endpoints_in_id_order() {
        let a = net('a', "10.1.0.0/24", false, true);
        let mut web1 = endpoint(&a, "10.1.0.3", vec![]);
        web1.id = "2".repeat(64);
        web1.labels.insert("app".into(), "web".into());
        let mut web2 = endpoint(&a, "10.1.0.2", vec![]);
        web2.id = "9".repeat(64);
        web2.labels.insert("app".into(), "web".into());
        let db = endpoint(&a, "10.1.0.4", vec![]);
        let s = Service {
            id: "5".repeat(64),
            name: "web".into(),
            network_id: a.id.clone(),
            network_name: a.name.clone(),
            ipv4: Some("10.1.0.100".parse().unwrap()),
            ipv6: None,
            ports: vec![],
            selector: [("app".to_string(), "web".to_string())].into(),
            endpoints: vec![],
            affinity: Default::default(),
            labels: Default::default(),
            created: String::new(),
        };
        let l = Lb::of(&s, [&web2, &db, &web1].into_iter());
        let v4: Vec<String> = l
            .backends_of(Fam::V4)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v4, ["10.1.0.3", "10.1.0.2"]);
    }
}
