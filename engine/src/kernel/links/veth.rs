//! One endpoint's veth pair: created on its network's bridge with its peer directly in the
//! sandbox, both ends configured.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{
    add_address, add_default_route, fail, no_ipv6_attr, require_index, set_up, IfAddr, Links,
};
use crate::kernel::netns::netlink_in;
use crate::kernel::{KResult, KernelError};

/// One endpoint's veth pair: the host end on a bridge, the other end created directly inside
/// the sandbox's namespace.
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub bridge: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
    pub addrs: Vec<IfAddr>,
    /// Default routes to add inside the sandbox (one per family), unless one exists already.
    pub gateways: Vec<IpAddr>,
    /// Whether the network has IPv6; if not, IPv6 is off on the sandbox's interface.
    pub ipv6: bool,
    /// The gateway addresses and the bridge's MAC, pinned as permanent neighbours inside the
    /// sandbox: no ARP per sandbox, and nothing in the kernel's (machine-wide, 1,024 by
    /// default) table of dynamic neighbour entries.
    pub gateway_mac: [u8; 6],
    pub gateway_addrs: Vec<IpAddr>,
    /// The runtime moves and configures the container end (Docker's plugin protocol): it is
    /// created in the host's namespace as `ifname`, down and unconfigured, and `netns`,
    /// `addrs`, `gateways` and `gateway_addrs` are the runtime's business.
    pub handoff: bool,
}

impl Links {
    /// Creates an endpoint's veth pair and configures its sandbox end. On failure, whatever was
    /// created is removed again.
    pub async fn create_veth(&self, spec: &VethSpec<'_>) -> KResult<()> {
        let created = self.try_create_veth(spec).await;
        if created.is_err() {
            if let Err(e) = self.delete_link(spec.host_name).await {
                tracing::warn!(error = %e, "undoing a failed veth creation");
            }
        }
        created
    }

    async fn try_create_veth(&self, spec: &VethSpec<'_>) -> KResult<()> {
        // Step timings, logged at debug level: where a slow connect spends its time.
        let start = std::time::Instant::now();
        let mut marks: Vec<(&str, u128)> = Vec::new();
        let mut mark = |what| marks.push((what, start.elapsed().as_micros()));
        self.add_veth_pair(spec).await?;
        mark("veth");
        self.configure_host_end(spec).await?;
        mark("addrgenmode");
        if spec.handoff {
            return Ok(());
        }
        let inside = netlink_in(spec.netns, &[]).await?;
        mark("netns");
        configure_sandbox_end(&inside, spec).await?;
        mark("inside");
        tracing::debug!(
            veth = spec.host_name,
            ?marks,
            "veth created (µs since start)"
        );
        Ok(())
    }

    /// Creates the pair: the host end on its bridge, the peer directly in the sandbox.
    async fn add_veth_pair(&self, spec: &VethSpec<'_>) -> KResult<()> {
        let ns = match spec.handoff {
            true => None,
            false => Some(std::fs::File::open(spec.netns).map_err(|e| {
                KernelError::new(
                    format!("opening sandbox namespace {}", spec.netns.display()),
                    e,
                )
            })?),
        };
        let bridge_index = self.bridge_index(spec.bridge).await?;
        let veth = veth_message(spec, ns.as_ref().map(|f| f.as_raw_fd()), bridge_index);
        let op = format!(
            "creating veth {} (peer {} in {}) on {}",
            spec.host_name,
            spec.ifname,
            spec.netns.display(),
            spec.bridge
        );
        if let Err(e) = self.host.link().add(veth).execute().await {
            self.bridge_cache().remove(spec.bridge);
            return Err(fail(op)(e));
        }
        Ok(())
    }

    /// The host end: IPv6 off, up, and the endpoint's MAC known to the bridge.
    async fn configure_host_end(&self, spec: &VethSpec<'_>) -> KResult<()> {
        crate::kernel::write_sysctl(
            &format!("net/ipv6/conf/{}/disable_ipv6", spec.host_name),
            "1",
        )?;
        let host_index = require_index(&self.host, spec.host_name).await?;
        // Up, in hairpin mode (one request): a frame the bridge sends back out the port it
        // came in by reaches the sandbox — br_netfilter bridges a DNATed frame to its new
        // destination's port, so a sandbox reaching itself through a service's address or its
        // own published port needs it (Docker without its userland proxy does the same).
        let up = rtnetlink::LinkBridgePort::new(host_index)
            .hairpin(true)
            .up()
            .build();
        let op = format!("setting {} up, in hairpin mode", spec.host_name);
        self.host
            .link()
            .set_port(up)
            .execute()
            .await
            .map_err(fail(op))?;
        // The bridge knows the endpoint's MAC from the start: the first frames to it are not
        // flooded to every port, as they would be until it had sent something. As an
        // "externally learnt" entry: it never ages, yet is not static — each new port of the
        // bridge walks every static entry (br_fdb_unsync_static), 1,000 of them at 1,000 ports.
        let fdb = self
            .host
            .neighbours()
            .add_bridge(host_index, &spec.mac)
            .flags(NeighbourFlags::Controller | NeighbourFlags::ExtLearned)
            .replace();
        fdb.execute().await.map_err(fail(format!(
            "adding {} to the forwarding table of {}",
            spec.host_name, spec.bridge
        )))
    }
}

/// An endpoint's veth pair as one netlink message, its peer created in the namespace open at
/// `netns` (in the host's when there is none: a handoff).
///
/// The host end is created on the bridge, down; IPv6 is switched off on it before it comes up
/// (a bridge port needs none, and an IPv6-enabled port would add a multicast route per port to
/// the host's table, which the kernel then walks on every change). It takes the bridge's MAC:
/// a port's own address is a static "local" entry in the bridge's table, one per port
/// otherwise (see the forwarding entry in `configure_host_end` for why static entries cost);
/// the kernel keeps one entry for ports sharing an address, and a port never sends from its
/// own (no addresses, no IPv6, no STP).
fn veth_message(spec: &VethSpec<'_>, netns: Option<RawFd>, bridge_index: u32) -> LinkMessage {
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.ifname.to_string())
        .address(spec.mac.to_vec());
    if let Some(fd) = netns {
        peer = peer.setns_by_fd(fd);
    }
    let mut veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(spec.host_name.to_string())
        .address(spec.gateway_mac.to_vec())
        .controller(bridge_index);
    if let Some(m) = spec.mtu {
        peer = peer.mtu(m);
        veth = veth.mtu(m);
    }
    veth.set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build()
}

/// The sandbox's end, through `inside` (netlink in its namespace): IPv6 off unless the network
/// has it, its addresses, up, the gateways pinned as neighbours, its default routes.
async fn configure_sandbox_end(inside: &Handle, spec: &VethSpec<'_>) -> KResult<()> {
    let index = require_index(inside, spec.ifname).await?;
    // On a network without IPv6 the sandbox's interface keeps quiet in IPv6 too (as Docker).
    if !spec.ipv6 {
        // Through netlink, not /proc/sys: every sandbox has an `eth0`, and the kernel looks
        // a sysctl path up among all namespaces' entries of that name.
        inside
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .append_extra_attribute(no_ipv6_attr())
                    .build(),
            )
            .execute()
            .await
            .map_err(fail(format!(
                "turning IPv6 off on {} in {}",
                spec.ifname,
                spec.netns.display()
            )))?;
    }
    for a in &spec.addrs {
        add_address(inside, index, spec.ifname, *a).await?;
    }
    set_up(inside, index, spec.ifname).await?;
    for gw in &spec.gateway_addrs {
        let req = inside
            .neighbours()
            .add(index, *gw)
            .link_layer_address(&spec.gateway_mac)
            .state(NeighbourState::Permanent)
            .replace();
        req.execute().await.map_err(fail(format!(
            "adding neighbour {gw} in {}",
            spec.netns.display()
        )))?;
    }
    for gw in &spec.gateways {
        add_default_route(inside, index, *gw).await?;
    }
    Ok(())
}
