//! Test guest: decides like `docker-default`, but `classify` spins first for as many million
//! steps as its endpoint's `spin` label says (at most 1,000): a policy that is slow but stays
//! within its time limit, so a test can watch what the daemon does while it runs.

use std::hint::black_box;

use wasmnet_policy_sdk::*;

pub struct Slow;

impl Guest for Slow {
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
        let millions: u64 = endpoint
            .label("spin")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut x = 0u64;
        for i in 0..millions.min(1000) * 1_000_000 {
            x = black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        black_box(x);
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(Slow);
