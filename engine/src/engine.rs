//! The operations. Every mutation runs under one writer lock: validate, plan (IPAM, ports),
//! commit one store transaction, then update the in-memory view and publish an event. Reads
//! take the view's read lock only for as long as it takes to clone a few `Arc`s.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use tokio::sync::{broadcast, Mutex};
use utoipa::ToSchema;

use crate::cluster::keys::EndpointRecord;
use crate::cluster::{Cluster, Refusal};
use crate::config::EngineConfig;
use crate::drivers::{overlay, Bridge};
use crate::error::{Error, Kind, Result};
use crate::events::Event;
use crate::firewall::{Desired, Firewall, FirewallError};
use crate::ids;
use crate::ipam::{plan_family, AddressSpace, StaticRefusal, UsedSubnet};
use crate::model::*;
use crate::policy::Plan;
use crate::store::Store;
use crate::view::{resolve_prefix, View};
use wasmnet_policy::ir::PortDecision;

/// A Linux bridge takes at most 1,024 ports (BR_MAX_PORTS), one of them its own.
const MAX_ENDPOINTS_PER_NETWORK: usize = 1023;

/// Host ports handed out when a mapping asks for none (Docker's fallback range).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49153..=65535;

pub struct Engine {
    cfg: EngineConfig,
    pub(crate) bridge: Bridge,
    pub(crate) firewall: Arc<dyn Firewall>,
    pub(crate) store: Store,
    view: RwLock<View>,
    writer: Mutex<()>,
    events: broadcast::Sender<Event>,
    seq: AtomicU64,
    pub(crate) policies: std::sync::Mutex<crate::policy::Policies>,
    /// Bumped at every change put in the firewall.
    pub(crate) generation: AtomicU64,
    /// The cluster store, when this host shares overlay networks.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Endpoints of overlay networks on other hosts, by id, as the cluster store last said.
    pub(crate) remotes: RwLock<std::collections::BTreeMap<String, Arc<Endpoint>>>,
}

/// Which objects a list returns: all `labels` must match (`key` alone: the label exists);
/// `name` is a substring of the name; `network`/`sandbox` restrict endpoints.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub labels: Vec<(String, Option<String>)>,
    pub name: Option<String>,
    pub network: Option<String>,
    pub sandbox: Option<String>,
}

impl Filter {
    fn labels_match(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|n| name.contains(n))
    }
}

/// A page of a list: `next` is the cursor to pass as `after` for the following page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<Arc<T>>,
    pub next: Option<String>,
}

/// One page out of an ordered iterator; `key` gives an item's cursor.
fn page<'a, T: 'a>(
    items: impl Iterator<Item = &'a Arc<T>>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let mut items: Vec<Arc<T>> = items.take(limit + 1).cloned().collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        key(items.last().expect("limit >= 1"))
    });
    Page { items, next }
}

/// A network with what concerns it: its endpoints and how full its subnets are.
#[derive(Debug, Serialize, ToSchema)]
pub struct NetworkDetail {
    #[serde(flatten)]
    pub network: Arc<Network>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub usage: Usage,
}

/// Addresses in use (the gateway counts) out of the subnet's host addresses, per family.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub ipv4: UsageCount,
    pub ipv6: Option<UsageCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageCount {
    #[schema(value_type = u64)]
    pub used: u128,
    #[schema(value_type = u64)]
    pub total: u128,
}

impl From<&AddressSpace> for UsageCount {
    fn from(s: &AddressSpace) -> Self {
        let (used, total) = s.usage();
        UsageCount { used, total }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxDetail {
    #[serde(flatten)]
    pub sandbox: Arc<Sandbox>,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// Counts for the health endpoint and the dashboard's overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counts {
    pub networks: usize,
    pub sandboxes: usize,
    pub endpoints: usize,
}

impl Engine {
    /// Opens the store, migrates it and loads the committed state into memory.
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Engine>> {
        for pool in cfg.pools_v4.iter().chain(&cfg.pools_v6) {
            pool.check()
                .map_err(|m| Error::invalid("default_address_pools", m))?;
        }
        let store = Store::open(&cfg.database).await?;
        let snapshot = store.load().await?;
        let mut view = View::default();
        snapshot
            .networks
            .into_iter()
            .for_each(|n| view.add_network(Arc::new(n)));
        snapshot
            .sandboxes
            .into_iter()
            .for_each(|s| view.sandboxes.insert(Arc::new(s)));
        snapshot
            .endpoints
            .into_iter()
            .for_each(|e| view.add_endpoint(Arc::new(e)));
        let bridge = Bridge::new()?;
        let cluster = match &cfg.cluster {
            Some(c) => Some(Arc::new(open_cluster(&bridge, c.clone()).await?)),
            None => None,
        };
        let firewall = crate::firewall::backend(cfg.firewall, &cfg.run_dir);
        let cache = cfg.database.with_extension("policy-cache");
        let policies = Engine::open_policies(&cache, &store).await?;
        let (events, _) = broadcast::channel(1024);
        let engine = Arc::new(Engine {
            cfg,
            bridge,
            firewall,
            store,
            view: RwLock::new(view),
            writer: Mutex::new(()),
            events,
            seq: AtomicU64::new(0),
            policies: std::sync::Mutex::new(policies),
            generation: AtomicU64::new(0),
            cluster,
            remotes: Default::default(),
        });
        engine.plan_at_start();
        report("reconciling at start", engine.reconcile().await);
        crate::reconcile::spawn_firewall_watch(&engine);
        crate::cluster::spawn(&engine);
        Ok(engine)
    }

    pub(crate) fn view(&self) -> RwLockReadGuard<'_, View> {
        self.read()
    }

    pub(crate) async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    /// What the firewall should enforce: the committed state, plus `net` or `ep` while they
    /// are being added.
    pub(crate) fn desired(&self, net: Option<&Network>, ep: Option<&Endpoint>) -> Desired {
        let plan = self.policies().snapshot();
        self.desired_with(net, ep, plan)
    }

    /// As `desired`, under the policies' `plan`.
    pub(crate) fn desired_with(
        &self,
        net: Option<&Network>,
        ep: Option<&Endpoint>,
        plan: Arc<Plan>,
    ) -> Desired {
        let v = self.read();
        let mut d = Desired {
            networks: v.networks.iter_from(None).cloned().collect(),
            endpoints: v.endpoints.values().cloned().collect(),
            plan,
            remotes: vec![],
        };
        d.networks.extend(net.map(|n| Arc::new(n.clone())));
        d.remotes = self.remote_endpoints();
        d.endpoints.extend(ep.map(|e| Arc::new(e.clone())));
        d
    }

    /// Puts the whole firewall in place (one transaction per table).
    pub(crate) async fn firewall_apply(&self, desired: Desired) -> Result<()> {
        let fw = self.firewall.clone();
        let applied = tokio::task::spawn_blocking(move || fw.apply(&desired)).await;
        self.applied(applied)
    }

    fn applied(
        &self,
        r: std::result::Result<std::result::Result<(), FirewallError>, tokio::task::JoinError>,
    ) -> Result<()> {
        r.map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)?;
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// An endpoint joined (`ep` given: not yet committed) or left (already out of the view),
    /// with the groups the policies put it in. Set elements only, unless the backend cannot
    /// or a group is new (then the whole ruleset, with the plan updated).
    async fn firewall_endpoint(
        &self,
        e: &Endpoint,
        n: &Network,
        joined: bool,
        members: &[(String, String)],
    ) -> Result<()> {
        let fw = self.firewall.clone();
        let new_group = joined && {
            let p = self.policies();
            members.iter().any(|m| !p.has_group(m))
        };
        let (e, n) = (e.clone(), n.clone());
        if new_group || !fw.incremental() {
            let mut p = self.policies().plan_in_force();
            p.members.remove(&e.id);
            if joined && !members.is_empty() {
                p.members.insert(e.id.clone(), members.to_vec());
            }
            let desired = self.desired_with(None, joined.then_some(&e), Arc::new(p));
            let applied = tokio::task::spawn_blocking(move || {
                if new_group {
                    fw.apply(&desired)
                } else {
                    fw.endpoint(&e, &n, joined, &desired)
                }
            })
            .await;
            return self.applied(applied);
        }
        let mut only = Plan::default();
        if !members.is_empty() {
            only.members.insert(e.id.clone(), members.to_vec());
        }
        let desired = Desired {
            plan: Arc::new(only),
            ..Default::default()
        };
        let applied =
            tokio::task::spawn_blocking(move || fw.endpoint(&e, &n, joined, &desired)).await;
        self.applied(applied)
    }

    /// Deleted networks leave the plan, and their attachments go (as the store's did).
    fn forget_networks(&self, gone: &[Arc<Network>]) {
        let mut p = self.policies();
        for l in p.loaded.values_mut() {
            l.policy
                .attachments
                .retain(|a| !gone.iter().any(|n| a.network_id.as_ref() == Some(&n.id)));
        }
        let plan = Arc::make_mut(&mut p.plan);
        let networks = Arc::make_mut(&mut plan.networks);
        for n in gone {
            networks.remove(&n.id);
        }
    }

    /// Records (or forgets) an endpoint's groups in the plan in force.
    fn set_members(&self, endpoint_id: &str, members: Vec<(String, String)>) {
        let mut p = self.policies();
        p.members.remove(endpoint_id);
        if !members.is_empty() {
            p.members.insert(endpoint_id.to_string(), members);
        }
    }

    fn members_of(&self, endpoint_id: &str) -> Vec<(String, String)> {
        let p = self.policies();
        p.members.get(endpoint_id).cloned().unwrap_or_default()
    }

    /// Forces wasmnet's rules back to what the store says (`wasmnet firewall reload`).
    pub async fn reload_firewall(&self) -> Result<()> {
        let _writer = self.writer.lock().await;
        self.firewall_apply(self.desired(None, None)).await
    }

    /// The chains in force, with the kernel's per-rule counters where the backend keeps them.
    pub async fn firewall_chains(&self) -> Result<Vec<crate::firewall::ChainView>> {
        let fw = self.firewall.clone();
        let desired = self.desired(None, None);
        let listed = tokio::task::spawn_blocking(move || fw.chains(&desired)).await;
        listed
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)
    }

    /// The rules in force, in the backend's own syntax.
    pub fn firewall_text(&self) -> String {
        self.firewall.render(&self.desired(None, None))
    }

    /// Bumped at every change put in the firewall.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn firewall_backend(&self) -> crate::firewall::Backend {
        self.firewall.kind()
    }

    /// Kernel first, then the firewall, then the store: a failure undoes what came before, and
    /// a crash in between leaves only kernel objects the reconciler removes at the next start.
    async fn commit_network(&self, n: &Network, plan: Arc<Plan>) -> Result<()> {
        if let Err(e) = self.plumb_network(n).await {
            let _ = self.unplumb_network(n).await;
            return Err(e);
        }
        let result = match self
            .firewall_apply(self.desired_with(Some(n), None, plan))
            .await
        {
            Ok(()) => self.store.insert_network(n).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.firewall_apply(self.desired(None, None)).await;
            let _ = self.unplumb_network(n).await;
        }
        result
    }

    /// A network's kernel objects: its bridge, and for an overlay its VXLAN port.
    pub(crate) async fn plumb_network(&self, n: &Network) -> Result<()> {
        self.bridge.create_network(n).await?;
        if n.driver == Driver::Overlay {
            let cluster = self.cluster.as_ref().ok_or_else(|| {
                Error::Internal(format!(
                    "overlay network {:?} is in the store but this host runs without --cluster",
                    n.name
                ))
            })?;
            overlay::create_network(self.bridge.links(), cluster, n).await?;
        }
        Ok(())
    }

    async fn unplumb_network(&self, n: &Network) -> Result<()> {
        if n.driver == Driver::Overlay {
            overlay::delete_network(self.bridge.links(), n).await?;
        }
        Ok(self.bridge.delete_network(n).await?)
    }

    /// Commits a planned network here: kernel, firewall, store, view; then tells subscribers.
    pub(crate) async fn add_network_locally(&self, network: Arc<Network>) -> Result<()> {
        // Global policies see the new network (a whole-view call) before it exists.
        let plan = Arc::new(self.compute_plan(|_| {}, &[], Some(&network))?);
        self.commit_network(&network, plan.clone()).await?;
        self.write().add_network(network.clone());
        self.policies().install(&plan);
        self.publish("network.create", &network.id, &network);
        Ok(())
    }

    /// Removes networks from the store and the view, then their kernel objects and rules.
    pub(crate) async fn remove_networks_locally(&self, gone: &[Arc<Network>]) -> Result<()> {
        let ids: Vec<&str> = gone.iter().map(|n| n.id.as_str()).collect();
        self.store.delete_networks(&ids).await?;
        {
            let mut v = self.write();
            for n in gone {
                v.remove_network(&n.id);
            }
        }
        self.teardown_networks(gone).await;
        for n in gone {
            self.publish("network.delete", &n.id, n);
        }
        Ok(())
    }

    /// The cluster store, for an overlay network; `None` for a bridge network.
    fn cluster_of(&self, n: &Network) -> Option<&Arc<Cluster>> {
        self.cluster
            .as_ref()
            .filter(|_| n.driver == Driver::Overlay)
    }

    /// What the cluster knows of a local endpoint of an overlay network.
    pub(crate) fn record_of(&self, e: &Endpoint) -> Option<(Arc<Cluster>, EndpointRecord)> {
        let cluster = self.cluster.as_ref()?;
        let network = self.read().networks.resolve(&e.network_id).ok()?;
        (network.driver == Driver::Overlay).then(|| (cluster.clone(), self.record(cluster, e)))
    }

    /// An endpoint as the cluster store keeps it (with its sandbox's labels, for policies).
    pub(crate) fn record(&self, cluster: &Cluster, e: &Endpoint) -> EndpointRecord {
        let labels = self
            .read()
            .sandboxes
            .resolve(&e.sandbox_id)
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        EndpointRecord::of(e, &labels, &cluster.cfg.node, cluster.vtep())
    }

    /// Endpoints on other hosts, for the policies' groups.
    pub(crate) fn remote_endpoints(&self) -> Vec<Arc<Endpoint>> {
        let r = self.remotes.read().unwrap_or_else(|p| p.into_inner());
        r.values().cloned().collect()
    }

    /// The cluster store's state, when this host is part of one.
    pub fn cluster_health(&self) -> Option<crate::cluster::Health> {
        self.cluster.as_ref().map(|c| c.health())
    }

    /// After networks left the store: their rules and bridges go; every failure is reported.
    async fn teardown_networks(&self, gone: &[Arc<Network>]) {
        self.forget_networks(gone);
        let mut problems = Vec::new();
        if let Err(e) = self.firewall_apply(self.desired(None, None)).await {
            problems.push(e.to_string());
        }
        for n in gone {
            if let Err(e) = self.unplumb_network(n).await {
                problems.push(e.to_string());
            }
        }
        report("removing networks", problems);
    }

    async fn commit_endpoint(&self, plan: &EndpointPlan, e: &Endpoint) -> Result<()> {
        let (n, members) = (&plan.network, &plan.members);
        // The veth and the firewall's elements do not depend on each other: they are made at
        // the same time (nft runs on a blocking thread while netlink works), so the endpoint's
        // firewall state costs connect next to nothing. A failure of either undoes both.
        let (joined, walled) = tokio::join!(
            self.bridge.join(e, n, &plan.sandbox, plan.default_route),
            self.firewall_endpoint(e, n, true, members)
        );
        let (join_ok, wall_ok) = (joined.is_ok(), walled.is_ok());
        let result = match (joined, walled) {
            (Ok(()), Ok(())) => self.store.insert_endpoint(e).await,
            (Err(err), _) => Err(err.into()),
            (_, Err(err)) => Err(err),
        };
        if result.is_err() {
            if wall_ok {
                let _ = self.firewall_endpoint(e, n, false, members).await;
            }
            if join_ok {
                let _ = self.bridge.leave(e, n).await;
            }
        }
        result
    }

    /// After endpoints left the store: their firewall state and veths go, past any failure.
    async fn teardown_endpoints(&self, gone: &[Arc<Endpoint>], problems: &mut Vec<String>) {
        for e in gone {
            // Networks outlive their endpoints (deletion is refused while any is connected).
            let network = self.read().networks.resolve(&e.network_id).ok();
            let left = match network {
                Some(n) => {
                    let members = self.members_of(&e.id);
                    if let Err(err) = self.firewall_endpoint(e, &n, false, &members).await {
                        problems.push(err.to_string());
                    }
                    self.set_members(&e.id, vec![]);
                    self.bridge.leave(e, &n).await
                }
                None => self.bridge.remove_veth(e).await,
            };
            if let Err(err) = left {
                problems.push(err.to_string());
            }
        }
    }

    pub async fn close(&self) {
        let _writer = self.writer.lock().await;
        self.store.close().await;
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn publish<T: Serialize>(&self, action: &'static str, id: &str, object: &T) {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: ids::now(),
            action,
            id: id.to_string(),
            object: serde_json::to_value(object).unwrap_or_default(),
        };
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub fn counts(&self) -> Counts {
        let v = self.read();
        Counts {
            networks: v.networks.len(),
            sandboxes: v.sandboxes.len(),
            endpoints: v.endpoints.len(),
        }
    }

    // ---- networks ----

    pub fn list_networks(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Network> {
        let v = self.read();
        let it = v
            .networks
            .iter_from(after)
            .filter(|n| f.labels_match(&n.labels) && f.name_matches(&n.name));
        page(it, limit, |n| n.name.clone())
    }

    /// The same page as `list_networks`, as JSON, from networks serialised when they were
    /// added: listing is the hot read path (scripts poll it), so it costs copies, not serde.
    pub fn list_networks_json(&self, f: &Filter, after: Option<&str>, limit: usize) -> String {
        let v = self.read();
        let mut it = v
            .networks
            .iter_from(after)
            .filter(|n| f.labels_match(&n.labels) && f.name_matches(&n.name));
        let mut out = String::with_capacity(limit * 320 + 32);
        out.push_str("{\"items\":[");
        let mut last = None;
        for n in it.by_ref().take(limit) {
            if last.is_some() {
                out.push(',');
            }
            out.push_str(&v.network_json[&n.id]);
            last = Some(n);
        }
        out.push_str("],\"next\":");
        match (last, it.next()) {
            (Some(n), Some(_)) => {
                out.push_str(&serde_json::to_string(&n.name).expect("a string serialises"))
            }
            _ => out.push_str("null"),
        }
        out.push('}');
        out
    }

    pub fn network(&self, reference: &str) -> Result<NetworkDetail> {
        let v = self.read();
        let network = v.networks.resolve(reference)?;
        let spaces = &v.spaces[&network.id];
        Ok(NetworkDetail {
            endpoints: v.endpoints_of_network(&network.id).cloned().collect(),
            usage: Usage {
                ipv4: (&spaces.v4).into(),
                ipv6: spaces.v6.as_ref().map(Into::into),
            },
            network,
        })
    }

    pub async fn create_network(&self, req: NetworkCreate) -> Result<Arc<Network>> {
        validate_name("name", &req.name)?;
        validate_labels("labels", &req.labels)?;
        validate_options(&req.options)?;
        let cluster = self.cluster_for(&req)?;
        let _writer = self.writer.lock().await;
        let network = {
            let v = self.read();
            if v.networks.has_name(&req.name) {
                return Err(Error::conflict(
                    "name_in_use",
                    format!("network name {:?} is already in use", req.name),
                ));
            }
            let used = |v6: bool| -> Vec<UsedSubnet<'_>> {
                v.networks
                    .iter_from(None)
                    .filter_map(|n| {
                        if v6 { n.ipv6.as_ref() } else { Some(&n.ipv4) }.map(|c| (c, &n.name))
                    })
                    .map(|(c, name)| UsedSubnet {
                        subnet: c.subnet,
                        network: name,
                    })
                    .collect()
            };
            let ipv4 = plan_family("ipv4", &req.ipv4, false, &self.cfg.pools_v4, &used(false))?;
            let ipv6 = match (&req.ipv6, req.enable_ipv6) {
                (None, false) => None,
                (r, _) => Some(plan_family(
                    "ipv6",
                    &r.clone().unwrap_or_default(),
                    true,
                    &self.cfg.pools_v6,
                    &used(true),
                )?),
            };
            Network {
                id: ids::new_id(),
                name: req.name,
                driver: req.driver,
                ipv4,
                ipv6,
                internal: req.internal,
                labels: req.labels,
                options: req.options,
                created: ids::now(),
            }
        };
        let network = Arc::new(match cluster {
            Some(c) => self.register_overlay(&c, network).await?,
            None => network,
        });
        if let Err(e) = self.add_network_locally(network.clone()).await {
            if let Some(c) = self.cluster_of(&network) {
                let _ = c
                    .delete_network(&network, overlay::vni(&network).unwrap_or(0))
                    .await;
            }
            return Err(e);
        }
        Ok(network)
    }

    /// The cluster an overlay network is to be created in; refuses what an overlay cannot be.
    fn cluster_for(&self, req: &NetworkCreate) -> Result<Option<Arc<Cluster>>> {
        if req.driver != Driver::Overlay {
            if req.options.contains_key("vni") {
                return Err(Error::invalid(
                    "options.vni",
                    "only overlay networks have a VNI",
                ));
            }
            return Ok(None);
        }
        let Some(cluster) = &self.cluster else {
            return Err(Error::invalid(
                "driver",
                "overlay networks need a cluster store: start wasmnet serve with --cluster etcd://HOST:2379",
            ));
        };
        if req.options.get("icc").is_some_and(|v| v == "false") {
            return Err(Error::invalid(
                "options.icc",
                "icc=false is not supported on overlay networks (it would hold within each host only)",
            ));
        }
        if let Some(mtu) = req.options.get("mtu").and_then(|m| m.parse::<u32>().ok()) {
            if mtu > cluster.mtu {
                return Err(Error::invalid(
                    "options.mtu",
                    format!(
                        "{mtu} is more than this host's underlay ({}) allows once VXLAN's 50 bytes are added: at most {}",
                        cluster.underlay, cluster.mtu
                    ),
                ));
            }
        }
        Ok(Some(cluster.clone()))
    }

    /// Gives a new overlay network its VNI and MTU and records it in the cluster, where its
    /// name, VNI and subnets are checked against every host's in one transaction.
    async fn register_overlay(&self, cluster: &Cluster, mut n: Network) -> Result<Network> {
        let vni = match overlay::vni(&n) {
            Some(v) => v,
            None => crate::cluster::keys::free_vni(&cluster.taken_vnis().await?)
                .ok_or_else(|| Error::conflict("vni_exhausted", "every VNI is taken"))?,
        };
        n.options.insert("vni".into(), vni.to_string());
        n.options
            .entry("mtu".into())
            .or_insert_with(|| cluster.mtu.to_string());
        match cluster.create_network(&n, vni).await? {
            None => Ok(n),
            Some(_) => Err(cluster.why_taken(&n, vni).await),
        }
    }

    pub async fn delete_network(&self, reference: &str) -> Result<Arc<Network>> {
        let _writer = self.writer.lock().await;
        let network = {
            let v = self.read();
            let network = v.networks.resolve(reference)?;
            let count = v.endpoints_of_network(&network.id).count();
            if count > 0 {
                return Err(Error::conflict(
                    "has_endpoints",
                    format!(
                        "network {:?} has {count} endpoint(s); disconnect them first",
                        network.name
                    ),
                ));
            }
            network
        };
        self.unregister_overlay(&network).await?;
        self.remove_networks_locally(std::slice::from_ref(&network))
            .await?;
        Ok(network)
    }

    /// Removes an overlay network from the cluster (refused while any host has an endpoint on
    /// it); nothing to do for a bridge network.
    async fn unregister_overlay(&self, n: &Network) -> Result<()> {
        let Some(cluster) = self.cluster_of(n) else {
            return Ok(());
        };
        match cluster
            .delete_network(n, overlay::vni(n).unwrap_or(0))
            .await?
        {
            None => Ok(()),
            Some(_) => Err(Error::conflict(
                "has_endpoints",
                format!(
                    "network {:?} has endpoints on other hosts; disconnect them first",
                    n.name
                ),
            )),
        }
    }

    /// Removes every network without endpoints that matches the filter's labels.
    pub async fn prune_networks(&self, f: &Filter) -> Result<Vec<Arc<Network>>> {
        let _writer = self.writer.lock().await;
        let unused: Vec<Arc<Network>> = {
            let v = self.read();
            v.networks
                .iter_from(None)
                .filter(|n| {
                    f.labels_match(&n.labels) && v.endpoints_of_network(&n.id).next().is_none()
                })
                .cloned()
                .collect()
        };
        // Overlay networks in use on another host stay; an unreachable cluster stops the
        // prune after what it already removed.
        let mut gone = Vec::with_capacity(unused.len());
        let mut failure = None;
        for n in unused {
            match self.unregister_overlay(&n).await {
                Ok(()) => gone.push(n),
                Err(Error::Conflict { .. }) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.remove_networks_locally(&gone).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(gone),
        }
    }

    // ---- sandboxes ----

    pub fn list_sandboxes(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Sandbox> {
        let v = self.read();
        let it = v
            .sandboxes
            .iter_from(after)
            .filter(|s| f.labels_match(&s.labels) && f.name_matches(&s.name));
        page(it, limit, |s| s.name.clone())
    }

    pub fn sandbox(&self, reference: &str) -> Result<SandboxDetail> {
        let v = self.read();
        let sandbox = v.sandboxes.resolve(reference)?;
        Ok(SandboxDetail {
            endpoints: v.endpoints_of_sandbox(&sandbox.id).cloned().collect(),
            sandbox,
        })
    }

    pub async fn create_sandbox(&self, req: SandboxCreate) -> Result<Arc<Sandbox>> {
        let id = ids::new_id();
        let name = req.name.unwrap_or_else(|| format!("sandbox-{}", &id[..12]));
        validate_name("name", &name)?;
        validate_labels("labels", &req.labels)?;
        let (netns, netns_owned) = match req.netns {
            Some(path) => (check_adopted_netns(&path).await?, false),
            None => (
                self.cfg
                    .run_dir
                    .join("netns")
                    .join(&id)
                    .to_string_lossy()
                    .into_owned(),
                true,
            ),
        };
        let _writer = self.writer.lock().await;
        {
            let v = self.read();
            if v.sandboxes.has_name(&name) {
                return Err(Error::conflict(
                    "name_in_use",
                    format!("sandbox name {name:?} is already in use"),
                ));
            }
            let other = v
                .sandboxes
                .iter_from(None)
                .find(|s| s.netns == netns)
                .cloned();
            if let Some(other) = other {
                return Err(Error::conflict(
                    "netns_in_use",
                    format!("{netns} is already sandbox {:?}", other.name),
                ));
            }
        }
        let sandbox = Arc::new(Sandbox {
            id,
            name,
            labels: req.labels,
            netns,
            netns_owned,
            created: ids::now(),
        });
        if let Err(e) = self.bridge.create_sandbox(&sandbox).await {
            let _ = self.bridge.delete_sandbox(&sandbox);
            return Err(e.into());
        }
        if let Err(e) = self.store.insert_sandbox(&sandbox).await {
            let _ = self.bridge.delete_sandbox(&sandbox);
            return Err(e);
        }
        self.write().sandboxes.insert(sandbox.clone());
        self.publish("sandbox.create", &sandbox.id, &sandbox);
        Ok(sandbox)
    }

    /// Removes a sandbox and disconnects its endpoints, in one transaction.
    pub async fn delete_sandbox(&self, reference: &str) -> Result<SandboxDetail> {
        let _writer = self.writer.lock().await;
        let detail = self.sandbox(reference)?;
        let records: Vec<_> = detail
            .endpoints
            .iter()
            .filter_map(|e| self.record_of(e))
            .collect();
        if let Some((cluster, _)) = records.first() {
            let recs: Vec<EndpointRecord> = records.iter().map(|(_, r)| r.clone()).collect();
            cluster.withdraw(&recs).await?;
        }
        self.store.delete_sandbox(&detail.sandbox.id).await?;
        {
            let mut v = self.write();
            for e in &detail.endpoints {
                v.remove_endpoint(&e.id);
            }
            v.sandboxes.remove(&detail.sandbox.id);
        }
        // Committed: the kernel follows, past every failure (a vanished namespace included).
        let mut problems = Vec::new();
        self.teardown_endpoints(&detail.endpoints, &mut problems)
            .await;
        if let Err(e) = self.bridge.delete_sandbox(&detail.sandbox) {
            problems.push(e.to_string());
        }
        report("removing a sandbox", problems);
        for e in &detail.endpoints {
            self.publish("endpoint.disconnect", &e.id, e);
        }
        self.publish("sandbox.delete", &detail.sandbox.id, &detail.sandbox);
        Ok(detail)
    }

    // ---- endpoints ----

    pub fn list_endpoints(
        &self,
        f: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Endpoint>> {
        let v = self.read();
        let network = f
            .network
            .as_deref()
            .map(|r| v.networks.resolve(r))
            .transpose()?;
        let sandbox = f
            .sandbox
            .as_deref()
            .map(|r| v.sandboxes.resolve(r))
            .transpose()?;
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_string()),
            None => std::ops::Bound::Unbounded,
        };
        let it = v
            .endpoints
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| {
                network.as_ref().is_none_or(|n| n.id == e.network_id)
                    && sandbox.as_ref().is_none_or(|s| s.id == e.sandbox_id)
                    && f.labels_match(&e.labels)
            });
        Ok(page(it, limit, |e| e.id.clone()))
    }

    pub fn endpoint(&self, reference: &str) -> Result<Arc<Endpoint>> {
        let v = self.read();
        resolve_prefix(&v.endpoints, Kind::Endpoint, reference)
    }

    pub async fn connect(&self, mut req: EndpointCreate) -> Result<Arc<Endpoint>> {
        validate_endpoint_request(&mut req)?;
        let _writer = self.writer.lock().await;
        let start = std::time::Instant::now();
        let plan = self.admit(req.clone())?;
        let (plan, published) = self.publish_overlay(plan, &req).await?;
        let admitted = start.elapsed();
        let endpoint = Arc::new(plan.endpoint.clone());
        if let Err(e) = self.commit_endpoint(&plan, &endpoint).await {
            if let Some((cluster, rec)) = published {
                let _ = cluster.withdraw(&[rec]).await;
            }
            return Err(e);
        }
        tracing::debug!(?admitted, committed = ?start.elapsed(), "connect");
        self.write().add_endpoint(endpoint.clone());
        self.set_members(&endpoint.id, plan.members);
        self.publish("endpoint.connect", &endpoint.id, &endpoint);
        Ok(endpoint)
    }

    /// An endpoint of an overlay network claims its addresses cluster-wide and says where it
    /// is. A dynamic address another host took meanwhile is skipped and the next one tried.
    async fn publish_overlay(
        &self,
        mut plan: EndpointPlan,
        req: &EndpointCreate,
    ) -> Result<(EndpointPlan, Option<(Arc<Cluster>, EndpointRecord)>)> {
        let Some(cluster) = self.cluster_of(&plan.network).cloned() else {
            return Ok((plan, None));
        };
        for _ in 0..16 {
            let e = &plan.endpoint;
            let rec =
                EndpointRecord::of(e, &plan.sandbox.labels, &cluster.cfg.node, cluster.vtep());
            match cluster.publish(&rec, true).await? {
                None => return Ok((plan, Some((cluster, rec)))),
                Some(Refusal::NoNetwork) => {
                    return Err(Error::not_found(Kind::Network, &plan.network.name))
                }
                Some(_) if req.ipv4.is_some() || req.ipv6.is_some() => {
                    return Err(Error::conflict(
                        "address_in_use",
                        format!(
                            "{} is already in use on network {:?} (on another host)",
                            rec.addresses()
                                .iter()
                                .map(|a| a.to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            plan.network.name
                        ),
                    ))
                }
                Some(_) => {
                    self.take_addresses(&rec);
                    plan = self.admit(req.clone())?;
                }
            }
        }
        Err(Error::conflict(
            "address_exhausted",
            format!(
                "no address on network {:?} could be claimed: other hosts took each one tried",
                plan.network.name
            ),
        ))
    }

    /// Marks addresses as used here (another host has them, its claim not seen yet).
    fn take_addresses(&self, rec: &EndpointRecord) {
        let mut v = self.write();
        for a in rec.addresses() {
            v.mark_address(&rec.network_id, a, true);
        }
    }

    /// Resolves references and allocates addresses and ports for a new endpoint, against the
    /// committed state (the caller holds the writer lock, so nothing changes meanwhile).
    fn plan_endpoint(&self, req: EndpointCreate) -> Result<EndpointPlan> {
        let v = self.read();
        let network = v.networks.resolve(&req.network)?;
        let sandbox = v.sandboxes.resolve(&req.sandbox)?;
        if let Some(e) = v
            .endpoints_of_sandbox(&sandbox.id)
            .find(|e| e.network_id == network.id)
        {
            return Err(Error::conflict(
                "already_connected",
                format!(
                    "sandbox {:?} is already connected to network {:?} (endpoint {})",
                    sandbox.name, network.name, e.id
                ),
            ));
        }
        let count = v.endpoints_of_network(&network.id).count();
        if count >= MAX_ENDPOINTS_PER_NETWORK {
            return Err(Error::conflict(
                "network_full",
                format!(
                    "network {:?} has {count} endpoints, the most a Linux bridge can take",
                    network.name
                ),
            ));
        }
        let taken: Vec<&str> = v
            .endpoints_of_sandbox(&sandbox.id)
            .map(|e| e.interface.as_str())
            .collect();
        let interface = match req.interface {
            Some(name) if taken.contains(&name.as_str()) => {
                return Err(Error::conflict(
                    "interface_in_use",
                    format!("sandbox {:?} already has an interface {name}", sandbox.name),
                ))
            }
            Some(name) => name,
            None => (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !taken.contains(&n.as_str()))
                .expect("unbounded"),
        };
        let spaces = &v.spaces[&network.id];
        // IPv6 first: asking for an IPv6 address on a v4-only network is the caller's mistake,
        // to be reported as such even when the IPv4 space is full.
        let ipv6 = match (&spaces.v6, req.ipv6) {
            (Some(space), want) => Some(pick_address("ipv6", &network.name, space, want)?),
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "ipv6",
                    format!("network {:?} has no IPv6 subnet", network.name),
                ))
            }
            (None, None) => None,
        };
        let ipv4 = Some(pick_address("ipv4", &network.name, &spaces.v4, req.ipv4)?);
        let ports = plan_ports(&v, &req.ports)?;
        // Docker: the default route comes from the sandbox's first non-internal network.
        let has_way_out = v
            .endpoints_of_sandbox(&sandbox.id)
            .any(|e| v.networks.resolve(&e.network_id).is_ok_and(|n| !n.internal));
        let endpoint = Endpoint {
            id: ids::new_id(),
            network_id: network.id.clone(),
            network_name: network.name.clone(),
            sandbox_id: sandbox.id.clone(),
            sandbox_name: sandbox.name.clone(),
            interface,
            mac: req.mac.unwrap_or_else(|| ids::derive_mac(ipv4)),
            ipv4,
            ipv6,
            aliases: req.aliases,
            ports,
            labels: req.labels,
            created: ids::now(),
        };
        Ok(EndpointPlan {
            endpoint,
            default_route: !network.internal && !has_way_out,
            network,
            sandbox,
            members: vec![],
        })
    }

    /// Plans an endpoint and asks the policies governing its network: a refused port refuses
    /// the connect, a remapped one is planned again on its new host port, and the groups the
    /// policies name are recorded.
    fn admit(&self, mut req: EndpointCreate) -> Result<EndpointPlan> {
        let mut plan = self.plan_endpoint(req.clone())?;
        let decisions = {
            let current = self.policies().plan.clone();
            let labels = plan.sandbox.labels.clone();
            self.policies()
                .classify(&current, &plan.endpoint, &plan.network, &labels)?
        };
        if decisions.is_empty() {
            return Ok(plan);
        }
        let mut remapped = false;
        for (i, port) in req.ports.iter_mut().enumerate() {
            let first = decisions
                .iter()
                .filter(|(a, _)| !a.audit)
                .find_map(|(a, d)| match &d.ports[i] {
                    PortDecision::Honour => None,
                    other => Some((a, other)),
                });
            match first {
                Some((a, PortDecision::Refuse(why))) => {
                    return Err(Error::invalid(
                        format!("ports[{i}]"),
                        format!("refused by policy {:?}: {why}", a.policy_name),
                    ))
                }
                Some((_, PortDecision::Remap(to))) => {
                    port.host_port = *to;
                    remapped = true;
                }
                _ => {}
            }
        }
        if remapped {
            plan = self.plan_endpoint(req)?;
        }
        plan.members = crate::policy::memberships(&decisions);
        Ok(plan)
    }

    pub async fn disconnect(&self, reference: &str) -> Result<Arc<Endpoint>> {
        let _writer = self.writer.lock().await;
        let endpoint = self.endpoint(reference)?;
        if let Some((cluster, rec)) = self.record_of(&endpoint) {
            cluster.withdraw(&[rec]).await?;
        }
        self.store.delete_endpoint(&endpoint.id).await?;
        self.write().remove_endpoint(&endpoint.id);
        let mut problems = Vec::new();
        self.teardown_endpoints(std::slice::from_ref(&endpoint), &mut problems)
            .await;
        report("disconnecting", problems);
        self.publish("endpoint.disconnect", &endpoint.id, &endpoint);
        Ok(endpoint)
    }
}

/// A planned endpoint and what its kernel plumbing needs.
struct EndpointPlan {
    endpoint: Endpoint,
    network: Arc<Network>,
    sandbox: Arc<Sandbox>,
    default_route: bool,
    /// (policy id, group) for each group the policies put it in.
    members: Vec<(String, String)>,
}

/// Logs the failures of a teardown that kept going; the store is already right, and the
/// reconciler retries the kernel side at the next start.
pub(crate) fn report(what: &str, problems: Vec<String>) {
    for p in problems {
        tracing::warn!(problem = %p, "{what}");
    }
}

fn validate_endpoint_request(req: &mut EndpointCreate) -> Result<()> {
    if let Some(i) = &req.interface {
        validate_interface("interface", i)?;
    }
    if let Some(mac) = &req.mac {
        req.mac = Some(validate_mac("mac", mac)?);
    }
    for (field, addr, v6) in [("ipv4", req.ipv4, false), ("ipv6", req.ipv6, true)] {
        if addr.is_some_and(|a| a.is_ipv6() != v6) {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not an {} address",
                    addr.unwrap(),
                    if v6 { "IPv6" } else { "IPv4" }
                ),
            ));
        }
    }
    for (i, alias) in req.aliases.iter().enumerate() {
        validate_name(&format!("aliases[{i}]"), alias)?;
    }
    validate_labels("labels", &req.labels)?;
    for (i, p) in req.ports.iter().enumerate() {
        if p.container_port == 0 {
            return Err(Error::invalid(
                format!("ports[{i}].container_port"),
                "must be between 1 and 65535",
            ));
        }
        if p.host_ip
            .is_some_and(|ip| ip.is_multicast() || ip.is_unspecified())
        {
            return Err(Error::invalid(
                format!("ports[{i}].host_ip"),
                "must be a unicast address; leave it out to publish on every address",
            ));
        }
    }
    Ok(())
}

/// A static address if asked for (checked), else the next free one.
fn pick_address(
    field: &str,
    network: &str,
    space: &AddressSpace,
    want: Option<IpAddr>,
) -> Result<IpAddr> {
    let Some(addr) = want else {
        return space.next_free().ok_or_else(|| {
            Error::conflict(
                "address_exhausted",
                format!("network {network:?} has no free {field} address left"),
            )
        });
    };
    match space.check_static(addr) {
        Ok(()) => Ok(addr),
        Err(StaticRefusal::OutsideSubnet) => Err(Error::invalid(
            field,
            format!("{addr} is not inside the subnet of network {network:?}"),
        )),
        Err(StaticRefusal::Reserved) => Err(Error::invalid(
            field,
            format!("{addr} is reserved (network, broadcast or gateway address)"),
        )),
        Err(StaticRefusal::InUse) => Err(Error::conflict(
            "address_in_use",
            format!("{addr} is already in use on network {network:?}"),
        )),
    }
}

/// Host ports for the requested mappings: given ones must be free, absent ones are picked.
fn plan_ports(v: &View, requests: &[PortRequest]) -> Result<Vec<PortMapping>> {
    let mut planned: Vec<PortMapping> = Vec::with_capacity(requests.len());
    let clashes = |m: &PortMapping, planned: &[PortMapping]| {
        v.port_taken(m)
            || planned.iter().any(|o| {
                o.protocol == m.protocol
                    && o.host_port == m.host_port
                    && (o.host_ip.is_none() || m.host_ip.is_none() || o.host_ip == m.host_ip)
            })
    };
    for (i, r) in requests.iter().enumerate() {
        let mut m = PortMapping {
            host_ip: r.host_ip,
            host_port: r.host_port,
            container_port: r.container_port,
            protocol: r.protocol,
        };
        if r.host_port == 0 {
            m.host_port = EPHEMERAL_PORTS
                .clone()
                .find(|&port| {
                    !clashes(
                        &PortMapping {
                            host_port: port,
                            ..m
                        },
                        &planned,
                    )
                })
                .ok_or_else(|| {
                    Error::conflict(
                        "port_exhausted",
                        format!("ports[{i}]: no free host port left in 49153-65535"),
                    )
                })?;
        } else if clashes(&m, &planned) {
            let on = m
                .host_ip
                .map_or("every address".to_string(), |ip| ip.to_string());
            return Err(Error::conflict(
                "port_in_use",
                format!(
                    "ports[{i}]: host port {}/{} on {on} is already published",
                    m.host_port, m.protocol
                ),
            ));
        }
        planned.push(m);
    }
    Ok(planned)
}

/// An adopted namespace must be an absolute path that exists.
async fn check_adopted_netns(path: &str) -> Result<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(Error::invalid(
            "netns",
            format!("{path:?} is not an absolute path"),
        ));
    }
    match tokio::fs::metadata(path).await {
        Ok(_) => Ok(path.to_string()),
        Err(e) => Err(Error::invalid("netns", format!("{path}: {e}"))),
    }
}

/// Joins the cluster: the VTEP address must be one of this host's, on the underlay link.
async fn open_cluster(bridge: &Bridge, cfg: crate::cluster::ClusterConfig) -> Result<Cluster> {
    let vtep = IpAddr::V4(cfg.advertise);
    let (underlay, mtu) = bridge.links().owner_of(vtep).await?.ok_or_else(|| {
        Error::invalid(
            "cluster_advertise",
            format!("{vtep} is not an address of this host: give the underlay address the other hosts reach it at"),
        )
    })?;
    Cluster::open(cfg, underlay, mtu).await
}
