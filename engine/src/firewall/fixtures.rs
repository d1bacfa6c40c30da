//! Networks and endpoints for the backends' unit tests.

use crate::model::{Endpoint, IpConfig, Network, PortMapping, Protocol};

/// A network whose id is `id` 64 times, with its first host as gateway.
pub fn net(id: char, subnet: &str, internal: bool, icc: bool) -> Network {
    let subnet: ipnet::IpNet = subnet.parse().unwrap();
    Network {
        id: id.to_string().repeat(64),
        name: format!("n{id}"),
        driver: Default::default(),
        ipv4: IpConfig {
            gateway: subnet.hosts().next().unwrap(),
            subnet,
            ip_range: None,
        },
        ipv6: None,
        internal,
        labels: Default::default(),
        options: [("icc".to_string(), icc.to_string())].into(),
        created: String::new(),
    }
}

pub fn endpoint(net: &Network, ip: &str, ports: Vec<PortMapping>) -> Endpoint {
    Endpoint {
        id: "e".repeat(64),
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        sandbox_id: "s".repeat(64),
        sandbox_name: "s".into(),
        interface: "eth0".into(),
        mac: "02:42:0a:00:00:02".into(),
        ipv4: Some(ip.parse().unwrap()),
        ipv6: Some("fd00::2".parse().unwrap()),
        aliases: vec![],
        ports,
        labels: Default::default(),
        created: String::new(),
    }
}

/// Two published ports: tcp 8080 → 80 on every address, udp 5353 → 53 on 127.0.0.1.
pub fn sample_ports() -> Vec<PortMapping> {
    vec![
        PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        },
        PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 5353,
            container_port: 53,
            protocol: Protocol::Udp,
        },
    ]
}
