//! The networks pages: the list (searchable by name and label) with the form creating one, and a
//! network's page with its addresses, the rules in force for it and the policies governing it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use wasmnet_engine::directory::NamesReport;
use wasmnet_engine::engine::NetworkDetail;
use wasmnet_engine::model::Network;
use wasmnet_engine::names;

use super::forms::{CsrfForm, FormErrors, NetworkForm};
use super::page::{error_page, forbidden, render, ListParams, PAGE};
use super::policies::{governing, Governing};
use super::session::Authed;
use super::UiState;

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

fn networks_page(
    s: &UiState,
    auth: &Authed,
    p: ListParams,
    form: NetworkForm,
    errors: FormErrors,
) -> NetworksPage {
    let filter = p.filter();
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

pub async fn list(State(s): State<UiState>, auth: Authed, Query(p): Query<ListParams>) -> Response {
    render(networks_page(
        &s,
        &auth,
        p,
        NetworkForm::default(),
        FormErrors::default(),
    ))
}

pub async fn create(
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
    policies: Vec<Governing>,
    names: Option<NamesReport>,
}

pub async fn show(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
    let d = match s.app.engine.network(&id) {
        Ok(d) => d,
        Err(e) => return error_page(&auth, e, "/networks"),
    };
    let bridge = names::bridge_name(&d.network.id);
    let chain = names::network_chain(&d.network.id);
    let rules = rules_for(&s.app.engine.firewall_text(), &bridge, &chain);
    let free = d.usage.ipv4.total - d.usage.ipv4.used;
    let policies = governing(&s.app.engine, &d.network.id);
    let names = s.app.engine.network_names(&d.network.id).ok();
    render(NetworkPage {
        csrf: auth.csrf,
        d,
        free,
        rules,
        policies,
        names,
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

pub async fn delete(
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
