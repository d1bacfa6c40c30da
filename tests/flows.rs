//! Flow records on the real kernel: packets the firewall drops (by isolation, by a policy),
//! audit mode's would-be drops, read from NFLOG in-process, named, served over REST and
//! the stream; rate-limited per rule and kept in a bounded ring.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::net::{named_server, ping, run_in, tcp_probe};
use common::policy::{make, member, upload};
use common::Server;
use serde_json::{json, Value};
use wasmnet_web::client::Client;

/// Polls `GET path` until an item satisfies `want` (10 s at most).
async fn flow_where(c: &Client, path: &str, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.get(path).await.unwrap();
        if let Some(f) = got["items"].as_array().unwrap().iter().find(|f| want(f)) {
            return f.clone();
        }
        assert!(Instant::now() < deadline, "no such flow in {got:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ip(e: &(std::path::PathBuf, Value)) -> String {
    e.1["ipv4"].as_str().unwrap().to_string()
}

fn ns(e: &(std::path::PathBuf, Value)) -> &Path {
    &e.0
}

#[tokio::test]
async fn isolation_drops_are_flows_with_nftables() {
    isolation_drops_are_flows("nftables").await;
}

#[tokio::test]
async fn isolation_drops_are_flows_with_iptables() {
    isolation_drops_are_flows("iptables").await;
}

/// A ping to another network is dropped by isolation: a flow naming both ends, over REST
/// and the stream.
async fn isolation_drops_are_flows(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "a", "ipv4": {"subnet": "10.81.0.0/24"}}),
    )
    .await;
    make(
        &c,
        "/v1/networks",
        json!({"name": "b", "ipv4": {"subnet": "10.81.1.0/24"}}),
    )
    .await;
    let sa = member(&c, "sa", "a", json!({})).await;
    let sb = member(&c, "sb", "b", json!({})).await;
    let mut stream = c
        .stream("/v1/flows/stream?verdict=dropped&sandbox=sa")
        .await
        .unwrap();
    assert!(!ping(ns(&sa), &ip(&sb)), "networks are isolated");

    let f = flow_where(&c, "/v1/flows?network=a", |f| f["protocol"] == "icmp").await;
    assert_eq!(f["verdict"], "dropped", "{f}");
    assert_eq!(f["decided_by"], "isolation", "{f}");
    assert_eq!(f["network"], "a", "{f}");
    assert_eq!(f["source"]["sandbox"], "sa", "{f}");
    assert_eq!(f["source"]["address"], ip(&sa), "{f}");
    assert_eq!(f["source"]["endpoint"], sa.1["id"], "{f}");
    assert_eq!(f["destination"]["sandbox"], "sb", "{f}");
    assert!(f.get("policy").is_none(), "{f}");

    let (name, data) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a flow on the stream within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(name, "flow");
    let streamed: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(streamed["source"]["sandbox"], "sa", "{streamed}");

    // The CLI lists it (and `-f` would follow the stream).
    let cli = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .env(
                "WASMNET_HOST",
                format!("unix://{}", server.socket.display()),
            )
            .output()
            .unwrap()
    };
    let out = cli(&["flows", "--sandbox", "sa", "--verdict", "dropped"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("isolation"))
        .unwrap_or_default();
    let want = format!("sa ({})", ip(&sa));
    assert!(
        line.contains(&want) && line.contains("dropped") && line.contains("icmp"),
        "{text}"
    );
    let out = cli(&["flows", "--verdict", "lost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verdict"));

    // Filters are checked: an unknown sandbox is a 404, a bad verdict a 422.
    let e = c
        .get("/v1/flows?sandbox=nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("404") || e.contains("not found") || e.contains("nope"),
        "{e}"
    );
    let e = c
        .get("/v1/flows?verdict=lost")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("verdict"), "{e}");
}

/// Label isolation drops a TCP connection from another tier: a flow naming the policy and
/// the port. Attached in audit mode, the connection passes and the flow is `would_drop`.
#[tokio::test]
async fn policy_drops_and_audit_mode_are_flows() {
    let server = Server::start(&[]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "app", "ipv4": {"subnet": "10.82.0.0/24"}}),
    )
    .await;
    let web = member(&c, "web", "app", json!({"tier": "web"})).await;
    let db = member(&c, "db", "app", json!({"tier": "db"})).await;
    let _srv = named_server(db.0.clone(), 8080, "db");
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "app"})).await;
    let to = format!("{}:8080", ip(&db));
    assert_eq!(
        tcp_probe(web.0.clone(), &to),
        None,
        "another tier is dropped"
    );
    let f = flow_where(&c, "/v1/flows?policy=tiers", |f| f["protocol"] == "tcp").await;
    assert_eq!(f["verdict"], "dropped", "{f}");
    assert_eq!(f["policy"], "tiers", "{f}");
    assert_eq!(f["decided_by"], "tiers", "{f}");
    assert_eq!(f["destination"]["port"], 8080, "{f}");
    assert_eq!(f["destination"]["sandbox"], "db", "{f}");
    assert_eq!(f["source"]["sandbox"], "web", "{f}");

    // Audit mode: it passes, and the flow says it would have been dropped.
    make(&c, "/v1/policies/tiers/detach", json!({"network": "app"})).await;
    let audit = json!({"network": "app", "audit": true});
    make(&c, "/v1/policies/tiers/attach", audit).await;
    assert!(
        tcp_probe(web.0.clone(), &to).is_some(),
        "audit mode enforces nothing"
    );
    let f = flow_where(&c, "/v1/flows?verdict=would_drop", |f| {
        f["protocol"] == "tcp"
    })
    .await;
    assert_eq!(f["policy"], "tiers", "{f}");
    assert_eq!(f["destination"]["port"], 8080, "{f}");
}

/// A flood of drops is recorded at the rules' rate, and the ring keeps only its size.
#[tokio::test]
async fn a_flood_stays_rate_limited_and_the_ring_bounded() {
    let server = Server::start(&["--flow-buffer", "8"]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "a", "ipv4": {"subnet": "10.83.0.0/24"}}),
    )
    .await;
    make(
        &c,
        "/v1/networks",
        json!({"name": "b", "ipv4": {"subnet": "10.83.1.0/24"}}),
    )
    .await;
    let sa = member(&c, "sa", "a", json!({})).await;
    let sb = member(&c, "sb", "b", json!({})).await;
    // 400 pings in about 1.2 s (bounded: -c and -w), all dropped.
    let start = Instant::now();
    let flood = run_in(
        ns(&sa),
        &[
            "ping",
            "-q",
            "-c",
            "400",
            "-i",
            "0.003",
            "-w",
            "5",
            &ip(&sb),
        ],
    );
    assert!(!flood.status.success(), "dropped");
    let took = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = c.get("/v1/flows?limit=1000").await.unwrap();
    let items = got["items"].as_array().unwrap();
    assert_eq!(items.len(), 8, "the ring keeps 8: {got}");
    // Numbered from 1 as recorded: the newest's number is how many were recorded.
    let recorded = items.last().unwrap()["seq"].as_u64().unwrap();
    // 10 a second per rule, after a burst of 5 (nft's and iptables' default).
    let allowed = (5.0 + 10.0 * (took + 1.0)).ceil() as u64;
    assert!(
        (8..=allowed).contains(&recorded),
        "{recorded} recorded of 400 in {took:.1} s (at most {allowed})"
    );
    let metrics = c.send(hyper::Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8(metrics.1.to_vec()).unwrap();
    let line = format!("wasmnet_flow_records_total{{kind=\"dropped\"}} {recorded}");
    assert!(text.contains(&line), "{line} in:\n{text}");
}

/// When the flow log cannot be read (here: another listener holds the group), the daemon
/// starts all the same, its rules log nothing (a rule logging to an unreadable group could
/// fail to load on a kernel without nfnetlink_log), and isolation holds.
#[tokio::test]
async fn without_the_flow_log_the_rules_log_nothing_and_still_enforce() {
    let host = common::Host::new();
    let holder = common::in_netns(host.netns_path(), || {
        wasmnet_engine::kernel::nflog::bind(wasmnet_engine::names::FLOW_GROUP)
    })
    .expect("the group is free in a fresh namespace");
    let again = common::in_netns(host.netns_path(), || {
        wasmnet_engine::kernel::nflog::bind(wasmnet_engine::names::FLOW_GROUP).map(drop)
    });
    assert!(again.is_err(), "one listener per group");
    let server = Server::start_in(host, &[]);
    let c = server.client();
    make(
        &c,
        "/v1/networks",
        json!({"name": "a", "ipv4": {"subnet": "10.85.0.0/24"}}),
    )
    .await;
    make(
        &c,
        "/v1/networks",
        json!({"name": "b", "ipv4": {"subnet": "10.85.1.0/24"}}),
    )
    .await;
    let sa = member(&c, "sa", "a", json!({})).await;
    let sb = member(&c, "sb", "b", json!({})).await;
    assert!(!ping(ns(&sa), &ip(&sb)), "isolation holds");
    let table = server
        .host
        .stdout(&["nft", "list", "table", "inet", "wasmnet"]);
    assert!(table.contains("drop") && !table.contains("log"), "{table}");
    let got = c.get("/v1/flows").await.unwrap();
    assert_eq!(got["items"], json!([]));
    drop(holder);
}
