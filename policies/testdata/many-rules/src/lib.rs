//! Test guest: `evaluate` returns 20_000 rules per network.

use wasmnet_policy_sdk::*;

/// Rules per network.
pub const RULES: usize = 20_000;

pub struct Output;

impl Guest for Output {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                let mut d = NetworkDecision::new(&n.id);
                d.rules = (0..RULES)
                    .map(|_| Rule::accept(Peer::cidr("10.0.0.0/8"), Peer::Any))
                    .collect();
                d
            })
            .collect())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(Output);
