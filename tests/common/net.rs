//! Traffic for end-to-end tests: ping, and small TCP/UDP servers and probes that run on
//! threads inside a namespace. A server answers each client with the address it saw the
//! client come from, so a test can check reachability and NAT at once. Everything is bounded
//! in time and stops by itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{in_netns, sh, Host};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a command inside the namespace at `ns`.
pub fn run_in(ns: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(args)
        .output()
        .unwrap()
}

/// What a command run inside the namespace at `ns` printed.
pub fn stdout_in(ns: &Path, args: &[&str]) -> String {
    String::from_utf8(run_in(ns, args).stdout).unwrap()
}

/// One ping, one second to answer.
/// The connections conntrack tracks in a namespace, one per line
/// (`… src=A dst=B sport=P dport=Q …`).
pub fn tracked(ns: &Path) -> String {
    stdout_in(ns, &["cat", "/proc/net/nf_conntrack"])
}

/// Whether conntrack tracks a connection from `src` to `dst` (addresses) on port `dport`.
pub fn is_tracked(ns: &Path, src: &str, dst: &str, dport: u16) -> bool {
    let key = format!("src={src} dst={dst} sport=");
    tracked(ns)
        .lines()
        .any(|l| l.contains(&key) && l.contains(&format!(" dport={dport} ")))
}

pub fn ping(ns: &Path, ip: &str) -> bool {
    run_in(ns, &["ping", "-c", "1", "-W", "1", "-q", ip])
        .status
        .success()
}

/// A server thread; dropping it stops it.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_server(ns: PathBuf, serve: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        in_netns(ns, move || {
            ready_tx.send(()).unwrap();
            serve(flag)
        })
    });
    ready_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    Server {
        stop,
        thread: Some(thread),
    }
}

/// A TCP server on `port` (all addresses) inside `ns`, for at most 60 s.
pub fn tcp_server(ns: PathBuf, port: u16) -> Server {
    named_server(ns, port, "")
}

/// A TCP server on `port` inside `ns` that answers each client with `name` (and a space) and
/// the address it saw the client come from, for at most 60 s.
pub fn named_server(ns: PathBuf, port: u16, name: &str) -> Server {
    let name = match name {
        "" => String::new(),
        n => format!("{n} "),
    };
    spawn_server(ns, move |stop| {
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.write_all(format!("{name}{}", peer.ip()).as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

/// A UDP server on `port` inside `ns` that answers each datagram with the sender's address.
pub fn udp_server(ns: PathBuf, port: u16) -> Server {
    spawn_server(ns, move |stop| {
        let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            if let Ok((_, peer)) = s.recv_from(&mut buf) {
                let _ = s.send_to(peer.ip().to_string().as_bytes(), peer);
            }
        }
    })
}

/// Connects from `ns` to `addr`; the source address the server saw, or None if unreachable.
pub fn tcp_probe(ns: PathBuf, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        let mut seen = String::new();
        s.read_to_string(&mut seen).ok()?;
        (!seen.is_empty()).then_some(seen)
    })
}

/// `n` TCP connections from `ns` to `addr`, one after the other: what each server said, or
/// why the connection failed (each bounded by the probe's timeout).
pub fn tcp_many(ns: PathBuf, addr: &str, n: usize) -> Vec<Result<String, std::io::ErrorKind>> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        (0..n)
            .map(|_| {
                let mut s =
                    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.kind())?;
                s.set_read_timeout(Some(PROBE_TIMEOUT))
                    .map_err(|e| e.kind())?;
                let mut seen = String::new();
                s.read_to_string(&mut seen).map_err(|e| e.kind())?;
                Ok(seen)
            })
            .collect()
    })
}

/// Sends a datagram from `ns` to `addr`; the source address the server saw, or None.
pub fn udp_probe(ns: PathBuf, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
        s.send_to(b"hi", addr).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// The addresses of the link between a test host and its "outside world".
pub const HOST_UPLINK: &str = "203.0.113.1";
pub const WORLD: &str = "203.0.113.2";

/// Another namespace wired to `host` by a veth (`uplink` ↔ `world0`, 203.0.113.0/24). The
/// world has no route to any sandbox subnet: only NAT gets replies back.
pub fn outside_world(host: &Host) -> Host {
    let world = Host::new();
    sh(&[
        "ip",
        "-n",
        &host.name,
        "link",
        "add",
        "uplink",
        "type",
        "veth",
        "peer",
        "name",
        "world0",
        "netns",
        &world.name,
    ]);
    sh(&[
        "ip",
        "-n",
        &host.name,
        "addr",
        "add",
        &format!("{HOST_UPLINK}/24"),
        "dev",
        "uplink",
    ]);
    sh(&["ip", "-n", &host.name, "link", "set", "uplink", "up"]);
    sh(&[
        "ip",
        "-n",
        &world.name,
        "addr",
        "add",
        &format!("{WORLD}/24"),
        "dev",
        "world0",
    ]);
    sh(&["ip", "-n", &world.name, "link", "set", "world0", "up"]);
    world
}

/// An upstream resolver (Debian's dnsmasq) in `world`, on port 53 of [`WORLD`], answering
/// `answers` (dnsmasq's `--address=/NAME/IP` and the like); stopped when dropped.
pub struct Upstream(std::process::Child);

impl Upstream {
    pub fn start(world: &Host, answers: &[&str]) -> Upstream {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", world.netns_path().display()))
            .args([
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--bind-interfaces",
                "--listen-address",
                WORLD,
                "--user=root",
            ])
            .args(answers)
            .arg("--pid-file=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base) starts");
        std::thread::sleep(Duration::from_millis(300));
        Upstream(child)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
