//! Test guest: the right functions under another major version (`wasmnet:policy/policy@0.3.0`).

wit_bindgen::generate!({
    world: "policy-module",
    path: "../wit-0.3.0",
});

use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Network, NetworkDecision,
};

pub struct WrongVersion;

impl Guest for WrongVersion {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .into_iter()
            .map(|n| NetworkDecision {
                network_id: n.id,
                rules: Vec::new(),
                default_internal: None,
                default_egress: None,
                masquerade: None,
                snat: None,
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
export!(WrongVersion);
