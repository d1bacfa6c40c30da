//! The services pages: the list (searchable by name and label) and a service's page with its
//! virtual addresses, ports, how it picks its backends and the backends it balances across now.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use wasmnet_engine::engine::ServiceDetail;
use wasmnet_engine::model::Affinity;

use super::forms::CsrfForm;
use super::page::{error_page, forbidden, render, ListParams, PAGE};
use super::session::Authed;
use super::UiState;

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    csrf: String,
    services: Vec<Arc<ServiceDetail>>,
    next: Option<String>,
    q: String,
    label: String,
}

pub async fn list(State(s): State<UiState>, auth: Authed, Query(p): Query<ListParams>) -> Response {
    let filter = p.filter();
    match s
        .app
        .engine
        .list_services(&filter, p.after.as_deref(), PAGE)
    {
        Ok(page) => render(ServicesPage {
            csrf: auth.csrf.clone(),
            services: page.items,
            next: page.next,
            q: p.q,
            label: p.label,
        }),
        Err(e) => error_page(&auth, e, "/"),
    }
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    csrf: String,
    d: ServiceDetail,
    affinity: &'static str,
}

pub async fn show(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
    match s.app.engine.service(&id) {
        Ok(d) => {
            let affinity = match d.service.affinity {
                Affinity::None => "none: each new connection picks a backend at random",
                Affinity::ClientIp => "client_ip: a client address's connections go to one backend",
            };
            render(ServicePage {
                csrf: auth.csrf,
                d,
                affinity,
            })
        }
        Err(e) => error_page(&auth, e, "/services"),
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
    match s.app.engine.delete_service(&id).await {
        Ok(_) => Redirect::to("/services").into_response(),
        Err(e) => error_page(&auth, e, &format!("/services/{id}")),
    }
}
