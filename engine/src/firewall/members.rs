//! Which groups the policies put each endpoint in, indexed the other way too: how many
//! endpoints each group has, how many groups and memberships each policy has, and which group
//! owns each set name. A join asks "is this group new?", "does its set name clash?" and "is
//! the policy over budget?"; with the index those are lookups, where walking every endpoint
//! made a join under a group-per-endpoint policy slower with every endpoint.

use crate::names::group_set;

/// A (policy id, group) pair.
pub type Group = (String, String);

/// Persistent maps: the engine's state copies this at every join, for the cost of the path
/// the join changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Members {
    of: imbl::HashMap<String, Vec<Group>>,
    /// Endpoints per group (groups with none are not kept).
    counts: imbl::HashMap<Group, usize>,
    /// Per policy: (groups in use, memberships).
    per_policy: imbl::HashMap<String, (usize, usize)>,
    /// The group each IPv4 set name is for (the IPv6 name differs only in its suffix).
    owners: imbl::HashMap<String, Group>,
}

impl Members {
    /// Puts endpoint `e` in `groups` (replacing what it was in).
    pub fn insert(&mut self, e: String, groups: Vec<Group>) {
        self.remove(&e);
        for g in &groups {
            self.count(g, true);
        }
        self.of.insert(e, groups);
    }

    /// Takes endpoint `e` out of its groups; returns them.
    pub fn remove(&mut self, e: &str) -> Option<Vec<Group>> {
        let groups = self.of.remove(e)?;
        for g in &groups {
            self.count(g, false);
        }
        Some(groups)
    }

    fn count(&mut self, g: &Group, add: bool) {
        let n = self.counts.get(g).copied().unwrap_or(0);
        let policy = self.per_policy.entry(g.0.clone()).or_default();
        match (add, n) {
            (true, 0) => {
                policy.0 += 1;
                self.owners.insert(group_set(&g.0, &g.1, false), g.clone());
            }
            (false, 1) => {
                policy.0 -= 1;
                self.owners.remove(&group_set(&g.0, &g.1, false));
            }
            _ => {}
        }
        match add {
            true => policy.1 += 1,
            false => policy.1 = policy.1.saturating_sub(1),
        }
        let next = if add { n + 1 } else { n.saturating_sub(1) };
        match next {
            0 => self.counts.remove(g),
            n => self.counts.insert(g.clone(), n),
        };
    }

    pub fn get(&self, e: &str) -> Option<&Vec<Group>> {
        self.of.get(e)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<Group>)> {
        self.of.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &Vec<Group>> {
        self.of.values()
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// Whether some endpoint is in group `g`.
    pub fn in_use(&self, g: &Group) -> bool {
        self.counts.contains_key(g)
    }

    /// Every group some endpoint is in.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.counts.keys()
    }

    /// (groups in use, memberships) of a policy.
    pub fn of_policy(&self, policy: &str) -> (usize, usize) {
        self.per_policy.get(policy).copied().unwrap_or_default()
    }

    /// The group in use whose IPv4 set is called `name`.
    pub fn owner(&self, name: &str) -> Option<&Group> {
        self.owners.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, g: &str) -> Group {
        (p.repeat(64), g.to_string())
    }

    #[test]
    fn the_index_follows_joins_and_leaves() {
        let mut m = Members::default();
        m.insert("e1".into(), vec![g("7", "web"), g("8", "a")]);
        m.insert("e2".into(), vec![g("7", "web")]);
        assert!(m.in_use(&g("7", "web")));
        assert_eq!(m.of_policy(&"7".repeat(64)), (1, 2));
        let name = group_set(&"7".repeat(64), "web", false);
        assert_eq!(m.owner(&name), Some(&g("7", "web")));
        // Re-inserting replaces.
        m.insert("e1".into(), vec![g("7", "db")]);
        assert!(!m.in_use(&g("8", "a")));
        assert_eq!(m.of_policy(&"7".repeat(64)), (2, 2));
        assert_eq!(m.remove("e2"), Some(vec![g("7", "web")]));
        assert!(!m.in_use(&g("7", "web")));
        assert_eq!(m.owner(&name), None);
        assert_eq!(m.groups().count(), 1);
        assert_eq!(m.remove("nope"), None);
    }
}
