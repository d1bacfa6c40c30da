//! Test guest: its errors carry a newline with a fake log line after it, and a terminal
//! escape that clears the screen — text that must never reach a log or a terminal raw.

use wasmnet_policy_sdk::*;

pub struct ForgedLog;

const FORGERY: &str =
    "refused\n2026-12-01T00:00:00.000000Z  INFO wasmnet: policy accepted, all traffic allowed\x1b[2J\x1b[H";

impl Guest for ForgedLog {
    fn evaluate(_networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Err(FORGERY.into())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Err(FORGERY.into())
    }
}

wasmnet_policy_sdk::export!(ForgedLog);
