//! Request extractors whose failures are our JSON errors, and list query parsing.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use wasmnet_engine::engine::Filter;

use crate::error::ApiError;

/// `axum::Json`, but a malformed or invalid body is a JSON error naming what is wrong.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(rejection(r)),
        }
    }
}

fn rejection(r: JsonRejection) -> ApiError {
    let text = match &r {
        JsonRejection::JsonDataError(e) => format!(
            "invalid request body: {}",
            e.body_text()
                .trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        ),
        JsonRejection::JsonSyntaxError(_) => {
            format!("the body is not valid JSON: {}", r.body_text())
        }
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with Content-Type: application/json".to_string()
        }
        _ => r.body_text(),
    };
    ApiError::rejection(r.status(), text)
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A page size: 1 to `MAX_LIMIT`.
pub fn parse_limit(value: &str) -> Result<usize, ApiError> {
    (value.parse().ok())
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or_else(|| {
            ApiError::invalid(
                "limit",
                format!("{value:?} is not a number from 1 to {MAX_LIMIT}"),
            )
        })
}

/// A list request: filters, and the page wanted (`limit`, `after` = the previous page's `next`).
pub struct ListQuery {
    pub filter: Filter,
    pub limit: usize,
    pub after: Option<String>,
}

/// Parses `?label=k=v&label=k&name=…&network=…&sandbox=…&limit=…&after=…`; `allowed` lists
/// the filters this list takes, so an unknown or misspelt one is an error, not ignored.
pub fn list_query(raw: Option<&str>, allowed: &[&str]) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        filter: Filter::default(),
        limit: DEFAULT_LIMIT,
        after: None,
    };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "limit" => q.limit = parse_limit(&value)?,
            "after" => q.after = Some(value),
            k if !allowed.contains(&k) => {
                return Err(ApiError::invalid(
                    k,
                    format!(
                        "unknown query parameter (this list takes: {}, limit, after)",
                        allowed.join(", ")
                    ),
                ))
            }
            "label" => match value.split_once('=') {
                Some((k, v)) => q.filter.labels.push((k.to_string(), Some(v.to_string()))),
                None => q.filter.labels.push((value, None)),
            },
            "name" => q.filter.name = Some(value),
            "network" => q.filter.network = Some(value),
            "sandbox" => q.filter.sandbox = Some(value),
            _ => unreachable!("allowed lists only known filters"),
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters_and_paging() {
        let q = list_query(
            Some("label=tier%3Dweb&label=env&name=a&limit=5&after=x"),
            &["label", "name"],
        )
        .unwrap();
        assert_eq!(
            q.filter.labels,
            vec![("tier".into(), Some("web".into())), ("env".into(), None)]
        );
        assert_eq!(q.filter.name.as_deref(), Some("a"));
        assert_eq!((q.limit, q.after.as_deref()), (5, Some("x")));
    }

    #[test]
    fn refuses_unknown_filters_and_bad_limits() {
        for raw in ["lable=x", "network=a", "limit=0", "limit=1001", "limit=x"] {
            let e = list_query(Some(raw), &["label", "name"]).err().expect(raw);
            assert_eq!(
                e.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{raw}"
            );
        }
    }
}
