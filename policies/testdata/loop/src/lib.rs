//! Test guest: `evaluate` and `classify` never return.

use core::hint::black_box;
use wasmnet_policy_sdk::*;

pub struct Loop;

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

impl Guest for Loop {
    fn evaluate(_networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        spin()
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        spin()
    }
}

wasmnet_policy_sdk::export!(Loop);
