//! Policy decisions compiled into the inet table. Groups become address sets (one per family),
//! each governed network's chain jumps through one chain per attached policy (in priority
//! order, first match wins), then falls back to the policies' defaults and Docker's.
//!
//! Only set elements depend on endpoints: an endpoint joining a governed network adds its
//! addresses to its groups' sets. Chains change with networks, attachments and group names.
//!
//! Traffic between endpoints of one network is bridged, not routed: it reaches the inet
//! forward hook (and conntrack) through br_netfilter, which the nft backend turns on in the
//! daemon's namespace while any policy is attached, as Docker does.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use wasmnet_policy::ir::{NetworkDecision, Peer, Protocol, Rule, Verdict};

use super::ruleset::Table;
use crate::kernel::nfset::Element;
use crate::model::option_true;
use crate::model::{Endpoint, Network};
use crate::names::{bridge_name, group_set, policy_chain};

/// Per endpoint id: (policy id, group) for each group a policy put it in. A persistent map:
/// the engine's state copies it at every join, for the cost of the path it changes.
pub type Members = imbl::HashMap<String, Vec<(String, String)>>;

/// Everything the attached policies decided, as the firewall consumes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Per governed network id: its policies, in priority order. (Shared: the engine keeps
    /// it while endpoints come and go.)
    pub networks: std::sync::Arc<HashMap<String, Vec<Applied>>>,
    /// Per endpoint id: (policy id, group) for each group a policy put it in.
    pub members: Members,
}

/// One policy's decision for one network.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub policy_id: String,
    pub policy_name: String,
    /// Audit mode: would-be drops are counted and logged, nothing is enforced.
    pub audit: bool,
    pub decision: NetworkDecision,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn governs(&self, network_id: &str) -> Option<&[Applied]> {
        self.networks
            .get(network_id)
            .map(Vec::as_slice)
            .filter(|a| !a.is_empty())
    }

    /// Every (policy id, group) in use: by an endpoint, or named by a rule.
    pub fn groups(&self) -> BTreeSet<(String, String)> {
        let mut out: BTreeSet<(String, String)> =
            self.members.values().flatten().cloned().collect();
        for a in self.networks.values().flatten() {
            for r in &a.decision.rules {
                for p in [&r.from, &r.to] {
                    if let Peer::Group(g) = p {
                        out.insert((a.policy_id.clone(), g.clone()));
                    }
                }
            }
        }
        out
    }

    /// Whether a group is in use already (its sets exist): a cheap check for each join.
    pub fn has_group(&self, key: &(String, String)) -> bool {
        let named = self.networks.values().flatten().any(|a| {
            a.policy_id == key.0
                && a.decision.rules.iter().any(|r| {
                    [&r.from, &r.to]
                        .iter()
                        .any(|p| matches!(p, Peer::Group(g) if *g == key.1))
                })
        });
        named || self.members.values().any(|m| m.contains(key))
    }

    /// Whether enforcing this plan means reading bridged traffic through br_netfilter.
    pub fn needs_br_netfilter(&self) -> bool {
        !self.is_empty()
    }

    /// The first non-audit answer among a network's policies.
    fn first<T>(applied: &[Applied], f: impl Fn(&NetworkDecision) -> Option<T>) -> Option<T> {
        applied
            .iter()
            .filter(|a| !a.audit)
            .find_map(|a| f(&a.decision))
    }
}

/// Adds the group sets and the per-policy chains to the inet table.
pub fn add_to(t: &mut Table, networks: &[&Network], endpoints: &[&Endpoint], plan: &Plan) {
    if plan.is_empty() {
        return;
    }
    let addresses: HashMap<&str, &Endpoint> =
        endpoints.iter().map(|e| (e.id.as_str(), *e)).collect();
    let mut elements: HashMap<(String, String), (Vec<String>, Vec<String>)> = plan
        .groups()
        .into_iter()
        .map(|k| (k, Default::default()))
        .collect();
    for (ep, groups) in &plan.members {
        let Some(e) = addresses.get(ep.as_str()) else {
            continue;
        };
        for key in groups {
            let slot = elements.entry(key.clone()).or_default();
            slot.0.extend(e.ipv4.map(|a| a.to_string()));
            slot.1.extend(e.ipv6.map(|a| a.to_string()));
        }
    }
    // In a stable order (the members come from a map), once each.
    for (v4, v6) in elements.values_mut() {
        for v in [v4, v6] {
            v.sort();
            v.dedup();
        }
    }
    let mut keys: Vec<_> = elements.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for ((policy, group), (v4, v6)) in &keys {
        t.set(
            &group_set(policy, group, false),
            "type ipv4_addr;",
            v4.clone(),
        );
        t.set(
            &group_set(policy, group, true),
            "type ipv6_addr;",
            v6.clone(),
        );
    }
    // Each policy's groups, for `same-group`.
    let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for ((p, g), _) in &keys {
        groups.entry(p.as_str()).or_default().push(g.as_str());
    }
    for n in networks {
        for a in plan.governs(&n.id).unwrap_or_default() {
            let mine = groups.get(a.policy_id.as_str()).map(Vec::as_slice);
            let rules = policy_rules(n, a, networks, mine.unwrap_or_default());
            t.chain(&policy_chain(&a.policy_id, &n.id), None, rules);
        }
    }
}

/// The chain of a governed network: its policies first, then the defaults.
pub fn network_rules(n: &Network, applied: &[Applied]) -> Vec<String> {
    let bridge = format!("\"{}\"", bridge_name(&n.id));
    let mut rules = Vec::new();
    if n.internal {
        // An internal network has no way out, whatever a policy says.
        rules.push("oifname != @bridges counter drop".to_string());
    }
    rules.extend(
        applied
            .iter()
            .map(|a| format!("jump {}", policy_chain(&a.policy_id, &n.id))),
    );
    let (internal, egress) = defaults(n, applied);
    rules.push(format!(
        "oifname {bridge} counter {}",
        nft_verdict(internal, None)
    ));
    rules.push("oifname @bridges counter drop".into());
    rules.push(format!("counter {}", nft_verdict(egress, None)));
    rules
}

/// A governed network's verdicts for what no rule decided, (between its endpoints, to the
/// world): the first policy's that decides, else Docker's (`icc`; out allowed).
pub fn defaults(n: &Network, applied: &[Applied]) -> (Verdict, Verdict) {
    let icc = if option_true(n, "icc", true) {
        Verdict::Accept
    } else {
        Verdict::Drop
    };
    (
        Plan::first(applied, |d| d.default_internal).unwrap_or(icc),
        Plan::first(applied, |d| d.default_egress).unwrap_or(Verdict::Accept),
    )
}

/// Whether a network masquerades, and the address it source-NATs to instead, if any.
pub fn nat(n: &Network, applied: &[Applied]) -> (bool, Option<IpAddr>) {
    let docker = !n.internal && option_true(n, "masquerade", true);
    let masq = Plan::first(applied, |d| d.masquerade).unwrap_or(docker) && !n.internal;
    (
        masq,
        Plan::first(applied, |d| d.snat).filter(|_| !n.internal),
    )
}

/// One policy's rules for one network. In audit mode nothing is decided: an accept returns to
/// the network's chain, a would-be drop is counted and logged, then returns.
fn policy_rules(n: &Network, a: &Applied, networks: &[&Network], groups: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for r in &a.decision.rules {
        for m in matches(r, n, &a.policy_id, networks, groups) {
            if r.log && !a.audit {
                out.push(format!(
                    "{m}limit rate 10/second log prefix \"wasmnet {}: \"",
                    short(&a.policy_name)
                ));
            }
            out.push(format!(
                "{m}counter {}",
                verdict_text(r.verdict, r.protocol, a)
            ));
        }
    }
    if a.audit {
        let bridge = format!("\"{}\"", bridge_name(&n.id));
        let log = audit_log(a);
        if a.decision
            .default_internal
            .is_some_and(|v| v != Verdict::Accept)
        {
            out.push(format!("oifname {bridge} counter {log}"));
        }
        if a.decision
            .default_egress
            .is_some_and(|v| v != Verdict::Accept)
        {
            out.push(format!("oifname != @bridges counter {log}"));
        }
    }
    out
}

fn short(name: &str) -> String {
    name.chars().take(16).collect()
}

fn audit_log(a: &Applied) -> String {
    format!("log prefix \"wasmnet-audit {}: \"", short(&a.policy_name))
}

fn verdict_text(v: Verdict, proto: Option<Protocol>, a: &Applied) -> String {
    match (a.audit, v) {
        (true, Verdict::Accept) => "return".into(),
        (true, _) => format!("{} return", audit_log(a)),
        (false, v) => nft_verdict(v, proto),
    }
}

fn nft_verdict(v: Verdict, proto: Option<Protocol>) -> String {
    match (v, proto) {
        (Verdict::Accept, _) => "accept".into(),
        (Verdict::Drop, _) => "drop".into(),
        (Verdict::Reject, Some(Protocol::Tcp)) => "reject with tcp reset".into(),
        (Verdict::Reject, _) => "reject".into(),
    }
}

/// Which families a rule's matches pin it to.
#[derive(Clone, Copy, PartialEq)]
enum Fam {
    V4,
    V6,
}

/// The match part of a rule (ending in a space), once per family it needs; none when the rule
/// can never match in this network's chain.
fn matches(
    r: &Rule,
    n: &Network,
    policy: &str,
    networks: &[&Network],
    groups: &[&str],
) -> Vec<String> {
    // The chain only sees traffic leaving this network's endpoints.
    match &r.from {
        Peer::World => return vec![],
        Peer::Network(x) if resolve(x, networks) != Some(n.id.as_str()) => return vec![],
        _ => {}
    }
    let fams: &[Fam] = if needs_family(r) {
        &[Fam::V4, Fam::V6]
    } else {
        &[Fam::V4]
    };
    let mut out = Vec::new();
    for &fam in fams {
        let src = match &r.from {
            p @ (Peer::Group(_) | Peer::Cidr(_)) => {
                match peer_match(p, "saddr", fam, policy, networks) {
                    Some(s) => s,
                    None => continue,
                }
            }
            _ => None,
        };
        let dsts: Vec<Vec<String>> = match &r.to {
            Peer::SameGroup => groups
                .iter()
                .map(|g| {
                    let set = format!("@{}", group_set(policy, g, fam == Fam::V6));
                    vec![addr(fam, "saddr", &set), addr(fam, "daddr", &set)]
                })
                .collect(),
            to => match peer_match(to, "daddr", fam, policy, networks) {
                Some(d) => vec![d.into_iter().collect()],
                None => continue,
            },
        };
        for dst in dsts {
            let conds = src.iter().cloned().chain(dst).chain(proto_match(r, fam));
            out.push(conds.map(|c| format!("{c} ")).collect());
        }
    }
    out
}

fn needs_family(r: &Rule) -> bool {
    let pinned = |p: &Peer| matches!(p, Peer::Group(_) | Peer::SameGroup | Peer::Cidr(_));
    pinned(&r.from) || pinned(&r.to) || r.protocol == Some(Protocol::Icmp)
}

fn addr(fam: Fam, dir: &str, what: &str) -> String {
    format!("{} {dir} {what}", if fam == Fam::V6 { "ip6" } else { "ip" })
}

/// `None`: this peer cannot match in this family (the rule is left out); `Some(None)`: no
/// condition needed.
fn peer_match(
    p: &Peer,
    dir: &str,
    fam: Fam,
    policy: &str,
    networks: &[&Network],
) -> Option<Option<String>> {
    Some(match p {
        Peer::Any => None,
        Peer::Group(g) => Some(addr(
            fam,
            dir,
            &format!("@{}", group_set(policy, g, fam == Fam::V6)),
        )),
        Peer::Cidr(c) => {
            if c.addr().is_ipv6() != (fam == Fam::V6) {
                return None;
            }
            Some(addr(fam, dir, &c.to_string()))
        }
        Peer::World if dir == "daddr" => Some("oifname != @bridges".into()),
        Peer::Network(x) if dir == "daddr" => {
            let id = resolve(x, networks)?;
            Some(format!("oifname \"{}\"", bridge_name(id)))
        }
        // Sources are this network's endpoints (see `matches`).
        Peer::World | Peer::Network(_) | Peer::SameGroup => None,
    })
}

fn proto_match(r: &Rule, fam: Fam) -> Option<String> {
    let p = r.protocol?;
    if p == Protocol::Icmp {
        let icmp = if fam == Fam::V4 { "icmp" } else { "ipv6-icmp" };
        return Some(format!("meta l4proto {icmp}"));
    }
    let ports = wasmnet_policy::ir::port_ranges(&r.ports, "-");
    Some(match ports.len() {
        0 => format!("meta l4proto {p}"),
        1 => format!("{p} dport {}", ports[0]),
        _ => format!("{p} dport {{ {} }}", ports.join(", ")),
    })
}

/// A network named by id or name.
fn resolve<'a>(x: &str, networks: &[&'a Network]) -> Option<&'a str> {
    networks
        .iter()
        .find(|n| n.id == x || n.name == x)
        .map(|n| n.id.as_str())
}

/// The set elements that put endpoint `e` into its groups' sets (or take it out).
pub fn member_elements(e: &Endpoint, groups: &[(String, String)], add: bool) -> Vec<Element> {
    let mut out = Vec::new();
    for (policy, group) in groups {
        for (v6, addr) in [(false, e.ipv4), (true, e.ipv6)] {
            let Some(addr) = addr else { continue };
            let set = group_set(policy, group, v6);
            out.push(Element { add, set, addr });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::docker;
    use crate::firewall::fixtures::{endpoint, net};
    use wasmnet_policy::ir::Rule;

    fn rule(
        from: Peer,
        to: Peer,
        protocol: Option<Protocol>,
        ports: Vec<(u16, u16)>,
        verdict: Verdict,
    ) -> Rule {
        Rule {
            from,
            to,
            protocol,
            ports,
            verdict,
            log: false,
        }
    }

    /// Two policies on one network (label isolation, then an audited microsegmentation), and an
    /// egress allowlist with SNAT on another.
    fn sample() -> (Vec<Network>, Vec<Endpoint>, Plan) {
        let a = net('a', "10.1.0.0/24", false, true);
        let b = net('b', "10.2.0.0/24", false, true);
        let mut web = endpoint(&a, "10.1.0.2", vec![]);
        web.id = "1".repeat(64);
        let mut db = endpoint(&a, "10.1.0.3", vec![]);
        db.id = "2".repeat(64);
        let tiers = "7".repeat(64);
        let micro = "8".repeat(64);
        let egress = "9".repeat(64);
        let applied = |policy: &str, name: &str, audit: bool, decision: NetworkDecision| Applied {
            policy_id: policy.into(),
            policy_name: name.into(),
            audit,
            decision,
        };
        let mut plan = Plan::default();
        let networks = std::sync::Arc::make_mut(&mut plan.networks);
        networks.insert(
            a.id.clone(),
            vec![
                applied(
                    &tiers,
                    "tiers",
                    false,
                    NetworkDecision {
                        network_id: a.id.clone(),
                        rules: vec![rule(
                            Peer::Any,
                            Peer::SameGroup,
                            None,
                            vec![],
                            Verdict::Accept,
                        )],
                        default_internal: Some(Verdict::Drop),
                        ..Default::default()
                    },
                ),
                applied(
                    &micro,
                    "micro",
                    true,
                    NetworkDecision {
                        network_id: a.id.clone(),
                        rules: vec![rule(
                            Peer::Group("web".into()),
                            Peer::Group("db".into()),
                            Some(Protocol::Tcp),
                            vec![(5432, 5432)],
                            Verdict::Accept,
                        )],
                        default_internal: Some(Verdict::Drop),
                        ..Default::default()
                    },
                ),
            ],
        );
        networks.insert(
            b.id.clone(),
            vec![applied(
                &egress,
                "egress",
                false,
                NetworkDecision {
                    network_id: b.id.clone(),
                    rules: vec![
                        rule(
                            Peer::Any,
                            Peer::Any,
                            Some(Protocol::Udp),
                            vec![(53, 53)],
                            Verdict::Accept,
                        ),
                        rule(
                            Peer::Any,
                            Peer::Cidr("192.0.2.0/24".parse().unwrap()),
                            None,
                            vec![],
                            Verdict::Accept,
                        ),
                        rule(
                            Peer::Any,
                            Peer::Network("na".into()),
                            Some(Protocol::Icmp),
                            vec![],
                            Verdict::Reject,
                        ),
                    ],
                    default_egress: Some(Verdict::Drop),
                    snat: Some("198.51.100.7".parse().unwrap()),
                    ..Default::default()
                },
            )],
        );
        plan.members.insert(
            web.id.clone(),
            vec![
                (tiers.clone(), "tier=x".into()),
                (micro.clone(), "web".into()),
            ],
        );
        plan.members.insert(
            db.id.clone(),
            vec![
                (tiers.clone(), "tier=x".into()),
                (micro.clone(), "db".into()),
            ],
        );
        (vec![a, b], vec![web, db], plan)
    }

    fn golden(name: &str, got: &str) {
        let path = format!(
            "{}/src/firewall/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        assert_eq!(
            got,
            std::fs::read_to_string(&path).unwrap(),
            "rerun with UPDATE_GOLDEN=1 to accept"
        );
    }

    #[test]
    fn golden_policy_ruleset() {
        let (nets, eps, plan) = sample();
        let eps: Vec<&Endpoint> = eps.iter().collect();
        let got = docker::compile(&nets.iter().collect::<Vec<_>>(), &eps, &eps, &plan).render();
        golden("policy.nft", &got);
    }

    #[test]
    fn golden_policy_iptables() {
        let (nets, eps, plan) = sample();
        let d = crate::firewall::Desired {
            networks: nets.into_iter().map(std::sync::Arc::new).collect(),
            endpoints: eps.into_iter().map(std::sync::Arc::new).collect(),
            plan: std::sync::Arc::new(plan),
            remotes: vec![],
        };
        let got = ["filter", "nat"]
            .iter()
            .map(|t| crate::firewall::iptables::table_script(t, &d, false, false))
            .collect::<String>();
        golden("policy.iptables", &got);
    }

    #[test]
    fn joining_changes_elements_only() {
        let a = net('a', "10.1.0.0/24", false, true);
        let e = endpoint(&a, "10.1.0.2", vec![]);
        let p = "7".repeat(64);
        let got = member_elements(&e, &[(p, "web".into())], true);
        let sets: Vec<(&str, String)> = got
            .iter()
            .map(|x| (x.set.as_str(), x.addr.to_string()))
            .collect();
        assert_eq!(
            sets,
            [
                ("g_77777777_web_4", "10.1.0.2".to_string()),
                ("g_77777777_web_6", "fd00::2".to_string())
            ]
        );
    }
}
