//! `/metrics` for Prometheus, and the middleware counting every API request by route.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wasmnet_engine::metrics::{self, HttpLabels, RouteLabels, Snapshot};

use crate::AppState;

/// The OpenMetrics text format's media type, which Prometheus asks for and parses.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric wasmnet keeps, in the OpenMetrics text format: operations and their latency,
/// requests by route, policy calls, firewall changes, watcher restorations, reconciler
/// repairs, object counts, the cluster's state.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let policy_packets = match s.engine.policy_packets().await {
        Ok(p) => p,
        Err(e) => {
            // The rest is still worth scraping; the failure is the operator's to see in the log.
            tracing::warn!(error = %e, "reading the policies' counters for /metrics");
            Vec::new()
        }
    };
    let now = Snapshot {
        objects: s.engine.object_counts().to_vec(),
        cluster_connected: s.engine.cluster_health().map(|h| h.connected),
        policy_packets,
    };
    let text = metrics::get().encode(&now);
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// Counts a request and times it, by its route's template (`/v1/networks/{id}`: one series
/// per route, whatever the ids).
pub async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let m = metrics::get();
    let latency = RouteLabels {
        method: method.clone(),
        route: route.clone(),
    };
    let elapsed = start.elapsed().as_secs_f64();
    m.http_latency.get_or_create(&latency).observe(elapsed);
    let status = response.status().as_u16().to_string();
    let labels = HttpLabels {
        method,
        route,
        status,
    };
    m.http_requests.get_or_create(&labels).inc();
    response
}
