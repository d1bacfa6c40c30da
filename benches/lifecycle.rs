//! Scenario benchmark: the rest of an object's life after connect, over REST on the unix
//! socket (run as root, not part of CI):
//!   cargo bench --bench lifecycle
//! In a throwaway host namespace: 200 sandboxes connected to one network, then each endpoint
//! disconnected (REST call, median) and each sandbox deleted; 200 sandboxes with an endpoint
//! each, deleted; 50 networks created and deleted; and a reconnect of a sandbox right after
//! its disconnect. Kernel deletions happen behind the answers (the reaper), so each step's
//! time is what a client waits for.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::Instant;

use common::Server;
use serde_json::json;
use support::median;
use wasmnet_web::client::Client;

const N: usize = 200;

async fn timed<F: std::future::Future>(f: F) -> f64 {
    let t0 = Instant::now();
    f.await;
    t0.elapsed().as_secs_f64() * 1e3
}

async fn run(c: &Client) {
    let net = json!({"name": "life", "ipv4": {"subnet": "10.70.0.0/16"}});
    c.post("/v1/networks", &net).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..N {
        c.post("/v1/sandboxes", &json!({"name": format!("s{i}")}))
            .await
            .unwrap();
        let e = c
            .post(
                "/v1/endpoints",
                &json!({"network": "life", "sandbox": format!("s{i}")}),
            )
            .await
            .unwrap();
        ids.push(e["id"].as_str().unwrap().to_string());
    }
    let (mut disconnect, mut reconnect) = (Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        disconnect
            .push(timed(async { c.delete(&format!("/v1/endpoints/{id}")).await.unwrap() }).await);
        let again = json!({"network": "life", "sandbox": format!("s{i}")});
        reconnect.push(timed(async { c.post("/v1/endpoints", &again).await.unwrap() }).await);
    }
    let mut sandbox_delete = Vec::new();
    for i in 0..N {
        sandbox_delete
            .push(timed(async { c.delete(&format!("/v1/sandboxes/s{i}")).await.unwrap() }).await);
    }
    let (mut create, mut delete) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let net = json!({"name": format!("n{i}"), "ipv4": {"subnet": format!("10.71.{i}.0/24")}});
        create.push(timed(async { c.post("/v1/networks", &net).await.unwrap() }).await);
    }
    for i in 0..50 {
        delete.push(timed(async { c.delete(&format!("/v1/networks/n{i}")).await.unwrap() }).await);
    }
    println!(
        "disconnect, REST (200, one network)          median {:>6.2} ms",
        median(&mut disconnect)
    );
    println!(
        "reconnect right after, REST                  median {:>6.2} ms",
        median(&mut reconnect)
    );
    println!(
        "sandbox delete with its endpoint, REST (200) median {:>6.2} ms",
        median(&mut sandbox_delete)
    );
    println!(
        "network create, REST (50)                    median {:>6.2} ms",
        median(&mut create)
    );
    println!(
        "network delete, REST (50)                    median {:>6.2} ms",
        median(&mut delete)
    );
}

fn main() {
    let server = Server::start(&[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&server.client()));
    let links = server.host.links();
    let left: Vec<&String> = links.iter().filter(|l| l.starts_with("wnv")).collect();
    assert!(left.is_empty(), "veths left: {left:?}");
}
