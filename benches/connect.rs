//! Scenario benchmark for whole operations on the real kernel (run as root, not part of CI):
//!   cargo bench --bench connect
//! In a throwaway "host" namespace it measures, through the REST API:
//! - connect latency, from the POST to the endpoint answering (a TCP connect from the host to
//!   its address is refused by its kernel: it is up and routed), without and with a published
//!   port, and how it grows from the 10th to the 1,000th endpoint of one network: three fresh
//!   hosts each fill one network to 1,000 endpoints, and the 20 connects around the 10th
//!   (1-20) and before the 1,000th (981-1000) of each are pooled, 60 a side, so one hiccup of
//!   a 2-core machine does not decide the ratio (each host's own ratio is printed too);
//! - restart of the daemon with 1,000 endpoints (kill -9, then until it serves again).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use support::{median, reachable};

const ENDPOINTS: usize = 1000;
const ROUNDS: usize = 3;
const WITH_PORTS: usize = 200;

/// (API call, to reachable) in ms, per connect.
type Timings = Vec<(f64, f64)>;

/// On a fresh host: `ENDPOINTS` connects to one network, then (if `ports`) `WITH_PORTS`
/// connects with a published port to a second one. Returns the server for the restart.
fn round(backend: &str, ports: bool) -> (Server, Timings, Timings) {
    let server = Server::start(&["--firewall-backend", backend]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let extra = if ports { WITH_PORTS } else { 0 };
    rt.block_on(async {
        // A Linux bridge takes at most 1,023 ports: published ports go to a second network.
        for (name, subnet) in [("bench", "10.40.0.0/16"), ("bench2", "10.41.0.0/16")] {
            let net = json!({"name": name, "ipv4": {"subnet": subnet}});
            c.post("/v1/networks", &net).await.unwrap();
        }
        for i in 0..ENDPOINTS + extra {
            c.post("/v1/sandboxes", &json!({"name": format!("s{i}")}))
                .await
                .unwrap();
        }
    });
    // The timing client runs inside the host namespace, so it can also check reachability.
    let socket = server.socket.clone();
    let (plain, ported) = common::in_netns(server.host.netns_path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = wasmnet_web::client::Client::new(wasmnet_web::client::Target::Unix(socket), None);
        let connect = |i: usize, ports: serde_json::Value| {
            let network = if i < ENDPOINTS { "bench" } else { "bench2" };
            let start = Instant::now();
            let e = rt
                .block_on(c.post(
                    "/v1/endpoints",
                    &json!({"network": network, "sandbox": format!("s{i}"), "ports": ports}),
                ))
                .unwrap();
            let api = start.elapsed().as_secs_f64() * 1e3;
            assert!(
                reachable(e["ipv4"].as_str().unwrap(), start + Duration::from_secs(5)),
                "endpoint {i} never answered"
            );
            (api, start.elapsed().as_secs_f64() * 1e3)
        };
        let plain: Timings = (0..ENDPOINTS).map(|i| connect(i, json!([]))).collect();
        let ported: Timings = (0..extra)
            .map(|i| {
                connect(
                    ENDPOINTS + i,
                    json!([{"host_port": 20000 + i, "container_port": 80}]),
                )
            })
            .collect();
        (plain, ported)
    });
    (server, plain, ported)
}

fn main() {
    let backend = std::env::var("WASMNET_FIREWALL_BACKEND").unwrap_or_else(|_| "nftables".into());
    let (server, first, ported) = round(&backend, true);
    let mut rounds = vec![first];
    let host = server.crash();
    let start = Instant::now();
    let server = Server::start_in(host, &["--firewall-backend", &backend]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let serving = rt.block_on(server.client().get("/healthz")).unwrap();
    let restart = start.elapsed().as_secs_f64();
    drop(server);
    for _ in 1..ROUNDS {
        rounds.push(round(&backend, false).1);
    }

    let reach = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let api = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    let all: Timings = rounds.concat();
    println!("backend: {backend}");
    println!("connect, no published port: median {:.2} ms to reachable ({:.2} ms for the API call), {ROUNDS} x {ENDPOINTS} endpoints", median(&mut reach(&all)), median(&mut api(&all)));
    println!("connect, one published port: median {:.2} ms to reachable ({:.2} ms API), {WITH_PORTS} endpoints", median(&mut reach(&ported)), median(&mut api(&ported)));
    for (what, f) in [
        ("to reachable", &reach as &dyn Fn(&[(f64, f64)]) -> Vec<f64>),
        ("API call", &api),
    ] {
        let (mut early, mut late, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rounds {
            let (e, l) = (f(&r[..20]), f(&r[ENDPOINTS - 20..]));
            ratios.push(format!(
                "{:.2}",
                median(&mut l.clone()) / median(&mut e.clone())
            ));
            early.extend(e);
            late.extend(l);
        }
        let (early, late) = (median(&mut early), median(&mut late));
        println!("flatness ({what}): endpoints 1-20 median {early:.2} ms, {}-{ENDPOINTS} median {late:.2} ms, ratio {:.2} (each host: {})", ENDPOINTS - 19, late / early, ratios.join(", "));
    }
    println!(
        "restart with {} endpoints: reconciled and serving in {restart:.2} s",
        serving["counts"]["endpoints"]
    );
}
