//! Test guest: built against `wasmnet:policy@0.1.0` (`../../wit-0.1.0`), the contract before
//! the `fqdn` peer, as every policy built before 0.2.0 was. Decides like `egress-allowlist`
//! (DNS and the CIDRs of the network label `wasmnet.egress-allow` out, the rest of the world
//! dropped), so a host that loads it can check it still enforces.

wit_bindgen::generate!({
    world: "policy-module",
    path: "../../wit-0.1.0",
});

use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Network, NetworkDecision, Peer, PortRange, Protocol, Rule,
    Verdict,
};

pub struct V01Egress;

fn rule(to: Peer, protocol: Option<Protocol>, ports: Vec<PortRange>) -> Rule {
    Rule {
        from: Peer::Any,
        to,
        protocol,
        ports,
        verdict: Verdict::Accept,
        log: false,
    }
}

impl Guest for V01Egress {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .into_iter()
            .map(|n| {
                let dns = || {
                    vec![PortRange {
                        first: 53,
                        last: 53,
                    }]
                };
                let mut rules = vec![
                    rule(Peer::Any, Some(Protocol::Udp), dns()),
                    rule(Peer::Any, Some(Protocol::Tcp), dns()),
                ];
                let allowed = n.labels.iter().find(|l| l.key == "wasmnet.egress-allow");
                for cidr in allowed
                    .map(|l| l.value.as_str())
                    .unwrap_or_default()
                    .split(',')
                {
                    if !cidr.trim().is_empty() {
                        rules.push(rule(Peer::Cidr(cidr.trim().into()), None, Vec::new()));
                    }
                }
                NetworkDecision {
                    network_id: n.id,
                    rules,
                    default_internal: None,
                    default_egress: Some(Verdict::Drop),
                    masquerade: None,
                    snat: None,
                }
            })
            .collect())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision {
            groups: Vec::new(),
            ports: Vec::new(),
        })
    }
}

// Natively (cargo test) a cdylib cannot carry the component's export names.
#[cfg(target_arch = "wasm32")]
export!(V01Egress);
