//! Reads of the firewall: the ruleset in force, a policy's dry run and its counters.

use serde::Serialize;
use utoipa::ToSchema;

use super::policies::with_attachment;
use super::Engine;
use crate::error::{Error, Result};
use crate::firewall::{Backend, ChainView};
use crate::policy::{AttachRequest, Attachment};

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
    pub backend: Backend,
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

impl Engine {
    /// Every attached policy's packet counts per network: its own chains' rules, and the
    /// network chain's defaults it decided (nothing is listed when no policy is attached).
    pub async fn policy_packets(&self) -> Result<Vec<crate::metrics::PolicyPackets>> {
        let state = self.state();
        let attached: Vec<_> = (state.policies.loaded.values())
            .filter(|l| !l.policy.attachments.is_empty())
            .map(|l| (l.policy.id.clone(), l.policy.name.clone()))
            .collect();
        if attached.is_empty() {
            return Ok(Vec::new());
        }
        let chains = self.firewall_chains().await?;
        let networks: Vec<_> = state.view().networks().iter_from(None).collect();
        let mut out = Vec::new();
        for (id, name) in &attached {
            for c in &chains {
                let own = crate::names::policy_chain_network(id, &c.chain);
                let default = c.chain.strip_prefix("net_");
                let Some(n) = (own.or(default))
                    .and_then(|net| networks.iter().find(|n| n.id.starts_with(net)))
                else {
                    continue;
                };
                let decided = |r: &crate::firewall::RuleView| match &r.tag {
                    Some(crate::firewall::rules::Tag::Default { policy }) => policy == id,
                    _ => own.is_some(),
                };
                let rules: Vec<_> = c.rules.iter().filter(|r| decided(r)).collect();
                if own.is_some() || !rules.is_empty() {
                    out.push(packets_of(name, &n.name, rules.into_iter()));
                }
            }
        }
        Ok(out)
    }

    /// Forces wasmnet's rules back to what the store says (`wasmnet firewall reload`).
    pub async fn reload_firewall(&self) -> Result<()> {
        let _writer = self.lock_writer().await;
        self.firewall_apply(self.state().desired()).await?;
        self.update(|_| {});
        Ok(())
    }

    /// The chains in force, with the kernel's per-rule counters where the backend keeps them.
    pub async fn firewall_chains(&self) -> Result<Vec<ChainView>> {
        let fw = self.firewall.clone();
        let desired = self.state().desired();
        let listed = tokio::task::spawn_blocking(move || fw.chains(&desired)).await;
        listed
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)
    }

    /// The rules in force, in the backend's own syntax.
    pub fn firewall_text(&self) -> String {
        self.firewall.render(&self.state().desired())
    }

    /// Bumped at every change put in the firewall.
    pub fn generation(&self) -> u64 {
        self.state().generation()
    }

    pub fn firewall_backend(&self) -> Backend {
        self.firewall.kind()
    }

    pub async fn ruleset(&self) -> Result<Ruleset> {
        let state = self.state();
        Ok(Ruleset {
            backend: self.firewall_backend(),
            generation: state.generation(),
            text: self.firewall.render(&state.desired()),
            chains: self.firewall_chains().await?,
        })
    }

    /// The ruleset with the policy attached as asked (by default where it is attached, or
    /// globally), and its diff against the ruleset in force. Nothing changes.
    pub async fn dry_run(&self, reference: &str, req: Option<AttachRequest>) -> Result<DryRun> {
        let _writer = self.lock_writer().await;
        let base = self.state();
        let policy = self.loaded_policy(&base, reference)?;
        let wanted = match req {
            Some(r) => {
                let network_id = match &r.network {
                    Some(n) => Some(base.view().networks().resolve(n)?.id.clone()),
                    None => None,
                };
                let a = Attachment {
                    network_id,
                    priority: r.priority,
                    audit: r.audit,
                    created: String::new(),
                };
                with_attachment(&policy.attachments, a)
            }
            None if policy.attachments.is_empty() => vec![Attachment {
                network_id: None,
                priority: 100,
                audit: false,
                created: String::new(),
            }],
            None => policy.attachments.clone(),
        };
        let id = policy.id.clone();
        let plan = self.plan_with_attachments(&base, &id, wanted).await?;
        let now = self.firewall.render(&base.desired());
        let then = self.firewall.render(&base.desired_with(None, None, plan));
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
        let chains = self.firewall_chains().await?;
        let state = self.state();
        let mut out = Vec::new();
        for c in &chains {
            let Some(net) = crate::names::policy_chain_network(&policy.id, &c.chain) else {
                continue;
            };
            let Some(n) = state
                .view()
                .networks()
                .iter_from(None)
                .find(|n| n.id.starts_with(net))
            else {
                continue;
            };
            let sum = |audit: bool| {
                c.rules
                    .iter()
                    .filter(|r| r.is_audit() == audit)
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
}

/// The packets of `rules` (a policy's on one network): matched, dropped, would-be dropped.
fn packets_of<'a>(
    policy: &str,
    network: &str,
    rules: impl Iterator<Item = &'a crate::firewall::RuleView>,
) -> crate::metrics::PolicyPackets {
    let mut p = crate::metrics::PolicyPackets {
        policy: policy.to_string(),
        network: network.to_string(),
        matched: 0,
        dropped: 0,
        would_drop: 0,
    };
    for r in rules {
        let Some((packets, _)) = r.counters else {
            continue;
        };
        if r.is_audit() {
            p.would_drop += packets;
            continue;
        }
        p.matched += packets;
        if r.is_drop() {
            p.dropped += packets;
        }
    }
    p
}
