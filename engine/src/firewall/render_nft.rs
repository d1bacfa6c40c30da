//! The neutral rules as nftables: sets and maps as they are (a lookup is one hash lookup), one
//! line of nft syntax per rule — except that a rate-limited log becomes a rule of its own,
//! since `limit` is a match and would otherwise limit the verdict too.

use wasmnet_policy::ir::{port_ranges, Protocol};

use super::rules::{
    Addrs, ChainId, Ct, Element, ElementChange, Fam, Ifaces, Match, Rule, Rules, SetId, Table,
    Verdict,
};
use super::ruleset::{self, Change, Line};
use crate::names;

/// The whole nft ruleset.
pub fn ruleset(rules: &Rules) -> ruleset::Ruleset {
    ruleset::Ruleset {
        tables: rules.tables.iter().map(table).collect(),
    }
}

fn table(t: &Table) -> ruleset::Table {
    let mut out = ruleset::Table::new(t.family, names::TABLE);
    for s in &t.sets {
        let elements = s.elements.iter().map(element).collect();
        out.set(&set_name(&s.id), set_spec(&s.id), elements);
    }
    for c in &t.chains {
        let lines = c.rules.iter().flat_map(lines).collect();
        out.chain(&chain_name(&c.id), hook(&c.id), lines);
    }
    out
}

/// New groups' sets and the rules appended for them, as one nft script (one transaction).
pub fn growth(g: &super::growth::Growth) -> String {
    use std::fmt::Write;
    let (family, table) = ("inet", names::TABLE);
    let mut out = String::new();
    for id in &g.sets {
        let (name, spec) = (set_name(id), set_spec(id));
        let _ = writeln!(out, "add set {family} {table} {name} {{ {spec} }}");
    }
    for (chain, rule) in &g.rules {
        for line in lines(rule) {
            let chain = chain_name(chain);
            let _ = writeln!(out, "add rule {family} {table} {chain} {}", line.text);
        }
    }
    out
}

/// The element changes as nft's (one `add`/`delete element` each).
pub fn changes(changes: &[ElementChange]) -> Vec<Change> {
    changes
        .iter()
        .map(|c| Change::of(c.add, c.family, &set_name(&c.set), element(&c.element)))
        .collect()
}

pub fn set_name(id: &SetId) -> String {
    match id {
        SetId::Bridges => names::SET_BRIDGES.into(),
        SetId::Masq(Fam::V4) => names::SET_MASQ4.into(),
        SetId::Masq(Fam::V6) => names::SET_MASQ6.into(),
        SetId::Subnets(Fam::V4) => names::SET_SUBNETS4.into(),
        SetId::Subnets(Fam::V6) => names::SET_SUBNETS6.into(),
        SetId::FromBridge => names::MAP_FROM_BRIDGE.into(),
        SetId::Ports { fam, on } => match (fam, on) {
            (Fam::V4, false) => names::MAP_PUB4,
            (Fam::V4, true) => names::MAP_PUB4_ON,
            (Fam::V6, false) => names::MAP_PUB6,
            (Fam::V6, true) => names::MAP_PUB6_ON,
        }
        .into(),
        SetId::Group { policy, group, fam } => names::group_set(policy, group, *fam == Fam::V6),
        SetId::NoiccPorts => names::SET_NOICC_PORTS.into(),
        SetId::Untracked(Fam::V4) => names::SET_UNTRACKED4.into(),
        SetId::Untracked(Fam::V6) => names::SET_UNTRACKED6.into(),
        SetId::Fqdn { pattern, fam } => names::fqdn_set(pattern, *fam == Fam::V6),
        SetId::Vips(Fam::V4) => names::SET_VIPS4.into(),
        SetId::Vips(Fam::V6) => names::SET_VIPS6.into(),
        SetId::Hairpin(Fam::V4) => names::SET_HAIRPIN4.into(),
        SetId::Hairpin(Fam::V6) => names::SET_HAIRPIN6.into(),
        SetId::Services(Fam::V4) => names::MAP_SERVICES4.into(),
        SetId::Services(Fam::V6) => names::MAP_SERVICES6.into(),
    }
}

/// A set's type (and flags); a map's has ` : ` between key and value.
fn set_spec(id: &SetId) -> &'static str {
    match id {
        SetId::Bridges | SetId::NoiccPorts => "type ifname;",
        SetId::Masq(Fam::V4) | SetId::Subnets(Fam::V4) => "type ipv4_addr; flags interval;",
        SetId::Masq(Fam::V6) | SetId::Subnets(Fam::V6) => "type ipv6_addr; flags interval;",
        SetId::FromBridge => "type ifname : verdict;",
        SetId::Untracked(Fam::V4) => "type ifname . ipv4_addr; flags interval;",
        SetId::Untracked(Fam::V6) => "type ifname . ipv6_addr; flags interval;",
        SetId::Ports { fam, on } => match (fam, on) {
            (Fam::V4, false) => "type inet_proto . inet_service : ipv4_addr . inet_service;",
            (Fam::V4, true) => {
                "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;"
            }
            (Fam::V6, false) => "type inet_proto . inet_service : ipv6_addr . inet_service;",
            (Fam::V6, true) => {
                "type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;"
            }
        },
        SetId::Group { fam: Fam::V4, .. } => "type ipv4_addr;",
        SetId::Group { fam: Fam::V6, .. } => "type ipv6_addr;",
        // `size`: names::FQDN_SET_SIZE.
        SetId::Fqdn { fam: Fam::V4, .. } => "type ipv4_addr; flags timeout; size 65536;",
        SetId::Fqdn { fam: Fam::V6, .. } => "type ipv6_addr; flags timeout; size 65536;",
        SetId::Vips(Fam::V4) => "type ipv4_addr;",
        SetId::Vips(Fam::V6) => "type ipv6_addr;",
        SetId::Hairpin(Fam::V4) => "type ipv4_addr . ipv4_addr;",
        SetId::Hairpin(Fam::V6) => "type ipv6_addr . ipv6_addr;",
        SetId::Services(Fam::V4) => {
            "type ifname . ipv4_addr . inet_proto . inet_service : verdict;"
        }
        SetId::Services(Fam::V6) => {
            "type ifname . ipv6_addr . inet_proto . inet_service : verdict;"
        }
    }
}

fn element(e: &Element) -> String {
    match e {
        Element::Bridge { name, .. } | Element::Ifname(name) => quoted(name),
        Element::Subnet(net) => net.to_string(),
        Element::Dispatch { bridge, chain } => {
            format!("{} : jump {}", quoted(bridge), chain_name(chain))
        }
        Element::Port(p) => {
            let key = format!("{} . {}", p.proto, p.port);
            let key = p.on.map_or(key.clone(), |on| format!("{on} . {key}"));
            format!("{key} : {} . {}", p.to, p.to_port)
        }
        Element::Addr(a) => a.to_string(),
        // A range of one is listed back as the address alone.
        Element::BridgeRange { bridge, from, to } if from == to => {
            format!("{} . {from}", quoted(bridge))
        }
        Element::BridgeRange { bridge, from, to } => format!("{} . {from}-{to}", quoted(bridge)),
        Element::Pair(a) => format!("{a} . {a}"),
        Element::Service {
            bridge,
            vip,
            proto,
            port,
            chain,
        } => format!(
            "{} . {vip} . {proto} . {port} : goto {}",
            quoted(bridge),
            chain_name(chain)
        ),
    }
}

pub fn chain_name(id: &ChainId) -> String {
    match id {
        ChainId::Forward | ChainId::BridgeForward => names::CHAIN_FORWARD.into(),
        ChainId::Prerouting => names::CHAIN_PREROUTING.into(),
        ChainId::Output => names::CHAIN_OUTPUT.into(),
        ChainId::Postrouting => names::CHAIN_POSTROUTING.into(),
        ChainId::Publish => names::CHAIN_PUBLISH.into(),
        ChainId::Raw => names::CHAIN_RAW.into(),
        ChainId::Input => names::CHAIN_INPUT.into(),
        ChainId::Service(id) => names::service_chain(id),
        ChainId::Network(n) => names::network_chain(n),
        ChainId::Policy { policy, network } => names::policy_chain(policy, network),
        ChainId::SameGroup {
            policy,
            network,
            rule,
            fam,
        } => names::same_group_chain(policy, network, *rule, *fam == Fam::V6),
    }
}

fn hook(id: &ChainId) -> Option<&'static str> {
    Some(match id {
        ChainId::Forward | ChainId::BridgeForward => {
            "type filter hook forward priority filter; policy accept;"
        }
        ChainId::Prerouting => "type nat hook prerouting priority dstnat; policy accept;",
        ChainId::Output => "type nat hook output priority -100; policy accept;",
        ChainId::Postrouting => "type nat hook postrouting priority srcnat; policy accept;",
        ChainId::Raw => "type filter hook prerouting priority raw; policy accept;",
        ChainId::Input => "type filter hook input priority filter; policy accept;",
        ChainId::Service(_)
        | ChainId::Publish
        | ChainId::Network(_)
        | ChainId::Policy { .. }
        | ChainId::SameGroup { .. } => return None,
    })
}

/// One rule's nft lines: one, or two for a rate-limited log and a verdict.
fn lines(r: &Rule) -> Vec<Line> {
    let fam = r.fam.unwrap_or(Fam::V4);
    let matches: Vec<String> = r.matches.iter().map(|m| match_text(m, fam)).collect();
    let log = r
        .log
        .as_ref()
        .map(|l| format!("log prefix \"{}\" group {}", l.prefix, names::FLOW_GROUP));
    let limit = r.log.as_ref().and_then(|l| l.per_second);
    let limit = limit.map(|n| format!("limit rate {n}/second"));
    let verdict = r.verdict.as_ref().map(|v| verdict_text(v, fam));
    let counter = r.counter.then(|| "counter".to_string());
    let line = |parts: Vec<Option<String>>| Line {
        text: matches
            .iter()
            .cloned()
            .chain(parts.into_iter().flatten())
            .collect::<Vec<_>>()
            .join(" "),
        tag: r.tag.clone(),
    };
    // `limit` is a match: what follows it in its rule (the counter, the verdict) would see
    // only the packets under the rate.
    match (limit, counter.is_some() || verdict.is_some()) {
        (Some(limit), true) => vec![line(vec![Some(limit), log]), line(vec![counter, verdict])],
        (limit, _) => vec![line(vec![limit, counter, log, verdict])],
    }
}

fn ip(fam: Fam) -> &'static str {
    match fam {
        Fam::V4 => "ip",
        Fam::V6 => "ip6",
    }
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn ifaces(i: &Ifaces) -> String {
    match i {
        Ifaces::Name(n) => quoted(n),
        Ifaces::Set(s) => format!("@{}", set_name(s)),
    }
}

fn addrs(a: &Addrs) -> String {
    match a {
        Addrs::Net(n) => n.to_string(),
        Addrs::Set(s) => format!("@{}", set_name(s)),
    }
}

fn match_text(m: &Match, fam: Fam) -> String {
    match m {
        Match::Iif(i) => format!("iifname {}", ifaces(i)),
        Match::Oif(i) => format!("oifname {}", ifaces(i)),
        Match::NotOif(i) => format!("oifname != {}", ifaces(i)),
        Match::Saddr(a) => format!("{} saddr {}", ip(fam), addrs(a)),
        Match::Daddr(a) => format!("{} daddr {}", ip(fam), addrs(a)),
        Match::IifDaddr(s) => format!("iifname . {} daddr @{}", ip(fam), set_name(s)),
        Match::Proto { proto, ports } => proto_text(*proto, ports, fam),
        Match::Ct(Ct::EstablishedRelated) => "ct state established,related".into(),
        Match::Ct(Ct::Invalid) => "ct state invalid".into(),
        Match::Ct(Ct::Dnat) => "ct status dnat".into(),
        Match::Ct(Ct::Untracked) => "ct state untracked".into(),
        Match::LocalDaddr => "fib daddr type local".into(),
        Match::Transport => "meta l4proto { tcp, udp, sctp }".into(),
        Match::CtOrigDaddr(s) => format!("ct original {} daddr @{}", ip(fam), set_name(s)),
        Match::SaddrDaddr(s) => format!("{0} saddr . {0} daddr @{1}", ip(fam), set_name(s)),
        Match::ArpRequestFor(s) => format!("arp operation request arp daddr ip @{}", set_name(s)),
    }
}

fn proto_text(p: Protocol, ports: &[(u16, u16)], fam: Fam) -> String {
    if p == Protocol::Icmp {
        let icmp = if fam == Fam::V4 { "icmp" } else { "ipv6-icmp" };
        return format!("meta l4proto {icmp}");
    }
    let ports = port_ranges(ports, "-");
    match ports.len() {
        0 => format!("meta l4proto {p}"),
        1 => format!("{p} dport {}", ports[0]),
        _ => format!("{p} dport {{ {} }}", ports.join(", ")),
    }
}

fn verdict_text(v: &Verdict, fam: Fam) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject { tcp_reset: true } => "reject with tcp reset".into(),
        Verdict::Reject { tcp_reset: false } => "reject".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {}", chain_name(c)),
        Verdict::DispatchIif(map) => format!("iifname vmap @{}", set_name(map)),
        Verdict::Masquerade => "masquerade".into(),
        Verdict::Snat(to) => format!("snat {} to {to}", ip(Fam::of(*to))),
        Verdict::Dnat(to) => format!("dnat {} to {to}", ip(Fam::of(to.ip()))),
        Verdict::DnatMap(map) => {
            let on = matches!(map, SetId::Ports { on: true, .. });
            let key = if on {
                format!("{} daddr . meta l4proto . th dport", ip(fam))
            } else {
                "meta l4proto . th dport".into()
            };
            format!(
                "dnat {} addr . port to {key} map @{}",
                ip(fam),
                set_name(map)
            )
        }
        Verdict::Notrack => "notrack".into(),
        Verdict::DispatchService(map) => format!(
            "iifname . {} daddr . meta l4proto . th dport vmap @{}",
            ip(fam),
            set_name(map)
        ),
        Verdict::DnatPick { to, port, affinity } => {
            let pick = match affinity {
                true => format!("jhash {} saddr mod {} seed 0x5eed", ip(fam), to.len()),
                false => format!("numgen random mod {}", to.len()),
            };
            let targets: Vec<String> = (to.iter().enumerate())
                .map(|(i, a)| format!("{i} : {a} . {port}"))
                .collect();
            format!(
                "dnat {} addr . port to {pick} map {{ {} }}",
                ip(fam),
                targets.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::rules::{Log, Tag};

    /// `limit` is a match: a rate-limited log is a rule of its own, before the verdict's; an
    /// unlimited one shares the verdict's rule.
    #[test]
    fn a_rate_limited_log_is_a_rule_of_its_own() {
        let tag = Some(Tag::Log { policy: "p".into() });
        let dns = Match::Proto {
            proto: Protocol::Udp,
            ports: vec![(53, 53)],
        };
        let limited = Rule {
            log: Some(Log {
                prefix: "wasmnet p: ".into(),
                per_second: Some(10),
            }),
            tag: tag.clone(),
            ..Rule::counted(vec![dns.clone()], Verdict::Accept)
        };
        let texts = |r: &Rule| lines(r).into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(
            texts(&limited),
            [
                "udp dport 53 limit rate 10/second log prefix \"wasmnet p: \" group 2387",
                "udp dport 53 counter accept"
            ]
        );
        assert!(lines(&limited).iter().all(|l| l.tag == tag));
        let unlimited = Rule {
            log: Some(Log {
                prefix: "audit: ".into(),
                per_second: None,
            }),
            ..Rule::counted(vec![dns], Verdict::Return)
        };
        assert_eq!(
            texts(&unlimited),
            ["udp dport 53 counter log prefix \"audit: \" group 2387 return"]
        );
        // A counted rule without a verdict counts every packet, not just the logged ones.
        let audit = Rule {
            verdict: None,
            ..limited.clone()
        };
        assert_eq!(texts(&audit)[1], "udp dport 53 counter");
    }
}
