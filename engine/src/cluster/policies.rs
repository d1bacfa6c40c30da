//! Policies across hosts. In a cluster every policy is shared: its module is in etcd, and so
//! are its global attachments and those to overlay networks (attachments to a host's own
//! bridge networks stay that host's). Each host loads what the cluster has and enforces it,
//! so a policy on an overlay network holds on every host; remote endpoints are classified
//! like local ones (their records carry their labels), so groups span hosts.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::keys::PolicyRecord;
use super::mirror::Mirror;
use super::Cluster;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::Driver;
use crate::policy::{Attachment, Loaded, Policy};

impl Engine {
    /// Publishes a new policy to the cluster (nothing to do without one).
    pub(crate) async fn share_policy(&self, p: &Policy, wasm: &[u8]) -> Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        match cluster.put_policy(&record(p), wasm).await? {
            None => Ok(()),
            Some(_) => Err(Error::conflict(
                "name_in_use",
                format!("policy name {:?} is already in use in the cluster", p.name),
            )),
        }
    }

    /// Best effort: undoes `share_policy` after a later step failed.
    pub(crate) async fn unshare_policy(&self, p: &Policy) {
        if let Some(cluster) = &self.cluster {
            let _ = cluster.delete_policy(&p.id, &p.name).await;
        }
    }

    /// Deletes a shared policy from the cluster first: if etcd cannot, nothing changes.
    pub(crate) async fn unshare_policy_or_fail(&self, p: &Policy) -> Result<()> {
        let shared = self.policies().loaded.get(&p.id).is_some_and(|l| l.shared);
        match &self.cluster {
            Some(cluster) if shared => cluster.delete_policy(&p.id, &p.name).await,
            _ => Ok(()),
        }
    }

    /// The cluster, when an attachment of this policy at this scope is shared: the policy is,
    /// and the scope is global or an overlay network.
    pub(crate) fn shared_scope(&self, policy: &str, network: Option<&str>) -> Option<Arc<Cluster>> {
        let cluster = self.cluster.as_ref()?;
        let shared = self.policies().loaded.get(policy).is_some_and(|l| l.shared);
        (shared && self.is_shared_scope(network)).then(|| cluster.clone())
    }

    fn is_shared_scope(&self, network: Option<&str>) -> bool {
        match network {
            None => true,
            Some(id) => self
                .view()
                .networks
                .resolve(id)
                .is_ok_and(|n| n.driver == Driver::Overlay),
        }
    }

    /// At the start of a session: policies this host has but the cluster never had (made
    /// before the host joined) are published with their shared attachments.
    pub(crate) async fn republish_policies(&self, cluster: &Cluster, m: &Mirror) -> Result<()> {
        let unshared: Vec<(Policy, Vec<u8>)> = {
            let ids: Vec<String> = self
                .policies()
                .loaded
                .values()
                .filter(|l| !l.shared && !m.policies.contains_key(&l.policy.id))
                .map(|l| l.policy.id.clone())
                .collect();
            if ids.is_empty() {
                // The usual case: nothing to read back (the store holds every module's bytes).
                return Ok(());
            }
            let mut out = Vec::new();
            for stored in self.store.load_policies().await? {
                if ids.contains(&stored.policy.id) {
                    out.push((stored.policy, stored.wasm));
                }
            }
            out
        };
        for (p, wasm) in unshared {
            if cluster.put_policy(&record(&p), &wasm).await?.is_some() {
                tracing::warn!(policy = %p.name, "another policy has this name in the cluster; kept to this host");
                continue;
            }
            for a in p
                .attachments
                .iter()
                .filter(|a| self.is_shared_scope(a.network_id.as_deref()))
            {
                cluster.put_attachment(&p.id, a).await?;
            }
            self.store.set_policy_shared(&p.id).await?;
            if let Some(l) = self.policies().loaded.get_mut(&p.id) {
                l.shared = true;
            }
        }
        Ok(())
    }

    /// Makes the loaded policies and their shared attachments match the cluster's; true when
    /// anything changed (the plan must be computed again).
    pub(crate) async fn converge_policies(&self, m: &Mirror) -> bool {
        let mut changed = false;
        for (id, rec) in &m.policies {
            if self.policies().loaded.contains_key(id) {
                continue;
            }
            let Some(wasm) = m.modules.get(id) else {
                continue;
            };
            match self.adopt_policy(rec, wasm).await {
                Ok(()) => changed = true,
                Err(e) => {
                    tracing::warn!(policy = %rec.name, error = %e, "loading a cluster policy")
                }
            }
        }
        let gone: Vec<Policy> = self
            .policies()
            .loaded
            .values()
            .filter(|l| l.shared && !m.policies.contains_key(&l.policy.id))
            .map(|l| l.policy.clone())
            .collect();
        for p in gone {
            match self.store.delete_policy(&p.id).await {
                Ok(()) => {
                    self.policies().loaded.remove(&p.id);
                    self.publish("policy.delete", &p.id, &p);
                    changed = true;
                }
                Err(e) => {
                    tracing::warn!(policy = %p.name, error = %e, "removing a policy gone from the cluster")
                }
            }
        }
        for id in m.policies.keys() {
            changed |= self.converge_attachments(id, m).await;
        }
        changed
    }

    async fn adopt_policy(&self, rec: &PolicyRecord, wasm: &[u8]) -> Result<()> {
        let taken = self
            .policies()
            .loaded
            .values()
            .any(|l| l.policy.name == rec.name);
        if taken {
            return Err(Error::conflict(
                "name_in_use",
                "a policy of this host has the same name",
            ));
        }
        let module = self
            .policies()
            .runtime
            .load(wasm)
            .map_err(|e| Error::Policy {
                policy: rec.name.clone(),
                error: e,
            })?;
        let policy = Policy {
            id: rec.id.clone(),
            name: rec.name.clone(),
            description: rec.description.clone(),
            sha256: module.sha256.clone(),
            size: module.size,
            version: module.version.clone(),
            created: rec.created.clone(),
            attachments: vec![],
            last_error: None,
        };
        self.store.insert_policy(&policy, wasm, true).await?;
        let loaded = Loaded {
            policy: policy.clone(),
            module: Some(Arc::new(module)),
            shared: true,
        };
        self.policies().loaded.insert(policy.id.clone(), loaded);
        self.publish("policy.create", &policy.id, &policy);
        Ok(())
    }

    /// A shared policy's attachments: the cluster's for shared scopes (of networks this host
    /// has), this host's own for its bridge networks.
    async fn converge_attachments(&self, id: &str, m: &Mirror) -> bool {
        let Some(current) = self
            .policies()
            .loaded
            .get(id)
            .filter(|l| l.shared)
            .map(|l| l.policy.attachments.clone())
        else {
            return false;
        };
        let mut wanted: Vec<Attachment> = current
            .iter()
            .filter(|a| !self.is_shared_scope(a.network_id.as_deref()))
            .cloned()
            .collect();
        wanted.extend(
            m.attachments
                .range((id.to_string(), String::new())..)
                .take_while(|((p, _), _)| p == id)
                .map(|(_, a)| a.clone())
                .filter(|a| {
                    a.network_id
                        .as_ref()
                        .is_none_or(|n| self.view().networks.resolve(n).is_ok())
                }),
        );
        let key = |a: &Attachment| (a.network_id.clone(), a.priority, a.audit);
        let have: BTreeSet<_> = current.iter().map(key).collect();
        let want: BTreeSet<_> = wanted.iter().map(key).collect();
        if have == want {
            return false;
        }
        for a in current.iter().filter(|a| !want.contains(&key(a))) {
            let _ = self
                .store
                .delete_attachment(id, a.network_id.as_deref())
                .await;
        }
        for a in wanted.iter().filter(|a| !have.contains(&key(a))) {
            if let Err(e) = self.store.upsert_attachment(id, a).await {
                tracing::warn!(policy = %id, error = %e, "recording a cluster attachment");
            }
        }
        if let Some(l) = self.policies().loaded.get_mut(id) {
            l.policy.attachments = wanted;
        }
        true
    }
}

fn record(p: &Policy) -> PolicyRecord {
    PolicyRecord {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        created: p.created.clone(),
    }
}
