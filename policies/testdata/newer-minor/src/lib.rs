//! Test guest: built against `wasmnet:policy@0.1.1`, a newer minor version whose `policy`
//! interface adds `describe`. Decides like `label-isolation`, so a host that loads it can check
//! its decisions.

wit_bindgen::generate!({
    world: "policy-module",
    path: "../wit-0.1.1",
});

use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Network, NetworkDecision, Peer, Rule, Verdict,
};

pub struct NewerMinor;

fn label<'a>(labels: &'a [exports::wasmnet::policy::policy::Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

impl Guest for NewerMinor {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .into_iter()
            .map(|n| NetworkDecision {
                network_id: n.id,
                rules: vec![Rule {
                    from: Peer::Any,
                    to: Peer::SameGroup,
                    protocol: None,
                    ports: Vec::new(),
                    verdict: Verdict::Accept,
                    log: false,
                }],
                default_internal: Some(Verdict::Drop),
                default_egress: None,
                masquerade: None,
                snat: None,
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, network: Network) -> Result<EndpointDecision, String> {
        let key = label(&network.labels, "wasmnet.isolation-label").unwrap_or("tier");
        Ok(EndpointDecision {
            groups: label(&endpoint.labels, key)
                .map(|value| format!("{key}={value}"))
                .into_iter()
                .collect(),
            ports: Vec::new(),
        })
    }

    fn describe() -> String {
        "label-isolation, built against wasmnet:policy@0.1.1".into()
    }
}

// Natively (cargo test) a cdylib cannot carry the component's export names.
#[cfg(target_arch = "wasm32")]
export!(NewerMinor);
