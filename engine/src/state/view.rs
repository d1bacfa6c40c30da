//! The committed objects in memory, as persistent maps: cloning a `View` is a few reference
//! counts, and a change copies only the paths it touches, so the writer can build the next
//! state while readers keep the one they hold. Reads are served from here (no database round
//! trip); only the engine's writer builds a changed copy, after the store has committed.

use std::net::IpAddr;
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};

use crate::error::{Error, Kind, Result};
use crate::ipam::AddressSpace;
use crate::model::{Endpoint, Network, PortMapping, Protocol, Sandbox, Service};

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

impl Named for Service {
    const KIND: Kind = Kind::Service;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A table of named objects, listed in name order.
pub struct Table<T> {
    by_id: OrdMap<String, Arc<T>>,
    /// The same objects by name (not names to ids: a walk in name order then looks nothing
    /// up, which with thousands of objects was most of a create's time).
    by_name: OrdMap<String, Arc<T>>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table {
            by_id: self.by_id.clone(),
            by_name: self.by_name.clone(),
        }
    }
}

impl<T: Named> Default for Table<T> {
    fn default() -> Self {
        Table {
            by_id: OrdMap::new(),
            by_name: OrdMap::new(),
        }
    }
}

impl<T: Named> Table<T> {
    fn insert(&mut self, obj: Arc<T>) {
        if let Some(old) = self.by_id.get(obj.id()) {
            self.by_name.remove(old.name());
        }
        self.by_name.insert(obj.name().to_string(), obj.clone());
        self.by_id.insert(obj.id().to_string(), obj);
    }

    fn remove(&mut self, id: &str) -> Option<Arc<T>> {
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

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// By exact id only.
    pub fn get(&self, id: &str) -> Option<&Arc<T>> {
        self.by_id.get(id)
    }

    /// Docker's lookup order: full id, then exact name, then unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Arc<T>> {
        if let Some(obj) = self.by_id.get(reference) {
            return Ok(obj.clone());
        }
        if let Some(obj) = self.by_name.get(reference) {
            return Ok(obj.clone());
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
            .map(|(_, obj)| obj)
    }
}

/// A unique id prefix; an empty or ambiguous one is refused.
pub fn resolve_prefix<T>(
    by_id: &OrdMap<String, Arc<T>>,
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
#[derive(Clone)]
pub struct Spaces {
    pub v4: AddressSpace,
    pub v6: Option<AddressSpace>,
}

/// A published host port: (protocol, port) → host addresses bound (None = every address).
pub type PortKey = (Protocol, u16);

#[derive(Clone, Default)]
pub struct View {
    networks: Table<Network>,
    sandboxes: Table<Sandbox>,
    endpoints: OrdMap<String, Arc<Endpoint>>,
    /// Endpoint ids per network and per sandbox, so neither lookup scans every endpoint.
    by_network: HashMap<String, OrdSet<String>>,
    by_sandbox: HashMap<String, OrdSet<String>>,
    /// Sandbox ids by namespace path (each is used once).
    by_netns: HashMap<String, String>,
    spaces: HashMap<String, Arc<Spaces>>,
    /// Each network serialised once, when it is added: a list is then a concatenation.
    network_json: HashMap<String, Arc<str>>,
    ports: HashMap<PortKey, Vec<Option<IpAddr>>>,
    services: Table<Service>,
    /// Service ids per network.
    services_by_network: HashMap<String, OrdSet<String>>,
}

impl View {
    pub fn networks(&self) -> &Table<Network> {
        &self.networks
    }

    pub fn sandboxes(&self) -> &Table<Sandbox> {
        &self.sandboxes
    }

    pub fn services(&self) -> &Table<Service> {
        &self.services
    }

    /// A network's services, in id order.
    pub fn services_of_network<'a>(
        &'a self,
        id: &str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        (self.services_by_network.get(id).into_iter())
            .flat_map(|ids| ids.iter())
            .filter_map(|s| self.services.get(s))
    }

    /// Adds a service; its virtual addresses are taken in the network's spaces.
    pub(crate) fn add_service(&mut self, s: Arc<Service>) {
        for a in s.vips() {
            self.mark_address(&s.network_id, a, true);
        }
        index(&mut self.services_by_network, &s.network_id, &s.id, true);
        self.services.insert(s);
    }

    pub(crate) fn remove_service(&mut self, id: &str) -> Option<Arc<Service>> {
        let s = self.services.remove(id)?;
        for a in s.vips() {
            self.mark_address(&s.network_id, a, false);
        }
        index(&mut self.services_by_network, &s.network_id, &s.id, false);
        Some(s)
    }

    /// Every endpoint, in id order.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> + '_ {
        self.endpoints.values()
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Endpoints in id order, starting after the id `after`.
    pub fn endpoints_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        self.endpoints
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
    }

    /// An endpoint by id or unique id prefix.
    pub fn resolve_endpoint(&self, reference: &str) -> Result<Arc<Endpoint>> {
        resolve_prefix(&self.endpoints, Kind::Endpoint, reference)
    }

    pub fn spaces(&self, network_id: &str) -> Option<&Spaces> {
        self.spaces.get(network_id).map(Arc::as_ref)
    }

    pub fn network_json(&self, network_id: &str) -> Option<&str> {
        self.network_json.get(network_id).map(|j| j.as_ref())
    }

    pub(crate) fn add_network(&mut self, n: Arc<Network>) {
        let spaces = Spaces {
            v4: AddressSpace::new(&n.ipv4),
            v6: n.ipv6.as_ref().map(AddressSpace::new),
        };
        self.spaces.insert(n.id.clone(), Arc::new(spaces));
        let json = serde_json::to_string(&*n).expect("a network serialises");
        self.network_json.insert(n.id.clone(), json.into());
        self.networks.insert(n);
    }

    pub(crate) fn remove_network(&mut self, id: &str) {
        self.networks.remove(id);
        self.spaces.remove(id);
        self.network_json.remove(id);
        self.by_network.remove(id);
    }

    /// Adds a sandbox, or replaces the one with its id.
    pub(crate) fn add_sandbox(&mut self, s: Arc<Sandbox>) {
        if let Some(old) = self.sandboxes.get(&s.id) {
            self.by_netns.remove(&old.netns);
        }
        self.by_netns.insert(s.netns.clone(), s.id.clone());
        self.sandboxes.insert(s);
    }

    pub(crate) fn remove_sandbox(&mut self, id: &str) {
        if let Some(s) = self.sandboxes.remove(id) {
            self.by_netns.remove(&s.netns);
        }
        self.by_sandbox.remove(id);
    }

    /// The sandbox using namespace `netns`, if one does.
    pub fn sandbox_with_netns(&self, netns: &str) -> Option<&Arc<Sandbox>> {
        self.sandboxes.get(self.by_netns.get(netns)?)
    }

    /// Marks `addr` used (or free again) in its family's space of the network.
    pub(crate) fn mark_address(&mut self, network_id: &str, addr: IpAddr, used: bool) {
        let Some(s) = self.spaces.get_mut(network_id) else {
            return;
        };
        let s = Arc::make_mut(s);
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

    pub(crate) fn add_endpoint(&mut self, e: Arc<Endpoint>) {
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            self.mark_address(&e.network_id, a, true);
        }
        for p in &e.ports {
            let key = (p.protocol, p.host_port);
            let mut ips = self.ports.get(&key).cloned().unwrap_or_default();
            ips.push(p.host_ip);
            self.ports.insert(key, ips);
        }
        index(&mut self.by_network, &e.network_id, &e.id, true);
        index(&mut self.by_sandbox, &e.sandbox_id, &e.id, true);
        self.endpoints.insert(e.id.clone(), e);
    }

    /// Puts a changed copy of an endpoint in place (its addresses and ports are the same).
    pub(crate) fn replace_endpoint(&mut self, e: Arc<Endpoint>) {
        self.endpoints.insert(e.id.clone(), e);
    }

    pub(crate) fn remove_endpoint(&mut self, id: &str) -> Option<Arc<Endpoint>> {
        let e = self.endpoints.remove(id)?;
        for a in [e.ipv4, e.ipv6].into_iter().flatten() {
            self.mark_address(&e.network_id, a, false);
        }
        for p in &e.ports {
            let key = (p.protocol, p.host_port);
            if let Some(ips) = self.ports.get_mut(&key) {
                if let Some(i) = ips.iter().position(|ip| *ip == p.host_ip) {
                    ips.swap_remove(i);
                }
            }
        }
        index(&mut self.by_network, &e.network_id, &e.id, false);
        index(&mut self.by_sandbox, &e.sandbox_id, &e.id, false);
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

    /// How many endpoints a network has (the index's size: no endpoint is visited).
    pub fn endpoint_count_of_network(&self, id: &str) -> usize {
        self.by_network.get(id).map_or(0, |ids| ids.len())
    }

    /// A network's endpoints, in id order.
    pub fn endpoints_of_network<'a>(
        &'a self,
        id: &str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        self.indexed(&self.by_network, id)
    }

    /// A sandbox's endpoints, in id order.
    pub fn endpoints_of_sandbox<'a>(
        &'a self,
        id: &str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        self.indexed(&self.by_sandbox, id)
    }

    fn indexed<'a>(
        &'a self,
        idx: &'a HashMap<String, OrdSet<String>>,
        id: &str,
    ) -> impl Iterator<Item = &'a Arc<Endpoint>> + 'a {
        idx.get(id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|e| self.endpoints.get(e))
    }
}

fn index(idx: &mut HashMap<String, OrdSet<String>>, key: &str, id: &str, add: bool) {
    match (idx.get_mut(key), add) {
        (Some(set), true) => {
            set.insert(id.to_string());
        }
        (None, true) => {
            idx.insert(key.to_string(), OrdSet::unit(id.to_string()));
        }
        (Some(set), false) => {
            set.remove(id);
            if set.is_empty() {
                idx.remove(key);
            }
        }
        (None, false) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IpConfig, Labels};

    fn network(id: &str, name: &str) -> Arc<Network> {
        let subnet: ipnet::IpNet = "10.9.0.0/24".parse().unwrap();
        Arc::new(Network {
            id: id.into(),
            name: name.into(),
            driver: Default::default(),
            ipv4: IpConfig {
                subnet,
                gateway: "10.9.0.1".parse().unwrap(),
                ip_range: None,
            },
            ipv6: None,
            internal: false,
            labels: Labels::new(),
            options: Default::default(),
            created: String::new(),
        })
    }

    fn endpoint(id: &str, net: &str, sandbox: &str, last: u8) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            id: id.into(),
            network_id: net.into(),
            network_name: String::new(),
            sandbox_id: sandbox.into(),
            sandbox_name: String::new(),
            interface: "eth0".into(),
            mac: String::new(),
            ipv4: Some(IpAddr::from([10, 9, 0, last])),
            ipv6: None,
            aliases: vec![],
            ports: vec![],
            labels: Labels::new(),
            created: String::new(),
        })
    }

    #[test]
    fn a_clone_does_not_see_later_changes() {
        let mut v = View::default();
        v.add_network(network("n1", "web"));
        v.add_endpoint(endpoint("e1", "n1", "s1", 2));
        let before = v.clone();
        v.add_endpoint(endpoint("e2", "n1", "s2", 3));
        v.remove_endpoint("e1");
        assert_eq!(before.endpoint_count(), 1);
        assert_eq!(before.endpoints_of_network("n1").count(), 1);
        assert_eq!(before.endpoint_count_of_network("n1"), 1);
        let used = |v: &View| {
            matches!(
                v.spaces("n1")
                    .unwrap()
                    .v4
                    .check_static("10.9.0.2".parse().unwrap()),
                Err(crate::ipam::StaticRefusal::InUse)
            )
        };
        assert!(used(&before));
        assert_eq!(
            v.endpoints_of_network("n1")
                .map(|e| e.id.as_str())
                .collect::<Vec<_>>(),
            ["e2"]
        );
        assert!(!used(&v));
        assert_eq!(v.endpoints_of_sandbox("s1").count(), 0);
        assert_eq!(v.endpoint_count_of_network("n1"), 1);
    }
}
