//! The committed state in memory. Reads are served from here (no database round trip); only
//! the engine's serialised writer changes it, and only after the store has committed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::{Error, Kind, Result};
use crate::ipam::AddressSpace;
use crate::model::{Endpoint, Network, PortMapping, Protocol, Sandbox};

/// Objects that have a name as well as an id.
pub trait Named {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
}

impl Named for Network {
    const KIND: Kind = Kind::Network;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Sandbox {
    const KIND: Kind = Kind::Sandbox;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A table of named objects, listed in name order.
pub struct Table<T> {
    by_id: BTreeMap<String, Arc<T>>,
    by_name: BTreeMap<String, String>,
}

impl<T: Named> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_id: BTreeMap::new(),
            by_name: BTreeMap::new(),
        }
    }
}

impl<T: Named> Table<T> {
    pub fn insert(&mut self, obj: Arc<T>) {
        self.by_name
            .insert(obj.name().to_string(), obj.id().to_string());
        self.by_id.insert(obj.id().to_string(), obj);
    }

    pub fn remove(&mut self, id: &str) -> Option<Arc<T>> {
        let obj = self.by_id.remove(id)?;
        self.by_name.remove(obj.name());
        Some(obj)
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Docker's lookup order: full id, then exact name, then unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Arc<T>> {
        if let Some(obj) = self.by_id.get(reference) {
            return Ok(obj.clone());
        }
        if let Some(id) = self.by_name.get(reference) {
            return Ok(self.by_id[id].clone());
        }
        resolve_prefix(&self.by_id, T::KIND, reference)
    }

    /// Objects in name order, starting after the name `after`.
    pub fn iter_from<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a Arc<T>> + 'a {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        self.by_name
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, id)| &self.by_id[id])
    }
}

/// A unique id prefix; an empty or ambiguous one is refused.
pub fn resolve_prefix<T>(
    by_id: &BTreeMap<String, Arc<T>>,
    kind: Kind,
    prefix: &str,
) -> Result<Arc<T>> {
    if prefix.is_empty() {
        return Err(Error::not_found(kind, prefix));
    }
    let mut matches = by_id
        .range(prefix.to_string()..)
        .take_while(|(id, _)| id.starts_with(prefix));
    match (matches.next(), matches.next()) {
        (Some((_, obj)), None) => Ok(obj.clone()),
        (None, _) => Err(Error::not_found(kind, prefix)),
        (Some(_), Some(_)) => Err(Error::conflict(
            "ambiguous",
            format!("{prefix:?} matches more than one {kind}; give more of the id"),
        )),
    }
}

/// The address spaces of one network.
pub struct Spaces {
    pub v4: AddressSpace,
    pub v6: Option<AddressSpace>,
}

/// A published host port: (protocol, port) → host addresses bound (None = every address).
pub type PortKey = (Protocol, u16);

#[derive(Default)]
pub struct View {
    pub networks: Table<Network>,
    pub sandboxes: Table<Sandbox>,
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    pub spaces: HashMap<String, Spaces>,
    /// Each network serialised once, when it is added: a list is then a concatenation.
    pub network_json: HashMap<String, Arc<str>>,
    pub ports: HashMap<PortKey, Vec<Option<IpAddr>>>,
}

impl View {
    pub fn add_network(&mut self, n: Arc<Network>) {
        let spaces = Spaces {
            v4: AddressSpace::new(&n.ipv4),
            v6: n.ipv6.as_ref().map(AddressSpace::new),
        };
        self.spaces.insert(n.id.clone(), spaces);
        let json = serde_json::to_string(&*n).expect("a network serialises");
        self.network_json.insert(n.id.clone(), json.into());
        self.networks.insert(n);
    }

    pub fn remove_network(&mut self, id: &str) {
        self.networks.remove(id);
        self.spaces.remove(id);
        self.network_json.remove(id);
    }

    /// Marks `addr` used (or free again) in its family's space of the network.
    pub fn mark_address(&mut self, network_id: &str, addr: IpAddr, used: bool) {
        let Some(s) = self.spaces.get_mut(network_id) else {
            return;
        };
        let space = if addr.is_ipv6() {
            s.v6.as_mut()
        } else {
            Some(&mut s.v4)
        };
        if let Some(space) = space {
            match used {
                true => space.take(addr),
                false => space.release(addr),
            };
        }
    }

    pub fn add_endpoint(&mut self, e: Arc<Endpoint>) {
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            self.mark_address(&e.network_id, a, true);
        }
        for p in &e.ports {
            self.ports
                .entry((p.protocol, p.host_port))
                .or_default()
                .push(p.host_ip);
        }
        self.endpoints.insert(e.id.clone(), e);
    }

    pub fn remove_endpoint(&mut self, id: &str) -> Option<Arc<Endpoint>> {
        let e = self.endpoints.remove(id)?;
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            self.mark_address(&e.network_id, a, false);
        }
        for p in &e.ports {
            if let Some(ips) = self.ports.get_mut(&(p.protocol, p.host_port)) {
                if let Some(i) = ips.iter().position(|ip| *ip == p.host_ip) {
                    ips.swap_remove(i);
                }
            }
        }
        Some(e)
    }

    /// Whether a mapping on `host_ip` would clash with one already published.
    pub fn port_taken(&self, p: &PortMapping) -> bool {
        self.ports
            .get(&(p.protocol, p.host_port))
            .is_some_and(|ips| {
                ips.iter()
                    .any(|ip| ip.is_none() || p.host_ip.is_none() || *ip == p.host_ip)
            })
    }

    pub fn endpoints_of_network<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        self.endpoints.values().filter(move |e| e.network_id == id)
    }

    pub fn endpoints_of_sandbox<'a>(
        &'a self,
        id: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        self.endpoints.values().filter(move |e| e.sandbox_id == id)
    }
}
