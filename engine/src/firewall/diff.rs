//! The change from one ruleset to the next as one small nft transaction: what a network create
//! or delete needs (its chain, its dispatch and set elements), rather than the whole table
//! replaced. Pure; the backend falls back to a replacement when no diff applies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::ruleset::{Chain, Ruleset, Set, Table};

/// The script turning `a` into `b` (empty when they are the same), or `None` when only a
/// replacement will do: other tables, or a set's type or a base chain's hook changed.
pub fn script(a: &Ruleset, b: &Ruleset) -> Option<String> {
    if a.tables.len() != b.tables.len() {
        return None;
    }
    let mut out = Steps::default();
    for (ta, tb) in a.tables.iter().zip(&b.tables) {
        if (ta.family, &ta.name) != (tb.family, &tb.name) {
            return None;
        }
        table(ta, tb, &mut out)?;
    }
    Some(out.render())
}

/// The statements in the order one transaction needs them: what is referenced exists before
/// what references it, and goes after it.
#[derive(Default)]
struct Steps {
    add_sets: Vec<String>,
    add_chains: Vec<String>,
    flush_chains: Vec<String>,
    delete_elements: Vec<String>,
    add_rules: Vec<String>,
    add_elements: Vec<String>,
    delete_chains: Vec<String>,
    delete_sets: Vec<String>,
}

impl Steps {
    fn render(self) -> String {
        [
            self.add_sets,
            self.add_chains,
            self.flush_chains,
            self.delete_elements,
            self.add_rules,
            self.add_elements,
            self.delete_chains,
            self.delete_sets,
        ]
        .concat()
        .into_iter()
        .fold(String::new(), |mut s, line| {
            let _ = writeln!(s, "{line}");
            s
        })
    }
}

fn kind(s: &Set) -> &'static str {
    if s.spec.contains(':') {
        "map"
    } else {
        "set"
    }
}

fn table(a: &Table, b: &Table, out: &mut Steps) -> Option<()> {
    let at = format!("{} {}", a.family.as_str(), a.name);
    let sets_a: BTreeMap<&str, &Set> = a.sets.iter().map(|s| (s.name.as_str(), s)).collect();
    let sets_b: BTreeMap<&str, &Set> = b.sets.iter().map(|s| (s.name.as_str(), s)).collect();
    for (name, sb) in &sets_b {
        let before = sets_a.get(name);
        if before.is_some_and(|sa| sa.spec != sb.spec) {
            return None;
        }
        if before.is_none() {
            out.add_sets
                .push(format!("add {} {at} {name} {{ {} }}", kind(sb), sb.spec));
        }
        elements(&at, before.copied(), sb, out);
    }
    for (name, sa) in &sets_a {
        if !sets_b.contains_key(name) {
            out.delete_sets
                .push(format!("delete {} {at} {name}", kind(sa)));
        }
    }
    chains(&at, a, b, out)
}

fn elements(at: &str, a: Option<&Set>, b: &Set, out: &mut Steps) {
    let old: BTreeSet<&str> = a
        .iter()
        .flat_map(|s| &s.elements)
        .map(String::as_str)
        .collect();
    let new: BTreeSet<&str> = b.elements.iter().map(String::as_str).collect();
    let set = &b.name;
    for e in old.difference(&new) {
        // A map's element is deleted by its key.
        let key = e.split(" : ").next().unwrap_or(e);
        out.delete_elements
            .push(format!("delete element {at} {set} {{ {key} }}"));
    }
    let added: Vec<&str> = new.difference(&old).copied().collect();
    if !added.is_empty() {
        let list = added.join(", ");
        out.add_elements
            .push(format!("add element {at} {set} {{ {list} }}"));
    }
}

fn chains(at: &str, a: &Table, b: &Table, out: &mut Steps) -> Option<()> {
    let old: BTreeMap<&str, &Chain> = a.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let new: BTreeMap<&str, &Chain> = b.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    for (name, cb) in &new {
        match old.get(name) {
            Some(ca) if ca.hook != cb.hook => return None,
            Some(ca) if ca.rules == cb.rules => continue,
            Some(_) => out.flush_chains.push(format!("flush chain {at} {name}")),
            None => out.add_chains.push(match &cb.hook {
                Some(h) => format!("add chain {at} {name} {{ {h} }}"),
                None => format!("add chain {at} {name}"),
            }),
        }
        for r in &cb.rules {
            out.add_rules
                .push(format!("add rule {at} {name} {}", r.text));
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        // Emptied first: a chain's own rules may jump to another going too.
        out.flush_chains.push(format!("flush chain {at} {name}"));
        out.delete_chains.push(format!("delete chain {at} {name}"));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::ruleset::{Family, Line};

    fn ruleset(nets: &[&str]) -> Ruleset {
        let mut t = Table::new(Family::Inet, "wasmnet");
        let dispatch = nets
            .iter()
            .map(|n| format!("\"br{n}\" : goto net_{n}"))
            .collect();
        t.set("from_bridge", "type ifname : verdict;", dispatch);
        t.set(
            "bridges",
            "type ifname;",
            nets.iter().map(|n| format!("\"br{n}\"")).collect(),
        );
        let hook = "type filter hook forward priority filter; policy accept;";
        t.chain(
            "forward",
            Some(hook),
            vec![Line::from("iifname vmap @from_bridge")],
        );
        for n in nets {
            t.chain(
                &format!("net_{n}"),
                None,
                vec![Line::from("counter accept")],
            );
        }
        Ruleset { tables: vec![t] }
    }

    #[test]
    fn a_new_network_adds_its_chain_before_the_element_naming_it() {
        let s = script(&ruleset(&["a"]), &ruleset(&["a", "b"])).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            [
                "add chain inet wasmnet net_b",
                "add rule inet wasmnet net_b counter accept",
                "add element inet wasmnet bridges { \"brb\" }",
                "add element inet wasmnet from_bridge { \"brb\" : goto net_b }",
            ],
            "{s}"
        );
    }

    #[test]
    fn a_deleted_network_goes_after_the_element_naming_it() {
        let s = script(&ruleset(&["a", "b"]), &ruleset(&["a"])).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            [
                "flush chain inet wasmnet net_b",
                "delete element inet wasmnet bridges { \"brb\" }",
                "delete element inet wasmnet from_bridge { \"brb\" }",
                "delete chain inet wasmnet net_b",
            ],
            "{s}"
        );
        assert_eq!(script(&ruleset(&["a"]), &ruleset(&["a"])).unwrap(), "");
    }

    #[test]
    fn changed_rules_are_rewritten_and_changed_types_refused() {
        let a = ruleset(&["a"]);
        let mut b = a.clone();
        b.tables[0].chains[1].rules.push(Line::from("counter drop"));
        let s = script(&a, &b).unwrap();
        assert!(s.starts_with("flush chain inet wasmnet net_a\n"), "{s}");
        assert!(
            s.contains("add rule inet wasmnet net_a counter drop"),
            "{s}"
        );
        let mut c = a.clone();
        c.tables[0].sets[1].spec = "type ipv4_addr;".into();
        assert_eq!(script(&a, &c), None);
        let mut d = a.clone();
        d.tables[0].chains[0].hook = Some("type filter hook input priority 0;".into());
        assert_eq!(script(&a, &d), None);
    }
}
