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
        let _writer = self.lock_writer().await;
        let state = self.state();
        let mut problems = Vec::new();
        let t0 = std::time::Instant::now();
        // Orphans first: links and namespaces named like ours that the store does not know.
        let links = self.remove_orphans(&state, &mut problems).await;
        let orphans = t0.elapsed();
        // Then what should exist.
        for n in state.view().networks().iter_from(None) {
            if let Err(e) = self.plumb_network(n).await {
                problems.push(e.to_string());
            }
        }
        for s in state.view().sandboxes().iter_from(None) {
            if let Err(e) = self.drivers.bridge.create_sandbox(s).await {
                problems.push(format!("sandbox {}: {e}", s.name));
            }
        }
        let plumbed = t0.elapsed();
        self.rejoin_endpoints(&state, links.as_ref(), &mut problems)
            .await;
        let rejoined = t0.elapsed();
        if let Err(e) = self.firewall_apply(state.desired()).await {
            problems.push(e.to_string());
        }
        let walled = t0.elapsed();
        tracing::debug!(target: "wasmnet::start", ?orphans, ?plumbed, ?rejoined, ?walled, "reconcile");
        self.update(|_| {});
        problems
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
        let ours = links.map(|names| {
            (names.into_iter())
                .filter(|n| LINK_PREFIXES.iter().any(|p| n.starts_with(p)))
                .collect::<HashSet<String>>()
        });
        for name in ours.iter().flatten().filter(|n| !wanted_links.contains(*n)) {
            if let Err(e) = self.drivers.kernel().delete_link(name).await {
                problems.push(e.to_string());
            }
        }
        self.remove_stray_namespaces(state, problems);
        ours.map(|o| o.into_iter().filter(|n| wanted_links.contains(n)).collect())
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
    }

    /// Endpoints whose veth is missing are joined again (with the default route if theirs).
    /// `links`: the links of ours there are (else each endpoint's veth is looked up).
    async fn rejoin_endpoints(
        &self,
        state: &State,
        links: Option<&HashSet<String>>,
        problems: &mut Vec<String>,
    ) {
        let v = state.view();
        for e in v.endpoints() {
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
            let (Some(n), Some(s)) = (
                v.networks().get(&e.network_id),
                v.sandboxes().get(&e.sandbox_id),
            ) else {
                continue;
            };
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
            if let Err(err) = joined {
                problems.push(format!("endpoint {}: {err}", e.id));
            }
        }
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
            tracing::warn!("wasmnet's firewall rules were changed from outside; restored them");
        }
        Ok(restored)
    }
}

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
