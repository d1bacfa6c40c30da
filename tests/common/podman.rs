//! A real `podman` (Debian's, 4.3) in CNI mode for the CNI plugin tests, run inside a test
//! host's namespace (`nsenter --net`, which keeps the cgroup file system crun/runc need) with
//! its own root, run root and containers.conf: `network_backend = "cni"`, a configuration
//! directory of the test's own, and a plugin directory where `wasmnet` is wasmnet-cni.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::docker::{busybox_tar, remove_tree};
use super::Server;

pub const IMAGE: &str = "localhost/busybox:wasmnet";
const CNI: &str = env!("CARGO_BIN_EXE_wasmnet-cni");

pub struct Podman {
    ns: PathBuf,
    pub dir: PathBuf,
    socket: PathBuf,
}

impl Podman {
    pub fn new(server: &Server) -> Podman {
        let dir = server.dir.join("podman");
        let bin = dir.join("cni-bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        std::os::unix::fs::symlink(CNI, bin.join("wasmnet")).unwrap();
        // The reference plugins too, for benchmarks against podman's own CNI bridge.
        for p in [
            "loopback",
            "bridge",
            "host-local",
            "portmap",
            "firewall",
            "tuning",
        ] {
            std::os::unix::fs::symlink(format!("/usr/lib/cni/{p}"), bin.join(p)).unwrap();
        }
        let conf = format!(
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n\
             [network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\ncni_plugin_dirs = [\"{}\"]\n",
            dir.join("net.d").display(),
            bin.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        Podman {
            ns: server.host.netns_path(),
            dir,
            socket: server.socket.clone(),
        }
    }

    /// A conflist `name` of type wasmnet on wasmnet's `network`, giving its endpoints `labels`.
    pub fn conflist(&self, name: &str, network: &str, labels: Value) {
        let plugin = json!({"type": "wasmnet", "network": network, "socket": self.socket,
            "labels": labels, "capabilities": {"portMappings": true, "ips": true}});
        let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]});
        let path = self.dir.join("net.d").join(format!("{name}.conflist"));
        std::fs::write(path, list.to_string()).unwrap();
    }

    /// Writes a conflist as given (`name` is its file's name).
    pub fn raw_conflist(&self, name: &str, list: &Value) {
        let path = self.dir.join("net.d").join(format!("{name}.conflist"));
        std::fs::write(path, list.to_string()).unwrap();
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        let d = &self.dir;
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .arg("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg(format!("--root={}", d.join("root").display()))
            .arg(format!("--runroot={}", d.join("runroot").display()))
            .arg("--storage-driver=vfs")
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(
            out.status.success(),
            "podman {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn import_busybox(&self) {
        let tar = busybox_tar(&self.dir);
        self.ok(&["import", &tar.display().to_string(), IMAGE]);
    }

    /// `podman run -d`: `sleep 600`, or httpd on port 80 published as `publish`. The limits
    /// are the machine's (podman's defaults exceed its hard limits).
    pub fn run(&self, name: &str, network: &str, publish: Option<&str>) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ]);
        match publish {
            Some(p) => args.extend(["-p", p, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]),
            None => args.extend([IMAGE, "sleep", "600"]),
        }
        self.ok(&args);
    }

    pub fn ip_of(&self, name: &str) -> String {
        let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
        let out = self.ok(&["inspect", "-f", format, name]);
        out.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    pub fn pings(&self, from: &str, to: &str) -> bool {
        let out = self.podman(&["exec", from, "ping", "-c", "1", "-W", "1", to]);
        out.status.success()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        remove_tree(&self.dir);
    }
}
