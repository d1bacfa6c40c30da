//! Logging in with the API token (compared in constant time) and out.

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::forms::CsrfForm;
use super::page::{forbidden, render};
use super::session::{clear_cookie, set_cookie, Authed};
use super::UiState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

pub async fn login_page() -> Response {
    render(LoginPage { error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(State(s): State<UiState>, Form(f): Form<LoginForm>) -> Response {
    use subtle::ConstantTimeEq;
    let ok =
        f.token.len() == s.token.len() && bool::from(f.token.as_bytes().ct_eq(s.token.as_bytes()));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            render(LoginPage {
                error: Some("That is not the API token.".into()),
            }),
        )
            .into_response();
    }
    let (id, _) = s.sessions.create();
    ([(header::SET_COOKIE, set_cookie(&id))], Redirect::to("/")).into_response()
}

pub async fn logout(State(s): State<UiState>, auth: Authed, Form(f): Form<CsrfForm>) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    s.sessions.remove(&auth.session);
    (
        [(header::SET_COOKIE, clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}
