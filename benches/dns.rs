//! Scenario benchmark: the embedded DNS server (run as root, not part of CI):
//!   cargo bench --bench dns
//! In a throwaway host namespace, a network of 100 named sandboxes and a client sandbox that
//! runs `dnsperf` (Debian's, 2.10) against the network's gateway for 10 s: queries per second
//! and latency percentiles of local names (each query's latency from dnsperf -v), once as fast
//! as it goes (latency then includes 200 queries queued) and once at 50,000 a second. The rate
//! limit is off here (it caps one source at 10,000 queries a second by default). Then, 50
//! times: a sandbox connects over REST and the client asks for its name at once (UDP from
//! inside the client's namespace), until an answer: the time from the connect's return.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::net::run_in;
use common::{in_netns, Server};
use serde_json::json;
use support::median;
use wasmnet_web::client::Client;

const NAMES: usize = 100;
const GATEWAY: &str = "10.80.0.1";

async fn setup(c: &Client) -> PathBuf {
    let net = json!({"name": "bench", "ipv4": {"subnet": "10.80.0.0/22"}});
    c.post("/v1/networks", &net).await.unwrap();
    for i in 0..NAMES {
        let name = format!("n{i}");
        c.post("/v1/sandboxes", &json!({"name": name}))
            .await
            .unwrap();
        let body = json!({"network": "bench", "sandbox": name});
        c.post("/v1/endpoints", &body).await.unwrap();
    }
    let s = c
        .post("/v1/sandboxes", &json!({"name": "perf"}))
        .await
        .unwrap();
    c.post(
        "/v1/endpoints",
        &json!({"network": "bench", "sandbox": "perf"}),
    )
    .await
    .unwrap();
    PathBuf::from(s["netns"].as_str().unwrap())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `dnsperf` for 10 s: as fast as it can (200 queries outstanding), or at `rate` a second.
fn dnsperf(client: &std::path::Path, dir: &std::path::Path, rate: Option<u32>) {
    let file = dir.join("queries.txt");
    let text: String = (0..NAMES).map(|i| format!("n{i} A\n")).collect();
    std::fs::write(&file, text).unwrap();
    let mut args = vec!["dnsperf", "-s", GATEWAY, "-d", file.to_str().unwrap()];
    args.extend(["-l", "10", "-c", "4", "-T", "1", "-q", "200", "-v"]);
    let limit = rate.map(|r| r.to_string());
    if let Some(r) = &limit {
        args.extend(["-Q", r]);
    }
    let out = run_in(client, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lat: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> NOERROR"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|s| s * 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let qps = text
        .lines()
        .find(|l| l.contains("Queries per second"))
        .unwrap_or("Queries per second: ?");
    let lost = text
        .lines()
        .find(|l| l.contains("Queries lost"))
        .unwrap_or("");
    let how = match rate {
        Some(r) => format!("at {r} queries/s"),
        None => "as fast as it goes".into(),
    };
    println!(
        "dnsperf, local names, {how}: {}; {}",
        qps.trim(),
        lost.trim()
    );
    if lat.is_empty() {
        println!(
            "no latencies parsed; dnsperf said:\n{}",
            &text[..text.len().min(2000)]
        );
        return;
    }
    println!(
        "latency of {} answers: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}

/// A query for `name` (type A) with id `id`.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.push(name.len() as u8);
    q.extend(name.as_bytes());
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// Asks for `name` until an answer carries a record; the time that took.
fn until_answered(sock: &UdpSocket, name: &str) -> f64 {
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    for id in 0..1000u16 {
        sock.send_to(&query(name, id), (GATEWAY, 53)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            // ANCOUNT > 0.
            if n > 12 && u16::from_be_bytes([buf[6], buf[7]]) > 0 {
                return t0.elapsed().as_secs_f64() * 1e3;
            }
        }
    }
    f64::INFINITY
}

async fn name_after_connect(c: &Client, client: PathBuf) {
    let mut times = Vec::new();
    for i in 0..50 {
        let name = format!("late{i}");
        c.post("/v1/sandboxes", &json!({"name": name}))
            .await
            .unwrap();
        let body = json!({"network": "bench", "sandbox": name});
        c.post("/v1/endpoints", &body).await.unwrap();
        let ns = client.clone();
        times.push(in_netns(ns, move || {
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            until_answered(&sock, &name)
        }));
    }
    let max = times.iter().cloned().fold(0.0, f64::max);
    println!(
        "a new name, from its connect's return to an answer: median {:.3} ms, max {:.3} ms",
        median(&mut times),
        max
    );
}

fn main() {
    let server = Server::start(&["--dns-rate-limit", "0", "--dns-upstream", "203.0.113.9"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let client = rt.block_on(setup(&c));
    dnsperf(&client, &server.dir, None);
    dnsperf(&client, &server.dir, Some(50_000));
    rt.block_on(name_after_connect(&c, client));
}
