//! Scenario benchmark for the bounds of the policy runtime (run as root, not part of CI):
//!   cargo bench --bench policy_limits
//! In a throwaway "host" namespace, through the REST API, it measures:
//! - the upload of the worst module shape the static limits still accept (it compiles, then
//!   is refused for exporting no policy), and `GET /healthz` from another client meanwhile;
//! - connect at the 10th vs the 1,000th endpoint of one network under a policy that gives
//!   every endpoint a group of its own (the `amplify` test guest with `own-group`, which also
//!   has a `same-group` rule): endpoints 1-20 against 981-1000;
//! - the daemon's resident memory with 100 stored policies (not attached).

#[path = "../policies/host/tests/support/bomb.rs"]
mod bomb;
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::policy::module;
use common::Server;
use serde_json::json;
use support::median;
use wasmnet_web::client::Client;

const ENDPOINTS: usize = 1000;
const STORED: usize = 100;

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// The worst accepted compile: (upload ms, /healthz p50 and p99 ms, reads) meanwhile.
async fn worst_compile(c: &Client) -> (f64, f64, f64, usize) {
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (c, done) = (c.clone(), done.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.get("/healthz").await.unwrap();
                lat.push(ms(t));
            }
            lat
        })
    };
    let t = Instant::now();
    let refused = c
        .upload(
            "/v1/policies?name=worst",
            "application/wasm",
            bomb::worst_accepted(),
        )
        .await;
    let upload = ms(t);
    done.store(true, Ordering::Relaxed);
    assert!(refused.is_err(), "it exports no policy");
    let mut lat = reader.await.unwrap();
    let n = lat.len();
    (
        upload,
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        n,
    )
}

/// Connect times (ms) of `ENDPOINTS` endpoints joining one network, each a group of its own.
async fn own_groups(c: &Client) -> Vec<f64> {
    let net = json!({"name": "own", "labels": {"own-group": "1"},
        "ipv4": {"subnet": "10.47.0.0/16"}});
    c.post("/v1/networks", &net).await.unwrap();
    c.upload(
        "/v1/policies?name=own",
        "application/wasm",
        module("testdata/amplify"),
    )
    .await
    .unwrap();
    c.post("/v1/policies/own/attach", &json!({"network": "own"}))
        .await
        .unwrap();
    let mut times = Vec::new();
    for i in 0..ENDPOINTS {
        let name = format!("s{i}");
        c.post("/v1/sandboxes", &json!({"name": name}))
            .await
            .unwrap();
        let t = Instant::now();
        c.post("/v1/endpoints", &json!({"network": "own", "sandbox": name}))
            .await
            .unwrap();
        times.push(ms(t));
    }
    times
}

/// Resident memory of the daemon, in MiB.
fn rss_mib(server: &Server) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

async fn stored_policies(server: &Server, c: &Client) -> (f64, f64) {
    let before = rss_mib(server);
    for i in 0..STORED {
        let path = format!("/v1/policies?name=stored{i}");
        c.upload(&path, "application/wasm", module("label-isolation"))
            .await
            .unwrap();
    }
    (before, rss_mib(server))
}

fn main() {
    let server = Server::start(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let (upload, p50, p99, reads) = rt.block_on(worst_compile(&c));
    let times = rt.block_on(own_groups(&c));
    let (early, late) = (
        median(&mut times[..20].to_vec()),
        median(&mut times[ENDPOINTS - 20..].to_vec()),
    );
    let (before, after) = rt.block_on(stored_policies(&server, &c));
    println!("worst accepted compile: upload answered (refused: no policy exported) in {upload:.0} ms; /healthz meanwhile p50 {p50:.2} ms, p99 {p99:.2} ms ({reads} reads)");
    println!("connect under a group per endpoint (same-group rule): endpoints 1-20 median {early:.2} ms, 981-1000 median {late:.2} ms, ratio {:.2}", late / early);
    println!("daemon memory: {before:.0} MiB before, {after:.0} MiB with {STORED} more stored policies (not attached)");
}
