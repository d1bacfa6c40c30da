//! Wasm policies end to end: uploaded over REST, attached, enforced by the real kernel (ping
//! and TCP between real namespaces), with both firewall backends; and hostile modules, each
//! refused or stopped with a clear error while the server keeps serving and the rules stay.

mod common;

use std::path::{Path, PathBuf};

use common::net::{is_tracked, ping, tcp_probe, tcp_server};
use common::policy::{api_code, ip, make, member, tcp, upload};
use common::{Server, BIN};
use serde_json::json;

/// Uploads 100 MB over a raw connection, as far as the server reads it (it answers 413 from
/// the declared length and stops reading, so writing may fail midway), then reads its answer.
fn upload_100_mb(socket: &Path) -> String {
    use std::io::{Read, Write};
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let len = 100usize << 20;
    let head = format!("POST /v1/policies?name=big HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/wasm\r\nContent-Length: {len}\r\n\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..100 {
        if conn.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

async fn label_isolation_is_enforced_and_follows_labels(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "app", "ipv4": {"subnet": "10.31.0.0/24"}}),
    )
    .await;
    let (web1, _) = member(&c, "web1", "app", json!({"tier": "web"})).await;
    let (web2, e2) = member(&c, "web2", "app", json!({"tier": "web"})).await;
    let (db, edb) = member(&c, "db", "app", json!({"tier": "db"})).await;
    assert!(
        ping(&web1, &ip(&edb)),
        "Docker's default: one network talks"
    );

    let p = upload(&c, "tiers", "label-isolation").await.unwrap();
    assert_eq!(p["version"], "0.2.0");
    assert_eq!(p["sha256"].as_str().unwrap().len(), 64);
    let before = c.get("/v1/ruleset").await.unwrap();
    let dry = make(&c, "/v1/policies/tiers/dry-run", json!({"network": "app"})).await;
    assert!(dry["diff"].as_str().unwrap().contains("+"), "{dry}");
    let after = c.get("/v1/ruleset").await.unwrap();
    assert_eq!(
        before["generation"], after["generation"],
        "a dry run touches nothing"
    );

    let p = make(
        &c,
        "/v1/policies/tiers/attach",
        json!({"network": "app", "priority": 10}),
    )
    .await;
    assert_eq!(p["attachments"][0]["priority"], 10);
    assert!(ping(&web1, &ip(&e2)), "same tier talks");
    assert!(tcp(&web1, &web2, &ip(&e2)), "same tier, tcp");
    assert!(!ping(&web1, &ip(&edb)), "web -> db refused");
    assert!(!tcp(&web1, &db, &ip(&edb)), "web -> db refused, tcp");
    assert!(!ping(&db, &ip(&e2)), "db -> web refused");
    assert!(
        ping(&db, "10.31.0.1"),
        "the gateway is not another endpoint"
    );

    // A new endpoint joins under the policy: element updates put it in its group.
    let (web3, _) = member(&c, "web3", "app", json!({"tier": "web"})).await;
    assert!(ping(&web3, &ip(&e2)), "a newcomer of the same tier talks");
    assert!(!ping(&web3, &ip(&edb)), "and not to another tier");

    // Relabel: the rules follow.
    let id = edb["id"].as_str().unwrap();
    c.patch(
        &format!("/v1/endpoints/{id}"),
        &json!({"labels": {"tier": "web"}}),
    )
    .await
    .unwrap();
    assert!(ping(&web1, &ip(&edb)), "db relabelled web talks to web");
    c.patch(
        &format!("/v1/endpoints/{id}"),
        &json!({"labels": {"tier": "db"}}),
    )
    .await
    .unwrap();
    assert!(!ping(&web1, &ip(&edb)), "and back");

    // Detach: Docker's defaults are back.
    make(&c, "/v1/policies/tiers/detach", json!({"network": "app"})).await;
    assert!(ping(&web1, &ip(&edb)), "detached: everyone talks again");
    assert!(ping(&web3, &ip(&edb)));

    let (status, code, _) = api_code(c.delete("/v1/policies/nope").await);
    assert_eq!((status, code.as_str()), (404, "not_found"));
    c.delete("/v1/policies/tiers").await.unwrap();
    for s in ["web1", "web2", "web3", "db"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    c.delete("/v1/networks/app").await.unwrap();
}

async fn priorities_compose_and_audit_mode_only_counts(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "seg", "ipv4": {"subnet": "10.32.0.0/24"}}),
    )
    .await;
    let (web, eweb) = member(&c, "web", "seg", json!({"role": "web"})).await;
    let (db, edb) = member(&c, "db", "seg", json!({"role": "db"})).await;
    upload(&c, "micro", "microsegmentation").await.unwrap();
    upload(&c, "docker", "docker-default").await.unwrap();
    // Global Docker default at 20, microsegmentation at 10 on the network: micro's default
    // (drop between endpoints) comes first; only tcp/5432 web -> db passes.
    make(&c, "/v1/policies/docker/attach", json!({"priority": 20})).await;
    make(
        &c,
        "/v1/policies/micro/attach",
        json!({"network": "seg", "priority": 10}),
    )
    .await;
    assert!(
        !ping(&web, &ip(&edb)),
        "micro first: web -> db icmp dropped"
    );
    let _pg = tcp_server(db.clone(), 5432);
    assert!(
        tcp_probe(web.clone(), &format!("{}:5432", ip(&edb))).is_some(),
        "web -> db tcp/5432"
    );
    // A governed network's traffic stays tracked: its rules may ask for the state.
    assert!(is_tracked(
        &server.host.netns_path(),
        &ip(&eweb),
        &ip(&edb),
        5432
    ));
    assert!(!tcp(&web, &db, &ip(&edb)), "web -> db on another port");
    // Lower its priority below Docker's: Docker's default (accept) decides first.
    make(
        &c,
        "/v1/policies/micro/attach",
        json!({"network": "seg", "priority": 30}),
    )
    .await;
    assert!(ping(&web, &ip(&edb)), "docker first: accepted");
    // Audit mode: nothing enforced, would-be drops counted.
    make(&c, "/v1/policies/docker/detach", json!({})).await;
    make(
        &c,
        "/v1/policies/micro/attach",
        json!({"network": "seg", "priority": 10, "audit": true}),
    )
    .await;
    assert!(ping(&web, &ip(&edb)), "audit enforces nothing");
    if backend == "nftables" {
        // Counters come from the watcher's listing, at most 2 s old.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let counters = c.get("/v1/policies/micro/counters").await.unwrap();
            if counters[0]["would_drop"][0].as_u64().unwrap() >= 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{counters}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let (status, code, msg) = api_code(c.delete("/v1/policies/micro").await);
    assert_eq!((status, code.as_str()), (409, "attached"), "{msg}");
    c.delete("/v1/policies/micro?force=true").await.unwrap();
    c.delete("/v1/policies/docker").await.unwrap();
    assert!(ping(&web, &ip(&edb)));
    for s in ["web", "db"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    c.delete("/v1/networks/seg").await.unwrap();
}

async fn policies_survive_a_restart(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "keep", "ipv4": {"subnet": "10.33.0.0/24"}}),
    )
    .await;
    let (a, _) = member(&c, "a", "keep", json!({"tier": "x"})).await;
    let (_, eb) = member(&c, "b", "keep", json!({"tier": "y"})).await;
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "keep"})).await;
    assert!(!ping(&a, &ip(&eb)));
    let host = server.crash();
    let server = Server::start_in(host, &["--firewall-backend", backend]);
    let c = server.client();
    assert!(
        !ping(&a, &ip(&eb)),
        "still enforced after a crash and restart"
    );
    let p = c.get("/v1/policies/tiers").await.unwrap();
    assert_eq!(p["attachments"].as_array().unwrap().len(), 1);
    assert!(p["last_error"].is_null(), "{p}");
    c.delete("/v1/policies/tiers?force=true").await.unwrap();
    for s in ["a", "b"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    c.delete("/v1/networks/keep").await.unwrap();
}

common::per_backend!(nftables: label_isolation_is_enforced_and_follows_labels, priorities_compose_and_audit_mode_only_counts, policies_survive_a_restart);
common::per_backend!(iptables: label_isolation_is_enforced_and_follows_labels, priorities_compose_and_audit_mode_only_counts, policies_survive_a_restart);

/// Every hostile module is refused at upload with a clear error; the server keeps serving and
/// the rules in force do not change.
#[tokio::test]
async fn hostile_modules_are_refused_and_change_nothing() {
    let server = Server::start(&[]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "h", "ipv4": {"subnet": "10.34.0.0/24"}}),
    )
    .await;
    member(&c, "s", "h", json!({})).await;
    let ruleset = c.get("/v1/ruleset").await.unwrap();
    let cases = [
        ("loop", "policy_failed", "time limit of 50 ms"),
        // (On a loaded machine the time limit may stop it first.)
        ("memory-bomb", "policy_failed", "memory|time limit"),
        ("recursion", "policy_failed", "call stack exhausted"),
        ("trap", "policy_failed", "unreachable"),
        ("many-rules", "policy_failed", "20000 rules"),
        (
            "wrong-version",
            "invalid_policy",
            "wasmnet:policy/policy@0.3.0",
        ),
        (
            "wrong-interface",
            "invalid_policy",
            "does not export wasmnet:policy/policy@0.2.0",
        ),
        (
            "wasi-import",
            "invalid_policy",
            "imports wasi:random/random",
        ),
        ("other-import", "invalid_policy", "imports evil:net/socket"),
    ];
    for (file, want_code, want_text) in cases {
        let (status, code, message) = api_code(upload(&c, file, &format!("testdata/{file}")).await);
        assert_eq!(
            (status, code.as_str()),
            (422, want_code),
            "{file}: {message}"
        );
        let said = want_text.split('|').any(|t| message.contains(t));
        assert!(said, "{file}: {message}");
    }
    let (_, code, message) = api_code(upload(&c, "huge", "testdata/huge-output").await);
    assert_eq!(code, "policy_failed", "{message}");
    let random: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let (status, code, message) = api_code(
        c.upload("/v1/policies?name=random", "application/wasm", random)
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (422, "invalid_policy"),
        "{message}"
    );
    let answer = upload_100_mb(&server.socket);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
    let (status, _, _) = api_code(c.upload("/v1/policies?name=x", "text/plain", vec![1]).await);
    assert_eq!(status, 415);
    assert_eq!(c.get("/healthz").await.unwrap()["status"], "ok");
    assert_eq!(c.get("/v1/policies").await.unwrap()["items"], json!([]));
    assert_eq!(
        c.get("/v1/ruleset").await.unwrap()["text"],
        ruleset["text"],
        "rules unchanged"
    );

    // A module that traps on one endpoint only: the connect is refused, nothing changes.
    upload(&c, "fragile", "testdata/trap-on-label")
        .await
        .unwrap();
    make(&c, "/v1/policies/fragile/attach", json!({"network": "h"})).await;
    let before = c.get("/v1/ruleset").await.unwrap();
    make(&c, "/v1/sandboxes", json!({"name": "b"})).await;
    let (status, code, message) = api_code(
        c.post(
            "/v1/endpoints",
            &json!({"network": "h", "sandbox": "b", "labels": {"boom": "1"}}),
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (422, "policy_failed"), "{message}");
    assert!(
        message.contains("fragile") && message.contains("classify trapped"),
        "{message}"
    );
    let after = c.get("/v1/ruleset").await.unwrap();
    assert_eq!(before["text"], after["text"]);
    assert!(c.get("/v1/policies/fragile").await.unwrap()["last_error"]
        .as_str()
        .unwrap()
        .contains("trapped"));
    let listed = c.get("/v1/endpoints?sandbox=b").await.unwrap();
    assert_eq!(listed["items"], json!([]), "no endpoint left behind");
    // The same sandbox connects without the label: the module still works.
    make(&c, "/v1/endpoints", json!({"network": "h", "sandbox": "b"})).await;
    c.delete("/v1/policies/fragile?force=true").await.unwrap();
    for s in ["s", "b"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    c.delete("/v1/networks/h").await.unwrap();
}

#[tokio::test]
async fn port_guard_refuses_privileged_ports_and_a_newer_minor_loads() {
    let server = Server::start(&[]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "p", "ipv4": {"subnet": "10.35.0.0/24"}}),
    )
    .await;
    upload(&c, "guard", "port-guard").await.unwrap();
    make(&c, "/v1/policies/guard/attach", json!({})).await;
    make(&c, "/v1/sandboxes", json!({"name": "s"})).await;
    let body =
        json!({"network": "p", "sandbox": "s", "ports": [{"host_port": 80, "container_port": 80}]});
    let (status, code, message) = api_code(c.post("/v1/endpoints", &body).await);
    assert_eq!((status, code.as_str()), (422, "invalid"), "{message}");
    assert!(
        message.contains("ports[0]") && message.contains("guard") && message.contains("privileged"),
        "{message}"
    );
    let body = json!({"network": "p", "sandbox": "s", "ports": [{"host_port": 8080, "container_port": 80}]});
    make(&c, "/v1/endpoints", body).await;

    let newer = upload(&c, "newer", "testdata/newer-minor").await.unwrap();
    assert_eq!(newer["version"], "0.1.1");
    let listed = c.get("/v1/policies").await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    c.delete("/v1/policies/newer").await.unwrap();
    c.delete("/v1/policies/guard?force=true").await.unwrap();
    c.delete("/v1/sandboxes/s").await.unwrap();
    c.delete("/v1/networks/p").await.unwrap();
}

/// `wasmnet policy test` runs a policy offline against a fixture.
#[test]
fn policy_test_runs_offline_against_a_fixture() {
    let dir = std::env::temp_dir().join(format!("wasmnet-fixture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = dir.join("fixture.json");
    std::fs::write(
        &fixture,
        r#"{"networks": [{"name": "app", "subnet": "10.9.0.0/24"}],
            "endpoints": [{"network": "app", "sandbox": "web", "ipv4": "10.9.0.2", "labels": {"tier": "web"}},
                          {"network": "app", "sandbox": "db", "ipv4": "10.9.0.3", "labels": {"tier": "db"}}]}"#,
    )
    .unwrap();
    let wasm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/dist/label-isolation.wasm");
    let out = std::process::Command::new(BIN)
        .args(["policy", "test"])
        .arg(&wasm)
        .arg("--fixture")
        .arg(&fixture)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rule     accept any -> same-group"), "{text}");
    assert!(
        text.contains("endpoint web on app: groups [tier=web]"),
        "{text}"
    );
    assert!(
        text.contains("ip saddr @g_") && text.contains("10.9.0.2"),
        "{text}"
    );
    let bad = std::process::Command::new(BIN)
        .args(["policy", "test", "/dev/null", "--fixture"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a WebAssembly binary"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Policy work runs off the async runtime and holds no lock a reader needs: while an attach
/// spends a second or so in Wasm (the `slow` guest spins in every `classify`), reads — the
/// health check, lists, and the policies themselves, which used to wait on the policies'
/// lock — keep answering. Counted, not timed: many rounds of reads finish before the attach.
#[tokio::test]
async fn reads_answer_while_a_slow_policy_is_being_attached() {
    let server = Server::start(&[]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "busy", "ipv4": {"subnet": "10.39.0.0/24"}}),
    )
    .await;
    // About 8 ms of Wasm per endpoint (well inside the 50 ms limit), 120 endpoints.
    for i in 0..120 {
        member(&c, &format!("s{i}"), "busy", json!({"spin": "4"})).await;
    }
    upload(&c, "slow", "testdata/slow").await.unwrap();
    let attaching = server.client();
    let attach = tokio::spawn(async move {
        let body = json!({"network": "busy"});
        attaching.post("/v1/policies/slow/attach", &body).await
    });
    let mut rounds = 0;
    while !attach.is_finished() {
        for path in [
            "/healthz",
            "/v1/networks",
            "/v1/policies",
            "/v1/sandboxes?limit=1000",
        ] {
            c.get(path).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        rounds += 1;
    }
    let attached = attach.await.unwrap().unwrap();
    eprintln!("{rounds} rounds of reads during the attach");
    assert!(
        attached["attachments"][0]["network_id"].is_string(),
        "{attached}"
    );
    assert!(
        rounds >= 5,
        "only {rounds} round(s) of reads finished while the attach ran"
    );
    let p = c.get("/v1/policies/slow").await.unwrap();
    assert!(p["last_error"].is_null(), "{p}");
}
