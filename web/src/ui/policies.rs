//! The dashboard's policy pages: upload (a multipart form, the module bounded as the API's is),
//! inspect, preview an attachment as a diff of the ruleset (a dry run), attach, detach, delete;
//! and what a network's page shows of the policies that govern it.

use std::sync::Arc;

use askama::Template;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use wasmnet_engine::engine::Filter;
use wasmnet_engine::engine::PolicyCounters;
use wasmnet_engine::model::Network;
use wasmnet_engine::policy::{Attachment, Policy};
use wasmnet_engine::{Engine, Error};

use super::forms::{AttachForm, FormErrors, UploadForm};
use super::page::{error_page, forbidden, render};
use super::session::Authed;
use super::UiState;
use crate::api::policies::MAX_MODULE;

/// What an upload's body may reach (the module, the other fields, the multipart framing) before
/// reading stops; between the module limit and this, the rest is read and dropped so that the
/// browser gets the page with the error rather than a reset connection.
pub const UPLOAD_BODY_LIMIT: usize = 4 * MAX_MODULE;

/// An upload's text fields are short; past this one is dropped (and then refused as empty).
const MAX_FIELD: usize = 64 << 10;

/// An attachment as shown: its network's name (None for a global one, or a network gone).
pub struct AttachmentRow {
    pub network_id: Option<String>,
    pub network_name: Option<String>,
    pub priority: i64,
    pub audit: bool,
    pub created: String,
}

impl AttachmentRow {
    /// "global (every network)", the network's name, or its id when it is gone.
    pub fn scope(&self) -> String {
        match (&self.network_name, &self.network_id) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => id.chars().take(12).collect(),
            (None, None) => "global (every network)".into(),
        }
    }
}

fn rows(e: &Engine, attachments: &[Attachment]) -> Vec<AttachmentRow> {
    attachments
        .iter()
        .map(|a| AttachmentRow {
            network_name: a
                .network_id
                .as_deref()
                .and_then(|id| e.network(id).ok())
                .map(|d| d.network.name.clone()),
            network_id: a.network_id.clone(),
            priority: a.priority,
            audit: a.audit,
            created: a.created.clone(),
        })
        .collect()
}

/// A policy in the list: with its attachments named.
pub struct PolicyRow {
    pub p: Policy,
    pub attachments: Vec<AttachmentRow>,
}

impl PolicyRow {
    pub fn short_sha(&self) -> &str {
        &self.p.sha256[..self.p.sha256.len().min(12)]
    }

    pub fn size(&self) -> String {
        human_size(self.p.size)
    }
}

/// Bytes as people read them.
pub fn human_size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

// ---- list and upload ----

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    csrf: String,
    policies: Vec<PolicyRow>,
    limit: String,
    form: UploadForm,
    errors: FormErrors,
}

fn policies_page(s: &UiState, auth: &Authed, form: UploadForm, errors: FormErrors) -> PoliciesPage {
    let e = &s.app.engine;
    PoliciesPage {
        csrf: auth.csrf.clone(),
        policies: e
            .list_policies()
            .into_iter()
            .map(|p| PolicyRow {
                attachments: rows(e, &p.attachments),
                p,
            })
            .collect(),
        limit: human_size(MAX_MODULE),
        form,
        errors,
    }
}

pub async fn list(State(s): State<UiState>, auth: Authed) -> Response {
    render(policies_page(
        &s,
        &auth,
        UploadForm::default(),
        FormErrors::default(),
    ))
}

/// What a multipart upload carried, read field by field with the module bounded.
#[derive(Default)]
struct Upload {
    csrf: Option<String>,
    form: UploadForm,
    wasm: Vec<u8>,
    has_file: bool,
    too_large: bool,
    broken: Option<String>,
}

async fn read_upload(mut mp: Multipart) -> Upload {
    let mut up = Upload::default();
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                up.too_large |= e.status() == StatusCode::PAYLOAD_TOO_LARGE;
                up.broken = Some(e.body_text());
                break;
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "module" {
            up.has_file = field.file_name().is_some_and(|f| !f.is_empty());
        }
        let limit = if name == "module" {
            MAX_MODULE
        } else {
            MAX_FIELD
        };
        let (mut over, mut text) = (false, Vec::new());
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) if over || text.len() + chunk.len() > limit => {
                    // Keep reading (and dropping) so the browser sees the answer.
                    over = true;
                    text.clear();
                }
                Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    up.too_large |= e.status() == StatusCode::PAYLOAD_TOO_LARGE;
                    up.broken = Some(e.body_text());
                    break;
                }
            }
        }
        if up.broken.is_some() {
            break;
        }
        if name == "module" {
            up.too_large |= over;
            up.wasm = text;
            continue;
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        match name.as_str() {
            "csrf" => up.csrf = Some(text),
            "name" => up.form.name = text,
            "description" => up.form.description = text,
            _ => {}
        }
    }
    up
}

pub async fn upload(
    State(s): State<UiState>,
    auth: Authed,
    mp: Result<Multipart, MultipartRejection>,
) -> Response {
    let refused = |form: UploadForm, errors: FormErrors, status: StatusCode| {
        (status, render(policies_page(&s, &auth, form, errors))).into_response()
    };
    let mp = match mp {
        Ok(mp) => mp,
        Err(e) => {
            let errors = FormErrors {
                general: Some(format!(
                    "The upload was not a form with a file: {}",
                    e.body_text()
                )),
                ..Default::default()
            };
            return refused(UploadForm::default(), errors, StatusCode::BAD_REQUEST);
        }
    };
    let up = read_upload(mp).await;
    if !up.csrf.as_deref().is_some_and(|c| auth.check(c)) {
        return forbidden();
    }
    let mut errors = FormErrors::default();
    let status = if up.too_large {
        errors.module = Some(format!(
            "The module is larger than {}; a policy module may be at most {MAX_MODULE} bytes.",
            human_size(MAX_MODULE)
        ));
        StatusCode::PAYLOAD_TOO_LARGE
    } else if let Some(broken) = up.broken {
        errors.general = Some(format!("The upload did not arrive whole: {broken}"));
        StatusCode::BAD_REQUEST
    } else if !up.has_file || up.wasm.is_empty() {
        errors.module = Some("Choose a policy module (a .wasm component) to upload.".into());
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        let name = up.form.name.trim();
        let description = up.form.description.trim();
        match s
            .app
            .engine
            .upload_policy(name, description, &up.wasm)
            .await
        {
            Ok(p) => return Redirect::to(&format!("/policies/{}", p.id)).into_response(),
            Err(e @ (Error::Invalid { .. } | Error::Conflict { .. } | Error::Policy { .. })) => {
                errors = FormErrors::from_upload_error(&e);
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Err(e) => return error_page(&auth, e, "/policies"),
        }
    };
    refused(up.form, errors, status)
}

// ---- one policy ----

/// One line of a unified diff, with the class that colours it.
pub struct DiffLine {
    pub class: &'static str,
    pub text: String,
}

/// A dry run, ready to show.
pub struct Preview {
    pub lines: Vec<DiffLine>,
    pub added: usize,
    pub removed: usize,
}

/// Classifies a unified diff's lines: headers, hunks, additions, removals, context.
pub fn preview(diff: &str) -> Preview {
    let lines: Vec<DiffLine> = diff
        .lines()
        .map(|l| DiffLine {
            class: if l.starts_with("+++") || l.starts_with("---") {
                "file"
            } else if l.starts_with("@@") {
                "hunk"
            } else if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "ctx"
            },
            text: l.to_string(),
        })
        .collect();
    Preview {
        added: lines.iter().filter(|l| l.class == "add").count(),
        removed: lines.iter().filter(|l| l.class == "del").count(),
        lines,
    }
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    csrf: String,
    p: Policy,
    size: String,
    attachments: Vec<AttachmentRow>,
    networks: Vec<Arc<Network>>,
    counters: Option<Vec<PolicyCounters>>,
    /// Its recent flows (drops, would-be drops, logged matches), newest first.
    flows: Vec<super::flows::Row>,
    preview: Option<Preview>,
    form: AttachForm,
    errors: FormErrors,
}

async fn policy_page(
    s: &UiState,
    auth: &Authed,
    p: Policy,
    preview: Option<Preview>,
    form: AttachForm,
    errors: FormErrors,
) -> PolicyPage {
    let e = &s.app.engine;
    let counters = match e.policy_counters(&p.id).await {
        Ok(c) => Some(c),
        Err(err) => {
            tracing::warn!(error = %err, "reading a policy's counters");
            None
        }
    };
    let mine = wasmnet_engine::flows::FlowFilter {
        policy: Some(p.name.clone()),
        ..Default::default()
    };
    let flows = e
        .flows(&mine, 20)
        .iter()
        .rev()
        .map(super::flows::Row::of)
        .collect();
    PolicyPage {
        csrf: auth.csrf.clone(),
        flows,
        size: human_size(p.size),
        attachments: rows(e, &p.attachments),
        networks: e.list_networks(&Filter::default(), None, 1000).items,
        counters,
        preview,
        form,
        errors,
        p,
    }
}

pub async fn show(State(s): State<UiState>, auth: Authed, Path(id): Path<String>) -> Response {
    match s.app.engine.policy(&id) {
        Ok(p) => render(
            policy_page(
                &s,
                &auth,
                p,
                None,
                AttachForm::default(),
                FormErrors::default(),
            )
            .await,
        ),
        Err(e) => error_page(&auth, e, "/policies"),
    }
}

/// The attach form's two buttons: preview (a dry run, nothing changes) or attach.
pub async fn attach(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<AttachForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    let e = &s.app.engine;
    let req = f.to_request();
    let outcome = match req {
        Ok(req) if f.previewing() => e.dry_run(&id, Some(req)).await.map(Some),
        Ok(req) => e.attach_policy(&id, req).await.map(|_| None),
        Err(err) => Err(err),
    };
    let (preview, errors, status) = match outcome {
        Ok(None) => return Redirect::to(&format!("/policies/{id}")).into_response(),
        Ok(Some(dry)) => (
            Some(preview(&dry.diff)),
            FormErrors::default(),
            StatusCode::OK,
        ),
        Err(
            err @ (Error::Invalid { .. }
            | Error::NotFound { .. }
            | Error::Conflict { .. }
            | Error::Policy { .. }),
        ) if e.policy(&id).is_ok() => (
            None,
            FormErrors::from_error(&err),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(err) => return error_page(&auth, err, &format!("/policies/{id}")),
    };
    match e.policy(&id) {
        Ok(p) => (
            status,
            render(policy_page(&s, &auth, p, preview, f, errors).await),
        )
            .into_response(),
        Err(err) => error_page(&auth, err, "/policies"),
    }
}

#[derive(Deserialize)]
pub struct DetachForm {
    csrf: String,
    /// The network's id; empty: the global attachment.
    #[serde(default)]
    network: String,
}

pub async fn detach(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<DetachForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    let network = (!f.network.is_empty()).then_some(f.network.as_str());
    match s.app.engine.detach_policy(&id, network).await {
        Ok(p) => Redirect::to(&format!("/policies/{}", p.id)).into_response(),
        Err(e) => error_page(&auth, e, &format!("/policies/{id}")),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    csrf: String,
    force: Option<String>,
}

pub async fn delete(
    State(s): State<UiState>,
    auth: Authed,
    Path(id): Path<String>,
    Form(f): Form<DeleteForm>,
) -> Response {
    if !auth.check(&f.csrf) {
        return forbidden();
    }
    match s.app.engine.delete_policy(&id, f.force.is_some()).await {
        Ok(_) => Redirect::to("/policies").into_response(),
        Err(e) => error_page(&auth, e, &format!("/policies/{id}")),
    }
}

// ---- on a network's page ----

/// A policy governing a network: attached to it, or globally.
pub struct Governing {
    pub id: String,
    pub name: String,
    pub global: bool,
    pub priority: i64,
    pub audit: bool,
}

/// The policies that govern `network`, in the order they are tried (priority, then name).
pub fn governing(e: &Engine, network: &str) -> Vec<Governing> {
    let mut out: Vec<Governing> = e
        .list_policies()
        .into_iter()
        .flat_map(|p| {
            p.attachments
                .iter()
                .filter(|a| a.network_id.as_deref().is_none_or(|n| n == network))
                .map(|a| Governing {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    global: a.network_id.is_none(),
                    priority: a.priority,
                    audit: a.audit,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_is_classified_line_by_line() {
        let p = preview("--- in force\n+++ with the policy\n@@ -1,2 +1,2 @@\n table\n-\taccept\n+\tdrop\n+\tlog\n");
        let classes: Vec<&str> = p.lines.iter().map(|l| l.class).collect();
        assert_eq!(
            classes,
            ["file", "file", "hunk", "ctx", "del", "add", "add"]
        );
        assert_eq!((p.added, p.removed), (2, 1));
        assert!(preview("").lines.is_empty());
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(32782), "32.0 KiB");
        assert_eq!(human_size(MAX_MODULE), "8.0 MiB");
    }
}
