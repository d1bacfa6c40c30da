//! The engine: the operations on networks, sandboxes, endpoints and policies, over one
//! committed state (`crate::state::State`). Writers are serialised by one async mutex; each
//! validates and plans against the state in force (pure: `planner`), asks the policies (Wasm,
//! on a blocking thread, holding no lock a reader needs), makes the kernel change through the
//! `dataplane` (which undoes itself on failure), commits one store transaction, then installs
//! the next state and publishes an event. Readers clone the state's `Arc` and never wait for
//! a writer.
//!
//! One file per object's operations (`networks`, `sandboxes`, `endpoints`, `policies`), the
//! reads (`queries`, `rules`), the engine's side of the cluster (`cluster`), and
//! reconciliation (`reconcile`).

mod cluster;
mod cluster_policies;
mod cluster_sync;
mod dataplane;
mod defaults;
mod endpoints;
mod flows;
mod networks;
mod planner;
mod policies;
mod queries;
mod reaper;
mod reconcile;
mod resolv;
mod rules;
mod sandboxes;
mod service_queries;
mod services;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::{broadcast, Mutex};
use wasmnet_policy::Runtime;

use crate::cluster::Cluster;
use crate::config::EngineConfig;
use crate::drivers::{Drivers, Vtep};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::firewall::Firewall;
use crate::ids;
use crate::kernel::{Kernel, System};
use crate::policy::PolicySet;
use crate::state::{State, View};
use crate::store::Store;

pub use defaults::DEFAULT_LABEL;
pub use queries::{Counts, Filter, NetworkDetail, Page, SandboxDetail, Usage, UsageCount};
pub use rules::{DryRun, PolicyCounters, Ruleset};
pub use service_queries::{Backend, ServiceDetail};

pub struct Engine {
    cfg: EngineConfig,
    drivers: Drivers,
    firewall: Arc<dyn Firewall>,
    store: Store,
    /// The wasmtime engine policies run in (thread-safe; calls run on blocking threads).
    runtime: Arc<Runtime>,
    /// The committed state; replaced whole by the writer, never changed in place.
    state: RwLock<Arc<State>>,
    writer: Mutex<()>,
    events: broadcast::Sender<Event>,
    seq: AtomicU64,
    /// Changes put in the firewall so far; each installed state records it as its generation.
    firewall_changes: AtomicU64,
    /// The cluster store, when this host shares overlay networks.
    cluster: Option<Arc<Cluster>>,
    /// Wakes the reaper, which deletes retired links behind the operations' answers.
    reaper: Arc<tokio::sync::Notify>,
    /// The newest flow records, and their live stream.
    flows: std::sync::Mutex<crate::flows::Ring>,
    flow_events: broadcast::Sender<crate::flows::Flow>,
}

impl Engine {
    /// Opens the store, migrates it, loads the committed state into memory and makes the
    /// kernel match it: the real kernel and the configured firewall backend.
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Engine>> {
        let kernel: Arc<dyn Kernel> = Arc::new(System::new()?);
        let firewall = crate::firewall::backend(cfg.firewall, &cfg.run_dir);
        // The flow log first: if it cannot be read, no rule logs to it (see `flows::logging`).
        let flow_log = crate::kernel::nflog::bind(crate::names::FLOW_GROUP);
        if let Err(e) = &flow_log {
            tracing::warn!(error = %e, "no flow records (the flow log cannot be read); rules will not log");
            crate::flows::set_logging(false);
        }
        let engine = Engine::open_with(cfg, kernel, firewall).await?;
        if let Ok(socket) = flow_log {
            engine.start_flows(socket);
        }
        Ok(engine)
    }

    /// As `open`, on the kernel and firewall given (the unit tests give fakes).
    pub(crate) async fn open_with(
        cfg: EngineConfig,
        kernel: Arc<dyn Kernel>,
        firewall: Arc<dyn Firewall>,
    ) -> Result<Arc<Engine>> {
        for pool in cfg.pools_v4.iter().chain(&cfg.pools_v6) {
            pool.check()
                .map_err(|m| Error::invalid("default_address_pools", m))?;
        }
        let t0 = std::time::Instant::now();
        let store = Store::open(&cfg.database).await?;
        let view = load_view(&store).await?;
        let loaded_at = t0.elapsed();
        let cluster = match &cfg.cluster {
            Some(c) => Some(Arc::new(cluster::open(kernel.as_ref(), c.clone()).await?)),
            None => None,
        };
        let vtep = cluster.as_ref().map(|c| Vtep {
            local: c.cfg.advertise,
            underlay: c.underlay.clone(),
            mtu: c.mtu,
            port: c.cfg.vxlan_port,
        });
        let drivers = Drivers::new(kernel, vtep)?;
        let cache = cfg.database.with_extension("policy-cache");
        let runtime = Runtime::new(Default::default(), Some(&cache))
            .map_err(|e| Error::Internal(format!("starting the policy runtime: {e}")))?;
        let loaded = policies::load_stored(&runtime, &store).await?;
        let policies_at = t0.elapsed();
        let state = State {
            view,
            policies: PolicySet {
                loaded,
                plan: Default::default(),
                iptables: firewall.kind() == crate::firewall::Backend::Iptables,
            },
            ..Default::default()
        };
        let (events, _) = broadcast::channel(1024);
        let flows = std::sync::Mutex::new(crate::flows::Ring::new(cfg.flow_buffer));
        let (flow_events, _) = broadcast::channel(1024);
        let engine = Arc::new(Engine {
            cfg,
            drivers,
            firewall,
            store,
            runtime: Arc::new(runtime),
            state: RwLock::new(Arc::new(state)),
            writer: Mutex::new(()),
            events,
            seq: AtomicU64::new(0),
            firewall_changes: AtomicU64::new(0),
            cluster,
            reaper: Arc::new(tokio::sync::Notify::new()),
            flows,
            flow_events,
        });
        engine.start().await;
        tracing::debug!(target: "wasmnet::start", ?loaded_at, ?policies_at, started = ?t0.elapsed(), "engine open");
        Ok(engine)
    }

    /// The plan for the stored policies, the kernel made to match, the watchers started.
    async fn start(self: &Arc<Self>) {
        let t0 = std::time::Instant::now();
        self.plan_at_start().await;
        let planned = t0.elapsed();
        report("reconciling at start", self.reconcile().await);
        if let Err(e) = self.ensure_default_network().await {
            tracing::warn!(error = %e, "making the default network");
        }
        tracing::debug!(target: "wasmnet::start", ?planned, reconciled = ?t0.elapsed(), "start");
        reconcile::spawn_firewall_watch(self);
        reaper::spawn_reaper(self);
        if let Some(c) = self.cluster.clone() {
            crate::cluster::spawn(self.clone(), c);
        }
    }

    /// The committed state: one consistent value, however long the caller keeps it.
    pub fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many times the firewall's tables were replaced whole (the name patterns' sets with
    /// them): what the DNS server wrote before such a count is gone.
    pub fn firewall_replacements(&self) -> u64 {
        self.firewall.replacements()
    }

    /// Puts addresses the DNS server answered into the name patterns' sets (`fqdn::elements`
    /// says which). Blocks for one netlink transaction (microseconds): the server calls it
    /// before it replies, so the client's first packet already finds its address.
    pub fn learn_fqdn(&self, elements: &[crate::kernel::nfset::Element]) -> Result<(), Error> {
        if elements.is_empty() {
            return Ok(());
        }
        self.firewall
            .learn(elements)
            .map_err(|e| Error::Internal(format!("learning addresses of names: {e}")))
    }

    /// Makes `next` the committed state. Only under the writer lock, after the store and the
    /// kernel took the change.
    fn install(&self, mut next: State) {
        next.generation = self.firewall_changes.load(Ordering::Relaxed);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }

    /// Installs a copy of the state in force changed by `f` (under the writer lock).
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut next = State::clone(&self.state());
        f(&mut next);
        self.install(next);
    }

    async fn lock_writer(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writer.lock().await
    }

    pub async fn close(&self) {
        let _writer = self.writer.lock().await;
        self.reap_now().await;
        self.store.close().await;
    }

    /// A runtime plugin's records of `kind` (id, JSON body), kept in the engine's store.
    pub async fn plugin_records(&self, kind: &str) -> Result<Vec<(String, String)>> {
        self.store.records(kind).await
    }

    /// One record of `kind`, by id.
    pub async fn plugin_record(&self, kind: &str, id: &str) -> Result<Option<String>> {
        self.store.record(kind, id).await
    }

    pub async fn put_plugin_record(&self, kind: &str, id: &str, body: &str) -> Result<()> {
        self.store.put_record(kind, id, body).await
    }

    pub async fn delete_plugin_record(&self, kind: &str, id: &str) -> Result<()> {
        self.store.delete_record(kind, id).await
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn publish<T: Serialize>(&self, kind: EventKind, id: &str, object: &T) {
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            time: ids::now(),
            action: kind,
            id: id.to_string(),
            object: serde_json::to_value(object).unwrap_or_default(),
        };
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }
}

async fn load_view(store: &Store) -> Result<View> {
    let snapshot = store.load().await?;
    let mut view = View::default();
    for n in snapshot.networks {
        view.add_network(Arc::new(n));
    }
    for s in snapshot.sandboxes {
        view.add_sandbox(Arc::new(s));
    }
    for e in snapshot.endpoints {
        view.add_endpoint(Arc::new(e));
    }
    for s in store.load_services().await? {
        view.add_service(Arc::new(s));
    }
    Ok(view)
}

/// Logs the failures of a teardown that kept going; the store is already right, and the
/// reconciler retries the kernel side at the next start.
pub(crate) fn report(what: &str, problems: Vec<String>) {
    for p in problems {
        tracing::warn!(problem = %p, "{what}");
    }
}

/// Logs an undo step that failed (after an earlier failure): never dropped silently; the
/// reconciler removes what is left at the next start.
fn undo<E: std::fmt::Display>(step: &str, r: std::result::Result<(), E>) {
    if let Err(e) = r {
        tracing::warn!(step, error = %e, "could not undo a step after a failure");
    }
}
