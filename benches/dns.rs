//! Scenario benchmark: the embedded DNS server (run as root, not part of CI):
//!   cargo bench --bench dns
//! In a throwaway host namespace, a network of 100 named sandboxes and a client sandbox that
//! runs `dnsperf` (Debian's, 2.10) against the network's gateway for 10 s: queries per second
//! and latency percentiles of local names (each query's latency from dnsperf -v), once as fast
//! as it goes (latency then includes 200 queries queued) and once at 50,000 a second. The rate
//! limit is off here (it caps one source at 10,000 queries a second by default). Then, 50
//! times: a sandbox connects over REST and the client asks for its name at once (UDP from
//! inside the client's namespace), until an answer: the time from the connect's return.
//! Last, forwarded names, answered by dnsmasq in the host's outside world (each of 100 names
//! its own address, TTL 60): first with no policy, then with `fqdn-egress` attached for
//! `*.fwd.test`, alternately names it matches (`q<i>.fwd.test`: each answer's address goes in
//! the pattern's set before the answer does, written again at most once per eighth of the
//! TTL) and names it does not (`q<i>.other.test`: the same path but for the sets), as fast as
//! it goes and at 5,000 a second: what the set updates cost the answer path.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::net::{outside_world, run_in, Upstream, WORLD};
use common::{in_netns, Host, Server};
use serde_json::json;
use support::median;
use wasmnet_web::client::Client;

const NAMES: usize = 100;
const GATEWAY: &str = "10.80.0.1";

async fn setup(c: &Client) -> PathBuf {
    let labels = json!({"wasmnet.egress-fqdn": "*.fwd.test"});
    let net = json!({"name": "bench", "ipv4": {"subnet": "10.80.0.0/22"}, "labels": labels});
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

/// Which names dnsperf asks for: the network's own, or forwarded ones.
#[derive(Clone, Copy)]
enum Names {
    Local,
    /// `q<i>.<domain>`.
    Forwarded(&'static str),
}

/// `dnsperf` for 10 s: as fast as it can (200 queries outstanding), or at `rate` a second;
/// returns (queries per second, p50 ms, p99 ms).
fn dnsperf(
    client: &std::path::Path,
    dir: &std::path::Path,
    rate: Option<u32>,
    names: Names,
    label: &str,
) -> (f64, f64, f64) {
    let file = dir.join("queries.txt");
    let text: String = (0..NAMES)
        .map(|i| match names {
            Names::Local => format!("n{i} A\n"),
            Names::Forwarded(domain) => format!("q{i}.{domain} A\n"),
        })
        .collect();
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
    println!("dnsperf, {label}, {how}: {}; {}", qps.trim(), lost.trim());
    if lat.is_empty() {
        println!(
            "no latencies parsed; dnsperf said:\n{}",
            &text[..text.len().min(2000)]
        );
        return (0.0, f64::NAN, f64::NAN);
    }
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "latency of {} answers: p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        lat.len(),
        lat[lat.len() - 1]
    );
    let qps = qps.split(':').nth(1).and_then(|v| v.trim().parse().ok());
    (qps.unwrap_or(0.0), p50, p99)
}

/// One forwarded run as fast as it goes and one at 5,000/s: (queries/s, p50, p99 of the
/// paced one).
fn forwarded_run(client: &Path, dir: &Path, domain: &'static str, label: &str) -> Run {
    let full = dnsperf(client, dir, None, Names::Forwarded(domain), label);
    let paced = dnsperf(client, dir, Some(5_000), Names::Forwarded(domain), label);
    (full.0, paced.1, paced.2)
}

type Run = (f64, f64, f64);

/// Forwarded names with no policy, then with the fqdn policy, alternately not matching and
/// matching its pattern, `ROUNDS` times; the medians of each and their ratio.
async fn forwarded(c: &Client, client: &Path, dir: &Path) {
    const ROUNDS: usize = 3;
    forwarded_run(client, dir, "fwd.test", "forwarded, no policy");
    let policy = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/dist/fqdn-egress.wasm"
    ));
    let path = "/v1/policies?name=names";
    c.upload(path, "application/wasm", policy.unwrap())
        .await
        .unwrap();
    let on = json!({"network": "bench"});
    c.post("/v1/policies/names/attach", &on).await.unwrap();
    let (mut plain, mut fed) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(forwarded_run(
            client,
            dir,
            "other.test",
            "forwarded, policy, no pattern matches",
        ));
        fed.push(forwarded_run(
            client,
            dir,
            "fwd.test",
            "forwarded, policy, sets fed",
        ));
    }
    let med = |v: &[Run], f: fn(&Run) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
    let (q0, q1) = (med(&plain, |r| r.0), med(&fed, |r| r.0));
    let (l0, l1) = (med(&plain, |r| r.1), med(&fed, |r| r.1));
    let (t0, t1) = (med(&plain, |r| r.2), med(&fed, |r| r.2));
    println!(
        "forwarded with the policy, medians of {ROUNDS}, names not matching vs matching: {q0:.0} vs {q1:.0} queries/s ({:.1}%); at 5,000/s p50 {l0:.3} vs {l1:.3} ms ({:+.1}%), p99 {t0:.3} vs {t1:.3} ms",
        q1 / q0 * 100.0,
        (l1 / l0 - 1.0) * 100.0
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
    let host = Host::new();
    let world = outside_world(&host);
    let mut answers: Vec<String> = (0..NAMES)
        .flat_map(|i| {
            let ip = format!("198.18.{}.{}", i / 200, 1 + i % 200);
            [
                format!("--address=/q{i}.fwd.test/{ip}"),
                format!("--address=/q{i}.other.test/{ip}"),
            ]
        })
        .collect();
    answers.push("--local-ttl=60".into());
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    let _upstream = Upstream::start(&world, &answers);
    let server = Server::start_in(host, &["--dns-rate-limit", "0", "--dns-upstream", WORLD]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let client = rt.block_on(setup(&c));
    dnsperf(&client, &server.dir, None, Names::Local, "local names");
    dnsperf(
        &client,
        &server.dir,
        Some(50_000),
        Names::Local,
        "local names",
    );
    rt.block_on(name_after_connect(&c, client.clone()));
    rt.block_on(forwarded(&c, &client, &server.dir));
}
