//! Scenario benchmark (root, not part of CI): two test hosts in a cluster with a real etcd.
//! 1. iperf3 between sandboxes on the two hosts over one overlay network, against iperf3
//!    between the two host namespaces on the underlay itself (goal: ≥ 80%), and against a
//!    bare VXLAN device pair between those namespaces (what the kernel's encapsulation alone
//!    allows here).
//! 2. How soon a new endpoint on one host is reachable from a sandbox on the other, counted
//!    from the moment its connect call returns (goal: ≤ 100 ms).
//!
//! `cargo bench --bench overlay` (needs iperf3, ethtool and etcd-server from Debian).
//!
//! The probing sandbox retransmits ARP every 5 ms instead of Linux's 1 s, so a probe sent a
//! moment before the remote is programmed costs 5 ms, not a second: the figure is wasmnet's
//! (watch → VXLAN entries), to within 5 ms, not the ARP timer's.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cluster::Underlay;
use common::in_netns;
use common::net::run_in;
use serde_json::json;
use support::{iperf, median, reachable};

const PROBES: usize = 40;
const RUNS: usize = 3;

async fn sandbox_on(c: &wasmnet_web::client::Client, name: &str, net: &str) -> (PathBuf, String) {
    let s = c
        .post("/v1/sandboxes", &json!({"name": name}))
        .await
        .unwrap();
    let e = c
        .post("/v1/endpoints", &json!({"network": net, "sandbox": name}))
        .await
        .unwrap();
    (
        PathBuf::from(s["netns"].as_str().unwrap()),
        e["ipv4"].as_str().unwrap().to_string(),
    )
}

fn main() {
    let underlay = Underlay::new();
    let (h1, h2) = (underlay.join(1, "nftables"), underlay.join(2, "nftables"));
    // The underlay stands for a physical network: its bridge switches frames without passing
    // them to iptables (br_netfilter, once loaded, defaults to on in every new namespace), and
    // its ports receive with GRO, as a NIC does. Both measurements below run on it.
    let ns = &underlay.host.name;
    for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let _ = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.bridge.{key}=0"),
            ])
            .status();
    }
    for (ns, dev) in [
        (&h1.host.name, "under"),
        (&h2.host.name, "under"),
        (&underlay.host.name, "up1"),
        (&underlay.host.name, "up2"),
    ] {
        common::sh(&["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on"]);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (c1, c2) = (h1.client(), h2.client());
    let ((s1, _), (s2, a2)) = rt.block_on(async {
        while c1.get("/healthz").await.unwrap()["cluster"]["connected"] != json!(true) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let net = json!({"name": "ov", "driver": "overlay", "ipv4": {"subnet": "10.80.0.0/22"}});
        c1.post("/v1/networks", &net).await.unwrap();
        while c2.get("/v1/networks/ov").await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            sandbox_on(&c1, "s1", "ov").await,
            sandbox_on(&c2, "s2", "ov").await,
        )
    });
    let sysctl = "net.ipv4.neigh.eth0.retrans_time_ms=5";
    run_in(&s1, &["sysctl", "-qw", sysctl]);

    // The kernel's own floor: a bare VXLAN device pair between the two host namespaces (no
    // bridge, no sandbox, no firewall), on another VNI and port.
    for (h, me, peer) in [(&h1, 1, 2), (&h2, 2, 1)] {
        let ns = &h.host.name;
        let (local, remote) = (format!("192.0.2.{me}"), format!("192.0.2.{peer}"));
        common::sh(&[
            "ip", "-n", ns, "link", "add", "vxref", "type", "vxlan", "id", "99", "local", &local,
            "remote", &remote, "dev", "under", "dstport", "4790",
        ]);
        let addr = format!("10.99.0.{me}/24");
        common::sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", "vxref"]);
        common::sh(&["ip", "-n", ns, "link", "set", "vxref", "up"]);
    }
    let (hn1, hn2) = (h1.host.netns_path(), h2.host.netns_path());
    let (mut under, mut bare, mut over) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        under.push(iperf(&hn2, &hn1, "192.0.2.2"));
        bare.push(iperf(&hn2, &hn1, "10.99.0.2"));
        over.push(iperf(&s2, &s1, &a2));
    }
    let (u, b, o) = (median(&mut under), median(&mut bare), median(&mut over));
    println!(
        "iperf3 host to host on the underlay: {u:.2} Gbit/s; over a bare kernel VXLAN pair: {b:.2} Gbit/s ({:.1}%); sandbox to sandbox over the overlay: {o:.2} Gbit/s ({:.1}% of the underlay, {:.1}% of bare VXLAN)",
        100.0 * b / u,
        100.0 * o / u,
        100.0 * o / b
    );

    let mut latencies = Vec::new();
    for i in 0..PROBES {
        let (_, ip) = rt.block_on(sandbox_on(&c2, &format!("r{i}"), "ov"));
        let returned = Instant::now();
        let ok = in_netns(s1.clone(), move || {
            reachable(&ip, Instant::now() + Duration::from_secs(5))
        });
        assert!(ok, "r{i} reachable from the other host within 5 s");
        latencies.push(returned.elapsed().as_secs_f64() * 1e3);
    }
    let worst = latencies.iter().cloned().fold(0.0, f64::max);
    println!(
        "new endpoint reachable from the other host, after its connect returned: median {:.1} ms, worst {worst:.1} ms ({PROBES} endpoints)",
        median(&mut latencies)
    );
}
