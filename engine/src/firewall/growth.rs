//! What a join adds to the inet table when it brings a group that is new, so that it need
//! not replace the table: see `Growth`.

use super::policy::{
    applies_to, group, same_group_chain, same_group_families, same_group_rule, Plan,
};
use super::rules::{ChainId, Fam, Rule, SetId};
use crate::model::Network;
use wasmnet_policy::ir::Peer;

/// What a join adds to the inet table when it brings groups that are new: their sets (empty:
/// the endpoint's elements follow), and a rule for each in every `same-group` chain of their
/// policy. One transaction that changes nothing existing, so a policy giving every endpoint
/// a group of its own still joins incrementally.
#[derive(Debug, Default, PartialEq)]
pub struct Growth {
    pub sets: Vec<SetId>,
    pub rules: Vec<(ChainId, Rule)>,
}

/// The growth for an endpoint joining with `members`; None when the table must be replaced
/// instead (an audit-mode attachment keeps its `same-group` rules inline).
pub fn growth(plan: &Plan, networks: &[&Network], members: &[(String, String)]) -> Option<Growth> {
    let new: Vec<&(String, String)> = members.iter().filter(|m| !plan.has_group(m)).collect();
    let mut out = Growth::default();
    for (policy, g) in &new {
        for fam in [Fam::V4, Fam::V6] {
            out.sets.push(group(policy, g, fam));
        }
    }
    for (network, applied) in plan.networks.iter() {
        for a in applied {
            let mine: Vec<&str> = (new.iter())
                .filter(|(p, _)| *p == a.policy_id)
                .map(|(_, g)| g.as_str())
                .collect();
            for (i, r) in a.decision.rules.iter().enumerate() {
                if mine.is_empty() || r.to != Peer::SameGroup {
                    continue;
                }
                if a.audit {
                    return None;
                }
                if !applies_to(r, network, networks) {
                    continue;
                }
                for &fam in same_group_families(r) {
                    let chain = same_group_chain(&a.policy_id, network, i, fam);
                    for g in &mine {
                        out.rules
                            .push((chain.clone(), same_group_rule(network, a, r, g, fam)));
                    }
                }
            }
        }
    }
    Some(out)
}
