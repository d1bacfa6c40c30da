//! Reads: lists, inspects and counts, each answered from one committed state.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::Engine;
use crate::error::Result;
use crate::ipam::AddressSpace;
use crate::model::{Endpoint, Labels, Network, Sandbox};
use crate::state::State;

/// Which objects a list returns: all `labels` must match (`key` alone: the label exists);
/// `name` is a substring of the name; `network`/`sandbox` restrict endpoints.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub labels: Vec<(String, Option<String>)>,
    pub name: Option<String>,
    pub network: Option<String>,
    pub sandbox: Option<String>,
}

impl Filter {
    pub(crate) fn labels_match(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|n| name.contains(n))
    }
}

/// A page of a list: `next` is the cursor to pass as `after` for the following page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<Arc<T>>,
    pub next: Option<String>,
}

/// One page out of an ordered iterator; `key` gives an item's cursor.
fn page<'a, T: 'a>(
    items: impl Iterator<Item = &'a Arc<T>>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> Page<T> {
    let mut items: Vec<Arc<T>> = items.take(limit + 1).cloned().collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        key(items.last().expect("limit >= 1"))
    });
    Page { items, next }
}

/// A network with what concerns it: its endpoints and how full its subnets are.
#[derive(Debug, Serialize, ToSchema)]
pub struct NetworkDetail {
    #[serde(flatten)]
    pub network: Arc<Network>,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub usage: Usage,
}

/// Addresses in use (the gateway counts) out of the subnet's host addresses, per family.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub ipv4: UsageCount,
    pub ipv6: Option<UsageCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageCount {
    #[schema(value_type = u64)]
    pub used: u128,
    #[schema(value_type = u64)]
    pub total: u128,
}

impl From<&AddressSpace> for UsageCount {
    fn from(s: &AddressSpace) -> Self {
        let (used, total) = s.usage();
        UsageCount { used, total }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxDetail {
    #[serde(flatten)]
    pub sandbox: Arc<Sandbox>,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// Counts for the health endpoint and the dashboard's overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counts {
    pub networks: usize,
    pub sandboxes: usize,
    pub endpoints: usize,
}

impl State {
    pub fn counts(&self) -> Counts {
        let v = self.view();
        Counts {
            networks: v.networks().len(),
            sandboxes: v.sandboxes().len(),
            endpoints: v.endpoint_count(),
        }
    }

    pub fn list_networks(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Network> {
        let it = self
            .view()
            .networks()
            .iter_from(after)
            .filter(|n| f.labels_match(&n.labels) && f.name_matches(&n.name));
        page(it, limit, |n| n.name.clone())
    }

    /// The same page as `list_networks`, as JSON, from networks serialised when they were
    /// added: listing is the hot read path (scripts poll it), so it costs copies, not serde.
    pub fn list_networks_json(&self, f: &Filter, after: Option<&str>, limit: usize) -> String {
        let v = self.view();
        let mut it = v
            .networks()
            .iter_from(after)
            .filter(|n| f.labels_match(&n.labels) && f.name_matches(&n.name));
        let mut out = String::with_capacity(limit * 320 + 32);
        out.push_str("{\"items\":[");
        let mut last = None;
        for n in it.by_ref().take(limit) {
            if last.is_some() {
                out.push(',');
            }
            out.push_str(v.network_json(&n.id).expect("serialised when added"));
            last = Some(n);
        }
        out.push_str("],\"next\":");
        match (last, it.next()) {
            (Some(n), Some(_)) => {
                out.push_str(&serde_json::to_string(&n.name).expect("a string serialises"))
            }
            _ => out.push_str("null"),
        }
        out.push('}');
        out
    }

    pub fn network(&self, reference: &str) -> Result<NetworkDetail> {
        let v = self.view();
        let network = v.networks().resolve(reference)?;
        let spaces = v.spaces(&network.id).expect("every network has its spaces");
        Ok(NetworkDetail {
            endpoints: v.endpoints_of_network(&network.id).cloned().collect(),
            usage: Usage {
                ipv4: (&spaces.v4).into(),
                ipv6: spaces.v6.as_ref().map(Into::into),
            },
            network,
        })
    }

    pub fn list_sandboxes(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Sandbox> {
        let it = self
            .view()
            .sandboxes()
            .iter_from(after)
            .filter(|s| f.labels_match(&s.labels) && f.name_matches(&s.name));
        page(it, limit, |s| s.name.clone())
    }

    pub fn sandbox(&self, reference: &str) -> Result<SandboxDetail> {
        let v = self.view();
        let sandbox = v.sandboxes().resolve(reference)?;
        Ok(SandboxDetail {
            endpoints: v.endpoints_of_sandbox(&sandbox.id).cloned().collect(),
            sandbox,
        })
    }

    pub fn list_endpoints(
        &self,
        f: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Endpoint>> {
        let v = self.view();
        let network = f
            .network
            .as_deref()
            .map(|r| v.networks().resolve(r))
            .transpose()?;
        let sandbox = f
            .sandbox
            .as_deref()
            .map(|r| v.sandboxes().resolve(r))
            .transpose()?;
        let it = v.endpoints_after(after).filter(|e| {
            network.as_ref().is_none_or(|n| n.id == e.network_id)
                && sandbox.as_ref().is_none_or(|s| s.id == e.sandbox_id)
                && f.labels_match(&e.labels)
        });
        Ok(page(it, limit, |e| e.id.clone()))
    }
}

/// The reads, as the web layer calls them: each answers from one committed state.
impl Engine {
    pub fn counts(&self) -> Counts {
        self.state().counts()
    }

    /// How many objects of each kind there are (what `/metrics` exports).
    pub fn object_counts(&self) -> [(&'static str, usize); 5] {
        let state = self.state();
        let c = state.counts();
        [
            ("networks", c.networks),
            ("sandboxes", c.sandboxes),
            ("endpoints", c.endpoints),
            ("services", state.view().services().len()),
            ("policies", state.policies.loaded.len()),
        ]
    }

    pub fn list_networks(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Network> {
        self.state().list_networks(f, after, limit)
    }

    pub fn list_networks_json(&self, f: &Filter, after: Option<&str>, limit: usize) -> String {
        self.state().list_networks_json(f, after, limit)
    }

    pub fn network(&self, reference: &str) -> Result<NetworkDetail> {
        self.state().network(reference)
    }

    /// What resolves on a network: its endpoints' names, published or not.
    pub fn network_names(&self, reference: &str) -> Result<crate::directory::NamesReport> {
        let state = self.state();
        let n = state.view().networks().resolve(reference)?;
        let dns_on = self.cfg.names.dns;
        Ok(crate::directory::NamesReport::of(&state, &n, dns_on))
    }

    pub fn list_sandboxes(&self, f: &Filter, after: Option<&str>, limit: usize) -> Page<Sandbox> {
        self.state().list_sandboxes(f, after, limit)
    }

    pub fn sandbox(&self, reference: &str) -> Result<SandboxDetail> {
        self.state().sandbox(reference)
    }

    pub fn list_endpoints(
        &self,
        f: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Endpoint>> {
        self.state().list_endpoints(f, after, limit)
    }

    pub fn endpoint(&self, reference: &str) -> Result<Arc<Endpoint>> {
        self.state().view().resolve_endpoint(reference)
    }

    /// The cluster store's state, when this host is part of one.
    pub fn cluster_health(&self) -> Option<crate::cluster::Health> {
        self.cluster.as_ref().map(|c| c.health())
    }
}
