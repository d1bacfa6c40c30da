//! What the cluster keeps in etcd, and where: pure data, no I/O, so the layout is tested
//! without an etcd.
//!
//! ```text
//! /wasmnet/networks/<network-id>            an overlay network (JSON)
//! /wasmnet/names/<name>                     network-id (names are unique cluster-wide)
//! /wasmnet/vnis/<vni>                       network-id
//! /wasmnet/subnets/<subnet>                 network-id
//! /wasmnet/claims/<network-id>/<address>    {endpoint, host}: an address handed out
//! /wasmnet/endpoints/<network-id>/<ep-id>   where an endpoint is (JSON), under its host's lease
//! /wasmnet/hosts/<node>                     a live host, under its lease
//! /wasmnet/policies/<policy-id>             a policy (JSON, without its module)
//! /wasmnet/modules/<policy-id>              its Wasm module (bytes)
//! /wasmnet/policy-names/<name>              policy-id (names are unique cluster-wide)
//! /wasmnet/attachments/<policy-id>/<scope>  an attachment: global (`*`) or an overlay network
//! ```
//!
//! Address claims are not leased: a host that dies keeps its addresses, so when it comes back
//! with its endpoints (they are in its SQLite) no other host can have been given them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, Labels};

pub const ROOT: &str = "/wasmnet/";
/// VNIs wasmnet hands out (Docker's overlay starts at 4096 too; below is left to others).
pub const VNI_RANGE: std::ops::RangeInclusive<u32> = 4096..=16_777_215;

pub fn network(id: &str) -> String {
    format!("{ROOT}networks/{id}")
}

pub fn name(name: &str) -> String {
    format!("{ROOT}names/{name}")
}

pub fn vnis() -> String {
    format!("{ROOT}vnis/")
}

pub fn vni(vni: u32) -> String {
    format!("{}{vni}", vnis())
}

pub fn subnet(net: &IpNet) -> String {
    format!("{ROOT}subnets/{}", net.to_string().replace('/', "_"))
}

pub fn claims_of(network_id: &str) -> String {
    format!("{ROOT}claims/{network_id}/")
}

pub fn claim(network_id: &str, addr: IpAddr) -> String {
    format!("{}{addr}", claims_of(network_id))
}

pub fn endpoints_of(network_id: &str) -> String {
    format!("{ROOT}endpoints/{network_id}/")
}

pub fn endpoint(network_id: &str, id: &str) -> String {
    format!("{}{id}", endpoints_of(network_id))
}

pub fn host(node: &str) -> String {
    format!("{ROOT}hosts/{node}")
}

pub fn policy(id: &str) -> String {
    format!("{ROOT}policies/{id}")
}

pub fn module(id: &str) -> String {
    format!("{ROOT}modules/{id}")
}

pub fn policy_name(name: &str) -> String {
    format!("{ROOT}policy-names/{name}")
}

pub fn attachments_of(policy_id: &str) -> String {
    format!("{ROOT}attachments/{policy_id}/")
}

/// `network_id` None: the global attachment.
pub fn attachment(policy_id: &str, network_id: Option<&str>) -> String {
    format!("{}{}", attachments_of(policy_id), network_id.unwrap_or("*"))
}

/// A key read back from etcd, by what it holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'a> {
    Network(&'a str),
    Claim {
        network: &'a str,
        addr: IpAddr,
    },
    Endpoint {
        network: &'a str,
        id: &'a str,
    },
    Policy(&'a str),
    Module(&'a str),
    Attachment {
        policy: &'a str,
        scope: &'a str,
    },
    /// Names, VNIs, subnets and hosts: guards and liveness, nothing to mirror.
    Other,
}

pub fn parse(key: &str) -> Key<'_> {
    let Some(rest) = key.strip_prefix(ROOT) else {
        return Key::Other;
    };
    let mut parts = rest.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("networks"), Some(id), None) => Key::Network(id),
        (Some("claims"), Some(network), Some(addr)) => match addr.parse() {
            Ok(addr) => Key::Claim { network, addr },
            Err(_) => Key::Other,
        },
        (Some("endpoints"), Some(network), Some(id)) => Key::Endpoint { network, id },
        (Some("policies"), Some(id), None) => Key::Policy(id),
        (Some("modules"), Some(id), None) => Key::Module(id),
        (Some("attachments"), Some(policy), Some(scope)) => Key::Attachment { policy, scope },
        _ => Key::Other,
    }
}

/// Who holds an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub endpoint: String,
    pub host: String,
}

/// Where an endpoint is: what another host needs to reach it (and, for policies, its labels).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub host: String,
    pub vtep: IpAddr,
    pub mac: String,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub sandbox_id: String,
    pub sandbox_name: String,
    pub interface: String,
    /// The sandbox's labels overlaid with the endpoint's: what a policy classifies it by.
    #[serde(default)]
    pub labels: Labels,
}

impl EndpointRecord {
    pub fn of(e: &Endpoint, sandbox_labels: &Labels, host: &str, vtep: IpAddr) -> Self {
        let mut labels = sandbox_labels.clone();
        labels.extend(e.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        EndpointRecord {
            id: e.id.clone(),
            network_id: e.network_id.clone(),
            host: host.to_string(),
            vtep,
            mac: e.mac.clone(),
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            sandbox_id: e.sandbox_id.clone(),
            sandbox_name: e.sandbox_name.clone(),
            interface: e.interface.clone(),
            labels,
        }
    }

    /// The remote endpoint as this host's policies see it (no ports: those are its host's).
    pub fn to_endpoint(&self, network_name: &str) -> Endpoint {
        Endpoint {
            id: self.id.clone(),
            network_id: self.network_id.clone(),
            network_name: network_name.to_string(),
            sandbox_id: self.sandbox_id.clone(),
            sandbox_name: self.sandbox_name.clone(),
            interface: self.interface.clone(),
            mac: self.mac.clone(),
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            aliases: vec![],
            ports: vec![],
            labels: self.labels.clone(),
            created: String::new(),
        }
    }

    pub fn addresses(&self) -> Vec<IpAddr> {
        [self.ipv4, self.ipv6].into_iter().flatten().collect()
    }
}

/// A policy as the cluster keeps it (its module is a key of its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created: String,
}

/// The lowest VNI no network holds.
pub fn free_vni(taken: &BTreeSet<u32>) -> Option<u32> {
    VNI_RANGE.into_iter().find(|v| !taken.contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_to_what_they_hold() {
        assert_eq!(parse(&network("abc")), Key::Network("abc"));
        let v6: IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(
            parse(&claim("n1", v6)),
            Key::Claim {
                network: "n1",
                addr: v6
            }
        );
        assert_eq!(
            parse(&endpoint("n1", "e1")),
            Key::Endpoint {
                network: "n1",
                id: "e1"
            }
        );
        assert_eq!(parse(&policy("p1")), Key::Policy("p1"));
        assert_eq!(parse(&module("p1")), Key::Module("p1"));
        assert_eq!(
            parse(&attachment("p1", None)),
            Key::Attachment {
                policy: "p1",
                scope: "*"
            }
        );
        for other in [
            policy_name("tiers"),
            name("web"),
            vni(4096),
            host("h1"),
            subnet(&"10.1.0.0/24".parse().unwrap()),
            "/elsewhere/networks/x".to_string(),
            format!("{ROOT}claims/n1/not-an-address"),
        ] {
            assert_eq!(parse(&other), Key::Other, "{other}");
        }
    }

    #[test]
    fn subnet_keys_have_no_slash_in_their_last_part() {
        assert_eq!(
            subnet(&"10.1.0.0/24".parse().unwrap()),
            "/wasmnet/subnets/10.1.0.0_24"
        );
    }

    #[test]
    fn vnis_are_handed_out_lowest_first() {
        let mut taken = BTreeSet::new();
        assert_eq!(free_vni(&taken), Some(4096));
        taken.extend([4096, 4097, 4099]);
        assert_eq!(free_vni(&taken), Some(4098));
    }
}
