//! Sandboxes wasmnet creates, as `ip netns` shows them: the namespace bind-mounted again under
//! `ip netns`' directory (`/run/netns/wasmnet-<name>`), and `/etc/netns/<that name>/resolv.conf`
//! naming the sandbox's DNS servers (its networks' gateways), which `ip netns exec` mounts
//! over /etc/resolv.conf and runtimes can mount likewise. The file follows every connect and
//! disconnect before the call returns.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::Engine;
use crate::config::NamesConfig;
use crate::error::{Error, Result};
use crate::model::Sandbox;
use crate::state::View;

/// At most this many nameservers: glibc's resolver reads no more (MAXNS).
const MAX_NAMESERVERS: usize = 3;

impl Engine {
    /// The names a new sandbox of wasmnet's own gets: its `ip netns` name and its resolv.conf.
    pub(super) fn netns_names(&self, name: &str) -> (Option<String>, Option<String>) {
        let names = &self.cfg.names;
        if names.netns_dir.is_none() {
            return (None, None);
        }
        let link = format!("{}{name}", names.netns_prefix);
        let resolv = names.etc_dir.join(&link).join("resolv.conf");
        (Some(link), Some(resolv.to_string_lossy().into_owned()))
    }

    /// Makes a new sandbox visible to `ip netns` and writes its resolv.conf. A name there that
    /// is another namespace is refused (nothing of ours replaces what is not ours).
    pub(super) fn link_sandbox(&self, s: &Sandbox) -> Result<()> {
        let (Some(dir), Some(link)) = (&self.cfg.names.netns_dir, &s.netns_name) else {
            return Ok(());
        };
        let to = dir.join(link);
        if let Err(e) = self
            .drivers
            .bridge
            .kernel()
            .link_netns(Path::new(&s.netns), &to)
        {
            if e.errno() == Some(nix::libc::EEXIST) {
                return Err(Error::conflict(
                    "netns_name_in_use",
                    format!("{} is already another network namespace", to.display()),
                ));
            }
            return Err(e.into());
        }
        self.refresh_resolv(&self.state().view, s);
        Ok(())
    }

    /// Removes what `link_sandbox` made, past every failure.
    pub(super) fn unlink_sandbox(&self, s: &Sandbox, problems: &mut Vec<String>) {
        let conf = s.resolv_conf.as_deref().map(Path::new);
        self.unlink(s.netns_name.as_deref(), conf, problems);
    }

    /// Removes the `ip netns` name `link` and the resolv.conf `conf` (with its directory).
    pub(super) fn unlink(
        &self,
        link: Option<&str>,
        conf: Option<&Path>,
        problems: &mut Vec<String>,
    ) {
        if let (Some(dir), Some(link)) = (&self.cfg.names.netns_dir, link) {
            if let Err(e) = self.drivers.bridge.kernel().remove_netns(&dir.join(link)) {
                problems.push(e.to_string());
            }
        }
        if let Some(conf) = conf {
            let dir = conf.parent();
            for removed in [fs::remove_file(conf), dir.map_or(Ok(()), fs::remove_dir)] {
                match removed {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        problems.push(format!("removing {}: {e}", conf.display()))
                    }
                    _ => {}
                }
            }
        }
    }

    /// Writes a sandbox's resolv.conf as `view` has it (atomically: a reader sees the old or
    /// the new file). A failure is logged: the sandbox's connectivity does not depend on it.
    pub(super) fn refresh_resolv(&self, view: &View, s: &Sandbox) {
        let Some(path) = s.resolv_conf.as_deref().map(PathBuf::from) else {
            return;
        };
        let text = resolv_conf(view, s, &self.cfg.names);
        if let Err(e) = write_atomically(&path, &text) {
            tracing::warn!(path = %path.display(), "writing a sandbox's resolv.conf: {e}");
        }
    }

    /// `refresh_resolv` for the sandbox of `sandbox_id` in the state in force.
    pub(super) fn refresh_resolv_of(&self, sandbox_id: &str) {
        let state = self.state();
        if let Some(s) = state.view.sandboxes().get(sandbox_id) {
            self.refresh_resolv(&state.view, s);
        }
    }
}

/// A sandbox's resolv.conf: the gateways of its networks that serve DNS, its first network
/// first (IPv4 before IPv6), at most three; on no such network, the daemon's upstreams.
pub fn resolv_conf(view: &View, s: &Sandbox, names: &NamesConfig) -> String {
    let mut endpoints: Vec<_> = view.endpoints_of_sandbox(&s.id).collect();
    endpoints.sort_by(|a, b| (&a.created, &a.interface).cmp(&(&b.created, &b.interface)));
    let networks: Vec<_> = endpoints
        .iter()
        .filter_map(|e| view.networks().get(&e.network_id))
        .filter(|n| names.dns && n.options.dns())
        .collect();
    let mut servers: Vec<IpAddr> = networks.iter().map(|n| n.ipv4.gateway).collect();
    servers.extend(
        networks
            .iter()
            .filter_map(|n| n.ipv6.as_ref())
            .map(|c| c.gateway),
    );
    if servers.is_empty() {
        servers = names.upstreams.iter().map(|a| a.ip()).collect();
    }
    servers.dedup();
    let mut text = format!("# wasmnet: sandbox {}'s DNS servers\n", s.name);
    for ip in servers.iter().take(MAX_NAMESERVERS) {
        text.push_str(&format!("nameserver {ip}\n"));
    }
    if !networks.is_empty() {
        // Names are single labels (`web`, `web.net`): ask for them as given first.
        text.push_str("options ndots:0\n");
    }
    text
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("wasmnet-new");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}
