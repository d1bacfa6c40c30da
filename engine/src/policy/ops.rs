//! The engine's policy operations: upload, attach, detach, dry-run, delete, relabel, and the
//! ruleset in force. Each change computes the new plan first (calling the policies), applies
//! it in one firewall transaction, then commits: a failing policy changes nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use wasmnet_policy::Runtime;

use super::{AttachRequest, Attachment, Inputs, Loaded, Plan, Policies, Policy};
use crate::engine::Engine;
use crate::error::{Error, Kind, Result};
use crate::firewall::ChainView;
use crate::ids;
use crate::model::{validate_labels, validate_name, Endpoint, Labels};

/// What a policy would change, touching nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    /// The whole ruleset with the policy attached as asked.
    pub ruleset: String,
    /// A unified diff from the ruleset in force to that one (empty: no change).
    pub diff: String,
}

/// The firewall in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ruleset {
    pub backend: crate::firewall::Backend,
    /// Bumped at every change put in the kernel.
    pub generation: u64,
    /// In the backend's own syntax.
    pub text: String,
    #[schema(value_type = Vec<Object>)]
    pub chains: Vec<ChainView>,
}

/// What a policy's rules matched in one network: (packets, bytes).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyCounters {
    pub network_id: String,
    pub network_name: String,
    pub matched: (u64, u64),
    /// Audit mode: what it would have dropped.
    pub would_drop: (u64, u64),
}

const MAX_DESCRIPTION: usize = 1024;

impl Engine {
    /// Loads the stored policies at start. One that no longer loads, or fails on the current
    /// state, is left out of the plan (its `last_error` says why): the rest, and Docker's
    /// defaults, stay enforced.
    pub(crate) async fn open_policies(
        cfg_cache: &std::path::Path,
        store: &crate::store::Store,
    ) -> Result<Policies> {
        let runtime = Runtime::new(Default::default(), Some(cfg_cache))
            .map_err(|e| Error::Internal(format!("starting the policy runtime: {e}")))?;
        let mut policies = Policies::new(runtime);
        for stored in store.load_policies().await? {
            let shared = stored.shared;
            let mut policy = stored.policy;
            let module = match policies.runtime.load(&stored.wasm) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    tracing::warn!(policy = %policy.name, error = %e, "policy does not load");
                    policy.last_error = Some(e.to_string());
                    None
                }
            };
            policies.loaded.insert(
                policy.id.clone(),
                Loaded {
                    policy,
                    module,
                    shared,
                },
            );
        }
        Ok(policies)
    }

    /// Computes the plan for the committed state, leaving out policies that fail.
    pub(crate) fn plan_at_start(&self) {
        let mut skip = Vec::new();
        loop {
            match self.compute_plan(|_| {}, &skip, None) {
                Ok(plan) => {
                    self.policies().install(&plan);
                    return;
                }
                Err(Error::Policy { policy, .. }) => {
                    let id = self
                        .policies()
                        .loaded
                        .values()
                        .find(|l| l.policy.name == policy)
                        .map(|l| l.policy.id.clone());
                    match id {
                        Some(id) if !skip.contains(&id) => skip.push(id),
                        _ => return,
                    }
                }
                Err(_) => return,
            }
        }
    }

    pub(crate) fn policies(&self) -> std::sync::MutexGuard<'_, Policies> {
        self.policies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plan for the committed state after `change` to the policies, which is undone
    /// before returning (the caller commits it once the firewall took the plan).
    pub(crate) fn compute_plan(
        &self,
        change: impl FnOnce(&mut Policies),
        skip: &[String],
        extra: Option<&crate::model::Network>,
    ) -> Result<Plan> {
        let remotes = self.remote_endpoints();
        let v = self.view();
        let labels = |id: &str| {
            v.sandboxes
                .resolve(id)
                .map(|s| s.labels.clone())
                .unwrap_or_default()
        };
        let inputs = Inputs {
            networks: v
                .networks
                .iter_from(None)
                .map(|n| n.as_ref())
                .chain(extra)
                .collect(),
            endpoints: v
                .endpoints
                .values()
                .chain(&remotes)
                .map(|e| e.as_ref())
                .collect(),
            sandbox_labels: &labels,
            // A new network has no endpoint yet, and every other one keeps its policies.
            members: extra.map(|_| self.policies().members.clone()),
        };
        let mut p = self.policies();
        let saved: Vec<(String, Vec<Attachment>)> = p
            .loaded
            .values()
            .map(|l| (l.policy.id.clone(), l.policy.attachments.clone()))
            .collect();
        change(&mut p);
        let plan = p.compute(&inputs, skip);
        for (id, a) in saved {
            if let Some(l) = p.loaded.get_mut(&id) {
                l.policy.attachments = a;
            }
        }
        plan
    }

    /// Puts `plan` in the kernel, then makes it the engine's.
    pub(crate) async fn enforce(&self, plan: Plan) -> Result<()> {
        let plan = Arc::new(plan);
        self.firewall_apply(self.desired_with(None, None, plan.clone()))
            .await?;
        self.policies().install(&plan);
        Ok(())
    }

    pub fn list_policies(&self) -> Vec<Policy> {
        let mut out: Vec<Policy> = self
            .policies()
            .loaded
            .values()
            .map(|l| l.policy.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// By id, name, or unique id prefix.
    pub fn policy(&self, reference: &str) -> Result<Policy> {
        let p = self.policies();
        let found = p
            .loaded
            .get(reference)
            .or_else(|| p.loaded.values().find(|l| l.policy.name == reference));
        if let Some(l) = found {
            return Ok(l.policy.clone());
        }
        let mut matches = p
            .loaded
            .keys()
            .filter(|id| reference.len() >= 4 && id.starts_with(reference));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(p.loaded[id].policy.clone()),
            (Some(_), Some(_)) => Err(Error::conflict(
                "ambiguous",
                format!("policy id prefix {reference:?} is ambiguous"),
            )),
            _ => Err(Error::not_found(Kind::Policy, reference)),
        }
    }

    /// Checks a module (it loads, exports the interface, imports nothing, and evaluates the
    /// current state within its limits, as if attached globally) and stores it.
    pub async fn upload_policy(
        &self,
        name: &str,
        description: &str,
        wasm: &[u8],
    ) -> Result<Policy> {
        validate_name("name", name)?;
        if description.len() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} bytes"),
            ));
        }
        let _writer = self.lock_writer().await;
        if self
            .policies()
            .loaded
            .values()
            .any(|l| l.policy.name == name)
        {
            return Err(Error::conflict(
                "name_in_use",
                format!("policy name {name:?} is already in use"),
            ));
        }
        let module = {
            let p = self.policies();
            p.runtime.load(wasm)
        }
        .map_err(|e| Error::Policy {
            policy: name.into(),
            error: e,
        })?;
        let policy = Policy {
            id: ids::new_id(),
            name: name.into(),
            description: description.into(),
            sha256: module.sha256.clone(),
            size: module.size,
            version: module.version.clone(),
            created: ids::now(),
            attachments: vec![],
            last_error: None,
        };
        let id = policy.id.clone();
        // In a cluster, every policy is shared: the hosts enforce the same ones.
        let shared = self.cluster.is_some();
        let loaded = Loaded {
            policy: policy.clone(),
            module: Some(Arc::new(module)),
            shared,
        };
        self.policies().loaded.insert(id.clone(), loaded);
        // The trial: this policy alone, attached globally.
        let others: Vec<String> = self
            .policies()
            .loaded
            .keys()
            .filter(|k| **k != id)
            .cloned()
            .collect();
        let trial = self.compute_plan(
            |p| {
                if let Some(l) = p.loaded.get_mut(&id) {
                    l.policy.attachments = vec![Attachment {
                        network_id: None,
                        priority: 0,
                        audit: false,
                        created: String::new(),
                    }];
                }
            },
            &others,
            None,
        );
        let stored = match trial {
            Ok(_) => self.share_policy(&policy, wasm).await,
            Err(e) => Err(e),
        };
        let stored = match stored {
            Ok(()) => {
                let r = self.store.insert_policy(&policy, wasm, shared).await;
                if r.is_err() {
                    self.unshare_policy(&policy).await;
                }
                r
            }
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            self.policies().loaded.remove(&id);
            return Err(e);
        }
        self.publish("policy.create", &id, &policy);
        Ok(policy)
    }

    /// Refused while attached, unless `force` (then detached first).
    pub async fn delete_policy(&self, reference: &str, force: bool) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let policy = self.policy(reference)?;
        if !policy.attachments.is_empty() {
            if !force {
                return Err(Error::conflict(
                    "attached",
                    format!(
                        "policy {:?} is attached {} time(s); detach it first or delete with force",
                        policy.name,
                        policy.attachments.len()
                    ),
                ));
            }
            self.unshare_policy_or_fail(&policy).await?;
            let id = policy.id.clone();
            let plan = self.compute_plan(
                |p| {
                    p.loaded
                        .get_mut(&id)
                        .expect("resolved")
                        .policy
                        .attachments
                        .clear()
                },
                &[],
                None,
            )?;
            self.enforce(plan).await?;
        } else {
            self.unshare_policy_or_fail(&policy).await?;
        }
        self.store.delete_policy(&policy.id).await?;
        self.policies().loaded.remove(&policy.id);
        self.publish("policy.delete", &policy.id, &policy);
        Ok(policy)
    }

    /// Attaches to a network (or globally), or changes an attachment's priority or audit mode.
    pub async fn attach_policy(&self, reference: &str, req: AttachRequest) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let policy = self.policy(reference)?;
        if self.policies().loaded[&policy.id].module.is_none() {
            return Err(Error::conflict(
                "not_loaded",
                format!(
                    "policy {:?} does not load: {}",
                    policy.name,
                    policy.last_error.unwrap_or_default()
                ),
            ));
        }
        let network_id = match &req.network {
            Some(r) => Some(self.view().networks.resolve(r)?.id.clone()),
            None => None,
        };
        let attachment = Attachment {
            network_id: network_id.clone(),
            priority: req.priority,
            audit: req.audit,
            created: ids::now(),
        };
        let id = policy.id.clone();
        let updated = with_attachment(&policy.attachments, attachment.clone());
        let plan = self.compute_plan(
            |p| p.loaded.get_mut(&id).expect("resolved").policy.attachments = updated.clone(),
            &[],
            None,
        )?;
        let shared = self.shared_scope(&id, network_id.as_deref());
        if let Some(c) = &shared {
            c.put_attachment(&id, &attachment).await?;
        }
        self.store.upsert_attachment(&id, &attachment).await?;
        if let Err(e) = self.enforce(plan).await {
            if let Some(c) = &shared {
                let before = policy
                    .attachments
                    .iter()
                    .find(|a| a.network_id == network_id);
                let _ = match before {
                    Some(a) => c.put_attachment(&id, a).await,
                    None => c.delete_attachment(&id, network_id.as_deref()).await,
                };
            }
            let _ = self
                .store
                .delete_attachment(&id, network_id.as_deref())
                .await;
            for a in &policy.attachments {
                let _ = self.store.upsert_attachment(&id, a).await;
            }
            return Err(e);
        }
        let policy = self.set_attachments(&id, updated);
        self.publish("policy.attach", &id, &policy);
        Ok(policy)
    }

    pub async fn detach_policy(&self, reference: &str, network: Option<&str>) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let policy = self.policy(reference)?;
        let network_id = match network {
            Some(r) => Some(self.resolve_network_id(&policy, r)?),
            None => None,
        };
        if !policy
            .attachments
            .iter()
            .any(|a| a.network_id == network_id)
        {
            let scope = network.map_or("globally".to_string(), |n| format!("to network {n:?}"));
            return Err(Error::conflict(
                "not_attached",
                format!("policy {:?} is not attached {scope}", policy.name),
            ));
        }
        let id = policy.id.clone();
        if let Some(c) = self.shared_scope(&id, network_id.as_deref()) {
            c.delete_attachment(&id, network_id.as_deref()).await?;
        }
        let updated: Vec<Attachment> = policy
            .attachments
            .iter()
            .filter(|a| a.network_id != network_id)
            .cloned()
            .collect();
        let plan = self.compute_plan(
            |p| p.loaded.get_mut(&id).expect("resolved").policy.attachments = updated.clone(),
            &[],
            None,
        )?;
        self.enforce(plan).await?;
        self.store
            .delete_attachment(&id, network_id.as_deref())
            .await?;
        let policy = self.set_attachments(&id, updated);
        self.publish("policy.detach", &id, &policy);
        Ok(policy)
    }

    /// A network by reference, or an attachment's network id (the network may be gone).
    fn resolve_network_id(&self, policy: &Policy, r: &str) -> Result<String> {
        match self.view().networks.resolve(r) {
            Ok(n) => Ok(n.id.clone()),
            Err(e) => policy
                .attachments
                .iter()
                .filter_map(|a| a.network_id.clone())
                .find(|id| id == r)
                .ok_or(e),
        }
    }

    fn set_attachments(&self, id: &str, attachments: Vec<Attachment>) -> Policy {
        let mut p = self.policies();
        let l = p
            .loaded
            .get_mut(id)
            .expect("resolved under the writer lock");
        l.policy.attachments = attachments;
        l.policy.last_error = None;
        l.policy.clone()
    }

    /// The ruleset with the policy attached as asked (by default where it is attached, or
    /// globally), and its diff against the ruleset in force. Nothing changes.
    pub async fn dry_run(&self, reference: &str, req: Option<AttachRequest>) -> Result<DryRun> {
        let _writer = self.lock_writer().await;
        let policy = self.policy(reference)?;
        if self.policies().loaded[&policy.id].module.is_none() {
            return Err(Error::conflict(
                "not_loaded",
                format!("policy {:?} does not load", policy.name),
            ));
        }
        let wanted = match req {
            Some(r) => {
                let network_id = match &r.network {
                    Some(n) => Some(self.view().networks.resolve(n)?.id.clone()),
                    None => None,
                };
                with_attachment(
                    &policy.attachments,
                    Attachment {
                        network_id,
                        priority: r.priority,
                        audit: r.audit,
                        created: String::new(),
                    },
                )
            }
            None if policy.attachments.is_empty() => {
                vec![Attachment {
                    network_id: None,
                    priority: 100,
                    audit: false,
                    created: String::new(),
                }]
            }
            None => policy.attachments.clone(),
        };
        let id = policy.id.clone();
        let plan = self.compute_plan(
            |p| p.loaded.get_mut(&id).expect("resolved").policy.attachments = wanted,
            &[],
            None,
        )?;
        let now = self.firewall_text();
        let then = self
            .firewall
            .render(&self.desired_with(None, None, Arc::new(plan)));
        let diff = similar::TextDiff::from_lines(&now, &then)
            .unified_diff()
            .context_radius(2)
            .header("in force", "with the policy")
            .to_string();
        Ok(DryRun {
            ruleset: then,
            diff,
        })
    }

    /// Per network the policy governs: the packets and bytes its rules matched, and (for an
    /// audit-mode attachment) those it would have dropped, from the kernel's counters.
    pub async fn policy_counters(&self, reference: &str) -> Result<Vec<PolicyCounters>> {
        let policy = self.policy(reference)?;
        let prefix = format!("pol_{}_", &policy.id[..8]);
        let chains = self.firewall_chains().await?;
        let networks: Vec<_> = self.view().networks.iter_from(None).cloned().collect();
        let mut out = Vec::new();
        for c in chains.iter().filter(|c| c.chain.starts_with(&prefix)) {
            let net = &c.chain[prefix.len()..];
            let Some(n) = networks.iter().find(|n| n.id.starts_with(net)) else {
                continue;
            };
            let sum = |audit: bool| {
                c.rules
                    .iter()
                    .filter(|r| r.text.contains("wasmnet-audit") == audit)
                    .filter_map(|r| r.counters)
                    .fold((0, 0), |(p, b), (rp, rb)| (p + rp, b + rb))
            };
            out.push(PolicyCounters {
                network_id: n.id.clone(),
                network_name: n.name.clone(),
                matched: sum(false),
                would_drop: sum(true),
            });
        }
        Ok(out)
    }

    pub async fn ruleset(&self) -> Result<Ruleset> {
        Ok(Ruleset {
            backend: self.firewall_backend(),
            generation: self.generation.load(Ordering::Relaxed),
            text: self.firewall_text(),
            chains: self.firewall_chains().await?,
        })
    }

    /// Replaces an endpoint's labels; the policies classify it again and the rules follow.
    pub async fn relabel_endpoint(&self, reference: &str, labels: Labels) -> Result<Arc<Endpoint>> {
        validate_labels("labels", &labels)?;
        let _writer = self.lock_writer().await;
        let old = self.endpoint(reference)?;
        let new = Arc::new(Endpoint {
            labels,
            ..(*old).clone()
        });
        // Other hosts classify it by its record: the cluster hears of the new labels first.
        if let Some((cluster, rec)) = self.record_of(&new) {
            cluster.publish(&rec, false).await?;
        }
        self.write().endpoints.insert(new.id.clone(), new.clone());
        let plan = match self.compute_plan(|_| {}, &[], None) {
            Ok(plan) => self.enforce(plan).await,
            Err(e) => Err(e),
        };
        let stored = match plan {
            Ok(()) => self.store.set_endpoint_labels(&new.id, &new.labels).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            if let Some((cluster, rec)) = self.record_of(&old) {
                let _ = cluster.publish(&rec, false).await;
            }
            self.write().endpoints.insert(old.id.clone(), old);
            let _ = self.reload_plan().await;
            return Err(e);
        }
        self.publish("endpoint.update", &new.id, &new);
        Ok(new)
    }

    /// Recomputes and re-applies the plan for the committed state (after an undo).
    async fn reload_plan(&self) -> Result<()> {
        let plan = self.compute_plan(|_| {}, &[], None)?;
        self.enforce(plan).await
    }
}

/// `attachments` with `a` added, replacing one of the same scope.
fn with_attachment(attachments: &[Attachment], a: Attachment) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = attachments
        .iter()
        .filter(|x| x.network_id != a.network_id)
        .cloned()
        .collect();
    out.push(a);
    out.sort_by_key(|x| x.priority);
    out
}
