//! Reconciliation: the kernel is made to match the store, idempotently. At start it removes
//! what a crash left behind (links and namespaces of objects that were never committed, or were
//! deleted) and recreates what is missing; while running, a watcher puts wasmnet's nft tables
//! back if someone else flushed or deleted them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Weak};

use super::Engine;
use crate::names::{bridge_name, veth_name, vxlan_name, LINK_PREFIXES};
use crate::state::State;

impl Engine {
    /// Converges the kernel to the store; returns every problem met (it keeps going).
    pub async fn reconcile(&self) -> Vec<String> {
        let (mut problems, vanished) = self.converge().await;
        self.forget_vanished(&vanished, &mut problems).await;
        let m = crate::metrics::get();
        m.reconcile_problems.inc_by(problems.len() as u64);
        problems
    }

    /// Endpoints whose runtime took their container end (a handoff) cannot be joined again:
    /// their veth being gone means the runtime's namespace went, i.e. the container was removed
    /// while wasmnet was down. They are disconnected, and their sandbox goes with its last one.
    async fn forget_vanished(&self, vanished: &[(String, String)], problems: &mut Vec<String>) {
        for (endpoint, sandbox) in vanished {
            tracing::info!(
                endpoint,
                sandbox,
                "the runtime removed this endpoint's container while wasmnet was down"
            );
            match self.disconnect(endpoint).await {
                Ok(_) => crate::metrics::repaired("endpoint_forgotten"),
                Err(e) => problems.push(format!("endpoint {endpoint}: {e}")),
            }
            let state = self.state();
            let empty = state.view().endpoints_of_sandbox(sandbox).next().is_none();
            if empty {
                if let Err(e) = self.delete_sandbox(sandbox).await {
                    problems.push(format!("sandbox {sandbox}: {e}"));
                }
            }
        }
    }

    /// The kernel made to match the store; returns the problems and the vanished handoff
    /// endpoints (id, sandbox id).
    async fn converge(&self) -> (Vec<String>, Vec<(String, String)>) {
        let _writer = self.lock_writer().await;
        let state = self.state();
        let mut problems = Vec::new();
        let t0 = std::time::Instant::now();
        // What a teardown retired before a crash, in one request.
        self.reap_now().await;
        // Orphans first: links and namespaces named like ours that the store does not know.
        let links = self.remove_orphans(&state, &mut problems).await;
        let orphans = t0.elapsed();
        // Then what should exist.
        for n in state.view().networks().iter_from(None) {
            if let Err(e) = self.plumb_network(n).await {
                problems.push(e.to_string());
            }
        }
        problems.extend(self.plumb_services(&state).await);
        for s in state.view().sandboxes().iter_from(None) {
            if runtime_gone(s) {
                continue;
            }
            let made = match self.drivers.bridge.create_sandbox(s).await {
                Ok(()) => self.link_sandbox(s),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = made {
                problems.push(format!("sandbox {}: {e}", s.name));
            }
        }
        let plumbed = t0.elapsed();
        let vanished = self
            .rejoin_endpoints(&state, links.as_ref(), &mut problems)
            .await;
        let rejoined = t0.elapsed();
        if let Err(e) = self.firewall_apply(state.desired()).await {
            problems.push(e.to_string());
        }
        let walled = t0.elapsed();
        tracing::debug!(target: "wasmnet::start", ?orphans, ?plumbed, ?rejoined, ?walled, "reconcile");
        self.update(|_| {});
        (problems, vanished)
    }

    /// Deletes links and namespaces named like ours that the state does not know; returns
    /// the links of ours that stay (None when they could not be listed).
    async fn remove_orphans(
        &self,
        state: &State,
        problems: &mut Vec<String>,
    ) -> Option<HashSet<String>> {
        let v = state.view();
        let networks = v.networks().iter_from(None);
        // Sets, not lists: a host of 1,200 endpoints has as many links and namespaces, and
        // searching a list for each made this step quadratic (a third of a restart).
        // A network whose driver this host lacks keeps every link named after it.
        let wanted_links: HashSet<String> = networks
            .flat_map(|n| match self.drivers.of(n) {
                Ok(d) => d.links_of(n),
                Err(_) => vec![bridge_name(&n.id), vxlan_name(&n.id)],
            })
            .chain(v.endpoints().map(|e| veth_name(&e.id)))
            .collect();
        // One dump for every prefix (they all start with `wn`), then ours by prefix.
        let links = match self.drivers.kernel().list_links("wn").await {
            Ok(names) => Some(names),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        // The container ends of handoff endpoints that are here, not in the runtime's
        // namespace (see `handed_back`); never deleted as orphans (not our prefixes).
        let handoff_ends: HashSet<&str> = (v.endpoints())
            .filter(|e| v.sandboxes().get(&e.sandbox_id).is_some_and(|s| s.handoff))
            .map(|e| e.interface.as_str())
            .collect();
        let (ours, returned): (HashSet<String>, HashSet<String>) = match links {
            Some(names) => {
                let returned = (names.iter())
                    .filter(|n| handoff_ends.contains(n.as_str()))
                    .cloned()
                    .collect();
                let ours = (names.into_iter())
                    .filter(|n| LINK_PREFIXES.iter().any(|p| n.starts_with(p)))
                    .collect();
                (ours, returned)
            }
            None => {
                self.remove_stray_namespaces(state, problems);
                return None;
            }
        };
        for name in ours.iter().filter(|n| !wanted_links.contains(*n)) {
            if let Err(e) = self.drivers.kernel().delete_link(name).await {
                problems.push(e.to_string());
            }
        }
        self.remove_stray_namespaces(state, problems);
        let kept = ours.into_iter().filter(|n| wanted_links.contains(n));
        Some(kept.chain(returned).collect())
    }

    fn remove_stray_namespaces(&self, state: &State, problems: &mut Vec<String>) {
        let v = state.view();
        let netns_dir = self.config().run_dir.join("netns");
        let kernel = self.drivers.kernel();
        let known: HashSet<&Path> = (v.sandboxes().iter_from(None))
            .map(|s| Path::new(&s.netns))
            .collect();
        for path in kernel.list_netns(&netns_dir) {
            if !known.contains(path.as_path()) {
                if let Err(e) = kernel.remove_netns(&path) {
                    problems.push(e.to_string());
                }
            }
        }
        self.remove_stray_links(state, problems);
    }

    /// `ip netns` names with wasmnet's prefix that no sandbox has (a delete interrupted after
    /// its commit), with their resolv.conf.
    fn remove_stray_links(&self, state: &State, problems: &mut Vec<String>) {
        let names = &self.config().names;
        let Some(dir) = &names.netns_dir else {
            return;
        };
        let known: HashSet<&str> = (state.view().sandboxes().iter_from(None))
            .filter_map(|s| s.netns_name.as_deref())
            .collect();
        for path in self.drivers.kernel().list_netns(dir) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with(&names.netns_prefix) && !known.contains(name) {
                let conf = names.etc_dir.join(name).join("resolv.conf");
                self.unlink(Some(name), Some(&conf), problems);
            }
        }
    }

    /// Endpoints whose veth is missing are joined again (with the default route if theirs),
    /// but for handoff endpoints, which are returned (id, sandbox id) instead.
    /// `links`: the links of ours there are (else each endpoint's veth is looked up).
    async fn rejoin_endpoints(
        &self,
        state: &State,
        links: Option<&HashSet<String>>,
        problems: &mut Vec<String>,
    ) -> Vec<(String, String)> {
        let v = state.view();
        let mut vanished = Vec::new();
        for e in v.endpoints() {
            let (Some(n), Some(s)) = (
                v.networks().get(&e.network_id),
                v.sandboxes().get(&e.sandbox_id),
            ) else {
                continue;
            };
            if (s.handoff && handed_back(e, links)) || runtime_gone(s) {
                vanished.push((e.id.clone(), s.id.clone()));
                continue;
            }
            if s.handoff {
                continue;
            }
            let exists = match links {
                Some(l) => Ok(l.contains(&veth_name(&e.id))),
                None => self.drivers.bridge.endpoint_exists(e).await,
            };
            match exists {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => {
                    problems.push(err.to_string());
                    continue;
                }
            }
            let first_out = v
                .endpoints_of_sandbox(&s.id)
                .find(|o| v.networks().get(&o.network_id).is_some_and(|n| !n.internal));
            let default_route = first_out.is_some_and(|o| o.id == e.id);
            let joined = match self.drivers.of(n) {
                Ok(d) => d
                    .join(e, n, s, default_route)
                    .await
                    .map_err(crate::Error::from),
                Err(err) => Err(err),
            };
            match joined {
                Ok(()) => crate::metrics::repaired("endpoint_rejoined"),
                Err(err) => problems.push(format!("endpoint {}: {err}", e.id)),
            }
        }
        vanished
    }

    /// Puts the firewall back if the kernel's copy of wasmnet's tables differs from what it
    /// should be. Returns whether it had to.
    pub async fn check_firewall(&self) -> crate::Result<bool> {
        let _writer = self.lock_writer().await;
        let desired = self.state().desired();
        let fw = self.firewall.clone();
        let restored = tokio::task::spawn_blocking(move || fw.reassert(&desired))
            .await
            .map_err(|e| crate::Error::Internal(e.to_string()))??;
        if restored {
            crate::metrics::get().firewall_restorations.inc();
            tracing::warn!("wasmnet's firewall rules were changed from outside; restored them");
        }
        Ok(restored)
    }
}

/// Whether a handoff endpoint's runtime is done with it: its veth is gone (with the runtime's
/// namespace), or its container end is back in wasmnet's namespace (Docker moves it back when
/// it removes a container, and could not tell wasmnet while it was down). Unknown (no link
/// list) counts as in use.
fn handed_back(e: &crate::model::Endpoint, links: Option<&HashSet<String>>) -> bool {
    links.is_some_and(|l| !l.contains(&veth_name(&e.id)) || l.contains(&e.interface))
}

/// Whether a runtime plugin's sandbox (labelled `wasmnet.origin`, on an adopted namespace)
/// lost its namespace: the runtime removed the container while wasmnet was down (a CNI DEL
/// that could not reach it). Other adopted namespaces that vanished stay reported problems.
fn runtime_gone(s: &crate::model::Sandbox) -> bool {
    !s.netns_owned && !s.handoff && s.labels.contains_key(ORIGIN) && !Path::new(&s.netns).exists()
}

/// The label runtime plugins mark their sandboxes with (`docker`, `cni`).
const ORIGIN: &str = "wasmnet.origin";

/// Checks the firewall (every second with nftables) for as long as the engine lives.
pub(super) fn spawn_firewall_watch(engine: &Arc<Engine>) {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    let interval = engine.firewall.watch_interval();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(engine) = weak.upgrade() else { return };
            if let Err(e) = engine.check_firewall().await {
                tracing::warn!(error = %e, "checking the firewall");
            }
        }
    });
}
