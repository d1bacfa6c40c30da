//! The pages about the whole host: the overview, the topology (a page and its SVG drawing), the
//! ruleset in force, and the event stream behind the pages' live updates.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use wasmnet_engine::engine::{Counts, Filter};

use super::page::{error_page, render};
use super::session::Authed;
use super::{topology, UiState};

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    csrf: String,
    counts: Counts,
    firewall: String,
    /// The ruleset generation (bumped at every change put in the kernel); None if unknown.
    generation: Option<u64>,
    version: &'static str,
}

pub async fn overview(State(s): State<UiState>, auth: Authed) -> Response {
    let e = &s.app.engine;
    let generation = Some(e.generation());
    render(Overview {
        csrf: auth.csrf,
        counts: e.counts(),
        firewall: e.firewall_backend().to_string(),
        generation,
        version: env!("CARGO_PKG_VERSION"),
    })
}

fn refs<T>(v: &[Arc<T>]) -> Vec<&T> {
    v.iter().map(|x| x.as_ref()).collect()
}

#[derive(Template)]
#[template(path = "topology.html")]
struct TopologyPage {
    csrf: String,
}

pub async fn topology_page(auth: Authed) -> Response {
    render(TopologyPage { csrf: auth.csrf })
}

pub async fn topology_svg(State(s): State<UiState>, _auth: Authed) -> Response {
    let e = &s.app.engine;
    let all = Filter::default();
    let networks = e.list_networks(&all, None, 1000).items;
    let sandboxes = e.list_sandboxes(&all, None, 1000).items;
    let endpoints = e
        .list_endpoints(&all, None, 1000)
        .map(|p| p.items)
        .unwrap_or_default();
    let ids: Vec<&str> = endpoints.iter().map(|x| x.id.as_str()).collect();
    let traffic = topology::Traffic {
        counters: e.endpoint_traffic(&ids).await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "reading the endpoints' counters");
            Default::default()
        }),
        dropping: e.recently_dropping(std::time::Duration::from_secs(60)),
    };
    let svg = topology::svg(
        &refs(&networks),
        &refs(&sandboxes),
        &refs(&endpoints),
        &traffic,
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "ruleset.html")]
struct RulesetPage {
    csrf: String,
    backend: String,
    chains: Vec<wasmnet_engine::firewall::ChainView>,
    lines: usize,
    rules: String,
}

pub async fn ruleset(State(s): State<UiState>, auth: Authed) -> Response {
    let e = &s.app.engine;
    let chains = match e.firewall_chains().await {
        Ok(c) => c,
        Err(err) => return error_page(&auth, err, "/"),
    };
    let rules = e.firewall_text();
    render(RulesetPage {
        csrf: auth.csrf,
        backend: e.firewall_backend().to_string(),
        chains,
        lines: rules.lines().count(),
        rules,
    })
}

/// The API's event stream, for the logged-in browser (EventSource cannot send a bearer token).
pub async fn events(State(s): State<UiState>, _auth: Authed) -> Response {
    crate::api::system::events(State(s.app))
        .await
        .into_response()
}
