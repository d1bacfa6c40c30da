//! What every page shares: rendering a template, the error pages, a list's paging.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use wasmnet_engine::Error;

use super::session::Authed;

/// Rows on a page of a list.
pub const PAGE: usize = 50;

/// A list page's query: a name to search for, a label filter, where the page starts.
#[derive(Deserialize, Default)]
pub struct ListParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub label: String,
    pub after: Option<String>,
}

impl ListParams {
    /// The list filter the search form asks for: `q` a substring of the name, `label`
    /// `key=value` or `key`.
    pub fn filter(&self) -> wasmnet_engine::engine::Filter {
        let mut filter = wasmnet_engine::engine::Filter {
            name: (!self.q.is_empty()).then(|| self.q.clone()),
            ..Default::default()
        };
        if !self.label.is_empty() {
            filter.labels.push(match self.label.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (self.label.clone(), None),
            });
        }
        filter
    }
}

/// Renders a template; a template failure is logged, never shown.
pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>Something went wrong</h1><p>See the server log.</p>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    csrf: String,
    title: String,
    message: String,
    back: String,
}

/// An engine error as a page: its message for what a client did, a generic one otherwise.
pub fn error_page(auth: &Authed, e: Error, back: &str) -> Response {
    let (status, title, message) = match &e {
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "Not found", e.to_string()),
        Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Not valid", e.to_string()),
        Error::Conflict { message, .. } => (StatusCode::CONFLICT, "Not possible", message.clone()),
        _ => {
            tracing::error!(error = %e, "dashboard request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The operation failed; see the server log.".into(),
            )
        }
    };
    let page = ErrorPage {
        csrf: auth.csrf.clone(),
        title: title.into(),
        message,
        back: back.into(),
    };
    (status, render(page)).into_response()
}

pub fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, Html("<h1>Forbidden</h1><p>The form was not from this session; reload the page and try again.</p>")).into_response()
}
