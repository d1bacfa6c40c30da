//! Wasm policies: upload, inspect, attach, detach, dry-run, delete; and the ruleset in force.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wasmnet_engine::engine::{DryRun, PolicyCounters, Ruleset};
use wasmnet_engine::policy::{AttachRequest, Policy};

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::AppState;

/// A module larger than this is refused before it is read whole.
pub const MAX_MODULE: usize = 8 << 20;

#[derive(Serialize, ToSchema)]
pub struct PolicyList {
    pub items: Vec<Policy>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The policy's name (unique).
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Detach it everywhere first.
    #[serde(default)]
    pub force: bool,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DetachRequest {
    /// The network (id or name) to detach from; absent: the global attachment.
    #[serde(default)]
    pub network: Option<String>,
}

/// List policies in name order.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = PolicyList)))]
pub async fn list(State(s): State<AppState>) -> Json<PolicyList> {
    Json(PolicyList {
        items: s.engine.list_policies(),
    })
}

/// Upload a policy: the body is the component's bytes (`Content-Type: application/wasm`). It
/// is compiled, checked (exports `wasmnet:policy/policy@0.2.x` or `@0.1.x`, imports nothing) and evaluated
/// against the current state within its limits before anything is stored.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = Policy), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(s): State<AppState>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Policy>)> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let wasm = read_module(&headers, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            s.engine
                .upload_policy(&q.name, &q.description, &wasm)
                .await?,
        ),
    ))
}

/// The body, as long as it is declared as wasm and within the size limit.
pub async fn read_module(headers: &HeaderMap, body: Body) -> ApiResult<axum::body::Bytes> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(ct, "application/wasm" | "application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the module's bytes with Content-Type: application/wasm",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a policy module may be at most {MAX_MODULE} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_MODULE) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_MODULE)
        .await
        .map_err(|_| too_large())
}

/// Inspect a policy (id, unique id prefix, or name): hash, size, interface version,
/// attachments, last error.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody)))]
pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Policy>> {
    Ok(Json(s.engine.policy(&id)?))
}

/// Delete a policy; refused (409) while attached unless `force=true`.
#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name"), DeleteQuery),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Policy>> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    Ok(Json(s.engine.delete_policy(&id, q.force).await?))
}

/// Attach to a network, or globally (no `network`), with a priority (lower runs first) and
/// optionally in audit mode. Attaching again changes priority and mode.
#[utoipa::path(post, path = "/v1/policies/{id}/attach", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    request_body = AttachRequest,
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn attach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AttachRequest>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(s.engine.attach_policy(&id, req).await?))
}

/// Detach from a network, or the global attachment (no `network`).
#[utoipa::path(post, path = "/v1/policies/{id}/detach", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    request_body = DetachRequest,
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn detach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DetachRequest>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(
        s.engine.detach_policy(&id, req.network.as_deref()).await?,
    ))
}

/// The ruleset the policy would produce (attached as the body says; without a body, where it
/// is attached, or globally) and its diff against the ruleset in force. Nothing changes.
#[utoipa::path(post, path = "/v1/policies/{id}/dry-run", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    request_body = Option<AttachRequest>,
    responses((status = 200, body = DryRun), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn dry_run(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<DryRun>> {
    let req = if body.is_empty() {
        None
    } else {
        if !headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        Some(
            serde_json::from_slice::<AttachRequest>(&body)
                .map_err(|e| ApiError::invalid("body", e))?,
        )
    };
    Ok(Json(s.engine.dry_run(&id, req).await?))
}

/// The ruleset in force: backend, generation, text, and each chain's rules with counters.
#[utoipa::path(get, path = "/v1/ruleset", tag = "policies", responses((status = 200, body = Ruleset)))]
pub async fn ruleset(State(s): State<AppState>) -> ApiResult<Json<Ruleset>> {
    Ok(Json(s.engine.ruleset().await?))
}

/// Per network the policy governs: packets and bytes its rules matched and, in audit mode,
/// what it would have dropped (from the kernel's counters).
#[utoipa::path(get, path = "/v1/policies/{id}/counters", tag = "policies", params(("id" = String, Path, description = "id, unique id prefix, or name")),
    responses((status = 200, body = Vec<PolicyCounters>), (status = 404, body = ErrorBody)))]
pub async fn counters(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<PolicyCounters>>> {
    Ok(Json(s.engine.policy_counters(&id).await?))
}
