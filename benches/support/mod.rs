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
    let mut srv = Command::new("nsenter")
        .arg(format!("--net={}", server_ns.display()))
        .args(["iperf3", "-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = crate::common::net::run_in(
        client_ns,
        &[
            "iperf3",
            "-c",
            ip,
            "-p",
            "5201",
            "-t",
            &seconds.to_string(),
            "-J",
        ],
    );
    let _ = srv.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap()
        / 1e9
}
