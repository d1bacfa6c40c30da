//! nftables' side of the rules, after knftables: tables, chains, sets and maps, with each rule
//! a short line of nft syntax (what `render_nft` makes of the neutral rules). Pure: rendering
//! to an nft script is tested without root.

use std::collections::BTreeMap;
use std::fmt::Write;

pub use super::rules::Family;
use super::rules::Tag;

/// A set (`spec` like `type ifname;`) or a map (`type ifname : verdict;`); elements as nft text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub spec: String,
    pub elements: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// For base chains: `type filter hook forward priority filter; policy accept;`.
    pub hook: Option<String>,
    pub rules: Vec<Line>,
}

/// One rule as nft syntax, and what it is for (from the neutral rule it renders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub tag: Option<Tag>,
}

impl From<&str> for Line {
    fn from(text: &str) -> Line {
        Line {
            text: text.to_string(),
            tag: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

/// Everything wasmnet wants in the kernel's firewall: the tables it owns, whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

/// A change to one set's elements: what an endpoint joining or leaving costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Add {
        family: Family,
        table: String,
        set: String,
        element: String,
    },
    Delete {
        family: Family,
        table: String,
        set: String,
        element: String,
    },
}

impl Change {
    /// Adding (`add`) or deleting `element` in set or map `set` of wasmnet's table of `family`.
    pub fn of(add: bool, family: Family, set: &str, element: String) -> Change {
        let (table, set) = (crate::names::TABLE.to_string(), set.to_string());
        if add {
            Change::Add {
                family,
                table,
                set,
                element,
            }
        } else {
            Change::Delete {
                family,
                table,
                set,
                element,
            }
        }
    }
}

/// Rule and element counts per chain and set, to notice when someone else changed our tables.
pub type Fingerprint = BTreeMap<String, usize>;

impl Table {
    pub fn new(family: Family, name: &str) -> Self {
        Table {
            family,
            name: name.to_string(),
            sets: Vec::new(),
            chains: Vec::new(),
        }
    }

    pub fn set(&mut self, name: &str, spec: &str, elements: Vec<String>) {
        self.sets.push(Set {
            name: name.into(),
            spec: spec.into(),
            elements,
        });
    }

    pub fn chain(&mut self, name: &str, hook: Option<&str>, rules: Vec<Line>) {
        self.chains.push(Chain {
            name: name.into(),
            hook: hook.map(Into::into),
            rules,
        });
    }
}

impl Ruleset {
    /// One nft script that replaces each of our tables whole, applied as one transaction:
    /// declaring the table first makes the delete succeed whether or not it existed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let (f, n) = (t.family.as_str(), &t.name);
            let _ = writeln!(out, "table {f} {n}\ndelete table {f} {n}\ntable {f} {n} {{");
            for s in &t.sets {
                let kind = if s.spec.contains(':') { "map" } else { "set" };
                let _ = write!(out, "\t{kind} {} {{\n\t\t{}\n", s.name, s.spec);
                if !s.elements.is_empty() {
                    let _ = writeln!(out, "\t\telements = {{ {} }}", s.elements.join(", "));
                }
                let _ = writeln!(out, "\t}}");
            }
            for c in &t.chains {
                let _ = writeln!(out, "\tchain {} {{", c.name);
                if let Some(h) = &c.hook {
                    let _ = writeln!(out, "\t\t{h}");
                }
                for r in &c.rules {
                    let _ = writeln!(out, "\t\t{}", r.text);
                }
                let _ = writeln!(out, "\t}}");
            }
            let _ = writeln!(out, "}}");
        }
        out
    }

    /// Expected rule and element counts, keyed `family/table/chain` and `family/table/set`.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut fp = Fingerprint::new();
        for t in &self.tables {
            let key = |n: &str| format!("{}/{}/{n}", t.family.as_str(), t.name);
            for c in &t.chains {
                fp.insert(key(&c.name), c.rules.len());
            }
            // A set with timeouts holds what the DNS server put there, not what we declared.
            for s in t.sets.iter().filter(|s| !s.spec.contains("flags timeout")) {
                fp.insert(key(&s.name), s.elements.len());
            }
        }
        fp
    }
}

/// One nft script for a batch of element changes (one transaction).
pub fn render_changes(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        let (verb, family, table, set, element) = match c {
            Change::Add {
                family,
                table,
                set,
                element,
            } => ("add", family, table, set, element.as_str()),
            // Deleting a map element names its key only.
            Change::Delete {
                family,
                table,
                set,
                element,
            } => (
                "delete",
                family,
                table,
                set,
                element.split(" : ").next().unwrap_or(element),
            ),
        };
        let _ = writeln!(
            out,
            "{verb} element {} {table} {set} {{ {element} }}",
            family.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_whole_table_replacement() {
        let mut t = Table::new(Family::Inet, "demo");
        t.set("s", "type ifname;", vec!["\"a\"".into(), "\"b\"".into()]);
        t.set("m", "type ifname : verdict;", vec![]);
        t.chain(
            "c",
            Some("type filter hook forward priority filter; policy accept;"),
            vec!["iifname @s accept".into()],
        );
        let rs = Ruleset { tables: vec![t] };
        assert_eq!(
            rs.render(),
            "table inet demo\ndelete table inet demo\ntable inet demo {\n\tset s {\n\t\ttype ifname;\n\t\telements = { \"a\", \"b\" }\n\t}\n\tmap m {\n\t\ttype ifname : verdict;\n\t}\n\tchain c {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname @s accept\n\t}\n}\n"
        );
        let fp = rs.fingerprint();
        assert_eq!(
            (fp["inet/demo/s"], fp["inet/demo/m"], fp["inet/demo/c"]),
            (2, 0, 1)
        );
    }

    #[test]
    fn renders_element_changes() {
        let add = Change::Add {
            family: Family::Inet,
            table: "t".into(),
            set: "pub4".into(),
            element: "tcp . 80 : 10.0.0.2 . 80".into(),
        };
        let del = Change::Delete {
            family: Family::Inet,
            table: "t".into(),
            set: "pub4".into(),
            element: "tcp . 80 : 10.0.0.2 . 80".into(),
        };
        assert_eq!(
            render_changes(&[add, del]),
            "add element inet t pub4 { tcp . 80 : 10.0.0.2 . 80 }\ndelete element inet t pub4 { tcp . 80 }\n"
        );
    }
}
