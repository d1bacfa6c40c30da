//! Scenario benchmark for policies on the real kernel (run as root, not part of CI):
//!   cargo bench --bench policy
//! In a throwaway "host" namespace with 1,000 networks and 10,000 endpoints (real sandboxes),
//! through the REST API, it measures:
//! - attaching a policy globally: every network evaluated, every endpoint classified, the
//!   ruleset compiled and applied in one nft transaction (and the same as a dry run, without
//!   the apply);
//! - what an endpoint joining under the active policy adds to connect: the median time to
//!   reachable of 200 connects before the policy is attached and 200 after.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use support::{median, reachable};

const NETWORKS: usize = 1000;
const PER_NETWORK: usize = 10;
const PROBES: usize = 200;

fn main() {
    let backend = std::env::var("WASMNET_FIREWALL_BACKEND").unwrap_or_else(|_| "nftables".into());
    let server = Server::start(&["--firewall-backend", &backend]);
    let socket = server.socket.clone();
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/dist/label-isolation.wasm"
    ))
    .unwrap();
    let host = server.host.netns_path();
    let report = common::in_netns(host, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = wasmnet_web::client::Client::new(wasmnet_web::client::Target::Unix(socket), None);
        let post = |path: &str, body: serde_json::Value| rt.block_on(c.post(path, &body)).unwrap();
        let start = Instant::now();
        for n in 0..NETWORKS + 2 {
            let subnet = format!("10.{}.{}.0/24", 100 + n / 256, n % 256);
            post(
                "/v1/networks",
                json!({"name": format!("n{n}"), "ipv4": {"subnet": subnet}}),
            );
        }
        for i in 0..NETWORKS * PER_NETWORK {
            post("/v1/sandboxes", json!({"name": format!("s{i}")}));
            let labels = json!({"tier": format!("t{}", i % 5)});
            post(
                "/v1/endpoints",
                json!({"network": format!("n{}", i / PER_NETWORK), "sandbox": format!("s{i}"), "labels": labels}),
            );
        }
        let setup = start.elapsed().as_secs_f64();
        let connects = |network: usize, from: usize| -> Vec<f64> {
            (from..from + PROBES)
                .map(|i| {
                    post("/v1/sandboxes", json!({"name": format!("p{i}")}));
                    let start = Instant::now();
                    let body = json!({"network": format!("n{network}"), "sandbox": format!("p{i}"), "labels": {"tier": "t1"}});
                    let e = post("/v1/endpoints", body);
                    assert!(reachable(e["ipv4"].as_str().unwrap(), start + Duration::from_secs(5)));
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect()
        };
        let mut before = connects(NETWORKS, 0);
        let url = "/v1/policies?name=tiers";
        rt.block_on(c.upload(url, "application/wasm", wasm))
            .unwrap();
        let start = Instant::now();
        post("/v1/policies/tiers/dry-run", json!({}));
        let dry = start.elapsed().as_secs_f64();
        let start = Instant::now();
        post("/v1/policies/tiers/attach", json!({}));
        let attach = start.elapsed().as_secs_f64();
        let mut after = connects(NETWORKS + 1, PROBES);
        format!(
            "setup: {NETWORKS} networks, {} endpoints in {setup:.0} s\n\
             attach globally (evaluate + classify all + compile + apply): {attach:.3} s\n\
             dry run (evaluate + classify all + compile, no apply): {dry:.3} s\n\
             connect to reachable, median of {PROBES}: {:.2} ms without a policy, {:.2} ms under it",
            NETWORKS * PER_NETWORK,
            median(&mut before),
            median(&mut after)
        )
    });
    println!("backend: {backend}\n{report}");
}
