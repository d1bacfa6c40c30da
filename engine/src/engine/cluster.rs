//! The engine's side of the cluster store for its own operations: overlay networks registered
//! and removed cluster-wide, endpoints published with their address claims, policies shared.
//! (What a cluster session asks of the engine is in `cluster_sync`.)

use std::net::IpAddr;
use std::sync::Arc;

use super::planner::EndpointPlan;
use super::Engine;
use crate::cluster::keys::{EndpointRecord, PolicyRecord};
use crate::cluster::{Cluster, ClusterConfig, Refusal};
use crate::drivers::overlay;
use crate::error::{Error, Kind, Result};
use crate::kernel::Kernel;
use crate::model::{Driver, Endpoint, EndpointCreate, Network, NetworkCreate, NetworkOptions};
use crate::policy::Policy;
use crate::state::State;

/// Joins the cluster: the VTEP address must be one of this host's, on the underlay link.
pub(super) async fn open(kernel: &dyn Kernel, cfg: ClusterConfig) -> Result<Cluster> {
    let vtep = IpAddr::V4(cfg.advertise);
    let (underlay, mtu) = kernel.owner_of(vtep).await?.ok_or_else(|| {
        Error::invalid(
            "cluster_advertise",
            format!("{vtep} is not an address of this host: give the underlay address the other hosts reach it at"),
        )
    })?;
    let cluster = Cluster::open(cfg, underlay, mtu).await?;
    // Refused at start when another live host holds the name; an etcd down now is checked by
    // each session instead.
    if let Ok(Some(holder)) = cluster.node_holder().await {
        return Err(Error::invalid("node_name", cluster.name_taken(&holder)));
    }
    Ok(cluster)
}

impl Engine {
    /// The cluster store, for an overlay network; `None` for a bridge network.
    pub(super) fn cluster_of(&self, n: &Network) -> Option<&Arc<Cluster>> {
        self.cluster
            .as_ref()
            .filter(|_| n.driver == Driver::Overlay)
    }

    /// What the cluster knows of a local endpoint of an overlay network.
    pub(super) fn record_of(
        &self,
        s: &State,
        e: &Endpoint,
    ) -> Option<(Arc<Cluster>, EndpointRecord)> {
        let cluster = self.cluster.as_ref()?;
        let network = s.view().networks().get(&e.network_id)?;
        (network.driver == Driver::Overlay).then(|| (cluster.clone(), record(s, cluster, e)))
    }

    /// The cluster an overlay network is to be created in; refuses what an overlay cannot be.
    pub(super) fn cluster_for(
        &self,
        req: &NetworkCreate,
        options: &NetworkOptions,
    ) -> Result<Option<Arc<Cluster>>> {
        if req.driver != Driver::Overlay {
            if options.vni.is_some() {
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
        if !options.icc {
            return Err(Error::invalid(
                "options.icc",
                "icc=false is not supported on overlay networks (it would hold within each host only)",
            ));
        }
        if let Some(mtu) = options.mtu {
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
    pub(super) async fn register_overlay(
        &self,
        cluster: &Cluster,
        mut n: Network,
    ) -> Result<Network> {
        let vni = match overlay::vni(&n) {
            Some(v) => v,
            None => crate::cluster::keys::free_vni(&cluster.taken_vnis().await?)
                .ok_or_else(|| Error::conflict("vni_exhausted", "every VNI is taken"))?,
        };
        n.options.set("vni", vni.to_string())?;
        if n.options.mtu().is_none() {
            n.options.set("mtu", cluster.mtu.to_string())?;
        }
        match cluster.create_network(&n, vni).await? {
            None => Ok(n),
            Some(_) => Err(cluster.why_taken(&n, vni).await),
        }
    }

    /// Removes an overlay network from the cluster (refused while any host has an endpoint on
    /// it); nothing to do for a bridge network.
    pub(super) async fn unregister_overlay(&self, n: &Network) -> Result<()> {
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

    /// An endpoint of an overlay network claims its addresses cluster-wide and says where it
    /// is. A dynamic address another host took meanwhile is skipped and the next one tried
    /// (the state then marks it used: it is returned with the plan).
    pub(super) async fn publish_overlay(
        &self,
        mut plan: EndpointPlan,
        mut base: Arc<State>,
        req: &EndpointCreate,
    ) -> Result<(
        EndpointPlan,
        Arc<State>,
        Option<(Arc<Cluster>, EndpointRecord)>,
    )> {
        let Some(cluster) = self.cluster_of(&plan.network).cloned() else {
            return Ok((plan, base, None));
        };
        for _ in 0..16 {
            let e = &plan.endpoint;
            let rec =
                EndpointRecord::of(e, &plan.sandbox.labels, &cluster.cfg.node, cluster.vtep());
            match cluster.publish(&rec, true).await? {
                None => return Ok((plan, base, Some((cluster, rec)))),
                Some(Refusal::NoNetwork) => {
                    return Err(Error::not_found(Kind::Network, &plan.network.name))
                }
                Some(_) if req.ipv4.is_some() || req.ipv6.is_some() => {
                    return Err(taken_elsewhere(&rec, &plan.network))
                }
                Some(_) => {
                    // Another host has them, its claim not seen yet: marked used here.
                    self.update(|s| {
                        for a in rec.addresses() {
                            s.view.mark_address(&rec.network_id, a, true);
                        }
                    });
                    base = self.state();
                    plan = self.admit(&base, req.clone()).await?;
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

    /// Publishes a new policy to the cluster (nothing to do without one).
    pub(super) async fn share_policy(&self, p: &Policy, wasm: &[u8]) -> Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        match cluster.put_policy(&policy_record(p), wasm).await? {
            None => Ok(()),
            Some(_) => Err(Error::conflict(
                "name_in_use",
                format!("policy name {:?} is already in use in the cluster", p.name),
            )),
        }
    }

    /// Undoes `share_policy` after a later step failed (logged if it cannot).
    pub(super) async fn unshare_policy(&self, p: &Policy) {
        if let Some(cluster) = &self.cluster {
            let removed = cluster.delete_policy(&p.id, &p.name).await;
            super::undo("removing the policy from the cluster", removed);
        }
    }

    /// Deletes a shared policy from the cluster first: if etcd cannot, nothing changes.
    pub(super) async fn unshare_policy_or_fail(&self, s: &State, p: &Policy) -> Result<()> {
        let shared = s.policies().loaded.get(&p.id).is_some_and(|l| l.shared);
        match &self.cluster {
            Some(cluster) if shared => cluster.delete_policy(&p.id, &p.name).await,
            _ => Ok(()),
        }
    }

    /// The cluster, when an attachment of this policy at this scope is shared: the policy is,
    /// and the scope is global or an overlay network.
    pub(super) fn shared_scope(
        &self,
        s: &State,
        policy: &str,
        network: Option<&str>,
    ) -> Option<Arc<Cluster>> {
        let cluster = self.cluster.as_ref()?;
        let shared = s.policies().loaded.get(policy).is_some_and(|l| l.shared);
        (shared && is_shared_scope(s, network)).then(|| cluster.clone())
    }
}

/// An endpoint as the cluster store keeps it (with its sandbox's labels, for policies).
pub(super) fn record(s: &State, cluster: &Cluster, e: &Endpoint) -> EndpointRecord {
    EndpointRecord::of(
        e,
        &s.sandbox_labels(&e.sandbox_id),
        &cluster.cfg.node,
        cluster.vtep(),
    )
}

/// Whether an attachment at this scope is shared: global, or to an overlay network.
pub(super) fn is_shared_scope(s: &State, network: Option<&str>) -> bool {
    match network {
        None => true,
        Some(id) => s
            .view()
            .networks()
            .resolve(id)
            .is_ok_and(|n| n.driver == Driver::Overlay),
    }
}

pub(super) fn policy_record(p: &Policy) -> PolicyRecord {
    PolicyRecord {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        created: p.created.clone(),
    }
}

fn taken_elsewhere(rec: &EndpointRecord, network: &Network) -> Error {
    let addresses: Vec<String> = rec.addresses().iter().map(|a| a.to_string()).collect();
    Error::conflict(
        "address_in_use",
        format!(
            "{} is already in use on network {:?} (on another host)",
            addresses.join(", "),
            network.name
        ),
    )
}
