//! Services on the real kernel: a virtual IP load-balanced by nftables over the endpoints its
//! selector picks, followed as backends connect, disconnect and are relabelled; governed by
//! policies as traffic to the chosen backend; named in DNS. Backends answer with their name
//! and the client address they saw.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::net::{named_server, run_in, stdout_in, tcp_many};
use common::policy::{api_code, make, member, upload};
use common::{Host, Server};
use serde_json::{json, Value};
use wasmnet_web::client::Client;

/// How many of `n` connections from `ns` to `addr` each backend answered (by name), and the
/// client addresses the backends saw; failures counted under `!kind`.
fn spread(ns: &Path, addr: &str, n: usize) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut seen = Vec::new();
    for r in tcp_many(ns.to_path_buf(), addr, n) {
        let key = match r {
            Ok(answer) => {
                let (name, peer) = answer.split_once(' ').unwrap_or((&answer, ""));
                seen.push(peer.to_string());
                name.to_string()
            }
            Err(kind) => format!("!{kind:?}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    (counts, seen)
}

fn ns_of(e: &(PathBuf, Value)) -> PathBuf {
    e.0.clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// `dig` inside `ns` asking `server` for `name`: the answers.
fn dig(ns: &Path, server: &str, name: &str) -> Vec<String> {
    let at = format!("@{server}");
    let out = stdout_in(ns, &["dig", "+time=2", "+tries=1", "+short", &at, name]);
    let mut got: Vec<String> = out.lines().map(str::to_string).collect();
    got.sort();
    got
}

async fn relabel(c: &Client, e: &Value, labels: Value) {
    let path = format!("/v1/endpoints/{}", id(e));
    c.patch(&path, &json!({ "labels": labels })).await.unwrap();
}

#[tokio::test]
async fn a_virtual_ip_balances_across_its_backends_and_follows_them() {
    balances_and_follows("nftables").await;
}

#[tokio::test]
async fn a_virtual_ip_balances_across_its_backends_with_iptables() {
    balances_and_follows("iptables").await;
}

async fn balances_and_follows(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    let subnet = json!({"subnet": "10.71.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let other = json!({"subnet": "10.71.1.0/24"});
    make(&c, "/v1/networks", json!({"name": "other", "ipv4": other})).await;
    let mut backends = Vec::new();
    for name in ["b1", "b2", "b3"] {
        backends.push(member(&c, name, "front", json!({"app": "web"})).await);
    }
    let db = member(&c, "db", "front", json!({"app": "db"})).await;
    let client = member(&c, "client", "front", json!({})).await;
    let outsider = member(&c, "outsider", "other", json!({})).await;
    let _servers: Vec<_> = (backends.iter().zip(["b1", "b2", "b3"]))
        .map(|(b, name)| named_server(ns_of(b), 8080, name))
        .chain([named_server(ns_of(&db), 8080, "db")])
        .collect();

    let body = json!({"name": "web", "network": "front", "selector": {"app": "web"},
        "ports": [{"port": 80, "target_port": 8080}]});
    let svc = make(&c, "/v1/services", body).await;
    let vip = svc["ipv4"].as_str().unwrap().to_string();
    assert!(vip.starts_with("10.71.0."), "{svc}");
    let detail = c.get("/v1/services/web").await.unwrap();
    assert_eq!(detail["backends"].as_array().unwrap().len(), 3, "{detail}");
    let at = format!("{vip}:80");

    // 300 connections reach every backend, each 20-47% of them, with the client's address.
    let client_ip = client.1["ipv4"].as_str().unwrap().to_string();
    let (counts, seen) = spread(&client.0, &at, 300);
    for name in ["b1", "b2", "b3"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((60..=141).contains(&n), "{name}: {n} of 300 ({counts:?})");
    }
    assert!(
        seen.iter().all(|s| *s == client_ip),
        "clients keep their address"
    );

    // Names: the service's address, and its backends' as `tasks.web`.
    assert_eq!(
        dig(&client.0, "10.71.0.1", "web"),
        std::slice::from_ref(&vip)
    );
    let mut addrs: Vec<String> = (backends.iter())
        .map(|b| b.1["ipv4"].as_str().unwrap().to_string())
        .collect();
    addrs.sort();
    assert_eq!(dig(&client.0, "10.71.0.1", "tasks.web"), addrs);

    // A backend disconnected gets no new connection; the others take over.
    c.delete(&format!("/v1/endpoints/{}", id(&backends[2].1)))
        .await
        .unwrap();
    let (counts, _) = spread(&client.0, &at, 60);
    assert_eq!(counts.get("b3"), None, "{counts:?}");
    assert!(
        counts.contains_key("b1") && counts.contains_key("b2"),
        "{counts:?}"
    );
    // Relabelled out of the selector: gone too.
    relabel(&c, &backends[1].1, json!({"app": "old"})).await;
    let (counts, _) = spread(&client.0, &at, 20);
    assert_eq!(counts, BTreeMap::from([("b1".to_string(), 20)]));
    if backend == "nftables" {
        // The chain as written over netlink reads back as nft would have written it.
        let b1 = backends[0].1["ipv4"].as_str().unwrap();
        let table = server
            .host
            .stdout(&["nft", "list", "table", "inet", "wasmnet"]);
        let rule = format!("numgen random mod 1 map {{ 0 : {b1} . 8080 }}");
        assert!(table.contains(&rule), "{rule} in {table}");
        let json = server.host.exec(&["nft", "-j", "list", "ruleset"]);
        assert!(json.status.success(), "the watcher's listing still parses");
    }

    // Hairpin: a backend reaching its own service (masqueraded to come back).
    let (counts, seen) = spread(&backends[0].0, &at, 5);
    assert_eq!(counts, BTreeMap::from([("b1".to_string(), 5)]), "hairpin");
    assert!(seen.iter().all(|s| s == "10.71.0.1"), "{seen:?}");

    // The address is isolated from another network: refused, not answered.
    let (counts, _) = spread(&outsider.0, &at, 3);
    assert!(counts.keys().all(|k| k.starts_with('!')), "{counts:?}");

    // Without backends a connection is refused at once.
    relabel(&c, &backends[0].1, json!({"app": "old"})).await;
    let t = Instant::now();
    let (counts, _) = spread(&client.0, &at, 3);
    assert_eq!(
        counts,
        BTreeMap::from([("!ConnectionRefused".to_string(), 3)])
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let detail = c.get("/v1/services/web").await.unwrap();
    assert_eq!(detail["backends"], json!([]));

    // Deleted: its address leaves the bridge, its rules the firewall.
    let rules = || match backend {
        "nftables" => server
            .host
            .stdout(&["nft", "list", "map", "inet", "wasmnet", "services4"]),
        _ => server.host.stdout(&["iptables-save", "-t", "nat"]),
    };
    assert!(rules().contains(&vip), "{}", rules());
    c.delete("/v1/services/web").await.unwrap();
    let addrs = server.host.stdout(&["ip", "-o", "addr", "show"]);
    assert!(!addrs.contains(&format!("{vip}/32")), "{addrs}");
    assert!(!rules().contains(&vip), "{}", rules());
}

/// Restart and kill -9 keep services: their address, their rules, their backends.
#[tokio::test]
async fn services_survive_restarts_and_crashes() {
    let server = Server::start(&[]);
    let c = server.client();
    let subnet = json!({"subnet": "10.72.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let b = member(&c, "b1", "front", json!({"app": "web"})).await;
    let client = member(&c, "client", "front", json!({})).await;
    let bridge =
        wasmnet_engine::names::bridge_name(&id(&c.get("/v1/networks/front").await.unwrap()));
    let body = json!({"name": "web", "network": "front", "ipv4": "10.72.0.200",
        "ports": [{"port": 80, "target_port": 8080}], "endpoints": [id(&b.1)]});
    let svc = make(&c, "/v1/services", body).await;
    assert_eq!(svc["endpoints"], json!([id(&b.1)]));
    let _srv = named_server(b.0.clone(), 8080, "b1");
    let reach = |ns: &Path| spread(ns, "10.72.0.200:80", 3).0;
    let one = BTreeMap::from([("b1".to_string(), 3)]);
    assert_eq!(reach(&client.0), one);
    let host: Host = server.stop();
    let server = Server::start_in(host, &[]);
    assert_eq!(reach(&client.0), one, "after a restart");
    let host = server.crash();
    // What a crash leaves is still enforced; a restart re-asserts it all.
    run_in(
        &host.netns_path(),
        &["ip", "addr", "del", "10.72.0.200/32", "dev", &bridge],
    );
    let server = Server::start_in(host, &[]);
    assert_eq!(reach(&client.0), one, "after kill -9");
    let c = server.client();
    let got = c.get("/v1/services").await.unwrap();
    assert_eq!(got["items"][0]["name"], "web", "{got}");
}

/// Traffic to a service is governed as traffic to the backend chosen: label isolation lets
/// the backends' own tier through and drops the others.
#[tokio::test]
async fn policies_govern_service_traffic_as_traffic_to_the_backend() {
    let server = Server::start(&[]);
    let c = server.client();
    let subnet = json!({"subnet": "10.73.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "app", "ipv4": subnet})).await;
    let b = member(&c, "b1", "app", json!({"tier": "web", "role": "server"})).await;
    let friend = member(&c, "friend", "app", json!({"tier": "web"})).await;
    let stranger = member(&c, "stranger", "app", json!({"tier": "db"})).await;
    let _srv = named_server(b.0.clone(), 8080, "b1");
    let body = json!({"name": "web", "network": "app", "selector": {"role": "server"},
        "ports": [{"port": 80, "target_port": 8080}]});
    let svc = make(&c, "/v1/services", body).await;
    let at = format!("{}:80", svc["ipv4"].as_str().unwrap());
    upload(&c, "tiers", "label-isolation").await.unwrap();
    let attach = json!({"network": "app", "priority": 10});
    make(&c, "/v1/policies/tiers/attach", attach).await;
    let (counts, _) = spread(&friend.0, &at, 10);
    assert!(
        counts.keys().all(|k| !k.starts_with('!')),
        "same tier: {counts:?}"
    );
    let (counts, _) = spread(&stranger.0, &at, 2);
    assert!(
        counts.keys().all(|k| k.starts_with('!')),
        "another tier: {counts:?}"
    );
    make(&c, "/v1/policies/tiers/detach", json!({"network": "app"})).await;
    let (counts, _) = spread(&stranger.0, &at, 2);
    assert!(
        counts.keys().all(|k| !k.starts_with('!')),
        "detached: {counts:?}"
    );
}

/// Bad requests are refused with what is wrong; nothing is half made.
#[tokio::test]
async fn bad_services_are_refused_clearly() {
    let server = Server::start(&[]);
    let c = server.client();
    let subnet = json!({"subnet": "10.74.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let e = member(&c, "b1", "front", json!({})).await;
    let port = json!([{"port": 80}]);
    let svc = |extra: Value| {
        let mut body = json!({"name": "web", "network": "front", "ports": port.clone()});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let refused = |r| api_code(r);
    let (status, _, msg) = refused(
        c.post("/v1/services", &svc(json!({"ipv4": "10.9.9.9"})))
            .await,
    );
    assert_eq!(status, 422, "{msg}");
    assert!(msg.contains("not inside the subnet"), "{msg}");
    let taken = e.1["ipv4"].clone();
    let (status, code, _) = refused(c.post("/v1/services", &svc(json!({"ipv4": taken}))).await);
    assert_eq!((status, code.as_str()), (409, "address_in_use"));
    let (status, _, msg) = refused(c.post("/v1/services", &svc(json!({"ports": []}))).await);
    assert_eq!(status, 422, "{msg}");
    let both = json!({"selector": {"a": "b"}, "endpoints": [id(&e.1)]});
    let (status, _, msg) = refused(c.post("/v1/services", &svc(both)).await);
    assert_eq!(status, 422);
    assert!(msg.contains("not both"), "{msg}");
    let (status, _, _) = refused(
        c.post("/v1/services", &svc(json!({"network": "nope"})))
            .await,
    );
    assert_eq!(status, 404);

    // Nothing selected is allowed: 0 backends. Another service may share the address on
    // other ports, not on the same one.
    let first = make(
        &c,
        "/v1/services",
        svc(json!({"selector": {"app": "none"}})),
    )
    .await;
    let vip = first["ipv4"].clone();
    let got = c.get("/v1/services/web").await.unwrap();
    assert_eq!(got["backends"], json!([]));
    let clash = json!({"name": "web2", "ipv4": vip.clone()});
    let (status, code, _) = refused(c.post("/v1/services", &svc(clash)).await);
    assert_eq!((status, code.as_str()), (409, "port_in_use"));
    let shared = json!({"name": "web2", "ipv4": vip, "ports": [{"port": 443}]});
    make(&c, "/v1/services", svc(shared)).await;
    let (status, code, _) = refused(c.post("/v1/services", &svc(json!({}))).await);
    assert_eq!((status, code.as_str()), (409, "name_in_use"));
    c.delete(&format!("/v1/endpoints/{}", id(&e.1)))
        .await
        .unwrap();
    let (status, code, _) = refused(c.delete("/v1/networks/front").await);
    assert_eq!((status, code.as_str()), (409, "has_services"));
    c.delete("/v1/services/web").await.unwrap();
    let addrs = server.host.stdout(&["ip", "-o", "addr", "show"]);
    let vip = first["ipv4"].as_str().unwrap();
    assert!(
        addrs.contains(&format!("{vip}/32")),
        "web2 keeps the shared address: {addrs}"
    );
}

/// The iptables backend balances at random only: affinity is refused there, naming why.
#[tokio::test]
async fn affinity_is_refused_where_iptables_enforces() {
    let server = Server::start(&["--firewall-backend", "iptables"]);
    let c = server.client();
    let subnet = json!({"subnet": "10.75.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let body = json!({"name": "web", "network": "front", "ports": [{"port": 80}],
        "affinity": "client_ip"});
    let (status, _, msg) = api_code(c.post("/v1/services", &body).await);
    assert_eq!(status, 422);
    assert!(msg.contains("nftables"), "{msg}");
    let got = c.get("/v1/services").await.unwrap();
    assert_eq!(got["items"], json!([]));
}

/// Affinity keeps one client on one backend (nftables: a hash of its address).
#[tokio::test]
async fn affinity_keeps_a_client_on_one_backend() {
    let server = Server::start(&[]);
    let c = server.client();
    let subnet = json!({"subnet": "10.76.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let mut servers = Vec::new();
    for name in ["b1", "b2", "b3"] {
        let b = member(&c, name, "front", json!({"app": "web"})).await;
        servers.push(named_server(b.0, 8080, name));
    }
    let mut clients = Vec::new();
    for name in ["c1", "c2", "c3", "c4", "c5", "c6"] {
        clients.push(member(&c, name, "front", json!({})).await);
    }
    let body = json!({"name": "web", "network": "front", "selector": {"app": "web"},
        "affinity": "client_ip", "ports": [{"port": 80, "target_port": 8080}]});
    let svc = make(&c, "/v1/services", body).await;
    assert_eq!(svc["affinity"], "client_ip");
    // A fourth backend joins (the chain rewritten over netlink, hashing the client).
    let b = member(&c, "b4", "front", json!({"app": "web"})).await;
    servers.push(named_server(b.0, 8080, "b4"));
    let table = server
        .host
        .stdout(&["nft", "list", "table", "inet", "wasmnet"]);
    assert!(
        table.contains("jhash ip saddr mod 4 seed 0x5eed map"),
        "{table}"
    );
    let at = format!("{}:80", svc["ipv4"].as_str().unwrap());
    let mut chosen = std::collections::BTreeSet::new();
    for client in &clients {
        let (counts, _) = spread(&client.0, &at, 20);
        assert_eq!(counts.len(), 1, "one backend per client: {counts:?}");
        assert_eq!(counts.values().next(), Some(&20), "{counts:?}");
        chosen.insert(counts.into_keys().next().unwrap());
    }
    assert!(
        chosen.len() >= 2,
        "six clients hash to more than one backend: {chosen:?}"
    );
}

/// Packets the interface `eth0` inside `ns` has received.
fn rx_packets(ns: &Path) -> u64 {
    let out = stdout_in(ns, &["ip", "-j", "-s", "link", "show", "dev", "eth0"]);
    let links: Value = serde_json::from_str(&out).unwrap();
    links[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// Whether `ns` has resolved `addr` to `mac` (a neighbour entry).
fn resolved(ns: &Path, addr: &str) -> Option<String> {
    let out = stdout_in(
        ns,
        &["ip", "-j", "neigh", "show", "to", addr, "dev", "eth0"],
    );
    let n: Value = serde_json::from_str(&out).unwrap();
    n[0]["lladdr"].as_str().map(str::to_string)
}

/// A virtual IP resolves without its ARP request flooding every port: the bridge answers it
/// and drops the flooded copies. Flooded to a thousand ports, the copies filled the backlog
/// and the answer was dropped behind them. Other addresses still resolve as before.
#[tokio::test]
async fn a_virtual_ip_resolves_without_flooding_the_network() {
    let server = Server::start(&[]);
    let c = server.client();
    let subnet = json!({"subnet": "10.77.0.0/24"});
    make(&c, "/v1/networks", json!({"name": "front", "ipv4": subnet})).await;
    let b = member(&c, "b1", "front", json!({"app": "web"})).await;
    let _srv = named_server(ns_of(&b), 8080, "b1");
    let client = member(&c, "client", "front", json!({})).await;
    let bystander = member(&c, "bystander", "front", json!({})).await;
    let body = json!({"name": "web", "network": "front", "selector": {"app": "web"},
        "ports": [{"port": 80, "target_port": 8080}]});
    let svc = make(&c, "/v1/services", body).await;
    let vip = svc["ipv4"].as_str().unwrap().to_string();
    // A first connection: the backend learns the client's address (its own ARP request).
    assert_eq!(spread(&client.0, &format!("{vip}:80"), 1).0.len(), 1);

    let before = rx_packets(&bystander.0);
    for _ in 0..5 {
        run_in(&client.0, &["ip", "neigh", "flush", "dev", "eth0"]);
        let (counts, _) = spread(&client.0, &format!("{vip}:80"), 1);
        assert_eq!(counts, BTreeMap::from([("b1".to_string(), 1)]));
        assert!(resolved(&client.0, &vip).is_some(), "{vip} resolved");
    }
    assert_eq!(
        rx_packets(&bystander.0),
        before,
        "no request reached the bystander"
    );

    // An endpoint's address is still resolved by its owner's answer.
    let backend_ip = b.1["ipv4"].as_str().unwrap().to_string();
    run_in(&client.0, &["ip", "neigh", "flush", "dev", "eth0"]);
    let ping = run_in(&client.0, &["ping", "-c1", "-W2", &backend_ip]);
    assert!(ping.status.success(), "ping {backend_ip}");
    assert_eq!(
        resolved(&client.0, &backend_ip).as_deref(),
        b.1["mac"].as_str()
    );
}
