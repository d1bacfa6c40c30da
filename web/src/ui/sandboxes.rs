//! The sandboxes pages: the list with the form creating one, and a sandbox's page with its
//! endpoints and the form connecting it to a network; disconnecting an endpoint returns there.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use wasmnet_engine::engine::{Filter, SandboxDetail};
use wasmnet_engine::model::{Network, Sandbox};

use super::forms::{ConnectForm, CsrfForm, FormErrors, SandboxForm};
use super::page::{error_page, forbidden, render, ListParams, PAGE};
use super::session::Authed;
use super::UiState;

#[derive(Template)]
#[template(path = "sandboxes.html")]
struct SandboxesPage {
    csrf: String,
    sandboxes: Vec<Arc<Sandbox>>,
    next: Option<String>,
    form: SandboxForm,
    errors: FormErrors,
}

fn sandboxes_page(
    s: &UiState,
    auth: &Authed,
    after: Option<&str>,
    form: SandboxForm,
    errors: FormErrors,
) -> SandboxesPage {
    let page = s.app.engine.list_sandboxes(&Filter::default(), after, PAGE);
    SandboxesPage {
        csrf: auth.csrf.clone(),
        sandboxes: page.items,
        next: page.next,
        form,
        errors,
    }
}

pub async fn list(State(s): State<UiState>, auth: Authed, Query(p): Query<ListParams>) -> Response {
    render(sandboxes_page(
        &s,
        &auth,
        p.after.as_deref(),
        SandboxForm::default(),
        FormErrors::default(),
    ))
}

pub async fn create(
    State(s): State<UiState>,
    auth: Authed,
    Form(f): Form<SandboxForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    let created = match f.to_request() {
        Ok(req) => s.app.engine.create_sandbox(req).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(sb) => Redirect::to(&format!("/sandboxes/{}", sb.id)).into_response(),
        Err(e) => {
            let errors = FormErrors::from_error(&e);
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                render(sandboxes_page(&s, &auth, None, f, errors)),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "sandbox.html")]
struct SandboxPage {
    csrf: String,
    d: SandboxDetail,
    networks: Vec<Arc<Network>>,
    form: ConnectForm,
    errors: FormErrors,
}

fn sandbox_page(
    s: &UiState,
    auth: &Authed,
    d: SandboxDetail,
    form: ConnectForm,
    errors: FormErrors,
) -> SandboxPage {
    let networks = s
        .app
        .engine
        .list_networks(&Filter::default(), None, 1000)
        .items;
    SandboxPage {
        csrf: auth.csrf.clone(),
        d,
        networks,
        form,
        errors,
    }
}

pub async fn show(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
    match s.app.engine.sandbox(&id) {
        Ok(d) => render(sandbox_page(
            &s,
            &auth,
            d,
            ConnectForm::default(),
            FormErrors::default(),
        )),
        Err(e) => error_page(&auth, e, "/sandboxes"),
    }
}

pub async fn delete(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    match s.app.engine.delete_sandbox(&id).await {
        Ok(_) => Redirect::to("/sandboxes").into_response(),
        Err(e) => error_page(&auth, e, &format!("/sandboxes/{id}")),
    }
}

pub async fn connect(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<ConnectForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    let connected = match f.to_request(&id) {
        Ok(req) => s.app.engine.connect(req).await,
        Err(e) => Err(e),
    };
    match (connected, s.app.engine.sandbox(&id)) {
        (Ok(_), _) => Redirect::to(&format!("/sandboxes/{id}")).into_response(),
        (Err(e), Ok(d)) => {
            let errors = FormErrors::from_error(&e);
            (
                FormErrors::status(&e),
                render(sandbox_page(&s, &auth, d, f, errors)),
            )
                .into_response()
        }
        (Err(_), Err(e)) => error_page(&auth, e, "/sandboxes"),
    }
}

pub async fn disconnect(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    match s.app.engine.disconnect(&id).await {
        Ok(e) => Redirect::to(&format!("/sandboxes/{}", e.sandbox_id)).into_response(),
        Err(e) => error_page(&auth, e, "/sandboxes"),
    }
}
