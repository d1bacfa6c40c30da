//! Policies inside the engine: what is uploaded and attached (the store holds it), the loaded
//! modules, and the plan their decisions add up to (what the firewall compiles).
//!
//! Composition: the policies governing a network are its own attachments and the global ones,
//! ordered by priority (lower first, then by name). Their rules are tried in that order and the
//! first match decides; for what no rule decides, the first policy (not in audit mode) with a
//! default decides, then Docker's semantics. NAT choices follow the same order. For published
//! ports the first refusal or remap wins. An audit-mode attachment decides nothing: its
//! would-be drops are counted and logged.

mod input;
pub mod offline;
mod ops;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmnet_policy::ir::{EndpointDecision, NetworkDecision};
use wasmnet_policy::{Module, Runtime};

use crate::error::{Error, Result};
pub use crate::firewall::policy::{Applied, Plan};
use crate::model::{Endpoint, Labels, Network};

pub use ops::{DryRun, PolicyCounters, Ruleset};

/// A policy as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub sha256: String,
    pub size: usize,
    /// The version of `wasmnet:policy` the module was built against.
    pub version: String,
    pub created: String,
    pub attachments: Vec<Attachment>,
    /// The last failure when loading or calling it, if any.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// None: the global default (every network).
    pub network_id: Option<String>,
    /// Lower runs first.
    pub priority: i64,
    /// Count and log would-be drops; enforce nothing.
    pub audit: bool,
    pub created: String,
}

/// `POST /v1/policies/{id}/attach`.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// A network's id or name; absent: attach as the global default.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default = "default_priority")]
    pub priority: i64,
    #[serde(default)]
    pub audit: bool,
}

fn default_priority() -> i64 {
    100
}

/// A stored policy with its module (None when it failed to load).
pub(crate) struct Loaded {
    pub policy: Policy,
    pub module: Option<Arc<Module>>,
    /// Published to the cluster store (see migration 0003).
    pub shared: bool,
}

/// Everything the engine knows about policies.
pub(crate) struct Policies {
    pub runtime: Runtime,
    pub loaded: HashMap<String, Loaded>,
    /// The decisions in force per network (its `members` left empty: they are below).
    pub plan: Arc<Plan>,
    /// Per endpoint id, its groups: changed in place at every join and leave, never copied
    /// on that path (a shared plan would be, whenever the firewall watcher holds it).
    pub members: HashMap<String, Vec<(String, String)>>,
}

/// The state a plan is computed from.
pub(crate) struct Inputs<'a> {
    pub networks: Vec<&'a Network>,
    pub endpoints: Vec<&'a Endpoint>,
    pub sandbox_labels: &'a dyn Fn(&str) -> Labels,
    /// Groups known to be unchanged (a network was added: no endpoint's governing policies
    /// changed), so only the whole-view calls are made.
    pub members: Option<HashMap<String, Vec<(String, String)>>>,
}

impl Policies {
    pub fn new(runtime: Runtime) -> Self {
        Policies {
            runtime,
            loaded: HashMap::new(),
            plan: Default::default(),
            members: HashMap::new(),
        }
    }

    /// The whole plan in force, for a full apply or a render.
    pub fn snapshot(&self) -> Arc<Plan> {
        Arc::new(self.plan_in_force())
    }

    /// The same, owned (to change before a full apply).
    pub fn plan_in_force(&self) -> Plan {
        Plan {
            networks: self.plan.networks.clone(),
            members: self.members.clone(),
        }
    }

    /// Makes `plan` the one in force.
    pub fn install(&mut self, plan: &Plan) {
        self.members = plan.members.clone();
        self.plan = Arc::new(Plan {
            networks: plan.networks.clone(),
            members: HashMap::new(),
        });
    }

    /// Whether a group's sets exist already (a rule names it, or an endpoint is in it).
    pub fn has_group(&self, key: &(String, String)) -> bool {
        self.plan.has_group(key) || self.members.values().any(|m| m.contains(key))
    }

    /// Records a failure on the policy (shown by inspect) and makes it the engine's error.
    fn failed(&mut self, id: &str, e: wasmnet_policy::PolicyError) -> Error {
        let entry = self.loaded.get_mut(id);
        let name = entry
            .as_ref()
            .map_or(id.to_string(), |l| l.policy.name.clone());
        if let Some(l) = entry {
            l.policy.last_error = Some(e.to_string());
        }
        tracing::warn!(policy = %name, error = %e, "policy failed");
        Error::Policy {
            policy: name,
            error: e,
        }
    }

    /// Attachments in force: (policy id, attachment), for loaded policies.
    fn attachments(&self) -> Vec<(&Loaded, &Attachment)> {
        let mut out: Vec<(&Loaded, &Attachment)> = self
            .loaded
            .values()
            .filter(|l| l.module.is_some())
            .flat_map(|l| l.policy.attachments.iter().map(move |a| (l, a)))
            .collect();
        out.sort_by(|a, b| (a.1.priority, &a.0.policy.name).cmp(&(b.1.priority, &b.0.policy.name)));
        out
    }

    /// The plan for this state: every governing policy evaluated (whole view) and every
    /// governed endpoint classified. The first failure is the error (and the policy's
    /// `last_error`); `skip` leaves policies out (those known to fail, at start).
    pub fn compute(&mut self, inputs: &Inputs<'_>, skip: &[String]) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut networks: HashMap<String, Vec<Applied>> = HashMap::new();
        let mut governed: HashMap<String, Vec<&Network>> = HashMap::new();
        let mut order: Vec<(String, Attachment)> = Vec::new();
        for (l, a) in self.attachments() {
            if skip.contains(&l.policy.id) {
                continue;
            }
            let nets = governed.entry(l.policy.id.clone()).or_default();
            match &a.network_id {
                None => nets.extend(inputs.networks.iter().copied()),
                Some(id) => nets.extend(inputs.networks.iter().copied().filter(|n| &n.id == id)),
            }
            order.push((l.policy.id.clone(), a.clone()));
        }
        let mut decisions: HashMap<String, HashMap<String, NetworkDecision>> = HashMap::new();
        for (policy, nets) in &mut governed {
            nets.sort_by(|a, b| a.id.cmp(&b.id));
            nets.dedup_by(|a, b| a.id == b.id);
            let wit: Vec<_> = nets.iter().map(|n| input::network(n)).collect();
            let module = self.module(policy);
            let got = module.evaluate(&wit).map_err(|e| self.failed(policy, e))?;
            decisions.insert(
                policy.clone(),
                got.into_iter().map(|d| (d.network_id.clone(), d)).collect(),
            );
        }
        for (policy, a) in order {
            let name = self.loaded[&policy].policy.name.clone();
            for n in &governed[&policy] {
                if a.network_id.as_ref().is_some_and(|id| id != &n.id) {
                    continue;
                }
                let decision =
                    decisions[&policy]
                        .get(&n.id)
                        .cloned()
                        .unwrap_or_else(|| NetworkDecision {
                            network_id: n.id.clone(),
                            ..Default::default()
                        });
                let list = networks.entry(n.id.clone()).or_default();
                // A policy attached both globally and to the network counts once (first wins).
                if !list.iter().any(|x| x.policy_id == policy) {
                    list.push(Applied {
                        policy_id: policy.clone(),
                        policy_name: name.clone(),
                        audit: a.audit,
                        decision,
                    });
                }
            }
        }
        plan.networks = Arc::new(networks);
        let by_id: HashMap<&str, &Network> = inputs
            .networks
            .iter()
            .map(|n| (n.id.as_str(), *n))
            .collect();
        if let Some(members) = &inputs.members {
            plan.members = members.clone();
            return Ok(plan);
        }
        for e in &inputs.endpoints {
            let Some(n) = by_id.get(e.network_id.as_str()) else {
                continue;
            };
            let groups = self.classify(&plan, e, n, &(inputs.sandbox_labels)(&e.sandbox_id))?;
            let members = memberships(&groups);
            if !members.is_empty() {
                plan.members.insert(e.id.clone(), members);
            }
        }
        Ok(plan)
    }

    fn module(&self, policy: &str) -> Arc<Module> {
        self.loaded[policy]
            .module
            .clone()
            .expect("only loaded policies are attached in a plan")
    }

    /// Each governing policy's decision for one endpoint of `n`, in the plan's order.
    pub fn classify(
        &mut self,
        plan: &Plan,
        e: &Endpoint,
        n: &Network,
        sandbox_labels: &Labels,
    ) -> Result<Vec<(Applied, EndpointDecision)>> {
        let Some(applied) = plan.governs(&n.id) else {
            return Ok(vec![]);
        };
        let (we, wn) = (input::endpoint(e, sandbox_labels), input::network(n));
        let mut out = Vec::new();
        for a in applied.iter().cloned() {
            let module = self.module(&a.policy_id);
            let d = module
                .classify(&we, &wn)
                .map_err(|err| self.failed(&a.policy_id, err))?;
            out.push((a, d));
        }
        Ok(out)
    }
}

/// (policy id, group) pairs of an endpoint's decisions.
pub(crate) fn memberships(decisions: &[(Applied, EndpointDecision)]) -> Vec<(String, String)> {
    decisions
        .iter()
        .flat_map(|(a, d)| {
            d.groups
                .iter()
                .map(move |g| (a.policy_id.clone(), g.clone()))
        })
        .collect()
}
