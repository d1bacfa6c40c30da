//! The web dashboard: server-rendered pages (askama templates in `web/templates/`) on the TCP
//! listener, beside the API. Log in with the API token; forms carry a CSRF token; pages work
//! without JavaScript (a small module adds live updates). Every page sends a strict CSP.
//!
//! Here: the routes, and the headers every response gets; in `page`, what every page shares;
//! one file per part of the dashboard.

mod flows;
mod forms;
mod login;
mod networks;
mod overview;
mod page;
mod policies;
mod sandboxes;
mod services;
mod session;
pub mod topology;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;
pub use session::Sessions;

#[derive(Clone)]
pub struct UiState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    pub token: Arc<String>,
}

/// The dashboard's routes.
pub fn router(app: AppState, token: String) -> Router {
    let state = UiState {
        app,
        sessions: Arc::default(),
        token: Arc::new(token),
    };
    Router::new()
        .route("/", get(overview::overview))
        .route("/login", get(login::login_page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/networks", get(networks::list).post(networks::create))
        .route("/networks/{id}", get(networks::show))
        .route("/networks/{id}/delete", post(networks::delete))
        .route("/sandboxes", get(sandboxes::list).post(sandboxes::create))
        .route("/sandboxes/{id}", get(sandboxes::show))
        .route("/sandboxes/{id}/delete", post(sandboxes::delete))
        .route("/sandboxes/{id}/connect", post(sandboxes::connect))
        .route("/endpoints/{id}/disconnect", post(sandboxes::disconnect))
        .route("/services", get(services::list))
        .route("/services/{id}", get(services::show))
        .route("/services/{id}/delete", post(services::delete))
        .route("/topology", get(overview::topology_page))
        .route("/topology.svg", get(overview::topology_svg))
        .route(
            "/policies",
            get(policies::list)
                .post(policies::upload)
                .layer(DefaultBodyLimit::max(policies::UPLOAD_BODY_LIMIT)),
        )
        .route("/policies/{id}", get(policies::show))
        .route("/policies/{id}/attach", post(policies::attach))
        .route("/policies/{id}/detach", post(policies::detach))
        .route("/policies/{id}/delete", post(policies::delete))
        .route("/ruleset", get(overview::ruleset))
        .route("/flows", get(flows::list))
        .route("/ui/flows", get(flows::stream))
        .route("/ui/events", get(overview::events))
        .route(
            "/static/app.css",
            get(|| asset("text/css", include_str!("../../static/app.css"))),
        )
        .route(
            "/static/app.js",
            get(|| asset("text/javascript", include_str!("../../static/app.js"))),
        )
        .layer(middleware::from_fn(security_headers))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
