//! Guards published ports: refuses privileged host ports (below 1024) and, when the network
//! label `wasmnet.allowed-host-ips` lists host addresses, publishing anywhere else.

use std::net::IpAddr;

use wasmnet_policy_sdk::*;

/// The network label listing the host addresses ports may be published on (comma-separated).
pub const ALLOWED_IPS_LABEL: &str = "wasmnet.allowed-host-ips";

pub struct PortGuard;

fn same_ip(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn decide(port: &PublishedPort, allowed: Option<&[&str]>) -> PortDecision {
    // Host port 0 asks for an ephemeral port, never a privileged one.
    if port.host_port != 0 && port.host_port < 1024 {
        return PortDecision::Refuse(format!(
            "privileged host port {} is not allowed",
            port.host_port
        ));
    }
    if let Some(allowed) = allowed {
        match port.host_ip.as_deref() {
            None | Some("0.0.0.0") | Some("::") => {
                return PortDecision::Refuse(
                    "publishing on every host address is not allowed".into(),
                )
            }
            Some(ip) if !allowed.iter().any(|a| same_ip(a, ip)) => {
                return PortDecision::Refuse(format!("host ip {ip} not allowed"))
            }
            Some(_) => {}
        }
    }
    PortDecision::Honour
}

impl Guest for PortGuard {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| NetworkDecision::new(&n.id))
            .collect())
    }

    fn classify(endpoint: Endpoint, network: Network) -> Result<EndpointDecision, String> {
        let allowed: Option<Vec<&str>> =
            network.label(ALLOWED_IPS_LABEL).map(|v| list(v).collect());
        if let Some(bad) = allowed
            .iter()
            .flatten()
            .find(|a| a.parse::<IpAddr>().is_err())
        {
            return Err(format!(
                "{ALLOWED_IPS_LABEL} of network {}: {bad:?} is not an IP address",
                network.name
            ));
        }
        Ok(EndpointDecision {
            groups: Vec::new(),
            ports: endpoint
                .ports
                .iter()
                .map(|p| decide(p, allowed.as_deref()))
                .collect(),
        })
    }
}

wasmnet_policy_sdk::export!(PortGuard);

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(endpoint: Endpoint, network: Network) -> Vec<PortDecision> {
        let d = PortGuard::classify(endpoint, network).unwrap();
        assert!(d.groups.is_empty());
        d.ports
    }

    fn refuse(why: &str) -> PortDecision {
        PortDecision::Refuse(why.into())
    }

    #[test]
    fn privileged_ports_are_refused() {
        let e = Endpoint::new("e1", "n1")
            .with_port(None, 80, 80)
            .with_port(None, 8080, 80)
            .with_port(Some("127.0.0.1"), 1023, 1)
            .with_port(None, 1024, 1)
            .with_port(None, 0, 80);
        assert_eq!(
            ports(e, Network::new("n1", "front")),
            [
                refuse("privileged host port 80 is not allowed"),
                PortDecision::Honour,
                refuse("privileged host port 1023 is not allowed"),
                PortDecision::Honour,
                PortDecision::Honour,
            ]
        );
    }

    #[test]
    fn host_ips_are_checked_when_the_network_lists_them() {
        let n = Network::new("n1", "front").with_label(ALLOWED_IPS_LABEL, "127.0.0.1, ::1");
        let e = Endpoint::new("e1", "n1")
            .with_port(Some("127.0.0.1"), 8080, 80)
            .with_port(Some("0:0::1"), 8081, 80)
            .with_port(Some("192.0.2.1"), 8082, 80)
            .with_port(None, 8083, 80)
            .with_port(Some("0.0.0.0"), 8084, 80)
            .with_port(Some("127.0.0.1"), 443, 443);
        assert_eq!(
            ports(e, n),
            [
                PortDecision::Honour,
                PortDecision::Honour,
                refuse("host ip 192.0.2.1 not allowed"),
                refuse("publishing on every host address is not allowed"),
                refuse("publishing on every host address is not allowed"),
                refuse("privileged host port 443 is not allowed"),
            ]
        );
    }

    #[test]
    fn without_the_label_any_host_ip_is_fine() {
        let e = Endpoint::new("e1", "n1")
            .with_port(Some("192.0.2.1"), 8080, 80)
            .with_port(None, 8081, 80);
        assert_eq!(
            ports(e, Network::new("n1", "front")),
            [PortDecision::Honour, PortDecision::Honour]
        );
    }

    #[test]
    fn a_bad_allowed_ip_fails_classify() {
        let n = Network::new("n1", "front").with_label(ALLOWED_IPS_LABEL, "127.0.0.1,localhost");
        let err = PortGuard::classify(Endpoint::new("e1", "n1"), n).unwrap_err();
        assert!(err.contains("\"localhost\""), "{err}");
    }

    #[test]
    fn evaluate_decides_nothing() {
        let out =
            PortGuard::evaluate(vec![Network::new("n1", "a"), Network::new("n2", "b")]).unwrap();
        assert_eq!(
            out,
            [NetworkDecision::new("n1"), NetworkDecision::new("n2")]
        );
    }
}
