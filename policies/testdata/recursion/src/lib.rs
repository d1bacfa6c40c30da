//! Test guest: `evaluate` recurses without bound (not a tail call) until wasm's call stack is
//! exhausted. Only scalars are live across the call, so the frames are wasm's own: Rust's
//! shadow stack in linear memory is not what overflows (that would be an out-of-bounds access
//! rather than a stack-overflow trap).

use core::hint::black_box;
use wasmnet_policy_sdk::*;

pub struct Recursion;

#[inline(never)]
fn deeper(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        return n;
    }
    // The call's result is used after it returns, through an opaque `black_box`: no tail call.
    black_box(deeper(n + 1)) ^ n
}

impl Guest for Recursion {
    fn evaluate(_networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Err(format!("unreachable: {}", deeper(0)))
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(Recursion);
