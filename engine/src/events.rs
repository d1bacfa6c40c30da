//! Change events: every committed mutation publishes one, for `GET /v1/events` and the dashboard.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Event {
    /// Increases by one per event since the daemon started.
    pub seq: u64,
    pub time: String,
    /// `network.create`, `network.delete`, `sandbox.create`, `sandbox.delete`,
    /// `endpoint.connect`, `endpoint.disconnect`.
    pub action: &'static str,
    pub id: String,
    /// The object as created, or as it was when deleted.
    pub object: serde_json::Value,
}
