//! What one policy may cost the kernel, counted on the plan before anything is applied. The
//! output limits bound what a policy answers; this bounds what the answer compiles to, which
//! can be far larger: a `same-group` rule is one firewall rule per group and family, so 1,000
//! rules over 64 groups were 128,000 nft rules for one endpoint. A plan over budget is
//! refused, naming the policy, the network and what ran over.

use std::collections::HashMap;

use wasmnet_policy::ir::{Peer, Protocol, Rule};

use super::policy::Plan;

/// The most one policy may compile to.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Firewall rules of one policy in one network's chain.
    pub rules_per_network: usize,
    /// Groups of one policy (each is an address set per family).
    pub groups: usize,
    /// Memberships of one policy's groups (each is a set element per address).
    pub members: usize,
}

pub const BUDGET: Budget = Budget {
    rules_per_network: 20_000,
    groups: 4_096,
    members: 100_000,
};

/// Which policy ran over, and how (a reason for its author).
#[derive(Debug, PartialEq)]
pub struct Over {
    pub policy_id: String,
    /// `evaluate` when its rules ran over, `classify` when its groups did.
    pub function: &'static str,
    pub reason: String,
}

/// Checks every policy of `plan`, with `extra` (an endpoint about to join: its groups) added.
pub fn check(plan: &Plan, extra: &[(String, String)], budget: &Budget) -> Result<(), Over> {
    let in_use = plan.groups();
    let mut groups: HashMap<&str, usize> = HashMap::new();
    for (policy, _) in in_use.iter().chain(extra) {
        *groups.entry(policy.as_str()).or_default() += 1;
    }
    // (`groups()` holds each pair once; an extra pair already in use is counted twice, which
    // errs on the safe side by one.)
    let mut members: HashMap<&str, usize> = HashMap::new();
    for (policy, _) in plan.members.values().flatten().chain(extra) {
        *members.entry(policy.as_str()).or_default() += 1;
    }
    for (policy, &n) in &groups {
        over(policy, "classify", n, budget.groups, "groups")?;
    }
    for (policy, &n) in &members {
        over(policy, "classify", n, budget.members, "group memberships")?;
    }
    let mut networks: Vec<_> = plan.networks.iter().collect();
    networks.sort_by(|a, b| a.0.cmp(b.0));
    for (network, applied) in networks {
        for a in applied {
            let g = groups.get(a.policy_id.as_str()).copied().unwrap_or(0);
            let n: usize = a.decision.rules.iter().map(|r| lowered(r, g)).sum();
            let what = format!("firewall rules in network {}", &network[..12]);
            over(&a.policy_id, "evaluate", n, budget.rules_per_network, &what)?;
        }
    }
    Ok(())
}

/// As `check`, for one endpoint joining with `extra` groups: from the plan's index of groups
/// and the policies' rules, without walking every endpoint (a group a rule names counts as
/// one more, which errs on the safe side).
pub fn check_join(plan: &Plan, extra: &[(String, String)], budget: &Budget) -> Result<(), Over> {
    let mut policies: Vec<&str> = extra.iter().map(|(p, _)| p.as_str()).collect();
    policies.sort_unstable();
    policies.dedup();
    for policy in policies {
        let mine = || extra.iter().filter(move |(p, _)| p == policy);
        let (groups, members) = plan.members.of_policy(policy);
        let groups = groups + mine().filter(|g| !plan.members.in_use(g)).count();
        over(policy, "classify", groups, budget.groups, "groups")?;
        let members = members + mine().count();
        over(
            policy,
            "classify",
            members,
            budget.members,
            "group memberships",
        )?;
        let mut networks: Vec<_> = plan.networks.iter().collect();
        networks.sort_by(|a, b| a.0.cmp(b.0));
        for (network, applied) in networks {
            for a in applied.iter().filter(|a| a.policy_id == policy) {
                let rules = &a.decision.rules;
                let named = rules.iter().filter(|r| names_group(r)).count();
                let n: usize = rules.iter().map(|r| lowered(r, groups + named)).sum();
                let what = format!("firewall rules in network {}", &network[..12]);
                over(policy, "evaluate", n, budget.rules_per_network, &what)?;
            }
        }
    }
    Ok(())
}

fn names_group(r: &Rule) -> bool {
    matches!(r.from, Peer::Group(_)) || matches!(r.to, Peer::Group(_))
}

fn over(
    policy: &str,
    function: &'static str,
    n: usize,
    max: usize,
    what: &str,
) -> Result<(), Over> {
    if n <= max {
        return Ok(());
    }
    Err(Over {
        policy_id: policy.to_string(),
        function,
        reason: format!(
            "the decisions compile to {n} {what}, more than the budget of {max} (a same-group rule is one per group and family)"
        ),
    })
}

/// How many firewall rules one policy rule becomes, with `groups` groups in its policy.
fn lowered(r: &Rule, groups: usize) -> usize {
    let pinned = |p: &Peer| {
        matches!(
            p,
            Peer::Group(_) | Peer::SameGroup | Peer::Cidr(_) | Peer::Fqdn(_)
        )
    };
    let families = if pinned(&r.from) || pinned(&r.to) || r.protocol == Some(Protocol::Icmp) {
        2
    } else {
        1
    };
    match r.to {
        Peer::SameGroup => families * groups,
        _ => families,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::sample;

    #[test]
    fn the_sample_fits_and_a_same_group_product_does_not() {
        let (_, _, plan) = sample();
        assert_eq!(check(&plan, &[], &BUDGET), Ok(()));
        let tight = Budget {
            rules_per_network: 1,
            ..BUDGET
        };
        let over = check(&plan, &[], &tight).unwrap_err();
        assert_eq!(over.function, "evaluate");
        assert!(
            over.reason.contains("compile to 2 firewall rules"),
            "{over:?}"
        );
        // One more group for policy 7 (same-group): 2 groups x 2 families.
        let tiers = "7".repeat(64);
        let extra = [(tiers.clone(), "tier=y".to_string())];
        let three = Budget {
            rules_per_network: 3,
            ..BUDGET
        };
        let over = check(&plan, &extra, &three).unwrap_err();
        assert_eq!(over.policy_id, tiers);
        assert!(
            over.reason.contains("compile to 4 firewall rules"),
            "{over:?}"
        );
        let few = Budget {
            groups: 1,
            ..BUDGET
        };
        let over = check(&plan, &extra, &few).unwrap_err();
        assert!(over.reason.contains("2 groups"), "{over:?}");
        // The same from the index, as a join checks it.
        let over = check_join(&plan, &extra, &three).unwrap_err();
        assert!(
            over.reason.contains("compile to 4 firewall rules"),
            "{over:?}"
        );
        let over = check_join(&plan, &extra, &few).unwrap_err();
        assert!(over.reason.contains("2 groups"), "{over:?}");
        assert_eq!(check_join(&plan, &extra, &BUDGET), Ok(()));
    }
}
