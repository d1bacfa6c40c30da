//! Endpoint operations: connect (plan, ask the policies, plumb, commit), disconnect, relabel.

use std::sync::Arc;

use super::planner::{self, EndpointPlan};
use super::{report, undo, Engine};
use crate::error::Result;
use crate::events::EventKind;
use crate::model::*;
use crate::state::State;

impl Engine {
    pub async fn connect(&self, req: EndpointCreate) -> Result<Arc<Endpoint>> {
        crate::metrics::timed("connect", self.connect_op(req)).await
    }

    async fn connect_op(&self, mut req: EndpointCreate) -> Result<Arc<Endpoint>> {
        if req.network.is_empty() {
            req.network = self.default_network_name()?;
        }
        planner::validate_endpoint_request(&mut req)?;
        let _writer = self.lock_writer().await;
        let start = std::time::Instant::now();
        let base = self.state();
        let plan = self.admit(&base, req.clone()).await?;
        let (plan, base, published) = self.publish_overlay(plan, base, &req).await?;
        let admitted = start.elapsed();
        let endpoint = Arc::new(plan.endpoint.clone());
        if let Err(e) = self.commit_endpoint(&base, &plan, &endpoint).await {
            if let Some((cluster, rec)) = published {
                undo(
                    "withdrawing the endpoint from the cluster",
                    cluster.withdraw(&[rec]).await,
                );
            }
            return Err(e);
        }
        tracing::debug!(?admitted, committed = ?start.elapsed(), "connect");
        self.update(|s| {
            s.view.add_endpoint(endpoint.clone());
            if !plan.members.is_empty() {
                s.policies
                    .plan
                    .members
                    .insert(endpoint.id.clone(), plan.members);
            }
        });
        self.refresh_resolv_of(&endpoint.sandbox_id);
        self.publish(EventKind::EndpointConnect, &endpoint.id, &endpoint);
        Ok(endpoint)
    }

    /// Plans an endpoint and asks the policies governing its network: a refused port refuses
    /// the connect, a remapped one is planned again on its new host port, and the groups the
    /// policies name are recorded.
    pub(super) async fn admit(
        &self,
        base: &Arc<State>,
        mut req: EndpointCreate,
    ) -> Result<EndpointPlan> {
        let mut plan = planner::plan_endpoint(base.view(), req.clone())?;
        let decisions = self.classify(base, &plan).await?;
        if decisions.is_empty() {
            return Ok(plan);
        }
        let bounds = planner::RemapBounds {
            ranges: &self.cfg.policy_port_ranges,
            reserved: &self.cfg.reserved_ports,
        };
        if planner::apply_port_decisions(&mut req, &decisions, &bounds)? {
            plan = planner::plan_endpoint(base.view(), req)?;
        }
        plan.members = crate::policy::memberships(&decisions);
        let policies = base.policies();
        if plan.members.iter().any(|m| !policies.has_group(m)) {
            policies.fits_join(&policies.plan, &plan.members)?;
        }
        Ok(plan)
    }

    pub async fn disconnect(&self, reference: &str) -> Result<Arc<Endpoint>> {
        crate::metrics::timed("disconnect", self.disconnect_op(reference)).await
    }

    async fn disconnect_op(&self, reference: &str) -> Result<Arc<Endpoint>> {
        let _writer = self.lock_writer().await;
        let before = self.state();
        let endpoint = before.view().resolve_endpoint(reference)?;
        if let Some((cluster, rec)) = self.record_of(&before, &endpoint) {
            cluster.withdraw(&[rec]).await?;
        }
        self.store.delete_endpoint(&endpoint.id).await?;
        self.update(|s| {
            s.view.remove_endpoint(&endpoint.id);
            s.policies.plan.members.remove(&endpoint.id);
        });
        let mut problems = Vec::new();
        let after = self.state();
        self.teardown_endpoints(
            &before,
            &after,
            std::slice::from_ref(&endpoint),
            &mut problems,
        )
        .await;
        report("disconnecting", problems);
        self.update(|_| {});
        self.refresh_resolv_of(&endpoint.sandbox_id);
        self.publish(EventKind::EndpointDisconnect, &endpoint.id, &endpoint);
        Ok(endpoint)
    }

    /// Replaces an endpoint's labels; the policies classify it again and the rules follow.
    /// The new state is installed only once the firewall and the store took the change.
    pub async fn relabel_endpoint(&self, reference: &str, labels: Labels) -> Result<Arc<Endpoint>> {
        crate::metrics::timed("relabel", self.relabel_endpoint_op(reference, labels)).await
    }

    async fn relabel_endpoint_op(&self, reference: &str, labels: Labels) -> Result<Arc<Endpoint>> {
        validate_labels("labels", &labels)?;
        let _writer = self.lock_writer().await;
        let base = self.state();
        let old = base.view().resolve_endpoint(reference)?;
        let new = Arc::new(Endpoint {
            labels,
            ..(*old).clone()
        });
        // Other hosts classify it by its record: the cluster hears of the new labels first.
        if let Some((cluster, rec)) = self.record_of(&base, &new) {
            cluster.publish(&rec, false).await?;
        }
        let mut relabelled = State::clone(&base);
        relabelled.view.replace_endpoint(new.clone());
        let relabelled = Arc::new(relabelled);
        // Under a policy the whole ruleset follows (services with it); else only the
        // services whose selectors pick it before or after (the labels matter to nothing else).
        let governed = base.policies().plan.governs(&new.network_id).is_some();
        let enforced = match self.reclassify(&relabelled, &new).await {
            Ok(plan) if governed => self.enforce(&relabelled, &plan).await.map(|()| plan),
            Ok(plan) => self
                .endpoint_moved(&base, &relabelled, Some(&old), Some(&new))
                .await
                .map(|()| plan),
            Err(e) => Err(e),
        };
        let stored = match &enforced {
            Ok(_) => self.store.set_endpoint_labels(&new.id, &new.labels).await,
            Err(_) => Ok(()),
        };
        let failed = match (enforced, stored) {
            (Ok(plan), Ok(())) => {
                self.update(|s| {
                    s.view.replace_endpoint(new.clone());
                    s.policies.plan = plan;
                });
                None
            }
            (Ok(_), Err(e)) => {
                // The firewall took the new plan: put the one in force back.
                undo(
                    "restoring the firewall",
                    self.firewall_apply(base.desired()).await,
                );
                Some(e)
            }
            (Err(e), _) => Some(e),
        };
        if let Some(e) = failed {
            if let Some((cluster, rec)) = self.record_of(&base, &old) {
                let restored = cluster.publish(&rec, false).await.map(|_| ());
                undo("restoring the endpoint's record", restored);
            }
            return Err(e);
        }
        self.publish(EventKind::EndpointUpdate, &new.id, &new);
        Ok(new)
    }
}
