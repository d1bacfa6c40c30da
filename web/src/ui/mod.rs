//! The web dashboard: server-rendered pages (askama templates in `web/templates/`) on the TCP
//! listener, beside the API. Log in with the API token; forms carry a CSRF token; pages work
//! without JavaScript (a small module adds live updates). Every page sends a strict CSP.

mod forms;
mod policies;
mod session;
pub mod topology;

use std::sync::Arc;

use askama::Template;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use wasmnet_engine::engine::{Counts, Filter, NetworkDetail, SandboxDetail};
use wasmnet_engine::model::{Network, Sandbox};
use wasmnet_engine::Error;

use crate::AppState;
use forms::{ConnectForm, FormErrors, NetworkForm, SandboxForm};
pub use session::Sessions;
use session::{clear_cookie, set_cookie, Authed};

const PAGE: usize = 50;

#[derive(Clone)]
pub struct UiState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    pub token: Arc<String>,
}

/// The dashboard's routes.
pub fn router(app: AppState, token: String) -> Router {
    let state = UiState {
        app,
        sessions: Arc::default(),
        token: Arc::new(token),
    };
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/networks", get(networks).post(create_network))
        .route("/networks/{id}", get(network))
        .route("/networks/{id}/delete", post(delete_network))
        .route("/sandboxes", get(sandboxes).post(create_sandbox))
        .route("/sandboxes/{id}", get(sandbox))
        .route("/sandboxes/{id}/delete", post(delete_sandbox))
        .route("/sandboxes/{id}/connect", post(connect))
        .route("/endpoints/{id}/disconnect", post(disconnect))
        .route("/topology", get(topology_page))
        .route("/topology.svg", get(topology_svg))
        .route(
            "/policies",
            get(policies::list)
                .post(policies::upload)
                .layer(DefaultBodyLimit::max(policies::UPLOAD_BODY_LIMIT)),
        )
        .route("/policies/{id}", get(policies::show))
        .route("/policies/{id}/attach", post(policies::attach))
        .route("/policies/{id}/detach", post(policies::detach))
        .route("/policies/{id}/delete", post(policies::delete))
        .route("/ruleset", get(ruleset))
        .route("/ui/events", get(events))
        .route(
            "/static/app.css",
            get(|| asset("text/css", include_str!("../../static/app.css"))),
        )
        .route(
            "/static/app.js",
            get(|| asset("text/javascript", include_str!("../../static/app.js"))),
        )
        .layer(middleware::from_fn(security_headers))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Renders a template; a template failure is logged, never shown.
fn render(t: impl Template) -> Response {
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
fn error_page(auth: &Authed, e: Error, back: &str) -> Response {
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

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, Html("<h1>Forbidden</h1><p>The form was not from this session; reload the page and try again.</p>")).into_response()
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_page() -> Response {
    render(LoginPage { error: None })
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(s): State<UiState>, Form(f): Form<LoginForm>) -> Response {
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

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(s): State<UiState>, auth: Authed, Form(f): Form<CsrfForm>) -> Response {
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

// ---- overview ----

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    csrf: String,
    counts: Counts,
    firewall: String,
    /// The ruleset generation (bumped at every change put in the kernel); None if unknown.
    generation: Option<u64>,
    version: &'static str,
}

async fn overview(State(s): State<UiState>, auth: Authed) -> Response {
    let e = &s.app.engine;
    let generation = Some(e.generation());
    render(Overview {
        csrf: auth.csrf,
        counts: e.counts(),
        firewall: e.firewall_backend().to_string(),
        generation,
        version: env!("CARGO_PKG_VERSION"),
    })
}

// ---- networks ----

#[derive(Template)]
#[template(path = "networks.html")]
struct NetworksPage {
    csrf: String,
    networks: Vec<Arc<Network>>,
    next: Option<String>,
    q: String,
    label: String,
    form: NetworkForm,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    label: String,
    after: Option<String>,
}

fn networks_page(
    s: &UiState,
    auth: &Authed,
    p: ListParams,
    form: NetworkForm,
    errors: FormErrors,
) -> NetworksPage {
    let mut filter = Filter {
        name: (!p.q.is_empty()).then(|| p.q.clone()),
        ..Default::default()
    };
    if !p.label.is_empty() {
        filter.labels.push(match p.label.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (p.label.clone(), None),
        });
    }
    let page = s
        .app
        .engine
        .list_networks(&filter, p.after.as_deref(), PAGE);
    NetworksPage {
        csrf: auth.csrf.clone(),
        networks: page.items,
        next: page.next,
        q: p.q,
        label: p.label,
        form,
        errors,
    }
}

async fn networks(State(s): State<UiState>, auth: Authed, Query(p): Query<ListParams>) -> Response {
    render(networks_page(
        &s,
        &auth,
        p,
        NetworkForm::default(),
        FormErrors::default(),
    ))
}

async fn create_network(
    State(s): State<UiState>,
    auth: Authed,
    Form(f): Form<NetworkForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    let created = match f.to_request() {
        Ok(req) => s.app.engine.create_network(req).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(n) => Redirect::to(&format!("/networks/{}", n.id)).into_response(),
        Err(e) => {
            let errors = FormErrors::from_error(&e);
            let page = networks_page(&s, &auth, ListParams::default(), f, errors);
            (FormErrors::status(&e), render(page)).into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "network.html")]
struct NetworkPage {
    csrf: String,
    d: NetworkDetail,
    free: u128,
    rules: String,
    policies: Vec<policies::Governing>,
}

async fn network(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
    let d = match s.app.engine.network(&id) {
        Ok(d) => d,
        Err(e) => return error_page(&auth, e, "/networks"),
    };
    let bridge = wasmnet_engine::firewall::docker::bridge_name(&d.network.id);
    let chain = format!("net_{}", &d.network.id[..12]);
    let rules = rules_for(&s.app.engine.firewall_text(), &bridge, &chain);
    let free = d.usage.ipv4.total - d.usage.ipv4.used;
    let policies = policies::governing(&s.app.engine, &d.network.id);
    render(NetworkPage {
        csrf: auth.csrf,
        d,
        free,
        rules,
        policies,
    })
}

/// The part of the rules in force that concerns one network: its nft chain (whole), and rule
/// lines naming its bridge (the iptables backend's), rather than every set's elements.
fn rules_for(text: &str, bridge: &str, chain: &str) -> String {
    let opening = format!("chain {chain} {{");
    let mut out = vec![format!(
        "# bridge {bridge}: dispatched by iifname through @from_bridge to chain {chain}"
    )];
    let mut in_chain = false;
    for line in text.lines() {
        let t = line.trim();
        in_chain |= t == opening;
        if in_chain {
            out.push(if t == opening || t == "}" {
                t.to_string()
            } else {
                format!("\t{t}")
            });
            in_chain = t != "}";
        } else if t.contains(bridge) && !t.starts_with("elements") {
            out.push(t.to_string());
        }
    }
    out.join("\n")
}

async fn delete_network(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    match s.app.engine.delete_network(&id).await {
        Ok(_) => Redirect::to("/networks").into_response(),
        Err(e) => error_page(&auth, e, &format!("/networks/{id}")),
    }
}

// ---- sandboxes ----

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

async fn sandboxes(
    State(s): State<UiState>,
    auth: Authed,
    Query(p): Query<ListParams>,
) -> Response {
    render(sandboxes_page(
        &s,
        &auth,
        p.after.as_deref(),
        SandboxForm::default(),
        FormErrors::default(),
    ))
}

async fn create_sandbox(
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

async fn sandbox(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
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

async fn delete_sandbox(
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

async fn connect(
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

async fn disconnect(
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

// ---- topology, ruleset, events ----

fn refs<T>(v: &[Arc<T>]) -> Vec<&T> {
    v.iter().map(|x| x.as_ref()).collect()
}

#[derive(Template)]
#[template(path = "topology.html")]
struct TopologyPage {
    csrf: String,
}

async fn topology_page(auth: Authed) -> Response {
    render(TopologyPage { csrf: auth.csrf })
}

async fn topology_svg(State(s): State<UiState>, _auth: Authed) -> Response {
    let e = &s.app.engine;
    let all = Filter::default();
    let networks = e.list_networks(&all, None, 1000).items;
    let sandboxes = e.list_sandboxes(&all, None, 1000).items;
    let endpoints = e
        .list_endpoints(&all, None, 1000)
        .map(|p| p.items)
        .unwrap_or_default();
    let svg = topology::svg(&refs(&networks), &refs(&sandboxes), &refs(&endpoints));
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "ruleset.html")]
struct RulesetPage {
    csrf: String,
    backend: String,
    chains: Vec<wasmnet_engine::firewall::ChainView>,
    lines: usize,
    rules: String,
}

async fn ruleset(State(s): State<UiState>, auth: Authed) -> Response {
    let e = &s.app.engine;
    let chains = match e.firewall_chains().await {
        Ok(c) => c,
        Err(err) => return error_page(&auth, err, "/"),
    };
    let rules = e.firewall_text();
    render(RulesetPage {
        csrf: auth.csrf,
        backend: e.firewall_backend().to_string(),
        chains,
        lines: rules.lines().count(),
        rules,
    })
}

/// The API's event stream, for the logged-in browser (EventSource cannot send a bearer token).
async fn events(State(s): State<UiState>, _auth: Authed) -> Response {
    crate::api::system::events(State(s.app))
        .await
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::rules_for;

    #[test]
    fn a_networks_rules_are_its_chain_and_its_lines() {
        let text = "table inet wasmnet {\n\tset bridges {\n\t\telements = { \"wnbra\", \"wnbrb\" }\n\t}\n\tchain net_a {\n\t\toifname \"wnbra\" accept\n\t\taccept\n\t}\n\tchain net_b {\n\t\tdrop\n\t}\n}\n-A WASMNET-FORWARD -i wnbra -j ACCEPT\n";
        let got = rules_for(text, "wnbra", "net_a");
        assert!(
            got.contains("chain net_a {\n\toifname \"wnbra\" accept\n\taccept\n}"),
            "{got}"
        );
        assert!(got.contains("-A WASMNET-FORWARD -i wnbra -j ACCEPT"));
        assert!(!got.contains("net_b") && !got.contains("wnbrb"), "{got}");
    }
}
