//! The overlay driver: on each host, an overlay network is a bridge network (its bridge,
//! gateway and veths are the bridge driver's) plus a VXLAN device as one more port of the
//! bridge. Remote endpoints are programmed into that device from the cluster store (static
//! forwarding entries and neighbours), so nothing is learnt and nothing floods.
//!
//! Every host gives the network's bridge the same gateway address and MAC: a gateway on each
//! host (the VXLAN device answers ARP only for remote endpoints, so a sandbox always finds its
//! own host's), and each host masquerades its own sandboxes' traffic out.

use crate::cluster::keys::EndpointRecord;
use crate::cluster::Cluster;
use crate::firewall::docker::bridge_name;
use crate::kernel::{KResult, Links, VxlanSpec};
use crate::model::Network;

use super::bridge::parse_mac;

/// The VXLAN device of a network: `wnx` and 12 hex digits of its id (15 characters, and a
/// prefix of its own, apart from the bridges' `wnbr` and the veths' `wnv`).
pub fn vxlan_name(network_id: &str) -> String {
    format!("wnx{}", &network_id[..12])
}

/// The network's VNI (an option set when the cluster created it).
pub fn vni(n: &Network) -> Option<u32> {
    n.options.get("vni").and_then(|v| v.parse().ok())
}

pub async fn create_network(links: &Links, cluster: &Cluster, n: &Network) -> KResult<()> {
    let vni = vni(n).unwrap_or_default();
    let mtu = n
        .options
        .get("mtu")
        .and_then(|m| m.parse().ok())
        .unwrap_or(cluster.mtu);
    links
        .ensure_vxlan(&VxlanSpec {
            name: &vxlan_name(&n.id),
            vni,
            local: cluster.cfg.advertise,
            underlay: &cluster.underlay,
            port: cluster.cfg.vxlan_port,
            bridge: &bridge_name(&n.id),
            mtu,
        })
        .await
}

pub async fn delete_network(links: &Links, n: &Network) -> KResult<()> {
    links.delete_link(&vxlan_name(&n.id)).await
}

pub async fn add_remote(links: &Links, r: &EndpointRecord) -> KResult<()> {
    links
        .add_remote(
            &vxlan_name(&r.network_id),
            parse_mac(&r.mac),
            r.vtep,
            &r.addresses(),
        )
        .await
}

pub async fn remove_remote(links: &Links, r: &EndpointRecord) -> KResult<()> {
    links
        .remove_remote(
            &vxlan_name(&r.network_id),
            parse_mac(&r.mac),
            r.vtep,
            &r.addresses(),
        )
        .await
}
