//! The nftables backend: scripts of nft syntax applied through the nftables crate (which runs
//! `nft -f -`: one invocation is one kernel transaction, so a change is all or nothing), and
//! our tables read back as JSON to notice outside interference.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::error::FirewallError;
use super::rules::Fam;
use super::ruleset::{render_changes, Change, Fingerprint, Ruleset};
use super::{docker, policy, render_nft};
use super::{Backend, ChainView, Desired, Firewall, RuleView};
use crate::kernel::nfrules::{self, NewSet, SameSetRule};
use crate::model::{Endpoint, Network};

/// Talks to the kernel's nftables through `nft`, in the daemon's network namespace.
#[derive(Debug)]
pub struct Nft {
    /// Where scripts are written for nft to read (wasmnet's run dir).
    dir: PathBuf,
    /// The last listing the watcher read (every second while pages show counters): those
    /// pages use it rather than listing thousands of rules again for each request.
    last: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<Value>)>>,
    /// The nftables generation the watcher last found everything right at.
    checked: std::sync::Mutex<Option<u32>>,
    /// When a page last asked for counters: while people look, the watcher keeps `last` fresh.
    viewed: std::sync::Mutex<Option<std::time::Instant>>,
    /// Transactions of ours committed so far (each moves the generation by one).
    ours: std::sync::atomic::AtomicU32,
    /// Whole-table replacements so far (see `Firewall::replacements`).
    replaced: std::sync::atomic::AtomicU64,
}

/// How long after a page showed counters the watcher keeps listing every second.
const VIEWING: std::time::Duration = std::time::Duration::from_secs(30);

/// How old a listing may be for counters shown to people.
const FRESH: std::time::Duration = std::time::Duration::from_secs(2);

static SCRIPT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Nft {
    pub fn new(dir: &Path) -> Nft {
        Nft {
            dir: dir.to_path_buf(),
            last: Default::default(),
            checked: Default::default(),
            viewed: Default::default(),
            ours: Default::default(),
            replaced: Default::default(),
        }
    }

    /// Replaces our tables whole, in one transaction.
    /// Replaces wasmnet's tables, in one transaction. When the generation moved by exactly
    /// that transaction, the kernel holds what was written: known right, as if the watcher
    /// had checked (so the next network change can be a difference).
    pub fn replace(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        self.forget_check();
        let before = crate::kernel::nfset::generation().ok();
        let done = self.run("ruleset", &ruleset.render());
        // Counted once done: what was learned while it ran is gone with the old sets.
        self.replaced.fetch_add(1, Ordering::Relaxed);
        let after = crate::kernel::nfset::generation().ok();
        if done.is_ok() {
            if let (Some(b), Some(a)) = (before, after) {
                if a == b.wrapping_add(1) {
                    *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
                }
            }
        }
        done
    }

    /// Applies element changes, in one transaction.
    pub fn update(&self, changes: &[Change]) -> Result<(), FirewallError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.run("element update", &render_changes(changes))
    }

    /// After any change of ours the watcher compares again, even at an unchanged generation
    /// (a change that failed half-way leaves the kernel where it was, but not as desired).
    fn forget_check(&self) {
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs an incremental change of ours (elements, new groups). If the kernel was found
    /// right before it, and the generation moved by exactly our own transactions meanwhile
    /// (no one else's slipped in), it is right after it too: the watcher need not list the
    /// whole table again, which with thousands of sets costs more than the change.
    fn carried<T>(&self, f: impl FnOnce() -> Result<T, FirewallError>) -> Result<T, FirewallError> {
        let checked = *self.checked.lock().unwrap_or_else(|p| p.into_inner());
        let before = crate::kernel::nfset::generation().ok();
        let ours = self.ours.load(Ordering::Relaxed);
        let done = f();
        let after = crate::kernel::nfset::generation().ok();
        let moved = self.ours.load(Ordering::Relaxed).wrapping_sub(ours);
        let carry = match (done.is_ok(), checked, before, after) {
            (true, Some(c), Some(b), Some(a)) => c == b && a == b.wrapping_add(moved),
            _ => false,
        };
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = carry.then_some(after).flatten();
        done
    }

    fn committed(&self) {
        self.ours.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs one nft script (one transaction). The script goes through a file, not a pipe: the
    /// crate always passes `-j`, and nft then reads its input twice (JSON first, then its
    /// native syntax), which only a file allows. The crate's raw runner also returns nft's
    /// error report, which the API shows.
    fn run(&self, what: &'static str, script: &str) -> Result<(), FirewallError> {
        tracing::debug!(%script, "applying a {what}");
        let path = self.dir.join(format!(
            "nft-{}-{}.nft",
            std::process::id(),
            SCRIPT_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, script)
            .map_err(|e| FirewallError::io(format!("writing {}", path.display()), e))?;
        let file = path.to_string_lossy().into_owned();
        let ran = nftables::helper::get_current_ruleset_raw(
            nftables::helper::DEFAULT_NFT,
            ["-f", file.as_str()],
        );
        let _ = std::fs::remove_file(&path);
        if ran.is_ok() {
            self.committed();
        }
        ran.map(drop).map_err(|e| {
            tracing::error!(%script, "nft refused a {what}");
            FirewallError::nft(what, e)
        })
    }

    /// Rule and element counts of the tables named in `expected`, as they are in the kernel.
    pub fn fingerprint(&self) -> Result<Fingerprint, FirewallError> {
        let doc = std::sync::Arc::new(self.list()?);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), doc.clone()));
        Ok(fingerprint_of(&doc))
    }

    /// Rules and counters at most `FRESH` old: the watcher's last listing, or a new one.
    fn recent_rules(&self) -> Result<std::sync::Arc<Value>, FirewallError> {
        *self.viewed.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match last {
            Some((at, doc)) if at.elapsed() < FRESH => Ok(doc),
            _ => Ok(std::sync::Arc::new(self.list_rules()?)),
        }
    }

    /// The kernel's whole ruleset, as nft's JSON.
    fn list(&self) -> Result<Value, FirewallError> {
        self.list_with(&["list", "ruleset"])
    }

    /// The same without set and map elements (`-t`): chains, rules and counters only, which
    /// stays small however many endpoints there are.
    fn list_rules(&self) -> Result<Value, FirewallError> {
        self.list_with(&["-t", "list", "ruleset"])
    }

    fn list_with(&self, args: &[&str]) -> Result<Value, FirewallError> {
        let json = nftables::helper::get_current_ruleset_raw(
            nftables::helper::DEFAULT_NFT,
            args.iter().copied(),
        )
        .map_err(|e| FirewallError::nft("listing", e))?;
        serde_json::from_str(&json).map_err(|e| FirewallError::Nft {
            what: "listing",
            source: nftables::helper::NftablesError::NftInvalidJson(e),
        })
    }
}

impl Firewall for Nft {
    fn kind(&self) -> Backend {
        Backend::Nftables
    }

    fn apply(&self, desired: &Desired) -> Result<(), FirewallError> {
        if desired.needs_br_netfilter() {
            enable_br_netfilter()?;
        }
        self.replace(&compile(desired))
    }

    /// Only the difference, in one small transaction, when the kernel is as wasmnet last left
    /// it (the watcher found it right, and no one else's transaction slipped in); else, or if
    /// nft refuses the difference, the whole table.
    fn change(&self, before: &Desired, after: &Desired) -> Result<(), FirewallError> {
        if after.needs_br_netfilter() {
            enable_br_netfilter()?;
        }
        let known = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        // A lone network's difference needs neither whole ruleset; `after`'s is lowered only
        // for the whole difference or a replacement.
        let script = known.then(|| lone_network(before, after)).flatten();
        let script = script.or_else(|| {
            known
                .then(|| super::diff::script(&compile(before), &compile(after)))
                .flatten()
        });
        match script {
            Some(s) if s.is_empty() => Ok(()),
            Some(s) => self
                .carried(|| self.run("ruleset change", &s))
                .or_else(|e| {
                    tracing::warn!(error = %e, "a ruleset change was refused; replacing the table");
                    self.replace(&compile(after))
                }),
            None => self.replace(&compile(after)),
        }
    }

    /// One element transaction: the endpoint's published ports (and its port in an icc=false
    /// network); no chain is touched.
    fn incremental(&self) -> bool {
        true
    }

    fn endpoint(
        &self,
        e: &Endpoint,
        n: &Network,
        joined: bool,
        desired: &Desired,
    ) -> Result<(), FirewallError> {
        self.carried(|| {
            self.update(&render_nft::changes(&docker::endpoint_changes(
                e, n, joined,
            )))?;
            // Group members over netlink: nft would first read every element of the set.
            let groups = desired.plan.members.get(&e.id).map(Vec::as_slice);
            let elements = policy::member_elements(e, groups.unwrap_or_default(), joined);
            crate::kernel::nfset::apply(crate::names::TABLE, &elements)?;
            if !elements.is_empty() {
                self.committed();
            }
            Ok(())
        })
    }

    /// Over netlink when every rule has the simple `same-group` shape (`nft` would first read
    /// every set of the table), else as an nft script.
    fn grow(&self, growth: &super::growth::Growth) -> Result<(), FirewallError> {
        // (A large growth, many same-group rules, goes as a script: one netlink batch must
        // fit the socket's send buffer.)
        let small = growth.sets.len() + growth.rules.len() <= 256;
        self.carried(|| match over_netlink(growth).filter(|_| small) {
            Some((sets, rules)) => {
                let t = std::time::Instant::now();
                nfrules::add(crate::names::TABLE, &sets, &rules)?;
                self.committed();
                let took = t.elapsed();
                tracing::debug!(
                    ?took,
                    sets = sets.len(),
                    rules = rules.len(),
                    "groups added"
                );
                Ok(())
            }
            None => self.run("group addition", &render_nft::growth(growth)),
        })
    }

    /// The difference of the services' own part of the table (their sets' elements and their
    /// chains), in one transaction; if nft refuses it, nothing changed and the caller hears.
    fn services(
        &self,
        before: &[std::sync::Arc<super::services::Lb>],
        after: &[std::sync::Arc<super::services::Lb>],
    ) -> Result<(), FirewallError> {
        enable_br_netfilter()?;
        // Backends alone changed: over netlink (nft would load every rule of the table).
        if let Some(change) = super::services::backend_change(before, after) {
            return self.carried(|| {
                let t = std::time::Instant::now();
                crate::kernel::nfservice::apply(crate::names::TABLE, &change)?;
                self.committed();
                let took = t.elapsed();
                tracing::debug!(
                    ?took,
                    chains = change.chains.len(),
                    "service change over netlink"
                );
                Ok(())
            });
        }
        let part = |l| render_nft::ruleset(&super::services::part(l));
        match super::diff::script(&part(before), &part(after)) {
            Some(s) if s.is_empty() => Ok(()),
            Some(s) => self.carried(|| self.run("service change", &s)),
            None => Err(FirewallError::io(
                "changing services",
                std::io::Error::other("the services' sets differ in type"),
            )),
        }
    }

    fn replacements(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    fn learn(&self, elements: &[crate::kernel::nfset::Element]) -> Result<(), FirewallError> {
        self.carried(|| {
            crate::kernel::nfset::apply(crate::names::TABLE, elements)?;
            if !elements.is_empty() {
                self.committed();
            }
            Ok(())
        })
    }

    /// Lists and compares only when the ruleset's generation moved since it was last found
    /// right (or someone is looking at counters): a steady host costs one netlink request a
    /// second, not a listing of every element (a process, and CPU taken from traffic).
    fn reassert(&self, desired: &Desired) -> Result<bool, FirewallError> {
        let generation = crate::kernel::nfset::generation().ok();
        let viewed = *self.viewed.lock().unwrap_or_else(|p| p.into_inner());
        let viewing = viewed.is_some_and(|at| at.elapsed() < VIEWING);
        let checked = *self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if generation.is_some() && checked == generation && !viewing {
            return Ok(false);
        }
        let wanted = compile(desired);
        if matches(&wanted.fingerprint(), &self.fingerprint()?) {
            *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = generation;
            return Ok(false);
        }
        self.replace(&wanted)?;
        Ok(true)
    }

    fn watch_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn render(&self, desired: &Desired) -> String {
        compile(desired).render()
    }

    fn chains(&self, desired: &Desired) -> Result<Vec<ChainView>, FirewallError> {
        let wanted = compile(desired);
        let doc = self.recent_rules()?;
        let counters = counters_of(&doc);
        let mut out = Vec::new();
        for t in &wanted.tables {
            for c in &t.chains {
                let key = format!("{}/{}/{}", t.family.as_str(), t.name, c.name);
                let kernel = counters.get(&key);
                let rules = c
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RuleView {
                        text: r.text.clone(),
                        counters: kernel.and_then(|k| k.get(i).copied().flatten()),
                        tag: r.tag.clone(),
                    })
                    .collect();
                out.push(ChainView {
                    table: format!("{} {}", t.family.as_str(), t.name),
                    chain: c.name.clone(),
                    rules,
                });
            }
        }
        Ok(out)
    }
}

/// The difference a network added or removed makes when no policy is attached anywhere: that
/// of a ruleset of the network alone against one of nothing, since then no other object's rules
/// depend on it — without lowering every other network and endpoint twice (at 1,000 networks
/// and 10,000 endpoints that was most of a network create). `None` when that does not hold.
fn lone_network(before: &Desired, after: &Desired) -> Option<String> {
    let quiet = |d: &Desired| d.plan.is_empty() && d.plan.groups().is_empty();
    if !quiet(before) || !quiet(after) {
        return None;
    }
    let (b, a) = (before.networks.len(), after.networks.len());
    let (small, large, added) = if a == b + 1 {
        (before, after, true)
    } else if b == a + 1 {
        (after, before, false)
    } else {
        return None;
    };
    let known: std::collections::HashSet<&str> =
        small.networks.iter().map(|n| n.id.as_str()).collect();
    let mut extra = large
        .networks
        .iter()
        .filter(|n| !known.contains(n.id.as_str()));
    let n = extra.next()?;
    let in_use = |d: &Desired| d.endpoints.iter().any(|e| e.network_id == n.id);
    // A DNS redirect is a rule in prerouting, which other networks' redirects share.
    let shares_a_chain = n.options.typed().dns_redirect;
    if extra.next().is_some() || in_use(before) || in_use(after) || shares_a_chain {
        return None;
    }
    let alone = |with: bool| Desired {
        networks: with.then(|| n.clone()).into_iter().collect(),
        ..Desired::default()
    };
    super::diff::script(&compile(&alone(!added)), &compile(&alone(added)))
}

pub(crate) fn compile(d: &Desired) -> Ruleset {
    render_nft::ruleset(&super::lower(d))
}

/// Bridged traffic between endpoints of one network reaches the inet hooks (and conntrack)
/// only through br_netfilter: policies between them need it, in the daemon's namespace.
fn enable_br_netfilter() -> Result<(), FirewallError> {
    for key in [
        "net/bridge/bridge-nf-call-iptables",
        "net/bridge/bridge-nf-call-ip6tables",
    ] {
        crate::kernel::write_sysctl(key, "1").map_err(|source| FirewallError::Sysctl {
            why: "policies need br_netfilter",
            source,
        })?;
    }
    Ok(())
}

/// Counts rules per chain and elements per set or map in `nft -j list ruleset` output.
pub fn fingerprint_of(doc: &Value) -> Fingerprint {
    let mut fp = Fingerprint::new();
    for obj in doc["nftables"].as_array().into_iter().flatten() {
        let key = |o: &Value, name: &str| {
            format!(
                "{}/{}/{}",
                o["family"].as_str().unwrap_or(""),
                o["table"].as_str().unwrap_or(""),
                o[name].as_str().unwrap_or("")
            )
        };
        if let Some(chain) = obj.get("chain") {
            fp.entry(key(chain, "name")).or_insert(0);
        } else if let Some(rule) = obj.get("rule") {
            *fp.entry(key(rule, "chain")).or_insert(0) += 1;
        } else if let Some(set) = obj.get("set").or_else(|| obj.get("map")) {
            fp.insert(key(set, "name"), set["elem"].as_array().map_or(0, Vec::len));
        }
    }
    fp
}

/// Each chain's rules' counters, in order (`None` for a rule without a counter).
pub fn counters_of(doc: &Value) -> std::collections::BTreeMap<String, Vec<Option<(u64, u64)>>> {
    let mut out: std::collections::BTreeMap<String, Vec<Option<(u64, u64)>>> = Default::default();
    for rule in doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("rule"))
    {
        let key = format!(
            "{}/{}/{}",
            rule["family"].as_str().unwrap_or(""),
            rule["table"].as_str().unwrap_or(""),
            rule["chain"].as_str().unwrap_or("")
        );
        let counter = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter"))
            .and_then(|c| Some((c["packets"].as_u64()?, c["bytes"].as_u64()?)));
        out.entry(key).or_default().push(counter);
    }
    out
}

/// Whether `actual` has our tables as `expected` says (foreign tables are ignored).
pub fn matches(expected: &Fingerprint, actual: &Fingerprint) -> bool {
    expected.iter().all(|(k, v)| actual.get(k) == Some(v))
}

/// A growth as netlink objects, if every rule is `saddr @g daddr @g oifname X counter` with
/// accept or drop and nothing else.
fn over_netlink(g: &super::growth::Growth) -> Option<(Vec<NewSet>, Vec<SameSetRule>)> {
    use super::rules::{Addrs, Ifaces, Match, SetId, Verdict};
    let sets = (g.sets.iter())
        .map(|id| match id {
            SetId::Group { fam, .. } => Some(NewSet {
                name: render_nft::set_name(id),
                v6: *fam == Fam::V6,
            }),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let rules = (g.rules.iter())
        .map(|(chain, r)| {
            let accept = match (&r.verdict, &r.log, r.counter) {
                (Some(Verdict::Accept), None, true) => true,
                (Some(Verdict::Drop), None, true) => false,
                _ => return None,
            };
            match r.matches.as_slice() {
                [Match::Saddr(Addrs::Set(a)), Match::Daddr(Addrs::Set(b)), Match::Oif(Ifaces::Name(oif))]
                    if a == b =>
                {
                    Some(SameSetRule {
                        chain: render_nft::chain_name(chain),
                        set: render_nft::set_name(a),
                        v6: r.fam == Some(Fam::V6),
                        oifname: oif.clone(),
                        accept,
                    })
                }
                _ => None,
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some((sets, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{desired, endpoint, net, sample_ports};

    /// A network added or removed without policies: the lone network's difference is the
    /// whole rulesets' one, and anything else (a policy, an endpoint on it) is left to that.
    #[test]
    fn a_lone_network_differs_as_the_whole_ruleset() {
        let (a, b) = (
            net('a', "10.1.0.0/24", false, true),
            net('b', "10.2.0.0/24", true, false),
        );
        let c = net('c', "10.3.0.0/24", false, true);
        let e = endpoint(&a, "10.1.0.2", sample_ports());
        let before = desired(
            vec![a.clone(), b.clone()],
            vec![e.clone()],
            Default::default(),
        );
        let after = desired(
            vec![a.clone(), b.clone(), c.clone()],
            vec![e.clone()],
            Default::default(),
        );
        let whole = |x: &Desired, y: &Desired| super::super::diff::script(&compile(x), &compile(y));
        let added = lone_network(&before, &after).expect("a lone network");
        assert!(
            added.contains("add chain inet wasmnet net_cccccccccccc"),
            "{added}"
        );
        assert_eq!(Some(added), whole(&before, &after));
        assert_eq!(lone_network(&after, &before), whole(&after, &before));
        // Not when an endpoint is on it, nor when two networks change.
        let on_c = endpoint(&c, "10.3.0.2", vec![]);
        let busy = desired(
            vec![a.clone(), b.clone(), c.clone()],
            vec![e.clone(), on_c],
            Default::default(),
        );
        assert_eq!(lone_network(&busy, &before), None);
        let one = desired(vec![a.clone()], vec![e], Default::default());
        assert_eq!(lone_network(&one, &after), None);
    }

    #[test]
    fn counts_rules_and_elements() {
        let doc: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},
            {"table":{"family":"inet","name":"wasmnet"}},
            {"chain":{"family":"inet","table":"wasmnet","name":"forward"}},
            {"chain":{"family":"inet","table":"wasmnet","name":"empty"}},
            {"rule":{"family":"inet","table":"wasmnet","chain":"forward","expr":[]}},
            {"rule":{"family":"inet","table":"wasmnet","chain":"forward","expr":[]}},
            {"set":{"family":"inet","table":"wasmnet","name":"bridges","elem":["a","b"]}},
            {"map":{"family":"inet","table":"wasmnet","name":"pub4"}}]}"#,
        )
        .unwrap();
        let fp = fingerprint_of(&doc);
        assert_eq!(fp["inet/wasmnet/forward"], 2);
        assert_eq!(fp["inet/wasmnet/empty"], 0);
        assert_eq!(fp["inet/wasmnet/bridges"], 2);
        assert_eq!(fp["inet/wasmnet/pub4"], 0);
        let mut want = Fingerprint::new();
        want.insert("inet/wasmnet/forward".into(), 2);
        assert!(matches(&want, &fp));
        want.insert("inet/wasmnet/forward".into(), 3);
        assert!(!matches(&want, &fp));
    }
}
