//! Scenario benchmark (root, not part of CI): what capturing flows costs under a flood.
//!   cargo bench --bench flows      (RATE packets/s, default 10000; SECONDS, default 10;
//!                                   SENDERS sandboxes, default 10)
//! In a throwaway host: two networks; SENDERS sandboxes on the first each send UDP to a
//! sandbox of the second (dropped by isolation: every packet passes a flow rule), together
//! RATE packets a second for SECONDS. Reports the daemon's CPU time over the flood (user +
//! system, from /proc) as a share of one core, the flow records it made against what the
//! rules' rate limits allow (burst 5, then 10 a second per rule), and the records lost.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
}

/// The daemon's CPU seconds so far (utime + stime).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon runs");
    let after = stat.rsplit_once(") ").expect("stat's format").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let (rate, seconds, senders) = (var("RATE", 10_000), var("SECONDS", 10), var("SENDERS", 10));
    let server = Server::start(&["--flow-buffer", "100000"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let post = |path: &str, body: serde_json::Value| rt.block_on(c.post(path, &body)).unwrap();
    post(
        "/v1/networks",
        json!({"name": "a", "ipv4": {"subnet": "10.91.0.0/24"}}),
    );
    post(
        "/v1/networks",
        json!({"name": "b", "ipv4": {"subnet": "10.91.1.0/24"}}),
    );
    post("/v1/sandboxes", json!({"name": "target"}));
    let to = post(
        "/v1/endpoints",
        json!({"network": "b", "sandbox": "target"}),
    )["ipv4"]
        .as_str()
        .unwrap()
        .to_string();
    let mut namespaces = Vec::new();
    for i in 0..senders {
        let s = post("/v1/sandboxes", json!({"name": format!("s{i}")}));
        post(
            "/v1/endpoints",
            json!({"network": "a", "sandbox": format!("s{i}")}),
        );
        namespaces.push(std::path::PathBuf::from(s["netns"].as_str().unwrap()));
    }
    let pid = server.pid().as_raw();
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let per_sender = rate / senders;
    let threads: Vec<_> = namespaces
        .into_iter()
        .map(|ns| {
            let to = format!("{to}:9999");
            std::thread::spawn(move || {
                common::in_netns(ns, move || {
                    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                    let gap = Duration::from_secs_f64(1.0 / per_sender as f64);
                    let begin = Instant::now();
                    let mut sent = 0u64;
                    while begin.elapsed() < Duration::from_secs(seconds) {
                        let due = gap * sent as u32;
                        if begin.elapsed() < due {
                            std::thread::sleep(due - begin.elapsed());
                        }
                        let _ = sock.send_to(b"flow", &to);
                        sent += 1;
                    }
                    sent
                })
            })
        })
        .collect();
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let took = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_seconds(pid) - cpu0;
    let metrics = rt
        .block_on(c.send(hyper::Method::GET, "/metrics", None))
        .unwrap();
    let text = String::from_utf8(metrics.1.to_vec()).unwrap();
    let value = |name: &str| -> f64 {
        (text.lines())
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let recorded = value("wasmnet_flow_records_total{kind=\"dropped\"}");
    let lost = value("wasmnet_flows_lost_total");
    // Every packet meets the same rule (network a's isolation drop).
    let allowed = 5.0 + 10.0 * took;
    println!(
        "flood: {sent} packets in {took:.1} s ({:.0}/s) from {senders} sandboxes, all dropped",
        sent as f64 / took
    );
    println!(
        "daemon CPU over the flood: {cpu:.2} s = {:.2}% of one core",
        100.0 * cpu / took
    );
    println!(
        "flow records: {recorded} (the rule allows {allowed:.0}); lost before recording: {lost}"
    );
}
