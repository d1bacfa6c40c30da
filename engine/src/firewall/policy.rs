//! Policy decisions lowered into the inet table's neutral rules. Groups become address sets
//! (one per family),
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

use wasmnet_policy::ir::{self, NetworkDecision, Peer, Protocol, Verdict};

use super::rules::{
    self, Addrs, ChainId, Element, Fam, FlowVerdict, Ifaces, Match, Rule, SetId, Table, Tag,
};
use crate::kernel::nfset;
use crate::model::{Endpoint, Network};
use crate::names::group_set;

pub use super::members::Members;

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
        let mut out: BTreeSet<(String, String)> = self.members.groups().cloned().collect();
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
        named || self.members.in_use(key)
    }

    /// Every name pattern a rule in force names (an `fqdn` peer), each once, sorted.
    pub fn fqdns(&self) -> BTreeSet<&str> {
        let rules = self
            .networks
            .values()
            .flatten()
            .flat_map(|a| &a.decision.rules);
        rules
            .filter_map(|r| match &r.to {
                Peer::Fqdn(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether enforcing this plan means reading bridged traffic through br_netfilter.
    pub fn needs_br_netfilter(&self) -> bool {
        !self.is_empty()
    }

    /// The first non-audit answer among a network's policies.
    fn first<T>(applied: &[Applied], f: impl Fn(&NetworkDecision) -> Option<T>) -> Option<T> {
        Plan::deciding(applied, f).map(|(_, v)| v)
    }

    /// The same, with the policy that gave it.
    fn deciding<T>(
        applied: &[Applied],
        f: impl Fn(&NetworkDecision) -> Option<T>,
    ) -> Option<(&Applied, T)> {
        (applied.iter().filter(|a| !a.audit)).find_map(|a| f(&a.decision).map(|v| (a, v)))
    }
}

/// Adds the group sets and the per-policy chains to the inet table.
pub fn add_to(t: &mut Table, networks: &[&Network], endpoints: &[&Endpoint], plan: &Plan) {
    if plan.is_empty() {
        return;
    }
    let keys = group_members(endpoints, plan);
    for ((policy, group), (v4, v6)) in &keys {
        for (fam, members) in [(Fam::V4, v4), (Fam::V6, v6)] {
            let id = SetId::Group {
                policy: policy.clone(),
                group: group.clone(),
                fam,
            };
            t.set(id, members.iter().map(|a| Element::Addr(*a)).collect());
        }
    }
    // Each name pattern's sets, empty: the DNS server fills them.
    for pattern in plan.fqdns() {
        for fam in [Fam::V4, Fam::V6] {
            let pattern = pattern.to_string();
            t.set(SetId::Fqdn { pattern, fam }, vec![]);
        }
    }
    // Each policy's groups, for `same-group`.
    let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for ((p, g), _) in &keys {
        groups.entry(p.as_str()).or_default().push(g.as_str());
    }
    for n in networks {
        for a in plan.governs(&n.id).unwrap_or_default() {
            let mine = groups.get(a.policy_id.as_str()).map(Vec::as_slice);
            let (rules, same_group) = policy_rules(n, a, networks, mine.unwrap_or_default());
            let id = ChainId::Policy {
                policy: a.policy_id.clone(),
                network: n.id.clone(),
            };
            t.chain(id, rules);
            for (id, rules) in same_group {
                t.chain(id, rules);
            }
        }
    }
}

type GroupAddrs = ((String, String), (Vec<IpAddr>, Vec<IpAddr>));

/// Every group in use with its members' addresses (IPv4, IPv6), sorted by group and, as
/// text, by address, each once.
fn group_members(endpoints: &[&Endpoint], plan: &Plan) -> Vec<GroupAddrs> {
    let addresses: HashMap<&str, &Endpoint> =
        endpoints.iter().map(|e| (e.id.as_str(), *e)).collect();
    let mut elements: HashMap<(String, String), (Vec<IpAddr>, Vec<IpAddr>)> = plan
        .groups()
        .into_iter()
        .map(|k| (k, Default::default()))
        .collect();
    for (ep, groups) in plan.members.iter() {
        let Some(e) = addresses.get(ep.as_str()) else {
            continue;
        };
        for key in groups {
            let slot = elements.entry(key.clone()).or_default();
            slot.0.extend(e.ipv4);
            slot.1.extend(e.ipv6);
        }
    }
    // In a stable order (the members come from a map), once each.
    for (v4, v6) in elements.values_mut() {
        for v in [v4, v6] {
            v.sort_by_cached_key(|a| a.to_string());
            v.dedup();
        }
    }
    let mut keys: Vec<_> = elements.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys
}

/// The chain of a governed network: its policies first, then the defaults.
pub fn network_rules(n: &Network, applied: &[Applied]) -> Vec<Rule> {
    let mut rules = Vec::new();
    if n.internal {
        // An internal network has no way out, whatever a policy says.
        let out = Rule::counted(vec![Match::NotOif(Ifaces::bridges())], rules::Verdict::Drop);
        rules.push(out.flow(FlowVerdict::Dropped, "internal", Some(&n.id)));
    }
    rules.extend(applied.iter().map(|a| {
        let chain = ChainId::Policy {
            policy: a.policy_id.clone(),
            network: n.id.clone(),
        };
        Rule::uncounted(vec![], rules::Verdict::Jump(chain))
    }));
    let (internal, egress) = defaults(n, applied);
    // Which policy decided a default, so its drops are counted as that policy's.
    let decider = |f: fn(&NetworkDecision) -> Option<Verdict>| {
        Plan::deciding(applied, f).map(|(a, _)| Tag::Default {
            policy: a.policy_id.clone(),
        })
    };
    let own = vec![Match::Oif(Ifaces::bridge_of(&n.id))];
    let within = Rule::counted(own, lowered(internal, None));
    let within_by = decider(|d| d.default_internal);
    rules.push(default_rule(within, within_by, internal, "icc", &n.id));
    let others = vec![Match::Oif(Ifaces::bridges())];
    let across = Rule::counted(others, rules::Verdict::Drop);
    rules.push(across.flow(FlowVerdict::Dropped, "isolation", Some(&n.id)));
    let out = Rule::counted(vec![], lowered(egress, None));
    let out_by = decider(|d| d.default_egress);
    rules.push(default_rule(out, out_by, egress, "default", &n.id));
    rules
}

/// A governed network's default: tagged with the policy that decided it, and its drops
/// logged as that policy's flows (`fallback` when no policy decided: Docker's default).
fn default_rule(r: Rule, by: Option<Tag>, v: Verdict, fallback: &str, network: &str) -> Rule {
    let who = match &by {
        Some(Tag::Default { policy }) => policy.clone(),
        _ => fallback.to_string(),
    };
    let r = Rule { tag: by, ..r };
    match v {
        Verdict::Drop | Verdict::Reject => r.flow(FlowVerdict::Dropped, &who, Some(network)),
        Verdict::Accept => r,
    }
}

/// A governed network's verdicts for what no rule decided, (between its endpoints, to the
/// world): the first policy's that decides, else Docker's (`icc`; out allowed).
pub fn defaults(n: &Network, applied: &[Applied]) -> (Verdict, Verdict) {
    let icc = if n.options.icc() {
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
    let docker = !n.internal && n.options.masquerade();
    let masq = Plan::first(applied, |d| d.masquerade).unwrap_or(docker) && !n.internal;
    (
        masq,
        Plan::first(applied, |d| d.snat).filter(|_| !n.internal),
    )
}

type Chains = Vec<(ChainId, Vec<Rule>)>;

/// One policy's rules for one network, and the chains of its `same-group` rules. In audit
/// mode nothing is decided: an accept returns to the network's chain, a would-be drop is
/// counted and logged (tagged), then returns.
fn policy_rules(
    n: &Network,
    a: &Applied,
    networks: &[&Network],
    groups: &[&str],
) -> (Vec<Rule>, Chains) {
    let mut out = Vec::new();
    let mut chains = Vec::new();
    for (i, r) in a.decision.rules.iter().enumerate() {
        if r.to == Peer::SameGroup && !a.audit {
            same_group(n, a, (i, r), networks, groups, (&mut out, &mut chains));
            continue;
        }
        for (fam, m) in matches(r, n, &a.policy_id, networks, groups) {
            out.push(decided(r, a, m, &n.id).pinned(fam));
        }
    }
    if a.audit {
        let would_drop = |d: Option<Verdict>| d.is_some_and(|v| v != Verdict::Accept);
        let mut log = |m: Match| {
            out.push(Rule {
                verdict: None,
                ..audited(Rule::counted(vec![m], rules::Verdict::Return), a, &n.id)
            })
        };
        if would_drop(a.decision.default_internal) {
            log(Match::Oif(Ifaces::bridge_of(&n.id)));
        }
        if would_drop(a.decision.default_egress) {
            log(Match::NotOif(Ifaces::bridges()));
        }
    }
    (out, chains)
}

/// A `same-group` rule: per family, a jump (for the rule's sources and protocol) to a chain
/// holding one rule per group, so that a new group appends a rule there instead of changing
/// the policy's chain (a join stays incremental). Audit mode keeps the rules inline: its
/// accepts must return from the policy's chain, not from a chain below it.
fn same_group(
    n: &Network,
    a: &Applied,
    (i, r): (usize, &ir::Rule),
    networks: &[&Network],
    groups: &[&str],
    (out, chains): (&mut Vec<Rule>, &mut Chains),
) {
    if !applies_to(r, &n.id, networks) {
        return;
    }
    for &fam in same_group_families(r) {
        let src = match &r.from {
            p @ (Peer::Group(_) | Peer::Cidr(_)) => {
                peer_match(p, false, fam, &a.policy_id, networks).flatten()
            }
            _ => None,
        };
        let id = same_group_chain(&a.policy_id, &n.id, i, fam);
        let jump = src.into_iter().chain(proto_match(r)).collect();
        out.push(Rule::uncounted(jump, rules::Verdict::Jump(id.clone())).pinned(Some(fam)));
        let rules = groups
            .iter()
            .map(|g| same_group_rule(&n.id, a, r, g, fam))
            .collect();
        chains.push((id, rules));
    }
}

pub(super) fn same_group_chain(policy: &str, network: &str, rule: usize, fam: Fam) -> ChainId {
    ChainId::SameGroup {
        policy: policy.to_string(),
        network: network.to_string(),
        rule,
        fam,
    }
}

/// What `same-group` decides for group `g`, in its chain: both ends in the group, the
/// destination on this network.
pub(super) fn same_group_rule(network: &str, a: &Applied, r: &ir::Rule, g: &str, fam: Fam) -> Rule {
    let set = || Addrs::Set(group(&a.policy_id, g, fam));
    let m = [Match::Saddr(set()), Match::Daddr(set())]
        .into_iter()
        .chain([Match::Oif(Ifaces::bridge_of(network))])
        .chain(proto_match(r));
    decided(r, a, m.collect(), network).pinned(Some(fam))
}

fn proto_match(r: &ir::Rule) -> Option<Match> {
    r.protocol.map(|proto| Match::Proto {
        proto,
        ports: r.ports.clone(),
    })
}

/// Whether a rule can match in network `n`'s chain, which sees only traffic leaving `n`'s
/// endpoints.
pub(super) fn applies_to(r: &ir::Rule, network: &str, networks: &[&Network]) -> bool {
    match &r.from {
        Peer::World => false,
        Peer::Network(x) => resolve(x, networks) == Some(network),
        _ => true,
    }
}

/// The families a `same-group` rule has a chain in: its source's, or both.
pub(super) fn same_group_families(r: &ir::Rule) -> &'static [Fam] {
    match &r.from {
        Peer::Cidr(c) if c.addr().is_ipv6() => &[Fam::V6],
        Peer::Cidr(_) => &[Fam::V4],
        _ => &[Fam::V4, Fam::V6],
    }
}

/// A policy rule's verdict (and flow log) for packets matching `m` on network `network`:
/// its drops are flows, so are the matches of a rule that asked for `log`.
fn decided(r: &ir::Rule, a: &Applied, m: Vec<Match>, network: &str) -> Rule {
    let (who, net) = (a.policy_id.as_str(), Some(network));
    match (a.audit, r.verdict) {
        (true, Verdict::Accept) => Rule::counted(m, rules::Verdict::Return),
        (true, _) => audited(Rule::counted(m, rules::Verdict::Return), a, network),
        (false, v) if r.log => Rule {
            tag: Some(Tag::Log {
                policy: a.policy_id.clone(),
            }),
            ..Rule::counted(m, lowered(v, r.protocol)).flow(flow_of(v), who, net)
        },
        (false, v @ (Verdict::Drop | Verdict::Reject)) => {
            Rule::counted(m, lowered(v, r.protocol)).flow(FlowVerdict::Dropped, who, net)
        }
        (false, v) => Rule::counted(m, lowered(v, r.protocol)),
    }
}

fn flow_of(v: Verdict) -> FlowVerdict {
    match v {
        Verdict::Accept => FlowVerdict::Logged,
        _ => FlowVerdict::Dropped,
    }
}

/// What an audit-mode policy would have dropped: a flow, and tagged.
fn audited(r: Rule, a: &Applied, network: &str) -> Rule {
    Rule {
        tag: Some(Tag::Audit {
            policy: a.policy_id.clone(),
        }),
        ..r.flow(FlowVerdict::WouldDrop, &a.policy_id, Some(network))
    }
}

fn lowered(v: Verdict, proto: Option<Protocol>) -> rules::Verdict {
    match v {
        Verdict::Accept => rules::Verdict::Accept,
        Verdict::Drop => rules::Verdict::Drop,
        Verdict::Reject => rules::Verdict::Reject {
            tcp_reset: proto == Some(Protocol::Tcp),
        },
    }
}

/// The matches of a rule with the family they pin it to, once per family it needs (and for
/// `same-group`, once per group); none when the rule can never match in this network's chain.
fn matches(
    r: &ir::Rule,
    n: &Network,
    policy: &str,
    networks: &[&Network],
    groups: &[&str],
) -> Vec<(Option<Fam>, Vec<Match>)> {
    if !applies_to(r, &n.id, networks) {
        return vec![];
    }
    let fams: &[Option<Fam>] = if needs_family(r) {
        &[Some(Fam::V4), Some(Fam::V6)]
    } else {
        &[None]
    };
    let mut out = Vec::new();
    for &pin in fams {
        let fam = pin.unwrap_or(Fam::V4);
        let src = match &r.from {
            p @ (Peer::Group(_) | Peer::Cidr(_)) => {
                match peer_match(p, false, fam, policy, networks) {
                    Some(s) => s,
                    None => continue,
                }
            }
            _ => None,
        };
        // Groups are scoped to the network: `group` and `same-group` destinations are
        // endpoints of this network (its bridge), never another network's members.
        let here = || Match::Oif(Ifaces::bridge_of(&n.id));
        let dsts: Vec<Vec<Match>> = match &r.to {
            Peer::SameGroup => groups
                .iter()
                .map(|g| {
                    let set = || Addrs::Set(group(policy, g, fam));
                    vec![Match::Saddr(set()), Match::Daddr(set()), here()]
                })
                .collect(),
            to @ Peer::Group(_) => match peer_match(to, true, fam, policy, networks) {
                Some(d) => vec![d.into_iter().chain([here()]).collect()],
                None => continue,
            },
            to => match peer_match(to, true, fam, policy, networks) {
                Some(d) => vec![d.into_iter().collect()],
                None => continue,
            },
        };
        let proto = proto_match(r);
        for dst in dsts {
            let all = src.iter().cloned().chain(dst).chain(proto.clone());
            out.push((pin, all.collect()));
        }
    }
    out
}

pub(super) fn group(policy: &str, group: &str, fam: Fam) -> SetId {
    SetId::Group {
        policy: policy.to_string(),
        group: group.to_string(),
        fam,
    }
}

fn needs_family(r: &ir::Rule) -> bool {
    let pinned = |p: &Peer| {
        matches!(
            p,
            Peer::Group(_) | Peer::SameGroup | Peer::Cidr(_) | Peer::Fqdn(_)
        )
    };
    pinned(&r.from) || pinned(&r.to) || r.protocol == Some(Protocol::Icmp)
}

/// `None`: this peer cannot match in this family (the rule is left out); `Some(None)`: no
/// condition needed. `dst`: the peer is the destination (else the source).
fn peer_match(
    p: &Peer,
    dst: bool,
    fam: Fam,
    policy: &str,
    networks: &[&Network],
) -> Option<Option<Match>> {
    let addr = |a: Addrs| {
        if dst {
            Match::Daddr(a)
        } else {
            Match::Saddr(a)
        }
    };
    Some(match p {
        Peer::Any => None,
        Peer::Group(g) => Some(addr(Addrs::Set(group(policy, g, fam)))),
        Peer::Cidr(c) => {
            if c.addr().is_ipv6() != (fam == Fam::V6) {
                return None;
            }
            Some(addr(Addrs::Net(*c)))
        }
        Peer::World if dst => Some(Match::NotOif(Ifaces::bridges())),
        Peer::Fqdn(pattern) if dst => Some(addr(Addrs::Set(SetId::Fqdn {
            pattern: pattern.clone(),
            fam,
        }))),
        Peer::Network(x) if dst => Some(Match::Oif(Ifaces::bridge_of(resolve(x, networks)?))),
        // Sources are this network's endpoints (see `matches`); an fqdn source is refused
        // when the answer is read.
        Peer::World | Peer::Network(_) | Peer::SameGroup | Peer::Fqdn(_) => None,
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
pub fn member_elements(
    e: &Endpoint,
    groups: &[(String, String)],
    add: bool,
) -> Vec<nfset::Element> {
    let mut out = Vec::new();
    for (policy, group) in groups {
        for (v6, addr) in [(false, e.ipv4), (true, e.ipv6)] {
            let Some(addr) = addr else { continue };
            let set = group_set(policy, group, v6);
            out.push(nfset::Element {
                add,
                set,
                addr,
                timeout: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::docker;
    use crate::firewall::fixtures::{desired, endpoint, net, sample};
    use crate::firewall::growth::growth;
    use crate::firewall::render_iptables::IptTable;
    use crate::firewall::render_nft;

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
        let d = desired(nets, eps, plan);
        let rules = crate::firewall::lower(&d);
        let got = [IptTable::Filter, IptTable::Nat]
            .into_iter()
            .map(|t| crate::firewall::iptables::table_script(t, &rules, false, false))
            .collect::<String>();
        golden("policy.iptables", &got);
    }

    #[test]
    fn snat_replaces_masquerade_for_its_family_only() {
        let (mut nets, eps, plan) = sample();
        let subnet: ipnet::IpNet = "fd00:2::/64".parse().unwrap();
        nets[1].ipv6 = Some(crate::model::IpConfig {
            gateway: subnet.hosts().next().unwrap(),
            subnet,
            ip_range: None,
        });
        let eps: Vec<&Endpoint> = eps.iter().collect();
        let got = docker::compile(&nets.iter().collect::<Vec<_>>(), &eps, &eps, &plan).render();
        let set = |name: &str| {
            let at = got.find(&format!("set {name} {{")).unwrap();
            got[at..at + got[at..].find('}').unwrap()].to_string()
        };
        // Network b SNATs IPv4 to 198.51.100.7: its IPv4 subnet leaves masq4, IPv6 masquerades.
        assert!(!set("masq4").contains("10.2.0.0/24"), "{}", set("masq4"));
        assert!(set("masq4").contains("10.1.0.0/24"), "{}", set("masq4"));
        assert!(set("masq6").contains("fd00:2::/64"), "{}", set("masq6"));
        assert!(got.contains("snat ip to 198.51.100.7"), "{got}");
    }

    /// A join bringing a new group adds its sets and one rule per `same-group` chain, and
    /// the table rendered whole afterwards is the one before plus exactly that.
    #[test]
    fn a_new_group_grows_the_table_by_what_a_whole_render_adds() {
        let (nets, eps, mut plan) = sample();
        let nets: Vec<&Network> = nets.iter().collect();
        let (tiers, micro) = ("7".repeat(64), "8".repeat(64));
        let render = |plan: &Plan| {
            let eps: Vec<&Endpoint> = eps.iter().collect();
            docker::compile(&nets, &eps, &eps, plan).render()
        };
        let before = render(&plan);
        let members = [(tiers.clone(), "tier=y".to_string())];
        let g = growth(&plan, &nets, &members).unwrap();
        assert_eq!(g.sets.len(), 2);
        let script = render_nft::growth(&g);
        let sg = "pol_77777777_aaaaaaaaaaaa_sg0";
        assert!(
            script.contains(&format!(
                "add rule inet wasmnet {sg}_4 ip saddr @g_77777777_tier_y_"
            )),
            "{script}"
        );
        assert_eq!(script.lines().count(), 4, "{script}");
        plan.members.insert("f".repeat(64), members.to_vec());
        let after = render(&plan);
        let added: Vec<&str> = after.lines().filter(|l| !before.contains(l)).collect();
        for line in script.lines().filter(|l| l.starts_with("add rule")) {
            let rule = line.splitn(6, ' ').nth(5).unwrap();
            assert!(
                added.iter().any(|l| l.trim() == rule),
                "{rule} not in {added:?}"
            );
        }
        // An audit-mode policy keeps same-group inline: no growth, a whole replacement.
        let mut audited = plan.clone();
        let n = audited
            .networks
            .keys()
            .find(|k| k.starts_with('a'))
            .unwrap()
            .clone();
        std::sync::Arc::make_mut(&mut audited.networks)
            .get_mut(&n)
            .unwrap()[0]
            .audit = true;
        assert_eq!(growth(&audited, &nets, &[(tiers, "tier=z".into())]), None);
        // A group of a policy without same-group rules: sets only.
        let g = growth(&plan, &nets, &[(micro, "cache".into())]).unwrap();
        assert_eq!((g.sets.len(), g.rules.len()), (2, 0));
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
