//! The Flows page: what the firewall dropped, would have dropped or logged, newest first,
//! with the API's filters, kept live from the flow stream (like Hubble's flow list).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wasmnet_engine::flows::Flow;

use super::page::render;
use super::session::Authed;
use super::UiState;
use crate::api::flows::flow_query;

/// Rows the page shows (and keeps, as new ones arrive).
const ROWS: usize = 200;

#[derive(Template)]
#[template(path = "flows.html")]
struct FlowsPage {
    csrf: String,
    flows: Vec<Row>,
    /// The filters as given, for the form and the stream.
    network: String,
    sandbox: String,
    policy: String,
    verdict: String,
    query: String,
    error: Option<String>,
}

pub async fn list(State(s): State<UiState>, auth: Authed, RawQuery(raw): RawQuery) -> Response {
    let raw = raw.unwrap_or_default();
    let given = |k: &str| {
        (form_urlencoded::parse(raw.as_bytes()))
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (flows, error) = match flow_query(&s.app, Some(&raw)) {
        Ok((filter, _)) => {
            let flows = s.app.engine.flows(&filter, ROWS);
            (flows.iter().rev().map(Row::of).collect(), None)
        }
        Err(e) => (Vec::new(), Some((e.status, e.message))),
    };
    let (status, error) = match error {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let page = FlowsPage {
        csrf: auth.csrf,
        flows,
        network: given("network"),
        sandbox: given("sandbox"),
        policy: given("policy"),
        verdict: given("verdict"),
        query: raw,
        error,
    };
    (status, render(page)).into_response()
}

/// The flow stream for the page's script (the session, not the bearer token, lets it in).
pub async fn stream(State(s): State<UiState>, _auth: Authed, raw: RawQuery) -> Response {
    crate::api::flows::stream(State(s.app), raw)
        .await
        .into_response()
}

/// A flow as the table shows it (the script builds the same from the stream).
pub struct Row {
    pub seq: u64,
    pub time: String,
    pub verdict: &'static str,
    pub by: String,
    pub protocol: String,
    pub source: String,
    pub destination: String,
    pub network: String,
}

impl Row {
    pub fn of(f: &Flow) -> Row {
        Row {
            seq: f.seq,
            time: f.time.clone(),
            verdict: f.verdict.as_str(),
            by: f.decided_by.clone(),
            protocol: f.protocol.clone(),
            source: peer(&f.source),
            destination: peer(&f.destination),
            network: f.network.clone().unwrap_or_default(),
        }
    }
}

/// One end of a flow as the table shows it: `sandbox (address:port)`.
pub fn peer(p: &wasmnet_engine::flows::FlowPeer) -> String {
    let at = match p.port {
        Some(port) if p.address.is_ipv6() => format!("[{}]:{port}", p.address),
        Some(port) => format!("{}:{port}", p.address),
        None => p.address.to_string(),
    };
    match &p.sandbox {
        Some(s) => format!("{s} ({at})"),
        None => at,
    }
}
