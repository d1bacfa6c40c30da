//! A test cluster: an underlay namespace with a bridge and a real etcd (Debian's etcd-server)
//! on it, and test hosts wired to it, each running wasmnet with `--cluster`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{in_netns, sh, Host, Server};

pub const ETCD_ADDR: &str = "192.0.2.254";

/// etcd in the underlay namespace; stopped (by its PID) when dropped.
pub struct Etcd {
    child: Option<Child>,
    underlay: PathBuf,
    dir: PathBuf,
}

impl Etcd {
    pub fn start(underlay: &Host) -> Etcd {
        let mut e = Etcd {
            child: None,
            underlay: underlay.netns_path(),
            dir: underlay.dir.join("etcd"),
        };
        e.restart();
        e
    }

    pub fn restart(&mut self) {
        let client = format!("http://{ETCD_ADDR}:2379");
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.underlay.display()))
            .arg("etcd")
            .args(["--name", "wasmnet-test", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "wasmnet-test=http://127.0.0.1:2380"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts (Debian's etcd-server)");
        self.child = Some(child);
        let underlay = self.underlay.clone();
        let up = in_netns(underlay, || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let addr = format!("{ETCD_ADDR}:2379").parse().unwrap();
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        });
        assert!(up, "etcd listens within 20 s");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The underlay (a bridge, etcd's address) and etcd on it.
pub struct Underlay {
    pub etcd: Etcd,
    pub host: Host,
}

impl Underlay {
    pub fn new() -> Underlay {
        let host = Host::new();
        let ns = host.name.clone();
        sh(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        let etcd_addr = format!("{ETCD_ADDR}/24");
        sh(&["ip", "-n", &ns, "addr", "add", &etcd_addr, "dev", "br0"]);
        Underlay {
            etcd: Etcd::start(&host),
            host,
        }
    }

    /// A test host wired to the underlay as 192.0.2.`n`, running wasmnet in the cluster.
    pub fn join(&self, n: u8, backend: &str) -> Server {
        let host = Host::new();
        let port = format!("up{n}");
        sh(&[
            "ip",
            "-n",
            &self.host.name,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "under",
            "netns",
            &host.name,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.host.name,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let addr = format!("192.0.2.{n}/24");
        sh(&["ip", "-n", &host.name, "addr", "add", &addr, "dev", "under"]);
        sh(&["ip", "-n", &host.name, "link", "set", "under", "up"]);
        start(host, n, backend)
    }
}

/// Starts (or restarts) wasmnet on test host `n` of the cluster.
pub fn start(host: Host, n: u8, backend: &str) -> Server {
    let advertise = format!("192.0.2.{n}");
    let node = format!("h{n}");
    let cluster = format!("etcd://{ETCD_ADDR}:2379");
    let args = [
        "--cluster",
        &cluster,
        "--cluster-advertise",
        &advertise,
        "--node-name",
        &node,
        "--cluster-lease-ttl",
        "3",
        "--firewall-backend",
        backend,
    ];
    Server::start_in(host, &args)
}
