//! The committed state as one immutable value. The engine keeps it behind one `Arc`: readers
//! clone the `Arc` and see one consistent state however long they hold it; the writer builds
//! the next value from a copy (cheap: the maps are persistent) and swaps it in only after
//! SQLite has committed and the kernel has taken the change. Nothing else changes it.

pub mod view;

use std::sync::Arc;

use imbl::OrdMap;

use crate::firewall::services::Lb;
use crate::firewall::Desired;
use crate::model::{Endpoint, Labels, Network, Service};
use crate::policy::{Inputs, Plan, PolicySet};
pub use view::{resolve_prefix, Named, Spaces, Table, View};

#[derive(Clone, Default)]
pub struct State {
    pub(crate) view: View,
    pub(crate) policies: PolicySet,
    /// Endpoints of overlay networks on other hosts, by id, as the cluster store last said.
    pub(crate) remotes: OrdMap<String, Arc<Endpoint>>,
    /// Bumped at every change put in the firewall.
    pub(crate) generation: u64,
}

impl State {
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Endpoints of overlay networks on other hosts.
    pub fn remotes(&self) -> impl Iterator<Item = &Arc<Endpoint>> + '_ {
        self.remotes.values()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every name pattern the policies in force name (`fqdn` peers), sorted, each once.
    pub fn fqdn_patterns(&self) -> Vec<crate::fqdn::Pattern> {
        let patterns = self.policies.plan.fqdns();
        patterns
            .into_iter()
            .map(crate::fqdn::Pattern::new)
            .collect()
    }

    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The labels of a local sandbox (none for an unknown one).
    pub fn sandbox_labels(&self, id: &str) -> Labels {
        self.view
            .sandboxes()
            .get(id)
            .map(|s| s.labels.clone())
            .unwrap_or_default()
    }

    /// What the firewall should enforce in this state.
    pub fn desired(&self) -> Desired {
        self.desired_with(None, None, self.policies.plan.clone())
    }

    /// As `desired`, under `plan`, with `net` or `ep` while they are being added.
    pub fn desired_with(
        &self,
        net: Option<&Network>,
        ep: Option<&Endpoint>,
        plan: Plan,
    ) -> Desired {
        let mut d = Desired {
            networks: self.view.networks().iter_from(None).cloned().collect(),
            endpoints: self.view.endpoints().cloned().collect(),
            plan: Arc::new(plan),
            remotes: self.remotes.values().cloned().collect(),
            services: self.lbs(),
        };
        d.networks.extend(net.map(|n| Arc::new(n.clone())));
        d.endpoints.extend(ep.map(|e| Arc::new(e.clone())));
        d
    }

    /// Every service as the firewall sees it, network by network.
    pub fn lbs(&self) -> Vec<Arc<Lb>> {
        let networks: std::collections::BTreeSet<&str> = (self.view.services().iter_from(None))
            .map(|s| s.network_id.as_str())
            .collect();
        networks
            .into_iter()
            .flat_map(|n| self.lbs_of_network(n))
            .collect()
    }

    /// The services of network `id` as the firewall sees them.
    pub fn lbs_of_network(&self, id: &str) -> Vec<Arc<Lb>> {
        let services: Vec<&Arc<Service>> = self.view.services_of_network(id).collect();
        if services.is_empty() {
            return Vec::new();
        }
        let candidates = self.network_endpoints(id);
        (services.iter())
            .map(|s| Arc::new(Lb::of(s, candidates.iter().map(|e| &**e))))
            .collect()
    }

    /// One service as the firewall sees it in this state.
    pub fn lb(&self, s: &Service) -> Arc<Lb> {
        let candidates = self.network_endpoints(&s.network_id);
        Arc::new(Lb::of(s, candidates.iter().map(|e| &**e)))
    }

    /// A service's backends (local and remote endpoints), in id order.
    pub fn backends_of(&self, s: &Service) -> Vec<Arc<Endpoint>> {
        let mut out = self.network_endpoints(&s.network_id);
        out.retain(|e| s.selects(e));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every endpoint of a network: this host's and, for an overlay, the other hosts'.
    fn network_endpoints(&self, id: &str) -> Vec<Arc<Endpoint>> {
        let local = self.view.endpoints_of_network(id);
        let remote = self.remotes.values().filter(|e| e.network_id == id);
        local.chain(remote).cloned().collect()
    }

    /// The policies' inputs in this state (local and remote endpoints), with `extra` a network
    /// being added: then only whole-view calls are made (no endpoint's policies changed).
    pub(crate) fn plan_inputs<'a>(
        &'a self,
        labels: &'a dyn Fn(&str) -> Labels,
        extra: Option<&'a Network>,
    ) -> Inputs<'a> {
        Inputs {
            networks: self
                .view
                .networks()
                .iter_from(None)
                .map(|n| n.as_ref())
                .chain(extra)
                .collect(),
            endpoints: self
                .view
                .endpoints()
                .chain(self.remotes.values())
                .map(|e| e.as_ref())
                .collect(),
            sandbox_labels: labels,
            members: extra.map(|_| self.policies.plan.members.clone()),
        }
    }
}
