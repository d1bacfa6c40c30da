//! Change events: every committed mutation publishes one, for `GET /v1/events` and the dashboard.

use serde::Serialize;
use utoipa::ToSchema;

/// What happened; serialised (and sent as the SSE event name) as `object.verb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum EventKind {
    #[serde(rename = "network.create")]
    NetworkCreate,
    #[serde(rename = "network.delete")]
    NetworkDelete,
    #[serde(rename = "sandbox.create")]
    SandboxCreate,
    #[serde(rename = "sandbox.delete")]
    SandboxDelete,
    #[serde(rename = "endpoint.connect")]
    EndpointConnect,
    #[serde(rename = "endpoint.disconnect")]
    EndpointDisconnect,
    #[serde(rename = "endpoint.update")]
    EndpointUpdate,
    #[serde(rename = "policy.create")]
    PolicyCreate,
    #[serde(rename = "policy.delete")]
    PolicyDelete,
    #[serde(rename = "policy.attach")]
    PolicyAttach,
    #[serde(rename = "policy.detach")]
    PolicyDetach,
    #[serde(rename = "service.create")]
    ServiceCreate,
    #[serde(rename = "service.delete")]
    ServiceDelete,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NetworkCreate => "network.create",
            EventKind::NetworkDelete => "network.delete",
            EventKind::SandboxCreate => "sandbox.create",
            EventKind::SandboxDelete => "sandbox.delete",
            EventKind::EndpointConnect => "endpoint.connect",
            EventKind::EndpointDisconnect => "endpoint.disconnect",
            EventKind::EndpointUpdate => "endpoint.update",
            EventKind::PolicyCreate => "policy.create",
            EventKind::PolicyDelete => "policy.delete",
            EventKind::PolicyAttach => "policy.attach",
            EventKind::PolicyDetach => "policy.detach",
            EventKind::ServiceCreate => "service.create",
            EventKind::ServiceDelete => "service.delete",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Event {
    /// Increases by one per event since the daemon started.
    pub seq: u64,
    pub time: String,
    pub action: EventKind,
    pub id: String,
    /// The object as created, or as it was when deleted.
    pub object: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialise_as_their_names() {
        for k in [EventKind::NetworkCreate, EventKind::PolicyDetach] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
