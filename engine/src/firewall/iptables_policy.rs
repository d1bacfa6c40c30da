//! Policy decisions as iptables rules (the slower backend): no sets, so a group is one rule
//! per member address, and a rule between two groups jumps from one rule per source into a
//! chain of one rule per destination — linear in the members, never their product. Chains are
//! numbered (`WASMNET-C<k>`) and re-declared, hence flushed, at every apply.

use std::collections::HashMap;
use std::net::IpAddr;

use wasmnet_policy::ir::{Peer, Protocol, Rule, Verdict};

use super::policy::Applied;
use super::Desired;
use crate::model::Network;
use crate::names::bridge_name;

/// Builds the filter table's policy chains for one family.
pub struct Builder<'a> {
    d: &'a Desired,
    v6: bool,
    /// (policy, group) -> member addresses of this family.
    members: HashMap<(&'a str, &'a str), Vec<IpAddr>>,
    pub chains: usize,
    pub lines: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(d: &'a Desired, v6: bool) -> Self {
        let mut members: HashMap<(&str, &str), Vec<IpAddr>> = HashMap::new();
        for e in d.endpoints.iter().chain(&d.remotes) {
            let Some(addr) = (if v6 { e.ipv6 } else { e.ipv4 }) else {
                continue;
            };
            for (p, g) in d.plan.members.get(&e.id).into_iter().flatten() {
                members
                    .entry((p.as_str(), g.as_str()))
                    .or_default()
                    .push(addr);
            }
        }
        Builder {
            d,
            v6,
            members,
            chains: 0,
            lines: Vec::new(),
        }
    }

    fn chain(&mut self) -> String {
        let name = crate::names::ipt_chain(self.chains);
        self.chains += 1;
        self.lines.push(format!(":{name} - [0:0]"));
        name
    }

    /// `-A chain` with the non-empty parts of a rule.
    fn add(&mut self, chain: &str, rule: &str) {
        let parts: Vec<&str> = rule.split(' ').filter(|p| !p.is_empty()).collect();
        self.lines.push(format!("-A {chain} {}", parts.join(" ")));
    }

    /// The forward rules of a governed network (in place of Docker's three).
    pub fn network(&mut self, n: &Network, applied: &[Applied]) {
        let br = bridge_name(&n.id);
        if n.internal {
            self.add("WASMNET-FORWARD", &format!("-i {br} ! -o wnbr+ -j DROP"));
        }
        let net = self.chain();
        self.add("WASMNET-FORWARD", &format!("-i {br} -j {net}"));
        for a in applied {
            let p = self.chain();
            self.add(&net, &format!("-j {p}"));
            self.policy(&p, n, a);
        }
        let (internal, egress) = super::policy::defaults(n, applied);
        self.add(&net, &format!("-o {br} -j {}", target(internal, None)));
        self.add(&net, "-o wnbr+ -j DROP");
        self.add(&net, &format!("-j {}", target(egress, None)));
    }

    fn policy(&mut self, chain: &str, n: &Network, a: &Applied) {
        let br = bridge_name(&n.id);
        let name: String = a.policy_name.chars().take(16).collect();
        for r in &a.decision.rules {
            let targets = targets(r, a.audit, &name);
            for (srcs, dsts) in self.alternatives(r, n, &a.policy_id) {
                let proto = proto(r, self.v6);
                if srcs.len() > 1 && dsts.len() > 1 {
                    let sub = self.chain();
                    for s in &srcs {
                        self.add(chain, &format!("{s} -j {sub}"));
                    }
                    for d in &dsts {
                        for t in &targets {
                            self.add(&sub, &format!("{d} {proto} {t}"));
                        }
                    }
                    continue;
                }
                for s in &srcs {
                    for d in &dsts {
                        for t in &targets {
                            self.add(chain, &format!("{s} {d} {proto} {t}"));
                        }
                    }
                }
            }
        }
        if a.audit {
            let log = format!("-j LOG --log-prefix \"wasmnet-audit {name}: \"");
            if a.decision
                .default_internal
                .is_some_and(|v| v != Verdict::Accept)
            {
                self.add(chain, &format!("-o {br} {log}"));
            }
            if a.decision
                .default_egress
                .is_some_and(|v| v != Verdict::Accept)
            {
                self.add(chain, &format!("! -o wnbr+ {log}"));
            }
        }
    }

    /// (sources, destinations) as iptables matches, once per group for `same-group`; empty
    /// when the rule cannot match here.
    fn alternatives(&self, r: &Rule, n: &Network, policy: &str) -> Vec<(Vec<String>, Vec<String>)> {
        let srcs = match &r.from {
            Peer::World => return vec![],
            Peer::Network(x) if !names(x, n) => return vec![],
            Peer::Any | Peer::Network(_) => vec![String::new()],
            p => self.addresses(p, policy, "-s"),
        };
        if let Peer::SameGroup = r.to {
            let mut groups: Vec<&(&str, &str)> =
                self.members.keys().filter(|(p, _)| *p == policy).collect();
            groups.sort();
            return groups
                .into_iter()
                .map(|&(p, g)| {
                    let set = Peer::Group(g.to_string());
                    (self.addresses(&set, p, "-s"), self.addresses(&set, p, "-d"))
                })
                .collect();
        }
        let dsts = match &r.to {
            Peer::Any => vec![String::new()],
            Peer::World => vec!["! -o wnbr+".into()],
            Peer::Network(x) => match self.d.networks.iter().find(|m| names(x, m)) {
                Some(m) => vec![format!("-o {}", bridge_name(&m.id))],
                None => return vec![],
            },
            p => self.addresses(p, policy, "-d"),
        };
        vec![(srcs, dsts)]
    }

    fn addresses(&self, p: &Peer, policy: &str, flag: &str) -> Vec<String> {
        match p {
            Peer::Group(g) => self
                .members
                .get(&(policy, g.as_str()))
                .into_iter()
                .flatten()
                .map(|a| format!("{flag} {a}"))
                .collect(),
            Peer::Cidr(c) if c.addr().is_ipv6() == self.v6 => vec![format!("{flag} {c}")],
            _ => vec![],
        }
    }
}

fn names(x: &str, n: &Network) -> bool {
    n.id == x || n.name == x
}

fn proto(r: &Rule, v6: bool) -> String {
    let Some(p) = r.protocol else {
        return String::new();
    };
    if p == Protocol::Icmp {
        return if v6 { "-p ipv6-icmp" } else { "-p icmp" }.into();
    }
    let ports = wasmnet_policy::ir::port_ranges(&r.ports, ":");
    match ports.len() {
        0 => format!("-p {p}"),
        1 => format!("-p {p} -m {p} --dport {}", ports[0]),
        _ => format!("-p {p} -m multiport --dports {}", ports.join(",")),
    }
}

fn target(v: Verdict, proto: Option<Protocol>) -> &'static str {
    match (v, proto) {
        (Verdict::Accept, _) => "ACCEPT",
        (Verdict::Drop, _) => "DROP",
        (Verdict::Reject, Some(Protocol::Tcp)) => "REJECT --reject-with tcp-reset",
        (Verdict::Reject, _) => "REJECT",
    }
}

/// The jumps a matching packet takes: a log first if asked, then the verdict. In audit mode
/// an accept returns and a would-be drop is logged, then returns.
fn targets(r: &Rule, audit: bool, name: &str) -> Vec<String> {
    match (audit, r.verdict) {
        (true, Verdict::Accept) => vec!["-j RETURN".into()],
        (true, _) => vec![
            format!("-j LOG --log-prefix \"wasmnet-audit {name}: \""),
            "-j RETURN".into(),
        ],
        (false, v) => {
            let mut t = Vec::new();
            if r.log {
                t.push(format!(
                    "-m limit --limit 10/second -j LOG --log-prefix \"wasmnet {name}: \""
                ));
            }
            t.push(format!("-j {}", target(v, r.protocol)));
            t
        }
    }
}
