//! The neutral rules as iptables-restore lines, for one table (filter or nat) and one family.
//!
//! iptables has no sets, so what nftables looks up is expanded, linearly:
//! - a lookup in a set becomes one rule per element; when two lookups of one rule have several
//!   elements each, the rule jumps, once per element of the first, into a chain of its own
//!   holding the rest, rather than multiplying them;
//! - the bridges set is the pattern `wnbr+` (every bridge is named so, and wasmnet removes
//!   `wnbr` links it does not know); in POSTROUTING, which sees no input interface, a bridge
//!   stands for its subnets;
//! - the verdict map from a bridge to its network's chain becomes, per bridge, that chain's
//!   rules up to its first jump inlined under `-i <bridge>`, and the rest (from the jump on)
//!   in a numbered chain, where the policies' chains return to;
//! - a map of published ports becomes one DNAT rule per port;
//! - chains without a name of their own here (networks', policies') are numbered
//!   (`WASMNET-C<k>`) in the order they are first jumped to, their rules following the jump.
//!
//! The bridge family's table has no iptables counterpart: iptables enforces icc=false through
//! br_netfilter instead (the backend turns it on). Nor has the raw chain that untracks traffic
//! within a network: as linear rules in the raw table every packet of the host would walk one
//! per network, more than the conntrack lookup they would save; with iptables it stays tracked.

use std::net::IpAddr;

use wasmnet_policy::ir::{port_ranges, Protocol};

use super::rules::{
    Addrs, ChainId, Ct, Element, Fam, Family, Ifaces, Match, Rule, Rules, SetId, Table, Tag,
    Verdict,
};
use crate::names;

/// The tables wasmnet writes chains in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IptTable {
    Filter,
    Nat,
}

impl IptTable {
    pub fn name(self) -> &'static str {
        match self {
            IptTable::Filter => "filter",
            IptTable::Nat => "nat",
        }
    }

    /// The chains with a name of their own in this table, in the order they are written.
    fn named(self) -> &'static [(ChainId, &'static str)] {
        match self {
            IptTable::Filter => &[
                (ChainId::Forward, names::IPT_FORWARD),
                (ChainId::Input, names::IPT_INPUT),
            ],
            IptTable::Nat => &[
                (ChainId::Prerouting, names::IPT_PREROUTING),
                (ChainId::Output, names::IPT_OUTPUT),
                (ChainId::Postrouting, names::IPT_POSTROUTING),
                (ChainId::Publish, names::IPT_DNAT),
            ],
        }
    }
}

/// One `-A CHAIN TEXT` line, and what its rule is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub chain: String,
    pub text: String,
    pub tag: Option<Tag>,
}

/// One table's chains (to declare, in order) and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    pub chains: Vec<String>,
    pub lines: Vec<Line>,
}

/// The chains and rules of `table` for family `fam`.
pub fn script(rules: &Rules, table: IptTable, fam: Fam) -> Script {
    let declared = table.named().iter().map(|(_, n)| n.to_string()).collect();
    let Some(t) = rules.table(Family::Inet) else {
        return Script {
            chains: declared,
            lines: Vec::new(),
        };
    };
    let mut r = Renderer {
        t,
        fam,
        nat: table == IptTable::Nat,
        chains: declared,
        numbered: 0,
        lines: Vec::new(),
    };
    for (id, name) in table.named() {
        if let Some(c) = t.find(id) {
            r.chain(name, &c.rules, &[]);
        }
    }
    Script {
        chains: r.chains,
        lines: r.lines,
    }
}

/// The name a chain has in any table, if it has one.
fn named(id: &ChainId) -> Option<&'static str> {
    [IptTable::Filter, IptTable::Nat]
        .iter()
        .flat_map(|t| t.named())
        .find(|(c, _)| c == id)
        .map(|(_, n)| *n)
}

/// Per condition, its alternatives (one rule each); an empty list never matches.
type Alternatives = Vec<Vec<String>>;

struct Renderer<'a> {
    t: &'a Table,
    fam: Fam,
    /// POSTROUTING and the like: no input interface to match.
    nat: bool,
    chains: Vec<String>,
    /// Numbered chains so far.
    numbered: usize,
    lines: Vec<Line>,
}

impl Renderer<'_> {
    fn numbered(&mut self) -> String {
        let name = names::ipt_chain(self.numbered);
        self.numbered += 1;
        self.chains.push(name.clone());
        name
    }

    fn chain(&mut self, chain: &str, rules: &[Rule], prefix: &[Vec<String>]) {
        for r in rules {
            self.rule(chain, r, prefix);
        }
    }

    /// One rule (under `prefix`, conditions of the rule that dispatched here) in `chain`.
    fn rule(&mut self, chain: &str, r: &Rule, prefix: &[Vec<String>]) {
        if r.fam.is_some_and(|f| f != self.fam) {
            return;
        }
        let mut alts: Alternatives = prefix.to_vec();
        match &r.verdict {
            Some(Verdict::DispatchIif(map)) => return self.dispatch(chain, r, map, prefix),
            Some(Verdict::DnatMap(map)) => return self.dnat(chain, r, map, prefix),
            Some(Verdict::DispatchService(map)) => return self.services(chain, r, map),
            Some(Verdict::DnatPick { to, port, .. }) => {
                alts.extend(self.conditions(&r.matches));
                return self.pick(chain, &alts, to, *port, &r.tag);
            }
            _ => alts.extend(self.conditions(&r.matches)),
        }
        let mut targets: Vec<String> = r.log.iter().map(log).collect();
        // A rate-limited log counts only what it logs: a counted rule without a verdict (an
        // audit's would-be drop) counts in a rule of its own.
        let limited = r.log.as_ref().is_some_and(|l| l.per_second.is_some());
        if r.verdict.is_none() && r.counter && limited {
            targets.push(String::new());
        }
        let jumped = match &r.verdict {
            Some(Verdict::Jump(id)) if named(id).is_none() => {
                let target = self.numbered();
                targets.push(format!("-j {target}"));
                self.t.find(id).map(|c| (target, c))
            }
            Some(v) => {
                targets.extend(target(v));
                None
            }
            None => None,
        };
        self.expand(chain, &alts, &targets, &r.tag);
        if let Some((name, c)) = jumped {
            self.chain(&name, &c.rules, &[]);
        }
    }

    /// The rules of each network's chain, under `-i <its bridge>` (see the module's comment).
    fn dispatch(&mut self, chain: &str, r: &Rule, map: &SetId, prefix: &[Vec<String>]) {
        // Each element names its bridge: a match on the input interface is implied.
        let others: Vec<Match> = (r.matches.iter())
            .filter(|m| !matches!(m, Match::Iif(_)))
            .cloned()
            .collect();
        for e in self.t.elements(map) {
            let Element::Dispatch { bridge, chain: id } = e else {
                continue;
            };
            let Some(c) = self.t.find(id) else { continue };
            let mut under = prefix.to_vec();
            under.push(vec![format!("-i {bridge}")]);
            under.extend(self.conditions(&others));
            if under.iter().any(Vec::is_empty) {
                continue; // never matches: no numbered chain either
            }
            let jumps =
                |r: &Rule| matches!(&r.verdict, Some(Verdict::Jump(j)) if named(j).is_none());
            let split = c.rules.iter().position(jumps).unwrap_or(c.rules.len());
            self.chain(chain, &c.rules[..split], &under);
            if split < c.rules.len() {
                let own = self.numbered();
                self.expand(chain, &under, &[format!("-j {own}")], &r.tag);
                self.chain(&own, &c.rules[split..], &[]);
            }
        }
    }

    /// Per service port of the map, a jump to the service's chain (numbered, written once).
    fn services(&mut self, chain: &str, r: &Rule, map: &SetId) {
        let mut written: Vec<(ChainId, String)> = Vec::new();
        for e in self.t.elements(map) {
            let Element::Service {
                bridge,
                vip,
                proto,
                port,
                chain: id,
            } = e
            else {
                continue;
            };
            let target = match written.iter().find(|(c, _)| c == id) {
                Some((_, name)) => name.clone(),
                None => {
                    let name = self.numbered();
                    written.push((id.clone(), name.clone()));
                    if let Some(c) = self.t.find(id) {
                        self.chain(&name, &c.rules, &[]);
                    }
                    name
                }
            };
            let m = format!("-i {bridge} -d {vip} -p {proto} -m {proto} --dport {port}");
            self.expand(chain, &[vec![m]], &[format!("-j {target}")], &r.tag);
        }
    }

    /// DNAT to one of `to`: the first with probability 1/n, the next 1/(n-1) of what is
    /// left, …, the last without a test (iptables' `statistic`: linear in the backends).
    fn pick(
        &mut self,
        chain: &str,
        alts: &[Vec<String>],
        to: &[IpAddr],
        port: u16,
        tag: &Option<Tag>,
    ) {
        let n = to.len();
        for (i, a) in to.iter().enumerate() {
            let dest = match a {
                IpAddr::V6(a) => format!("[{a}]:{port}"),
                IpAddr::V4(a) => format!("{a}:{port}"),
            };
            let chance = match n - i {
                1 => String::new(),
                left => format!(
                    "-m statistic --mode random --probability {:.10} ",
                    1.0 / left as f64
                ),
            };
            let target = format!("{chance}-j DNAT --to-destination {dest}");
            self.expand(chain, alts, &[target], tag);
        }
    }

    /// One DNAT rule per published port of the map.
    fn dnat(&mut self, chain: &str, r: &Rule, map: &SetId, prefix: &[Vec<String>]) {
        let mut alts: Alternatives = prefix.to_vec();
        alts.extend(self.conditions(&r.matches));
        for e in self.t.elements(map) {
            let Element::Port(p) = e else { continue };
            let on = p.on.map_or(String::new(), |h| format!("-d {h} "));
            let to = match p.to {
                IpAddr::V6(a) => format!("[{a}]:{}", p.to_port),
                IpAddr::V4(a) => format!("{a}:{}", p.to_port),
            };
            let mut alts = alts.clone();
            alts.push(vec![format!(
                "{on}-p {0} -m {0} --dport {1}",
                p.proto, p.port
            )]);
            let target = format!("-j DNAT --to-destination {to}");
            self.expand(chain, &alts, &[target], &r.tag);
        }
    }

    /// Lines for every combination of the alternatives, each with every target in turn —
    /// or, when two conditions have several alternatives, a jump per alternative of the first
    /// into a new chain that holds the rest.
    fn expand(&mut self, chain: &str, alts: &[Vec<String>], targets: &[String], tag: &Option<Tag>) {
        if alts.iter().any(Vec::is_empty) {
            return;
        }
        let mut several = alts.iter().enumerate().filter(|(_, a)| a.len() > 1);
        if let (Some((first, _)), Some(_)) = (several.next(), several.next()) {
            let sub = self.numbered();
            self.expand(chain, &alts[..=first], &[format!("-j {sub}")], tag);
            return self.expand(&sub, &alts[first + 1..], targets, tag);
        }
        for combination in product(alts) {
            for t in targets {
                let parts = combination.iter().copied().chain(std::iter::once(t));
                let text: Vec<&str> = parts
                    .flat_map(|p| p.split(' '))
                    .filter(|p| !p.is_empty())
                    .collect();
                self.lines.push(Line {
                    chain: chain.to_string(),
                    text: text.join(" "),
                    tag: tag.clone(),
                });
            }
        }
    }

    /// A rule's conditions as alternatives, modules (`-m conntrack`, `-m addrtype`) last.
    fn conditions(&self, matches: &[Match]) -> Alternatives {
        let module =
            |m: &Match| matches!(m, Match::Ct(_) | Match::LocalDaddr | Match::CtOrigDaddr(_));
        let plain = matches.iter().filter(|m| !module(m));
        let modules = matches.iter().filter(|m| module(m));
        plain.chain(modules).map(|m| self.alternatives(m)).collect()
    }

    fn alternatives(&self, m: &Match) -> Vec<String> {
        let one = |s: String| vec![s];
        match m {
            Match::Iif(i) if self.nat => (self.subnets(i).into_iter())
                .map(|s| format!("-s {s}"))
                .collect(),
            Match::Iif(i) => self.ifaces("-i", i),
            Match::Oif(i) => self.ifaces("-o", i),
            // Only the bridges, or one interface, are ever negated (a negated lookup in any
            // other set would need a chain of returns).
            Match::NotOif(i) => self.ifaces("! -o", i).into_iter().take(1).collect(),
            Match::Saddr(a) => self.addrs("-s", a),
            Match::Daddr(a) => self.addrs("-d", a),
            // Only the untracked ranges are looked up so, and iptables untracks nothing (see
            // the module's comment): never matches, the rule is left out.
            Match::IifDaddr(_) => Vec::new(),
            // Only in the bridge family's table, which iptables does not render.
            Match::ArpRequestFor(_) => Vec::new(),
            Match::Proto { proto, ports } => one(proto_text(*proto, ports, self.fam)),
            Match::Ct(ct) => one(format!("-m conntrack --ctstate {}", ct_text(*ct))),
            Match::LocalDaddr => one("-m addrtype --dst-type LOCAL".into()),
            // Every rule iptables gets that looks at ports names its protocol.
            Match::Transport => one(String::new()),
            Match::CtOrigDaddr(s) => (self.t.elements(s).iter())
                .filter_map(|e| match e {
                    Element::Addr(a) => Some(format!("-m conntrack --ctorigdst {a}")),
                    _ => None,
                })
                .collect(),
            Match::SaddrDaddr(s) => (self.t.elements(s).iter())
                .filter_map(|e| match e {
                    Element::Pair(a) if Fam::of(*a) == self.fam => Some(format!("-s {a} -d {a}")),
                    _ => None,
                })
                .collect(),
        }
    }

    fn ifaces(&self, flag: &str, i: &Ifaces) -> Vec<String> {
        match i {
            Ifaces::Name(n) => vec![format!("{flag} {n}")],
            Ifaces::Set(SetId::Bridges) => vec![format!("{flag} {}", names::ipt_every_bridge())],
            Ifaces::Set(s) => (self.t.elements(s).iter())
                .filter_map(|e| match e {
                    Element::Ifname(n) | Element::Bridge { name: n, .. } => {
                        Some(format!("{flag} {n}"))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    /// The subnets of this family that stand for bridges.
    fn subnets(&self, i: &Ifaces) -> Vec<ipnet::IpNet> {
        let wanted = |name: &str| match i {
            Ifaces::Name(n) => n == name,
            Ifaces::Set(_) => true,
        };
        (self.t.elements(&SetId::Bridges).iter())
            .filter_map(|e| match e {
                Element::Bridge { name, subnets } if wanted(name) => Some(subnets),
                _ => None,
            })
            .flatten()
            .filter(|s| Fam::of(s.addr()) == self.fam)
            .copied()
            .collect()
    }

    fn addrs(&self, flag: &str, a: &Addrs) -> Vec<String> {
        match a {
            Addrs::Net(n) => vec![format!("{flag} {n}")],
            Addrs::Set(s) => (self.t.elements(s).iter())
                .filter_map(|e| match e {
                    Element::Addr(a) => Some(format!("{flag} {a}")),
                    Element::Subnet(n) => Some(format!("{flag} {n}")),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Every combination, the first list's alternatives outermost.
fn product(alts: &[Vec<String>]) -> Vec<Vec<&String>> {
    alts.iter().fold(vec![vec![]], |acc, a| {
        acc.into_iter()
            .flat_map(|c| {
                a.iter().map(move |x| {
                    let mut c = c.clone();
                    c.push(x);
                    c
                })
            })
            .collect()
    })
}

fn ct_text(ct: Ct) -> &'static str {
    match ct {
        Ct::EstablishedRelated => "RELATED,ESTABLISHED",
        Ct::Invalid => "INVALID",
        Ct::Dnat => "DNAT",
        Ct::Untracked => "UNTRACKED",
    }
}

fn proto_text(p: Protocol, ports: &[(u16, u16)], fam: Fam) -> String {
    if p == Protocol::Icmp {
        return if fam == Fam::V6 {
            "-p ipv6-icmp"
        } else {
            "-p icmp"
        }
        .into();
    }
    let ports = port_ranges(ports, ":");
    match ports.len() {
        0 => format!("-p {p}"),
        1 => format!("-p {p} -m {p} --dport {}", ports[0]),
        _ => format!("-p {p} -m multiport --dports {}", ports.join(",")),
    }
}

fn log(l: &super::rules::Log) -> String {
    let limit = l
        .per_second
        .map_or(String::new(), |n| format!("-m limit --limit {n}/second "));
    format!(
        "{limit}-j NFLOG --nflog-group {} --nflog-prefix \"{}\"",
        names::FLOW_GROUP,
        l.prefix
    )
}

/// The target of a verdict; none for what `Renderer::rule` expands instead (maps, jumps to
/// numbered chains).
fn target(v: &Verdict) -> Option<String> {
    Some(match v {
        Verdict::Accept => "-j ACCEPT".into(),
        Verdict::Drop => "-j DROP".into(),
        Verdict::Reject { tcp_reset: true } => "-j REJECT --reject-with tcp-reset".into(),
        Verdict::Reject { tcp_reset: false } => "-j REJECT".into(),
        Verdict::Return => "-j RETURN".into(),
        Verdict::Masquerade => "-j MASQUERADE".into(),
        Verdict::Snat(to) => format!("-j SNAT --to-source {to}"),
        Verdict::Dnat(to) => format!("-j DNAT --to-destination {to}"),
        Verdict::Jump(id) => format!("-j {}", named(id)?),
        Verdict::Notrack => "-j CT --notrack".into(),
        Verdict::DispatchIif(_)
        | Verdict::DnatMap(_)
        | Verdict::DispatchService(_)
        | Verdict::DnatPick { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{desired, endpoint, net, rule, sample, sample_ports};
    use crate::firewall::{lower, render_nft};
    use wasmnet_policy::ir::{Peer, Verdict as V};

    fn lines(d: &crate::firewall::Desired, table: IptTable, fam: Fam) -> Vec<Line> {
        script(&lower(d), table, fam).lines
    }

    /// A rule between a group of three and one of two is five rules, not six: one jump per
    /// source into a chain of one rule per destination.
    #[test]
    fn two_lookups_make_a_chain_not_a_product() {
        let (nets, mut eps, mut plan) = sample();
        let micro = "8".repeat(64);
        for (id, ip) in [('d', "10.1.0.7"), ('f', "10.1.0.8")] {
            let mut e = endpoint(&nets[0], ip, vec![]);
            e.id = id.to_string().repeat(64);
            plan.members
                .insert(e.id.clone(), vec![(micro.clone(), "web".into())]);
            eps.push(e);
        }
        let mut db = endpoint(&nets[0], "10.1.0.9", vec![]);
        db.id = "c".repeat(64);
        plan.members
            .insert(db.id.clone(), vec![(micro.clone(), "db".into())]);
        eps.push(db);
        let all = lines(&desired(nets, eps, plan), IptTable::Filter, Fam::V4);
        let sub = &all.iter().find(|l| l.text.contains("5432")).unwrap().chain;
        let got: Vec<String> = (all.iter())
            .filter(|l| l.chain == *sub || l.text.ends_with(&format!("-j {sub}")))
            .map(|l| format!("-A {} {}", l.chain, l.text))
            .collect();
        assert_eq!(
            got,
            [
                "-A WASMNET-C4 -s 10.1.0.2 -j WASMNET-C5",
                "-A WASMNET-C4 -s 10.1.0.7 -j WASMNET-C5",
                "-A WASMNET-C4 -s 10.1.0.8 -j WASMNET-C5",
                "-A WASMNET-C5 -d 10.1.0.3 -o wnbraaaaaaaaaaa -p tcp -m tcp --dport 5432 -j RETURN",
                "-A WASMNET-C5 -d 10.1.0.9 -o wnbraaaaaaaaaaa -p tcp -m tcp --dport 5432 -j RETURN",
            ]
        );
    }

    /// Audit and log rules carry their tag in both backends (and only they do).
    #[test]
    fn tags_follow_the_rules_into_both_backends() {
        let (nets, eps, mut plan) = sample();
        let egress = "9".repeat(64);
        let b = std::sync::Arc::make_mut(&mut plan.networks)
            .get_mut(&nets[1].id)
            .unwrap();
        let mut logged = rule(Peer::Any, Peer::World, None, vec![], V::Drop);
        logged.log = true;
        b[0].decision.rules.push(logged);
        let d = desired(nets, eps, plan);
        let audit = |t: &Option<Tag>| matches!(t, Some(Tag::Audit { .. }));
        let logs = |t: &Option<Tag>| matches!(t, Some(Tag::Log { policy }) if *policy == egress);
        let nft = render_nft::ruleset(&lower(&d));
        let nft_lines = nft
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules);
        let ipt_lines: Vec<Line> = [Fam::V4, Fam::V6]
            .into_iter()
            .flat_map(|f| lines(&d, IptTable::Filter, f))
            .collect();
        let all = nft_lines
            .map(|l| (l.text.clone(), l.tag.clone()))
            .chain(ipt_lines.into_iter().map(|l| (l.text, l.tag)));
        let (mut audited, mut logged) = (0, 0);
        for (text, tag) in all {
            if text.contains("wn:w:") {
                assert!(audit(&tag), "{text}");
            }
            audited += usize::from(audit(&tag));
            if logs(&tag) {
                logged += 1;
                assert!(
                    text.contains("! -o wnbr+") || text.contains("!= @bridges"),
                    "{text}"
                );
            }
        }
        // The audit's default (its would-be drop between endpoints) as a rate-limited log
        // and a counter, in nft and per family in iptables; the logged rule as a log and a
        // verdict rule in each.
        assert_eq!((audited, logged), (2 + 4, 2 + 4));
    }

    /// POSTROUTING sees no input interface: a bridge there stands for its subnets. Published
    /// ports to IPv6 targets are written in brackets.
    #[test]
    fn nat_of_an_ipv6_network() {
        let mut n = net('a', "10.1.0.0/24", false, true);
        n.ipv6 = Some(crate::model::IpConfig {
            subnet: "fd00:1::/64".parse().unwrap(),
            gateway: "fd00:1::1".parse().unwrap(),
            ip_range: None,
        });
        let e = endpoint(&n, "10.1.0.2", sample_ports());
        let d = desired(vec![n], vec![e], Default::default());
        let got: Vec<String> = lines(&d, IptTable::Nat, Fam::V6)
            .into_iter()
            .map(|l| format!("-A {} {}", l.chain, l.text))
            .collect();
        assert_eq!(
            got,
            [
                "-A WASMNET-PREROUTING -m addrtype --dst-type LOCAL -j WASMNET-DNAT",
                "-A WASMNET-OUTPUT -m addrtype --dst-type LOCAL -j WASMNET-DNAT",
                "-A WASMNET-POSTROUTING -s fd00:1::/64 -o wnbr+ -m conntrack --ctstate DNAT -j MASQUERADE",
                "-A WASMNET-POSTROUTING -s fd00:1::/64 ! -o wnbr+ -j MASQUERADE",
                "-A WASMNET-DNAT -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80",
            ]
        );
    }
}
