//! Scenario benchmark: sandbox churn (run as root, not part of CI):
//!   cargo bench --bench churn                 (CHURN_LIFECYCLES=2000 by default)
//!   CHURN_LIFECYCLES=20000 cargo bench --bench churn   (the soak)
//! In a throwaway host with 1,000 endpoints already connected, 32 concurrent clients each run
//! full lifecycles over REST on the unix socket: create a sandbox, connect it with a published
//! port, disconnect, delete the sandbox. Reports lifecycles per second and each step's p50 and
//! p99; then checks that nothing leaked: links, namespaces, published-port elements, rows, the
//! daemon's file descriptors, and its memory (within 10% of where it was after the setup).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::Instant;

use common::Server;
use serde_json::json;
use wasmnet_web::client::{Client, Target};

const PRESENT: usize = 1000;
const CLIENTS: usize = 32;

fn lifecycles() -> usize {
    std::env::var("CHURN_LIFECYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// One client's lifecycles; each step's time in ms, per step.
async fn client(c: Arc<Client>, me: usize, count: usize) -> [Vec<f64>; 4] {
    let mut steps: [Vec<f64>; 4] = Default::default();
    for i in 0..count {
        let name = format!("c{me}-{i}");
        let port = 10000 + me * 800 + i % 800;
        let t = Instant::now();
        c.post("/v1/sandboxes", &json!({"name": name}))
            .await
            .unwrap();
        steps[0].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let body = json!({"network": "churn", "sandbox": name,
            "ports": [{"host_port": port, "container_port": 80}]});
        let e = c.post("/v1/endpoints", &body).await.unwrap();
        steps[1].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        c.delete(&format!("/v1/endpoints/{}", e["id"].as_str().unwrap()))
            .await
            .unwrap();
        steps[2].push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        c.delete(&format!("/v1/sandboxes/{name}")).await.unwrap();
        steps[3].push(t.elapsed().as_secs_f64() * 1e3);
    }
    steps
}

/// (file descriptors, resident KiB) of the daemon.
fn usage(pid: i32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

fn main() {
    let total = lifecycles();
    let server = Server::start(&[]);
    let pid = server.pid().as_raw();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = Arc::new(Client::new(Target::Unix(server.socket.clone()), None));
    rt.block_on(async {
        for (name, subnet) in [("base", "10.90.0.0/16"), ("churn", "10.91.0.0/16")] {
            c.post(
                "/v1/networks",
                &json!({"name": name, "ipv4": {"subnet": subnet}}),
            )
            .await
            .unwrap();
        }
        for i in 0..PRESENT {
            c.post("/v1/sandboxes", &json!({"name": format!("p{i}")}))
                .await
                .unwrap();
            let body = json!({"network": "base", "sandbox": format!("p{i}")});
            c.post("/v1/endpoints", &body).await.unwrap();
        }
    });
    // A warm-up round first: the allocator and caches settle (about 4 MiB here), so what
    // the main run adds is what it keeps.
    rt.block_on(async {
        let warm: Vec<_> = (0..CLIENTS)
            .map(|me| tokio::spawn(client(c.clone(), me + CLIENTS, 10)))
            .collect();
        for t in warm {
            t.await.unwrap();
        }
    });
    let links_before = server.host.links().len();
    let (fds_before, rss_before) = usage(pid);
    let t0 = Instant::now();
    let per = total / CLIENTS;
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|me| tokio::spawn(client(c.clone(), me, per)))
            .collect();
        let mut all: [Vec<f64>; 4] = Default::default();
        for t in tasks {
            for (acc, v) in all.iter_mut().zip(t.await.unwrap()) {
                acc.extend(v);
            }
        }
        all
    });
    let took = t0.elapsed().as_secs_f64();
    println!(
        "{} lifecycles, {CLIENTS} clients, {PRESENT} endpoints present: {:.0} lifecycles/s",
        per * CLIENTS,
        (per * CLIENTS) as f64 / took
    );
    for (name, mut v) in [
        "sandbox create",
        "connect with a port",
        "disconnect",
        "sandbox delete",
    ]
    .into_iter()
    .zip(results)
    {
        println!(
            "  {name:<20} p50 {:>7.2} ms  p99 {:>7.2} ms",
            pct(&mut v, 0.5),
            pct(&mut v, 0.99)
        );
    }
    // Nothing leaked: the links, namespaces, rows and port elements of the setup alone.
    let (fds_after, rss_after) = usage(pid);
    let links_after = server.host.links().len();
    let namespaces = server.host.sandbox_namespaces().len();
    let ports = server
        .host
        .stdout(&["nft", "list", "map", "inet", "wasmnet", "pub4"]);
    let endpoints = rt.block_on(c.list_all("/v1/endpoints")).unwrap().len();
    let sandboxes = rt.block_on(c.list_all("/v1/sandboxes")).unwrap().len();
    println!("  links {links_before} -> {links_after}, namespaces {namespaces}, endpoints {endpoints}, sandboxes {sandboxes}, fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB");
    assert_eq!(links_after, links_before, "links leaked");
    assert_eq!(
        (namespaces, endpoints, sandboxes),
        (PRESENT, PRESENT, PRESENT)
    );
    assert!(
        !ports.contains("elements"),
        "published-port elements left: {ports}"
    );
    assert!(fds_after <= fds_before + 4, "file descriptors leaked");
    assert!(
        rss_after as f64 <= rss_before as f64 * 1.10,
        "memory grew by more than 10%"
    );
}
