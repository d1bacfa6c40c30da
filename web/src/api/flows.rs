//! Flow records: what the firewall dropped, would have dropped (audit) or logged, newest
//! last, and as a live stream.

use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use utoipa::ToSchema;
use wasmnet_engine::flows::{Flow, FlowFilter, FlowVerdict};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{parse_limit, DEFAULT_LIMIT};
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct FlowList {
    /// Oldest first; at most `limit`, the newest that match.
    pub items: Vec<Flow>,
}

/// Parses `?network=&sandbox=&policy=&verdict=&since=&limit=`; references are resolved to
/// the names flows carry (an unknown one is a 404, a misspelt parameter a 422, an empty
/// value no filter).
pub(crate) fn flow_query(s: &AppState, raw: Option<&str>) -> Result<(FlowFilter, usize), ApiError> {
    let mut f = FlowFilter::default();
    let mut limit = DEFAULT_LIMIT;
    let state = s.engine.state();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        // An empty value (a form's blank field) filters nothing.
        if value.is_empty() {
            continue;
        }
        match key.as_ref() {
            "network" => f.network = Some(state.view().networks().resolve(&value)?.name.clone()),
            "sandbox" => f.sandbox = Some(state.view().sandboxes().resolve(&value)?.name.clone()),
            "policy" => f.policy = Some(s.engine.policy(&value)?.name),
            "verdict" => {
                let v: FlowVerdict = value.parse().map_err(|m| ApiError::invalid("verdict", m))?;
                f.verdict = Some(v);
            }
            "since" => {
                let n = value.parse().map_err(|_| {
                    ApiError::invalid("since", format!("{value:?} is not a flow's sequence number"))
                })?;
                f.since = Some(n);
            }
            "limit" => limit = parse_limit(&value)?,
            k => {
                return Err(ApiError::invalid(
                    k,
                    "unknown query parameter (flows take: network, sandbox, policy, verdict, since, limit)",
                ))
            }
        }
    }
    Ok((f, limit))
}

/// The newest flow records that match, oldest first: packets dropped by isolation or a
/// policy, audit mode's would-be drops, and matches of rules with `log` (rate-limited per
/// rule), with the endpoints and sandboxes at both ends.
#[utoipa::path(get, path = "/v1/flows", tag = "flows",
    params(
        ("network" = Option<String>, Query, description = "the network whose rule decided (id, prefix or name)"),
        ("sandbox" = Option<String>, Query, description = "a sandbox at either end (id, prefix or name)"),
        ("policy" = Option<String>, Query, description = "the deciding policy (id, prefix or name)"),
        ("verdict" = Option<String>, Query, description = "dropped, would_drop or logged"),
        ("since" = Option<u64>, Query, description = "only flows after this sequence number"),
        ("limit" = Option<usize>, Query, description = "at most this many, 1-1000, default 100"),
    ),
    responses((status = 200, body = FlowList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<FlowList>> {
    let (filter, limit) = flow_query(&s, raw.as_deref())?;
    Ok(Json(FlowList {
        items: s.engine.flows(&filter, limit),
    }))
}

/// New flow records as they come, as Server-Sent Events (event `flow`, its data the JSON
/// record), with the same filters (`since` and `limit` do not apply). A client too slow to
/// keep up gets a `lagged` event with how many it missed.
#[utoipa::path(get, path = "/v1/flows/stream", tag = "flows",
    params(
        ("network" = Option<String>, Query, description = "the network whose rule decided"),
        ("sandbox" = Option<String>, Query, description = "a sandbox at either end"),
        ("policy" = Option<String>, Query, description = "the deciding policy"),
        ("verdict" = Option<String>, Query, description = "dropped, would_drop or logged"),
    ),
    responses((status = 200, description = "text/event-stream of flows", body = Flow, content_type = "text/event-stream"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stream(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let (filter, _) = flow_query(&s, raw.as_deref())?;
    let mut shutdown = s.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let stream = BroadcastStream::new(s.engine.subscribe_flows())
        .filter_map(move |item| {
            let event = match item {
                Ok(f) if filter.matches(&f) => Some(
                    SseEvent::default()
                        .event("flow")
                        .id(f.seq.to_string())
                        .json_data(&f)
                        .unwrap_or_default(),
                ),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    Some(SseEvent::default().event("lagged").data(n.to_string()))
                }
            };
            std::future::ready(event.map(Ok))
        })
        .take_until(Box::pin(stopped));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
