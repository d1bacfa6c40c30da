//! What the policy commands share with the others: inspecting and removing several objects by
//! reference, one request each.

use serde_json::Value;
use wasmnet_web::client::{encode, Client};

use crate::output;

/// GETs `/v1/{kind}/{ref}` for each reference and prints what it found as one JSON array;
/// prints an error line for each one missing, and returns whether any was.
pub(crate) async fn inspect_each(client: &Client, kind: &str, refs: &[String]) -> bool {
    let mut found = Vec::new();
    let mut failed = false;
    for r in refs {
        match client.get(&format!("/v1/{kind}/{}", encode(r))).await {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    output::json(&Value::Array(found));
    failed
}

/// DELETEs `/v1/{kind}/{ref}{query}` for each reference, printing each removed; returns
/// whether any failed (each failure printed on its line).
pub(crate) async fn remove_each(client: &Client, kind: &str, refs: &[String], query: &str) -> bool {
    let mut failed = false;
    for r in refs {
        match client
            .delete(&format!("/v1/{kind}/{}{query}", encode(r)))
            .await
        {
            Ok(_) => println!("{r}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    failed
}
