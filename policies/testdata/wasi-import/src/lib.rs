//! Test guest: also imports `wasi:random/random@0.2.0`, which a policy may not.

wit_bindgen::generate!({
    world: "test:wasi-import/policy-module",
    path: ["../../wit-0.1.0", "../wit-wasi-import"],
    generate_all,
});

use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Network, NetworkDecision,
};

pub struct WasiImport;

impl Guest for WasiImport {
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
        let n = wasi::random::random::get_random_u64();
        Ok(EndpointDecision {
            groups: vec![format!("random-{n}")],
            ports: Vec::new(),
        })
    }
}

// Natively (cargo test) a cdylib cannot carry the component's export names.
#[cfg(target_arch = "wasm32")]
export!(WasiImport);
