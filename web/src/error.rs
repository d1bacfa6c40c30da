//! The one mapping from errors to HTTP: `{"error":{"code","message"}}` with a fitting status.
//! Internal details are logged and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use wasmnet_engine::Error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed`, `invalid`, `not_found`, `name_in_use`, …
    pub code: String,
    /// For people: names the field or object at fault.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{field}: {message}"),
        )
    }

    /// A rejection by one of axum's extractors, keeping its status (400, 413, 415, 422).
    pub fn rejection(status: StatusCode, text: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            _ => "malformed",
        };
        Self::new(status, code, text)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            Error::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            Error::Unavailable(message) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_unavailable",
                message,
            ),
            Error::Policy { ref error, .. } => {
                let code = match error {
                    wasmnet_policy::PolicyError::Invalid(_) => "invalid_policy",
                    _ => "policy_failed",
                };
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
            }
            // The operator needs to know which kernel step failed and why: say it.
            Error::Kernel(_) | Error::Firewall(_) => {
                tracing::error!(error = %e, "request failed");
                let code = if matches!(e, Error::Kernel(_)) {
                    "kernel"
                } else {
                    "firewall"
                };
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, e.to_string())
            }
            Error::Internal(_) | Error::Store(_) => {
                tracing::error!(error = %e, "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
