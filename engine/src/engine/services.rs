//! Service operations: create (plan its virtual addresses, put them on the network's bridge,
//! its map elements and chain, commit), delete; and the services' backends kept in step as
//! endpoints connect, disconnect and are relabelled (`firewall_services`, `endpoint_services`).

use std::net::IpAddr;
use std::sync::Arc;

use super::{planner, report, undo, Engine};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::kernel::IfAddr;
use crate::model::*;
use crate::state::{State, View};

impl Engine {
    pub async fn create_service(&self, req: ServiceCreate) -> Result<Arc<Service>> {
        crate::metrics::timed("service_create", self.create_service_op(req)).await
    }

    async fn create_service_op(&self, req: ServiceCreate) -> Result<Arc<Service>> {
        validate_service_request(&req)?;
        let ports = validate_service_ports(&req.ports)?;
        let iptables = self.firewall.kind() == crate::firewall::Backend::Iptables;
        if iptables && req.affinity != Affinity::None {
            return Err(Error::invalid(
                "affinity",
                "client affinity needs the nftables firewall backend (iptables' statistic match picks at random only)",
            ));
        }
        let _writer = self.lock_writer().await;
        let base = self.state();
        let service = Arc::new(plan_service(base.view(), req, ports)?);
        let backends = base.backends_of(&service).len();
        if backends > MAX_BACKENDS {
            return Err(Error::invalid(
                "selector",
                format!(
                    "selects {backends} endpoints, at most {MAX_BACKENDS} backends are allowed"
                ),
            ));
        }
        let mut next = State::clone(&base);
        next.view.add_service(service.clone());
        self.commit_service(&base, &next, &service).await?;
        self.update(|s| s.view.add_service(service.clone()));
        self.publish(EventKind::ServiceCreate, &service.id, &service);
        Ok(service)
    }

    /// Kernel (the virtual addresses on the bridge), firewall, store; a failure undoes what
    /// came before.
    async fn commit_service(&self, base: &State, next: &State, s: &Service) -> Result<()> {
        let kernel = self.drivers.kernel();
        let bridge = crate::names::bridge_name(&s.network_id);
        let mut result = Ok(());
        for a in s.vips() {
            result = kernel.ensure_address(&bridge, host_addr(a)).await;
            if result.is_err() {
                break;
            }
        }
        let mut result = result.map_err(Error::from);
        if result.is_ok() {
            result = self.firewall_services(base, next, &s.network_id).await;
            if result.is_ok() {
                result = self.store.insert_service(s).await;
                if result.is_err() {
                    let back = self.firewall_services(next, base, &s.network_id).await;
                    undo("restoring the services' rules", back);
                }
            }
        }
        if result.is_err() {
            for a in unused_vips(base.view(), s) {
                let removed = kernel.remove_address(&bridge, host_addr(a)).await;
                undo("removing a service's address", removed);
            }
        }
        result
    }

    pub async fn delete_service(&self, reference: &str) -> Result<Arc<Service>> {
        crate::metrics::timed("service_delete", self.delete_service_op(reference)).await
    }

    async fn delete_service_op(&self, reference: &str) -> Result<Arc<Service>> {
        let _writer = self.lock_writer().await;
        let before = self.state();
        let service = before.view().services().resolve(reference)?;
        self.store.delete_service(&service.id).await?;
        self.update(|s| {
            s.view.remove_service(&service.id);
        });
        let after = self.state();
        let mut problems = Vec::new();
        let walled = self
            .firewall_services(&before, &after, &service.network_id)
            .await;
        problems.extend(walled.err().map(|e| e.to_string()));
        let bridge = crate::names::bridge_name(&service.network_id);
        for a in unused_vips(after.view(), &service) {
            let removed = self.drivers.kernel().remove_address(&bridge, host_addr(a));
            problems.extend(removed.await.err().map(|e| e.to_string()));
        }
        report("deleting a service", problems);
        self.update(|_| {});
        self.publish(EventKind::ServiceDelete, &service.id, &service);
        Ok(service)
    }

    /// The services of network `network_id` from `before` to `after` in the firewall: their
    /// elements and chains alone while the network keeps services, else (its first service,
    /// or its last gone: the network's tracking changes too) the difference of the rulesets.
    pub(super) async fn firewall_services(
        &self,
        before: &State,
        after: &State,
        network_id: &str,
    ) -> Result<()> {
        let (b, a) = (
            before.lbs_of_network(network_id),
            after.lbs_of_network(network_id),
        );
        if !b.is_empty() && !a.is_empty() {
            return self.firewall_lbs(b, a, after).await;
        }
        if b == a {
            return Ok(());
        }
        self.firewall_change(before.desired(), after.desired())
            .await
    }

    /// Only the services given changed (the same services before and after): their chains
    /// and elements, in one transaction (the whole table where the backend cannot).
    async fn firewall_lbs(
        &self,
        b: Vec<Arc<crate::firewall::services::Lb>>,
        a: Vec<Arc<crate::firewall::services::Lb>>,
        after: &State,
    ) -> Result<()> {
        if b == a {
            return Ok(());
        }
        let fw = self.firewall.clone();
        if !fw.incremental() {
            return self.firewall_apply(after.desired()).await;
        }
        let changed = tokio::task::spawn_blocking(move || fw.services(&b, &a)).await;
        self.applied(changed)
    }

    /// Endpoint `old` became `new` (either absent: it joined or left) between `before` and
    /// `after`: the services that select it in either state follow. Only those: a service
    /// selecting it in neither is the same in both, and one selecting it in both keeps its
    /// hairpin element.
    pub(super) async fn endpoint_moved(
        &self,
        before: &State,
        after: &State,
        old: Option<&Endpoint>,
        new: Option<&Endpoint>,
    ) -> Result<()> {
        let Some(network) = old.or(new).map(|e| e.network_id.clone()) else {
            return Ok(());
        };
        let picks =
            |s: &Service| old.is_some_and(|e| s.selects(e)) || new.is_some_and(|e| s.selects(e));
        let concerned: Vec<Arc<Service>> = (before.view().services_of_network(&network))
            .filter(|s| picks(s))
            .cloned()
            .collect();
        if concerned.is_empty() {
            return Ok(());
        }
        let lbs = |st: &State| (concerned.iter()).map(|s| st.lb(s)).collect::<Vec<_>>();
        self.firewall_lbs(lbs(before), lbs(after), after).await
    }

    /// Endpoint `e` joined (`base` is the state without it) or left (`base` is the state
    /// after): the services of its network that select it follow.
    pub(super) async fn endpoint_services(
        &self,
        base: &State,
        e: &Endpoint,
        joined: bool,
    ) -> Result<()> {
        if base
            .view()
            .services_of_network(&e.network_id)
            .next()
            .is_none()
        {
            return Ok(());
        }
        let mut with = State::clone(base);
        with.view.add_endpoint(Arc::new(e.clone()));
        match joined {
            true => self.endpoint_moved(base, &with, None, Some(e)).await,
            false => self.endpoint_moved(&with, base, Some(e), None).await,
        }
    }

    /// Every service's virtual addresses on its bridge (at start); each failure is returned.
    pub(super) async fn plumb_services(&self, state: &State) -> Vec<String> {
        let mut problems = Vec::new();
        for s in state.view().services().iter_from(None) {
            let bridge = crate::names::bridge_name(&s.network_id);
            for a in s.vips() {
                let added = self.drivers.kernel().ensure_address(&bridge, host_addr(a));
                problems.extend(added.await.err().map(|e| e.to_string()));
            }
        }
        problems
    }
}

/// A virtual address on the bridge: the address alone (its subnet's route is the gateway's).
fn host_addr(a: IpAddr) -> IfAddr {
    let prefix = if a.is_ipv6() { 128 } else { 32 };
    IfAddr { addr: a, prefix }
}

/// The virtual addresses of `s` no other service in `v` has.
fn unused_vips(v: &View, s: &Service) -> Vec<IpAddr> {
    let others: Vec<IpAddr> = (v.services_of_network(&s.network_id))
        .filter(|o| o.id != s.id)
        .flat_map(|o| o.vips().collect::<Vec<_>>())
        .collect();
    s.vips().filter(|a| !others.contains(a)).collect()
}

/// What needs no state: names, labels, the selector's form.
fn validate_service_request(req: &ServiceCreate) -> Result<()> {
    validate_name("name", &req.name)?;
    validate_labels("labels", &req.labels)?;
    validate_labels("selector", &req.selector)?;
    if !req.selector.is_empty() && !req.endpoints.is_empty() {
        return Err(Error::invalid(
            "endpoints",
            "give a selector or endpoints, not both",
        ));
    }
    if req.endpoints.len() > MAX_NAMED_BACKENDS {
        return Err(Error::invalid(
            "endpoints",
            format!(
                "{} endpoints, at most {MAX_NAMED_BACKENDS} may be named",
                req.endpoints.len()
            ),
        ));
    }
    Ok(())
}

/// The service a request makes in view `v` (pure): its network, its virtual addresses (given
/// ones checked; a service's address may be shared by another service whose ports differ),
/// its named endpoints resolved.
pub(super) fn plan_service(
    v: &View,
    req: ServiceCreate,
    ports: Vec<ServicePort>,
) -> Result<Service> {
    if v.services().has_name(&req.name) {
        return Err(Error::conflict(
            "name_in_use",
            format!("service name {:?} is already in use", req.name),
        ));
    }
    let n = v.networks().resolve(&req.network)?;
    if n.driver == Driver::Overlay {
        return Err(Error::invalid(
            "network",
            format!(
                "network {:?} is an overlay network: services are on bridge networks only for now",
                n.name
            ),
        ));
    }
    let spaces = v
        .spaces(&n.id)
        .ok_or_else(|| Error::not_found(crate::error::Kind::Network, &n.id))?;
    let ipv4 = Some(vip(v, &n, "ipv4", &spaces.v4, req.ipv4)?);
    let ipv6 = match (&spaces.v6, req.ipv6) {
        (Some(space), want) => Some(vip(v, &n, "ipv6", space, want)?),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "ipv6",
                format!("network {:?} has no IPv6 subnet", n.name),
            ))
        }
        (None, None) => None,
    };
    for other in v.services_of_network(&n.id) {
        let shares = other.vips().any(|a| Some(a) == ipv4 || Some(a) == ipv6);
        let clash = ports.iter().find(|p| {
            other
                .ports
                .iter()
                .any(|o| (o.protocol, o.port) == (p.protocol, p.port))
        });
        if let (true, Some(p)) = (shares, clash) {
            return Err(Error::conflict(
                "port_in_use",
                format!(
                    "{}/{} of that address is already service {:?}'s",
                    p.port, p.protocol, other.name
                ),
            ));
        }
    }
    let endpoints = named_backends(v, &n, &req.endpoints)?;
    Ok(Service {
        id: crate::ids::new_id(),
        name: req.name,
        network_id: n.id.clone(),
        network_name: n.name.clone(),
        ipv4,
        ipv6,
        ports,
        selector: req.selector,
        endpoints,
        affinity: req.affinity,
        labels: req.labels,
        created: crate::ids::now(),
    })
}

/// A virtual address: a given one another service of the network has already (shared), or
/// one the network's space gives (a given one checked, else the lowest free).
fn vip(
    v: &View,
    n: &Network,
    field: &str,
    space: &crate::ipam::AddressSpace,
    want: Option<IpAddr>,
) -> Result<IpAddr> {
    if let Some(a) = want {
        if v.services_of_network(&n.id)
            .any(|s| s.vips().any(|x| x == a))
        {
            return Ok(a);
        }
    }
    planner::pick_address(field, &n.name, space, want)
}

/// The endpoints a request names, as ids: each must be on the service's network.
fn named_backends(v: &View, n: &Network, given: &[String]) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(given.len());
    for (i, r) in given.iter().enumerate() {
        let e = v
            .resolve_endpoint(r)
            .map_err(|_| Error::invalid(format!("endpoints[{i}]"), format!("no endpoint {r:?}")))?;
        if e.network_id != n.id {
            return Err(Error::invalid(
                format!("endpoints[{i}]"),
                format!(
                    "endpoint {r:?} is on network {:?}, not {:?}",
                    e.network_name, n.name
                ),
            ));
        }
        if !ids.contains(&e.id) {
            ids.push(e.id.clone());
        }
    }
    Ok(ids)
}
