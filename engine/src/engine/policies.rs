//! Policy operations: upload, attach, detach, delete, and the plan computations they share.
//! Each change computes the new plan first (Wasm, on a blocking thread, over a state value:
//! no lock a reader needs is held), applies it in one firewall transaction, then commits and
//! installs it: a failing policy changes nothing.

use std::sync::Arc;

use imbl::OrdMap;
use wasmnet_policy::ir::EndpointDecision;
use wasmnet_policy::{Module, Runtime};

use super::planner::EndpointPlan;
use super::{undo, Engine};
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids;
use crate::model::{validate_name, Endpoint, Network};
use crate::policy::{Applied, AttachRequest, Attachment, Failure, Loaded, Plan, Policy, PolicySet};
use crate::state::State;

const MAX_DESCRIPTION: usize = 1024;

/// How many policies may be stored, and their modules' bytes in all: each loaded module's
/// compiled code stays in memory.
pub const MAX_POLICIES: usize = 256;
pub const MAX_POLICY_BYTES: usize = 64 << 20;
/// How many policies may be attached at once: each attached one keeps a live instance
/// (up to its 64 MiB memory limit); a policy attached nowhere keeps none.
pub const MAX_ATTACHED: usize = 32;

/// Loads the stored policies at start. One that no longer loads is kept, without a module
/// (its `last_error` says why): the rest, and Docker's defaults, stay enforced.
pub(super) async fn load_stored(
    runtime: &Runtime,
    store: &crate::store::Store,
) -> Result<OrdMap<String, Arc<Loaded>>> {
    let mut loaded = OrdMap::new();
    let mut kept = Vec::new();
    for stored in store.load_policies().await? {
        let shared = stored.shared;
        let mut policy = stored.policy;
        let module = match runtime.load(&stored.wasm) {
            Ok(m) => {
                runtime.keep(&m);
                kept.push(m.sha256.clone());
                Some(Arc::new(m))
            }
            Err(e) => {
                tracing::warn!(policy = %policy.name, error = %e, "policy does not load");
                policy.last_error = Some(e.to_string());
                None
            }
        };
        let l = Loaded {
            policy,
            module,
            shared,
        };
        loaded.insert(l.policy.id.clone(), Arc::new(l));
    }
    // The cache holds the artifacts of stored policies only.
    runtime.prune(&kept.iter().map(String::as_str).collect::<Vec<_>>());
    Ok(loaded)
}

/// The attachment an upload is tried with: alone, globally.
fn trial_attachment() -> Attachment {
    Attachment {
        network_id: None,
        priority: 0,
        audit: false,
        created: String::new(),
    }
}

impl Engine {
    /// Computes the plan for the committed state, leaving out policies that fail.
    pub(super) async fn plan_at_start(&self) {
        let _writer = self.lock_writer().await;
        let mut skip = Vec::new();
        loop {
            let base = self.state();
            match self.plan_skipping(&base, skip.clone()).await {
                Ok(plan) => return self.update(|s| s.policies.plan = plan),
                Err(f) if !skip.contains(&f.id) => {
                    skip.push(f.id.clone());
                    self.policy_failed(f);
                }
                Err(_) => return,
            }
        }
    }

    async fn plan_skipping(&self, base: &Arc<State>, skip: Vec<String>) -> Result<Plan, Failure> {
        let (state, set) = (base.clone(), base.policies.clone());
        let planned = tokio::task::spawn_blocking(move || {
            let labels = |id: &str| state.sandbox_labels(id);
            set.compute(&state.plan_inputs(&labels, None), &skip)
        })
        .await;
        planned.unwrap_or_else(|e| {
            Err(Failure {
                id: String::new(),
                name: "(all)".into(),
                error: wasmnet_policy::PolicyError::Trap {
                    function: "evaluate",
                    reason: e.to_string(),
                },
            })
        })
    }

    /// The plan for `base` after `change` to its policies (nothing is installed: the caller
    /// does, once the firewall and the store took it). `extra`: a network being added.
    pub(super) async fn compute_plan(
        &self,
        base: &Arc<State>,
        change: impl FnOnce(&mut PolicySet),
        skip: Vec<String>,
        extra: Option<Network>,
    ) -> Result<Plan> {
        let mut set = base.policies.clone();
        change(&mut set);
        let state = base.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let labels = |id: &str| state.sandbox_labels(id);
            set.compute(&state.plan_inputs(&labels, extra.as_ref()), &skip)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        planned.map_err(|f| self.policy_failed(f))
    }

    /// The plan for `base` with one policy's attachments replaced.
    pub(super) async fn plan_with_attachments(
        &self,
        base: &Arc<State>,
        id: &str,
        attachments: Vec<Attachment>,
    ) -> Result<Plan> {
        let change = |p: &mut PolicySet| p.update(id, |l| l.policy.attachments = attachments);
        self.compute_plan(base, change, vec![], None).await
    }

    /// The governing policies' decisions for a planned endpoint (none: no Wasm call at all).
    pub(super) async fn classify(
        &self,
        base: &Arc<State>,
        plan: &EndpointPlan,
    ) -> Result<Vec<(Applied, EndpointDecision)>> {
        if base.policies.plan.governs(&plan.network.id).is_none() {
            return Ok(vec![]);
        }
        let state = base.clone();
        let (e, n) = (plan.endpoint.clone(), plan.network.clone());
        let labels = plan.sandbox.labels.clone();
        let decided = tokio::task::spawn_blocking(move || {
            let p = &state.policies;
            p.classify(&p.plan, &e, &n, &labels)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        decided.map_err(|f| self.policy_failed(f))
    }

    /// The plan in force with one endpoint classified again (its labels changed): one
    /// `classify` per policy governing its network, no whole-view call and no other
    /// endpoint's. `base` holds the endpoint with its new labels.
    pub(super) async fn reclassify(&self, base: &Arc<State>, e: &Arc<Endpoint>) -> Result<Plan> {
        let mut plan = base.policies.plan.clone();
        if plan.governs(&e.network_id).is_none() {
            return Ok(plan);
        }
        let n = base.view().networks().resolve(&e.network_id)?;
        let state = base.clone();
        let endpoint = e.clone();
        let decided = tokio::task::spawn_blocking(move || {
            let p = &state.policies;
            let labels = state.sandbox_labels(&endpoint.sandbox_id);
            p.classify(&p.plan, &endpoint, &n, &labels)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        let members = crate::policy::memberships(&decided.map_err(|f| self.policy_failed(f))?);
        plan.members.remove(&e.id);
        let policies = base.policies();
        policies
            .fits_join(&plan, &members)
            .map_err(|f| self.policy_failed(f))?;
        if !members.is_empty() {
            plan.members.insert(e.id.clone(), members);
        }
        Ok(plan)
    }

    /// Caches a stored module's compiled artifact, off the async runtime (a file write).
    pub(super) async fn keep_artifact(&self, module: &Option<Arc<Module>>) {
        if let Some(m) = module.clone() {
            let runtime = self.runtime.clone();
            let _ = tokio::task::spawn_blocking(move || runtime.keep(&m)).await;
        }
    }

    /// Removes a deleted policy's artifact, unless another stored policy has the same module.
    pub(super) fn forget_artifact(&self, gone: &Policy) {
        let state = self.state();
        let shared = state
            .policies()
            .loaded
            .values()
            .any(|l| l.policy.id != gone.id && l.policy.sha256 == gone.sha256);
        if !shared {
            self.runtime.forget(&gone.sha256);
        }
    }

    /// Records a failure on the policy (shown by inspect) and makes it the engine's error.
    /// Under the writer lock.
    fn policy_failed(&self, f: Failure) -> Error {
        tracing::warn!(policy = %f.name, error = %f.error, "policy failed");
        let message = f.error.to_string();
        if self.state().policies.loaded.contains_key(&f.id) {
            self.update(|s| {
                s.policies
                    .update(&f.id, |l| l.policy.last_error = Some(message))
            });
        }
        f.into()
    }

    /// Puts `plan` in the firewall, over the objects of `on`; installs nothing.
    pub(super) async fn enforce(&self, on: &State, plan: &Plan) -> Result<()> {
        self.firewall_apply(on.desired_with(None, None, plan.clone()))
            .await
    }

    pub fn list_policies(&self) -> Vec<Policy> {
        let state = self.state();
        let mut out: Vec<Policy> = state
            .policies
            .loaded
            .values()
            .map(|l| l.policy.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// By id, name, or unique id prefix.
    pub fn policy(&self, reference: &str) -> Result<Policy> {
        Ok(self.state().policies.resolve(reference)?.policy.clone())
    }

    /// Compiles a module off the async runtime.
    pub(super) async fn load_module(&self, name: &str, wasm: &[u8]) -> Result<Module> {
        let (runtime, bytes) = (self.runtime.clone(), wasm.to_vec());
        let loaded = tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        loaded.map_err(|e| Error::Policy {
            policy: name.into(),
            error: e,
        })
    }

    /// Checks a module (it loads, exports the interface, imports nothing, and evaluates the
    /// current state within its limits, as if attached globally) and stores it. The policy
    /// becomes visible only once it is stored.
    pub async fn upload_policy(
        &self,
        name: &str,
        description: &str,
        wasm: &[u8],
    ) -> Result<Policy> {
        let upload = self.upload_policy_op(name, description, wasm);
        crate::metrics::timed("policy_upload", upload).await
    }

    async fn upload_policy_op(&self, name: &str, description: &str, wasm: &[u8]) -> Result<Policy> {
        validate_name("name", name)?;
        if description.len() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                "description",
                format!("at most {MAX_DESCRIPTION} bytes"),
            ));
        }
        // Checked before and after compiling: compilation takes no lock (reads and other
        // writes go on meanwhile), so the state may have moved.
        let free = |base: &State| -> Result<()> {
            if base.policies.has_name(name) {
                return Err(Error::conflict(
                    "name_in_use",
                    format!("policy name {name:?} is already in use"),
                ));
            }
            check_room(&base.policies, wasm.len())
        };
        free(&self.state())?;
        let module = self.load_module(name, wasm).await?;
        let _writer = self.lock_writer().await;
        let base = self.state();
        free(&base)?;
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
        // In a cluster, every policy is shared: the hosts enforce the same ones.
        let shared = self.cluster.is_some();
        let loaded = Arc::new(Loaded {
            policy: policy.clone(),
            module: Some(Arc::new(module)),
            shared,
        });
        let others: Vec<String> = base.policies.loaded.keys().cloned().collect();
        let mut trial = Loaded::clone(&loaded);
        trial.policy.attachments = vec![trial_attachment()];
        let trial = Arc::new(trial);
        let id = policy.id.clone();
        let tried = self
            .compute_plan(
                &base,
                |p| {
                    p.loaded.insert(id.clone(), trial);
                },
                others,
                None,
            )
            .await;
        // Attached nowhere yet: the instance the trial made goes.
        if let Some(m) = &loaded.module {
            m.release();
        }
        tried?;
        self.share_policy(&policy, wasm).await?;
        if let Err(e) = self.store.insert_policy(&policy, wasm, shared).await {
            self.unshare_policy(&policy).await;
            return Err(e);
        }
        self.keep_artifact(&loaded.module).await;
        self.update(|s| {
            s.policies.loaded.insert(id.clone(), loaded);
        });
        self.publish(EventKind::PolicyCreate, &id, &policy);
        Ok(policy)
    }

    /// Refused while attached, unless `force` (then detached first).
    pub async fn delete_policy(&self, reference: &str, force: bool) -> Result<Policy> {
        crate::metrics::timed("policy_delete", self.delete_policy_op(reference, force)).await
    }

    async fn delete_policy_op(&self, reference: &str, force: bool) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let base = self.state();
        let policy = base.policies.resolve(reference)?.policy.clone();
        let id = policy.id.clone();
        let mut plan = None;
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
            self.unshare_policy_or_fail(&base, &policy).await?;
            let detached = self.plan_with_attachments(&base, &id, vec![]).await?;
            self.enforce(&base, &detached).await?;
            plan = Some(detached);
        } else {
            self.unshare_policy_or_fail(&base, &policy).await?;
        }
        if let Err(e) = self.store.delete_policy(&id).await {
            if plan.is_some() {
                undo(
                    "restoring the firewall",
                    self.firewall_apply(base.desired()).await,
                );
            }
            return Err(e);
        }
        self.update(|s| {
            s.policies.loaded.remove(&id);
            if let Some(plan) = plan {
                s.policies.plan = plan;
            }
        });
        self.forget_artifact(&policy);
        self.publish(EventKind::PolicyDelete, &id, &policy);
        Ok(policy)
    }

    /// The policy to attach or dry-run, which must have loaded.
    pub(super) fn loaded_policy(&self, base: &State, reference: &str) -> Result<Policy> {
        let l = base.policies.resolve(reference)?;
        if l.module.is_none() {
            return Err(Error::conflict(
                "not_loaded",
                format!(
                    "policy {:?} does not load: {}",
                    l.policy.name,
                    l.policy.last_error.clone().unwrap_or_default()
                ),
            ));
        }
        Ok(l.policy.clone())
    }

    /// Attaches to a network (or globally), or changes an attachment's priority or audit mode.
    pub async fn attach_policy(&self, reference: &str, req: AttachRequest) -> Result<Policy> {
        crate::metrics::timed("attach", self.attach_policy_op(reference, req)).await
    }

    async fn attach_policy_op(&self, reference: &str, req: AttachRequest) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let base = self.state();
        let policy = self.loaded_policy(&base, reference)?;
        let network_id = match &req.network {
            Some(r) => Some(base.view().networks().resolve(r)?.id.clone()),
            None => None,
        };
        let attachment = Attachment {
            network_id: network_id.clone(),
            priority: req.priority,
            audit: req.audit,
            created: ids::now(),
        };
        let id = policy.id.clone();
        let attached = base
            .policies
            .loaded
            .values()
            .filter(|l| l.policy.id != id && !l.policy.attachments.is_empty())
            .count();
        if attached >= MAX_ATTACHED {
            return Err(Error::conflict(
                "attach_limit",
                format!("{attached} policies are attached, the most at once: detach one first"),
            ));
        }
        let updated = with_attachment(&policy.attachments, attachment.clone());
        let plan = self
            .plan_with_attachments(&base, &id, updated.clone())
            .await?;
        let shared = self.shared_scope(&base, &id, network_id.as_deref());
        if let Some(c) = &shared {
            c.put_attachment(&id, &attachment).await?;
        }
        self.store.upsert_attachment(&id, &attachment).await?;
        if let Err(e) = self.enforce(&base, &plan).await {
            if let Some(c) = &shared {
                let before = policy
                    .attachments
                    .iter()
                    .find(|a| a.network_id == network_id);
                let restored = match before {
                    Some(a) => c.put_attachment(&id, a).await,
                    None => c.delete_attachment(&id, network_id.as_deref()).await,
                };
                undo("restoring the cluster's attachment", restored);
            }
            let removed = self
                .store
                .delete_attachment(&id, network_id.as_deref())
                .await;
            undo("removing the stored attachment", removed);
            for a in &policy.attachments {
                undo(
                    "restoring a stored attachment",
                    self.store.upsert_attachment(&id, a).await,
                );
            }
            return Err(e);
        }
        let policy = self.install_attachments(&id, updated, plan);
        self.publish(EventKind::PolicyAttach, &id, &policy);
        Ok(policy)
    }

    pub async fn detach_policy(&self, reference: &str, network: Option<&str>) -> Result<Policy> {
        crate::metrics::timed("detach", self.detach_policy_op(reference, network)).await
    }

    async fn detach_policy_op(&self, reference: &str, network: Option<&str>) -> Result<Policy> {
        let _writer = self.lock_writer().await;
        let base = self.state();
        let policy = base.policies.resolve(reference)?.policy.clone();
        let network_id = match network {
            Some(r) => Some(resolve_network_id(&base, &policy, r)?),
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
        if let Some(c) = self.shared_scope(&base, &id, network_id.as_deref()) {
            c.delete_attachment(&id, network_id.as_deref()).await?;
        }
        let updated: Vec<Attachment> = policy
            .attachments
            .iter()
            .filter(|a| a.network_id != network_id)
            .cloned()
            .collect();
        let plan = self
            .plan_with_attachments(&base, &id, updated.clone())
            .await?;
        self.enforce(&base, &plan).await?;
        self.store
            .delete_attachment(&id, network_id.as_deref())
            .await?;
        if updated.is_empty() {
            if let Some(m) = &base.policies.loaded[&id].module {
                m.release();
            }
        }
        let policy = self.install_attachments(&id, updated, plan);
        self.publish(EventKind::PolicyDetach, &id, &policy);
        Ok(policy)
    }

    /// Installs a policy's new attachments with the plan they make; returns the policy.
    fn install_attachments(&self, id: &str, attachments: Vec<Attachment>, plan: Plan) -> Policy {
        self.update(|s| {
            s.policies.update(id, |l| {
                l.policy.attachments = attachments;
                l.policy.last_error = None;
            });
            s.policies.plan = plan;
        });
        self.state().policies.loaded[id].policy.clone()
    }
}

/// Room for one more stored policy of `bytes`: 409 naming the limit when there is none.
fn check_room(p: &PolicySet, bytes: usize) -> Result<()> {
    if p.loaded.len() >= MAX_POLICIES {
        return Err(Error::conflict(
            "policy_limit",
            format!("{MAX_POLICIES} policies are stored, the most there may be: delete one first"),
        ));
    }
    let stored: usize = p.loaded.values().map(|l| l.policy.size).sum();
    if stored + bytes > MAX_POLICY_BYTES {
        return Err(Error::conflict(
            "policy_limit",
            format!(
                "the stored policies' modules take {stored} bytes; {bytes} more would pass the {MAX_POLICY_BYTES}-byte limit"
            ),
        ));
    }
    Ok(())
}

/// A network by reference, or an attachment's network id (the network may be gone).
fn resolve_network_id(base: &State, policy: &Policy, r: &str) -> Result<String> {
    match base.view().networks().resolve(r) {
        Ok(n) => Ok(n.id.clone()),
        Err(e) => policy
            .attachments
            .iter()
            .filter_map(|a| a.network_id.clone())
            .find(|id| id == r)
            .ok_or(e),
    }
}

/// `attachments` with `a` added, replacing one of the same scope.
pub(super) fn with_attachment(attachments: &[Attachment], a: Attachment) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = attachments
        .iter()
        .filter(|x| x.network_id != a.network_id)
        .cloned()
        .collect();
    out.push(a);
    out.sort_by_key(|x| x.priority);
    out
}
