//! Test guest: `evaluate` panics; with panic = abort that is an `unreachable` trap.

use wasmnet_policy_sdk::*;

pub struct Trap;

impl Guest for Trap {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        panic!("trap: evaluate called with {} networks", networks.len())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(Trap);
