//! Scenario benchmark (root, not part of CI): services at scale, over REST on the unix socket.
//!   cargo bench --bench services          (needs iperf3 from Debian)
//! In a throwaway host namespace: NETWORKS networks, each with SERVICES services of BACKENDS
//! backends (1,000 × 10 by default: 10,000 endpoints of 1,000 sandboxes). Then:
//! 1. connect of an endpoint a service selects (it becomes a backend: the service's chain and
//!    an element change) against one no service selects, alternating, 100 each (median);
//! 2. service create and delete on a network that has services (50 each, median);
//! 3. iperf3 from a client to one backend through a service's address against the same path
//!    to the backend's address, alternating, PAIRS (5) pairs of 3 s (median ratio, spread).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::time::Instant;

use common::Server;
use serde_json::{json, Value};
use support::{iperf_for, median};
use wasmnet_web::client::Client;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().expect("a count"))
}

async fn timed<F: std::future::Future>(f: F) -> (f64, F::Output) {
    let t0 = Instant::now();
    let out = f.await;
    (t0.elapsed().as_secs_f64() * 1e3, out)
}

/// The networks, sandboxes, services and their backends.
async fn setup(c: &Client, networks: usize, services: usize, backends: usize) {
    let t0 = Instant::now();
    for n in 0..networks {
        let subnet = format!("10.{}.{}.0/21", 100 + n / 32, (n % 32) * 8);
        let body = json!({"name": format!("n{n}"), "ipv4": {"subnet": subnet}});
        c.post("/v1/networks", &body).await.unwrap();
        for k in 0..services {
            let body = json!({"name": format!("svc{n}-{k}"), "network": format!("n{n}"),
                "selector": {"app": format!("a{k}")}, "ports": [{"port": 80, "target_port": 8080}]});
            c.post("/v1/services", &body).await.unwrap();
        }
    }
    for j in 0..services * backends {
        c.post("/v1/sandboxes", &json!({"name": format!("s{j}")}))
            .await
            .unwrap();
        for n in 0..networks {
            let body = json!({"network": format!("n{n}"), "sandbox": format!("s{j}"),
                "labels": {"app": format!("a{}", j % services)}});
            c.post("/v1/endpoints", &body).await.unwrap();
        }
    }
    let counts = c.get("/healthz").await.unwrap();
    println!(
        "setup: {} endpoints, {} services in {:.1} s",
        counts["counts"]["endpoints"],
        networks * services,
        t0.elapsed().as_secs_f64()
    );
}

/// Connects of a backend against connects of no one's, alternating; (backend, other) medians.
async fn connects(c: &Client, rounds: usize) -> (f64, f64) {
    c.post("/v1/sandboxes", &json!({"name": "probe"}))
        .await
        .unwrap();
    let (mut backend, mut other) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (labels, times) in [
            (json!({"app": "a0"}), &mut backend),
            (json!({}), &mut other),
        ] {
            let body = json!({"network": "n0", "sandbox": "probe", "labels": labels});
            let (ms, e) = timed(c.post("/v1/endpoints", &body)).await;
            let id = e.unwrap()["id"].as_str().unwrap().to_string();
            times.push(ms);
            c.delete(&format!("/v1/endpoints/{id}")).await.unwrap();
        }
    }
    (median(&mut backend), median(&mut other))
}

async fn creates(c: &Client, n: usize) -> (f64, f64) {
    let (mut create, mut delete) = (Vec::new(), Vec::new());
    for i in 0..n {
        let body = json!({"name": format!("extra{i}"), "network": "n0",
            "selector": {"app": "a1"}, "ports": [{"port": 81}]});
        create.push(timed(c.post("/v1/services", &body)).await.0);
    }
    for i in 0..n {
        delete.push(timed(c.delete(&format!("/v1/services/extra{i}"))).await.0);
    }
    (median(&mut create), median(&mut delete))
}

/// A client, a one-backend service on port 5201, and the backend's namespace and address.
async fn perf_setup(c: &Client) -> (String, String, String, String) {
    let ns = |v: &Value| v["netns"].as_str().unwrap().to_string();
    let client = c
        .post("/v1/sandboxes", &json!({"name": "pc"}))
        .await
        .unwrap();
    let server = c
        .post("/v1/sandboxes", &json!({"name": "ps"}))
        .await
        .unwrap();
    let body = json!({"network": "n0", "sandbox": "pc"});
    c.post("/v1/endpoints", &body).await.unwrap();
    let body = json!({"network": "n0", "sandbox": "ps", "labels": {"app": "perf"}});
    let e = c.post("/v1/endpoints", &body).await.unwrap();
    let body = json!({"name": "perf", "network": "n0", "selector": {"app": "perf"},
        "ports": [{"port": 5201}]});
    let s = c.post("/v1/services", &body).await.unwrap();
    let ip = |v: &Value| v["ipv4"].as_str().unwrap().to_string();
    (ns(&client), ns(&server), ip(&s), ip(&e))
}

fn main() {
    let (networks, services, backends) = (
        var("NETWORKS", 10),
        var("SERVICES", 100),
        var("BACKENDS", 10),
    );
    let server = Server::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    rt.block_on(setup(&c, networks, services, backends));
    let (backend, other) = rt.block_on(connects(&c, 100));
    println!(
        "connect, REST, at {} services: as a service's backend median {backend:.2} ms, of no service {other:.2} ms ({:+.2} ms)",
        networks * services,
        backend - other
    );
    let (create, delete) = rt.block_on(creates(&c, 50));
    println!("service create, REST (50)  median {create:.2} ms; delete median {delete:.2} ms");
    let (client, backend_ns, vip, direct) = rt.block_on(perf_setup(&c));
    let (client, backend_ns) = (Path::new(&client), Path::new(&backend_ns));
    let mut ratios = Vec::new();
    for pair in 1..=var("PAIRS", 5) {
        let through = iperf_for(backend_ns, client, &vip, 3);
        let straight = iperf_for(backend_ns, client, &direct, 3);
        let ratio = 100.0 * through / straight;
        println!("pair {pair}: through the VIP {through:.2} Gbit/s, direct {straight:.2} Gbit/s, {ratio:.1}%");
        ratios.push(ratio);
    }
    let (min, max) =
        (ratios.iter()).fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "through the VIP: median {:.1}% of direct (spread {min:.1}-{max:.1}%)",
        median(&mut ratios)
    );
}
