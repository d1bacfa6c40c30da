//! Network operations: create, delete, prune; and the local half of each, which the cluster
//! sync also uses to mirror overlay networks made on other hosts.

use std::sync::Arc;

use super::{planner, report, undo, Engine};
use crate::drivers::overlay;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::model::*;

impl Engine {
    pub async fn create_network(&self, req: NetworkCreate) -> Result<Arc<Network>> {
        crate::metrics::timed("network_create", self.create_network_op(req)).await
    }

    async fn create_network_op(&self, mut req: NetworkCreate) -> Result<Arc<Network>> {
        validate_name("name", &req.name)?;
        validate_labels("labels", &req.labels)?;
        let options = validate_options(&req.options)?;
        let cluster = self.cluster_for(&req, &options)?;
        let _writer = self.lock_writer().await;
        self.pick_subnet_off_the_host(&mut req).await?;
        let network = planner::plan_network(
            self.state().view(),
            req,
            &self.cfg.pools_v4,
            &self.cfg.pools_v6,
        )?;
        let network = Arc::new(match &cluster {
            Some(c) => self.register_overlay(c, network).await?,
            None => network,
        });
        if let Err(e) = self.add_network_locally(network.clone()).await {
            if let Some(c) = &cluster {
                let vni = overlay::vni(&network).unwrap_or(0);
                let removed = c.delete_network(&network, vni).await.map(|_| ());
                undo("removing the network from the cluster", removed);
            }
            return Err(e);
        }
        Ok(network)
    }

    /// A network asking for no IPv4 subnet gets the first free one of the pools that neither
    /// a network nor the host's own addresses and routes use (the planner knows only the
    /// former). Asked-for subnets are the client's business, as in Docker.
    async fn pick_subnet_off_the_host(&self, req: &mut NetworkCreate) -> Result<()> {
        let r = &req.ipv4;
        if r.subnet.is_some() || r.gateway.is_some() || r.ip_range.is_some() {
            return Ok(());
        }
        let mut used = self.drivers.kernel().host_prefixes().await?;
        let state = self.state();
        used.extend(
            state
                .view()
                .networks()
                .iter_from(None)
                .map(|n| n.ipv4.subnet),
        );
        match crate::ipam::first_free_subnet(&self.cfg.pools_v4, &used) {
            Some(subnet) => req.ipv4.subnet = Some(subnet),
            None => {
                let pools: Vec<String> = self.cfg.pools_v4.iter().map(|p| p.to_string()).collect();
                return Err(Error::conflict(
                    "pool_exhausted",
                    format!("no free IPv4 subnet left in the default address pools [{}] (wasmnet's networks and this host's own addresses and routes take them); give ipv4.subnet explicitly", pools.join("; ")),
                ));
            }
        }
        Ok(())
    }

    /// Commits a planned network here: kernel, firewall, store, state; then tells subscribers.
    /// Under the writer lock.
    pub(super) async fn add_network_locally(&self, network: Arc<Network>) -> Result<()> {
        let base = self.state();
        // Global policies see the new network (a whole-view call) before it exists.
        let plan = self
            .compute_plan(&base, |_| {}, vec![], Some((*network).clone()))
            .await?;
        self.commit_network(&base, &network, plan.clone()).await?;
        self.update(|s| {
            s.view.add_network(network.clone());
            s.policies.plan = plan;
        });
        self.publish(EventKind::NetworkCreate, &network.id, &network);
        Ok(())
    }

    /// Removes networks from the store and the state, then their kernel objects and rules.
    /// Under the writer lock.
    pub(super) async fn remove_networks_locally(&self, gone: &[Arc<Network>]) -> Result<()> {
        let ids: Vec<&str> = gone.iter().map(|n| n.id.as_str()).collect();
        self.store.delete_networks(&ids).await?;
        let before = self.state();
        self.update(|s| {
            for n in gone {
                s.view.remove_network(&n.id);
            }
            forget_networks(s, gone);
        });
        let problems = self.teardown_networks(&before, &self.state(), gone).await;
        report("removing networks", problems);
        self.update(|_| {});
        for n in gone {
            self.publish(EventKind::NetworkDelete, &n.id, n);
        }
        Ok(())
    }

    pub async fn delete_network(&self, reference: &str) -> Result<Arc<Network>> {
        crate::metrics::timed("network_delete", self.delete_network_op(reference)).await
    }

    async fn delete_network_op(&self, reference: &str) -> Result<Arc<Network>> {
        let _writer = self.lock_writer().await;
        let network = {
            let state = self.state();
            let v = state.view();
            let network = v.networks().resolve(reference)?;
            let count = v.endpoint_count_of_network(&network.id);
            if count > 0 {
                return Err(Error::conflict(
                    "has_endpoints",
                    format!(
                        "network {:?} has {count} endpoint(s); disconnect them first",
                        network.name
                    ),
                ));
            }
            let services = v.services_of_network(&network.id).count();
            if services > 0 {
                return Err(Error::conflict(
                    "has_services",
                    format!(
                        "network {:?} has {services} service(s); delete them first",
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

    /// Removes every network without endpoints that matches the filter's labels.
    pub async fn prune_networks(&self, f: &super::Filter) -> Result<Vec<Arc<Network>>> {
        let _writer = self.lock_writer().await;
        let unused: Vec<Arc<Network>> = {
            let state = self.state();
            let v = state.view();
            v.networks()
                .iter_from(None)
                .filter(|n| {
                    f.labels_match(&n.labels)
                        && v.endpoints_of_network(&n.id).next().is_none()
                        && v.services_of_network(&n.id).next().is_none()
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
}

/// Deleted networks leave the plan, and their attachments go (as the store's did).
fn forget_networks(s: &mut crate::state::State, gone: &[Arc<Network>]) {
    let is_gone =
        |a: &crate::policy::Attachment| gone.iter().any(|n| a.network_id.as_ref() == Some(&n.id));
    // Only the policies attached to a deleted network are copied.
    let touched: Vec<String> = s
        .policies
        .loaded
        .values()
        .filter(|l| l.policy.attachments.iter().any(is_gone))
        .map(|l| l.policy.id.clone())
        .collect();
    for id in touched {
        s.policies
            .update(&id, |l| l.policy.attachments.retain(|a| !is_gone(a)));
    }
    let networks = Arc::make_mut(&mut s.policies.plan.networks);
    for n in gone {
        networks.remove(&n.id);
    }
}
