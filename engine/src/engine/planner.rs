//! Planning, pure: what a new network or endpoint will be (its addresses, host ports,
//! interface name, default route) computed over a state value, touching nothing. The
//! operations call it under the writer lock, so the state cannot change meanwhile.

use std::net::IpAddr;
use std::sync::Arc;

use wasmnet_policy::ir::PortDecision;

use crate::error::{Error, Result};
use crate::ids;
use crate::ipam::{plan_family, AddressSpace, PoolSpec, StaticRefusal, UsedSubnet};
use crate::model::*;
use crate::policy::Applied;
use crate::state::View;

/// A Linux bridge takes at most 1,024 ports (BR_MAX_PORTS), one of them its own.
pub const MAX_ENDPOINTS_PER_NETWORK: usize = 1023;

/// Host ports handed out when a mapping asks for none (Docker's fallback range).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49153..=65535;

/// A planned endpoint and what its kernel plumbing needs.
#[derive(Clone)]
pub struct EndpointPlan {
    pub endpoint: Endpoint,
    pub network: Arc<Network>,
    pub sandbox: Arc<Sandbox>,
    pub default_route: bool,
    /// (policy id, group) for each group the policies put it in.
    pub members: Vec<(String, String)>,
}

/// A new network: its name is free, its subnets planned from the request or the pools.
pub fn plan_network(
    v: &View,
    req: NetworkCreate,
    pools_v4: &[PoolSpec],
    pools_v6: &[PoolSpec],
) -> Result<Network> {
    if v.networks().has_name(&req.name) {
        return Err(Error::conflict(
            "name_in_use",
            format!("network name {:?} is already in use", req.name),
        ));
    }
    let used = |v6: bool| -> Vec<UsedSubnet<'_>> {
        v.networks()
            .iter_from(None)
            .filter_map(|n| {
                if v6 { n.ipv6.as_ref() } else { Some(&n.ipv4) }.map(|c| UsedSubnet {
                    subnet: c.subnet,
                    network: &n.name,
                })
            })
            .collect()
    };
    if let Some(alt) = req.options.get("altname") {
        let taken = v
            .networks()
            .iter_from(None)
            .find(|n| n.options.altname() == Some(alt));
        if let Some(n) = taken {
            return Err(Error::conflict(
                "altname_in_use",
                format!(
                    "options.altname {alt:?} is the bridge of network {:?}",
                    n.name
                ),
            ));
        }
    }
    let ipv4 = plan_family("ipv4", &req.ipv4, false, pools_v4, &used(false))?;
    let ipv6 = match (&req.ipv6, req.enable_ipv6) {
        (None, false) => None,
        (r, _) => Some(plan_family(
            "ipv6",
            &r.clone().unwrap_or_default(),
            true,
            pools_v6,
            &used(true),
        )?),
    };
    Ok(Network {
        id: ids::new_id(),
        name: req.name,
        driver: req.driver,
        ipv4,
        ipv6,
        internal: req.internal,
        labels: req.labels,
        options: Options::parse(req.options)?,
        created: ids::now(),
    })
}

/// Resolves references and allocates addresses and ports for a new endpoint.
pub fn plan_endpoint(v: &View, req: EndpointCreate) -> Result<EndpointPlan> {
    let network = v.networks().resolve(&req.network)?;
    let sandbox = v.sandboxes().resolve(&req.sandbox)?;
    check_room(v, &network, &sandbox)?;
    let interface = interface_name(v, &sandbox, req.interface)?;
    let spaces = v.spaces(&network.id).expect("every network has its spaces");
    // IPv6 first: asking for an IPv6 address on a v4-only network is the caller's mistake,
    // to be reported as such even when the IPv4 space is full.
    let ipv6 = match (&spaces.v6, req.ipv6) {
        (Some(space), want) => Some(pick_address("ipv6", &network.name, space, want)?),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "ipv6",
                format!("network {:?} has no IPv6 subnet", network.name),
            ))
        }
        (None, None) => None,
    };
    let ipv4 = Some(pick_address("ipv4", &network.name, &spaces.v4, req.ipv4)?);
    let ports = plan_ports(v, &req.ports)?;
    // Docker: the default route comes from the sandbox's first non-internal network.
    let has_way_out = v
        .endpoints_of_sandbox(&sandbox.id)
        .any(|e| v.networks().get(&e.network_id).is_some_and(|n| !n.internal));
    let endpoint = Endpoint {
        id: ids::new_id(),
        network_id: network.id.clone(),
        network_name: network.name.clone(),
        sandbox_id: sandbox.id.clone(),
        sandbox_name: sandbox.name.clone(),
        interface,
        mac: req.mac.unwrap_or_else(|| ids::derive_mac(ipv4)),
        ipv4,
        ipv6,
        aliases: req.aliases,
        ports,
        labels: req.labels,
        created: ids::now(),
    };
    Ok(EndpointPlan {
        endpoint,
        default_route: !network.internal && !has_way_out,
        network,
        sandbox,
        members: vec![],
    })
}

/// One endpoint per (network, sandbox), and at most what a bridge takes.
fn check_room(v: &View, network: &Network, sandbox: &Sandbox) -> Result<()> {
    if let Some(e) = v
        .endpoints_of_sandbox(&sandbox.id)
        .find(|e| e.network_id == network.id)
    {
        return Err(Error::conflict(
            "already_connected",
            format!(
                "sandbox {:?} is already connected to network {:?} (endpoint {})",
                sandbox.name, network.name, e.id
            ),
        ));
    }
    let count = v.endpoint_count_of_network(&network.id);
    if count >= MAX_ENDPOINTS_PER_NETWORK {
        return Err(Error::conflict(
            "network_full",
            format!(
                "network {:?} has {count} endpoints, the most a Linux bridge can take",
                network.name
            ),
        ));
    }
    Ok(())
}

/// The interface asked for if it is free in the sandbox, else the next free `ethN`.
fn interface_name(v: &View, sandbox: &Sandbox, want: Option<String>) -> Result<String> {
    let taken: Vec<&str> = v
        .endpoints_of_sandbox(&sandbox.id)
        .map(|e| e.interface.as_str())
        .collect();
    match want {
        Some(name) if taken.contains(&name.as_str()) => Err(Error::conflict(
            "interface_in_use",
            format!("sandbox {:?} already has an interface {name}", sandbox.name),
        )),
        Some(name) => Ok(name),
        None => Ok((0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !taken.contains(&n.as_str()))
            .expect("unbounded")),
    }
}

/// Where policies may remap published ports (from the daemon's configuration).
pub struct RemapBounds<'a> {
    pub ranges: &'a [std::ops::RangeInclusive<u16>],
    /// The daemon's own listening ports.
    pub reserved: &'a [u16],
}

impl RemapBounds<'_> {
    /// Why a remap from `asked` (0: any) to `to` is not allowed, if it is not.
    fn refuses(&self, asked: u16, to: u16) -> Option<String> {
        if self.reserved.contains(&to) {
            return Some(format!("{to} is a port wasmnet itself listens on"));
        }
        let in_range = self.ranges.iter().any(|r| r.contains(&to));
        let low = self.ranges.iter().map(|r| *r.start()).min().unwrap_or(1);
        let as_asked = asked != 0 && asked < low && to >= asked;
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}-{}", r.start(), r.end()))
            .collect();
        (!in_range && !as_asked).then(|| {
            format!(
                "{to} is outside the host ports policies may remap to ({})",
                ranges.join(", ")
            )
        })
    }
}

/// Applies the policies' published-port decisions to the request: a refusal is the error,
/// remaps change the host port (within `bounds`). Returns whether anything was remapped
/// (then plan again).
pub fn apply_port_decisions(
    req: &mut EndpointCreate,
    decisions: &[(Applied, wasmnet_policy::ir::EndpointDecision)],
    bounds: &RemapBounds<'_>,
) -> Result<bool> {
    let mut remapped = false;
    for (i, port) in req.ports.iter_mut().enumerate() {
        let first = decisions
            .iter()
            .filter(|(a, _)| !a.audit)
            .find_map(|(a, d)| match &d.ports[i] {
                PortDecision::Honour => None,
                other => Some((a, other)),
            });
        match first {
            Some((a, PortDecision::Refuse(why))) => {
                return Err(Error::invalid(
                    format!("ports[{i}]"),
                    format!("refused by policy {:?}: {why}", a.policy_name),
                ))
            }
            Some((a, PortDecision::Remap(to))) => {
                if let Some(why) = bounds.refuses(port.host_port, *to) {
                    return Err(Error::invalid(
                        format!("ports[{i}]"),
                        format!("policy {:?} remapped the host port: {why}", a.policy_name),
                    ));
                }
                port.host_port = *to;
                remapped = true;
            }
            _ => {}
        }
    }
    Ok(remapped)
}

/// Checks what can be checked of a connect request without any state.
pub fn validate_endpoint_request(req: &mut EndpointCreate) -> Result<()> {
    if let Some(i) = &req.interface {
        validate_interface("interface", i)?;
    }
    if let Some(mac) = &req.mac {
        req.mac = Some(validate_mac("mac", mac)?);
    }
    for (field, addr, v6) in [("ipv4", req.ipv4, false), ("ipv6", req.ipv6, true)] {
        if let Some(a) = addr.filter(|a| a.is_ipv6() != v6) {
            let family = if v6 { "IPv6" } else { "IPv4" };
            return Err(Error::invalid(
                field,
                format!("{a} is not an {family} address"),
            ));
        }
    }
    for (i, alias) in req.aliases.iter().enumerate() {
        validate_name(&format!("aliases[{i}]"), alias)?;
    }
    validate_labels("labels", &req.labels)?;
    for (i, p) in req.ports.iter().enumerate() {
        if p.container_port == 0 {
            return Err(Error::invalid(
                format!("ports[{i}].container_port"),
                "must be between 1 and 65535",
            ));
        }
        if p.host_ip
            .is_some_and(|ip| ip.is_multicast() || ip.is_unspecified())
        {
            return Err(Error::invalid(
                format!("ports[{i}].host_ip"),
                "must be a unicast address; leave it out to publish on every address",
            ));
        }
    }
    Ok(())
}

/// A static address if asked for (checked), else the next free one.
pub(super) fn pick_address(
    field: &str,
    network: &str,
    space: &AddressSpace,
    want: Option<IpAddr>,
) -> Result<IpAddr> {
    let Some(addr) = want else {
        return space.next_free().ok_or_else(|| {
            Error::conflict(
                "address_exhausted",
                format!("network {network:?} has no free {field} address left"),
            )
        });
    };
    match space.check_static(addr) {
        Ok(()) => Ok(addr),
        Err(StaticRefusal::OutsideSubnet) => Err(Error::invalid(
            field,
            format!("{addr} is not inside the subnet of network {network:?}"),
        )),
        Err(StaticRefusal::Reserved) => Err(Error::invalid(
            field,
            format!("{addr} is reserved (network, broadcast or gateway address)"),
        )),
        Err(StaticRefusal::InUse) => Err(Error::conflict(
            "address_in_use",
            format!("{addr} is already in use on network {network:?}"),
        )),
    }
}

/// Host ports for the requested mappings: given ones must be free, absent ones are picked.
fn plan_ports(v: &View, requests: &[PortRequest]) -> Result<Vec<PortMapping>> {
    let mut planned: Vec<PortMapping> = Vec::with_capacity(requests.len());
    let clashes = |m: &PortMapping, planned: &[PortMapping]| {
        v.port_taken(m)
            || planned.iter().any(|o| {
                o.protocol == m.protocol
                    && o.host_port == m.host_port
                    && (o.host_ip.is_none() || m.host_ip.is_none() || o.host_ip == m.host_ip)
            })
    };
    for (i, r) in requests.iter().enumerate() {
        let mut m = PortMapping {
            host_ip: r.host_ip,
            host_port: r.host_port,
            container_port: r.container_port,
            protocol: r.protocol,
        };
        if r.host_port == 0 {
            m.host_port = EPHEMERAL_PORTS
                .clone()
                .find(|&port| {
                    !clashes(
                        &PortMapping {
                            host_port: port,
                            ..m
                        },
                        &planned,
                    )
                })
                .ok_or_else(|| {
                    Error::conflict(
                        "port_exhausted",
                        format!("ports[{i}]: no free host port left in 49153-65535"),
                    )
                })?;
        } else if clashes(&m, &planned) {
            let on = m
                .host_ip
                .map_or("every address".to_string(), |ip| ip.to_string());
            return Err(Error::conflict(
                "port_in_use",
                format!(
                    "ports[{i}]: host port {}/{} on {on} is already published",
                    m.host_port, m.protocol
                ),
            ));
        }
        planned.push(m);
    }
    Ok(planned)
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
