//! Bridges, veth pairs (in `veth`), addresses and routes, through rtnetlink.

mod retire;
mod veth;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use futures_util::{StreamExt, TryStreamExt};
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::netns::netlink_in;
use super::{netlink_io, KResult, KernelError};
pub use veth::VethSpec;

const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EADDRNOTAVAIL: i32 = 99;

/// An interface address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// One host's VXLAN device for an overlay network: a port of the network's bridge that
/// carries frames to the other hosts' VTEPs in UDP.
pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    /// This host's VTEP address, on the underlay.
    pub local: Ipv4Addr,
    /// The underlay interface.
    pub underlay: &'a str,
    /// UDP port (IANA's 4789 by default).
    pub port: u16,
    pub bridge: &'a str,
    /// The overlay's MTU: the underlay's less the 50 bytes of encapsulation.
    pub mtu: u32,
}

/// No IPv6 addresses on a link (addr_gen_mode none): no link-local address, so no DAD, router
/// solicitation or MLD report is sent when it comes up.
fn no_ipv6_attr() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

/// Netlink in the daemon's own namespace (the "host").
pub struct Links {
    host: Handle,
    /// Bridge name → ifindex, so a connect needs no lookup; dropped on any doubt.
    bridges: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn fail(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> KernelError {
    let op = op.into();
    move |e| KernelError::new(op, netlink_io(e))
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(errno))
}

async fn index_of(h: &Handle, name: &str) -> KResult<Option<u32>> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if is_errno(&e, ENODEV) => Ok(None),
        Err(e) => Err(fail(format!("looking up link {name}"))(e)),
    }
}

async fn require_index(h: &Handle, name: &str) -> KResult<u32> {
    index_of(h, name).await?.ok_or_else(|| {
        KernelError::new(
            format!("looking up link {name}"),
            std::io::Error::from_raw_os_error(ENODEV),
        )
    })
}

async fn add_address(h: &Handle, index: u32, ifname: &str, a: IfAddr) -> KResult<()> {
    let mut req = h.address().add(index, a.addr, a.prefix);
    if a.addr.is_ipv6() {
        // No duplicate address detection: the address is usable at once, as Docker does.
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Err(e) if is_errno(&e, EEXIST) => Ok(()),
        r => r.map_err(fail(format!("adding {}/{} to {ifname}", a.addr, a.prefix))),
    }
}

async fn set_up(h: &Handle, index: u32, name: &str) -> KResult<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(fail(format!("setting {name} up")))
}

async fn add_default_route(h: &Handle, index: u32, gateway: IpAddr) -> KResult<()> {
    let msg = match gateway {
        IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
        IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gw)
            .output_interface(index)
            .build(),
    };
    match h.route().add(msg).execute().await {
        // The sandbox already has a default route (from another network): keep it, as Docker does.
        Err(e) if is_errno(&e, EEXIST) => Ok(()),
        r => r.map_err(fail(format!("adding the default route via {gateway}"))),
    }
}

impl Links {
    /// A netlink connection in the daemon's namespace.
    pub fn new() -> KResult<Links> {
        let (connection, host, _) =
            rtnetlink::new_connection().map_err(|e| KernelError::new("opening netlink", e))?;
        tokio::spawn(connection);
        Ok(Links {
            host,
            bridges: Default::default(),
        })
    }

    /// Creates the bridge if missing; sets its MTU, addresses, and brings it up. Idempotent.
    /// The bridge gets `mac` explicitly, so it never changes as ports come and go.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
        addrs: &[IfAddr],
    ) -> KResult<()> {
        let index = match index_of(&self.host, name).await? {
            Some(i) => i,
            None => {
                // Multicast snooping off (its per-port timers and queries are per-port work on
                // every join) and the MTU set explicitly (so the kernel does not rescan every
                // port's MTU each time one is added).
                let b = LinkBridge::new(name)
                    .address(mac.to_vec())
                    .mcast_snooping(false)
                    .mtu(mtu.unwrap_or(1500));
                match self.host.link().add(b.build()).execute().await {
                    Err(e) if is_errno(&e, EEXIST) => {}
                    r => r.map_err(fail(format!("creating bridge {name}")))?,
                }
                // Without IPv6 of its own the bridge of an IPv4-only network adds no routes
                // to the host's IPv6 table, which the kernel walks whole each time a port's
                // IPv6 is switched off (every connect): flat with the number of networks.
                if !addrs.iter().any(|a| a.addr.is_ipv6()) {
                    super::write_sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1")?;
                }
                require_index(&self.host, name).await?
            }
        };
        for a in addrs {
            add_address(&self.host, index, name, *a).await?;
        }
        set_up(&self.host, index, name).await?;
        self.bridge_cache().insert(name.to_string(), index);
        Ok(())
    }

    /// Adds `a` to link `name` (already there is fine).
    pub async fn ensure_address(&self, name: &str, a: IfAddr) -> KResult<()> {
        let index = require_index(&self.host, name).await?;
        add_address(&self.host, index, name, a).await
    }

    /// Removes `a` from link `name`; the address or the link already gone is fine.
    pub async fn remove_address(&self, name: &str, a: IfAddr) -> KResult<()> {
        let Some(index) = index_of(&self.host, name).await? else {
            return Ok(());
        };
        let msg = self
            .host
            .address()
            .add(index, a.addr, a.prefix)
            .message_mut()
            .clone();
        match self.host.address().del(msg).execute().await {
            Err(e) if is_errno(&e, EADDRNOTAVAIL) => Ok(()),
            r => r.map_err(fail(format!(
                "removing {}/{} from {name}",
                a.addr, a.prefix
            ))),
        }
    }

    /// Adds `alt` to the names of link `name`, unless it is one of them already.
    pub async fn ensure_altname(&self, name: &str, alt: &str) -> KResult<()> {
        let index = require_index(&self.host, name).await?;
        let op = format!("naming {name} also {alt}");
        match index_of(&self.host, alt).await? {
            Some(i) if i == index => return Ok(()),
            Some(_) => {
                let taken = std::io::Error::from_raw_os_error(EEXIST);
                return Err(KernelError::new(
                    format!("{op}: another link has that name"),
                    taken,
                ));
            }
            None => {}
        }
        let req = self.host.link().property_add(index).alt_ifname(&[alt]);
        req.execute().await.map_err(fail(op))
    }

    fn bridge_cache(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.bridges.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn bridge_index(&self, name: &str) -> KResult<u32> {
        if let Some(i) = self.bridge_cache().get(name) {
            return Ok(*i);
        }
        let index = require_index(&self.host, name).await?;
        self.bridge_cache().insert(name.to_string(), index);
        Ok(index)
    }

    /// Deletes a link of the daemon's namespace; one already gone is fine.
    pub async fn delete_link(&self, name: &str) -> KResult<()> {
        self.bridge_cache().remove(name);
        let Some(index) = index_of(&self.host, name).await? else {
            return Ok(());
        };
        match self.host.link().del(index).execute().await {
            Err(e) if is_errno(&e, ENODEV) => Ok(()),
            r => r.map_err(fail(format!("deleting link {name}"))),
        }
    }

    /// Names of the daemon namespace's links that start with `prefix`.
    pub async fn list(&self, prefix: &str) -> KResult<Vec<String>> {
        let links: Vec<_> = self
            .host
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(fail("listing links"))?;
        Ok(links
            .iter()
            .flat_map(|l| l.attributes.iter())
            .filter_map(|a| match a {
                LinkAttribute::IfName(n) if n.starts_with(prefix) => Some(n.clone()),
                _ => None,
            })
            .collect())
    }

    /// The packet and byte counters of the links named (those that exist): one dump of the
    /// kernel's per-link statistics (RTM_GETSTATS, 64-bit counters only — a link dump would
    /// carry every attribute of every link, 290 ms at 11,000 links), matched by index.
    pub async fn counters(&self, names: &[String]) -> KResult<Vec<(String, super::LinkCounters)>> {
        use netlink_packet_core::{NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
        use netlink_packet_route::stats::{StatsAttribute, StatsFilterMask, StatsMessage};
        use netlink_packet_route::RouteNetlinkMessage;
        let wanted: std::collections::HashMap<u32, &String> = (names.iter())
            .filter_map(|n| {
                nix::net::if_::if_nametoindex(n.as_str())
                    .ok()
                    .map(|i| (i, n))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut msg = StatsMessage::default();
        msg.header.filter_mask = StatsFilterMask::Link64;
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetStats(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut handle = self.host.clone();
        let mut answers = handle
            .request(req)
            .map_err(fail("dumping link statistics"))?;
        let mut out = Vec::new();
        while let Some(answer) = answers.next().await {
            let netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewStats(m)) =
                answer.payload
            else {
                continue;
            };
            let Some(name) = wanted.get(&m.header.ifindex) else {
                continue;
            };
            for a in &m.attributes {
                if let StatsAttribute::Link64(s) = a {
                    let c = super::LinkCounters {
                        rx_bytes: s.rx_bytes,
                        tx_bytes: s.tx_bytes,
                        rx_packets: s.rx_packets,
                        tx_packets: s.tx_packets,
                    };
                    out.push(((*name).clone(), c));
                }
            }
        }
        Ok(out)
    }

    /// The IPv4 networks the host already uses: its addresses' subnets and its routes'
    /// destinations (the default route aside). Subnets picked from the pools avoid them, as
    /// Docker's do, so wasmnet's default network never lands on docker0's or a VPN's.
    pub async fn host_prefixes(&self) -> KResult<Vec<ipnet::IpNet>> {
        let addrs: Vec<_> = (self.host.address().get().execute().try_collect().await)
            .map_err(fail("listing addresses"))?;
        let mut out: Vec<ipnet::IpNet> = addrs
            .iter()
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => {
                        ipnet::Ipv4Net::new(*ip, m.header.prefix_len)
                            .ok()
                            .map(|n| n.trunc().into())
                    }
                    _ => None,
                })
            })
            .collect();
        let routes = self
            .host
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build());
        let routes: Vec<_> =
            (routes.execute().try_collect().await).map_err(fail("listing routes"))?;
        for r in routes
            .iter()
            .filter(|r| r.header.destination_prefix_length > 0)
        {
            for a in &r.attributes {
                if let netlink_packet_route::route::RouteAttribute::Destination(
                    netlink_packet_route::route::RouteAddress::Inet(ip),
                ) = a
                {
                    let len = r.header.destination_prefix_length;
                    out.extend(
                        ipnet::Ipv4Net::new(*ip, len)
                            .ok()
                            .map(|n| ipnet::IpNet::from(n.trunc())),
                    );
                }
            }
        }
        out.retain(|n| !n.addr().is_loopback());
        Ok(out)
    }

    /// The link holding `addr`, with its MTU (the overlay's underlay), if any does.
    pub async fn owner_of(&self, addr: IpAddr) -> KResult<Option<(String, u32)>> {
        let addrs: Vec<_> = self
            .host
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(fail("listing addresses"))?;
        let Some(index) = addrs
            .iter()
            .find(|m| m.attributes.contains(&AddressAttribute::Address(addr)))
            .map(|m| m.header.index)
        else {
            return Ok(None);
        };
        let link = self
            .host
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(fail(format!("looking up the link holding {addr}")))?;
        let attrs = link.map(|l| l.attributes).unwrap_or_default();
        let name = attrs.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        let mtu = attrs.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        });
        Ok(name.map(|n| (n, mtu.unwrap_or(1500))))
    }

    pub async fn exists(&self, name: &str) -> KResult<bool> {
        Ok(index_of(&self.host, name).await?.is_some())
    }

    /// Creates the VXLAN device if missing and makes it a port of its bridge, up. It neither
    /// learns nor floods: remote endpoints are programmed (`add_remote`), and it answers ARP
    /// and neighbour solicitations itself from those entries (proxy), so nothing is
    /// broadcast across hosts. Idempotent.
    pub async fn ensure_vxlan(&self, spec: &VxlanSpec<'_>) -> KResult<()> {
        if index_of(&self.host, spec.name).await?.is_none() {
            let underlay = require_index(&self.host, spec.underlay).await?;
            let bridge = self.bridge_index(spec.bridge).await?;
            let link = LinkVxlan::new(spec.name, spec.vni)
                .dev(underlay)
                .local(spec.local)
                .port(spec.port)
                .learning(false)
                .proxy(true)
                .l2miss(false)
                .l3miss(false)
                .build();
            let mut link = link;
            link.attributes.push(LinkAttribute::Mtu(spec.mtu));
            link.attributes.push(LinkAttribute::Controller(bridge));
            match self.host.link().add(link).execute().await {
                Err(e) if is_errno(&e, EEXIST) => {}
                r => r.map_err(fail(format!(
                    "creating VXLAN {} (VNI {}) on {}",
                    spec.name, spec.vni, spec.underlay
                )))?,
            }
        }
        let index = require_index(&self.host, spec.name).await?;
        set_up(&self.host, index, spec.name).await
    }

    /// A remote endpoint: its MAC is behind `vtep` (a static forwarding entry on the VXLAN
    /// device) and its addresses resolve to that MAC (permanent neighbours the device answers
    /// from). Idempotent.
    pub async fn add_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        let index = require_index(&self.host, vxlan).await?;
        let fdb = self
            .host
            .neighbours()
            .add_bridge(index, &mac)
            .destination(vtep)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace();
        fdb.execute().await.map_err(fail(format!(
            "adding {} behind {vtep} on {vxlan}",
            mac_text(&mac)
        )))?;
        for ip in ips {
            let req = self
                .host
                .neighbours()
                .add(index, *ip)
                .link_layer_address(&mac)
                .state(NeighbourState::Permanent)
                .replace();
            req.execute()
                .await
                .map_err(fail(format!("adding neighbour {ip} on {vxlan}")))?;
        }
        Ok(())
    }

    /// Removes what `add_remote` added; already gone is fine.
    pub async fn remove_remote(
        &self,
        vxlan: &str,
        mac: [u8; 6],
        vtep: IpAddr,
        ips: &[IpAddr],
    ) -> KResult<()> {
        for ip in ips {
            self.unpin_neighbour(vxlan, *ip).await?;
        }
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(vtep)));
        let what = format!("removing {} from {vxlan}", mac_text(&mac));
        self.delete_neighbour(vxlan, msg, what).await
    }

    /// Deletes the neighbour (or forwarding entry) `msg` describes on link `dev`; one
    /// already gone, or on a link already gone, is fine.
    async fn delete_neighbour(
        &self,
        dev: &str,
        mut msg: NeighbourMessage,
        what: String,
    ) -> KResult<()> {
        let Some(index) = index_of(&self.host, dev).await? else {
            return Ok(());
        };
        msg.header.ifindex = index;
        match self.host.neighbours().del(msg).execute().await {
            Err(e) if is_errno(&e, ENOENT) || is_errno(&e, ENODEV) => Ok(()),
            r => r.map_err(fail(what)),
        }
    }

    /// Records `ip` → `mac` on `bridge` as a permanent neighbour: the host never has to ARP
    /// (or solicit) for an endpoint, so nothing is broadcast to every port of a large bridge,
    /// and permanent entries do not fill the kernel's neighbour table.
    pub async fn pin_neighbour(&self, bridge: &str, ip: IpAddr, mac: [u8; 6]) -> KResult<()> {
        let index = require_index(&self.host, bridge).await?;
        let req = self
            .host
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace();
        req.execute()
            .await
            .map_err(fail(format!("adding neighbour {ip} on {bridge}")))
    }

    /// Removes what `pin_neighbour` added; already gone is fine.
    pub async fn unpin_neighbour(&self, bridge: &str, ip: IpAddr) -> KResult<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = if ip.is_ipv6() {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(neighbour_address(ip)));
        let what = format!("removing neighbour {ip} on {bridge}");
        self.delete_neighbour(bridge, msg, what).await
    }

    /// Brings `lo` up inside a namespace.
    pub async fn loopback_up(&self, netns: &Path) -> KResult<()> {
        let inside = netlink_in(netns, &[]).await?;
        let index = require_index(&inside, "lo").await?;
        set_up(&inside, index, "lo").await
    }
}
