//! The CNI plugin driven directly, as a runtime drives it (environment, configuration on
//! stdin, answer on stdout), against a real daemon and real namespaces, for every version it
//! claims: ADD, CHECK, DEL, DEL again, DEL after the namespace is gone, ADD of an existing
//! interface, VERSION, bad configurations and an unreachable daemon, each with the spec's
//! error codes.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::net::ping;
use common::{Host, Server};
use serde_json::{json, Value};

const CNI: &str = env!("CARGO_BIN_EXE_wasmnet-cni");

/// Runs the plugin; returns (exit status success, its stdout as JSON or Null).
fn cni(command: &str, config: &[u8], env: &[(&str, String)]) -> (bool, Value) {
    let mut child = Command::new(CNI)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(config).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (out.status.success(), value)
}

fn config(version: &str, server: &Server, extra: Value) -> Vec<u8> {
    let mut c = json!({"cniVersion": version, "name": "podnet", "type": "wasmnet",
        "network": "pods", "socket": server.socket});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    serde_json::to_vec(&c).unwrap()
}

fn vars(container: &str, netns: &Host, ifname: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_CONTAINERID", container.to_string()),
        ("CNI_NETNS", netns.netns_path().display().to_string()),
        ("CNI_IFNAME", ifname.to_string()),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAME=web-0;wasmnet.label.tier=web".into(),
        ),
    ]
}

#[tokio::test]
async fn the_plugin_speaks_every_version_it_claims() {
    let server = Server::start(&[]);
    let c = server.client();
    let net = json!({"name": "pods", "ipv4": {"subnet": "10.48.0.0/24"}});
    c.post("/v1/networks", &net).await.unwrap();
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let netns = Host::new();
        let id = format!("c{i}{}", "ab".repeat(20));
        let env = vars(&id, &netns, "eth0");
        let cfg = config(version, &server, json!({}));
        let (ok, added) = cni("ADD", &cfg, &env);
        assert!(ok, "{version}: {added}");
        assert_eq!(added["cniVersion"], version);
        let ip = &added["ips"][0];
        assert_eq!(ip.get("version").is_some(), version == "0.4.0", "{added}");
        let address = ip["address"].as_str().unwrap();
        assert!(
            address.starts_with("10.48.0.") && address.ends_with("/24"),
            "{added}"
        );
        assert_eq!(ip["gateway"], "10.48.0.1");
        assert_eq!(added["dns"]["nameservers"], json!(["10.48.0.1"]), "{added}");
        assert_eq!(added["interfaces"][0]["sandbox"], env[1].1.as_str());
        assert_eq!(added["routes"][0]["dst"], "0.0.0.0/0");
        let inside = netns.stdout(&["ip", "-o", "addr", "show", "eth0"]);
        assert!(inside.contains(address), "{inside}");
        assert!(
            ping(&netns.netns_path(), "10.48.0.1"),
            "the gateway answers"
        );
        let listed = c
            .get(&format!("/v1/endpoints?sandbox=cni-{id}"))
            .await
            .unwrap();
        let e = &listed["items"][0];
        assert_eq!(e["labels"]["tier"], "web", "CNI_ARGS became labels: {e}");

        assert!(cni("CHECK", &cfg, &env).0, "{version}: CHECK");
        let (ok, again) = cni("ADD", &cfg, &env);
        assert!(
            !ok && again["code"] == 100,
            "an existing interface: {again}"
        );
        assert!(again["msg"]
            .as_str()
            .unwrap()
            .contains("already has interface eth0"));
        assert!(cni("DEL", &cfg, &env).0, "{version}: DEL");
        assert!(cni("DEL", &cfg, &env).0, "{version}: DEL again");
        let (ok, gone) = cni("CHECK", &cfg, &env);
        assert!(!ok && gone["code"] == 3, "{gone}");
        assert!(netns.netns_path().exists(), "the runtime's namespace stays");
    }
    let sandboxes = c.get("/v1/sandboxes").await.unwrap();
    assert_eq!(sandboxes["items"], json!([]), "DEL left nothing");
}

#[tokio::test]
async fn del_after_the_namespace_is_gone_and_errors_have_the_specs_codes() {
    let server = Server::start(&[]);
    let c = server.client();
    let net = json!({"name": "pods", "ipv4": {"subnet": "10.49.0.0/24"}});
    c.post("/v1/networks", &net).await.unwrap();
    let cfg = config("1.1.0", &server, json!({}));
    let netns = Host::new();
    let env = vars("gone1", &netns, "eth0");
    assert!(cni("ADD", &cfg, &env).0);
    drop(netns);
    let (ok, out) = cni("DEL", &cfg, &env);
    assert!(ok, "DEL after the namespace is gone: {out}");
    assert_eq!(c.get("/v1/endpoints").await.unwrap()["items"], json!([]));

    let (ok, v) = cni("VERSION", br#"{"cniVersion":"1.0.0"}"#, &[]);
    assert!(ok);
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    let netns = Host::new();
    let env = vars("bad1", &netns, "eth0");
    let code = |cfg: &[u8], env: &[(&str, String)]| cni("ADD", cfg, env).1["code"].clone();
    assert_eq!(code(b"{oops", &env), 6, "not JSON");
    assert_eq!(
        code(
            br#"{"cniVersion":"1.0.0","name":"x","type":"bridge"}"#,
            &env
        ),
        7
    );
    assert_eq!(
        code(
            br#"{"cniVersion":"0.1.0","name":"x","type":"wasmnet"}"#,
            &env
        ),
        1
    );
    let nowhere = json!({"cniVersion": "1.0.0", "name": "pods", "type": "wasmnet",
        "socket": "/nonexistent/wasmnet.sock"});
    assert_eq!(
        code(&serde_json::to_vec(&nowhere).unwrap(), &env),
        11,
        "daemon down"
    );
    let (ok, status) = cni("STATUS", &serde_json::to_vec(&nowhere).unwrap(), &env);
    assert!(!ok && status["code"] == 50, "{status}");
    assert!(cni("STATUS", &cfg, &env).0);
    assert_eq!(code(&cfg, &env[..2]), 4, "no CNI_IFNAME");
    let unknown = config("1.0.0", &server, json!({"network": "nope"}));
    let (ok, refused) = cni("ADD", &unknown, &env);
    assert!(!ok && refused["code"] == 100, "{refused}");
    assert!(
        refused["msg"].as_str().unwrap().contains("nope"),
        "{refused}"
    );
    // GC: an attachment the runtime no longer lists goes.
    assert!(cni("ADD", &cfg, &env).0);
    let keep = config("1.1.0", &server, json!({"cni.dev/valid-attachments": []}));
    assert!(cni("GC", &keep, &env).0);
    assert_eq!(c.get("/v1/sandboxes").await.unwrap()["items"], json!([]));
}

/// The default network: made at the first start (`bridge`, its bridge also named `wasmnet0`),
/// joined by an endpoint or a CNI configuration naming no network, and not made again once
/// an operator deleted it.
#[tokio::test]
async fn the_default_network_is_made_once_and_joined_when_none_is_named() {
    let server = Server::start(&["--default-network", "bridge"]);
    let c = server.client();
    let n = c.get("/v1/networks/bridge").await.unwrap();
    assert_eq!(n["labels"]["wasmnet.default"], "true", "{n}");
    assert_eq!(
        n["ipv4"]["subnet"], "172.17.0.0/16",
        "the first default pool"
    );
    assert_eq!(n["options"]["altname"], "wasmnet0");
    let shown = server
        .host
        .stdout(&["ip", "-o", "addr", "show", "dev", "wasmnet0"]);
    assert!(shown.contains("172.17.0.1/16"), "{shown}");

    // An endpoint naming no network joins it.
    c.post("/v1/sandboxes", &json!({"name": "s1"}))
        .await
        .unwrap();
    let e = c
        .post("/v1/endpoints", &json!({"sandbox": "s1"}))
        .await
        .unwrap();
    assert_eq!(e["network_name"], "bridge", "{e}");
    // So does a CNI configuration naming none.
    let netns = Host::new();
    let cfg = json!({"cniVersion": "1.0.0", "name": "anything", "type": "wasmnet", "socket": server.socket});
    let env = vars(&format!("d{}", "0".repeat(30)), &netns, "eth0");
    let (ok, added) = cni("ADD", &serde_json::to_vec(&cfg).unwrap(), &env);
    assert!(ok, "{added}");
    assert!(
        added["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("172.17.0."),
        "{added}"
    );
    assert!(cni("DEL", &serde_json::to_vec(&cfg).unwrap(), &env).0);
    c.delete(&format!("/v1/endpoints/{}", e["id"].as_str().unwrap()))
        .await
        .unwrap();

    // Deleted by the operator, it stays deleted.
    c.delete("/v1/networks/bridge").await.unwrap();
    let host = server.stop();
    let server = Server::start_in(host, &["--default-network", "bridge"]);
    let c = server.client();
    assert!(
        c.get("/v1/networks/bridge").await.is_err(),
        "not made again"
    );
    let (status, code, message) =
        common::policy::api_code(c.post("/v1/endpoints", &json!({"sandbox": "s1"})).await);
    assert_eq!((status, code.as_str()), (404, "not_found"), "{message}");
}
