//! A firewall in memory, for unit tests of the engine's logic without root (in the spirit of
//! knftables' `Fake`): it keeps what was put in force — the networks and endpoints of the
//! last full apply, changed by each endpoint join and leave — renders it as the nftables
//! backend would, and can be told to fail the next call of one operation.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::{Backend, ChainView, Desired, Firewall, FirewallError};
use crate::model::{Endpoint, Network};

#[derive(Default, Debug)]
pub struct FakeRules {
    /// Network ids in force.
    pub networks: BTreeSet<String>,
    /// Endpoint ids whose elements are in force.
    pub endpoints: BTreeSet<String>,
    /// (endpoint id, policy id, group) memberships in force.
    pub members: BTreeSet<(String, String, String)>,
    /// Full applies so far.
    pub applies: usize,
    /// Groups added without replacing the table.
    pub grows: usize,
    /// Each service's backends' addresses in force.
    pub services: std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
    /// Service changes made without replacing the table.
    pub service_changes: usize,
    /// Operations to fail the next time they are called (`apply`, `endpoint`, `services`).
    pub fail: BTreeSet<&'static str>,
}

#[derive(Default)]
pub struct FakeFirewall {
    rules: Mutex<FakeRules>,
}

impl FakeFirewall {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail_next(&self, op: &'static str) {
        self.lock().fail.insert(op);
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeRules) -> T) -> T {
        f(&mut self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeRules> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn call(
        &self,
        op: &'static str,
    ) -> Result<std::sync::MutexGuard<'_, FakeRules>, FirewallError> {
        let mut r = self.lock();
        match r.fail.remove(op) {
            true => Err(FirewallError::io(
                op,
                std::io::Error::other("failing as the test asked"),
            )),
            false => Ok(r),
        }
    }
}

fn memberships(d: &Desired, e: &str) -> Vec<(String, String, String)> {
    let groups = d.plan.members.get(e).cloned().unwrap_or_default();
    groups
        .into_iter()
        .map(|(p, g)| (e.to_string(), p, g))
        .collect()
}

impl Firewall for FakeFirewall {
    fn kind(&self) -> Backend {
        Backend::Nftables
    }

    fn apply(&self, desired: &Desired) -> Result<(), FirewallError> {
        let mut r = self.call("apply")?;
        r.applies += 1;
        r.networks = desired.networks.iter().map(|n| n.id.clone()).collect();
        r.endpoints = desired.endpoints.iter().map(|e| e.id.clone()).collect();
        r.members = desired
            .endpoints
            .iter()
            .flat_map(|e| memberships(desired, &e.id))
            .collect();
        r.services = (desired.services.iter())
            .map(|l| (l.id.clone(), l.backends.clone()))
            .collect();
        Ok(())
    }

    fn services(
        &self,
        before: &[std::sync::Arc<super::services::Lb>],
        after: &[std::sync::Arc<super::services::Lb>],
    ) -> Result<(), FirewallError> {
        let mut r = self.call("services")?;
        r.service_changes += 1;
        for l in before {
            r.services.remove(&l.id);
        }
        for l in after {
            r.services.insert(l.id.clone(), l.backends.clone());
        }
        Ok(())
    }

    fn incremental(&self) -> bool {
        true
    }

    fn grow(&self, _growth: &super::growth::Growth) -> Result<(), FirewallError> {
        self.call("grow")?.grows += 1;
        Ok(())
    }

    fn endpoint(
        &self,
        e: &Endpoint,
        _n: &Network,
        joined: bool,
        desired: &Desired,
    ) -> Result<(), FirewallError> {
        let mut r = self.call("endpoint")?;
        let members = memberships(desired, &e.id);
        if joined {
            r.endpoints.insert(e.id.clone());
            r.members.extend(members);
        } else {
            r.endpoints.remove(&e.id);
            r.members.retain(|(id, _, _)| id != &e.id);
        }
        Ok(())
    }

    fn reassert(&self, _desired: &Desired) -> Result<bool, FirewallError> {
        Ok(false)
    }

    fn watch_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn render(&self, desired: &Desired) -> String {
        super::nft::compile(desired).render()
    }

    fn chains(&self, _desired: &Desired) -> Result<Vec<ChainView>, FirewallError> {
        Ok(vec![])
    }
}
