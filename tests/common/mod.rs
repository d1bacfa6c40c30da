//! Starts the real `wasmnet` binary on a temporary state dir, run dir, socket and TCP port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use wasmnet_web::client::{Client, Target};

pub const BIN: &str = env!("CARGO_BIN_EXE_wasmnet");

pub struct Server {
    child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub url: String,
    pub token: String,
}

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one test's server(s); removed by `Server::drop` of the last user.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wasmnet-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_in(temp_dir(), extra)
    }

    /// Starts a server on `dir` (reusing its state if a previous server left some).
    pub fn start_in(dir: PathBuf, extra: &[&str]) -> Server {
        let socket = dir.join("run/wasmnet.sock");
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .args(["--listen", "127.0.0.1:0", "--config", "/dev/null"])
            .args(extra)
            .env("WASMNET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the wasmnet binary starts");
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
        assert!(!url.is_empty(), "the server did not print its TCP address");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
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

    pub fn tcp_client(&self, token: Option<&str>) -> Client {
        Client::new(self.url.parse().unwrap(), token.map(str::to_string))
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("state/wasmnet.db")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM, and wait for a clean exit; returns the directory for a restart.
    pub fn stop(mut self) -> PathBuf {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(10))
            .expect("the server stops within 10 s of SIGTERM");
        assert!(status.success(), "the server exited with {status}");
        let dir = self.dir.clone();
        std::mem::forget(self);
        dir
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a directory a stopped server left behind.
pub fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
