//! wasmnet's HTTP face: the REST API under `/v1` with its OpenAPI document (generated from the
//! handlers, so the two cannot drift), served on a unix socket (no auth: file permissions
//! guard it) and optionally on TCP (bearer token), plus the client the CLI and tests use.

pub mod api;
pub mod client;
mod error;
mod extract;
pub mod ui;

use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::future::IntoFuture;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wasmnet_engine::Engine;

pub use error::{ApiError, ErrorBody};

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Becomes true when the server is shutting down (ends event streams).
    pub shutdown: watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmnet", description = "Docker's Container Network Model on Linux: networks, sandboxes and endpoints."),
    tags(
        (name = "networks", description = "Groups of endpoints that talk directly (a Linux bridge)"),
        (name = "sandboxes", description = "Network namespaces"),
        (name = "endpoints", description = "A sandbox's connection to a network"),
        (name = "services", description = "A load-balanced virtual IP on a network, in front of the endpoints it selects"),
        (name = "policies", description = "Wasm policies deciding isolation and NAT, and the ruleset they produce"),
        (name = "flows", description = "What the firewall dropped, would have dropped, or logged, by whom"),
        (name = "system", description = "Health, events and this document"),
    )
)]
struct ApiDoc;

/// The documented routes, and the OpenAPI document built from the same list.
fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use api::{endpoints, networks, policies, sandboxes, services, system};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(api::metrics::metrics))
        .routes(routes!(api::flows::list))
        .routes(routes!(api::flows::stream))
        .routes(routes!(system::events))
        .routes(routes!(openapi_json))
        .routes(routes!(system::reload_firewall))
        .routes(routes!(networks::list, networks::create))
        .routes(routes!(networks::prune))
        .routes(routes!(networks::inspect, networks::delete))
        .routes(routes!(networks::names))
        .routes(routes!(sandboxes::list, sandboxes::create))
        .routes(routes!(sandboxes::inspect, sandboxes::delete))
        .routes(routes!(endpoints::list, endpoints::create))
        .routes(routes!(
            endpoints::inspect,
            endpoints::delete,
            endpoints::update
        ))
        .routes(routes!(services::list, services::create))
        .routes(routes!(services::inspect, services::delete))
        .routes(routes!(policies::list, policies::upload))
        .routes(routes!(policies::inspect, policies::delete))
        .routes(routes!(policies::attach))
        .routes(routes!(policies::detach))
        .routes(routes!(policies::dry_run))
        .routes(routes!(policies::counters))
        .routes(routes!(policies::ruleset))
        .split_for_parts()
}

/// The OpenAPI 3.1 document, serialised once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| documented().1)
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> axum::Json<&'static utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

/// The application without authentication (what the unix socket serves).
pub fn router(state: AppState) -> Router {
    documented()
        .0
        .route_layer(middleware::from_fn(api::metrics::count_requests))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The application behind a bearer token (what TCP serves).
pub fn router_with_token(state: AppState, token: String) -> Router {
    router(state).layer(middleware::from_fn_with_state(
        Arc::new(token),
        require_token,
    ))
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}

async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> (the token is in the state dir)",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Serves the unix socket and, if given, the TCP listener until `shutdown` turns true, then
/// lets in-flight requests finish.
pub async fn serve(
    state: AppState,
    unix: Option<UnixListener>,
    tcp: Option<(TcpListener, String)>,
) -> std::io::Result<()> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let unix_task = unix.map(|l| {
        let app = router(state.clone());
        tokio::spawn(
            axum::serve(l, app)
                .with_graceful_shutdown(stopped(state.shutdown.clone()))
                .into_future(),
        )
    });
    let tcp_task = tcp.map(|(l, token)| {
        // The dashboard's routes first (session cookies); everything else is the API (bearer).
        let app = ui::router(state.clone(), token.clone())
            .fallback_service(router_with_token(state.clone(), token));
        tokio::spawn(
            axum::serve(l, app)
                .with_graceful_shutdown(stopped(state.shutdown.clone()))
                .into_future(),
        )
    });
    for task in [unix_task, tcp_task].into_iter().flatten() {
        task.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}
