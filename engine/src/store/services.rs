//! Services' rows: key columns for the constraints, the object as JSON.

use sqlx::Row;

use super::{constraint, Store};
use crate::error::{Error, Result};
use crate::model::Service;

impl Store {
    pub async fn load_services(&self) -> Result<Vec<Service>> {
        let rows = sqlx::query("SELECT id, body FROM services ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let (id, body): (String, String) = (r.try_get("id")?, r.try_get("body")?);
                serde_json::from_str(&body).map_err(|e| {
                    Error::Internal(format!("service {id}'s stored body is bad JSON: {e}"))
                })
            })
            .collect()
    }

    pub async fn insert_service(&self, s: &Service) -> Result<()> {
        let body = serde_json::to_string(s).expect("a service serialises");
        sqlx::query(
            "INSERT INTO services (id, name, network_id, ipv4, ipv6, body) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.name)
        .bind(&s.network_id)
        .bind(s.ipv4.map(|a| a.to_string()))
        .bind(s.ipv6.map(|a| a.to_string()))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(constraint)?;
        Ok(())
    }

    pub async fn delete_service(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM services WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
