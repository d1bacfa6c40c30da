//! Scenario benchmark (root, not part of CI): does connect stay flat as the *host* fills?
//!   cargo bench --bench host_scale
//! One throwaway host fills to 1,000 endpoints (100 networks x 10 sandboxes), then to 10,000
//! (1,000 x 10). At each size, 200 connects (no policy) to a fresh network are timed from the
//! POST to the endpoint answering, and the setup's own rate is reported. PERF=FILE records
//! the daemon (`perf record -g -p`) during the connects at 10,000, for `perf report`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use support::{median, reachable};

const PER_NETWORK: usize = 10;
const PROBES: usize = 200;

fn main() {
    let server = Server::start(&["--firewall-backend", "nftables"]);
    let (socket, pid) = (server.socket.clone(), server.pid().as_raw());
    let report = common::in_netns(server.host.netns_path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = wasmnet_web::client::Client::new(wasmnet_web::client::Target::Unix(socket), None);
        let post = |path: &str, body: serde_json::Value| {
            rt.block_on(c.post(path, &body))
                .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        };
        let mut lines = Vec::new();
        let mut networks = 0;
        for (size, target) in [(1_000, 100), (10_000, 1_000)] {
            let start = Instant::now();
            let objects = (target - networks) * (1 + 2 * PER_NETWORK);
            while networks < target {
                let n = networks;
                let subnet = format!("10.{}.{}.0/24", 100 + n / 256, n % 256);
                post(
                    "/v1/networks",
                    json!({"name": format!("n{n}"), "ipv4": {"subnet": subnet}}),
                );
                for i in 0..PER_NETWORK {
                    let s = format!("s{n}-{i}");
                    post("/v1/sandboxes", json!({"name": s}));
                    post(
                        "/v1/endpoints",
                        json!({"network": format!("n{n}"), "sandbox": s}),
                    );
                }
                networks += 1;
            }
            let setup = start.elapsed().as_secs_f64();
            let probe = format!("probe{size}");
            let subnet = format!("10.{}.0.0/24", 200 + size / 1000);
            post(
                "/v1/networks",
                json!({"name": probe, "ipv4": {"subnet": subnet}}),
            );
            let names: Vec<String> = (0..PROBES).map(|i| format!("p{size}-{i}")).collect();
            for s in &names {
                post("/v1/sandboxes", json!({"name": s}));
            }
            let perf = (size == 10_000)
                .then(|| std::env::var("PERF").ok())
                .flatten()
                .map(|file| {
                    std::process::Command::new("perf")
                        .args(["record", "-g", "-o", &file, "-p", &pid.to_string()])
                        .spawn()
                        .expect("perf")
                });
            let mut took: Vec<f64> = names
                .iter()
                .map(|s| {
                    let start = Instant::now();
                    let e = post("/v1/endpoints", json!({"network": probe, "sandbox": s}));
                    let ip = e["ipv4"].as_str().unwrap();
                    assert!(
                        reachable(ip, start + Duration::from_secs(5)),
                        "{ip} answers"
                    );
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            if let Some(mut p) = perf {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                let _ = p.wait();
            }
            lines.push((size, median(&mut took), setup, objects));
        }
        lines
    });
    for (size, connect, setup, objects) in &report {
        println!(
            "{size} endpoints on the host: connect to reachable, median of {PROBES}: {connect:.2} ms; \
             setup of the last {objects} objects: {setup:.1} s ({:.2} ms each)",
            1e3 * setup / *objects as f64
        );
    }
    println!("ratio: {:.2}x", report[1].1 / report[0].1);
}
