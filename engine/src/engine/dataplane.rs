//! The dataplane front: what a change does to the kernel (the driver's links and namespaces)
//! and to the firewall, with the undo of each step when a later one fails. Additions go to
//! the kernel first and are committed after; a failure undoes what was made, logging every
//! undo step that fails. Removals are committed first and torn down after, past every error.

use crate::metrics::ResultLabel;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::planner::EndpointPlan;
use super::{undo, Engine};
use crate::error::{Error, Result};
use crate::firewall::{Desired, FirewallError};
use crate::model::{Endpoint, Network};
use crate::policy::Plan;
use crate::state::State;

impl Engine {
    /// Puts the whole firewall in place (one transaction per table).
    pub(super) async fn firewall_apply(&self, desired: Desired) -> Result<()> {
        let fw = self.firewall.clone();
        let applied = tokio::task::spawn_blocking(move || fw.apply(&desired)).await;
        self.applied(applied)
    }

    /// From the ruleset of `before` to that of `after` (the backend applies the difference
    /// where it can).
    pub(super) async fn firewall_change(&self, before: Desired, after: Desired) -> Result<()> {
        let fw = self.firewall.clone();
        let changed = tokio::task::spawn_blocking(move || fw.change(&before, &after)).await;
        self.applied(changed)
    }

    pub(super) fn applied(
        &self,
        r: std::result::Result<std::result::Result<(), FirewallError>, tokio::task::JoinError>,
    ) -> Result<()> {
        let r = r
            .map_err(|e| Error::Internal(e.to_string()))
            .and_then(|r| r.map_err(Error::from));
        let result = crate::metrics::result_of(&r);
        let counter = crate::metrics::get()
            .firewall_changes
            .get_or_create(&ResultLabel { result });
        counter.inc();
        r?;
        self.firewall_changes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// An endpoint joined (`e` not yet in `base`) or left (`base` is the state without it),
    /// with the groups the policies put it in. Set elements only, unless the backend cannot
    /// or a group is new (then the whole ruleset).
    pub(super) async fn firewall_endpoint(
        &self,
        base: &State,
        e: &Endpoint,
        n: &Network,
        joined: bool,
        members: &[(String, String)],
    ) -> Result<()> {
        let fw = self.firewall.clone();
        // A new group (or, leaving, one that is gone) changes more than elements.
        let changed = members.iter().any(|m| !base.policies().has_group(m));
        let (e, n) = (e.clone(), n.clone());
        let growth = (joined && changed && fw.incremental())
            .then(|| growth_of(base, members))
            .flatten();
        if let Some(growth) = growth {
            let desired = Desired {
                plan: Arc::new(only_members(&e, members)),
                ..Default::default()
            };
            let applied = tokio::task::spawn_blocking(move || {
                fw.grow(&growth)?;
                fw.endpoint(&e, &n, joined, &desired)
            })
            .await;
            return self.applied(applied);
        }
        if changed || !fw.incremental() {
            let mut plan = base.policies().plan.clone();
            plan.members.remove(&e.id);
            if joined && !members.is_empty() {
                plan.members.insert(e.id.clone(), members.to_vec());
            }
            let desired = base.desired_with(None, joined.then_some(&e), plan);
            let applied = tokio::task::spawn_blocking(move || match changed {
                true => fw.apply(&desired),
                false => fw.endpoint(&e, &n, joined, &desired),
            })
            .await;
            return self.applied(applied);
        }
        let desired = Desired {
            plan: Arc::new(only_members(&e, members)),
            ..Default::default()
        };
        let applied =
            tokio::task::spawn_blocking(move || fw.endpoint(&e, &n, joined, &desired)).await;
        self.applied(applied)
    }

    /// A network's kernel objects: its bridge, and for an overlay its VXLAN port.
    pub(super) async fn plumb_network(&self, n: &Network) -> Result<()> {
        Ok(self.drivers.of(n)?.create_network(n).await?)
    }

    /// The network's links retired (the reaper deletes them).
    pub(super) async fn unplumb_network(&self, n: &Network) -> Result<()> {
        let retired = self.drivers.of(n)?.delete_network(n).await;
        self.reap_soon();
        Ok(retired?)
    }

    /// Kernel first, then the firewall (under `plan`), then the store: a failure undoes what
    /// came before, and a crash in between leaves only kernel objects the reconciler removes.
    pub(super) async fn commit_network(&self, base: &State, n: &Network, plan: Plan) -> Result<()> {
        if let Err(e) = self.plumb_network(n).await {
            undo(
                "removing the network's links",
                self.unplumb_network(n).await,
            );
            return Err(e);
        }
        let with = base.desired_with(Some(n), None, plan);
        let result = match self.firewall_change(base.desired(), with.clone()).await {
            Ok(()) => self.store.insert_network(n).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            undo(
                "restoring the firewall",
                self.firewall_change(with, base.desired()).await,
            );
            undo(
                "removing the network's links",
                self.unplumb_network(n).await,
            );
        }
        result
    }

    /// The veth and the firewall's elements, then the row. They do not depend on each other,
    /// so they are made at the same time (nft runs on a blocking thread while netlink works):
    /// the endpoint's firewall state costs connect next to nothing. A failure undoes both.
    pub(super) async fn commit_endpoint(
        &self,
        base: &State,
        plan: &EndpointPlan,
        e: &Endpoint,
    ) -> Result<()> {
        let (n, members) = (&plan.network, &plan.members);
        let driver = self.drivers.of(n)?;
        let t = std::time::Instant::now();
        let (joined, walled) = tokio::join!(
            async {
                let r = driver.join(e, n, &plan.sandbox, plan.default_route).await;
                (r, t.elapsed())
            },
            async {
                let r = self.firewall_endpoint(base, e, n, true, members).await;
                (r, t.elapsed())
            }
        );
        let ((joined, plumbed), (walled, firewalled)) = (joined, walled);
        tracing::debug!(?plumbed, ?firewalled, "endpoint committed");
        let (join_ok, wall_ok) = (joined.is_ok(), walled.is_ok());
        let result = match (joined, walled) {
            (Ok(()), Ok(())) => self.join_services_and_store(base, e).await,
            (Err(err), _) => Err(err.into()),
            (_, Err(err)) => Err(err),
        };
        if result.is_err() {
            if wall_ok {
                let left = self.firewall_endpoint(base, e, n, false, members).await;
                undo("removing the endpoint's firewall elements", left);
            }
            if join_ok {
                let left = driver.leave(e, n, Some(&plan.sandbox)).await;
                undo("removing the endpoint's veth", left);
            }
        }
        result
    }

    /// The services of the endpoint's network take it as a backend where they select it,
    /// then the row; the services are put back if the row is refused.
    async fn join_services_and_store(&self, base: &State, e: &Endpoint) -> Result<()> {
        let t = std::time::Instant::now();
        self.endpoint_services(base, e, true).await?;
        tracing::debug!(took = ?t.elapsed(), "the endpoint's services");
        let stored = self.store.insert_endpoint(e).await;
        if stored.is_err() {
            let back = self.endpoint_services(base, e, false).await;
            undo("restoring the services' backends", back);
        }
        stored
    }

    /// After networks left the store (`after` is the state without them): their rules and
    /// bridges go; every failure is returned.
    pub(super) async fn teardown_networks(
        &self,
        before: &State,
        after: &State,
        gone: &[Arc<Network>],
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let t0 = std::time::Instant::now();
        if let Err(e) = self
            .firewall_change(before.desired(), after.desired())
            .await
        {
            problems.push(e.to_string());
        }
        let walled = t0.elapsed();
        for n in gone {
            if let Err(e) = self.unplumb_network(n).await {
                problems.push(e.to_string());
            }
        }
        tracing::debug!(?walled, unplumbed = ?t0.elapsed(), "networks torn down");
        problems
    }

    /// After endpoints left the store: their firewall state and veths go, past any failure.
    /// `before` still has them (their groups and networks); `after` is the state without them.
    pub(super) async fn teardown_endpoints(
        &self,
        before: &State,
        after: &State,
        gone: &[Arc<Endpoint>],
        problems: &mut Vec<String>,
    ) {
        for e in gone {
            // Networks outlive their endpoints (deletion is refused while any is connected).
            let left = match before.view().networks().get(&e.network_id) {
                Some(n) => {
                    let members = before
                        .policies()
                        .plan
                        .members
                        .get(&e.id)
                        .cloned()
                        .unwrap_or_default();
                    if let Err(err) = self.firewall_endpoint(after, e, n, false, &members).await {
                        problems.push(err.to_string());
                    }
                    if let Err(err) = self.endpoint_services(after, e, false).await {
                        problems.push(err.to_string());
                    }
                    let s = before.view().sandboxes().get(&e.sandbox_id).map(|s| &**s);
                    match self.drivers.of(n) {
                        Ok(d) => d.leave(e, n, s).await.map_err(Error::from),
                        Err(err) => Err(err),
                    }
                }
                None => self
                    .drivers
                    .bridge
                    .remove_veth(e)
                    .await
                    .map_err(Error::from),
            };
            if let Err(err) = left {
                problems.push(err.to_string());
            }
        }
        self.reap_soon();
    }
}

/// What joining with `members` adds to the table, when it can be added rather than replaced.
fn growth_of(
    base: &State,
    members: &[(String, String)],
) -> Option<crate::firewall::growth::Growth> {
    let networks: Vec<&Network> = (base.view().networks().iter_from(None))
        .map(|n| &**n)
        .collect();
    crate::firewall::growth::growth(&base.policies().plan, &networks, members)
}

/// A plan holding only one endpoint's groups: what an element change needs to know.
fn only_members(e: &Endpoint, members: &[(String, String)]) -> Plan {
    let mut only = Plan::default();
    if !members.is_empty() {
        only.members.insert(e.id.clone(), members.to_vec());
    }
    only
}
