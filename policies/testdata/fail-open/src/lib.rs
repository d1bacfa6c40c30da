//! Test guest: for each network, the answer its `attack` label names, each of which wasmnet
//! used to ignore without a word (and so enforce something else than the policy said):
//! `missing-network` (a drop rule naming a network that does not exist), `twice` (two
//! decisions for the network), `foreign` (a decision for a network id it was not given),
//! `snat-v6` (SNAT to an IPv6 address). Without the label it drops traffic between the
//! network's endpoints.

use wasmnet_policy_sdk::*;

pub struct FailOpen;

fn answer(n: &Network) -> Vec<NetworkDecision> {
    let drop = NetworkDecision::new(&n.id).default_internal(Verdict::Drop);
    match n.label("attack") {
        Some("missing-network") => {
            vec![drop.rule(Rule::drop(Peer::Any, Peer::network("no-such-network")))]
        }
        Some("twice") => vec![
            drop,
            NetworkDecision::new(&n.id).default_internal(Verdict::Accept),
        ],
        Some("foreign") => vec![NetworkDecision::new("f".repeat(64))],
        Some("snat-v6") => vec![drop.snat("fd00:dead::1")],
        _ => vec![drop],
    }
}

impl Guest for FailOpen {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks.iter().flat_map(answer).collect())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(FailOpen);
