//! The default network: made once, at the first start with one configured (as Docker makes
//! `bridge` on `docker0`); an operator who deletes it is not overruled at the next start.

use super::Engine;
use crate::model::{Labels, NetworkCreate};

/// The label marking the default network, which an endpoint naming no network joins.
pub const DEFAULT_LABEL: &str = "wasmnet.default";
/// The engine's own record (in the plugin records) saying the default network was made.
const RECORD: (&str, &str) = ("wasmnet", "default-network");

impl Engine {
    /// Makes the default network unless it was made before (or its name is taken).
    pub(super) async fn ensure_default_network(&self) -> crate::Result<()> {
        let Some(d) = self.cfg.default_network.clone() else {
            return Ok(());
        };
        let made = self.store.records(RECORD.0).await?;
        if made.iter().any(|(id, _)| id == RECORD.1) {
            return Ok(());
        }
        if !self.state().view().networks().has_name(&d.name) {
            let req = NetworkCreate {
                name: d.name.clone(),
                labels: Labels::from([(DEFAULT_LABEL.into(), "true".into())]),
                options: d
                    .altname
                    .iter()
                    .map(|a| ("altname".to_string(), a.clone()))
                    .collect(),
                ..NetworkCreate::default()
            };
            self.create_network(req).await?;
            tracing::info!(network = d.name, "made the default network");
        }
        self.store.put_record(RECORD.0, RECORD.1, "{}").await
    }

    /// The network an endpoint naming none joins.
    pub(super) fn default_network_name(&self) -> crate::Result<String> {
        match &self.cfg.default_network {
            Some(d) => Ok(d.name.clone()),
            None => Err(crate::Error::invalid(
                "network",
                "required: this daemon has no default network",
            )),
        }
    }
}
