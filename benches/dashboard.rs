//! Scenario benchmark (root, not part of CI): the dashboard's pages (with a policy attached
//! globally) at 1,000 networks and 10,000 endpoints (100 sandboxes on 100 of the networks),
//! each page fetched 20 times over
//! loopback from inside the daemon's namespace; reports the median and worst time per page.
//! `/metrics` (Prometheus' scrape) is timed with them.
//!   cargo bench --bench dashboard

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::Server;
use serde_json::json;

const NETWORKS: usize = 1000;
const SANDBOXES: usize = 100;
const CONNECTED: usize = 100;

/// A page with the session cookie (the dashboard's) and the bearer token (`/metrics`, the API's).
fn get(addr: &str, path: &str, cookie: &str, token: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: wasmnet_session={cookie}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out.len())
}

fn main() {
    let server = Server::start(&["--default-pool", "base=10.0.0.0/8,size=24"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let (net0, sb0) = rt.block_on(async {
        for n in 0..NETWORKS {
            c.post(
                "/v1/networks",
                &json!({"name": format!("n{n:04}"), "labels": {"team": format!("t{}", n % 10)}}),
            )
            .await
            .unwrap();
        }
        for s in 0..SANDBOXES {
            c.post("/v1/sandboxes", &json!({"name": format!("s{s:03}")}))
                .await
                .unwrap();
        }
        for n in 0..CONNECTED {
            for s in 0..SANDBOXES {
                c.post(
                    "/v1/endpoints",
                    &json!({"network": format!("n{n:04}"), "sandbox": format!("s{s:03}")}),
                )
                .await
                .unwrap();
            }
        }
        // `/metrics` before any policy: nothing to list from the kernel.
        let mut times = Vec::new();
        for _ in 0..20 {
            let start = Instant::now();
            let (status, _) = c.send(hyper::Method::GET, "/metrics", None).await.unwrap();
            assert_eq!(status, 200);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "/metrics, no policy attached (unix socket): median {:.2} ms, worst {:.2} ms",
            times[10], times[19]
        );
        // A policy governs every network, so its pages and the network's list it.
        let wasm = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/dist/label-isolation.wasm"
        ))
        .unwrap();
        c.upload("/v1/policies?name=tiers", "application/wasm", wasm)
            .await
            .unwrap();
        c.post("/v1/policies/tiers/attach", &json!({}))
            .await
            .unwrap();
        let net = c.get("/v1/networks/n0000").await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let sb = c.get("/v1/sandboxes/s000").await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        (net, sb)
    });
    let counts = rt.block_on(c.get("/healthz")).unwrap();
    println!(
        "{} networks, {} sandboxes, {} endpoints",
        counts["counts"]["networks"], counts["counts"]["sandboxes"], counts["counts"]["endpoints"]
    );
    let addr = server.url.trim_start_matches("http://").to_string();
    let token = server.token.clone();
    let pages = vec![
        "/".to_string(),
        "/networks".into(),
        "/networks?q=n09".into(),
        "/networks?label=team%3Dt3".into(),
        format!("/networks/{net0}"),
        "/sandboxes".into(),
        format!("/sandboxes/{sb0}"),
        "/topology".into(),
        "/topology.svg".into(),
        "/ruleset".into(),
        "/policies".into(),
        "/policies/tiers".into(),
        "/flows".into(),
        // Prometheus' scrape: with the policy attached it lists the table's counters.
        "/metrics".into(),
    ];
    common::in_netns(server.host.netns_path(), move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let body = format!("token={token}");
        let req = format!("POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let cookie = out
            .split("wasmnet_session=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        println!(
            "{:<34} {:>10} {:>10} {:>10}",
            "page", "median ms", "worst ms", "bytes"
        );
        for page in &pages {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..20 {
                let start = Instant::now();
                let (status, bytes) = get(&addr, page, &cookie, &token);
                times.push(start.elapsed().as_secs_f64() * 1e3);
                assert_eq!(status, 200, "{page}");
                size = bytes;
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{page:<34} {:>10.2} {:>10.2} {size:>10}",
                times[10], times[19]
            );
        }
    });
}
