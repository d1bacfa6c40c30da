//! Test guest: decides like `label-isolation`, but every `classify` leaks 1 MiB, so a long-lived
//! instance runs into the memory limit after about 60 calls. A fresh instance is good for as
//! many again: the host must not let the leak fail every later recompute.

use wasmnet_policy_sdk::*;

pub struct LeakyClassify;

impl Guest for LeakyClassify {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                NetworkDecision::new(&n.id)
                    .rule(Rule::accept(Peer::Any, Peer::SameGroup))
                    .default_internal(Verdict::Drop)
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        let leak: &'static mut [u8] = Vec::leak(vec![1u8; 1 << 20]);
        std::hint::black_box(leak);
        Ok(EndpointDecision::new().group_opt(endpoint.label("tier").map(|v| format!("tier={v}"))))
    }
}

wasmnet_policy_sdk::export!(LeakyClassify);
