//! Scenario benchmark: real container runtimes on wasmnet against their own networking, side
//! by side in one run (run as root, not part of CI):
//!   cargo bench --bench runtimes            (RUNTIMES_N=200 containers per side)
//! In a throwaway host namespace, with the runtimes the tests use (Debian's dockerd 20.10 and
//! podman 4.3 in CNI mode, a busybox image):
//! - Docker: `docker run -d` until the container answers (a TCP connect from the host to its
//!   address is refused by its kernel), on a wasmnet network and on Docker's own bridge network
//!   (dockerd with its iptables rules and docker-proxy), alternating one container each; the
//!   first 10 without a published port, then each with `-p`, up to N per side;
//! - podman: the same with the wasmnet CNI plugin and with podman's CNI bridge + portmap
//!   (+ firewall, tuning: podman's default CNI configuration);
//! - the plugin's own share of a Docker connect: Docker's calls for one container (RequestAddress,
//!   CreateEndpoint, Join, ProgramExternalConnectivity) sent to wasmnet's plugin socket and
//!   timed, 200 times, then undone (Leave, DeleteEndpoint, ReleaseAddress).
//!
//! Medians are printed for containers 1-10 (no port), 11-20 and the last 10 (with a port).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::docker::{start_wasmnet, Dockerd, IMAGE};
use common::podman::{self, Podman};
use common::Host;
use serde_json::{json, Value};
use support::{median, reachable};

fn count() -> usize {
    std::env::var("RUNTIMES_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// One container started and answering, in ms.
fn timed(start: impl FnOnce(), ip: &str) -> f64 {
    let t0 = Instant::now();
    start();
    assert!(
        reachable(ip, Instant::now() + Duration::from_secs(10)),
        "{ip} never answered"
    );
    t0.elapsed().as_secs_f64() * 1e3
}

fn address(base: u8, i: usize) -> String {
    format!("10.{base}.{}.{}", (i + 2) / 250, (i + 2) % 250 + 2)
}

fn report(what: &str, side: &str, ms: &[f64]) {
    let n = ms.len();
    let m = |r: std::ops::Range<usize>| median(&mut ms[r.start.min(n)..r.end.min(n)].to_vec());
    println!(
        "{what:<8} {side:<24} first 10 (no port) {:>7.1} ms | 11-20 with -p {:>7.1} ms | last 10 with -p {:>7.1} ms",
        m(0..10),
        m(10..20),
        m(n.saturating_sub(10)..n)
    );
}

fn docker_side_by_side(d: &Dockerd, driver: &str, n: usize) -> (Vec<f64>, Vec<f64>) {
    let net = |name: &str, drv: &str, subnet: &str| {
        let mut args = vec!["network", "create", "-d", drv, "--subnet", subnet];
        if drv != "bridge" {
            args.extend(["--ipam-driver", drv]);
        }
        args.push(name);
        d.ok(&args);
    };
    net("wn", driver, "10.60.0.0/16");
    net("br", "bridge", "10.61.0.0/16");
    let (mut ours, mut theirs) = (vec![], vec![]);
    for i in 0..n {
        for (network, base, port, out) in
            [("wn", 60, 20000, &mut ours), ("br", 61, 30000, &mut theirs)]
        {
            let ip = address(base, i);
            let publish = format!("{}:80", port + i);
            let name = format!("{network}{i}");
            let mut args = vec![
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                network,
                "--ip",
                &ip,
            ];
            if i >= 10 {
                args.extend(["-p", &publish]);
            }
            args.extend([IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
            out.push(timed(|| drop(d.ok(&args)), &ip));
        }
    }
    (ours, theirs)
}

fn podman_side_by_side(p: &Podman, n: usize) -> (Vec<f64>, Vec<f64>) {
    let ranges = json!([[{"subnet": "10.63.0.0/16", "gateway": "10.63.0.1"}]]);
    let bridge = json!({"cniVersion": "1.0.0", "name": "cnibr", "plugins": [
        {"type": "bridge", "bridge": "cni-bench0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
         "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "ranges": ranges,
                  "dataDir": p.dir.join("host-local").display().to_string()}},
        {"type": "portmap", "capabilities": {"portMappings": true}},
        {"type": "firewall", "backend": "iptables"},
        {"type": "tuning"}]});
    p.raw_conflist("cnibr", &bridge);
    let (mut ours, mut theirs) = (vec![], vec![]);
    for i in 0..n {
        for (network, base, port, out) in [
            ("pods", 62, 21000, &mut ours),
            ("cnibr", 63, 31000, &mut theirs),
        ] {
            let ip = address(base, i);
            let publish = format!("{}:80", port + i);
            let name = format!("{network}{i}");
            let mut args = vec![
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                network,
                "--ip",
                &ip,
            ];
            args.extend([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
            ]);
            if i >= 10 {
                args.extend(["-p", &publish]);
            }
            args.extend([podman::IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
            out.push(timed(|| drop(p.ok(&args)), &ip));
        }
    }
    (ours, theirs)
}

/// Docker's calls for one connect, sent to the plugin and timed (ms); then undone.
async fn plugin_share(socket: std::path::PathBuf, rounds: usize) -> Vec<f64> {
    let c = wasmnet_web::client::Client::new(wasmnet_web::client::Target::Unix(socket), None);
    let call = |path: &'static str, body: Value| {
        let c = &c;
        async move { c.post(path, &body).await.unwrap() }
    };
    let pool = call("/IpamDriver.RequestPool", json!({"Pool": "10.64.0.0/16"})).await;
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    let gw =
        json!({"PoolID": pool_id, "Options": {"RequestAddressType": "com.docker.network.gateway"}});
    let gw = call("/IpamDriver.RequestAddress", gw).await;
    let net = json!({"NetworkID": "b".repeat(64), "Options": {}, "IPv4Data": [{"Pool": "10.64.0.0/16", "Gateway": gw["Address"]}]});
    call("/NetworkDriver.CreateNetwork", net).await;
    let mut times = Vec::new();
    for i in 0..rounds {
        let ep = format!("{i:064x}");
        let ids = json!({"NetworkID": "b".repeat(64), "EndpointID": ep});
        let t0 = Instant::now();
        let a = call("/IpamDriver.RequestAddress", json!({"PoolID": pool_id})).await;
        let addr = a["Address"].as_str().unwrap().to_string();
        let create = json!({"NetworkID": "b".repeat(64), "EndpointID": ep, "Interface": {"Address": addr}, "Options": {}});
        call("/NetworkDriver.CreateEndpoint", create).await;
        let join = json!({"NetworkID": "b".repeat(64), "EndpointID": ep, "SandboxKey": format!("/run/bench/netns/{i:012x}"), "Options": {}});
        let joined = call("/NetworkDriver.Join", join).await;
        assert!(joined["InterfaceName"]["SrcName"].is_string(), "{joined}");
        call("/NetworkDriver.ProgramExternalConnectivity", ids.clone()).await;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        call("/NetworkDriver.Leave", ids.clone()).await;
        call("/NetworkDriver.DeleteEndpoint", ids).await;
        let release = json!({"PoolID": pool_id, "Address": addr});
        call("/IpamDriver.ReleaseAddress", release).await;
    }
    call(
        "/NetworkDriver.DeleteNetwork",
        json!({"NetworkID": "b".repeat(64)}),
    )
    .await;
    call("/IpamDriver.ReleasePool", json!({"PoolID": pool_id})).await;
    times
}

fn main() {
    let n = count();
    let (server, driver) = start_wasmnet(Host::new());
    let ns = server.host.netns_path();
    let socket = common::docker::plugin_socket(&server.host).1;
    let mut share = common::in_netns(ns.clone(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(plugin_share(socket, 200))
    });
    println!(
        "plugin's own share of a Docker connect: median {:.2} ms (200 connects)",
        median(&mut share)
    );

    let d = Dockerd::start_with(&server, false, true);
    d.import_busybox();
    let (ours, theirs) = common::in_netns_scoped(&ns, || docker_side_by_side(&d, &driver, n));
    report("docker", "wasmnet plugin", &ours);
    report("docker", "Docker's bridge", &theirs);
    drop(d);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let net = json!({"name": "pods", "ipv4": {"subnet": "10.62.0.0/16"}});
        server.client().post("/v1/networks", &net).await.unwrap();
    });
    let p = Podman::new(&server);
    p.import_busybox();
    p.conflist("pods", "pods", json!({}));
    let (ours, theirs) = common::in_netns_scoped(&ns, || podman_side_by_side(&p, n));
    report("podman", "wasmnet CNI plugin", &ours);
    report("podman", "CNI bridge + portmap", &theirs);
}
