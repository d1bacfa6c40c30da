//! Scenario benchmark (root, not part of CI): iperf3 between two sandboxes of one network,
//! with 10,000 endpoints' worth of rules and elements loaded (100 networks x 100 sandboxes,
//! one published port each), against the same path with wasmnet's rules removed.
//!   cargo bench --bench throughput        (installs nothing: needs iperf3 from Debian)

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;

use common::Server;
use serde_json::json;
use support::iperf;

const NETWORKS: usize = 100;
const SANDBOXES: usize = 100;

fn main() {
    let backend = std::env::var("WASMNET_FIREWALL_BACKEND").unwrap_or_else(|_| "nftables".into());
    let server = Server::start(&[
        "--firewall-backend",
        &backend,
        "--default-pool",
        "base=10.0.0.0/8,size=24",
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let (a, b, ip) = rt.block_on(async {
        for n in 0..NETWORKS {
            c.post("/v1/networks", &json!({"name": format!("n{n}")})).await.unwrap();
        }
        for s in 0..SANDBOXES {
            c.post("/v1/sandboxes", &json!({"name": format!("s{s}")})).await.unwrap();
        }
        let mut port = 10000;
        for n in 0..NETWORKS {
            for s in 0..SANDBOXES {
                port += 1;
                let body = json!({"network": format!("n{n}"), "sandbox": format!("s{s}"), "ports": [{"host_port": port, "container_port": 80}]});
                c.post("/v1/endpoints", &body).await.unwrap();
            }
        }
        let a = c.get("/v1/sandboxes/s0").await.unwrap();
        let b = c.get("/v1/sandboxes/s1").await.unwrap();
        let ip = b["endpoints"].as_array().unwrap().iter().find(|e| e["network_name"] == "n0").unwrap()["ipv4"].as_str().unwrap().to_string();
        (a["netns"].as_str().unwrap().to_string(), b["netns"].as_str().unwrap().to_string(), ip)
    });
    let counts = rt.block_on(c.get("/healthz")).unwrap();
    println!(
        "backend {backend}, {} endpoints loaded",
        counts["counts"]["endpoints"]
    );
    let (a, b) = (Path::new(&a), Path::new(&b));
    let with_rules = iperf(b, a, &ip);
    println!("with rules: {with_rules:.2} Gbit/s");
    // The same path without wasmnet's rules: stop the daemon (the kernel state stays) and
    // remove its firewall.
    let host = server.stop();
    for cmd in [
        &["nft", "delete", "table", "inet", "wasmnet"][..],
        &["nft", "delete", "table", "bridge", "wasmnet"],
        &["iptables", "-F", "WASMNET-FORWARD"],
        &["iptables", "-t", "nat", "-F", "WASMNET-DNAT"],
    ] {
        let _ = host.exec(cmd);
    }
    let without = iperf(b, a, &ip);
    println!("without rules: {without:.2} Gbit/s");
    println!("ratio: {:.1}%", 100.0 * with_rules / without);
}
