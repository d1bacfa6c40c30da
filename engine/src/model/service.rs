//! Services: a virtual IP on one network, load-balanced across the endpoints its selector
//! picks (what Docker does with IPVS for swarm services; here nftables maps).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Endpoint, Labels, Protocol};
use crate::error::{Error, Result};

/// At most this many ports per service, and backends per service.
pub const MAX_SERVICE_PORTS: usize = 64;
pub const MAX_BACKENDS: usize = 10_000;
/// At most this many endpoints named in `endpoints`.
pub const MAX_NAMED_BACKENDS: usize = 1_000;

/// One port of the service's virtual IP and the backends' port it goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default)]
    pub protocol: Protocol,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    /// The backends' port; absent or 0: the same as `port`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 65535)]
    pub target_port: u16,
}

/// How a client's connections are spread over the backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Affinity {
    /// Each new connection picks a backend at random.
    #[default]
    None,
    /// Connections from one client address go to the same backend while the backends stay
    /// the same (a hash of the client's address picks it).
    ClientIp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub network_name: String,
    /// The virtual IPv4 address (from the network's subnet).
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<IpAddr>,
    /// The virtual IPv6 address, on a dual-stack network.
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Backends are the network's endpoints carrying all of these labels…
    pub selector: Labels,
    /// …or these endpoints (ids), when given.
    pub endpoints: Vec<String>,
    pub affinity: Affinity,
    pub labels: Labels,
    pub created: String,
}

impl Service {
    /// The virtual addresses, IPv4 first.
    pub fn vips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4.into_iter().chain(self.ipv6)
    }

    /// Whether endpoint `e` is one of its backends (it must be on the service's network).
    pub fn selects(&self, e: &Endpoint) -> bool {
        if e.network_id != self.network_id {
            return false;
        }
        if !self.endpoints.is_empty() {
            return self.endpoints.contains(&e.id);
        }
        self.selector
            .iter()
            .all(|(k, v)| e.labels.get(k).is_some_and(|have| have == v))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCreate {
    pub name: String,
    /// Network id, unique id prefix, or name.
    pub network: String,
    /// A virtual IPv4 address from the network's subnet; absent: the lowest free one.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<IpAddr>,
    /// On a dual-stack network, the virtual IPv6 address; absent: the lowest free one.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Endpoint labels a backend must all carry (e.g. `{"app": "web"}`).
    #[serde(default)]
    pub selector: Labels,
    /// Or the backends by endpoint id or unique id prefix (not both).
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub affinity: Affinity,
    #[serde(default)]
    pub labels: Labels,
}

/// The request's ports checked: at least one, each port non-zero, no (protocol, port) twice;
/// a target port of 0 becomes the port.
pub fn validate_service_ports(ports: &[ServicePort]) -> Result<Vec<ServicePort>> {
    if ports.is_empty() {
        return Err(Error::invalid("ports", "give at least one port"));
    }
    if ports.len() > MAX_SERVICE_PORTS {
        return Err(Error::invalid(
            "ports",
            format!(
                "{} ports, at most {MAX_SERVICE_PORTS} are allowed",
                ports.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(ports.len());
    for (i, p) in ports.iter().enumerate() {
        if p.port == 0 {
            return Err(Error::invalid(
                format!("ports[{i}].port"),
                "must be between 1 and 65535",
            ));
        }
        if !seen.insert((p.protocol, p.port)) {
            return Err(Error::invalid(
                format!("ports[{i}]"),
                format!("{}/{} is given twice", p.port, p.protocol),
            ));
        }
        let target_port = if p.target_port == 0 {
            p.port
        } else {
            p.target_port
        };
        out.push(ServicePort { target_port, ..*p });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(port: u16, target_port: u16) -> ServicePort {
        ServicePort {
            protocol: Protocol::Tcp,
            port,
            target_port,
        }
    }

    #[test]
    fn ports_are_checked_and_targets_default_to_the_port() {
        assert_eq!(
            validate_service_ports(&[port(80, 0), port(443, 8443)]).unwrap(),
            [port(80, 80), port(443, 8443)]
        );
        let err = |p: &[ServicePort]| validate_service_ports(p).unwrap_err().to_string();
        assert!(err(&[]).contains("at least one"));
        assert!(err(&[port(0, 1)]).contains("ports[0].port"));
        assert!(err(&[port(80, 1), port(80, 2)]).contains("80/tcp is given twice"));
        let udp = ServicePort {
            protocol: Protocol::Udp,
            ..port(80, 0)
        };
        assert!(validate_service_ports(&[port(80, 0), udp]).is_ok());
    }

    #[test]
    fn a_selector_picks_endpoints_of_its_network_by_labels_or_ids() {
        let e = |id: &str, net: &str, app: &str| Endpoint {
            id: id.into(),
            network_id: net.into(),
            network_name: String::new(),
            sandbox_id: String::new(),
            sandbox_name: String::new(),
            interface: "eth0".into(),
            mac: String::new(),
            ipv4: None,
            ipv6: None,
            aliases: vec![],
            ports: vec![],
            labels: [("app".to_string(), app.to_string())].into(),
            created: String::new(),
        };
        let mut s = Service {
            id: "s".into(),
            name: "web".into(),
            network_id: "n1".into(),
            network_name: "front".into(),
            ipv4: None,
            ipv6: None,
            ports: vec![port(80, 80)],
            selector: [("app".to_string(), "web".to_string())].into(),
            endpoints: vec![],
            affinity: Affinity::None,
            labels: Labels::new(),
            created: String::new(),
        };
        assert!(s.selects(&e("a", "n1", "web")));
        assert!(!s.selects(&e("b", "n1", "db")));
        assert!(!s.selects(&e("c", "n2", "web")), "another network");
        s.endpoints = vec!["b".into()];
        assert!(s.selects(&e("b", "n1", "db")));
        assert!(!s.selects(&e("a", "n1", "web")), "the list wins");
        s.endpoints.clear();
        s.selector.clear();
        assert!(
            s.selects(&e("b", "n1", "db")),
            "an empty selector picks all"
        );
    }
}
