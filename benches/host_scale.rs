//! Scenario benchmark (root, not part of CI): does connect stay flat as the *host* fills?
//!   cargo bench --bench host_scale
//! One throwaway host fills to 1,000 endpoints (100 networks x 10 sandboxes), then to 10,000
//! (1,000 x 10). At each size, 200 connects (no policy) to a fresh network are timed from the
//! POST to the endpoint answering, and the setup's own rate is reported, with each kind of
//! call's median over the last 50 networks of the fill. PERF=FILE records the daemon
//! (`perf record -g -p`) over those last 50 networks of the fill to 10,000.

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
            // Each kind of call's time over the last 50 networks of the fill.
            let mut steps: [Vec<f64>; 3] = Default::default();
            let mut perf = None;
            while networks < target {
                let n = networks;
                let last = target - n <= 50;
                if last && size == 10_000 && perf.is_none() {
                    perf = std::env::var("PERF").ok().map(|file| {
                        std::process::Command::new("perf")
                            .args(["record", "-g", "-o", &file, "-p", &pid.to_string()])
                            .spawn()
                            .expect("perf")
                    });
                }
                let mut timed = |step: usize, path: &str, body: serde_json::Value| {
                    let t = Instant::now();
                    post(path, body);
                    if last {
                        steps[step].push(t.elapsed().as_secs_f64() * 1e3);
                    }
                };
                let subnet = format!("10.{}.{}.0/24", 100 + n / 256, n % 256);
                let body = json!({"name": format!("n{n}"), "ipv4": {"subnet": subnet}});
                timed(0, "/v1/networks", body);
                for i in 0..PER_NETWORK {
                    let s = format!("s{n}-{i}");
                    timed(1, "/v1/sandboxes", json!({"name": s}));
                    let body = json!({"network": format!("n{n}"), "sandbox": s});
                    timed(2, "/v1/endpoints", body);
                }
                networks += 1;
            }
            if let Some(mut p) = perf {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
                let _ = p.wait();
            }
            let setup = start.elapsed().as_secs_f64();
            let steps = steps.map(|mut v| median(&mut v));
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
            lines.push((size, median(&mut took), setup, objects, steps));
        }
        lines
    });
    for (size, connect, setup, objects, [net, sandbox, endpoint]) in &report {
        println!(
            "{size} endpoints on the host: connect to reachable, median of {PROBES}: {connect:.2} ms; \
             setup of the last {objects} objects: {setup:.1} s ({:.2} ms each; the last 50 \
             networks' calls, medians: network create {net:.2} ms, sandbox create {sandbox:.2} ms, \
             endpoint create {endpoint:.2} ms)",
            1e3 * setup / *objects as f64
        );
    }
    println!("ratio: {:.2}x", report[1].1 / report[0].1);
}
