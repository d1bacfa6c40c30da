//! The embedded DNS server on the real kernel, asked by a real client (`dig`, from
//! bind9-dnsutils) inside sandboxes, and through `ip netns exec`'s resolv.conf; an upstream
//! resolver (dnsmasq) runs in the test's "outside world" namespace.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::net::{outside_world, run_in, stdout_in, tcp_probe, tcp_server, Upstream, WORLD};
use common::{Host, Server};
use serde_json::{json, Value};
use wasmnet_web::client::Client;

async fn make(c: &Client, path: &str, body: Value) -> Value {
    c.post(path, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {path} {body}: {e}"))
}

/// A sandbox on `net` with `aliases`; returns its namespace and its endpoint.
async fn sandbox_on(c: &Client, name: &str, net: &str, aliases: &[&str]) -> (PathBuf, Value) {
    let s = make(c, "/v1/sandboxes", json!({"name": name})).await;
    let body = json!({"network": net, "sandbox": name, "aliases": aliases});
    let e = make(c, "/v1/endpoints", body).await;
    (PathBuf::from(s["netns"].as_str().unwrap()), e)
}

/// `dig` inside `ns`, asking `server`: (status, answers), within 2 s per try, one try.
fn dig(ns: &Path, server: &str, query: &[&str]) -> (String, Vec<String>) {
    let at = format!("@{server}");
    let mut args = vec![
        "dig",
        "+time=3",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
        &at,
    ];
    args.extend(query);
    let out = String::from_utf8(run_in(ns, &args).stdout).unwrap();
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let answers = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (status, answers)
}

#[tokio::test]
async fn names_resolve_on_their_networks_only_and_follow_connects() {
    let server = Server::start(&["--dns-upstream", "203.0.113.9"]);
    let c = server.client();
    let v6 = json!({"subnet": "fd00:53::/64"});
    let body = json!({"name": "a", "ipv4": {"subnet": "10.53.1.0/24"}, "ipv6": v6});
    make(&c, "/v1/networks", body).await;
    let body = json!({"name": "b", "ipv4": {"subnet": "10.53.2.0/24"}});
    make(&c, "/v1/networks", body).await;
    let (web, _) = sandbox_on(&c, "web", "a", &["www"]).await;
    let (_db_ns, db) = sandbox_on(&c, "db", "a", &[]).await;
    let (_api, _) = sandbox_on(&c, "api", "b", &[]).await;
    let gw = "10.53.1.1";
    let db_ip = db["ipv4"].as_str().unwrap();
    assert_eq!(
        dig(&web, gw, &["db"]),
        ("NOERROR".into(), vec![db_ip.to_string()])
    );
    assert_eq!(dig(&web, gw, &["DB.a"]).1, vec![db_ip.to_string()]);
    assert_eq!(dig(&web, gw, &["AAAA", "db"]).1, vec![s(&db["ipv6"])]);
    let (_, www) = dig(&web, gw, &["www"]);
    assert_eq!(www.len(), 1, "the alias resolves");
    // PTR: the sandbox's name on that network.
    assert_eq!(dig(&web, gw, &["-x", db_ip]).1, vec!["db.a.".to_string()]);
    assert_eq!(dig(&web, gw, &["-x", "10.53.1.200"]).0, "NXDOMAIN");
    // api is on b, which web is not on: not answered as ours, and forwarded (nobody
    // answers at the upstream: SERVFAIL within the timeout, not a hang).
    let t0 = Instant::now();
    assert_eq!(dig(&web, gw, &["api"]).0, "SERVFAIL");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(dig(&web, gw, &["api.b"]).1.is_empty());
    // The names API says the same, and names not valid in DNS are listed, unpublished.
    let names = c.get("/v1/networks/a/names").await.unwrap();
    let listed: Vec<&str> = (names["names"].as_array().unwrap().iter())
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["db", "web", "www"]);
    assert_eq!(names["servers"], json!(["10.53.1.1", "fd00:53::1"]));
    // A disconnect removes the name before it returns.
    c.delete(&format!("/v1/endpoints/{}", s(&db["id"])))
        .await
        .unwrap();
    assert_eq!(dig(&web, gw, &["db"]).0, "SERVFAIL");
    // A name DNS cannot carry is stored, not published, and the endpoint says so.
    let (_odd, odd) = sandbox_on(&c, "odd", "a", &["bad-"]).await;
    let warned = |e: &Value| e["warnings"].as_array().cloned().unwrap_or_default();
    let warnings = warned(&odd);
    assert_eq!(warnings.len(), 1, "{odd}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("alias \"bad-\"") && w.contains("not published"),
        "{w}"
    );
    let again = c
        .get(&format!("/v1/endpoints/{}", s(&odd["id"])))
        .await
        .unwrap();
    assert_eq!(warned(&again), warnings);
    let listed = c.get("/v1/endpoints?network=a").await.unwrap();
    let items = listed["items"].as_array().unwrap();
    let of = |name: &str| {
        items
            .iter()
            .find(|e| e["sandbox_name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(warned(&of("odd")), warnings);
    assert!(of("web").get("warnings").is_none(), "none: left out");
    assert_eq!(
        dig(&web, gw, &["odd"]).1,
        vec![s(&odd["ipv4"])],
        "the sandbox's own name is fine"
    );
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

#[tokio::test]
async fn forwarding_to_the_upstream_and_not_from_internal_networks() {
    let host = Host::new();
    let world = outside_world(&host);
    let _upstream = Upstream::start(&world, &["--address=/example.test/203.0.113.77"]);
    let server = Server::start_in(host, &["--dns-upstream", WORLD]);
    let c = server.client();
    let body = json!({"name": "out", "ipv4": {"subnet": "10.53.3.0/24"}});
    make(&c, "/v1/networks", body).await;
    let body = json!({"name": "in", "internal": true, "ipv4": {"subnet": "10.53.4.0/24"}});
    make(&c, "/v1/networks", body).await;
    let (a, _) = sandbox_on(&c, "a", "out", &[]).await;
    let (b, _) = sandbox_on(&c, "b", "in", &[]).await;
    let (_c2, c2) = sandbox_on(&c, "c", "in", &[]).await;
    let forwarded = dig(&a, "10.53.3.1", &["www.example.test"]);
    assert_eq!(
        forwarded,
        ("NOERROR".into(), vec!["203.0.113.77".to_string()])
    );
    // Internal: names resolve, nothing is forwarded.
    assert_eq!(dig(&b, "10.53.4.1", &["c"]).1, vec![s(&c2["ipv4"])]);
    assert_eq!(dig(&b, "10.53.4.1", &["www.example.test"]).0, "REFUSED");
    // ip netns sees the sandbox, and its resolv.conf names the gateway.
    let sandbox = c.get("/v1/sandboxes/a").await.unwrap();
    let name = s(&sandbox["netns_name"]);
    let listed = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(listed.contains(&name), "{name} in {listed}");
    let conf = std::fs::read_to_string(s(&sandbox["resolv_conf"])).unwrap();
    assert!(conf.contains("nameserver 10.53.3.1\n"), "{conf}");
    let exec = Command::new("ip")
        .args([
            "netns",
            "exec",
            &name,
            "dig",
            "+short",
            "+time=3",
            "+tries=1",
            "www.example.test",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "203.0.113.77");
    // Removed with the sandbox.
    c.delete("/v1/sandboxes/a").await.unwrap();
    assert!(!server.host.netns_names().contains(&name));
    assert!(!Path::new(&s(&sandbox["resolv_conf"])).exists());
}

#[tokio::test]
async fn a_flood_is_limited_per_source_and_garbage_is_dropped() {
    let server = Server::start(&["--dns-rate-limit", "50", "--dns-upstream", "203.0.113.9"]);
    let c = server.client();
    let body = json!({"name": "f", "ipv4": {"subnet": "10.53.5.0/24"}});
    make(&c, "/v1/networks", body).await;
    let (flooder, _) = sandbox_on(&c, "flooder", "f", &[]).await;
    let (quiet, _) = sandbox_on(&c, "quiet", "f", &[]).await;
    let answered = common::in_netns(flooder.clone(), || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        // Garbage first, and a datagram larger than any query: dropped, the server lives.
        sock.send_to(&[0xff; 7], "10.53.5.1:53").unwrap();
        sock.send_to(&vec![0u8; 9000], "10.53.5.1:53").unwrap();
        let query = query_for("quiet");
        for _ in 0..500 {
            sock.send_to(&query, "10.53.5.1:53").unwrap();
        }
        let mut buf = [0u8; 512];
        let mut n = 0;
        while sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    // A burst of twice the rate (and what the rate refilled meanwhile), not all 500.
    assert!((90..=200).contains(&answered), "{answered} answers");
    // Another source is answered at once.
    assert_eq!(dig(&quiet, "10.53.5.1", &["flooder"]).0, "NOERROR");
}

/// A DNS query for `name` (type A), as a client sends it.
fn query_for(name: &str) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

#[tokio::test]
async fn a_restart_keeps_answering_and_dns_off_serves_nothing() {
    let server = Server::start(&["--dns-upstream", "203.0.113.9"]);
    let c = server.client();
    let body = json!({"name": "r", "ipv4": {"subnet": "10.53.6.0/24"}});
    make(&c, "/v1/networks", body).await;
    let body =
        json!({"name": "quiet", "ipv4": {"subnet": "10.53.7.0/24"}, "options": {"dns": "false"}});
    make(&c, "/v1/networks", body).await;
    let (one, _) = sandbox_on(&c, "one", "r", &[]).await;
    let (_two, two) = sandbox_on(&c, "two", "r", &[]).await;
    let (mute, _) = sandbox_on(&c, "mute", "quiet", &[]).await;
    assert_eq!(dig(&mute, "10.53.7.1", &["mute"]).0, "no answer");
    let host = server.crash();
    let server = Server::start_in(host, &["--dns-upstream", "203.0.113.9"]);
    assert_eq!(dig(&one, "10.53.6.1", &["two"]).1, vec![s(&two["ipv4"])]);
    drop(server);
}

/// Whether TCP from `ns` to `addr`:8080 gets through (a server listens there in the world).
fn reaches(ns: &Path, addr: &str) -> bool {
    tcp_probe(ns.to_path_buf(), &format!("{addr}:8080")).is_some()
}

#[tokio::test]
async fn egress_by_name_follows_the_answers_and_their_ttl() {
    let host = Host::new();
    let world = outside_world(&host);
    for extra in ["203.0.113.77/24", "203.0.113.88/24"] {
        let dev = ["addr", "add", extra, "dev", "world0"];
        run_in(&world.netns_path(), &[&["ip"][..], &dev[..]].concat());
    }
    let _web = tcp_server(world.netns_path(), 8080);
    // TTL 3 for what dnsmasq answers from its --address lines.
    let _upstream = Upstream::start(
        &world,
        &[
            "--address=/allowed.test/203.0.113.77",
            "--address=/other.test/203.0.113.88",
            "--local-ttl=3",
        ],
    );
    let flags = ["--dns-upstream", WORLD, "--fqdn-min-ttl", "1"];
    let server = Server::start_in(host, &flags);
    let c = server.client();
    let labels = json!({"wasmnet.egress-fqdn": "*.allowed.test"});
    // dns_redirect: a resolver the sandbox names itself is answered by wasmnet's server.
    let options = json!({"dns_redirect": "true"});
    let body = json!({"name": "named", "ipv4": {"subnet": "10.53.8.0/24"}, "labels": labels, "options": options});
    make(&c, "/v1/networks", body).await;
    let labels = json!({"wasmnet.egress-allow": "203.0.113.88/32"});
    let body = json!({"name": "old", "ipv4": {"subnet": "10.53.9.0/24"}, "labels": labels});
    make(&c, "/v1/networks", body).await;
    let (a, _) = sandbox_on(&c, "a", "named", &[]).await;
    let (b, _) = sandbox_on(&c, "b", "old", &[]).await;
    assert!(reaches(&a, "203.0.113.77"), "no policy yet: out is open");
    let p = common::policy::upload(&c, "names", "fqdn-egress")
        .await
        .unwrap();
    assert_eq!(p["version"], "0.2.0");
    make(&c, "/v1/policies/names/attach", json!({"network": "named"})).await;
    assert!(!reaches(&a, "203.0.113.77"), "not resolved yet: dropped");
    let gw = "10.53.8.1";
    assert_eq!(dig(&a, gw, &["www.allowed.test"]).1, ["203.0.113.77"]);
    assert!(
        reaches(&a, "203.0.113.77"),
        "resolved through wasmnet: allowed"
    );
    assert_eq!(dig(&a, gw, &["other.test"]).1, ["203.0.113.88"]);
    assert!(!reaches(&a, "203.0.113.88"), "a name no pattern matches");
    let set = stdout_in(
        &server.host.netns_path(),
        &[
            "nft",
            "list",
            "set",
            "inet",
            "wasmnet",
            &fqdn_set("*.allowed.test"),
        ],
    );
    assert!(set.contains("203.0.113.77 timeout 3s"), "{set}");
    // Asked of a resolver that does not exist: redirected to the gateway, answered there.
    assert_eq!(
        dig(&a, "198.51.100.53", &["redirected.allowed.test"]).1,
        ["203.0.113.77"]
    );
    assert_eq!(
        dig(&b, "198.51.100.53", &["x.allowed.test"]).0,
        "no answer",
        "not redirected"
    );
    // Gone after the TTL (3 s, and the kernel's garbage collection).
    let t0 = Instant::now();
    while reaches(&a, "203.0.113.77") {
        assert!(t0.elapsed() < Duration::from_secs(10), "still allowed");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    // Asked again, allowed again (written afresh, not taken as still there).
    assert_eq!(dig(&a, gw, &["api.allowed.test"]).1, ["203.0.113.77"]);
    assert!(reaches(&a, "203.0.113.77"), "resolved again");
    // A guest built against wasmnet:policy@0.1.0 loads and enforces as before.
    let old = common::policy::upload(&c, "old", "testdata/v0-1-egress")
        .await
        .unwrap();
    assert_eq!(old["version"], "0.1.0");
    make(&c, "/v1/policies/old/attach", json!({"network": "old"})).await;
    assert!(reaches(&b, "203.0.113.88"));
    assert!(!reaches(&b, "203.0.113.77"));
}

/// The nft name of a pattern's IPv4 set (as `wasmnet_engine::names::fqdn_set`).
fn fqdn_set(pattern: &str) -> String {
    wasmnet_engine::names::fqdn_set(pattern, false)
}

#[tokio::test]
async fn fqdn_peers_are_refused_where_iptables_enforces() {
    let server = Server::start(&["--firewall-backend", "iptables", "--dns-upstream", WORLD]);
    let c = server.client();
    let labels = json!({"wasmnet.egress-fqdn": "api.test"});
    let body = json!({"name": "n", "ipv4": {"subnet": "10.53.10.0/24"}, "labels": labels});
    make(&c, "/v1/networks", body).await;
    // Refused at upload already: it is evaluated against the networks there.
    let r = common::policy::upload(&c, "names", "fqdn-egress").await;
    let (status, _, message) = common::policy::api_code(r);
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("needs the nftables backend"), "{message}");
    assert!(message.contains("api.test"), "{message}");
}
