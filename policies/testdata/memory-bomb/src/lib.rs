//! Test guest: `evaluate` allocates 1 MiB chunks until memory runs out (then the allocator
//! aborts: a trap).

use core::hint::black_box;
use wasmnet_policy_sdk::*;

pub struct MemoryBomb;

impl Guest for MemoryBomb {
    fn evaluate(_networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let chunk = vec![black_box(0xa5u8); 1 << 20];
            hoard.push(black_box(chunk));
            black_box(&mut hoard);
        }
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(MemoryBomb);
