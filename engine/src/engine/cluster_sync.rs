//! What a cluster session asks of the engine (`cluster::Host`): re-publishing this host's
//! endpoints at the start of a session, and converging the host to the cluster's mirror —
//! overlay networks, other hosts' addresses, remote endpoints, shared policies.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::cluster::record;
use super::Engine;
use crate::cluster::keys::EndpointRecord;
use crate::cluster::mirror::Mirror;
use crate::cluster::{Applied, Cluster, Host, Refusal};
use crate::drivers::overlay;
use crate::model::{Driver, Endpoint, Network};
use crate::state::State;

impl Host for Engine {
    async fn republish(&self, cluster: &Cluster, m: &Mirror) -> crate::Result<()> {
        self.republish_endpoints(cluster, m).await?;
        self.republish_policies(cluster, m).await
    }

    async fn converge(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) {
        let _writer = self.lock_writer().await;
        self.converge_networks(m, applied).await;
        self.converge_claims(cluster, m, applied);
        let policies = self.converge_policies(m).await;
        let remotes = self.converge_remotes(cluster, m, applied).await;
        if policies || (remotes && !self.state().policies().plan.is_empty()) {
            self.replan().await;
        }
    }
}

fn overlay_networks(s: &State) -> Vec<Arc<Network>> {
    s.view()
        .networks()
        .iter_from(None)
        .filter(|n| n.driver == Driver::Overlay)
        .cloned()
        .collect()
}

fn overlay_endpoints(s: &State) -> Vec<Arc<Endpoint>> {
    overlay_networks(s)
        .iter()
        .flat_map(|n| {
            s.view()
                .endpoints_of_network(&n.id)
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Engine {
    /// This host's endpoints published again under the new lease (their addresses
    /// re-claimed), and what a crash left in etcd withdrawn.
    async fn republish_endpoints(&self, cluster: &Cluster, m: &Mirror) -> crate::Result<()> {
        let _writer = self.lock_writer().await;
        let state = self.state();
        let node = &cluster.cfg.node;
        let local = overlay_endpoints(&state);
        for e in &local {
            let rec = record(&state, cluster, e);
            let refused = match cluster.publish(&rec, false).await? {
                Some(Refusal::Taken) => cluster.publish(&rec, true).await?,
                other => other,
            };
            if let Some(r) = refused {
                tracing::warn!(endpoint = %e.id, network = %e.network_name, refusal = ?r,
                    "this endpoint could not be published to the cluster");
            }
        }
        let known: HashSet<&str> = local.iter().map(|e| e.id.as_str()).collect();
        let stale: Vec<&EndpointRecord> = m
            .endpoints
            .values()
            .filter(|r| &r.host == node && !known.contains(r.id.as_str()))
            .collect();
        for r in stale {
            cluster.withdraw(std::slice::from_ref(r)).await?;
        }
        for ((net, addr), c) in &m.claims {
            if &c.host == node && !known.contains(c.endpoint.as_str()) {
                cluster.release_claim(net, *addr).await?;
            }
        }
        Ok(())
    }

    async fn converge_networks(&self, m: &Mirror, applied: &mut Applied) {
        let local = overlay_networks(&self.state());
        for n in m.networks.values() {
            if local.iter().any(|l| l.id == n.id) {
                continue;
            }
            if self.state().view().networks().has_name(&n.name) {
                if applied.clashes.insert(n.id.clone()) {
                    tracing::warn!(network = %n.name, "an overlay network has the name of a local network; not mirrored here");
                }
                continue;
            }
            if let Err(e) = self.add_network_locally(Arc::new(n.clone())).await {
                tracing::warn!(network = %n.name, error = %e, "mirroring an overlay network");
            }
        }
        let state = self.state();
        let gone: Vec<Arc<Network>> = local
            .into_iter()
            .filter(|n| !m.networks.contains_key(&n.id))
            .filter(|n| {
                let used = state.view().endpoints_of_network(&n.id).next().is_some();
                if used {
                    tracing::warn!(network = %n.name, "gone from the cluster but has endpoints here; kept");
                }
                !used
            })
            .collect();
        if !gone.is_empty() {
            if let Err(e) = self.remove_networks_locally(&gone).await {
                tracing::warn!(error = %e, "removing overlay networks gone from the cluster");
            }
        }
    }

    /// Other hosts' addresses are taken out of the local address spaces, so a connect here
    /// picks a free one first time (the claim's transaction still decides).
    fn converge_claims(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) {
        let node = &cluster.cfg.node;
        let desired: HashSet<(String, IpAddr)> = m
            .claims
            .iter()
            .filter(|(_, c)| &c.host != node)
            .map(|(k, _)| k.clone())
            .collect();
        if desired == applied.reserved {
            return;
        }
        self.update(|s| {
            for (net, addr) in applied.reserved.difference(&desired) {
                s.view.mark_address(net, *addr, false);
            }
            for (net, addr) in &desired {
                s.view.mark_address(net, *addr, true);
            }
        });
        applied.reserved = desired;
    }

    /// True when the remote endpoints changed.
    async fn converge_remotes(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) -> bool {
        let node = &cluster.cfg.node;
        let here: HashSet<String> = overlay_networks(&self.state())
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let desired: HashMap<&String, &EndpointRecord> = m
            .endpoints
            .iter()
            .filter(|(_, r)| &r.host != node && here.contains(&r.network_id))
            .collect();
        let links = self.drivers.kernel().as_ref();
        let mut changed = false;
        let stale: Vec<EndpointRecord> = applied
            .remotes
            .iter()
            .filter(|(id, r)| desired.get(id) != Some(r))
            .map(|(_, r)| r.clone())
            .collect();
        for r in stale {
            if let Err(e) = overlay::remove_remote(links, &r).await {
                tracing::warn!(endpoint = %r.id, error = %e, "withdrawing a remote endpoint");
            }
            applied.remotes.remove(&r.id);
            changed = true;
        }
        for (id, r) in &desired {
            if applied.remotes.contains_key(*id) {
                continue;
            }
            changed = true;
            match overlay::add_remote(links, r).await {
                Ok(()) => {
                    applied.remotes.insert((*id).clone(), (*r).clone());
                }
                Err(e) => {
                    tracing::warn!(endpoint = %r.id, host = %r.host, error = %e, "programming a remote endpoint")
                }
            }
        }
        if changed {
            self.set_remotes(&desired);
        }
        changed
    }

    /// Records the remote endpoints (under policies, groups change with them).
    fn set_remotes(&self, desired: &HashMap<&String, &EndpointRecord>) {
        let names: HashMap<String, String> = overlay_networks(&self.state())
            .iter()
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let remotes = desired
            .iter()
            .map(|(id, r)| {
                let name = names.get(&r.network_id).cloned().unwrap_or_default();
                ((*id).clone(), Arc::new(r.to_endpoint(&name)))
            })
            .collect();
        self.update(|s| s.remotes = remotes);
    }

    /// Computes and enforces the plan again (remote endpoints or cluster policies changed).
    pub(super) async fn replan(&self) {
        let base = self.state();
        let enforced = match self.compute_plan(&base, |_| {}, vec![], None).await {
            Ok(plan) => match self.enforce(&base, &plan).await {
                Ok(()) => {
                    self.update(|s| s.policies.plan = plan);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = enforced {
            tracing::warn!(error = %e, "enforcing the policies after a cluster change");
        }
    }
}
