//! Reconciliation: the kernel is made to match the store, idempotently. At start it removes
//! what a crash left behind (links and namespaces of objects that were never committed, or were
//! deleted) and recreates what is missing; while running, a watcher puts wasmnet's nft tables
//! back if someone else flushed or deleted them.

use std::path::Path;
use std::sync::{Arc, Weak};

use crate::drivers::overlay::vxlan_name;
use crate::engine::Engine;
use crate::firewall::docker::{bridge_name, veth_name};
use crate::kernel;
use crate::model::Driver;

impl Engine {
    /// Converges the kernel to the store; returns every problem met (it keeps going).
    pub async fn reconcile(&self) -> Vec<String> {
        let _writer = self.lock_writer().await;
        let mut problems = Vec::new();
        let (networks, sandboxes, endpoints) = {
            let v = self.view();
            (
                v.networks.iter_from(None).cloned().collect::<Vec<_>>(),
                v.sandboxes.iter_from(None).cloned().collect::<Vec<_>>(),
                v.endpoints.values().cloned().collect::<Vec<_>>(),
            )
        };
        // Orphans first: links and namespaces named like ours that the store does not know.
        let wanted_links: Vec<String> = networks
            .iter()
            .map(|n| bridge_name(&n.id))
            .chain(
                networks
                    .iter()
                    .filter(|n| n.driver == Driver::Overlay)
                    .map(|n| vxlan_name(&n.id)),
            )
            .chain(endpoints.iter().map(|e| veth_name(&e.id)))
            .collect();
        for prefix in ["wnv", "wnx", "wnbr"] {
            match self.bridge.links().list(prefix).await {
                Ok(names) => {
                    for name in names.iter().filter(|n| !wanted_links.contains(n)) {
                        if let Err(e) = self.bridge.links().delete_link(name).await {
                            problems.push(e.to_string());
                        }
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let netns_dir = self.config().run_dir.join("netns");
        for path in kernel::list_netns(&netns_dir) {
            let known = sandboxes.iter().any(|s| Path::new(&s.netns) == path);
            if !known {
                if let Err(e) = kernel::remove_netns(&path) {
                    problems.push(e.to_string());
                }
            }
        }
        // Then what should exist.
        for n in &networks {
            if let Err(e) = self.plumb_network(n).await {
                problems.push(e.to_string());
            }
        }
        for s in &sandboxes {
            if let Err(e) = self.bridge.create_sandbox(s).await {
                problems.push(format!("sandbox {}: {e}", s.name));
            }
        }
        for e in &endpoints {
            match self.bridge.endpoint_exists(e).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => {
                    problems.push(err.to_string());
                    continue;
                }
            }
            let network = networks.iter().find(|n| n.id == e.network_id);
            let sandbox = sandboxes.iter().find(|s| s.id == e.sandbox_id);
            if let (Some(n), Some(s)) = (network, sandbox) {
                let first_out = endpoints
                    .iter()
                    .filter(|o| o.sandbox_id == s.id)
                    .find(|o| networks.iter().any(|n| n.id == o.network_id && !n.internal));
                let default_route = first_out.is_some_and(|o| o.id == e.id);
                if let Err(err) = self.bridge.join(e, n, s, default_route).await {
                    problems.push(format!("endpoint {}: {err}", e.id));
                }
            }
        }
        if let Err(e) = self.firewall_apply(self.desired(None, None)).await {
            problems.push(e.to_string());
        }
        problems
    }

    /// Puts the firewall back if the kernel's copy of wasmnet's tables differs from what it
    /// should be. Returns whether it had to.
    pub async fn check_firewall(&self) -> crate::Result<bool> {
        let _writer = self.lock_writer().await;
        let desired = self.desired(None, None);
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
pub fn spawn_firewall_watch(engine: &Arc<Engine>) {
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
