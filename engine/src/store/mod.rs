//! SQLite, the source of truth. Every mutation is one transaction; WAL lets readers (and a
//! second process inspecting the file) run beside the writer; foreign keys are on.
//! Constraint violations become `Error::Conflict` here, in one place.

mod policies;
mod rows;
mod services;

pub use policies::StoredPolicy;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;

use crate::error::{Error, Result};
use crate::model::{Endpoint, Network, Sandbox};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Everything the store holds, as loaded at start.
pub struct Snapshot {
    pub networks: Vec<Network>,
    pub sandboxes: Vec<Sandbox>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database and applies the embedded migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a committed transaction survives a crash of the process
            // (kill -9); only an OS crash may lose the last few.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: the engine serialises writers anyway, and reads come from memory.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::Internal(format!("migrating the database: {e}")))?;
        Ok(Store { pool })
    }

    pub async fn load(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            networks: rows::load_networks(&self.pool).await?,
            sandboxes: rows::load_sandboxes(&self.pool).await?,
            endpoints: rows::load_endpoints(&self.pool).await?,
        })
    }

    pub async fn insert_network(&self, n: &Network) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rows::insert_network(&mut tx, n).await.map_err(constraint)?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes networks (one transaction for all of them).
    pub async fn delete_networks(&self, ids: &[&str]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM networks WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(constraint)?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_sandbox(&self, s: &Sandbox) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rows::insert_sandbox(&mut tx, s).await.map_err(constraint)?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a sandbox with its endpoints and their published ports, in one transaction.
    pub async fn delete_sandbox(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM endpoints WHERE sandbox_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sandboxes WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts an endpoint and its published ports, in one transaction.
    pub async fn insert_endpoint(&self, e: &Endpoint) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        rows::insert_endpoint(&mut tx, e)
            .await
            .map_err(constraint)?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM endpoints WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A runtime plugin's records of one kind, (id, body).
    pub async fn records(&self, kind: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query_as("SELECT id, body FROM plugin_records WHERE kind = ? ORDER BY id")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// One record's body, if it exists (a lookup by the table's primary key).
    pub async fn record(&self, kind: &str, id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT body FROM plugin_records WHERE kind = ? AND id = ?")
                .bind(kind)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(body,)| body))
    }

    pub async fn put_record(&self, kind: &str, id: &str, body: &str) -> Result<()> {
        sqlx::query("INSERT OR REPLACE INTO plugin_records (kind, id, body) VALUES (?, ?, ?)")
            .bind(kind)
            .bind(id)
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_record(&self, kind: &str, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM plugin_records WHERE kind = ? AND id = ?")
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type Tx<'a> = sqlx::Transaction<'a, Sqlite>;

/// The one place where a database constraint becomes a client-facing conflict. The engine checks
/// the same rules before writing, so reaching this means two requests raced.
fn constraint(e: sqlx::Error) -> Error {
    let Some(db) = e.as_database_error() else {
        return Error::Store(e);
    };
    let what = db
        .message()
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .to_string();
    match db.kind() {
        sqlx::error::ErrorKind::UniqueViolation => {
            Error::conflict("already_exists", format!("{what} is already in use"))
        }
        sqlx::error::ErrorKind::ForeignKeyViolation => {
            Error::conflict("in_use", "the object is referenced by another one")
        }
        _ => Error::Store(e),
    }
}
