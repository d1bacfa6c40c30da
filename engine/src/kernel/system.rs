//! The real kernel: [`Kernel`] over rtnetlink (`Links`), namespaces (nix) and /proc/sys.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{netns, sysctl, IfAddr, KResult, Kernel, LinkCounters, Links, VethSpec, VxlanSpec};

/// This host's kernel, in the daemon's network namespace.
pub struct System {
    links: Links,
}

impl System {
    /// Opens a netlink connection in the daemon's namespace.
    pub fn new() -> KResult<System> {
        Ok(System {
            links: Links::new()?,
        })
    }
}

#[async_trait]
impl Kernel for System {
    async fn ensure_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
        addrs: &[IfAddr],
    ) -> KResult<()> {
        self.links.ensure_bridge(name, mac, mtu, addrs).await
    }

    async fn retire_veth(&self, host_name: &str, inside: Option<(&Path, &str)>) -> KResult<()> {
        self.links.retire_veth(host_name, inside).await
    }

    async fn retire_link(&self, name: &str) -> KResult<()> {
        self.links.retire_link(name).await
    }

    async fn reap_retired(&self) -> KResult<()> {
        self.links.reap_retired().await
    }

    async fn host_prefixes(&self) -> KResult<Vec<ipnet::IpNet>> {
        self.links.host_prefixes().await
    }

    async fn ensure_address(&self, link: &str, a: IfAddr) -> KResult<()> {
        self.links.ensure_address(link, a).await
    }

    async fn remove_address(&self, link: &str, a: IfAddr) -> KResult<()> {
        self.links.remove_address(link, a).await
    }

    async fn ensure_altname(&self, name: &str, alt: &str) -> KResult<()> {
        self.links.ensure_altname(name, alt).await
    }

    async fn create_veth(&self, spec: &VethSpec<'_>) -> KResult<()> {
        self.links.create_veth(spec).await
    }

    async fn ensure_vxlan(&self, spec: &VxlanSpec<'_>) -> KResult<()> {
        self.links.ensure_vxlan(spec).await
    }

    async fn delete_link(&self, name: &str) -> KResult<()> {
        self.links.delete_link(name).await
    }

    async fn link_exists(&self, name: &str) -> KResult<bool> {
        self.links.exists(name).await
    }

    async fn list_links(&self, prefix: &str) -> KResult<Vec<String>> {
        self.links.list(prefix).await
    }

    async fn link_counters(&self, names: &[String]) -> KResult<Vec<(String, LinkCounters)>> {
        self.links.counters(names).await
    }

    async fn owner_of(&self, addr: IpAddr) -> KResult<Option<(String, u32)>> {
        self.links.owner_of(addr).await
    }

    async fn pin_neighbour(&self, bridge: &str, ip: IpAddr, mac: [u8; 6]) -> KResult<()> {
        self.links.pin_neighbour(bridge, ip, mac).await
    }

    async fn unpin_neighbour(&self, bridge: &str, ip: IpAddr) -> KResult<()> {
        self.links.unpin_neighbour(bridge, ip).await
    }

    async fn add_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        self.links.add_remote(vxlan, mac, vtep, ips).await
    }

    async fn remove_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        self.links.remove_remote(vxlan, mac, vtep, ips).await
    }

    async fn create_netns(&self, path: &Path) -> KResult<()> {
        netns::create_netns(path).await
    }

    async fn loopback_up(&self, netns: &Path) -> KResult<()> {
        self.links.loopback_up(netns).await
    }

    fn remove_netns(&self, path: &Path) -> KResult<()> {
        netns::remove_netns(path)
    }

    fn link_netns(&self, from: &Path, to: &Path) -> KResult<()> {
        netns::link_netns(from, to)
    }

    fn list_netns(&self, dir: &Path) -> Vec<PathBuf> {
        netns::list_netns(dir)
    }

    fn write_sysctl(&self, key: &str, value: &str) -> KResult<()> {
        sysctl::write_sysctl(key, value)
    }
}
