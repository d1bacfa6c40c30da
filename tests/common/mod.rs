//! Starts the real `wasmnet` binary as a test "host": inside a fresh network namespace (which
//! outlives the daemon, as a real host's would), with its own state dir, run dir, socket and
//! TCP port. Dropping a `Server` kills the daemon; dropping its `Host` removes the namespace,
//! the sandbox namespaces the daemon bind-mounted and the directory: nothing is left behind.
//! The daemon is never started in the machine's own namespace.
#![allow(dead_code)]

pub mod cluster;
pub mod docker;
pub mod net;
pub mod podman;
pub mod policy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wasmnet_web::client::{Client, Target};

pub const BIN: &str = env!("CARGO_BIN_EXE_wasmnet");

static N: AtomicUsize = AtomicUsize::new(0);

/// wasmnet's link group of retired links (`kernel::links::retire::RETIRED_GROUP`).
pub const RETIRED_GROUP: &str = "0x776e6474";

/// Runs a setup command that must succeed.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A test host: a network namespace and a directory, removed (with every sandbox namespace
/// bind-mounted under its run dir) when dropped.
pub struct Host {
    pub name: String,
    pub dir: PathBuf,
}

impl Host {
    pub fn new() -> Host {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("wnt-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("wasmnet-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Host { name, dir }
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the host's namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// What a command run inside the host's namespace printed.
    pub fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(self.exec(args).stdout).unwrap()
    }

    /// Names of the host's links, without `@peer`.
    /// The host's links, once the daemon's reaper deleted those it retired (a disconnect makes
    /// a veth unreachable at once and deletes it moments later): waits for that up to 2 s.
    pub fn links(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline
            && !self
                .stdout(&["ip", "-o", "link", "show", "group", RETIRED_GROUP])
                .trim()
                .is_empty()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stdout(&["ip", "-o", "link"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect()
    }

    /// The namespaces the daemon bind-mounted under its run dir.
    pub fn sandbox_namespaces(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.join("run/netns"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// The `ip netns` names the daemon gave its sandboxes (with the test host's prefix).
    pub fn netns_names(&self) -> Vec<String> {
        let prefix = format!("{}-", self.name);
        std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for ns in self.sandbox_namespaces() {
            let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&ns);
        }
        for name in self.netns_names() {
            let ns = Path::new("/run/netns").join(&name);
            let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&ns);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&name));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Server {
    child: Child,
    pub host: Host,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub url: String,
    pub token: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(Host::new(), extra)
    }

    /// Starts a daemon on `host`, reusing whatever state a previous daemon left there.
    pub fn start_in(host: Host, extra: &[&str]) -> Server {
        let dir = host.dir.clone();
        let socket = dir.join("run/wasmnet.sock");
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", host.netns_path().display()))
            .arg(BIN)
            .arg("serve")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .args(["--listen", "127.0.0.1:0", "--config", "/dev/null"])
            // The Docker plugin's default socket is the machine's: only tests that ask serve one.
            .args(match extra.contains(&"--docker-plugin-socket") {
                true => &[][..],
                false => &["--docker-plugin-socket", "off"][..],
            })
            // Nor a default network, which would take the first default pool.
            .args(match extra.contains(&"--default-network") {
                true => &[][..],
                false => &["--default-network", "off"][..],
            })
            // Sandboxes appear to `ip netns` under the test host's name, so hosts never clash.
            .args(match extra.contains(&"--netns-prefix") {
                true => vec![],
                false => vec!["--netns-prefix".to_string(), format!("{}-", host.name)],
            })
            .args(extra)
            // WASMNET_TEST_LOG=… (e.g. wasmnet_engine::kernel=debug) for a daemon's step logs.
            .env(
                "WASMNET_LOG",
                std::env::var("WASMNET_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nsenter and the wasmnet binary start");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut token) = (String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("wasmnet serving the API on http://") {
                let (addr, tail) = rest.split_once(" (token: ").unwrap();
                url = format!("http://{addr}");
                token = tail.split(',').next().unwrap().to_string();
            }
            if line.starts_with("database:") {
                break;
            }
        }
        assert!(!url.is_empty(), "the server did not start");
        let ns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        assert_ne!(
            ns_of(&child.id().to_string()),
            ns_of("self"),
            "the daemon must not run in the machine's namespace"
        );
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            host,
            dir,
            socket,
            url,
            token,
        }
    }

    /// A client on the unix socket (no token needed).
    pub fn client(&self) -> Client {
        Client::new(Target::Unix(self.socket.clone()), None)
    }

    /// A TCP client; use it inside the host's namespace (`in_netns`).
    pub fn tcp_client(&self, token: Option<&str>) -> Client {
        Client::new(self.url.parse().unwrap(), token.map(str::to_string))
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("state/wasmnet.db")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM, and wait for a clean exit; returns the host, for a restart.
    pub fn stop(mut self) -> Host {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(10))
            .expect("the server stops within 10 s of SIGTERM");
        assert!(status.success(), "the server exited with {status}");
        self.into_host()
    }

    /// kill -9, as a crash would; returns the host, for a restart.
    pub fn crash(mut self) -> Host {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        let _ = self.child.wait();
        self.into_host()
    }

    fn into_host(self) -> Host {
        let mut this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, and its child has exited; only the
        // host is moved out (the other fields are plain data or an exited `Child`).
        unsafe {
            std::ptr::drop_in_place(&mut this.child);
            std::ptr::drop_in_place(&mut this.dir);
            std::ptr::drop_in_place(&mut this.socket);
            std::ptr::drop_in_place(&mut this.url);
            std::ptr::drop_in_place(&mut this.token);
            std::ptr::read(&this.host)
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
        // `host` is dropped next: it removes the namespaces and the directory.
    }
}

/// Runs `f` on a thread inside the namespace at `path` (e.g. for TCP to a daemon's loopback).
/// As `in_netns`, for a closure that borrows: a scoped thread enters the namespace.
pub fn in_netns_scoped<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(path).unwrap();
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&ns),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

pub fn in_netns<T: Send + 'static>(path: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        nix::sched::setns(
            std::os::fd::AsFd::as_fd(&ns),
            nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One test per firewall backend: `per_backend!(nftables: a, b)` makes `nftables::a` calling
/// `a("nftables")`, and so on.
#[allow(unused_macros)]
macro_rules! per_backend {
    ($backend:ident: $($test:ident),*) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(stringify!($backend)).await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use per_backend;
