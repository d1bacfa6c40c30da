use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use wasmnet_engine::engine::{Page, ServiceDetail};
use wasmnet_engine::model::{Service, ServiceCreate};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{list_query, ApiJson};
use crate::AppState;

/// List services in name order, with their backends, a page at a time.
#[utoipa::path(get, path = "/v1/services", tag = "services",
    params(
        ("network" = Option<String>, Query, description = "only this network's (id, prefix or name)"),
        ("label" = Option<String>, Query, description = "`key=value` or `key`; repeatable, all must match"),
        ("name" = Option<String>, Query, description = "substring of the name"),
        ("limit" = Option<usize>, Query, description = "page size, 1-1000, default 100"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
    ),
    responses((status = 200, body = Page<ServiceDetail>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<ServiceDetail>>> {
    let q = list_query(raw.as_deref(), &["network", "label", "name"])?;
    Ok(Json(s.engine.list_services(
        &q.filter,
        q.after.as_deref(),
        q.limit,
    )?))
}

/// Create a service: a virtual IP on a network, load-balanced across the endpoints its
/// selector (or its list of endpoints) picks.
#[utoipa::path(post, path = "/v1/services", tag = "services", request_body = ServiceCreate,
    responses((status = 201, body = Service), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<ServiceCreate>,
) -> ApiResult<(StatusCode, Json<Arc<Service>>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.engine.create_service(req).await?),
    ))
}

/// Inspect a service (by id, unique id prefix or name), with its backends.
#[utoipa::path(get, path = "/v1/services/{id}", tag = "services", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = ServiceDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceDetail>> {
    Ok(Json(s.engine.service(&id)?))
}

/// Remove a service: its virtual addresses and its load-balancing rules go.
#[utoipa::path(delete, path = "/v1/services/{id}", tag = "services", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = Service), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Arc<Service>>> {
    Ok(Json(s.engine.delete_service(&id).await?))
}
