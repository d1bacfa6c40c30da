//! Test guest: decisions that are small as WIT but large as rules. Per network, its label
//! `rules` (default 1) `same-group` accept rules, and a drop for the rest. Per endpoint, its
//! label `groups` (default 1) groups `g0`, `g1`, ...; or, with the network label `own-group`,
//! a group of its own (its id) — a new group at every join; or, with the network label
//! `count-calls`, the group `call<n>` where n counts this instance's `classify` calls (so a
//! test sees which endpoints a change classified again).

use std::sync::atomic::{AtomicU32, Ordering};

use wasmnet_policy_sdk::*;

static CALLS: AtomicU32 = AtomicU32::new(0);

pub struct Amplify;

fn number(v: Option<&str>) -> usize {
    v.and_then(|v| v.parse().ok()).unwrap_or(1)
}

impl Guest for Amplify {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                let rules = number(n.label("rules")).min(10_000);
                (0..rules).fold(
                    NetworkDecision::new(&n.id).default_internal(Verdict::Drop),
                    |d, _| d.rule(Rule::accept(Peer::Any, Peer::SameGroup)),
                )
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, network: Network) -> Result<EndpointDecision, String> {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        if network.label("count-calls").is_some() {
            return Ok(EndpointDecision::new().group(format!("call{call}")));
        }
        if network.label("own-group").is_some() {
            return Ok(EndpointDecision::new().group(endpoint.id));
        }
        let groups = number(endpoint.label("groups")).min(64);
        Ok((0..groups).fold(EndpointDecision::new(), |d, i| d.group(format!("g{i}"))))
    }
}

wasmnet_policy_sdk::export!(Amplify);
