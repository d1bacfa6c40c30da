//! The CLI end to end, against a real server: docker-style verbs, tables, JSON, one-line errors.

mod common;

use std::process::{Command, Output};

use common::{Server, BIN};
use serde_json::Value;

fn wasmnet(server: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env(
            "WASMNET_HOST",
            format!("unix://{}", server.socket.display()),
        )
        .env_remove("WASMNET_TOKEN")
        .output()
        .unwrap()
}

/// Runs a command that must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = wasmnet(server, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with a one-line error; returns that line.
fn fails(server: &Server, args: &[&str]) -> String {
    let out = wasmnet(server, args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    err
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn network_sandbox_endpoint_verbs() {
    let server = Server::start(&[]);
    let id = ok(
        &server,
        &[
            "network",
            "create",
            "web",
            "--subnet",
            "10.30.0.0/24",
            "--gateway",
            "10.30.0.254",
            "--ip-range",
            "10.30.0.128/25",
            "--label",
            "tier=front",
            "-o",
            "mtu=1400",
        ],
    );
    assert_eq!(id.trim().len(), 64);
    ok(
        &server,
        &[
            "network",
            "create",
            "dual",
            "--subnet",
            "10.31.0.0/24",
            "--subnet",
            "fd00:31::/64",
            "--internal",
        ],
    );
    ok(&server, &["network", "create", "v6", "--ipv6"]);

    let table = ok(&server, &["network", "ls"]);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("NETWORK ID     NAME   DRIVER   IPV4 SUBNET"),
        "{table}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[0].contains("dual") && rows[0].contains("fd00:31::/64") && rows[0].contains("true")
    );
    assert!(rows[2].starts_with(&id.trim()[..12]) && rows[2].contains("10.30.0.0/24"));
    let listed = json(&ok(
        &server,
        &[
            "--format",
            "json",
            "network",
            "ls",
            "--filter",
            "label=tier=front",
        ],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["ipv4"]["gateway"], "10.30.0.254");
    assert_eq!(
        ok(&server, &["network", "ls", "-q", "-f", "name=du"])
            .trim()
            .len(),
        64
    );

    ok(
        &server,
        &["sandbox", "create", "box", "--label", "app=shop"],
    );
    let other = common::Host::new();
    let other_ns = other.netns_path().display().to_string();
    let adopted = json(&ok(
        &server,
        &[
            "--format", "json", "sandbox", "create", "--netns", &other_ns,
        ],
    ));
    assert_eq!(adopted["netns_owned"], false);
    assert!(ok(&server, &["sandbox", "ls"]).contains("box"));

    ok(
        &server,
        &[
            "network",
            "connect",
            "web",
            "box",
            "--ip",
            "10.30.0.10",
            "--alias",
            "shop",
            "-p",
            "127.0.0.1:8080:80",
            "-p",
            "53/udp",
        ],
    );
    ok(
        &server,
        &["network", "connect", "dual", "box", "--interface", "data0"],
    );
    let endpoints = ok(&server, &["endpoint", "ls", "--sandbox", "box"]);
    assert!(
        endpoints.contains("10.30.0.10")
            && endpoints.contains("127.0.0.1:8080->80/tcp")
            && endpoints.contains("49153->53/udp"),
        "{endpoints}"
    );
    assert!(
        endpoints.contains("data0") && endpoints.contains("fd00:31::2"),
        "{endpoints}"
    );
    let inspected = json(&ok(&server, &["network", "inspect", "web"]));
    assert_eq!(inspected[0]["endpoints"][0]["aliases"][0], "shop");
    let eid = inspected[0]["endpoints"][0]["id"].as_str().unwrap();
    let ep = json(&ok(&server, &["endpoint", "inspect", &eid[..8]]));
    assert_eq!(ep[0]["sandbox_name"], "box");

    // Errors: one line, non-zero exit, naming what is wrong.
    assert!(fails(&server, &["network", "create", "web"]).contains("\"web\" is already in use"));
    assert!(fails(
        &server,
        &["network", "create", "x", "--subnet", "10.30.0.0/16"]
    )
    .contains("overlaps"));
    assert!(fails(
        &server,
        &[
            "network",
            "create",
            "x",
            "--subnet",
            "10.40.0.0/24",
            "--subnet",
            "10.41.0.0/24"
        ]
    )
    .contains("once per IP family"));
    assert!(fails(&server, &["network", "create", "x", "--label", "novalue"]).contains("--label"));
    assert!(fails(&server, &["network", "connect", "web", "box"]).contains("already connected"));
    assert!(fails(&server, &["network", "connect", "web", "nobox"])
        .contains("sandbox \"nobox\" not found"));
    assert!(
        fails(&server, &["network", "connect", "dual", "box", "-p", "x:y"]).contains("--publish")
    );
    assert!(fails(&server, &["network", "rm", "web"]).contains("disconnect them first"));
    assert!(fails(&server, &["network", "inspect", "nope"]).contains("network \"nope\" not found"));
    assert!(fails(&server, &["network", "ls", "--filter", "colour=red"]).contains("--filter"));
    assert!(fails(&server, &["network", "disconnect", "v6", "box"]).contains("not connected"));

    // The firewall can be re-asserted by hand.
    ok(&server, &["firewall", "reload"]);
    ok(&server, &["network", "disconnect", "web", "box"]);
    assert_eq!(ok(&server, &["network", "rm", "web"]).trim(), "web");
    let pruned = ok(&server, &["network", "prune", "-f"]);
    assert!(
        pruned.contains("v6") && !pruned.contains("dual"),
        "dual still has box: {pruned}"
    );
    assert_eq!(ok(&server, &["sandbox", "rm", "box"]).trim(), "box");
    assert_eq!(
        json(&ok(&server, &["--format", "json", "endpoint", "ls"])),
        Value::Array(vec![])
    );
}

#[test]
fn talks_tcp_with_a_token_and_explains_unreachable_servers() {
    let server = Server::start(&[]);
    let over_tcp = |token: Option<&str>| {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", server.host.netns_path().display()));
        cmd.args([BIN, "--host", &server.url, "network", "ls"]);
        if let Some(t) = token {
            cmd.env("WASMNET_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    assert!(over_tcp(Some(&server.token)).status.success());
    let refused = over_tcp(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Bearer"));

    let out = Command::new(BIN)
        .args([
            "--host",
            "unix:///nonexistent/wasmnet.sock",
            "network",
            "ls",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.starts_with("error: cannot reach wasmnet")
            && err.lines().count() == 1,
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["--host", "ftp://x", "network", "ls"])
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("unix:///PATH or http://HOST:PORT")
    );
}

/// `wasmnet policy …` end to end against a server.
#[test]
fn policies_from_the_command_line() {
    let server = Server::start(&[]);
    let dist = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/dist");
    ok(
        &server,
        &["network", "create", "app", "--subnet", "10.36.0.0/24"],
    );
    let id = ok(
        &server,
        &[
            "policy",
            "upload",
            &format!("{dist}/label-isolation.wasm"),
            "--name",
            "tiers",
            "--description",
            "by tier",
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let err = fails(
        &server,
        &[
            "policy",
            "upload",
            &format!("{dist}/testdata/wasi-import.wasm"),
        ],
    );
    assert!(err.contains("imports wasi:random/random"), "{err}");
    let err = fails(&server, &["policy", "upload", "/nonexistent.wasm"]);
    assert!(err.contains("reading /nonexistent.wasm"), "{err}");
    let ls = ok(&server, &["policy", "ls"]);
    assert!(
        ls.starts_with("POLICY ID") && ls.contains("tiers") && ls.contains("0.2.0"),
        "{ls}"
    );
    let diff = ok(&server, &["policy", "dry-run", "tiers", "--network", "app"]);
    assert!(
        diff.contains("--- in force") && diff.contains("+\tchain pol_"),
        "{diff}"
    );
    ok(
        &server,
        &[
            "policy",
            "attach",
            "tiers",
            "--network",
            "app",
            "--priority",
            "5",
        ],
    );
    let ls = ok(&server, &["policy", "ls"]);
    assert!(ls.contains("@5"), "{ls}");
    let p = json(&ok(&server, &["policy", "inspect", "tiers"]));
    assert_eq!(p[0]["description"], "by tier");
    assert_eq!(p[0]["attachments"][0]["priority"], 5);
    let err = fails(&server, &["policy", "rm", "tiers"]);
    assert!(err.contains("attached"), "{err}");
    let err = fails(&server, &["policy", "detach", "tiers"]);
    assert!(err.contains("not attached globally"), "{err}");
    ok(&server, &["policy", "detach", "tiers", "--network", "app"]);
    assert_eq!(ok(&server, &["policy", "rm", "tiers"]).trim(), "tiers");
    assert_eq!(ok(&server, &["policy", "ls", "-q"]), "");
}

#[test]
fn service_verbs() {
    let server = Server::start(&[]);
    ok(
        &server,
        &["network", "create", "front", "--subnet", "10.78.0.0/24"],
    );
    ok(&server, &["sandbox", "create", "web1"]);
    ok(
        &server,
        &["network", "connect", "front", "web1", "--label", "app=web"],
    );
    let id = ok(
        &server,
        &[
            "service",
            "create",
            "shop",
            "--network",
            "front",
            "--port",
            "80:8080",
            "--port",
            "53/udp",
            "--selector",
            "app=web",
        ],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let table = ok(&server, &["service", "ls"]);
    let row = table.lines().find(|l| l.contains("shop")).expect("a row");
    for want in ["front", "10.78.0.3", "80->8080/tcp", "53/udp"] {
        assert!(row.contains(want), "{want:?} in {row:?}\n{table}");
    }
    assert!(row.trim_end().ends_with(" 1"), "one backend: {row:?}");
    let inspect = json(&ok(
        &server,
        &["--format", "json", "service", "inspect", "shop"],
    ));
    assert_eq!(inspect[0]["backends"][0]["sandbox"], "web1", "{inspect}");
    assert_eq!(inspect[0]["ports"][1]["protocol"], "udp");
    let err = fails(
        &server,
        &[
            "service",
            "create",
            "bad",
            "--network",
            "front",
            "--port",
            "80:x",
        ],
    );
    assert!(err.contains("80:x"), "{err}");
    let err = fails(
        &server,
        &[
            "service",
            "create",
            "shop",
            "--network",
            "front",
            "--port",
            "81",
        ],
    );
    assert!(err.contains("already in use"), "{err}");
    ok(&server, &["service", "rm", "shop"]);
    assert!(!ok(&server, &["service", "ls"]).contains("shop"));
}
