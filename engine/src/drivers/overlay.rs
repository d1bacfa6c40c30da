//! The overlay driver: on each host, an overlay network is a bridge network (its bridge,
//! gateway and veths are the bridge driver's) plus a VXLAN device as one more port of the
//! bridge. Remote endpoints are programmed into that device from the cluster store (static
//! forwarding entries and neighbours), so nothing is learnt and nothing floods.
//!
//! Every host gives the network's bridge the same gateway address and MAC: a gateway on each
//! host (the VXLAN device answers ARP only for remote endpoints, so a sandbox always finds its
//! own host's), and each host masquerades its own sandboxes' traffic out.

use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;

use super::bridge::{parse_mac, Bridge};
use super::NetworkDriver;
use crate::cluster::keys::EndpointRecord;
use crate::kernel::{KResult, Kernel, VxlanSpec};
use crate::model::{Endpoint, Network, Sandbox};
use crate::names::{bridge_name, vxlan_name};

/// The network's VNI (an option set when the cluster created it).
pub fn vni(n: &Network) -> Option<u32> {
    n.options.vni()
}

/// Where this host's VXLAN devices send from.
#[derive(Clone, Debug)]
pub struct Vtep {
    pub local: Ipv4Addr,
    /// The underlay interface and the overlay's MTU on it (the underlay's less 50).
    pub underlay: String,
    pub mtu: u32,
    pub port: u16,
}

/// The overlay driver: the bridge driver's network plus a VXLAN port.
pub struct Overlay {
    bridge: Arc<Bridge>,
    vtep: Vtep,
}

impl Overlay {
    pub fn new(bridge: Arc<Bridge>, vtep: Vtep) -> Self {
        Overlay { bridge, vtep }
    }
}

#[async_trait]
impl NetworkDriver for Overlay {
    async fn create_network(&self, n: &Network) -> KResult<()> {
        self.bridge.create_network(n).await?;
        let mtu = n.options.mtu().unwrap_or(self.vtep.mtu);
        let spec = VxlanSpec {
            name: &vxlan_name(&n.id),
            vni: vni(n).unwrap_or_default(),
            local: self.vtep.local,
            underlay: &self.vtep.underlay,
            port: self.vtep.port,
            bridge: &bridge_name(&n.id),
            mtu,
        };
        self.bridge.kernel().ensure_vxlan(&spec).await
    }

    async fn delete_network(&self, n: &Network) -> KResult<()> {
        self.bridge.kernel().retire_link(&vxlan_name(&n.id)).await?;
        self.bridge.delete_network(n).await
    }

    async fn join(
        &self,
        e: &Endpoint,
        n: &Network,
        s: &Sandbox,
        default_route: bool,
    ) -> KResult<()> {
        self.bridge.join(e, n, s, default_route).await
    }

    async fn leave(&self, e: &Endpoint, n: &Network, s: Option<&Sandbox>) -> KResult<()> {
        self.bridge.leave(e, n, s).await
    }

    fn links_of(&self, n: &Network) -> Vec<String> {
        vec![bridge_name(&n.id), vxlan_name(&n.id)]
    }
}

/// Programs an endpoint of another host into its network's VXLAN device.
pub async fn add_remote(kernel: &dyn Kernel, r: &EndpointRecord) -> KResult<()> {
    let (dev, mac) = (vxlan_name(&r.network_id), parse_mac(&r.mac));
    kernel.add_remote(&dev, mac, r.vtep, &r.addresses()).await
}

pub async fn remove_remote(kernel: &dyn Kernel, r: &EndpointRecord) -> KResult<()> {
    let (dev, mac) = (vxlan_name(&r.network_id), parse_mac(&r.mac));
    kernel
        .remove_remote(&dev, mac, r.vtep, &r.addresses())
        .await
}
