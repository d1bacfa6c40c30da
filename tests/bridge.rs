//! The bridge driver on the real kernel: each test is its own "host" namespace with a daemon,
//! sandboxes are real namespaces, and traffic is real (ping, TCP, UDP).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::net::{
    is_tracked, outside_world, ping, tcp_probe, tcp_server, tracked, udp_probe, udp_server,
    HOST_UPLINK, WORLD,
};
use common::{sh, Server};
use serde_json::{json, Value};
use wasmnet_web::client::Client;

async fn make(c: &Client, path: &str, body: Value) -> Value {
    c.post(path, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {path} {body}: {e}"))
}

async fn network(c: &Client, name: &str, subnet: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "ipv4": {"subnet": subnet}});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    make(c, "/v1/networks", body).await
}

/// Creates a sandbox connected to `net`; returns (its namespace, its endpoint).
async fn sandbox_on(c: &Client, name: &str, net: &str, extra: Value) -> (PathBuf, Value) {
    let s = make(c, "/v1/sandboxes", json!({"name": name})).await;
    let mut body = json!({"network": net, "sandbox": name});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let e = make(c, "/v1/endpoints", body).await;
    (PathBuf::from(s["netns"].as_str().unwrap()), e)
}

fn ip(e: &Value) -> String {
    e["ipv4"].as_str().unwrap().to_string()
}

fn ours(links: &[String]) -> Vec<String> {
    links
        .iter()
        .filter(|l| l.starts_with("wn"))
        .cloned()
        .collect()
}

async fn one_network_talks_and_networks_are_isolated(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    network(&c, "a", "10.11.0.0/24", json!({})).await;
    network(&c, "b", "10.12.0.0/24", json!({})).await;
    let (s1, e1) = sandbox_on(&c, "s1", "a", json!({})).await;
    let (s2, e2) = sandbox_on(&c, "s2", "a", json!({})).await;
    let (s3, e3) = sandbox_on(&c, "s3", "b", json!({})).await;

    // The sandbox side: eth0 with the address and MAC wasmnet recorded, default route via the gateway.
    let addr = common::net::stdout_in(&s1, &["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("{}/24", ip(&e1))), "{addr}");
    let link = common::net::stdout_in(&s1, &["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(e1["mac"].as_str().unwrap()), "{link}");
    let routes = common::net::stdout_in(&s1, &["ip", "route"]);
    assert!(
        routes.contains("default via 10.11.0.1 dev eth0"),
        "{routes}"
    );

    // Gateway and endpoints are pinned neighbours: no ARP (and no dynamic table entry) needed.
    let neigh = common::net::stdout_in(&s1, &["ip", "neigh", "show", "10.11.0.1"]);
    assert!(neigh.contains("PERMANENT"), "{neigh}");
    let neigh = server.host.stdout(&["ip", "neigh", "show", &ip(&e1)]);
    assert!(
        neigh.contains("PERMANENT") && neigh.contains(e1["mac"].as_str().unwrap()),
        "{neigh}"
    );
    // ... and its MAC is in the bridge's forwarding table, on its port, for good (externally
    // learnt: never aged out, and not one more static entry for the kernel to walk).
    let veth1 = format!("wnv{}", &e1["id"].as_str().unwrap()[..12]);
    let fdb = server
        .host
        .stdout(&["bridge", "fdb", "show", "dev", &veth1]);
    assert!(
        fdb.contains(e1["mac"].as_str().unwrap()) && fdb.contains("extern_learn"),
        "{fdb}"
    );
    assert!(ping(&s1, &ip(&e2)), "same network");
    assert!(ping(&s2, &ip(&e1)), "same network, back");
    assert!(ping(&s1, "10.11.0.1"), "the gateway");
    assert!(!ping(&s1, &ip(&e3)), "across networks");
    assert!(!ping(&s3, &ip(&e1)), "across networks, back");

    // Disconnect and rm leave nothing behind.
    assert_eq!(
        ours(&server.host.links()).len(),
        5,
        "2 bridges and 3 veths: {:?}",
        server.host.links()
    );
    c.delete(&format!("/v1/endpoints/{}", e2["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert!(!ping(&s1, &ip(&e2)));
    // Reconnected at once (the old veth is still being deleted): its eth0 is free already.
    let again = json!({"network": "a", "sandbox": "s2"});
    let e2b = c.post("/v1/endpoints", &again).await.unwrap();
    assert_eq!(e2b["interface"], "eth0");
    assert!(ping(&s1, &ip(&e2b)), "reconnected");
    c.delete(&format!("/v1/endpoints/{}", e2b["id"].as_str().unwrap()))
        .await
        .unwrap();
    // The retired veths are deleted moments later (links() waits for the reaper).
    assert_eq!(ours(&server.host.links()).len(), 4);
    let s2_links = common::net::stdout_in(&s2, &["ip", "-o", "link"]);
    assert_eq!(
        s2_links.lines().count(),
        1,
        "only lo is left in s2: {s2_links}"
    );
    for s in ["s1", "s2", "s3"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    assert!(
        server.host.sandbox_namespaces().is_empty(),
        "namespaces left: {:?}",
        server.host.sandbox_namespaces()
    );
    assert!(!s1.exists() && !s3.exists());
    for n in ["a", "b"] {
        c.delete(&format!("/v1/networks/{n}")).await.unwrap();
    }
    assert_eq!(ours(&server.host.links()), Vec::<String>::new());
    let _ = e3;
}

async fn icc_false_keeps_endpoints_apart_but_not_from_the_gateway(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    network(
        &c,
        "quiet",
        "10.13.0.0/24",
        json!({"options": {"icc": "false"}}),
    )
    .await;
    let (s1, _) = sandbox_on(&c, "s1", "quiet", json!({})).await;
    let (_, e2) = sandbox_on(&c, "s2", "quiet", json!({})).await;
    assert!(ping(&s1, "10.13.0.1"));
    assert!(!ping(&s1, &ip(&e2)), "icc=false");
    // Whatever br_netfilter says (if this kernel has it, try both settings).
    let brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if server.host.exec(&["test", "-e", brnf]).status.success() {
        for v in ["0", "1"] {
            server
                .host
                .exec(&["sh", "-c", &format!("echo {v} > {brnf}")]);
            if backend == "iptables" {
                // iptables sees bridged frames only through br_netfilter, which wasmnet turns
                // back on within its watch interval.
                eventually("br_netfilter is back on", || {
                    server.host.exec(&["cat", brnf]).stdout == b"1\n"
                });
            }
            assert!(
                !ping(&s1, &ip(&e2)),
                "icc=false with bridge-nf-call-iptables={v}"
            );
        }
    }
}

async fn masquerade_out_and_internal_networks_have_no_way_out(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let world = outside_world(&server.host);
    let c = server.client();
    network(&c, "open", "10.14.0.0/24", json!({})).await;
    network(&c, "closed", "10.15.0.0/24", json!({"internal": true})).await;
    let (open, _) = sandbox_on(&c, "out", "open", json!({})).await;
    let (closed, _) = sandbox_on(&c, "in", "closed", json!({})).await;
    let _srv = tcp_server(world.netns_path(), 9000);

    assert!(ping(&open, WORLD));
    assert_eq!(
        tcp_probe(open.clone(), &format!("{WORLD}:9000")).as_deref(),
        Some(HOST_UPLINK),
        "the world sees the host's address"
    );
    assert!(!ping(&closed, WORLD), "internal: no way out");
    assert_eq!(tcp_probe(closed.clone(), &format!("{WORLD}:9000")), None);
    let routes = common::net::stdout_in(&closed, &["ip", "route"]);
    assert!(
        !routes.contains("default"),
        "an internal network gives no default route: {routes}"
    );
}

async fn published_ports_from_outside_the_host_and_other_sandboxes(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let world = outside_world(&server.host);
    let c = server.client();
    network(&c, "front", "10.16.0.0/24", json!({})).await;
    network(&c, "other", "10.17.0.0/24", json!({})).await;
    let ports = json!({"ports": [{"host_port": 8080, "container_port": 80}, {"host_port": 5353, "container_port": 53, "protocol": "udp"}]});
    let (web, _) = sandbox_on(&c, "web", "front", ports).await;
    let (neighbour, en) = sandbox_on(&c, "neighbour", "front", json!({})).await;
    let (stranger, _) = sandbox_on(&c, "stranger", "other", json!({})).await;
    let _tcp = tcp_server(web.clone(), 80);
    let _udp = udp_server(web.clone(), 53);
    let host = server.host.netns_path();

    // From the outside world, to the host's address.
    assert_eq!(
        tcp_probe(world.netns_path(), &format!("{HOST_UPLINK}:8080")).as_deref(),
        Some(WORLD)
    );
    assert_eq!(
        udp_probe(world.netns_path(), &format!("{HOST_UPLINK}:5353")).as_deref(),
        Some(WORLD)
    );
    // Only the published port: port 80 itself is not reachable from outside.
    assert_eq!(tcp_probe(world.netns_path(), "10.16.0.2:80"), None);
    // From the host itself, on its loopback and on its own address.
    assert!(
        tcp_probe(host.clone(), "127.0.0.1:8080").is_some(),
        "localhost"
    );
    assert!(tcp_probe(host.clone(), &format!("{HOST_UPLINK}:8080")).is_some());
    assert!(udp_probe(host.clone(), &format!("{HOST_UPLINK}:5353")).is_some());
    // From other sandboxes, through the host (hairpin), on the same network and another one.
    assert!(
        tcp_probe(neighbour.clone(), &format!("{HOST_UPLINK}:8080")).is_some(),
        "hairpin, same network"
    );
    assert!(
        tcp_probe(neighbour.clone(), "10.16.0.1:8080").is_some(),
        "via the gateway address"
    );
    assert!(
        tcp_probe(stranger.clone(), &format!("{HOST_UPLINK}:8080")).is_some(),
        "from another network"
    );
    assert!(udp_probe(stranger.clone(), &format!("{HOST_UPLINK}:5353")).is_some());
    // Within the network, straight to the other sandbox: untracked (nftables; no policy
    // governs the network), while the hairpin through the gateway stays tracked.
    assert!(tcp_probe(neighbour.clone(), "10.16.0.2:80").is_some());
    let n = ip(&en);
    if backend == "nftables" {
        assert!(
            !is_tracked(&host, &n, "10.16.0.2", 80),
            "{}",
            tracked(&host)
        );
    }
    assert!(is_tracked(&host, &n, "10.16.0.1", 8080));
    // Disconnecting unpublishes.
    let eps = c.list_all("/v1/endpoints?sandbox=web").await.unwrap();
    c.delete(&format!("/v1/endpoints/{}", eps[0]["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        tcp_probe(world.netns_path(), &format!("{HOST_UPLINK}:8080")),
        None
    );
}

fn nft(server: &Server, args: &[&str]) -> String {
    let out = server.host.exec(&[&["nft"], args].concat());
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits (at most 5 s) until `check` holds.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn foreign_state_is_untouched_and_our_tables_come_back(backend: &str) {
    let host = common::Host::new();
    // Someone else's table and bridge, there before wasmnet.
    sh(&["ip", "netns", "exec", &host.name, "nft", "add table inet foreign; add chain inet foreign c { type filter hook forward priority 10; }; add rule inet foreign c counter"]);
    if backend == "iptables" {
        sh(&[
            "ip",
            "netns",
            "exec",
            &host.name,
            "iptables",
            "-A",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "foreign-rule",
            "-j",
            "ACCEPT",
        ]);
    }
    sh(&[
        "ip",
        "-n",
        &host.name,
        "link",
        "add",
        "foreignbr",
        "type",
        "bridge",
    ]);
    let server = Server::start_in(host, &["--firewall-backend", backend]);
    let c = server.client();
    network(&c, "n", "10.18.0.0/24", json!({})).await;
    let (s1, _) = sandbox_on(
        &c,
        "s1",
        "n",
        json!({"ports": [{"host_port": 8081, "container_port": 80}]}),
    )
    .await;
    let (_, e2) = sandbox_on(&c, "s2", "n", json!({})).await;

    if backend == "nftables" {
        // Flushed by someone: restored on its own.
        nft(&server, &["flush", "ruleset"]);
        eventually("the tables are restored after a flush", || {
            server
                .host
                .exec(&["nft", "list", "chain", "inet", "wasmnet", "forward"])
                .status
                .success()
        });
        let rules = nft(&server, &["list", "chain", "inet", "wasmnet", "forward"]);
        assert!(rules.contains("iifname vmap @from_bridge"), "{rules}");
        let ports = nft(&server, &["list", "map", "inet", "wasmnet", "pub4"]);
        assert!(
            ports.contains("8081"),
            "the endpoint's elements are back too: {ports}"
        );
        // Deleted: restored too; and the manual reload works.
        nft(&server, &["delete", "table", "inet", "wasmnet"]);
        eventually("the table is restored after a delete", || {
            server
                .host
                .exec(&["nft", "list", "table", "inet", "wasmnet"])
                .status
                .success()
        });
        nft(&server, &["flush", "chain", "inet", "wasmnet", "forward"]);
        c.post("/v1/firewall/reload", &json!({})).await.unwrap();
        assert!(nft(&server, &["list", "chain", "inet", "wasmnet", "forward"]).contains("vmap"));
    } else {
        let ours = |server: &Server| server.host.stdout(&["iptables", "-S", "WASMNET-FORWARD"]);
        assert!(ours(&server).contains("-j DROP"));
        let dnat = server
            .host
            .stdout(&["iptables", "-t", "nat", "-S", "WASMNET-DNAT"]);
        assert!(dnat.contains("--dport 8081"), "{dnat}");
        sh(&[
            "ip",
            "netns",
            "exec",
            &server.host.name,
            "iptables",
            "-F",
            "WASMNET-FORWARD",
        ]);
        eventually("the chain is refilled", || {
            ours(&server).contains("-j DROP")
        });
        sh(&[
            "ip",
            "netns",
            "exec",
            &server.host.name,
            "iptables",
            "-D",
            "FORWARD",
            "-j",
            "WASMNET-FORWARD",
        ]);
        c.post("/v1/firewall/reload", &json!({})).await.unwrap();
        let forward = server.host.stdout(&["iptables", "-S", "FORWARD"]);
        assert_eq!(
            forward.matches("-j WASMNET-FORWARD").count(),
            1,
            "exactly one jump: {forward}"
        );
        assert!(
            forward.contains("foreign-rule"),
            "the foreign rule is still there: {forward}"
        );
    }
    assert!(ping(&s1, &ip(&e2)));

    // Our own lifecycle never touched the foreign bridge, tables or rules.
    nft(&server, &["add table inet foreign2"]);
    for s in ["s1", "s2"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    c.delete("/v1/networks/n").await.unwrap();
    assert!(server.host.links().contains(&"foreignbr".to_string()));
    assert!(nft(&server, &["list", "tables"]).contains("table inet foreign2"));
}

async fn restart_after_a_crash_converges_and_removes_strays(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    network(&c, "n", "10.19.0.0/24", json!({})).await;
    let (s1, e1) = sandbox_on(&c, "s1", "n", json!({})).await;
    let (s2, e2) = sandbox_on(&c, "s2", "n", json!({})).await;
    let host = server.crash();
    // Damage while the daemon is down: a lost veth, a stray veth and a stray namespace file.
    let veth = format!("wnv{}", &e2["id"].as_str().unwrap()[..12]);
    sh(&["ip", "-n", &host.name, "link", "del", &veth]);
    sh(&[
        "ip",
        "-n",
        &host.name,
        "link",
        "add",
        "wnv000000000000",
        "type",
        "veth",
        "peer",
        "name",
        "stray-peer",
    ]);
    std::fs::write(host.dir.join("run/netns/stray"), b"").unwrap();
    let server = Server::start_in(host, &["--firewall-backend", backend]);
    assert!(ping(&s1, &ip(&e2)), "the lost veth is back");
    assert!(ping(&s2, &ip(&e1)));
    let links = server.host.links();
    assert!(
        !links.contains(&"wnv000000000000".to_string())
            && !links.contains(&"stray-peer".to_string()),
        "{links:?}"
    );
    assert!(!server.host.dir.join("run/netns/stray").exists());
    let _ = c;
}

async fn adopted_namespaces_are_kept_and_vanished_ones_are_cleaned_up(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    network(&c, "n", "10.20.0.0/24", json!({"options": {"mtu": "1400"}})).await;
    // Adopted: someone else's namespace; wasmnet plumbs it but never deletes it.
    let other = common::Host::new();
    let adopted = make(
        &c,
        "/v1/sandboxes",
        json!({"name": "adopted", "netns": other.netns_path()}),
    )
    .await;
    let e = make(
        &c,
        "/v1/endpoints",
        json!({"network": "n", "sandbox": "adopted"}),
    )
    .await;
    let link = other.stdout(&["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400"), "the network's MTU: {link}");
    assert!(ping(&other.netns_path(), "10.20.0.1"));
    c.delete(&format!(
        "/v1/sandboxes/{}",
        adopted["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert!(
        other.netns_path().exists(),
        "an adopted namespace survives its sandbox"
    );
    assert!(
        !other.exec(&["ip", "link", "show", "eth0"]).status.success(),
        "but wasmnet's interface is gone"
    );
    let _ = e;

    // Vanished: the namespace is removed behind wasmnet's back; deleting the sandbox still
    // cleans the store and the firewall.
    let (gone, e) = sandbox_on(
        &c,
        "gone",
        "n",
        json!({"ports": [{"host_port": 8088, "container_port": 80}]}),
    )
    .await;
    sh(&["umount", gone.to_str().unwrap()]);
    std::fs::remove_file(&gone).unwrap();
    c.delete("/v1/sandboxes/gone").await.unwrap();
    assert!(c
        .get(&format!("/v1/endpoints/{}", e["id"].as_str().unwrap()))
        .await
        .is_err());
    let veth = format!("wnv{}", &e["id"].as_str().unwrap()[..12]);
    assert!(!server.host.links().contains(&veth));
    let rules = if backend == "nftables" {
        server
            .host
            .stdout(&["nft", "list", "map", "inet", "wasmnet", "pub4"])
    } else {
        server
            .host
            .stdout(&["iptables", "-t", "nat", "-S", "WASMNET-DNAT"])
    };
    assert!(
        !rules.contains("8088"),
        "the published port is gone from the firewall: {rules}"
    );
}

// Every test above, once per firewall backend: the same behaviour is required of both.

common::per_backend!(nftables: adopted_namespaces_are_kept_and_vanished_ones_are_cleaned_up, one_network_talks_and_networks_are_isolated, icc_false_keeps_endpoints_apart_but_not_from_the_gateway, masquerade_out_and_internal_networks_have_no_way_out, published_ports_from_outside_the_host_and_other_sandboxes, foreign_state_is_untouched_and_our_tables_come_back, restart_after_a_crash_converges_and_removes_strays);
common::per_backend!(iptables: adopted_namespaces_are_kept_and_vanished_ones_are_cleaned_up, one_network_talks_and_networks_are_isolated, icc_false_keeps_endpoints_apart_but_not_from_the_gateway, masquerade_out_and_internal_networks_have_no_way_out, published_ports_from_outside_the_host_and_other_sandboxes, foreign_state_is_untouched_and_our_tables_come_back, restart_after_a_crash_converges_and_removes_strays);
