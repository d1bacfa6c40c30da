//! Scenario benchmark (root, not part of CI): iperf3 between two sandboxes of one network,
//! with 10,000 endpoints' worth of rules and elements loaded (100 networks x 100 sandboxes,
//! one published port each), against the same path with wasmnet's rules removed.
//! With and without alternate, PAIRS (11) times; the median ratio and its spread are reported.
//! Each run also counts the machine's busy CPU time per bit (`/proc/stat`), which the load of
//! a shared machine's neighbours moves less than the rate. PERF=FILE also records one more run
//! with the rules in, for `perf report`.
//!   cargo bench --bench throughput        (installs nothing: needs iperf3 from Debian)

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;

use common::Server;
use serde_json::json;
use support::{iperf_cpu, iperf_for, median};

const NETWORKS: usize = 100;
const SANDBOXES: usize = 100;
/// Each run's length: short, so that many pairs fit (this machine's runs vary by ±10%).
const SECONDS: u32 = 3;

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
    // The same path without wasmnet's rules: stop the daemon (the kernel state stays), keep a
    // copy of its firewall, then take it out and put it back between runs, so that with and
    // without alternate (A B A B …) and one noisy second cannot decide the ratio.
    let host = server.stop();
    let rules = Rules::save(&host, &backend);
    let pairs: usize = std::env::var("PAIRS").map_or(11, |v| v.parse().expect("PAIRS: a count"));
    let (mut ratios, mut costs) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        let (with_rules, cost_with) = iperf_cpu(b, a, &ip, SECONDS);
        rules.remove(&host);
        let (without, cost_without) = iperf_cpu(b, a, &ip, SECONDS);
        rules.restore(&host);
        let ratio = 100.0 * with_rules / without;
        let cost = 100.0 * cost_with / cost_without;
        println!(
            "pair {pair}: with {with_rules:.2} Gbit/s, without {without:.2} Gbit/s, {ratio:.1}%; \
             busy CPU per Gbit {cost:.1}% of without"
        );
        ratios.push(ratio);
        costs.push(cost);
    }
    let (min, max) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "ratio: median {:.1}% of {pairs} pairs (spread {min:.1}–{max:.1}%)",
        median(&mut ratios)
    );
    println!(
        "busy CPU per Gbit with the rules: median {:.1}% of without",
        median(&mut costs)
    );
    // Where the time goes with the rules in: `PERF=FILE` records the whole machine for one
    // more run (`perf report -i FILE --no-children --sort sym`).
    if let Ok(file) = std::env::var("PERF") {
        let mut perf = std::process::Command::new("perf")
            .args(["record", "-a", "-g", "-o", &file, "--", "sleep", "4"])
            .spawn()
            .expect("perf");
        iperf_for(b, a, &ip, SECONDS);
        perf.wait().unwrap();
    }
    rules.remove(&host);
}

/// wasmnet's firewall as its backend's own dump, to take out and put back.
enum Rules {
    Nft(String),
    Iptables { v4: Vec<u8>, v6: Vec<u8> },
}

impl Rules {
    fn save(host: &common::Host, backend: &str) -> Rules {
        let out = |args: &[&str]| {
            let o = host.exec(args);
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            o.stdout
        };
        if backend == "iptables" {
            return Rules::Iptables {
                v4: out(&["iptables-save"]),
                v6: out(&["ip6tables-save"]),
            };
        }
        let mut text = String::new();
        for family in ["inet", "bridge"] {
            text += &String::from_utf8(out(&["nft", "list", "table", family, "wasmnet"])).unwrap();
        }
        Rules::Nft(text)
    }

    fn remove(&self, host: &common::Host) {
        let cmds: &[&[&str]] = match self {
            Rules::Nft(_) => &[
                &["nft", "delete", "table", "inet", "wasmnet"],
                &["nft", "delete", "table", "bridge", "wasmnet"],
            ],
            Rules::Iptables { .. } => &[
                &["iptables", "-F", "WASMNET-FORWARD"],
                &["iptables", "-t", "nat", "-F", "WASMNET-DNAT"],
                &["ip6tables", "-F", "WASMNET-FORWARD"],
                &["ip6tables", "-t", "nat", "-F", "WASMNET-DNAT"],
            ],
        };
        for cmd in cmds {
            let _ = host.exec(cmd);
        }
    }

    fn restore(&self, host: &common::Host) {
        let feeds: Vec<(&[&str], &[u8])> = match self {
            Rules::Nft(text) => vec![(&["nft", "-f", "-"], text.as_bytes())],
            Rules::Iptables { v4, v6 } => {
                vec![(&["iptables-restore"], v4), (&["ip6tables-restore"], v6)]
            }
        };
        for (cmd, input) in feeds {
            let mut child = std::process::Command::new("ip")
                .args(["netns", "exec", &host.name])
                .args(cmd)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
            assert!(
                child.wait().unwrap().success(),
                "{cmd:?} restores the rules"
            );
        }
    }
}
