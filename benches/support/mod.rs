//! What the scenario benchmarks share.

use std::net::{SocketAddr, TcpStream};
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
