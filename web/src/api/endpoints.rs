use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use wasmnet_engine::engine::Page;
use wasmnet_engine::model::{Endpoint, EndpointCreate};

use crate::error::{ApiResult, ErrorBody};

/// An endpoint as the API shows it: the stored object and what is wrong with it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// Names of this endpoint (its sandbox's, its aliases) that are stored but not published
    /// in DNS, each with why; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl EndpointView {
    fn of(e: Arc<Endpoint>) -> Json<EndpointView> {
        Json(EndpointView {
            warnings: wasmnet_engine::directory::name_warnings(&e),
            endpoint: Arc::unwrap_or_clone(e),
        })
    }
}
use crate::extract::{list_query, ApiJson};
use crate::AppState;

/// List endpoints in id order, a page at a time.
#[utoipa::path(get, path = "/v1/endpoints", tag = "endpoints",
    params(
        ("network" = Option<String>, Query, description = "only this network's (id, prefix or name)"),
        ("sandbox" = Option<String>, Query, description = "only this sandbox's (id, prefix or name)"),
        ("label" = Option<String>, Query, description = "`key=value` or `key`; repeatable, all must match"),
        ("limit" = Option<usize>, Query, description = "page size, 1-1000, default 100"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
    ),
    responses((status = 200, body = Page<EndpointView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<EndpointView>>> {
    let q = list_query(raw.as_deref(), &["network", "sandbox", "label"])?;
    let page = s
        .engine
        .list_endpoints(&q.filter, q.after.as_deref(), q.limit)?;
    Ok(Json(Page {
        items: (page.items.into_iter())
            .map(|e| Arc::new(EndpointView::of(e).0))
            .collect(),
        next: page.next,
    }))
}

/// Connect a sandbox to a network: allocates the addresses and publishes the ports asked for.
#[utoipa::path(post, path = "/v1/endpoints", tag = "endpoints", request_body = EndpointCreate,
    responses((status = 201, body = EndpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EndpointCreate>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    Ok((
        StatusCode::CREATED,
        EndpointView::of(s.engine.connect(req).await?),
    ))
}

/// Inspect an endpoint (by id or unique id prefix).
#[utoipa::path(get, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path, description = "id or unique id prefix")),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn inspect(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    Ok(EndpointView::of(s.engine.endpoint(&id)?))
}

/// Disconnect: removes the endpoint, releasing its addresses and ports.
#[utoipa::path(delete, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path, description = "id or unique id prefix")),
    responses((status = 200, body = Endpoint), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Arc<Endpoint>>> {
    Ok(Json(s.engine.disconnect(&id).await?))
}

/// What `PATCH /v1/endpoints/{id}` may change.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointUpdate {
    /// Replaces the endpoint's labels; the policies classify it again and the rules follow.
    pub labels: wasmnet_engine::model::Labels,
}

/// Change an endpoint's labels.
#[utoipa::path(patch, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path, description = "id or unique id prefix")),
    request_body = EndpointUpdate,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EndpointUpdate>,
) -> ApiResult<Json<EndpointView>> {
    Ok(EndpointView::of(
        s.engine.relabel_endpoint(&id, req.labels).await?,
    ))
}
