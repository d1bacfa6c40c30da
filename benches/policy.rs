//! Scenario benchmark for policies on the real kernel (run as root, not part of CI):
//!   cargo bench --bench policy
//! In a throwaway "host" namespace with 1,000 networks and 10,000 endpoints (real sandboxes),
//! through the REST API, it measures:
//! - attaching a policy globally: every network evaluated, every endpoint classified, the
//!   ruleset compiled and applied in one nft transaction (and the same as a dry run, without
//!   the apply);
//! - what an endpoint joining under the active policy adds to connect: the median time to
//!   reachable of 200 connects before the policy is attached and 200 after;
//! - reads while the attach runs: `GET /healthz` and `GET /v1/networks` from another client,
//!   one after the other for as long as the attach takes, their p50 and p99.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    let socket2 = server.socket.clone();
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
        let (_, reads) = reads_during(&socket2, || post("/v1/policies/tiers/attach", json!({})));
        let attach = start.elapsed().as_secs_f64();
        let mut after = connects(NETWORKS + 1, PROBES);
        format!(
            "setup: {NETWORKS} networks, {} endpoints in {setup:.0} s\n\
             attach globally (evaluate + classify all + compile + apply): {attach:.3} s\n\
             dry run (evaluate + classify all + compile, no apply): {dry:.3} s\n\
             connect to reachable, median of {PROBES}: {:.2} ms without a policy, {:.2} ms under it\n\
             {reads}",
            NETWORKS * PER_NETWORK,
            median(&mut before),
            median(&mut after)
        )
    });
    println!("backend: {backend}\n{report}");
}

/// Runs `f` while another client reads `/healthz` and `/v1/networks` in turn (over the same
/// socket, on a thread of its own), and reports their latencies.
fn reads_during<T>(socket: &Path, f: impl FnOnce() -> T) -> (T, String) {
    let stop = Arc::new(AtomicBool::new(false));
    let (socket, done) = (socket.to_path_buf(), stop.clone());
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = wasmnet_web::client::Client::new(wasmnet_web::client::Target::Unix(socket), None);
        let mut took: [Vec<f64>; 2] = [vec![], vec![]];
        while !done.load(Ordering::Relaxed) {
            for (i, path) in ["/healthz", "/v1/networks"].iter().enumerate() {
                let start = Instant::now();
                rt.block_on(c.get(path)).unwrap();
                took[i].push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        took
    });
    let out = f();
    stop.store(true, Ordering::Relaxed);
    let mut took = reader.join().unwrap();
    let mut line = String::from("reads during the attach:");
    for (i, path) in ["/healthz", "/v1/networks"].iter().enumerate() {
        let v = &mut took[i];
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p99 = v[(v.len() * 99 / 100).min(v.len() - 1)];
        let p50 = v[v.len() / 2];
        line += &format!(
            " {path} p50 {p50:.2} ms, p99 {p99:.2} ms ({} reads);",
            v.len()
        );
    }
    (out, line)
}
