//! A real `dockerd` (Debian's docker.io, 20.10) for the plugin tests: started inside a test
//! host's namespace with its own data root, exec root and API socket, `--bridge=none` and no
//! iptables (nothing on the machine's own namespace or firewall), and a busybox image made
//! from Debian's busybox-static and imported (no registry is reachable).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Host, Server};

pub const IMAGE: &str = "busybox:wasmnet";

/// The plugin socket a test's daemon serves: Docker finds plugins by socket name in
/// `/run/docker/plugins`, so each test's has a name of its own, which is the driver's name.
pub fn plugin_socket(host: &Host) -> (String, PathBuf) {
    let name = format!("wasmnet-{}", host.name.trim_start_matches("wnt-"));
    let path = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
    (name, path)
}

/// A wasmnet daemon serving the plugin, and the plugin's name.
pub fn start_wasmnet(host: Host) -> (Server, String) {
    std::fs::create_dir_all("/run/docker/plugins").unwrap();
    let (name, path) = plugin_socket(&host);
    let path = path.display().to_string();
    let server = Server::start_in(host, &["--docker-plugin-socket", &path]);
    (server, name)
}

/// An image's root file system as a tar under `dir`: busybox-static alone, its applets the
/// tests use, and a page for httpd to serve.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "ping", "httpd", "wget", "sleep", "ip", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "hello from a container\n").unwrap();
    let tar = dir.join("busybox.tar");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    tar
}

/// Unmounts whatever a runtime left mounted under `dir` (deepest first), then removes it.
pub fn remove_tree(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

pub struct Dockerd {
    child: Option<Child>,
    ns: PathBuf,
    pub dir: PathBuf,
    live_restore: bool,
    /// Docker's own iptables rules (for its bridge networks, in benchmarks); off in tests.
    iptables: bool,
    /// The plugin socket of the host's wasmnet, removed at the end (a killed daemon leaves it).
    plugin: PathBuf,
}

impl Dockerd {
    /// Starts dockerd in the namespace of `server`'s host, its files under the host's
    /// directory; waits until it answers.
    pub fn start(server: &Server, live_restore: bool) -> Dockerd {
        Dockerd::start_with(server, live_restore, false)
    }

    /// As `start`, with Docker's iptables rules on or off.
    pub fn start_with(server: &Server, live_restore: bool, iptables: bool) -> Dockerd {
        let dir = server.dir.join("docker");
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Dockerd {
            child: None,
            ns: server.host.netns_path(),
            dir,
            live_restore,
            iptables,
            plugin: plugin_socket(&server.host).1,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let dir = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.display()))
            .arg("dockerd")
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!(
                "--host=unix://{}",
                dir.join("docker.sock").display()
            ))
            .arg(format!("--pidfile={}", dir.join("docker.pid").display()))
            .arg("--bridge=none")
            .arg(format!("--iptables={}", self.iptables))
            .arg("--ip6tables=false")
            .args(["--storage-driver=vfs", "--log-level=warn"]);
        if self.live_restore {
            cmd.arg("--live-restore");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd (Debian's docker.io) does not start: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            if Instant::now() > deadline {
                return Err(format!("dockerd did not answer in 60 s: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the docker CLI; panics with its output unless it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The image the tests run (see `busybox_tar`).
    pub fn import_busybox(&self) {
        let tar = busybox_tar(&self.dir);
        self.ok(&["import", &tar.display().to_string(), IMAGE]);
    }

    /// SIGTERM, and wait (Docker stops its containers unless it live-restores them).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // nsenter execs dockerd: the child is dockerd itself.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Starts it again after `stop`.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Dockerd {
    /// Containers removed, dockerd stopped (it stops its containerd), then whatever it left
    /// mounted under its directories unmounted and the directories removed.
    fn drop(&mut self) {
        // Stopped with live-restore, its containers still run: it comes back to remove them.
        if self.child.is_none() && self.live_restore {
            let _ = self.try_spawn();
        }
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]);
            let ids = String::from_utf8_lossy(&ids.stdout).to_string();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        self.live_restore = false;
        self.stop();
        remove_tree(&self.dir);
        let _ = std::fs::remove_file(&self.plugin);
    }
}
