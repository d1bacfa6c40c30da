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
    /// With TLS: the directory of the test PKI (see `Pki`).
    pki: Option<PathBuf>,
}

impl Etcd {
    pub fn start(underlay: &Host, pki: Option<PathBuf>) -> Etcd {
        let mut e = Etcd {
            child: None,
            underlay: underlay.netns_path(),
            dir: underlay.dir.join("etcd"),
            pki,
        };
        e.restart();
        e
    }

    pub fn restart(&mut self) {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://{ETCD_ADDR}:2379");
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let mut tls: Vec<String> = Vec::new();
        if let Some(pki) = &self.pki {
            let files = [
                ("--cert-file", "server.crt"),
                ("--key-file", "server.key"),
                ("--trusted-ca-file", "ca.crt"),
            ];
            tls = pki_flags(pki, &files);
            tls.push("--client-cert-auth".into());
        }
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.underlay.display()))
            .arg("etcd")
            .args(["--name", "wasmnet-test", "--data-dir"])
            .arg(&self.dir)
            .args(&tls)
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
    pub pki: Option<PathBuf>,
}

impl Underlay {
    pub fn new() -> Underlay {
        Underlay::with(false)
    }

    /// etcd serving TLS only, and asking clients for a certificate.
    pub fn with_tls() -> Underlay {
        Underlay::with(true)
    }

    fn with(tls: bool) -> Underlay {
        let host = Host::new();
        let ns = host.name.clone();
        sh(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        let etcd_addr = format!("{ETCD_ADDR}/24");
        sh(&["ip", "-n", &ns, "addr", "add", &etcd_addr, "dev", "br0"]);
        let pki = tls.then(|| make_pki(&host.dir.join("pki")));
        Underlay {
            etcd: Etcd::start(&host, pki.clone()),
            host,
            pki,
        }
    }

    /// A test host wired to the underlay as 192.0.2.`n`, running wasmnet in the cluster.
    pub fn join(&self, n: u8, backend: &str) -> Server {
        let host = Host::new();
        self.wire(n, &host);
        self.start(host, n, backend)
    }

    /// As `join`, on a given host and with exactly these TLS flags (nftables).
    pub fn join_with(&self, n: u8, host: Host, tls: &[&str]) -> Server {
        self.wire(n, &host);
        start(host, n, "nftables", self.pki.is_some(), tls)
    }

    /// A new test host wired to the underlay as 192.0.2.`n`, no wasmnet started.
    pub fn wired(&self, n: u8) -> Host {
        let host = Host::new();
        self.wire(n, &host);
        host
    }

    /// Wires `host` to the underlay bridge as 192.0.2.`n`.
    fn wire(&self, n: u8, host: &Host) {
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
    }

    /// Starts (or restarts) wasmnet on test host `n` of the cluster (over TLS with the test
    /// PKI's client certificate when etcd wants TLS).
    pub fn start(&self, host: Host, n: u8, backend: &str) -> Server {
        let files = [
            ("--cluster-ca", "ca.crt"),
            ("--cluster-cert", "client.crt"),
            ("--cluster-key", "client.key"),
        ];
        let tls = self.pki.as_ref().map(|p| pki_flags(p, &files));
        let tls: Vec<&str> = tls.iter().flatten().map(String::as_str).collect();
        start(host, n, backend, self.pki.is_some(), &tls)
    }
}

/// `--flag PATH` pairs for files of the test PKI.
fn pki_flags(pki: &std::path::Path, files: &[(&str, &str)]) -> Vec<String> {
    files
        .iter()
        .flat_map(|(flag, file)| [flag.to_string(), pki.join(file).display().to_string()])
        .collect()
}

/// A CA, a server certificate for etcd's address and a client certificate (EC keys), with
/// openssl, valid for a day.
fn make_pki(dir: &std::path::Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let at = |f: &str| dir.join(f).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "openssl",
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=wasmnet-test-ca",
    ];
    ca.extend(ec);
    let (ca_key, ca_crt) = (at("ca.key"), at("ca.crt"));
    ca.extend(["-keyout", &ca_key, "-out", &ca_crt]);
    sh(&ca);
    let san = format!("subjectAltName=IP:{ETCD_ADDR}\nextendedKeyUsage=serverAuth\n");
    for (who, ext) in [
        ("server", san.as_str()),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, crt, extfile) = (
            at(&format!("{who}.key")),
            at(&format!("{who}.csr")),
            at(&format!("{who}.crt")),
            at(&format!("{who}.ext")),
        );
        std::fs::write(&extfile, ext).unwrap();
        let mut req = vec!["openssl", "req", "-subj", "/CN=wasmnet-test"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        sh(&req);
        sh(&[
            "openssl",
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-extfile",
            &extfile,
        ]);
    }
    dir.to_path_buf()
}

/// Starts wasmnet on test host `n` in the cluster at `ETCD_ADDR`, with `extra` flags.
pub fn start(host: Host, n: u8, backend: &str, tls: bool, extra: &[&str]) -> Server {
    let advertise = format!("192.0.2.{n}");
    let node = format!("h{n}");
    let scheme = if tls { "etcds" } else { "etcd" };
    let cluster = format!("{scheme}://{ETCD_ADDR}:2379");
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
    let args: Vec<&str> = args.iter().copied().chain(extra.iter().copied()).collect();
    Server::start_in(host, &args)
}
