//! Policies and their attachments.

use sqlx::Row;

use super::{constraint, Store};
use crate::error::Result;
use crate::policy::{Attachment, Policy};

/// A stored policy: what the API shows, and the module's bytes.
pub struct StoredPolicy {
    pub policy: Policy,
    pub wasm: Vec<u8>,
    /// Published to the cluster store.
    pub shared: bool,
}

impl Store {
    pub async fn load_policies(&self) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT id, name, description, sha256, version, wasm, created, shared FROM policies ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            let attachments = self.attachments_of(&id).await?;
            let wasm: Vec<u8> = r.try_get("wasm")?;
            out.push(StoredPolicy {
                policy: Policy {
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    sha256: r.try_get("sha256")?,
                    size: wasm.len(),
                    version: r.try_get("version")?,
                    created: r.try_get("created")?,
                    attachments,
                    last_error: None,
                    id,
                },
                wasm,
                shared: r.try_get::<i64, _>("shared")? == 1,
            });
        }
        Ok(out)
    }

    async fn attachments_of(&self, policy: &str) -> Result<Vec<Attachment>> {
        let rows = sqlx::query(
            "SELECT network_id, priority, audit, created FROM attachments WHERE policy_id = ? ORDER BY priority, scope",
        )
        .bind(policy)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Attachment {
                    network_id: r.try_get("network_id")?,
                    priority: r.try_get("priority")?,
                    audit: r.try_get::<i64, _>("audit")? == 1,
                    created: r.try_get("created")?,
                })
            })
            .collect()
    }

    pub async fn insert_policy(&self, p: &Policy, wasm: &[u8], shared: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO policies (id, name, description, sha256, version, wasm, created, shared) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.description)
        .bind(&p.sha256)
        .bind(&p.version)
        .bind(wasm)
        .bind(&p.created)
        .bind(shared as i64)
        .execute(&self.pool)
        .await
        .map_err(constraint)?;
        Ok(())
    }

    pub async fn set_policy_shared(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE policies SET shared = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a policy with its attachments, in one transaction.
    pub async fn delete_policy(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for q in [
            "DELETE FROM attachments WHERE policy_id = ?",
            "DELETE FROM policies WHERE id = ?",
        ] {
            sqlx::query(q).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Attaches (or re-attaches with new settings) a policy to a network or globally.
    pub async fn upsert_attachment(&self, policy: &str, a: &Attachment) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (policy_id, scope, network_id, priority, audit, created) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (policy_id, scope) DO UPDATE SET priority = excluded.priority, audit = excluded.audit",
        )
        .bind(policy)
        .bind(a.network_id.as_deref().unwrap_or("*"))
        .bind(&a.network_id)
        .bind(a.priority)
        .bind(a.audit as i64)
        .bind(&a.created)
        .execute(&self.pool)
        .await
        .map_err(constraint)?;
        Ok(())
    }

    pub async fn delete_attachment(&self, policy: &str, network_id: Option<&str>) -> Result<()> {
        sqlx::query("DELETE FROM attachments WHERE policy_id = ? AND scope = ?")
            .bind(policy)
            .bind(network_id.unwrap_or("*"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_endpoint_labels(&self, id: &str, labels: &crate::model::Labels) -> Result<()> {
        sqlx::query("UPDATE endpoints SET labels = ? WHERE id = ?")
            .bind(serde_json::to_string(labels).expect("labels serialise"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
