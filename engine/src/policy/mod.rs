//! Policies inside the engine: what is uploaded and attached (the store holds it), the loaded
//! modules, and the plan their decisions add up to (what the firewall compiles).
//!
//! Composition: the policies governing a network are its own attachments and the global ones,
//! ordered by priority (lower first, then by name). Their rules are tried in that order and the
//! first match decides; for what no rule decides, the first policy (not in audit mode) with a
//! default decides, then Docker's semantics. NAT choices follow the same order. For published
//! ports the first refusal or remap wins. An audit-mode attachment decides nothing: its
//! would-be drops are counted and logged.

mod checks;
mod input;
pub mod offline;

use std::collections::HashMap;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmnet_policy::ir::{EndpointDecision, NetworkDecision};
use wasmnet_policy::Module;

use crate::error::{Error, Result};
pub use crate::firewall::policy::{Applied, Members, Plan};
use crate::model::{Endpoint, Labels, Network};

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
#[derive(Clone)]
pub(crate) struct Loaded {
    pub policy: Policy,
    pub module: Option<Arc<Module>>,
    /// Published to the cluster store (see migration 0003).
    pub shared: bool,
}

/// The policies part of the committed state: what is stored and loaded, and the plan their
/// decisions add up to (what the firewall compiles). A value: the writer changes a copy.
#[derive(Clone, Default)]
pub(crate) struct PolicySet {
    pub loaded: OrdMap<String, Arc<Loaded>>,
    /// The decisions in force per network, and each endpoint's groups.
    pub plan: Plan,
    /// The iptables backend enforces the plan: it has no address sets with timeouts, so rules
    /// with `fqdn` peers are refused rather than left matching nothing.
    pub iptables: bool,
}

/// A policy that failed when called: which, and how.
#[derive(Debug)]
pub(crate) struct Failure {
    pub id: String,
    pub name: String,
    pub error: wasmnet_policy::PolicyError,
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Error {
        Error::Policy {
            policy: f.name,
            error: f.error,
        }
    }
}

/// The state a plan is computed from.
pub(crate) struct Inputs<'a> {
    pub networks: Vec<&'a Network>,
    pub endpoints: Vec<&'a Endpoint>,
    pub sandbox_labels: &'a dyn Fn(&str) -> Labels,
    /// Groups known to be unchanged (a network was added: no endpoint's governing policies
    /// changed), so only the whole-view calls are made.
    pub members: Option<Members>,
}

impl PolicySet {
    /// By id, name, or unique id prefix (at least 4 characters).
    pub fn resolve(&self, reference: &str) -> Result<&Loaded> {
        let found = self
            .loaded
            .get(reference)
            .or_else(|| self.loaded.values().find(|l| l.policy.name == reference));
        if let Some(l) = found {
            return Ok(l);
        }
        let mut matches = self
            .loaded
            .iter()
            .filter(|(id, _)| reference.len() >= 4 && id.starts_with(reference));
        match (matches.next(), matches.next()) {
            (Some((_, l)), None) => Ok(l),
            (Some(_), Some(_)) => Err(Error::conflict(
                "ambiguous",
                format!("policy id prefix {reference:?} is ambiguous"),
            )),
            _ => Err(Error::not_found(crate::error::Kind::Policy, reference)),
        }
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.loaded.values().any(|l| l.policy.name == name)
    }

    /// Changes one loaded policy (copied: the state in force keeps its own).
    pub fn update(&mut self, id: &str, f: impl FnOnce(&mut Loaded)) {
        if let Some(l) = self.loaded.get(id) {
            let mut l = Loaded::clone(l);
            f(&mut l);
            self.loaded.insert(id.to_string(), Arc::new(l));
        }
    }

    /// Whether a group's sets exist already (a rule names it, or an endpoint is in it).
    pub fn has_group(&self, key: &(String, String)) -> bool {
        self.plan.has_group(key)
    }

    /// Attachments in force: (policy id, attachment), for loaded policies.
    fn attachments(&self) -> Vec<(&Loaded, &Attachment)> {
        let mut out: Vec<(&Loaded, &Attachment)> = self
            .loaded
            .values()
            .filter(|l| l.module.is_some())
            .flat_map(|l| l.policy.attachments.iter().map(move |a| (l.as_ref(), a)))
            .collect();
        out.sort_by(|a, b| (a.1.priority, &a.0.policy.name).cmp(&(b.1.priority, &b.0.policy.name)));
        out
    }

    /// The plan for this state: every governing policy evaluated (whole view) and every
    /// governed endpoint classified. The first failure is the error; `skip` leaves policies
    /// out (those known to fail, at start). Calls into Wasm: run it on a blocking thread.
    pub fn compute(&self, inputs: &Inputs<'_>, skip: &[String]) -> Result<Plan, Failure> {
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
        let decisions = self.evaluate_all(&mut governed, &inputs.networks)?;
        let mut plan = Plan {
            networks: Arc::new(self.applied(&order, &governed, &decisions)),
            ..Default::default()
        };
        if let Some(members) = &inputs.members {
            plan.members = members.clone();
            return Ok(plan);
        }
        let by_id: HashMap<&str, &Network> = inputs
            .networks
            .iter()
            .map(|n| (n.id.as_str(), *n))
            .collect();
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
        self.fits(&plan, &[])?;
        Ok(plan)
    }

    /// Refuses a plan (with `extra`, the groups of an endpoint about to join) in which two
    /// groups would share an address set, rather than merging them in the kernel, or which
    /// compiles to more than a policy's budget of rules, groups and memberships.
    pub fn fits(&self, plan: &Plan, extra: &[(String, String)]) -> Result<(), Failure> {
        use crate::firewall::budget;
        let groups = plan.groups();
        let all = groups.iter().chain(extra);
        if let Some((a, b)) = crate::names::group_set_collision(all.map(|(p, g)| (&**p, &**g))) {
            return Err(self.clash(a.1, &(b.0.to_string(), b.1.to_string())));
        }
        budget::check(plan, extra, &budget::BUDGET).map_err(|over| self.over_budget(over))
    }

    /// As `fits`, for an endpoint joining with `extra` groups (or classified again: `plan`
    /// without it): lookups in the plan's index of groups, not a walk over every group. (A
    /// group a rule names was checked with the whole plan, when the rules were computed.)
    pub fn fits_join(&self, plan: &Plan, extra: &[(String, String)]) -> Result<(), Failure> {
        let mut seen: HashMap<String, &(String, String)> = HashMap::new();
        for g in extra.iter().filter(|g| !plan.members.in_use(g)) {
            let name = crate::names::group_set(&g.0, &g.1, false);
            let taken = plan.members.owner(&name).or(seen.get(&name).copied());
            if let Some(other) = taken.filter(|o| *o != g) {
                return Err(self.clash(&other.1, g));
            }
            seen.insert(name, g);
        }
        use crate::firewall::budget;
        budget::check_join(plan, extra, &budget::BUDGET).map_err(|over| self.over_budget(over))
    }

    fn over_budget(&self, over: crate::firewall::budget::Over) -> Failure {
        let error = wasmnet_policy::PolicyError::BadOutput {
            function: over.function,
            reason: over.reason,
        };
        self.failure(&over.policy_id, error)
    }

    fn clash(&self, a: &str, b: &(String, String)) -> Failure {
        let error = wasmnet_policy::PolicyError::BadOutput {
            function: "classify",
            reason: format!(
                "groups {a:?} and {:?} would share one address set (refused, not merged)",
                b.1
            ),
        };
        self.failure(&b.0, error)
    }

    /// Each governing policy's whole-view decisions, by policy and network id.
    /// An answer that would silently change what is enforced (see `checks`) fails the policy.
    fn evaluate_all(
        &self,
        governed: &mut HashMap<String, Vec<&Network>>,
        all: &[&Network],
    ) -> Result<HashMap<String, HashMap<String, NetworkDecision>>, Failure> {
        let mut decisions = HashMap::new();
        for (policy, nets) in governed.iter_mut() {
            nets.sort_by(|a, b| a.id.cmp(&b.id));
            nets.dedup_by(|a, b| a.id == b.id);
            let wit: Vec<_> = nets.iter().map(|n| input::network(n)).collect();
            let module = self.module(policy);
            let name = &self.loaded[policy].policy.name;
            let got = crate::metrics::policy_call(name, "evaluate", || module.evaluate(&wit))
                .map_err(|e| self.failure(policy, e))?;
            checks::decisions(&got, nets, all, self.iptables).map_err(|reason| {
                let error = wasmnet_policy::PolicyError::BadOutput {
                    function: "evaluate",
                    reason,
                };
                self.failure(policy, error)
            })?;
            decisions.insert(
                policy.clone(),
                got.into_iter().map(|d| (d.network_id.clone(), d)).collect(),
            );
        }
        Ok(decisions)
    }

    /// Per governed network, its policies' decisions in priority order.
    fn applied(
        &self,
        order: &[(String, Attachment)],
        governed: &HashMap<String, Vec<&Network>>,
        decisions: &HashMap<String, HashMap<String, NetworkDecision>>,
    ) -> HashMap<String, Vec<Applied>> {
        let mut networks: HashMap<String, Vec<Applied>> = HashMap::new();
        for (policy, a) in order {
            let name = &self.loaded[policy].policy.name;
            for n in &governed[policy] {
                if a.network_id.as_ref().is_some_and(|id| id != &n.id) {
                    continue;
                }
                let decision =
                    decisions[policy]
                        .get(&n.id)
                        .cloned()
                        .unwrap_or_else(|| NetworkDecision {
                            network_id: n.id.clone(),
                            ..Default::default()
                        });
                let list = networks.entry(n.id.clone()).or_default();
                // A policy attached both globally and to the network counts once (first wins).
                if !list.iter().any(|x| &x.policy_id == policy) {
                    list.push(Applied {
                        policy_id: policy.clone(),
                        policy_name: name.clone(),
                        audit: a.audit,
                        decision,
                    });
                }
            }
        }
        networks
    }

    fn module(&self, policy: &str) -> Arc<Module> {
        self.loaded[policy]
            .module
            .clone()
            .expect("only loaded policies are attached in a plan")
    }

    fn failure(&self, id: &str, error: wasmnet_policy::PolicyError) -> Failure {
        let name = self
            .loaded
            .get(id)
            .map_or(id.to_string(), |l| l.policy.name.clone());
        Failure {
            id: id.to_string(),
            name,
            error,
        }
    }

    /// Each governing policy's decision for one endpoint of `n`, in the plan's order.
    pub fn classify(
        &self,
        plan: &Plan,
        e: &Endpoint,
        n: &Network,
        sandbox_labels: &Labels,
    ) -> Result<Vec<(Applied, EndpointDecision)>, Failure> {
        let Some(applied) = plan.governs(&n.id) else {
            return Ok(vec![]);
        };
        let (we, wn) = (input::endpoint(e, sandbox_labels), input::network(n));
        let mut out = Vec::new();
        for a in applied.iter().cloned() {
            let module = self.module(&a.policy_id);
            let d = crate::metrics::policy_call(&a.policy_name, "classify", || {
                module.classify(&we, &wn)
            })
            .map_err(|err| self.failure(&a.policy_id, err))?;
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
