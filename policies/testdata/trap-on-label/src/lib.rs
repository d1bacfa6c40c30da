//! Test guest: decides like `docker-default`, but `classify` panics (traps) for an endpoint
//! labelled `boom`: a policy that fails after it was uploaded and attached.

use wasmnet_policy_sdk::*;

pub struct TrapOnLabel;

impl Guest for TrapOnLabel {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                let icc = n.option("icc") != Some("false");
                NetworkDecision::new(&n.id)
                    .default_internal(if icc { Verdict::Accept } else { Verdict::Drop })
                    .default_egress(if n.internal {
                        Verdict::Drop
                    } else {
                        Verdict::Accept
                    })
                    .masquerade(!n.internal && n.option("masquerade") != Some("false"))
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        if endpoint.label("boom").is_some() {
            panic!("boom: endpoint {}", endpoint.id);
        }
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(TrapOnLabel);
