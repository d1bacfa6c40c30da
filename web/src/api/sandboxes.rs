use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use wasmnet_engine::engine::{Page, SandboxDetail};
use wasmnet_engine::model::{Sandbox, SandboxCreate};

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{list_query, ApiJson};
use crate::AppState;

/// List sandboxes in name order, a page at a time.
#[utoipa::path(get, path = "/v1/sandboxes", tag = "sandboxes",
    params(
        ("label" = Option<String>, Query, description = "`key=value` or `key`; repeatable, all must match"),
        ("name" = Option<String>, Query, description = "substring of the name"),
        ("limit" = Option<usize>, Query, description = "page size, 1-1000, default 100"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
    ),
    responses((status = 200, body = Page<Sandbox>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<Sandbox>>> {
    let q = list_query(raw.as_deref(), &["label", "name"])?;
    Ok(Json(s.engine.list_sandboxes(
        &q.filter,
        q.after.as_deref(),
        q.limit,
    )))
}

/// Create a sandbox (a network namespace of wasmnet's own), or adopt an existing namespace.
#[utoipa::path(post, path = "/v1/sandboxes", tag = "sandboxes", request_body = SandboxCreate,
    responses((status = 201, body = Sandbox), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<SandboxCreate>,
) -> ApiResult<(StatusCode, Json<Arc<Sandbox>>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.engine.create_sandbox(req).await?),
    ))
}

/// Inspect a sandbox (by id, unique id prefix or name), with its endpoints.
#[utoipa::path(get, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = SandboxDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxDetail>> {
    Ok(Json(s.engine.sandbox(&id)?))
}

/// Remove a sandbox, disconnecting its endpoints first.
#[utoipa::path(delete, path = "/v1/sandboxes/{id}", tag = "sandboxes", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = SandboxDetail), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SandboxDetail>> {
    Ok(Json(s.engine.delete_sandbox(&id).await?))
}
