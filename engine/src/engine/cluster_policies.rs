//! Policies across hosts. In a cluster every policy is shared: its module is in etcd, and so
//! are its global attachments and those to overlay networks (attachments to a host's own
//! bridge networks stay that host's). Each host loads what the cluster has and enforces it,
//! so a policy on an overlay network holds on every host; remote endpoints are classified
//! like local ones (their records carry their labels), so groups span hosts.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::cluster::{is_shared_scope, policy_record};
use super::Engine;
use crate::cluster::keys::PolicyRecord;
use crate::cluster::mirror::Mirror;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::policy::{Attachment, Loaded, Policy};

impl Engine {
    /// At the start of a session: policies this host has but the cluster never had (made
    /// before the host joined) are published with their shared attachments.
    pub(super) async fn republish_policies(&self, cluster: &Cluster, m: &Mirror) -> Result<()> {
        let _writer = self.lock_writer().await;
        let state = self.state();
        let ids: Vec<String> = state
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
        for stored in self.store.load_policies().await? {
            if !ids.contains(&stored.policy.id) {
                continue;
            }
            let p = stored.policy;
            if cluster
                .put_policy(&policy_record(&p), &stored.wasm)
                .await?
                .is_some()
            {
                tracing::warn!(policy = %p.name, "another policy has this name in the cluster; kept to this host");
                continue;
            }
            for a in p
                .attachments
                .iter()
                .filter(|a| is_shared_scope(&state, a.network_id.as_deref()))
            {
                cluster.put_attachment(&p.id, a).await?;
            }
            self.store.set_policy_shared(&p.id).await?;
            self.update(|s| s.policies.update(&p.id, |l| l.shared = true));
        }
        Ok(())
    }

    /// Makes the loaded policies and their shared attachments match the cluster's; true when
    /// anything changed (the plan must be computed again). Under the writer lock.
    pub(super) async fn converge_policies(&self, m: &Mirror) -> bool {
        let mut changed = false;
        for (id, rec) in &m.policies {
            if self.state().policies().loaded.contains_key(id) {
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
            .state()
            .policies()
            .loaded
            .values()
            .filter(|l| l.shared && !m.policies.contains_key(&l.policy.id))
            .map(|l| l.policy.clone())
            .collect();
        for p in gone {
            match self.store.delete_policy(&p.id).await {
                Ok(()) => {
                    self.update(|s| {
                        s.policies.loaded.remove(&p.id);
                    });
                    self.forget_artifact(&p);
                    self.publish(EventKind::PolicyDelete, &p.id, &p);
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
        if self.state().policies().has_name(&rec.name) {
            return Err(Error::conflict(
                "name_in_use",
                "a policy of this host has the same name",
            ));
        }
        let module = self.load_module(&rec.name, wasm).await?;
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
        let loaded = Arc::new(Loaded {
            policy: policy.clone(),
            module: Some(Arc::new(module)),
            shared: true,
        });
        self.keep_artifact(&loaded.module).await;
        self.update(|s| {
            s.policies.loaded.insert(policy.id.clone(), loaded);
        });
        self.publish(EventKind::PolicyCreate, &policy.id, &policy);
        Ok(())
    }

    /// A shared policy's attachments: the cluster's for shared scopes (of networks this host
    /// has), this host's own for its bridge networks.
    async fn converge_attachments(&self, id: &str, m: &Mirror) -> bool {
        let state = self.state();
        let Some(current) = state
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
            .filter(|a| !is_shared_scope(&state, a.network_id.as_deref()))
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
                        .is_none_or(|n| state.view().networks().resolve(n).is_ok())
                }),
        );
        let key = |a: &Attachment| (a.network_id.clone(), a.priority, a.audit);
        let have: BTreeSet<_> = current.iter().map(key).collect();
        let want: BTreeSet<_> = wanted.iter().map(key).collect();
        if have == want {
            return false;
        }
        for a in current.iter().filter(|a| !want.contains(&key(a))) {
            let removed = self
                .store
                .delete_attachment(id, a.network_id.as_deref())
                .await;
            super::undo(
                "removing a stored attachment gone from the cluster",
                removed,
            );
        }
        for a in wanted.iter().filter(|a| !have.contains(&key(a))) {
            if let Err(e) = self.store.upsert_attachment(id, a).await {
                tracing::warn!(policy = %id, error = %e, "recording a cluster attachment");
            }
        }
        self.update(|s| s.policies.update(id, |l| l.policy.attachments = wanted));
        true
    }
}
