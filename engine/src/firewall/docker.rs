//! Docker's default semantics, lowered to the neutral rules: endpoints of one network talk
//! freely (unless `icc=false`), networks are isolated from each other, non-internal networks
//! masquerade outbound, internal ones have no way out, and published ports are DNATed from the
//! host's addresses (including from the host itself and from other sandboxes). Where policies
//! govern a network, `policy` lowers its chain and the policies' own.
//!
//! Layout for scale: per-network dispatch through a verdict map keyed by bridge name, and
//! per-endpoint state (published ports) as map elements, so a packet costs a few hash lookups
//! and an endpoint joining costs element updates, never a chain rebuild (with nftables; the
//! iptables renderer expands the lookups into linear rules).

use std::net::IpAddr;

use super::policy::{self, Plan};
use super::render_nft;
use super::rules::{
    Addrs, ChainId, Ct, Element, ElementChange, Fam, Family, FlowVerdict, Ifaces, Match, Published,
    Rule, Rules, SetId, Table, Verdict,
};
use super::ruleset::Ruleset;
use super::services::{self, Lb};
use crate::model::{Endpoint, IpConfig, Network};
// Where the engine's tests found them before `crate::names`.
pub use crate::names::{bridge_name, veth_name, TABLE};

/// The whole ruleset for these networks and endpoints, under the policies' `plan` (Docker's
/// semantics alone when it is empty). `members` are the endpoints groups may hold: these and
/// those on other hosts.
pub fn lower(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    members: &[&Endpoint],
    plan: &Plan,
) -> Rules {
    lower_with_services(networks, endpoints, members, plan, &[])
}

/// The same, with services (`services`: their virtual addresses and backends).
pub fn lower_with_services(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    members: &[&Endpoint],
    plan: &Plan,
    lbs: &[std::sync::Arc<Lb>],
) -> Rules {
    let mut bridge = bridge_table(networks, endpoints);
    services::add_to_bridge(&mut bridge, lbs);
    Rules {
        tables: vec![inet_table(networks, endpoints, members, plan, lbs), bridge],
    }
}

/// The same, as nftables' ruleset.
pub fn compile(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    members: &[&Endpoint],
    plan: &Plan,
) -> Ruleset {
    render_nft::ruleset(&lower(networks, endpoints, members, plan))
}

/// A network's addresses of one family, if it has that family.
fn config_of(n: &Network, fam: Fam) -> Option<&IpConfig> {
    match fam {
        Fam::V4 => Some(&n.ipv4),
        Fam::V6 => n.ipv6.as_ref(),
    }
}

/// Whether a network masquerades, and the address it source-NATs to instead.
fn nat_of(n: &Network, plan: &Plan) -> (bool, Option<IpAddr>) {
    policy::nat(n, plan.governs(&n.id).unwrap_or_default())
}

fn inet_table(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    members: &[&Endpoint],
    plan: &Plan,
    lbs: &[std::sync::Arc<Lb>],
) -> Table {
    let mut t = Table::new(Family::Inet);
    add_sets(&mut t, networks, endpoints, plan);
    add_filter_chains(&mut t, networks, members, plan);
    let with_services = services::networks_with_services(lbs);
    add_untracked(&mut t, networks, plan, &with_services);
    add_nat_chains(&mut t, networks, plan);
    services::add_to(&mut t, lbs);
    t
}

/// Traffic within one network that no policy governs skips connection tracking: nothing
/// decides on its state (the network's chain accepts it, or drops it for icc=false, whatever
/// the state), and tracking costs every packet a lookup (bridged frames reach it through
/// br_netfilter). What a sandbox sends its gateway stays tracked — the host, hairpinned
/// published ports and masquerading answer through it — as does everything that leaves the
/// network. A network a policy governs keeps it all tracked: its rules may ask for the state;
/// so does an icc=false one (its chain drops within it). One set per family (bridge . destination range), not a chain per network: the kernel walks
/// every chain of every table on each device event.
fn add_untracked(
    t: &mut Table,
    networks: &[&Network],
    plan: &Plan,
    with_services: &std::collections::BTreeSet<&str>,
) {
    for fam in [Fam::V4, Fam::V6] {
        let mut elements = Vec::new();
        // icc=false networks stay tracked too: their chain drops within the network; and
        // networks with services: a backend's answer, bridged to its client, is un-NATed.
        let free = |n: &&&Network| {
            plan.governs(&n.id).is_none()
                && n.options.icc()
                && !with_services.contains(n.id.as_str())
        };
        for n in networks.iter().filter(free) {
            let Some(c) = config_of(n, fam) else { continue };
            elements.extend(but_one(c.subnet, c.gateway).into_iter().map(|(from, to)| {
                Element::BridgeRange {
                    bridge: bridge_name(&n.id),
                    from,
                    to,
                }
            }));
        }
        t.set(SetId::Untracked(fam), elements);
    }
    let rule = |fam| {
        let set = SetId::Untracked(fam);
        Rule::uncounted(vec![Match::IifDaddr(set)], Verdict::Notrack).pinned(Some(fam))
    };
    t.chain(ChainId::Raw, vec![rule(Fam::V4), rule(Fam::V6)]);
}

/// The ranges of `subnet` without `addr` (one or two; none for a subnet of that address
/// alone; the whole subnet if `addr` is not in it).
fn but_one(subnet: ipnet::IpNet, addr: IpAddr) -> Vec<(IpAddr, IpAddr)> {
    let (first, last) = (subnet.network(), subnet.broadcast());
    if !subnet.contains(&addr) {
        return vec![(first, last)];
    }
    let step = |down: bool| -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                std::net::Ipv4Addr::from(if down { a - 1 } else { a + 1 }).into()
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                std::net::Ipv6Addr::from(if down { a - 1 } else { a + 1 }).into()
            }
        }
    };
    // Within the subnet, `addr` above `first` has a predecessor, below `last` a successor.
    let below = (addr != first).then(|| (first, step(true)));
    let above = (addr != last).then(|| (step(false), last));
    below.into_iter().chain(above).collect()
}

/// The sets and maps the chains look up: the bridges, the subnets that masquerade, the
/// dispatch from a bridge to its network's chain, and the published ports.
fn add_sets(t: &mut Table, networks: &[&Network], endpoints: &[&Endpoint], plan: &Plan) {
    let bridges = networks
        .iter()
        .map(|n| Element::Bridge {
            name: bridge_name(&n.id),
            subnets: n.subnets().collect(),
        })
        .collect();
    let masq = |fam: Fam| -> Vec<Element> {
        networks
            .iter()
            // SNAT replaces masquerading for its own family only.
            .filter(|n| match nat_of(n, plan) {
                (masq, None) => masq,
                (masq, Some(to)) => masq && Fam::of(to) != fam,
            })
            .filter_map(|n| config_of(n, fam))
            .map(|c| Element::Subnet(c.subnet))
            .collect()
    };
    t.set(SetId::Bridges, bridges);
    t.set(SetId::Masq(Fam::V4), masq(Fam::V4));
    t.set(SetId::Masq(Fam::V6), masq(Fam::V6));
    for fam in [Fam::V4, Fam::V6] {
        let subnets = (networks.iter())
            .filter_map(|n| config_of(n, fam))
            .map(|c| Element::Subnet(c.subnet))
            .collect();
        t.set(SetId::Subnets(fam), subnets);
    }
    let dispatch = networks
        .iter()
        .map(|n| Element::Dispatch {
            bridge: bridge_name(&n.id),
            chain: ChainId::Network(n.id.clone()),
        })
        .collect();
    t.set(SetId::FromBridge, dispatch);
    for (fam, on) in PORT_MAPS {
        let map = SetId::Ports { fam, on };
        let elements = endpoints
            .iter()
            .flat_map(|e| port_elements(e))
            .filter(|(m, _)| *m == map)
            .map(|(_, el)| el)
            .collect();
        t.set(map, elements);
    }
}

/// The forward hook, each network's chain (Docker's rules, or its policies'), and the
/// policies' own chains and sets.
fn add_filter_chains(t: &mut Table, networks: &[&Network], members: &[&Endpoint], plan: &Plan) {
    let untracked = |fam| {
        let within = Match::IifDaddr(SetId::Untracked(fam));
        Rule::uncounted(vec![Match::Ct(Ct::Untracked), within], Verdict::Accept).pinned(Some(fam))
    };
    t.chain(
        ChainId::Forward,
        vec![
            Rule::counted(vec![Match::Ct(Ct::EstablishedRelated)], Verdict::Accept),
            // What the raw chain untracked is within one network no policy governs, which
            // its chain would accept: one lookup, not the walk. (Untracked by someone else,
            // it is not in the set and takes the walk.)
            untracked(Fam::V4),
            untracked(Fam::V6),
            Rule::counted(vec![Match::Ct(Ct::Invalid)], Verdict::Drop),
        ],
    );
    let forward = &mut t.chains.last_mut().expect("just added").rules;
    // Services' connections are the client network's business, as traffic to the backend.
    forward.extend(services::forward_rules());
    forward.extend([
        // Published ports: DNATed connections into a network are allowed from anywhere.
        Rule::counted(
            vec![Match::Ct(Ct::Dnat), Match::Oif(Ifaces::bridges())],
            Verdict::Accept,
        ),
        Rule::counted(
            vec![Match::Iif(Ifaces::bridges())],
            Verdict::DispatchIif(SetId::FromBridge),
        ),
        // Nothing else enters a network unasked.
        Rule::counted(vec![Match::Oif(Ifaces::bridges())], Verdict::Drop).flow(
            FlowVerdict::Dropped,
            "isolation",
            None,
        ),
    ]);
    for n in networks {
        let rules = match plan.governs(&n.id) {
            Some(applied) => policy::network_rules(n, applied),
            None => network_rules(n),
        };
        t.chain(ChainId::Network(n.id.clone()), rules);
    }
    policy::add_to(t, networks, members, plan);
}

/// Published ports DNATed on the way in (and on the way out of the host itself); hairpin,
/// loopback, SNAT and masquerade on the way out.
fn add_nat_chains(t: &mut Table, networks: &[&Network], plan: &Plan) {
    let publish = || {
        vec![Rule::counted(
            vec![Match::LocalDaddr, Match::Transport],
            Verdict::Jump(ChainId::Publish),
        )]
    };
    let pre = networks.iter().flat_map(|n| dns_redirect(n));
    let pre = pre.chain(services::prerouting_rules());
    t.chain(ChainId::Prerouting, pre.chain(publish()).collect());
    t.chain(ChainId::Output, publish());
    let dnat = |fam: Fam, on: bool| {
        Rule::uncounted(vec![], Verdict::DnatMap(SetId::Ports { fam, on })).pinned(Some(fam))
    };
    t.chain(
        ChainId::Publish,
        vec![
            dnat(Fam::V4, true),
            dnat(Fam::V4, false),
            dnat(Fam::V6, true),
            dnat(Fam::V6, false),
        ],
    );
    let loopback: ipnet::IpNet = "127.0.0.0/8".parse().expect("a prefix");
    // Hairpin: a sandbox reaching a published port through the host must see replies come
    // back through the host too — also when the target shares its bridge and br_netfilter
    // bridges the DNATed frame, which leaves no input interface to match: hence by source.
    // (Replies within a network are untracked and would otherwise miss the reverse NAT.)
    let hairpin = |fam: Fam| {
        Rule::counted(
            vec![
                Match::Ct(Ct::Dnat),
                Match::Saddr(Addrs::Set(SetId::Subnets(fam))),
                Match::Oif(Ifaces::bridges()),
            ],
            Verdict::Masquerade,
        )
        .pinned(Some(fam))
    };
    let mut post = services::postrouting_rules();
    post.extend([
        hairpin(Fam::V4),
        hairpin(Fam::V6),
        // From the host's loopback to a published port (needs route_localnet on the bridge).
        Rule::counted(
            vec![
                Match::Saddr(Addrs::Net(loopback)),
                Match::Oif(Ifaces::bridges()),
            ],
            Verdict::Masquerade,
        )
        .pinned(Some(Fam::V4)),
    ]);
    post.extend(networks.iter().filter_map(|n| snat_rule(n, plan)));
    for fam in [Fam::V4, Fam::V6] {
        let masq = Addrs::Set(SetId::Masq(fam));
        post.push(
            Rule::counted(
                vec![Match::Saddr(masq), Match::NotOif(Ifaces::bridges())],
                Verdict::Masquerade,
            )
            .pinned(Some(fam)),
        );
    }
    t.chain(ChainId::Postrouting, post);
}

/// With `dns_redirect`, DNS from the network's sandboxes to anyone goes to its gateway's
/// server (to the gateway itself too: the same address, one rule instead of two).
fn dns_redirect(n: &Network) -> Vec<Rule> {
    let o = n.options.typed();
    if !(o.dns && o.dns_redirect) {
        return vec![];
    }
    let mut out = Vec::new();
    for gw in n.gateways() {
        for proto in [
            wasmnet_policy::ir::Protocol::Udp,
            wasmnet_policy::ir::Protocol::Tcp,
        ] {
            let m = vec![
                Match::Iif(Ifaces::bridge_of(&n.id)),
                Match::Proto {
                    proto,
                    ports: vec![(53, 53)],
                },
            ];
            let to = std::net::SocketAddr::new(gw, 53);
            out.push(Rule::counted(m, Verdict::Dnat(to)).pinned(Some(Fam::of(gw))));
        }
    }
    out
}

/// A policy's SNAT for a network's subnet of the address's family.
fn snat_rule(n: &Network, plan: &Plan) -> Option<Rule> {
    let (_, to) = nat_of(n, plan);
    let to = to?;
    let subnet = config_of(n, Fam::of(to))?.subnet;
    let matches = vec![
        Match::Saddr(Addrs::Net(subnet)),
        Match::NotOif(Ifaces::bridges()),
    ];
    Some(Rule::counted(matches, Verdict::Snat(to)).pinned(Some(Fam::of(to))))
}

/// Packets leaving one network's bridge.
fn network_rules(n: &Network) -> Vec<Rule> {
    let icc = if n.options.icc() {
        Verdict::Accept
    } else {
        Verdict::Drop
    };
    let out = if n.internal {
        Verdict::Drop
    } else {
        Verdict::Accept
    };
    let within = Rule::counted(vec![Match::Oif(Ifaces::bridge_of(&n.id))], icc.clone());
    let within = match icc {
        Verdict::Drop => within.flow(FlowVerdict::Dropped, "icc", Some(&n.id)),
        _ => within,
    };
    let across = Rule::counted(vec![Match::Oif(Ifaces::bridges())], Verdict::Drop);
    vec![
        // Routed back into the same bridge (only seen with br_netfilter on).
        within,
        // Other networks are isolated.
        across.flow(FlowVerdict::Dropped, "isolation", Some(&n.id)),
        match out {
            Verdict::Drop => {
                Rule::counted(vec![], out).flow(FlowVerdict::Dropped, "internal", Some(&n.id))
            }
            _ => Rule::counted(vec![], out),
        },
    ]
}

/// The published-port maps, in the order the table declares them.
const PORT_MAPS: [(Fam, bool); 4] = [
    (Fam::V4, false),
    (Fam::V4, true),
    (Fam::V6, false),
    (Fam::V6, true),
];

/// The map elements that publish an endpoint's ports: (map, element).
fn port_elements(e: &Endpoint) -> Vec<(SetId, Element)> {
    let mut out = Vec::new();
    for p in &e.ports {
        let to = match p.host_ip {
            None => vec![e.ipv4, e.ipv6],
            Some(IpAddr::V4(_)) => vec![e.ipv4],
            Some(IpAddr::V6(_)) => vec![e.ipv6],
        };
        for to in to.into_iter().flatten() {
            let map = SetId::Ports {
                fam: Fam::of(to),
                on: p.host_ip.is_some(),
            };
            out.push((map, Element::Port(Published::of(p, to))));
        }
    }
    out
}

/// The element changes when an endpoint of network `n` joins (`add`) or leaves.
pub fn endpoint_changes(e: &Endpoint, n: &Network, add: bool) -> Vec<ElementChange> {
    let ports = port_elements(e)
        .into_iter()
        .map(|(set, element)| (Family::Inet, set, element));
    let isolated = (!n.options.icc()).then(|| {
        let port = Element::Ifname(veth_name(&e.id));
        (Family::Bridge, SetId::NoiccPorts, port)
    });
    ports
        .chain(isolated)
        .map(|(family, set, element)| ElementChange {
            add,
            family,
            set,
            element,
        })
        .collect()
}

fn bridge_table(networks: &[&Network], endpoints: &[&Endpoint]) -> Table {
    let mut t = Table::new(Family::Bridge);
    let noicc: Vec<&str> = networks
        .iter()
        .filter(|n| !n.options.icc())
        .map(|n| n.id.as_str())
        .collect();
    let ports = endpoints
        .iter()
        .filter(|e| noicc.contains(&e.network_id.as_str()))
        .map(|e| Element::Ifname(veth_name(&e.id)))
        .collect();
    // The host ends of the veths of icc=false networks. (Keyed by port, not by bridge: this
    // kernel's bridge family has no `meta ibrname`.)
    t.set(SetId::NoiccPorts, ports);
    // Frames between two ports of an icc=false bridge, whatever br_netfilter says.
    let ports = || Ifaces::Set(SetId::NoiccPorts);
    t.chain(
        ChainId::BridgeForward,
        vec![Rule::counted(
            vec![Match::Iif(ports()), Match::Oif(ports())],
            Verdict::Drop,
        )],
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{endpoint, net, sample_ports};
    use crate::model::{PortMapping, Protocol};

    /// The default ruleset for one open network with a published port, and one internal
    /// icc=false network, is exactly this (a golden file).
    /// Untracked: a subnet's addresses but its gateway's, wherever the gateway is in it.
    #[test]
    fn ranges_but_the_gateway() {
        let r = |net: &str, gw: &str| {
            let ip = |s: &str| s.parse::<IpAddr>().unwrap();
            let got = super::but_one(net.parse().unwrap(), ip(gw));
            got.iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            r("10.1.0.0/24", "10.1.0.1"),
            ["10.1.0.0-10.1.0.0", "10.1.0.2-10.1.0.255"]
        );
        assert_eq!(r("10.1.0.0/24", "10.1.0.0"), ["10.1.0.1-10.1.0.255"]);
        assert_eq!(r("10.1.0.0/24", "10.1.0.255"), ["10.1.0.0-10.1.0.254"]);
        assert_eq!(r("10.1.0.7/32", "10.1.0.7"), Vec::<String>::new());
        assert_eq!(r("10.1.0.0/24", "10.9.0.1"), ["10.1.0.0-10.1.0.255"]);
        assert_eq!(
            r("fd00::/64", "fd00::1"),
            ["fd00::-fd00::", "fd00::2-fd00::ffff:ffff:ffff:ffff"]
        );
    }

    #[test]
    fn dns_redirect_sends_a_networks_dns_to_its_gateway() {
        let mut a = net('a', "10.1.0.0/24", false, true);
        let b = net('b', "10.2.0.0/24", false, true);
        let opts = [("dns_redirect".to_string(), "true".to_string())].into();
        a.options = crate::model::Options::parse(opts).unwrap();
        let nft = compile(&[&a, &b], &[], &[], &Plan::default()).render();
        let br = crate::names::bridge_name(&a.id);
        for proto in ["udp", "tcp"] {
            let line = format!("iifname \"{br}\" {proto} dport 53 counter dnat ip to 10.1.0.1:53");
            assert!(nft.contains(&line), "{nft}");
        }
        assert_eq!(
            nft.matches("dport 53 counter dnat").count(),
            2,
            "b is not redirected"
        );
        let d = crate::firewall::Desired {
            networks: vec![std::sync::Arc::new(a)],
            ..Default::default()
        };
        let rules = crate::firewall::lower(&d);
        let ipt = crate::firewall::iptables::table_script(
            crate::firewall::render_iptables::IptTable::Nat,
            &rules,
            false,
            false,
        );
        assert!(
            ipt.contains("--dport 53") && ipt.contains("-j DNAT --to-destination 10.1.0.1:53"),
            "{ipt}"
        );
    }

    #[test]
    fn golden_default_ruleset() {
        let a = net('a', "10.1.0.0/24", false, true);
        let b = net('b', "10.2.0.0/24", true, false);
        let ports = sample_ports();
        let e = endpoint(&a, "10.1.0.2", ports);
        let mut isolated = endpoint(&b, "10.2.0.2", vec![]);
        isolated.id = "f".repeat(64);
        let got = compile(&[&a, &b], &[&e, &isolated], &[], &Plan::default()).render();
        let golden = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/firewall/testdata/default.nft"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &got).unwrap();
        }
        assert_eq!(
            got,
            std::fs::read_to_string(golden).unwrap(),
            "rerun with UPDATE_GOLDEN=1 to accept"
        );
    }

    #[test]
    fn endpoint_changes_touch_only_port_maps() {
        let a = net('a', "10.1.0.0/24", false, true);
        let e = endpoint(
            &a,
            "10.1.0.2",
            vec![PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            }],
        );
        let changes = render_nft::changes(&endpoint_changes(&e, &a, true));
        let text = super::super::ruleset::render_changes(&changes);
        assert_eq!(text, "add element inet wasmnet pub4 { tcp . 8080 : 10.1.0.2 . 80 }\nadd element inet wasmnet pub6 { tcp . 8080 : fd00::2 . 80 }\n");
        let none = endpoint(&a, "10.1.0.3", vec![]);
        assert!(
            endpoint_changes(&none, &a, true).is_empty(),
            "no ports, icc on: no firewall work"
        );
        let b = net('b', "10.2.0.0/24", false, false);
        let changes = endpoint_changes(&endpoint(&b, "10.2.0.2", vec![]), &b, false);
        let text = super::super::ruleset::render_changes(&render_nft::changes(&changes));
        assert_eq!(
            text,
            format!(
                "delete element bridge wasmnet noicc_ports {{ \"wnv{}\" }}\n",
                "e".repeat(12)
            )
        );
    }
}
