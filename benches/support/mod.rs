//! What the scenario benchmarks share (each uses some of it).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Waits until `ip` answers from inside the host namespace (a refused connection counts).
pub fn reachable(ip: &str, deadline: Instant) -> bool {
    let addr: SocketAddr = format!("{ip}:9").parse().unwrap();
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    false
}

/// iperf3 for 5 s from `client_ns` to `ip` (a one-off server in `server_ns`), in Gbit/s.
pub fn iperf(server_ns: &Path, client_ns: &Path, ip: &str) -> f64 {
    iperf_for(server_ns, client_ns, ip, 5)
}

/// The same, for `seconds`.
pub fn iperf_for(server_ns: &Path, client_ns: &Path, ip: &str, seconds: u32) -> f64 {
    iperf_run(server_ns, client_ns, ip, seconds, &[]).0
}

/// The same, and the CPU time the machine spent busy per Gbit received (`/proc/stat`,
/// user + system + interrupts, all CPUs; a VM's stolen time is not counted): what the path
/// costs, which a neighbour's load on a shared machine moves less than the rate.
pub fn iperf_cpu(server_ns: &Path, client_ns: &Path, ip: &str, seconds: u32) -> (f64, f64) {
    let busy = || -> f64 {
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let f: Vec<f64> = (stat.lines().next().unwrap().split_whitespace().skip(1))
            .map(|v| v.parse().unwrap())
            .collect();
        // user nice system idle iowait irq softirq steal …
        f[0] + f[1] + f[2] + f[5] + f[6]
    };
    let start = busy();
    let (gbps, bits) = iperf_run(server_ns, client_ns, ip, seconds, &[]);
    // In the kernel's clock ticks (USER_HZ) per Gbit: only ratios of it are reported.
    (gbps, (busy() - start) / bits * 1e9)
}

/// iperf3's client (under `wrap`), in Gbit/s, and the bits received.
fn iperf_run(
    server_ns: &Path,
    client_ns: &Path,
    ip: &str,
    seconds: u32,
    wrap: &[&str],
) -> (f64, f64) {
    let mut srv = Command::new("nsenter")
        .arg(format!("--net={}", server_ns.display()))
        .args(["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = seconds.to_string();
    let client = ["iperf3", "-c", ip, "-p", "5201", "-t", &t, "-J"];
    let out = crate::common::net::run_in(client_ns, &[wrap, &client[..]].concat());
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    let received = &v["end"]["sum_received"];
    let rate = received["bits_per_second"].as_f64().unwrap();
    (rate / 1e9, received["bytes"].as_f64().unwrap() * 8.0)
}
