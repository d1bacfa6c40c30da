//! The cluster's state as last read from etcd: a snapshot, then kept current by the watch's
//! events. Pure data; `sync` makes the host match it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::keys::{self, Claim, EndpointRecord, Key, PolicyRecord};
use crate::model::Network;
use crate::policy::Attachment;

#[derive(Default, Debug)]
pub struct Mirror {
    pub networks: BTreeMap<String, Network>,
    /// By endpoint id.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// By (network id, address).
    pub claims: BTreeMap<(String, IpAddr), Claim>,
    pub policies: BTreeMap<String, PolicyRecord>,
    pub modules: BTreeMap<String, Vec<u8>>,
    /// By (policy id, scope: `*` or a network id).
    pub attachments: BTreeMap<(String, String), Attachment>,
}

impl Mirror {
    /// A value that does not parse is left out (and logged): one bad key must not stop a host
    /// from following the rest of the cluster.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
            serde_json::from_slice(value)
                .map_err(|e| tracing::warn!(key, error = %e, "ignoring a cluster key"))
                .ok()
        }
        match keys::parse(key) {
            Key::Network(id) => {
                if let Some(n) = parse::<Network>(key, value) {
                    self.networks.insert(id.to_string(), n);
                }
            }
            Key::Endpoint { id, .. } => {
                if let Some(r) = parse::<EndpointRecord>(key, value) {
                    self.endpoints.insert(id.to_string(), r);
                }
            }
            Key::Claim { network, addr } => {
                if let Some(c) = parse::<Claim>(key, value) {
                    self.claims.insert((network.to_string(), addr), c);
                }
            }
            Key::Policy(id) => {
                if let Some(p) = parse::<PolicyRecord>(key, value) {
                    self.policies.insert(id.to_string(), p);
                }
            }
            Key::Module(id) => {
                self.modules.insert(id.to_string(), value.to_vec());
            }
            Key::Attachment { policy, scope } => {
                if let Some(a) = parse::<Attachment>(key, value) {
                    self.attachments
                        .insert((policy.to_string(), scope.to_string()), a);
                }
            }
            Key::Other => {}
        }
    }

    pub fn delete(&mut self, key: &str) {
        match keys::parse(key) {
            Key::Network(id) => {
                self.networks.remove(id);
            }
            Key::Endpoint { id, .. } => {
                self.endpoints.remove(id);
            }
            Key::Claim { network, addr } => {
                self.claims.remove(&(network.to_string(), addr));
            }
            Key::Policy(id) => {
                self.policies.remove(id);
            }
            Key::Module(id) => {
                self.modules.remove(id);
            }
            Key::Attachment { policy, scope } => {
                self.attachments
                    .remove(&(policy.to_string(), scope.to_string()));
            }
            Key::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_and_deletes_follow_the_keys() {
        let mut m = Mirror::default();
        let rec = EndpointRecord {
            id: "e1".into(),
            network_id: "n1".into(),
            host: "h2".into(),
            vtep: "192.0.2.2".parse().unwrap(),
            mac: "02:42:0a:00:00:02".into(),
            ipv4: Some("10.0.0.2".parse().unwrap()),
            ipv6: None,
            sandbox_id: "s1".into(),
            sandbox_name: "s".into(),
            interface: "eth0".into(),
            labels: Default::default(),
        };
        let key = keys::endpoint("n1", "e1");
        m.put(&key, &serde_json::to_vec(&rec).unwrap());
        assert_eq!(m.endpoints["e1"], rec);
        let claim = Claim {
            endpoint: "e1".into(),
            host: "h2".into(),
        };
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        m.put(
            &keys::claim("n1", addr),
            &serde_json::to_vec(&claim).unwrap(),
        );
        assert_eq!(m.claims[&("n1".to_string(), addr)], claim);
        m.put(&keys::network("n2"), b"not json");
        assert!(m.networks.is_empty(), "a bad value is left out");
        m.delete(&key);
        m.delete(&keys::claim("n1", addr));
        assert!(m.endpoints.is_empty() && m.claims.is_empty());
    }
}
