//! The firewall. Docker's default semantics (`docker`) and the policies' decisions (`policy`)
//! are lowered once into backend-neutral rules (`rules`: matches, verdicts, sets and maps
//! named by what they hold, tags), which each backend only renders: `render_nft` into
//! nftables' script model (`ruleset`) and `render_iptables` into iptables-restore lines. The
//! backends put them in the kernel atomically: `nft` (the default: sets, maps and verdict
//! maps, per-endpoint element updates) and `iptables` (iptables-restore, atomic per table,
//! linear rules: the slower backend). Objects are named as `crate::names` says.

pub mod budget;
mod diff;
pub mod docker;
mod error;
#[cfg(test)]
pub mod fake;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod growth;
pub mod iptables;
pub mod members;
pub mod nft;
pub mod policy;
mod render_iptables;
pub mod render_nft;
pub mod rules;
pub mod ruleset;
pub mod services;

use std::sync::Arc;
use std::time::Duration;

use crate::model::{Endpoint, Network};

pub use error::FirewallError;
pub use nft::Nft;
pub use ruleset::{Change, Fingerprint, Ruleset};

/// What the firewall should enforce: the committed networks and endpoints (plus, during a
/// change, the object being added).
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub networks: Vec<Arc<Network>>,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// What the attached policies decided (empty: Docker's semantics alone). For an
    /// incremental endpoint change, only the endpoint's own groups.
    pub plan: Arc<policy::Plan>,
    /// Endpoints on other hosts (overlay networks): only their addresses matter here, as
    /// members of the policies' groups.
    pub remotes: Vec<Arc<Endpoint>>,
    /// The services, with their backends' addresses.
    pub services: Vec<Arc<services::Lb>>,
}

impl Desired {
    pub fn network_refs(&self) -> Vec<&Network> {
        self.networks.iter().map(|n| n.as_ref()).collect()
    }

    pub fn endpoint_refs(&self) -> Vec<&Endpoint> {
        self.endpoints.iter().map(|e| e.as_ref()).collect()
    }

    /// Every endpoint that can be in a group: this host's and the remote ones.
    pub fn member_refs(&self) -> Vec<&Endpoint> {
        self.endpoints
            .iter()
            .chain(&self.remotes)
            .map(|e| e.as_ref())
            .collect()
    }

    /// Whether bridged traffic must reach the inet hooks (and conntrack): policies between
    /// endpoints of one network, and services (a backend's answer to a client of its own
    /// network is bridged, and must be un-NATed).
    pub fn needs_br_netfilter(&self) -> bool {
        self.plan.needs_br_netfilter() || !self.services.is_empty()
    }
}

/// Docker's defaults and the policies' decisions, lowered to the neutral rules that each
/// backend renders.
pub fn lower(d: &Desired) -> rules::Rules {
    docker::lower_with_services(
        &d.network_refs(),
        &d.endpoint_refs(),
        &d.member_refs(),
        &d.plan,
        &d.services,
    )
}

/// A firewall backend. Calls block (they run `nft` or `iptables-restore`); the engine makes
/// them on tokio's blocking threads, in the daemon's namespace.
pub trait Firewall: Send + Sync {
    fn kind(&self) -> Backend;
    /// Puts everything in place, replacing what wasmnet had (one transaction per table).
    fn apply(&self, desired: &Desired) -> Result<(), FirewallError>;
    /// Goes from `before` (in force) to `after`: what a network create or delete changes.
    /// Backends that can apply a difference do; the others replace their tables.
    fn change(&self, before: &Desired, after: &Desired) -> Result<(), FirewallError> {
        let _ = before;
        self.apply(after)
    }
    /// Whether `endpoint` works on the endpoint alone (then it is given an empty `Desired`).
    fn incremental(&self) -> bool;
    /// Endpoint `e` of network `n` joined (or left); `desired` reflects the change.
    fn endpoint(
        &self,
        e: &Endpoint,
        n: &Network,
        joined: bool,
        desired: &Desired,
    ) -> Result<(), FirewallError>;
    /// Adds new groups' sets and `same-group` rules (one transaction, nothing existing
    /// changes), before the joining endpoint's elements. Only asked of incremental backends.
    fn grow(&self, growth: &growth::Growth) -> Result<(), FirewallError> {
        let _ = growth;
        Err(FirewallError::io(
            "adding groups",
            std::io::Error::other("this backend replaces its tables instead"),
        ))
    }
    /// Services' backends changed (`before` to `after`: the services of one network, which
    /// had services and keeps some): their map elements and chains, in one transaction.
    /// Only asked of incremental backends.
    fn services(
        &self,
        before: &[Arc<services::Lb>],
        after: &[Arc<services::Lb>],
    ) -> Result<(), FirewallError> {
        let _ = (before, after);
        Err(FirewallError::io(
            "changing services",
            std::io::Error::other("this backend replaces its tables instead"),
        ))
    }
    /// Puts addresses in name patterns' sets (with timeouts), for the DNS server: one
    /// transaction, nothing else changes. Only nftables has such sets.
    fn learn(&self, elements: &[crate::kernel::nfset::Element]) -> Result<(), FirewallError> {
        let _ = elements;
        Err(FirewallError::io(
            "learning addresses of names",
            std::io::Error::other("this backend has no address sets with timeouts"),
        ))
    }
    /// How many times the tables were replaced whole (which empties the name patterns' sets).
    fn replacements(&self) -> u64 {
        0
    }
    /// Re-asserts wasmnet's rules if someone else changed them; true when it had to.
    fn reassert(&self, desired: &Desired) -> Result<bool, FirewallError>;
    /// How often the watcher calls `reassert`.
    fn watch_interval(&self) -> Duration;
    /// What `apply` puts in place, as the backend's own text (for people to read).
    fn render(&self, desired: &Desired) -> String;
    /// The chains in force with their rules and, where the backend keeps them, each rule's
    /// packet and byte counters as the kernel reports them.
    fn chains(&self, desired: &Desired) -> Result<Vec<ChainView>, FirewallError>;
}

/// One chain, for people to read.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChainView {
    pub table: String,
    pub chain: String,
    pub rules: Vec<RuleView>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RuleView {
    pub text: String,
    /// (packets, bytes), when the rule counts.
    pub counters: Option<(u64, u64)>,
    /// What the rule is for beyond its verdict (an audit's would-be drop, a policy's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<rules::Tag>,
}

impl RuleView {
    /// Whether the rule counts what an audit-mode policy would have dropped.
    pub fn is_audit(&self) -> bool {
        matches!(self.tag, Some(rules::Tag::Audit { .. }))
    }

    /// Whether the rule drops what it matches (its verdict, in either backend's syntax).
    pub fn is_drop(&self) -> bool {
        self.text.ends_with(" drop") || self.text.ends_with("-j DROP")
    }
}

/// Which backend enforces the rules.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Nftables,
    Iptables,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nftables" => Ok(Backend::Nftables),
            "iptables" => Ok(Backend::Iptables),
            _ => Err(format!(
                "unknown firewall backend {s:?} (expected nftables or iptables)"
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
        })
    }
}

/// The backend for `kind`; scripts for nft are written under `run_dir`.
pub fn backend(kind: Backend, run_dir: &std::path::Path) -> Arc<dyn Firewall> {
    match kind {
        Backend::Nftables => Arc::new(Nft::new(run_dir)),
        Backend::Iptables => Arc::new(iptables::Iptables),
    }
}
