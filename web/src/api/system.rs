//! Health and the event stream.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use utoipa::ToSchema;
use wasmnet_engine::cluster::Health as ClusterHealth;
use wasmnet_engine::engine::Counts;
use wasmnet_engine::events::Event;

use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: &'static str,
    pub version: &'static str,
    /// `nftables` or `iptables`.
    pub firewall: String,
    pub counts: Counts,
    /// The cluster store (etcd), when this host shares overlay networks: whether it answers,
    /// and its last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

/// Liveness and a summary.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        firewall: s.engine.firewall_backend().to_string(),
        counts: s.engine.counts(),
        cluster: s.engine.cluster_health(),
    })
}

/// Every change as Server-Sent Events: the SSE event name is the action (`network.create`, …),
/// its data the JSON event. A client too slow to keep up gets a `lagged` event with how many it
/// missed, and should re-list.
#[utoipa::path(get, path = "/v1/events", tag = "system",
    responses((status = 200, description = "text/event-stream of events", body = Event, content_type = "text/event-stream")))]
pub async fn events(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut shutdown = s.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let stream = BroadcastStream::new(s.engine.subscribe())
        .map(|item| {
            Ok(match item {
                Ok(e) => SseEvent::default()
                    .event(e.action.as_str())
                    .id(e.seq.to_string())
                    .json_data(&e)
                    .unwrap_or_default(),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    SseEvent::default().event("lagged").data(n.to_string())
                }
            })
        })
        // End the stream on shutdown, so graceful shutdown does not wait for clients forever.
        .take_until(Box::pin(stopped));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Re-asserts wasmnet's firewall tables from the store (as after a firewalld reload or an
/// `nft flush ruleset`; wasmnet also notices that on its own within a second).
#[utoipa::path(post, path = "/v1/firewall/reload", tag = "system",
    responses((status = 204, description = "the tables are in place"), (status = 500, body = crate::ErrorBody)))]
pub async fn reload_firewall(
    State(s): State<AppState>,
) -> crate::error::ApiResult<axum::http::StatusCode> {
    s.engine.reload_firewall().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
