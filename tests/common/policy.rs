//! What the policy tests share: the built components, uploading them, sandboxes joined to a
//! network with labels, and reading API errors.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wasmnet_web::client::{Client, ClientError};

use super::net::{tcp_probe, tcp_server};

/// A component from `policies/dist` (`testdata/<guest>` for the test guests).
pub fn module(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("policies/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub async fn upload(c: &Client, name: &str, file: &str) -> Result<Value, ClientError> {
    c.upload(
        &format!("/v1/policies?name={name}"),
        "application/wasm",
        module(file),
    )
    .await
}

pub async fn make(c: &Client, path: &str, body: Value) -> Value {
    c.post(path, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {path} {body}: {e}"))
}

/// A sandbox connected to `net` with endpoint labels; returns (namespace, endpoint).
pub async fn member(c: &Client, name: &str, net: &str, labels: Value) -> (PathBuf, Value) {
    let s = make(c, "/v1/sandboxes", json!({"name": name})).await;
    let e = make(
        c,
        "/v1/endpoints",
        json!({"network": net, "sandbox": name, "labels": labels}),
    )
    .await;
    (PathBuf::from(s["netns"].as_str().unwrap()), e)
}

pub fn ip(e: &Value) -> String {
    e["ipv4"].as_str().unwrap().to_string()
}

/// (status, code, message) of an API error; panics on success.
pub fn api_code(r: Result<Value, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status.as_u16(), code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// TCP from `from` to `to`:8080 (a server runs in `to` for the probe).
pub fn tcp(from: &Path, to: &Path, addr: &str) -> bool {
    let _server = tcp_server(to.to_path_buf(), 8080);
    tcp_probe(from.to_path_buf(), &format!("{addr}:8080")).is_some()
}
