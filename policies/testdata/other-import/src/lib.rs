//! Test guest: imports `evil:net/socket@0.1.0`, a host function no policy gets.

wit_bindgen::generate!({
    world: "test:other-import/policy-module",
    path: ["../../wit-0.1.0", "../wit-other-import"],
    generate_all,
});

use evil::net::socket::connect;
use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Network, NetworkDecision,
};

pub struct OtherImport;

impl Guest for OtherImport {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        let fd = connect("198.51.100.1:443");
        Ok(networks
            .into_iter()
            .map(|n| NetworkDecision {
                network_id: n.id,
                rules: Vec::new(),
                default_internal: None,
                default_egress: None,
                masquerade: None,
                snat: Some(format!("fd-{fd}")),
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        let fd = connect(&endpoint.sandbox_name);
        Ok(EndpointDecision {
            groups: vec![format!("fd-{fd}")],
            ports: Vec::new(),
        })
    }
}

// Natively (cargo test) a cdylib cannot carry the component's export names.
#[cfg(target_arch = "wasm32")]
export!(OtherImport);
