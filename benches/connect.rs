//! Scenario benchmark for whole operations on the real kernel (run as root, not part of CI):
//!   cargo bench --bench connect
//! In a throwaway "host" namespace it measures, through the REST API:
//! - connect latency, from the POST to the endpoint answering (a TCP connect from the host to
//!   its address is refused by its kernel: it is up and routed), without and with a published
//!   port, and how it grows from the 10th to the 1,000th endpoint of one network;
//! - restart of the daemon with 1,000 endpoints (kill -9, then until it serves again).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use support::{median, reachable};

const ENDPOINTS: usize = 1000;
const WITH_PORTS: usize = 200;

fn main() {
    let backend = std::env::var("WASMNET_FIREWALL_BACKEND").unwrap_or_else(|_| "nftables".into());
    let server = Server::start(&["--firewall-backend", &backend]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    rt.block_on(async {
        // A Linux bridge takes at most 1,023 ports: the published-port round uses a second network.
        c.post(
            "/v1/networks",
            &json!({"name": "bench", "ipv4": {"subnet": "10.40.0.0/16"}}),
        )
        .await
        .unwrap();
        c.post(
            "/v1/networks",
            &json!({"name": "bench2", "ipv4": {"subnet": "10.41.0.0/16"}}),
        )
        .await
        .unwrap();
        for i in 0..ENDPOINTS + WITH_PORTS {
            c.post("/v1/sandboxes", &json!({"name": format!("s{i}")}))
                .await
                .unwrap();
        }
    });
    // The timing client runs inside the host namespace, so it can also check reachability.
    let socket = server.socket.clone();
    let host = server.host.netns_path();
    let (plain, ported) = common::in_netns(host, move || {
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
        let plain: Vec<(f64, f64)> = (0..ENDPOINTS).map(|i| connect(i, json!([]))).collect();
        let ported: Vec<(f64, f64)> = (0..WITH_PORTS)
            .map(|i| {
                connect(
                    ENDPOINTS + i,
                    json!([{"host_port": 20000 + i, "container_port": 80}]),
                )
            })
            .collect();
        (plain, ported)
    });
    let reach = |v: &[(f64, f64)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    let api = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    println!("backend: {backend}");
    println!("connect, no published port: median {:.2} ms to reachable ({:.2} ms for the API call), {ENDPOINTS} endpoints", median(&mut reach(&plain)), median(&mut api(&plain)));
    println!("connect, one published port: median {:.2} ms to reachable ({:.2} ms API), endpoints {}..{}", median(&mut reach(&ported)), median(&mut api(&ported)), ENDPOINTS + 1, ENDPOINTS + WITH_PORTS);
    for (what, f) in [
        ("to reachable", &reach as &dyn Fn(&[(f64, f64)]) -> Vec<f64>),
        ("API call", &api),
    ] {
        let early = median(&mut f(&plain[..20]));
        let late = median(&mut f(&plain[ENDPOINTS - 20..]));
        println!("flatness ({what}): endpoints 1-20 median {early:.2} ms, {}-{ENDPOINTS} median {late:.2} ms, ratio {:.2}", ENDPOINTS - 19, late / early);
    }

    let host = server.crash();
    let start = Instant::now();
    let server = Server::start_in(host, &["--firewall-backend", &backend]);
    let serving = rt.block_on(server.client().get("/healthz")).unwrap();
    println!(
        "restart with {} endpoints: reconciled and serving in {:.2} s",
        serving["counts"]["endpoints"],
        start.elapsed().as_secs_f64()
    );
}
