//! A kernel in memory, for unit tests of the engine's logic without root (in the spirit of
//! knftables' `Fake`): it keeps the links, neighbours, namespaces and sysctls it was asked
//! for, refuses what the kernel would (a link that exists, a port on a missing bridge), and
//! can be told to fail the next call of one operation.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{IfAddr, KResult, Kernel, KernelError, LinkCounters, VethSpec, VxlanSpec};

/// What a fake link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeLink {
    Bridge {
        addrs: Vec<IfAddr>,
    },
    /// The host end of a veth, a port of `bridge`; its other end `ifname` is in `netns`.
    Veth {
        bridge: String,
        netns: PathBuf,
        ifname: String,
    },
    Vxlan {
        vni: u32,
        bridge: String,
    },
}

#[derive(Default, Debug)]
pub struct FakeState {
    pub links: BTreeMap<String, FakeLink>,
    /// (device, address) pinned.
    pub neighbours: BTreeSet<(String, IpAddr)>,
    /// (VXLAN device, VTEP, addresses) programmed.
    pub remotes: BTreeSet<(String, IpAddr, Vec<IpAddr>)>,
    pub netns: BTreeSet<PathBuf>,
    /// Where namespaces were bind-mounted again (`ip netns`' names).
    pub netns_links: BTreeSet<PathBuf>,
    pub sysctls: BTreeMap<String, String>,
    /// Networks the host's own addresses and routes use.
    pub host_prefixes: Vec<ipnet::IpNet>,
    /// Links retired (unreachable, waiting for `reap_retired`).
    pub retired: BTreeSet<String>,
    /// Every call, in order (its operation name).
    pub calls: Vec<&'static str>,
    /// Operations to fail the next time they are called.
    pub fail: BTreeSet<&'static str>,
}

#[derive(Default)]
pub struct FakeKernel {
    state: Mutex<FakeState>,
}

impl FakeKernel {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next call of `op` (a method name, e.g. `create_veth`) fails with EIO.
    pub fn fail_next(&self, op: &'static str) {
        self.lock().fail.insert(op);
    }

    /// A look at (or a change to) what the fake kernel holds.
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.lock())
    }

    pub fn link_names(&self) -> Vec<String> {
        self.lock().links.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the call; fails it if asked to.
    fn call(&self, op: &'static str) -> KResult<std::sync::MutexGuard<'_, FakeState>> {
        let mut s = self.lock();
        s.calls.push(op);
        if s.fail.remove(op) {
            return Err(KernelError::new(
                op,
                io::Error::from_raw_os_error(libc_eio()),
            ));
        }
        Ok(s)
    }
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}

fn errno(op: &str, e: nix::errno::Errno) -> KernelError {
    KernelError::new(op, io::Error::from_raw_os_error(e as i32))
}

#[async_trait]
impl Kernel for FakeKernel {
    async fn ensure_bridge(
        &self,
        name: &str,
        _mac: [u8; 6],
        _mtu: Option<u32>,
        addrs: &[IfAddr],
    ) -> KResult<()> {
        let mut s = self.call("ensure_bridge")?;
        let addrs = addrs.to_vec();
        s.links.insert(name.into(), FakeLink::Bridge { addrs });
        Ok(())
    }

    async fn retire_veth(&self, host_name: &str, _inside: Option<(&Path, &str)>) -> KResult<()> {
        drop(self.call("retire_veth")?);
        self.retire_link(host_name).await
    }

    async fn retire_link(&self, name: &str) -> KResult<()> {
        let mut s = self.call("retire_link")?;
        if s.links.remove(name).is_some() {
            s.retired.insert(name.to_string());
        }
        s.neighbours.retain(|(dev, _)| dev != name);
        Ok(())
    }

    async fn reap_retired(&self) -> KResult<()> {
        self.call("reap_retired")?.retired.clear();
        Ok(())
    }

    async fn ensure_address(&self, link: &str, a: IfAddr) -> KResult<()> {
        let mut s = self.call("ensure_address")?;
        match s.links.get_mut(link) {
            Some(FakeLink::Bridge { addrs }) => {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
                Ok(())
            }
            _ => Err(errno("ensure_address", nix::errno::Errno::ENODEV)),
        }
    }

    async fn remove_address(&self, link: &str, a: IfAddr) -> KResult<()> {
        let mut s = self.call("remove_address")?;
        if let Some(FakeLink::Bridge { addrs }) = s.links.get_mut(link) {
            addrs.retain(|x| *x != a);
        }
        Ok(())
    }

    async fn host_prefixes(&self) -> KResult<Vec<ipnet::IpNet>> {
        Ok(self.call("host_prefixes")?.host_prefixes.clone())
    }

    async fn ensure_altname(&self, name: &str, _alt: &str) -> KResult<()> {
        let s = self.call("ensure_altname")?;
        match s.links.contains_key(name) {
            true => Ok(()),
            false => Err(errno("ensure_altname", nix::errno::Errno::ENODEV)),
        }
    }

    async fn create_veth(&self, spec: &VethSpec<'_>) -> KResult<()> {
        let mut s = self.call("create_veth")?;
        if s.links.contains_key(spec.host_name) {
            return Err(errno("create_veth", nix::errno::Errno::EEXIST));
        }
        if !matches!(s.links.get(spec.bridge), Some(FakeLink::Bridge { .. })) {
            return Err(errno("create_veth", nix::errno::Errno::ENODEV));
        }
        if !spec.handoff && !s.netns.contains(spec.netns) {
            return Err(errno("create_veth", nix::errno::Errno::ENOENT));
        }
        let link = FakeLink::Veth {
            bridge: spec.bridge.into(),
            netns: spec.netns.into(),
            ifname: spec.ifname.into(),
        };
        s.links.insert(spec.host_name.into(), link);
        Ok(())
    }

    async fn ensure_vxlan(&self, spec: &VxlanSpec<'_>) -> KResult<()> {
        let mut s = self.call("ensure_vxlan")?;
        let link = FakeLink::Vxlan {
            vni: spec.vni,
            bridge: spec.bridge.into(),
        };
        s.links.insert(spec.name.into(), link);
        Ok(())
    }

    async fn delete_link(&self, name: &str) -> KResult<()> {
        let mut s = self.call("delete_link")?;
        // As the real one: already gone is fine; a bridge takes its ports' neighbours along.
        s.links.remove(name);
        s.neighbours.retain(|(dev, _)| dev != name);
        Ok(())
    }

    async fn link_exists(&self, name: &str) -> KResult<bool> {
        Ok(self.call("link_exists")?.links.contains_key(name))
    }

    async fn link_counters(&self, names: &[String]) -> KResult<Vec<(String, LinkCounters)>> {
        let s = self.call("link_counters")?;
        Ok((names.iter())
            .filter(|n| s.links.contains_key(*n))
            .map(|n| (n.clone(), LinkCounters::default()))
            .collect())
    }

    async fn list_links(&self, prefix: &str) -> KResult<Vec<String>> {
        let s = self.call("list_links")?;
        Ok(s.links
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn owner_of(&self, _addr: IpAddr) -> KResult<Option<(String, u32)>> {
        drop(self.call("owner_of")?);
        Ok(None)
    }

    async fn pin_neighbour(&self, bridge: &str, ip: IpAddr, _mac: [u8; 6]) -> KResult<()> {
        let mut s = self.call("pin_neighbour")?;
        s.neighbours.insert((bridge.into(), ip));
        Ok(())
    }

    async fn unpin_neighbour(&self, bridge: &str, ip: IpAddr) -> KResult<()> {
        let mut s = self.call("unpin_neighbour")?;
        s.neighbours.remove(&(bridge.to_string(), ip));
        Ok(())
    }

    async fn add_remote(
        &self,
        vxlan: &str,
        _mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        let mut s = self.call("add_remote")?;
        s.remotes.insert((vxlan.into(), vtep, ips.to_vec()));
        Ok(())
    }

    async fn remove_remote(
        &self,
        vxlan: &str,
        _mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        let mut s = self.call("remove_remote")?;
        s.remotes.remove(&(vxlan.to_string(), vtep, ips.to_vec()));
        Ok(())
    }

    async fn create_netns(&self, path: &Path) -> KResult<()> {
        self.call("create_netns")?.netns.insert(path.into());
        Ok(())
    }

    async fn loopback_up(&self, netns: &Path) -> KResult<()> {
        let s = self.call("loopback_up")?;
        match s.netns.contains(netns) {
            true => Ok(()),
            false => Err(errno("loopback_up", nix::errno::Errno::ENOENT)),
        }
    }

    fn link_netns(&self, from: &Path, to: &Path) -> KResult<()> {
        let mut s = self.call("link_netns")?;
        match s.netns.contains(from) {
            true => {
                s.netns_links.insert(to.into());
                Ok(())
            }
            false => Err(errno("link_netns", nix::errno::Errno::ENOENT)),
        }
    }

    fn remove_netns(&self, path: &Path) -> KResult<()> {
        let mut s = self.call("remove_netns")?;
        s.netns.remove(path);
        s.netns_links.remove(path);
        // A namespace takes the sandbox ends of its veths along, and with them the pairs.
        s.links
            .retain(|_, l| !matches!(l, FakeLink::Veth { netns, .. } if netns == path));
        Ok(())
    }

    fn list_netns(&self, dir: &Path) -> Vec<PathBuf> {
        let mut s = self.lock();
        s.calls.push("list_netns");
        s.netns
            .iter()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }

    fn write_sysctl(&self, key: &str, value: &str) -> KResult<()> {
        self.call("write_sysctl")?
            .sysctls
            .insert(key.into(), value.into());
        Ok(())
    }
}
