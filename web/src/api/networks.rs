use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use wasmnet_engine::directory::NamesReport;
use wasmnet_engine::engine::{NetworkDetail, Page};
use wasmnet_engine::model::{Network, NetworkCreate};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{list_query, ApiJson};
use crate::AppState;

/// List networks in name order, a page at a time.
#[utoipa::path(get, path = "/v1/networks", tag = "networks",
    params(
        ("label" = Option<String>, Query, description = "`key=value` or `key`; repeatable, all must match"),
        ("name" = Option<String>, Query, description = "substring of the name"),
        ("limit" = Option<usize>, Query, description = "page size, 1-1000, default 100"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
    ),
    responses((status = 200, body = Page<Network>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<impl IntoResponse> {
    let q = list_query(raw.as_deref(), &["label", "name"])?;
    let body = s
        .engine
        .list_networks_json(&q.filter, q.after.as_deref(), q.limit);
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Create a network; without a subnet, one is taken from the default address pools.
#[utoipa::path(post, path = "/v1/networks", tag = "networks", request_body = NetworkCreate,
    responses((status = 201, body = Network), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<NetworkCreate>,
) -> ApiResult<(StatusCode, Json<Arc<Network>>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.engine.create_network(req).await?),
    ))
}

/// Inspect a network (by id, unique id prefix or name), with its endpoints and address usage.
#[utoipa::path(get, path = "/v1/networks/{id}", tag = "networks", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = NetworkDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NetworkDetail>> {
    Ok(Json(s.engine.network(&id)?))
}

/// What resolves on a network: its endpoints' names (sandbox names and aliases) and their
/// addresses, names that are not valid DNS names listed with why they are not published.
#[utoipa::path(get, path = "/v1/networks/{id}/names", tag = "networks", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = NamesReport), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn names(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NamesReport>> {
    Ok(Json(s.engine.network_names(&id)?))
}

/// Remove a network; refused (409) while it has endpoints.
#[utoipa::path(delete, path = "/v1/networks/{id}", tag = "networks", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = Network), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Arc<Network>>> {
    Ok(Json(s.engine.delete_network(&id).await?))
}

/// Remove every network without endpoints (optionally only those with the given labels).
#[utoipa::path(post, path = "/v1/networks/prune", tag = "networks",
    params(("label" = Option<String>, Query, description = "`key=value` or `key`; repeatable")),
    responses((status = 200, body = Vec<Network>), (status = 422, body = ErrorBody)))]
pub async fn prune(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Arc<Network>>>> {
    let q = list_query(raw.as_deref(), &["label"])?;
    Ok(Json(s.engine.prune_networks(&q.filter).await?))
}
