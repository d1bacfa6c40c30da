//! Real containers on wasmnet through its CNI plugin: Debian's podman (4.3) in CNI mode, with
//! conflists of type `wasmnet`, inside a test host's namespace. Reachability, a published
//! port from outside and from the host, label isolation by configuration labels, cleanup.

mod common;

use common::net::{outside_world, run_in, HOST_UPLINK};
use common::podman::Podman;
use common::policy::{make, upload};
use common::Server;
use serde_json::json;

#[tokio::test]
async fn podman_runs_containers_on_a_wasmnet_conflist() {
    let server = Server::start(&[]);
    let world = outside_world(&server.host);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "pods", "ipv4": {"subnet": "10.98.0.0/24"}}),
    )
    .await;
    let p = Podman::new(&server);
    p.import_busybox();
    p.conflist("pods", "pods", json!({}));
    p.conflist("pods-web", "pods", json!({"tier": "web"}));
    p.conflist("pods-db", "pods", json!({"tier": "db"}));
    let listed = p.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(listed.contains("pods wasmnet"), "{listed}");

    p.run("p1", "pods", None);
    p.run("p2", "pods", None);
    p.run("web", "pods", Some("8081:80"));
    let published = c.get("/v1/ruleset").await.unwrap();
    assert!(published["text"].as_str().unwrap().contains("tcp . 8081 :"));
    assert!(p.ip_of("p1").starts_with("10.98.0."));
    assert!(p.pings("p1", &p.ip_of("p2")));
    let url = format!("http://{HOST_UPLINK}:8081/");
    let page = run_in(&world.netns_path(), &["curl", "-sS", "-m", "3", &url]);
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("hello from a container"),
        "{page:?}"
    );
    let local = run_in(
        &server.host.netns_path(),
        &["curl", "-sS", "-m", "3", "http://127.0.0.1:8081/"],
    );
    assert!(
        String::from_utf8_lossy(&local.stdout).contains("hello from a container"),
        "{local:?}"
    );
    let sandboxes = c.list_all("/v1/sandboxes").await.unwrap();
    assert_eq!(sandboxes.len(), 3);
    assert!(sandboxes
        .iter()
        .all(|s| s["labels"]["wasmnet.origin"] == "cni"));

    // A policy groups containers by their configuration's labels.
    p.run("w1", "pods-web", None);
    p.run("w2", "pods-web", None);
    p.run("d1", "pods-db", None);
    assert!(p.pings("w1", &p.ip_of("d1")), "no policy yet");
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "pods"})).await;
    assert!(p.pings("w1", &p.ip_of("w2")), "same tier");
    assert!(!p.pings("w1", &p.ip_of("d1")), "web -> db isolated");
    assert!(!p.pings("p1", &p.ip_of("p2")), "no tier: nobody");
    make(&c, "/v1/policies/tiers/detach", json!({"network": "pods"})).await;

    // kill -9 of wasmnet: traffic flows on; a container removed meanwhile (its CNI DEL
    // cannot reach wasmnet) is cleaned up when wasmnet is back, and podman goes on working.
    p.run("gone", "pods", None);
    let gone = p.ip_of("gone");
    let host = server.crash();
    assert!(p.pings("p1", &p.ip_of("p2")), "while wasmnet is down");
    let _ = p.podman(&["rm", "-f", "-t", "0", "gone"]);
    let server = Server::start_in(host, &[]);
    let c = server.client();
    let eps = c.list_all("/v1/endpoints").await.unwrap();
    assert_eq!(eps.len(), 6, "{eps:?}");
    assert!(eps.iter().all(|e| e["ipv4"] != gone.as_str()));
    p.run("p3", "pods", None);
    assert!(p.pings("p3", &p.ip_of("p1")));

    // podman rm -f leaves nothing of the containers behind.
    p.ok(&[
        "rm", "-f", "-t", "0", "p1", "p2", "p3", "web", "w1", "w2", "d1",
    ]);
    assert!(c.list_all("/v1/endpoints").await.unwrap().is_empty());
    assert!(c.list_all("/v1/sandboxes").await.unwrap().is_empty());
    let links = server.host.links();
    assert!(links.iter().all(|l| !l.starts_with("wnv")), "{links:?}");
    let rules = c.get("/v1/ruleset").await.unwrap();
    // web's published port is gone (its map element read `tcp . 8081 : <web> . 80`).
    assert!(!rules["text"].as_str().unwrap().contains("tcp . 8081 :"));
}
