//! The bridge driver: a Linux bridge per network holding the gateway addresses, a veth pair per
//! endpoint (its sandbox end created directly inside the sandbox), namespaces for sandboxes.
//! Every operation is idempotent, so the reconciler can simply run it again.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::NetworkDriver;
use crate::kernel::{IfAddr, KResult, Kernel, VethSpec};
use crate::model::{Endpoint, Network, Sandbox};
use crate::names::{bridge_name, veth_name};

pub struct Bridge {
    kernel: Arc<dyn Kernel>,
}

/// A network's bridge MAC: locally administered, from its id, so it is stable across restarts
/// (and sandboxes can pin it as their gateway's).
fn bridge_mac(n: &Network) -> [u8; 6] {
    let mut mac = [0x02, 0, 0, 0, 0, 0];
    for (i, b) in mac.iter_mut().enumerate().skip(1) {
        *b = u8::from_str_radix(&n.id[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    mac
}

pub(crate) fn parse_mac(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    out
}

impl Bridge {
    pub fn new(kernel: Arc<dyn Kernel>) -> KResult<Bridge> {
        // Routing between networks and the outside is the point of a bridge network.
        kernel.write_sysctl("net/ipv4/ip_forward", "1")?;
        Ok(Bridge { kernel })
    }

    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.kernel
    }

    pub async fn create_sandbox(&self, s: &Sandbox) -> KResult<()> {
        let path = Path::new(&s.netns);
        if s.netns_owned {
            self.kernel.create_netns(path).await?;
        }
        // A handoff sandbox's namespace is the runtime's, and may not exist yet (Docker binds
        // it to its key only when the container starts, after Join).
        if s.handoff {
            return Ok(());
        }
        self.kernel.loopback_up(path).await
    }

    /// Removes the namespace if wasmnet created it; an adopted one is never touched.
    pub fn delete_sandbox(&self, s: &Sandbox) -> KResult<()> {
        if s.netns_owned {
            self.kernel.remove_netns(Path::new(&s.netns))?;
        }
        Ok(())
    }

    /// Deletes the endpoint's veth pair (by its host end).
    pub async fn remove_veth(&self, e: &Endpoint) -> KResult<()> {
        self.kernel.delete_link(&veth_name(&e.id)).await
    }

    pub async fn endpoint_exists(&self, e: &Endpoint) -> KResult<bool> {
        self.kernel.link_exists(&veth_name(&e.id)).await
    }
}

#[async_trait]
impl NetworkDriver for Bridge {
    async fn create_network(&self, n: &Network) -> KResult<()> {
        let name = bridge_name(&n.id);
        let mut addrs = vec![IfAddr {
            addr: n.ipv4.gateway,
            prefix: n.ipv4.subnet.prefix_len(),
        }];
        if let Some(v6) = &n.ipv6 {
            self.kernel
                .write_sysctl("net/ipv6/conf/all/forwarding", "1")?;
            addrs.push(IfAddr {
                addr: v6.gateway,
                prefix: v6.subnet.prefix_len(),
            });
        }
        self.kernel
            .ensure_bridge(&name, bridge_mac(n), n.options.mtu(), &addrs)
            .await?;
        if let Some(alt) = n.options.altname() {
            self.kernel.ensure_altname(&name, alt).await?;
        }
        // Lets the host reach published ports through its loopback (DNAT from 127.0.0.1).
        self.kernel
            .write_sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")
    }

    async fn delete_network(&self, n: &Network) -> KResult<()> {
        self.kernel.retire_link(&bridge_name(&n.id)).await
    }

    fn links_of(&self, n: &Network) -> Vec<String> {
        vec![bridge_name(&n.id)]
    }

    /// Connects: the veth pair, addresses, and a default route when `default_route` (the
    /// sandbox's first non-internal network, as in Docker).
    async fn join(
        &self,
        e: &Endpoint,
        n: &Network,
        s: &Sandbox,
        default_route: bool,
    ) -> KResult<()> {
        let mut addrs = Vec::new();
        let mut gateways: Vec<IpAddr> = Vec::new();
        if let Some(a) = e.ipv4 {
            addrs.push(IfAddr {
                addr: a,
                prefix: n.ipv4.subnet.prefix_len(),
            });
            gateways.push(n.ipv4.gateway);
        }
        if let (Some(a), Some(v6)) = (e.ipv6, &n.ipv6) {
            addrs.push(IfAddr {
                addr: a,
                prefix: v6.subnet.prefix_len(),
            });
            gateways.push(v6.gateway);
        }
        if !default_route {
            gateways.clear();
        }
        let host_name = veth_name(&e.id);
        let spec = VethSpec {
            host_name: &host_name,
            bridge: &bridge_name(&n.id),
            netns: Path::new(&s.netns),
            ifname: &e.interface,
            mac: parse_mac(&e.mac),
            mtu: n.options.mtu(),
            addrs,
            gateways,
            ipv6: n.ipv6.is_some(),
            gateway_mac: bridge_mac(n),
            gateway_addrs: n.gateways().collect(),
            handoff: s.handoff,
        };
        self.kernel.create_veth(&spec).await?;
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            if let Err(err) = self.kernel.pin_neighbour(spec.bridge, a, spec.mac).await {
                if let Err(undo) = self.leave(e, n, Some(s)).await {
                    tracing::warn!(error = %undo, "removing a half-made veth");
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// Disconnects: the pinned neighbours go, the veth is retired (deleted by the reaper with
    /// others in one request). A handoff endpoint's container end is the runtime's to name.
    async fn leave(&self, e: &Endpoint, n: &Network, s: Option<&Sandbox>) -> KResult<()> {
        let bridge = bridge_name(&n.id);
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            self.kernel.unpin_neighbour(&bridge, a).await?;
        }
        let inside = s
            .filter(|s| !s.handoff)
            .map(|s| (Path::new(&s.netns), e.interface.as_str()));
        self.kernel.retire_veth(&veth_name(&e.id), inside).await
    }
}
