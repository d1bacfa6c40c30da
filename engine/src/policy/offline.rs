//! `wasmnet policy test`: one policy run offline against a fixture of networks and endpoints,
//! showing its decisions and the nft rules they become. Nothing touches a server or the kernel.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;
use wasmnet_policy::ir::PortDecision;
use wasmnet_policy::Runtime;

use super::{Attachment, Inputs, Loaded, Plan, Policy, PolicySet};
use crate::firewall::docker;
use crate::model::{Endpoint, IpConfig, Labels, Network, Options, PortMapping, PortRequest};

/// A fixture: networks by name and subnet, endpoints by network and sandbox name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub networks: Vec<FixtureNetwork>,
    #[serde(default)]
    pub endpoints: Vec<FixtureEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureNetwork {
    pub name: String,
    pub subnet: IpNet,
    #[serde(default)]
    pub subnet6: Option<IpNet>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub options: Options,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEndpoint {
    pub network: String,
    pub sandbox: String,
    pub ipv4: IpAddr,
    #[serde(default)]
    pub ipv6: Option<IpAddr>,
    #[serde(default)]
    pub labels: Labels,
    /// Docker's `-p` syntax: `8080:80`, `127.0.0.1:53:53/udp`.
    #[serde(default)]
    pub ports: Vec<String>,
}

/// A stable 64-hex id for a fixture name.
fn id_of(kind: &str, name: &str) -> String {
    (0u32..8)
        .map(|seed| {
            let h = format!("{kind}/{name}/{seed}")
                .bytes()
                .fold(0x811c9dc5u32, |h, b| {
                    (h ^ b as u32).wrapping_mul(0x01000193)
                });
            format!("{h:08x}")
        })
        .collect()
}

fn network(f: &FixtureNetwork) -> Network {
    let config = |subnet: IpNet| IpConfig {
        gateway: subnet.hosts().next().unwrap_or(subnet.addr()),
        subnet,
        ip_range: None,
    };
    Network {
        id: id_of("network", &f.name),
        name: f.name.clone(),
        driver: Default::default(),
        ipv4: config(f.subnet),
        ipv6: f.subnet6.map(config),
        internal: f.internal,
        labels: f.labels.clone(),
        options: f.options.clone(),
        created: String::new(),
    }
}

fn endpoint(f: &FixtureEndpoint, n: &Network, i: usize) -> Result<Endpoint, String> {
    let ports = f
        .ports
        .iter()
        .map(|p| {
            let r: PortRequest = p.parse()?;
            Ok(PortMapping {
                host_ip: r.host_ip,
                host_port: if r.host_port == 0 {
                    r.container_port
                } else {
                    r.host_port
                },
                container_port: r.container_port,
                protocol: r.protocol,
            })
        })
        .collect::<Result<_, String>>()
        .map_err(|e| format!("endpoints[{i}].ports: {e}"))?;
    Ok(Endpoint {
        id: id_of("endpoint", &format!("{}/{}", f.network, f.sandbox)),
        network_id: n.id.clone(),
        network_name: n.name.clone(),
        sandbox_id: id_of("sandbox", &f.sandbox),
        sandbox_name: f.sandbox.clone(),
        interface: "eth0".into(),
        mac: String::new(),
        ipv4: Some(f.ipv4),
        ipv6: f.ipv6,
        aliases: vec![],
        ports,
        labels: f.labels.clone(),
        created: String::new(),
    })
}

/// Runs the policy (as if attached globally) on the fixture; returns the report to print.
pub fn test(wasm: &[u8], fixture: &Fixture) -> Result<String, String> {
    let networks: Vec<Network> = fixture.networks.iter().map(network).collect();
    let by_name: HashMap<&str, &Network> = networks.iter().map(|n| (n.name.as_str(), n)).collect();
    let endpoints = endpoints(fixture, &by_name)?;
    let (_runtime, policies, version) = under_test(wasm)?;
    let no_labels = |_: &str| Labels::new();
    let inputs = Inputs {
        networks: networks.iter().collect(),
        endpoints: endpoints.iter().collect(),
        sandbox_labels: &no_labels,
        members: None,
    };
    let plan = policies
        .compute(&inputs, &[])
        .map_err(|e| crate::Error::from(e).to_string())?;
    let mut out = format!("policy built against wasmnet:policy@{version}\n\n");
    write_networks(&mut out, &networks, &plan);
    write_endpoints(&mut out, &endpoints, &by_name, &policies, &plan)?;
    let endpoints: Vec<&Endpoint> = endpoints.iter().collect();
    let rules = docker::compile(
        &networks.iter().collect::<Vec<_>>(),
        &endpoints,
        &endpoints,
        &plan,
    );
    let _ = write!(out, "\nnftables:\n{}", rules.render());
    Ok(out)
}

/// The fixture's endpoints, each on its network (which the fixture must name).
fn endpoints(
    fixture: &Fixture,
    by_name: &HashMap<&str, &Network>,
) -> Result<Vec<Endpoint>, String> {
    fixture
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let n = by_name.get(f.network.as_str()).ok_or_else(|| {
                format!(
                    "endpoints[{i}].network: no network {:?} in the fixture",
                    f.network
                )
            })?;
            endpoint(f, n, i)
        })
        .collect()
}

/// The module loaded as the one policy, attached globally; with the version of
/// `wasmnet:policy` it was built against.
fn under_test(wasm: &[u8]) -> Result<(Runtime, PolicySet, String), String> {
    let runtime = Runtime::new(Default::default(), None).map_err(|e| e.to_string())?;
    let module = runtime.load(wasm).map_err(|e| e.to_string())?;
    let policy = Policy {
        id: id_of("policy", "under-test"),
        name: "under-test".into(),
        description: String::new(),
        sha256: module.sha256.clone(),
        size: module.size,
        version: module.version.clone(),
        created: String::new(),
        attachments: vec![Attachment {
            network_id: None,
            priority: 0,
            audit: false,
            created: String::new(),
        }],
        last_error: None,
    };
    // The runtime goes back with the policies: its epoch thread enforces their time limits.
    let mut policies = PolicySet::default();
    let version = policy.version.clone();
    policies.loaded.insert(
        policy.id.clone(),
        Arc::new(Loaded {
            policy,
            module: Some(Arc::new(module)),
            shared: false,
        }),
    );
    Ok((runtime, policies, version))
}

/// Each network's decisions: its rules, its defaults and its NAT.
fn write_networks(out: &mut String, networks: &[Network], plan: &Plan) {
    for n in networks {
        let _ = writeln!(out, "network {} ({})", n.name, n.ipv4.subnet);
        for a in plan.governs(&n.id).unwrap_or_default() {
            let d = &a.decision;
            for r in &d.rules {
                let _ = writeln!(out, "  rule     {r}");
            }
            let show = |v: Option<wasmnet_policy::ir::Verdict>| {
                v.map_or("(docker)".to_string(), |v| v.to_string())
            };
            let _ = writeln!(
                out,
                "  internal {}  egress {}",
                show(d.default_internal),
                show(d.default_egress)
            );
            let _ = writeln!(
                out,
                "  nat      masquerade {}{}",
                d.masquerade
                    .map_or("(docker)".to_string(), |m| m.to_string()),
                d.snat.map_or(String::new(), |a| format!(", snat to {a}"))
            );
        }
    }
}

/// Each endpoint's groups and what becomes of its published ports.
fn write_endpoints(
    out: &mut String,
    endpoints: &[Endpoint],
    by_name: &HashMap<&str, &Network>,
    policies: &PolicySet,
    plan: &Plan,
) -> Result<(), String> {
    for e in endpoints {
        let groups: Vec<&str> = plan
            .members
            .get(&e.id)
            .into_iter()
            .flatten()
            .map(|(_, g)| g.as_str())
            .collect();
        let _ = writeln!(
            out,
            "endpoint {} on {}: groups [{}]",
            e.sandbox_name,
            e.network_name,
            groups.join(", ")
        );
        let n = by_name[e.network_name.as_str()];
        let decided = policies
            .classify(plan, e, n, &Labels::new())
            .map_err(|err| crate::Error::from(err).to_string())?;
        for (i, p) in e.ports.iter().enumerate() {
            let d = decided
                .first()
                .map_or(&PortDecision::Honour, |(_, d)| &d.ports[i]);
            let _ = writeln!(out, "  port {}/{}: {d}", p.host_port, p.protocol);
        }
    }
    Ok(())
}
