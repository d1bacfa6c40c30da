//! The Container Network Model as plain data: what is stored, served and validated.
//! Requests (`*Create`) are what clients send; `validate` turns them into checked specs.

mod options;
mod service;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use options::{NetworkOptions, Options};
pub use service::{
    validate_service_ports, Affinity, Service, ServiceCreate, ServicePort, MAX_BACKENDS,
    MAX_NAMED_BACKENDS, MAX_SERVICE_PORTS,
};
pub use validate::{
    validate_interface, validate_labels, validate_mac, validate_name, validate_options, MAX_LABELS,
    MAX_NAME_LEN,
};

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Bridge,
    /// VXLAN across the hosts of a cluster (needs `--cluster`).
    Overlay,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Overlay => "overlay",
        }
    }
}

impl FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(Driver::Bridge),
            "overlay" => Ok(Driver::Overlay),
            _ => Err(format!("unknown driver {s:?} (expected bridge or overlay)")),
        }
    }
}

/// The addressing of one IP family of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IpConfig {
    #[schema(value_type = String, example = "10.1.0.0/24")]
    pub subnet: IpNet,
    #[schema(value_type = String)]
    pub gateway: IpAddr,
    /// Dynamic addresses come from this sub-range only; static ones from the whole subnet.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<String>, example = "10.1.0.0/24")]
    pub ip_range: Option<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: Driver,
    pub ipv4: IpConfig,
    pub ipv6: Option<IpConfig>,
    pub internal: bool,
    pub labels: Labels,
    // Served and stored as the map given; parsed once, when it is validated or read back.
    #[schema(value_type = Labels)]
    pub options: Options,
    pub created: String,
}

impl Network {
    /// The gateway of each family (IPv4 first).
    pub fn gateways(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.ipv4.gateway).chain(self.ipv6.as_ref().map(|c| c.gateway))
    }

    /// The subnet of each family (IPv4 first).
    pub fn subnets(&self) -> impl Iterator<Item = IpNet> + '_ {
        std::iter::once(self.ipv4.subnet).chain(self.ipv6.as_ref().map(|c| c.subnet))
    }

    /// Whether its DNS server forwards the names it does not serve (`dns_forward`; by
    /// default yes, but not from an internal network).
    pub fn forwards_dns(&self) -> bool {
        self.options.typed().dns_forward.unwrap_or(!self.internal)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub labels: Labels,
    /// The network namespace: under wasmnet's run dir when wasmnet creates it, else adopted.
    pub netns: String,
    /// True when wasmnet created the namespace (and so will remove it); false when adopted.
    pub netns_owned: bool,
    /// True when the runtime moves and configures each interface itself (Docker's plugin
    /// protocol): the container end of each veth stays in wasmnet's namespace, named as the
    /// endpoint's interface, until the runtime takes it.
    #[serde(default)]
    pub handoff: bool,
    /// A namespace wasmnet created also appears to `ip netns list` and `ip netns exec` under
    /// this name (wasmnet's prefix and the sandbox's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_name: Option<String>,
    /// The resolv.conf naming the sandbox's DNS servers (its networks' gateways), which
    /// `ip netns exec` bind-mounts over /etc/resolv.conf; for runtimes to mount likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
    pub created: String,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(format!(
                "unknown protocol {s:?} (expected tcp, udp or sctp)"
            )),
        }
    }
}

/// A published port. `host_ip` None means every host address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct PortMapping {
    #[schema(value_type = Option<String>)]
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Endpoint {
    pub id: String,
    pub network_id: String,
    pub network_name: String,
    pub sandbox_id: String,
    pub sandbox_name: String,
    /// The interface name inside the sandbox (`eth0`, `eth1`, …).
    pub interface: String,
    pub mac: String,
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<IpAddr>,
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<IpAddr>,
    pub aliases: Vec<String>,
    pub ports: Vec<PortMapping>,
    pub labels: Labels,
    pub created: String,
}

/// The addressing a client asks for in one family; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IpConfigRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10.1.0.0/24")]
    pub subnet: Option<IpNet>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10.1.0.0/24")]
    pub ip_range: Option<IpNet>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub driver: Driver,
    #[serde(default)]
    pub ipv4: IpConfigRequest,
    /// Give the network an IPv6 subnet too (from the IPv6 pools unless `ipv6.subnet` is set).
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub ipv6: Option<IpConfigRequest>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub options: Labels,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCreate {
    /// Defaults to a name derived from the id.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    /// Adopt this existing namespace (`/proc/PID/ns/net`, `/run/netns/NAME`) instead of creating one.
    #[serde(default)]
    pub netns: Option<String>,
    /// With `netns`: the runtime moves and configures each interface itself (see `Sandbox`).
    #[serde(default)]
    pub handoff: bool,
}

/// A port to publish; `host_port` 0 or absent picks a free port from the ephemeral range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub host_ip: Option<IpAddr>,
    #[serde(default)]
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

/// Docker's `-p` syntax: `[HOSTIP:][HOSTPORT:]PORT[/PROTO]`, an IPv6 host address in brackets.
impl FromStr for PortRequest {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let bad = || format!("{spec:?}: expected [HOSTIP:][HOSTPORT:]PORT[/PROTO]");
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, proto)) => (
                rest,
                proto
                    .parse::<Protocol>()
                    .map_err(|e| format!("{spec:?}: {e}"))?,
            ),
            None => (spec, Protocol::Tcp),
        };
        let (host_ip, ports) = match rest.strip_prefix('[') {
            Some(v6) => v6
                .split_once("]:")
                .map(|(ip, p)| (Some(ip), p))
                .ok_or_else(bad)?,
            None => match rest.matches(':').count() {
                0 | 1 => (None, rest),
                2 => rest
                    .split_once(':')
                    .map(|(ip, p)| (Some(ip), p))
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            },
        };
        let (host_port, container_port) = ports.split_once(':').unwrap_or(("", ports));
        let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
        let host_ip = match host_ip.filter(|ip| !ip.is_empty()) {
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| format!("{spec:?}: {ip:?} is not an IP address"))?,
            ),
            None => None,
        };
        let host_port = if host_port.is_empty() {
            0
        } else {
            port(host_port)?
        };
        Ok(PortRequest {
            host_ip,
            host_port,
            container_port: port(container_port)?,
            protocol,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointCreate {
    /// Network id, unique id prefix, or name; absent: the default network (`bridge`).
    #[serde(default)]
    pub network: String,
    /// Sandbox id, unique id prefix, or name.
    pub sandbox: String,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<IpAddr>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<IpAddr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortRequest>,
    #[serde(default)]
    pub labels: Labels,
}
