//! The only code that touches the host's kernel: network namespaces (nix), links, addresses
//! and routes (rtnetlink), sysctls (/proc/sys). Nothing here spawns `ip`.
//!
//! Namespace switches happen only on short-lived dedicated threads (never on tokio's pooled
//! threads), so no thread is ever left in the wrong namespace, even on error: a netlink socket
//! opened inside a namespace stays bound to it after its thread has gone.

#[cfg(test)]
pub mod fake;
mod links;
mod netns;
pub mod nflog;
pub mod nfrules;
pub mod nfservice;
pub mod nfset;
mod sysctl;
mod system;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use links::{IfAddr, Links};
pub use links::{VethSpec, VxlanSpec};
pub use netns::{create_netns, link_netns, list_netns, netns_exists, remove_netns};
pub use sysctl::write_sysctl;
pub use system::System;

/// Everything the drivers and the reconciler ask of the host's kernel: links, neighbours,
/// VXLAN forwarding entries, namespaces, sysctls. [`System`] is the real one; the engine's
/// unit tests use `fake::FakeKernel`. Every operation is idempotent where the kernel allows
/// (making what exists, removing what is gone), so the reconciler can simply run it again.
#[async_trait]
pub trait Kernel: Send + Sync {
    /// Creates the bridge if missing; sets its MAC, MTU and addresses, and brings it up.
    async fn ensure_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
        addrs: &[IfAddr],
    ) -> KResult<()>;
    /// Makes an endpoint's veth unreachable now and leaves its deletion to `reap_retired`:
    /// the container end (`ifname` in the namespace at the path, if given) renamed and down,
    /// the host end down, in wasmnet's retired link group. Already gone is fine.
    async fn retire_veth(&self, host_name: &str, inside: Option<(&Path, &str)>) -> KResult<()>;
    /// The same for a link of the daemon's namespace (a bridge).
    async fn retire_link(&self, name: &str) -> KResult<()>;
    /// Deletes every retired link, in one request.
    async fn reap_retired(&self) -> KResult<()>;
    /// Adds an address to a link of the daemon's namespace (a service's virtual address on
    /// its network's bridge); already there is fine.
    async fn ensure_address(&self, link: &str, a: IfAddr) -> KResult<()>;
    /// Removes it; the address or the link already gone is fine.
    async fn remove_address(&self, link: &str, a: IfAddr) -> KResult<()>;
    /// The IPv4 networks the host's addresses and routes already use (see `Links`).
    async fn host_prefixes(&self) -> KResult<Vec<ipnet::IpNet>>;
    /// Gives link `name` the alternative name `alt` (already its: fine; another link's: EEXIST).
    async fn ensure_altname(&self, name: &str, alt: &str) -> KResult<()>;
    /// An endpoint's veth pair, its sandbox end configured; nothing left on failure.
    async fn create_veth(&self, spec: &VethSpec<'_>) -> KResult<()>;
    async fn ensure_vxlan(&self, spec: &VxlanSpec<'_>) -> KResult<()>;
    /// Already gone is fine.
    async fn delete_link(&self, name: &str) -> KResult<()>;
    async fn link_exists(&self, name: &str) -> KResult<bool>;
    /// Names of the links whose name starts with `prefix`.
    async fn list_links(&self, prefix: &str) -> KResult<Vec<String>>;
    /// The packet and byte counters of the links named (those that exist).
    async fn link_counters(&self, names: &[String]) -> KResult<Vec<(String, LinkCounters)>>;
    /// The link holding `addr` and its MTU.
    async fn owner_of(&self, addr: IpAddr) -> KResult<Option<(String, u32)>>;
    async fn pin_neighbour(&self, bridge: &str, ip: IpAddr, mac: [u8; 6]) -> KResult<()>;
    async fn unpin_neighbour(&self, bridge: &str, ip: IpAddr) -> KResult<()>;
    /// A remote endpoint behind `vtep` on a VXLAN device (forwarding entry and neighbours).
    async fn add_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()>;
    async fn remove_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()>;
    /// A new network namespace bind-mounted at `path`.
    async fn create_netns(&self, path: &Path) -> KResult<()>;
    async fn loopback_up(&self, netns: &Path) -> KResult<()>;
    fn remove_netns(&self, path: &Path) -> KResult<()>;
    /// The namespace at `from` bind-mounted at `to` as well (`ip netns`' view of it); an
    /// existing mount there is kept. `remove_netns(to)` removes it.
    fn link_netns(&self, from: &Path, to: &Path) -> KResult<()>;
    /// The namespaces bind-mounted in `dir`.
    fn list_netns(&self, dir: &Path) -> Vec<PathBuf>;
    /// `key` relative to /proc/sys, in the daemon's namespace.
    fn write_sysctl(&self, key: &str, value: &str) -> KResult<()>;
}

/// A kernel operation that failed: what was being done, and the OS error it got.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct KernelError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl KernelError {
    pub fn new(op: impl Into<String>, source: io::Error) -> Self {
        KernelError {
            op: op.into(),
            source,
        }
    }

    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Converts a netlink failure into the OS error it carries.
pub(crate) fn netlink_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => io::Error::from_raw_os_error(-code.get()),
            None => io::Error::other("netlink acknowledged without error"),
        },
        other => io::Error::other(other.to_string()),
    }
}

pub type KResult<T> = Result<T, KernelError>;

/// Runs `f` on a new thread and returns its result without blocking the runtime. For work that
/// switches namespaces: the thread ends with `f`, so its namespace dies with it.
pub(crate) async fn on_dedicated_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wasmnet-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawning a thread");
    rx.await.expect("the namespace thread does not panic")
}

/// A link's counters, as the kernel keeps them (for a veth's host end, `rx` is what its
/// sandbox sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}
