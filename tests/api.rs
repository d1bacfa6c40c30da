//! The REST API end to end: the real binary, a real SQLite file, over the unix socket and TCP.

mod common;

use std::collections::HashSet;

use common::Server;
use hyper::Method;
use serde_json::{json, Value};
use wasmnet_web::client::Client;

async fn send(c: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, bytes) = c.send(method, path, body.as_ref()).await.unwrap();
    // Every answer is JSON, but for 204 No Content.
    let value = if bytes.is_empty() && status == 204 {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{path}: not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status.as_u16(), value)
}

async fn post(c: &Client, path: &str, body: Value) -> (u16, Value) {
    send(c, Method::POST, path, Some(body)).await
}

async fn get(c: &Client, path: &str) -> (u16, Value) {
    send(c, Method::GET, path, None).await
}

async fn delete(c: &Client, path: &str) -> (u16, Value) {
    send(c, Method::DELETE, path, None).await
}

/// Asserts an error status and code, and that the message mentions `needle`.
fn assert_error(got: (u16, Value), status: u16, code: &str, needle: &str) {
    let (s, v) = got;
    assert_eq!(s, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn networks_lifecycle_and_errors() {
    let server = Server::start(&[]);
    let c = server.client();

    let (s, web) = post(
        &c,
        "/v1/networks",
        json!({"name": "web", "labels": {"tier": "front"}}),
    )
    .await;
    assert_eq!(s, 201, "{web}");
    assert_eq!(
        web["ipv4"]["subnet"], "172.17.0.0/16",
        "first Docker default pool"
    );
    assert_eq!(web["ipv4"]["gateway"], "172.17.0.1");
    assert_eq!(web["driver"], "bridge");
    assert_eq!(web["id"].as_str().unwrap().len(), 64);
    let (s, db) = post(&c, "/v1/networks", json!({"name": "db", "ipv4": {"subnet": "10.7.0.0/24", "gateway": "10.7.0.254", "ip_range": "10.7.0.128/25"}, "enable_ipv6": true, "internal": true, "options": {"mtu": "1400", "icc": "false"}})).await;
    assert_eq!(s, 201, "{db}");
    assert!(
        db["ipv6"]["subnet"]
            .as_str()
            .unwrap()
            .starts_with("fd57:4153:4d00:"),
        "{db}"
    );
    assert_eq!(db["internal"], true);
    let (s, next) = post(&c, "/v1/networks", json!({"name": "third"})).await;
    assert_eq!(
        (s, next["ipv4"]["subnet"].clone()),
        (201, json!("172.18.0.0/16"))
    );

    // Lookups by id, prefix and name.
    let id = web["id"].as_str().unwrap();
    for reference in [id, &id[..12], "web"] {
        let (s, v) = get(&c, &format!("/v1/networks/{reference}")).await;
        assert_eq!((s, &v["name"]), (200, &json!("web")), "{reference}");
        assert_eq!(v["usage"]["ipv4"], json!({"used": 1, "total": 65534}));
    }
    // Filters.
    let (_, page) = get(&c, "/v1/networks?label=tier=front").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = get(&c, "/v1/networks?label=tier").await;
    assert_eq!(page["items"][0]["name"], "web");
    let (_, page) = get(&c, "/v1/networks?name=d").await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "third"]);

    // Conflicts.
    assert_error(
        post(&c, "/v1/networks", json!({"name": "web"})).await,
        409,
        "name_in_use",
        "\"web\"",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "ipv4": {"subnet": "10.7.0.0/16"}}),
        )
        .await,
        409,
        "subnet_overlap",
        "\"db\"",
    );
    // Invalid values name their field.
    assert_error(
        post(&c, "/v1/networks", json!({"name": "-bad"})).await,
        422,
        "invalid",
        "name",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "ipv4": {"subnet": "10.9.0.1/24"}}),
        )
        .await,
        422,
        "invalid",
        "ipv4.subnet",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "ipv4": {"subnet": "bogus"}}),
        )
        .await,
        422,
        "invalid",
        "ipv4.subnet",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "ipv4": {"subnet": "10.9.0.0/24", "gateway": "10.8.0.1"}}),
        )
        .await,
        422,
        "invalid",
        "ipv4.gateway",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "options": {"mtu": "9"}}),
        )
        .await,
        422,
        "invalid",
        "options.mtu",
    );
    assert_error(
        post(&c, "/v1/networks", json!({"name": "x", "colour": "blue"})).await,
        422,
        "invalid",
        "colour",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "driver": "macvlan"}),
        )
        .await,
        422,
        "invalid",
        "driver",
    );
    assert_error(
        post(
            &c,
            "/v1/networks",
            json!({"name": "x", "driver": "overlay"}),
        )
        .await,
        422,
        "invalid",
        "driver",
    );
    assert_error(
        post(&c, "/v1/networks", json!({"name": "x", "labels": {"k": 1}})).await,
        422,
        "invalid",
        "labels",
    );
    // Malformed requests.
    let (s, bytes) = c.send(Method::POST, "/v1/networks", None).await.unwrap();
    assert_eq!(s.as_u16(), 415, "{}", String::from_utf8_lossy(&bytes));
    assert_error(
        send(&c, Method::GET, "/v1/networks?limit=0", None).await,
        422,
        "invalid",
        "limit",
    );
    assert_error(
        send(&c, Method::GET, "/v1/networks?netwrk=x", None).await,
        422,
        "invalid",
        "netwrk",
    );
    assert_error(
        get(&c, "/v1/networks/nope").await,
        404,
        "not_found",
        "\"nope\"",
    );
    assert_error(
        delete(&c, "/v1/networks/nope").await,
        404,
        "not_found",
        "\"nope\"",
    );
    assert_error(
        send(&c, Method::PUT, "/v1/networks", None).await,
        405,
        "method_not_allowed",
        "method",
    );
    assert_error(get(&c, "/v1/nothing").await, 404, "not_found", "route");

    // Delete, prune.
    let (s, _) = delete(&c, "/v1/networks/third").await;
    assert_eq!(s, 200);
    assert_error(
        get(&c, "/v1/networks/third").await,
        404,
        "not_found",
        "third",
    );
    let (s, pruned) = post(&c, "/v1/networks/prune?label=tier=front", json!({})).await;
    assert_eq!((s, pruned.as_array().unwrap().len()), (200, 1));
    let (_, page) = get(&c, "/v1/networks").await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "only db is left: {page}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = Server::start(&[]);
    let c = server.client();
    let cases: [(&[u8], u16); 4] = [
        (b"{\"name\":", 400),
        (b"not json", 400),
        (b"[1,2]", 422),
        (b"{\"name\": null}", 422),
    ];
    for (body, want) in cases {
        let (s, v) = raw_post(&server, "/v1/networks", body).await;
        assert_eq!(s, want, "{}: {v}", String::from_utf8_lossy(body));
        assert!(v["error"]["message"].as_str().is_some());
    }
    let huge = format!(
        "{{\"name\":\"x\",\"labels\":{{\"k\":\"{}\"}}}}",
        "a".repeat(2 << 20)
    );
    let (s, v) = raw_post(&server, "/v1/networks", huge.as_bytes()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // A bounded stream of odd requests never gets a 5xx and leaves the server serving.
    let paths = [
        "/v1/networks",
        "/v1/sandboxes",
        "/v1/endpoints",
        "/v1/services",
        "/v1/networks/prune",
    ];
    let bodies: [&[u8]; 6] = [
        b"",
        b"{}",
        b"{\"name\":\"\"}",
        b"{\"network\":1}",
        b"\xff\xfe",
        b"{\"name\":\"a\",\"ipv4\":{\"subnet\":\"::/0\"}}",
    ];
    for path in paths {
        for body in bodies {
            let (s, _) = raw_post(&server, path, body).await;
            assert!(s < 500, "{path} {body:?} gave {s}");
        }
    }
    let (s, health) = get(&c, "/healthz").await;
    assert_eq!((s, health["status"].as_str()), (200, Some("ok")));
}

async fn raw_post(server: &Server, path: &str, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(&server.socket)
        .await
        .unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer 413 and close before reading everything.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test]
async fn sandboxes_and_endpoints() {
    let server = Server::start(&[]);
    let c = server.client();
    post(
        &c,
        "/v1/networks",
        json!({"name": "front", "ipv4": {"subnet": "10.1.0.0/24"}, "enable_ipv6": true}),
    )
    .await;
    post(
        &c,
        "/v1/networks",
        json!({"name": "back", "ipv4": {"subnet": "10.2.0.0/30"}}),
    )
    .await;

    let (s, a) = post(
        &c,
        "/v1/sandboxes",
        json!({"name": "a", "labels": {"app": "shop"}}),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["netns_owned"], true);
    assert!(a["netns"]
        .as_str()
        .unwrap()
        .ends_with(&format!("run/netns/{}", a["id"].as_str().unwrap())));
    // A namespace made by someone else, to adopt.
    let other = common::Host::new();
    let other_ns = other.netns_path().display().to_string();
    let (s, b) = post(&c, "/v1/sandboxes", json!({"netns": other_ns})).await;
    assert_eq!((s, b["netns_owned"].clone()), (201, json!(false)), "{b}");
    assert!(b["name"].as_str().unwrap().starts_with("sandbox-"));
    assert_error(
        post(&c, "/v1/sandboxes", json!({"netns": other_ns})).await,
        409,
        "netns_in_use",
        &other_ns,
    );
    assert_error(
        post(&c, "/v1/sandboxes", json!({"netns": "/no/such/ns"})).await,
        422,
        "invalid",
        "netns",
    );
    assert_error(
        post(&c, "/v1/sandboxes", json!({"netns": "relative"})).await,
        422,
        "invalid",
        "netns",
    );
    assert_error(
        post(&c, "/v1/sandboxes", json!({"name": "a"})).await,
        409,
        "name_in_use",
        "\"a\"",
    );
    let (_, cc) = post(&c, "/v1/sandboxes", json!({"name": "c"})).await;

    // Connect with dynamic and static addresses, ports, aliases.
    let (s, ea) = post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": "a", "aliases": ["shop"], "ports": [{"host_port": 8080, "container_port": 80}, {"container_port": 53, "protocol": "udp"}], "labels": {"role": "web"}})).await;
    assert_eq!(s, 201, "{ea}");
    assert_eq!(
        (ea["interface"].as_str(), ea["ipv4"].as_str()),
        (Some("eth0"), Some("10.1.0.2"))
    );
    assert_eq!(ea["mac"], "02:42:0a:01:00:02");
    assert_eq!(ea["ipv6"], "fd57:4153:4d00::2");
    assert_eq!(ea["ports"][1]["host_port"], 49153, "ephemeral host port");
    let (s, eb) = post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": b["id"], "ipv4": "10.1.0.77", "mac": "02:00:00:00:00:01"})).await;
    assert_eq!(
        (s, eb["ipv4"].as_str(), eb["mac"].as_str()),
        (201, Some("10.1.0.77"), Some("02:00:00:00:00:01")),
        "{eb}"
    );
    let (s, ea2) = post(
        &c,
        "/v1/endpoints",
        json!({"network": "back", "sandbox": "a"}),
    )
    .await;
    assert_eq!(
        (s, ea2["interface"].as_str(), ea2["ipv4"].as_str()),
        (201, Some("eth1"), Some("10.2.0.2"))
    );

    // Conflicts and invalid values.
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "a"}),
        )
        .await,
        409,
        "already_connected",
        "\"a\"",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ipv4": "10.1.0.77"}),
        )
        .await,
        409,
        "address_in_use",
        "10.1.0.77",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ipv4": "10.9.0.5"}),
        )
        .await,
        422,
        "invalid",
        "ipv4",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ipv4": "10.1.0.1"}),
        )
        .await,
        422,
        "invalid",
        "reserved",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ipv4": "fd00::1"}),
        )
        .await,
        422,
        "invalid",
        "ipv4",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "back", "sandbox": "c", "ipv6": "fd00::1"}),
        )
        .await,
        422,
        "invalid",
        "ipv6",
    );
    assert_error(post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": "c", "ports": [{"host_port": 8080, "container_port": 81}]})).await, 409, "port_in_use", "8080/tcp");
    assert_error(post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": "c", "ports": [{"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 81}]})).await, 409, "port_in_use", "8080");
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ports": [{"container_port": 0}]}),
        )
        .await,
        422,
        "invalid",
        "ports[0].container_port",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "ports": [{"container_port": 70000}]}),
        )
        .await,
        422,
        "invalid",
        "container_port",
    );
    assert_error(post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": "c", "ports": [{"container_port": 1, "protocol": "icmp"}]})).await, 422, "invalid", "protocol");
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "interface": "a/b"}),
        )
        .await,
        422,
        "invalid",
        "interface",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "mac": "01:00:5e:00:00:01"}),
        )
        .await,
        422,
        "invalid",
        "mac",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "c", "aliases": ["no spaces"]}),
        )
        .await,
        422,
        "invalid",
        "aliases[0]",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "nope", "sandbox": "c"}),
        )
        .await,
        404,
        "not_found",
        "network \"nope\"",
    );
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "front", "sandbox": "nope"}),
        )
        .await,
        404,
        "not_found",
        "sandbox \"nope\"",
    );
    assert_error(
        post(&c, "/v1/endpoints", json!({"sandbox": "c"})).await,
        422,
        "invalid",
        "network",
    );
    // The /30 has one host address, taken by a's endpoint.
    assert_error(
        post(
            &c,
            "/v1/endpoints",
            json!({"network": "back", "sandbox": "c"}),
        )
        .await,
        409,
        "address_exhausted",
        "\"back\"",
    );
    // A host IP on a different address than a published wildcard is still a clash; a free port is fine.
    let (s, ec) = post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": "c", "ports": [{"host_ip": "127.0.0.1", "host_port": 9090, "container_port": 80}]})).await;
    assert_eq!(s, 201, "{ec}");

    // Listing with filters.
    let (_, page) = get(&c, "/v1/endpoints?network=front").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let (_, page) = get(&c, "/v1/endpoints?sandbox=a").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (_, page) = get(&c, "/v1/endpoints?network=front&sandbox=a&label=role=web").await;
    assert_eq!(page["items"][0]["id"], ea["id"]);
    assert_error(
        get(&c, "/v1/endpoints?network=nope").await,
        404,
        "not_found",
        "nope",
    );
    let (_, detail) = get(&c, "/v1/sandboxes/a").await;
    assert_eq!(detail["endpoints"].as_array().unwrap().len(), 2);

    // A network with endpoints cannot go; disconnect frees the address for reuse.
    assert_error(
        delete(&c, "/v1/networks/back").await,
        409,
        "has_endpoints",
        "\"back\"",
    );
    let ea2_id = ea2["id"].as_str().unwrap();
    let (s, _) = delete(&c, &format!("/v1/endpoints/{}", &ea2_id[..10])).await;
    assert_eq!(s, 200);
    assert_error(
        get(&c, &format!("/v1/endpoints/{ea2_id}")).await,
        404,
        "not_found",
        "endpoint",
    );
    let (s, reused) = post(
        &c,
        "/v1/endpoints",
        json!({"network": "back", "sandbox": "c"}),
    )
    .await;
    assert_eq!(
        (s, reused["ipv4"].as_str()),
        (201, Some("10.2.0.2")),
        "the released address is reused"
    );

    // Deleting a sandbox disconnects its endpoints and frees their ports.
    let (s, gone) = delete(&c, "/v1/sandboxes/a").await;
    assert_eq!((s, gone["endpoints"].as_array().unwrap().len()), (200, 1));
    let (s, _) = post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": cc["id"].as_str().unwrap()[..12], "ports": [{"host_port": 8080, "container_port": 80}]})).await;
    assert_eq!(s, 409, "c is already on front");
    let (_, d) = post(&c, "/v1/sandboxes", json!({"name": "d"})).await;
    let (s, v) = post(&c, "/v1/endpoints", json!({"network": "front", "sandbox": d["name"], "ports": [{"host_port": 8080, "container_port": 80}]})).await;
    assert_eq!(s, 201, "port 8080 was freed with sandbox a: {v}");
    assert_eq!(v["ipv4"], "10.1.0.2", "a's address was freed too");
}

#[tokio::test]
async fn ambiguous_prefixes_and_paging() {
    let server = Server::start(&[]);
    let c = server.client();
    // 17 ids share a first hex digit somewhere (pigeonhole).
    let mut by_first: std::collections::HashMap<char, Vec<String>> = Default::default();
    for i in 0..17 {
        let (s, n) = post(
            &c,
            "/v1/networks",
            json!({"name": format!("n{i:02}"), "ipv4": {"subnet": format!("10.50.{i}.0/24")}}),
        )
        .await;
        assert_eq!(s, 201, "{n}");
        let id = n["id"].as_str().unwrap().to_string();
        by_first
            .entry(id.chars().next().unwrap())
            .or_default()
            .push(id);
    }
    let (first, _) = by_first.iter().find(|(_, ids)| ids.len() > 1).unwrap();
    assert_error(
        get(&c, &format!("/v1/networks/{first}")).await,
        409,
        "ambiguous",
        "more than one network",
    );

    let mut seen = Vec::new();
    let mut path = "/v1/networks?limit=5".to_string();
    loop {
        let (s, page) = get(&c, &path).await;
        assert_eq!(s, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 5);
        seen.extend(
            items
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/networks?limit=5&after={next}"),
            None => break,
        }
    }
    let want: Vec<String> = (0..17).map(|i| format!("n{i:02}")).collect();
    assert_eq!(seen, want, "pages cover every network once, in name order");
    assert_eq!(c.list_all("/v1/networks").await.unwrap().len(), 17);
}

#[tokio::test]
async fn pools_are_configurable_and_exhaustion_names_them() {
    let server = Server::start(&["--default-pool", "base=10.99.0.0/23,size=24"]);
    let c = server.client();
    for want in ["10.99.0.0/24", "10.99.1.0/24"] {
        let (s, n) = post(
            &c,
            "/v1/networks",
            json!({"name": want.replace(['/', '.'], "-")}),
        )
        .await;
        assert_eq!((s, n["ipv4"]["subnet"].as_str()), (201, Some(want)));
    }
    assert_error(
        post(&c, "/v1/networks", json!({"name": "more"})).await,
        409,
        "pool_exhausted",
        "base=10.99.0.0/23,size=24",
    );
    // An explicit subnet still works.
    let (s, _) = post(
        &c,
        "/v1/networks",
        json!({"name": "more", "ipv4": {"subnet": "10.100.0.0/24"}}),
    )
    .await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn tcp_needs_the_token_and_the_socket_does_not() {
    let server = Server::start(&[]);
    let token_file = std::fs::read_to_string(server.dir.join("state/token")).unwrap();
    assert_eq!(token_file.trim(), server.token);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.dir.join("state/token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&server.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);

    // The daemon's loopback is in its host namespace: talk TCP from in there.
    let clients = (
        server.tcp_client(None),
        server.tcp_client(Some("wrong")),
        server.tcp_client(Some(&server.token)),
    );
    let answers = common::in_netns(server.host.netns_path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (none, wrong, good) = clients;
            (
                get(&none, "/v1/networks").await,
                get(&wrong, "/v1/networks").await,
                get(&none, "/healthz").await,
                get(&good, "/v1/networks").await,
            )
        })
    });
    assert_error(answers.0, 401, "unauthorized", "Bearer");
    assert_error(answers.1, 401, "unauthorized", "wrong");
    assert_error(answers.2, 401, "unauthorized", "Bearer");
    assert_eq!(answers.3 .0, 200);
    let (s, _) = get(&server.client(), "/v1/networks").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let server = Server::start(&[]);
    let c = server.client();
    let (s, doc) = get(&c, "/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut documented = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let served = [
        "GET /healthz",
        "GET /metrics",
        "GET /v1/flows",
        "GET /v1/flows/stream",
        "GET /v1/events",
        "GET /v1/openapi.json",
        "POST /v1/firewall/reload",
        "GET /v1/networks",
        "POST /v1/networks",
        "POST /v1/networks/prune",
        "GET /v1/networks/{id}",
        "DELETE /v1/networks/{id}",
        "GET /v1/networks/{id}/names",
        "GET /v1/sandboxes",
        "POST /v1/sandboxes",
        "GET /v1/sandboxes/{id}",
        "DELETE /v1/sandboxes/{id}",
        "GET /v1/endpoints",
        "POST /v1/endpoints",
        "GET /v1/endpoints/{id}",
        "DELETE /v1/endpoints/{id}",
        "PATCH /v1/endpoints/{id}",
        "GET /v1/services",
        "POST /v1/services",
        "GET /v1/services/{id}",
        "DELETE /v1/services/{id}",
        "GET /v1/policies",
        "POST /v1/policies",
        "GET /v1/policies/{id}",
        "DELETE /v1/policies/{id}",
        "POST /v1/policies/{id}/attach",
        "POST /v1/policies/{id}/detach",
        "POST /v1/policies/{id}/dry-run",
        "GET /v1/policies/{id}/counters",
        "GET /v1/ruleset",
    ];
    let served: HashSet<String> = served.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        documented, served,
        "the document lists exactly the served routes"
    );
    // And every documented route is really served (answers something other than "no route").
    for route in &documented {
        if ["GET /v1/events", "GET /v1/flows/stream", "GET /metrics"].contains(&route.as_str()) {
            continue; // a stream, and text: covered by their own tests
        }
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", "does-not-exist");
        let body = (method == "POST").then(|| json!({}));
        let (s, v) = send(&c, method.parse().unwrap(), &path, body).await;
        let no_route = v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no such route"));
        assert!(
            !no_route && s != 405,
            "{route} is documented but not served: {s} {v}"
        );
    }
}

#[tokio::test]
async fn events_stream_every_change() {
    let server = Server::start(&[]);
    let c = server.client();
    let mut events = c.events().await.unwrap();
    post(&c, "/v1/networks", json!({"name": "ev"})).await;
    post(&c, "/v1/sandboxes", json!({"name": "s"})).await;
    let (_, e) = post(
        &c,
        "/v1/endpoints",
        json!({"network": "ev", "sandbox": "s"}),
    )
    .await;
    let svc = json!({"name": "web", "network": "ev", "ports": [{"port": 80}]});
    post(&c, "/v1/services", svc).await;
    delete(&c, "/v1/services/web").await;
    delete(&c, &format!("/v1/endpoints/{}", e["id"].as_str().unwrap())).await;
    delete(&c, "/v1/sandboxes/s").await;
    delete(&c, "/v1/networks/ev").await;
    let want = [
        "network.create",
        "sandbox.create",
        "endpoint.connect",
        "service.create",
        "service.delete",
        "endpoint.disconnect",
        "sandbox.delete",
        "network.delete",
    ];
    let mut last_seq = 0;
    for action in want {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await;
        let (name, data) = next
            .expect("an event within 5 s")
            .expect("the stream is open")
            .unwrap();
        assert_eq!(name, action);
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["action"], action);
        assert!(data["seq"].as_u64().unwrap() > last_seq);
        last_seq = data["seq"].as_u64().unwrap();
    }
    // Shutdown ends open event streams rather than hanging on them.
    server.stop();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap();
    assert!(end.is_none_or(|r| r.is_err()));
}

#[tokio::test]
async fn state_survives_a_restart_and_the_dir_is_locked() {
    let server = Server::start(&[]);
    let c = server.client();
    post(
        &c,
        "/v1/networks",
        json!({"name": "keep", "ipv4": {"subnet": "10.3.0.0/24"}, "labels": {"a": "b"}}),
    )
    .await;
    post(&c, "/v1/sandboxes", json!({"name": "s1"})).await;
    post(&c, "/v1/sandboxes", json!({"name": "s2"})).await;
    let (_, e1) = post(&c, "/v1/endpoints", json!({"network": "keep", "sandbox": "s1", "ports": [{"host_port": 7000, "container_port": 80}]})).await;

    // A second daemon on the same state dir refuses to start.
    let second = std::process::Command::new("nsenter")
        .arg(format!("--net={}", server.host.netns_path().display()))
        .args([
            common::BIN,
            "serve",
            "--config",
            "/dev/null",
            "--docker-plugin-socket",
            "off",
            "--state-dir",
        ])
        .arg(server.dir.join("state"))
        .arg("--socket")
        .arg(server.dir.join("other.sock"))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another wasmnet is using this state dir")
    );

    let host = server.stop();
    let server = Server::start_in(host, &[]);
    let c = server.client();
    let (s, n) = get(&c, "/v1/networks/keep").await;
    assert_eq!((s, &n["labels"]["a"]), (200, &json!("b")));
    let (_, e) = get(&c, &format!("/v1/endpoints/{}", e1["id"].as_str().unwrap())).await;
    assert_eq!(e, e1, "the endpoint comes back exactly as created");
    // Allocation after the restart knows what is taken.
    let (_, e2) = post(&c, "/v1/endpoints", json!({"network": "keep", "sandbox": "s2", "ports": [{"host_port": 7000, "container_port": 80}]})).await;
    assert_eq!(e2["error"]["code"], "port_in_use");
    let (_, e2) = post(
        &c,
        "/v1/endpoints",
        json!({"network": "keep", "sandbox": "s2"}),
    )
    .await;
    assert_eq!(e2["ipv4"], "10.3.0.3");
}

#[tokio::test]
async fn hundred_parallel_connects_get_distinct_addresses() {
    let server = Server::start(&[]);
    let c = server.client();
    let (s, _) = post(
        &c,
        "/v1/networks",
        json!({"name": "busy", "ipv4": {"subnet": "10.20.0.0/24"}}),
    )
    .await;
    assert_eq!(s, 201);
    let mut sandboxes = Vec::new();
    for i in 0..100 {
        let (_, sb) = post(&c, "/v1/sandboxes", json!({"name": format!("s{i}")})).await;
        sandboxes.push(sb["id"].as_str().unwrap().to_string());
    }
    let tasks: Vec<_> = sandboxes
        .into_iter()
        .map(|id| {
            let c = c.clone();
            tokio::spawn(async move {
                post(
                    &c,
                    "/v1/endpoints",
                    json!({"network": "busy", "sandbox": id}),
                )
                .await
            })
        })
        .collect();
    let mut addresses = HashSet::new();
    for t in tasks {
        let (s, e) = t.await.unwrap();
        assert_eq!(s, 201, "{e}");
        assert!(
            addresses.insert(e["ipv4"].as_str().unwrap().to_string()),
            "duplicate address {}",
            e["ipv4"]
        );
    }
    assert_eq!(addresses.len(), 100);
    // The database agrees: 100 rows, 100 distinct addresses.
    let url = format!("sqlite://{}?mode=ro", server.database().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT ipv4) FROM endpoints")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (100, 100));
    pool.close().await;
}
