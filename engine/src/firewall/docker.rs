//! Docker's default semantics as a ruleset: endpoints of one network talk freely (unless
//! `icc=false`), networks are isolated from each other, non-internal networks masquerade
//! outbound, internal ones have no way out, and published ports are DNATed from the host's
//! addresses (including from the host itself and from other sandboxes).
//!
//! Layout for scale: per-network dispatch through a verdict map keyed by bridge name, and
//! per-endpoint state (published ports) as map elements, so a packet costs a few hash lookups
//! and an endpoint joining costs element updates, never a chain rebuild.

use std::net::IpAddr;

use super::policy::{self, Plan};
use super::ruleset::{Change, Family, Ruleset, Table};

use crate::model::{option_true, Endpoint, Network, PortMapping};
use crate::names::{self, network_chain};
// Where the engine's tests found them before `crate::names`.
pub use crate::names::{bridge_name, veth_name, TABLE};

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// The whole ruleset for these networks and endpoints, under the policies' `plan` (Docker's
/// semantics alone when it is empty). `members` are the endpoints groups may hold: these and
/// those on other hosts.
pub fn compile(
    networks: &[&Network],
    endpoints: &[&Endpoint],
    members: &[&Endpoint],
    plan: &Plan,
) -> Ruleset {
    Ruleset {
        tables: vec![
            inet_table(networks, endpoints, members, plan),
            bridge_table(networks, endpoints),
        ],
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
) -> Table {
    let mut t = Table::new(Family::Inet, TABLE);
    add_sets(&mut t, networks, endpoints, plan);
    add_filter_chains(&mut t, networks, members, plan);
    add_nat_chains(&mut t, networks, plan);
    t
}

/// The sets and maps the chains look up: the bridges, the subnets that masquerade, the
/// dispatch from a bridge to its network's chain, and the published ports.
fn add_sets(t: &mut Table, networks: &[&Network], endpoints: &[&Endpoint], plan: &Plan) {
    let bridges: Vec<String> = networks
        .iter()
        .map(|n| quoted(&bridge_name(&n.id)))
        .collect();
    let masq = |v6: bool| -> Vec<String> {
        networks
            .iter()
            .filter(|n| nat_of(n, plan) == (true, None))
            .filter_map(|n| if v6 { n.ipv6.as_ref() } else { Some(&n.ipv4) })
            .map(|c| c.subnet.to_string())
            .collect()
    };
    t.set(names::SET_BRIDGES, "type ifname;", bridges);
    t.set(
        names::SET_MASQ4,
        "type ipv4_addr; flags interval;",
        masq(false),
    );
    t.set(
        names::SET_MASQ6,
        "type ipv6_addr; flags interval;",
        masq(true),
    );
    let dispatch = networks
        .iter()
        .map(|n| {
            format!(
                "{} : jump {}",
                quoted(&bridge_name(&n.id)),
                network_chain(&n.id)
            )
        })
        .collect();
    t.set(names::MAP_FROM_BRIDGE, "type ifname : verdict;", dispatch);
    for (name, spec) in PORT_MAPS {
        let elements = endpoints
            .iter()
            .flat_map(|e| port_elements(e))
            .filter(|(m, _)| m == &name)
            .map(|(_, el)| el)
            .collect();
        t.set(name, spec, elements);
    }
}

/// The forward hook, each network's chain (Docker's rules, or its policies'), and the
/// policies' own chains and sets.
fn add_filter_chains(t: &mut Table, networks: &[&Network], members: &[&Endpoint], plan: &Plan) {
    t.chain(
        names::CHAIN_FORWARD,
        Some("type filter hook forward priority filter; policy accept;"),
        vec![
            "ct state established,related counter accept".into(),
            "ct state invalid counter drop".into(),
            // Published ports: DNATed connections into a network are allowed from anywhere.
            "ct status dnat oifname @bridges counter accept".into(),
            "iifname @bridges counter iifname vmap @from_bridge".into(),
            // Nothing else enters a network unasked.
            "oifname @bridges counter drop".into(),
        ],
    );
    for n in networks {
        let rules = match plan.governs(&n.id) {
            Some(applied) => policy::network_rules(n, applied),
            None => network_rules(n),
        };
        t.chain(&network_chain(&n.id), None, rules);
    }
    policy::add_to(t, networks, members, plan);
}

/// Published ports DNATed on the way in (and on the way out of the host itself); hairpin,
/// loopback, SNAT and masquerade on the way out.
fn add_nat_chains(t: &mut Table, networks: &[&Network], plan: &Plan) {
    let publish = "fib daddr type local meta l4proto { tcp, udp, sctp } counter jump publish";
    t.chain(
        names::CHAIN_PREROUTING,
        Some("type nat hook prerouting priority dstnat; policy accept;"),
        vec![publish.into()],
    );
    t.chain(
        names::CHAIN_OUTPUT,
        Some("type nat hook output priority -100; policy accept;"),
        vec![publish.into()],
    );
    t.chain(
        names::CHAIN_PUBLISH,
        None,
        vec![
            "dnat ip addr . port to ip daddr . meta l4proto . th dport map @pub4_on".into(),
            "dnat ip addr . port to meta l4proto . th dport map @pub4".into(),
            "dnat ip6 addr . port to ip6 daddr . meta l4proto . th dport map @pub6_on".into(),
            "dnat ip6 addr . port to meta l4proto . th dport map @pub6".into(),
        ],
    );
    let mut post = vec![
        // Hairpin: a sandbox reaching a published port through the host must see replies
        // come back through the host too.
        "ct status dnat iifname @bridges oifname @bridges counter masquerade".to_string(),
        // From the host's loopback to a published port (needs route_localnet on the bridge).
        "ip saddr 127.0.0.0/8 oifname @bridges counter masquerade".into(),
    ];
    post.extend(networks.iter().filter_map(|n| snat_rule(n, plan)));
    post.push("ip saddr @masq4 oifname != @bridges counter masquerade".into());
    post.push("ip6 saddr @masq6 oifname != @bridges counter masquerade".into());
    t.chain(
        names::CHAIN_POSTROUTING,
        Some("type nat hook postrouting priority srcnat; policy accept;"),
        post,
    );
}

/// A policy's SNAT for a network's subnet of the address's family.
fn snat_rule(n: &Network, plan: &Plan) -> Option<String> {
    let (_, to) = nat_of(n, plan);
    let to = to?;
    let (fam, subnet) = match to {
        IpAddr::V4(_) => ("ip", n.ipv4.subnet),
        IpAddr::V6(_) => ("ip6", n.ipv6.as_ref()?.subnet),
    };
    Some(format!(
        "{fam} saddr {subnet} oifname != @bridges counter snat {fam} to {to}"
    ))
}

/// Packets leaving one network's bridge.
fn network_rules(n: &Network) -> Vec<String> {
    let bridge = quoted(&bridge_name(&n.id));
    let icc = if option_true(n, "icc", true) {
        "accept"
    } else {
        "drop"
    };
    let mut rules = vec![
        // Routed back into the same bridge (only seen with br_netfilter on).
        format!("oifname {bridge} counter {icc}"),
        // Other networks are isolated.
        "oifname @bridges counter drop".into(),
    ];
    rules.push(if n.internal {
        "counter drop".into()
    } else {
        "counter accept".into()
    });
    rules
}

const PORT_MAPS: [(&str, &str); 4] = [
    (
        names::MAP_PUB4,
        "type inet_proto . inet_service : ipv4_addr . inet_service;",
    ),
    (
        names::MAP_PUB4_ON,
        "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
    ),
    (
        names::MAP_PUB6,
        "type inet_proto . inet_service : ipv6_addr . inet_service;",
    ),
    (
        names::MAP_PUB6_ON,
        "type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;",
    ),
];

/// The map elements that publish an endpoint's ports: (map, element).
fn port_elements(e: &Endpoint) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for p in &e.ports {
        let PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        } = p;
        let target = |ip: IpAddr| format!("{ip} . {container_port}");
        match host_ip {
            None => {
                if let Some(ip) = e.ipv4 {
                    out.push((
                        names::MAP_PUB4,
                        format!("{protocol} . {host_port} : {}", target(ip)),
                    ));
                }
                if let Some(ip) = e.ipv6 {
                    out.push((
                        names::MAP_PUB6,
                        format!("{protocol} . {host_port} : {}", target(ip)),
                    ));
                }
            }
            Some(h) => match (h, e.ipv4, e.ipv6) {
                (IpAddr::V4(_), Some(ip), _) => out.push((
                    names::MAP_PUB4_ON,
                    format!("{h} . {protocol} . {host_port} : {}", target(ip)),
                )),
                (IpAddr::V6(_), _, Some(ip)) => out.push((
                    names::MAP_PUB6_ON,
                    format!("{h} . {protocol} . {host_port} : {}", target(ip)),
                )),
                _ => {}
            },
        }
    }
    out
}

/// The element changes when an endpoint of network `n` joins (`add`) or leaves.
pub fn endpoint_changes(e: &Endpoint, n: &Network, add: bool) -> Vec<Change> {
    let ports = port_elements(e)
        .into_iter()
        .map(|(set, element)| (Family::Inet, set, element));
    let isolated = (!option_true(n, "icc", true)).then(|| {
        (
            Family::Bridge,
            names::SET_NOICC_PORTS,
            quoted(&veth_name(&e.id)),
        )
    });
    ports
        .chain(isolated)
        .map(|(family, set, element)| Change::of(add, family, set, element))
        .collect()
}

fn bridge_table(networks: &[&Network], endpoints: &[&Endpoint]) -> Table {
    let mut t = Table::new(Family::Bridge, TABLE);
    let noicc: Vec<&str> = networks
        .iter()
        .filter(|n| !option_true(n, "icc", true))
        .map(|n| n.id.as_str())
        .collect();
    let ports = endpoints
        .iter()
        .filter(|e| noicc.contains(&e.network_id.as_str()))
        .map(|e| quoted(&veth_name(&e.id)))
        .collect();
    // The host ends of the veths of icc=false networks. (Keyed by port, not by bridge: this
    // kernel's bridge family has no `meta ibrname`.)
    t.set(names::SET_NOICC_PORTS, "type ifname;", ports);
    // Frames between two ports of an icc=false bridge, whatever br_netfilter says.
    t.chain(
        names::CHAIN_FORWARD,
        Some("type filter hook forward priority filter; policy accept;"),
        vec!["iifname @noicc_ports oifname @noicc_ports counter drop".into()],
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{endpoint, net, sample_ports};
    use crate::model::Protocol;

    /// The default ruleset for one open network with a published port, and one internal
    /// icc=false network, is exactly this (a golden file).
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
        let text = super::super::ruleset::render_changes(&endpoint_changes(&e, &a, true));
        assert_eq!(text, "add element inet wasmnet pub4 { tcp . 8080 : 10.1.0.2 . 80 }\nadd element inet wasmnet pub6 { tcp . 8080 : fd00::2 . 80 }\n");
        let none = endpoint(&a, "10.1.0.3", vec![]);
        assert!(
            endpoint_changes(&none, &a, true).is_empty(),
            "no ports, icc on: no firewall work"
        );
        let b = net('b', "10.2.0.0/24", false, false);
        let text = super::super::ruleset::render_changes(&endpoint_changes(
            &endpoint(&b, "10.2.0.2", vec![]),
            &b,
            false,
        ));
        assert_eq!(
            text,
            format!(
                "delete element bridge wasmnet noicc_ports {{ \"wnv{}\" }}\n",
                "e".repeat(12)
            )
        );
    }
}
