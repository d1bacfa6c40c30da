//! Sandbox operations: create (or adopt a namespace) and delete (disconnecting what is left).

use std::sync::Arc;

use super::{report, undo, Engine, SandboxDetail};
use crate::cluster::keys::EndpointRecord;
use crate::error::{Error, Result};
use crate::events::EventKind;
use crate::ids;
use crate::model::*;

impl Engine {
    pub async fn create_sandbox(&self, req: SandboxCreate) -> Result<Arc<Sandbox>> {
        crate::metrics::timed("sandbox_create", self.create_sandbox_op(req)).await
    }

    async fn create_sandbox_op(&self, req: SandboxCreate) -> Result<Arc<Sandbox>> {
        let id = ids::new_id();
        let name = req.name.unwrap_or_else(|| format!("sandbox-{}", &id[..12]));
        validate_name("name", &name)?;
        validate_labels("labels", &req.labels)?;
        if req.handoff && req.netns.is_none() {
            return Err(Error::invalid(
                "handoff",
                "only for an adopted namespace (give netns)",
            ));
        }
        let (netns, netns_owned) = match req.netns {
            Some(path) => (check_adopted_netns(&path, req.handoff).await?, false),
            None => (
                self.cfg
                    .run_dir
                    .join("netns")
                    .join(&id)
                    .to_string_lossy()
                    .into_owned(),
                true,
            ),
        };
        let _writer = self.lock_writer().await;
        check_free(&self.state(), &name, &netns)?;
        let (netns_name, resolv_conf) = match netns_owned {
            true => self.netns_names(&name),
            false => (None, None),
        };
        let sandbox = Arc::new(Sandbox {
            id,
            name,
            labels: req.labels,
            netns,
            netns_owned,
            handoff: req.handoff,
            netns_name,
            resolv_conf,
            created: ids::now(),
        });
        let made = match self.drivers.bridge.create_sandbox(&sandbox).await {
            Ok(()) => self.link_sandbox(&sandbox),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = made {
            // link_sandbox leaves nothing when it fails (and another's namespace untouched).
            undo(
                "removing the namespace",
                self.drivers.bridge.delete_sandbox(&sandbox),
            );
            return Err(e);
        }
        if let Err(e) = self.store.insert_sandbox(&sandbox).await {
            self.unlink_sandbox(&sandbox, &mut Vec::new());
            undo(
                "removing the namespace",
                self.drivers.bridge.delete_sandbox(&sandbox),
            );
            return Err(e);
        }
        self.update(|s| s.view.add_sandbox(sandbox.clone()));
        self.publish(EventKind::SandboxCreate, &sandbox.id, &sandbox);
        Ok(sandbox)
    }

    /// Removes a sandbox and disconnects its endpoints, in one transaction.
    pub async fn delete_sandbox(&self, reference: &str) -> Result<SandboxDetail> {
        crate::metrics::timed("sandbox_delete", self.delete_sandbox_op(reference)).await
    }

    async fn delete_sandbox_op(&self, reference: &str) -> Result<SandboxDetail> {
        let _writer = self.lock_writer().await;
        let before = self.state();
        let detail = before.sandbox(reference)?;
        let records: Vec<_> = detail
            .endpoints
            .iter()
            .filter_map(|e| self.record_of(&before, e))
            .collect();
        if let Some((cluster, _)) = records.first() {
            let recs: Vec<EndpointRecord> = records.iter().map(|(_, r)| r.clone()).collect();
            cluster.withdraw(&recs).await?;
        }
        self.store.delete_sandbox(&detail.sandbox.id).await?;
        self.update(|s| {
            for e in &detail.endpoints {
                s.view.remove_endpoint(&e.id);
                s.policies.plan.members.remove(&e.id);
            }
            s.view.remove_sandbox(&detail.sandbox.id);
        });
        // Committed: the kernel follows, past every failure (a vanished namespace included).
        let mut problems = Vec::new();
        let after = self.state();
        self.teardown_endpoints(&before, &after, &detail.endpoints, &mut problems)
            .await;
        self.unlink_sandbox(&detail.sandbox, &mut problems);
        if let Err(e) = self.drivers.bridge.delete_sandbox(&detail.sandbox) {
            problems.push(e.to_string());
        }
        report("removing a sandbox", problems);
        self.update(|_| {});
        for e in &detail.endpoints {
            self.publish(EventKind::EndpointDisconnect, &e.id, e);
        }
        self.publish(
            EventKind::SandboxDelete,
            &detail.sandbox.id,
            &detail.sandbox,
        );
        Ok(detail)
    }
}

/// A sandbox's name and namespace are each used once.
fn check_free(state: &crate::state::State, name: &str, netns: &str) -> Result<()> {
    if state.view().sandboxes().has_name(name) {
        return Err(Error::conflict(
            "name_in_use",
            format!("sandbox name {name:?} is already in use"),
        ));
    }
    if let Some(other) = state.view().sandbox_with_netns(netns) {
        return Err(Error::conflict(
            "netns_in_use",
            format!("{netns} is already sandbox {:?}", other.name),
        ));
    }
    Ok(())
}

/// An adopted namespace must be an absolute path that exists.
/// An adopted namespace must exist, but for a handoff sandbox's, which the runtime may make
/// after wasmnet's part is done.
async fn check_adopted_netns(path: &str, handoff: bool) -> Result<String> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(Error::invalid(
            "netns",
            format!("{path:?} is not an absolute path"),
        ));
    }
    if handoff {
        return Ok(path.to_string());
    }
    match tokio::fs::metadata(path).await {
        Ok(_) => Ok(path.to_string()),
        Err(e) => Err(Error::invalid("netns", format!("{path}: {e}"))),
    }
}
