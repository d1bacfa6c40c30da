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

/// The same, and the machine's CPU cycles per bit received (`perf stat -a` around the client):
/// what the path costs, which a neighbour's load on a shared machine moves less than the rate.
pub fn iperf_cycles(server_ns: &Path, client_ns: &Path, ip: &str, seconds: u32) -> (f64, f64) {
    let file = std::env::temp_dir().join(format!("wasmnet-perf-stat-{}", std::process::id()));
    let f = file.to_string_lossy().into_owned();
    let perf = [
        "perf", "stat", "-a", "-e", "cycles", "-x", ",", "-o", &f, "--",
    ];
    let (gbps, bits) = iperf_run(server_ns, client_ns, ip, seconds, &perf);
    let stat = std::fs::read_to_string(&file).expect("perf stat output");
    let _ = std::fs::remove_file(&file);
    let cycles: f64 = (stat.lines())
        .find_map(|l| l.split(',').next()?.trim().parse().ok())
        .expect("a cycles count");
    (gbps, cycles / bits)
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
