//! wasmnet's objects as a policy sees them (the WIT types).

use wasmnet_policy::wit;

use crate::model::{Endpoint, Labels, Network, Protocol};

fn labels(l: &Labels) -> Vec<wit::Label> {
    l.iter()
        .map(|(key, value)| wit::Label {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

pub fn network(n: &Network) -> wit::Network {
    let mut subnets = vec![n.ipv4.subnet.to_string()];
    subnets.extend(n.ipv6.as_ref().map(|c| c.subnet.to_string()));
    wit::Network {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.as_str().into(),
        internal: n.internal,
        labels: labels(&n.labels),
        options: labels(&n.options),
        subnets,
    }
}

/// `sandbox_labels` are overlaid with the endpoint's own.
pub fn endpoint(e: &Endpoint, sandbox_labels: &Labels) -> wit::Endpoint {
    let mut merged = sandbox_labels.clone();
    merged.extend(e.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    wit::Endpoint {
        id: e.id.clone(),
        network_id: e.network_id.clone(),
        sandbox_id: e.sandbox_id.clone(),
        sandbox_name: e.sandbox_name.clone(),
        interface: e.interface.clone(),
        labels: labels(&merged),
        ipv4: e.ipv4.map(|a| a.to_string()),
        ipv6: e.ipv6.map(|a| a.to_string()),
        mac: e.mac.clone(),
        ports: e
            .ports
            .iter()
            .map(|p| wit::PublishedPort {
                host_ip: p.host_ip.map(|a| a.to_string()),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: match p.protocol {
                    Protocol::Tcp => wit::Protocol::Tcp,
                    Protocol::Udp => wit::Protocol::Udp,
                    Protocol::Sctp => wit::Protocol::Sctp,
                },
            })
            .collect(),
    }
}
