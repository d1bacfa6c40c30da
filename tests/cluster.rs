//! Overlay networks across three test hosts sharing a real etcd (Debian's etcd-server). The
//! underlay is a namespace with a bridge; etcd listens there; each host is a namespace wired
//! to it with its own wasmnet and SQLite. Traffic is real (ping across hosts over VXLAN).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Underlay;
use common::net::ping;
use common::{Host, Server};
use serde_json::{json, Value};
use wasmnet_web::client::{Client, ClientError};

async fn make(c: &Client, path: &str, body: Value) -> Value {
    c.post(path, &body)
        .await
        .unwrap_or_else(|e| panic!("POST {path} {body}: {e}"))
}

/// The error code an API call answered with.
fn code(r: Result<Value, ClientError>) -> String {
    match r {
        Err(ClientError::Api { code, status, .. }) => format!("{} {code}", status.as_u16()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it holds or `limit` passes; says whether it held.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn has_network(c: &Client, name: &str) -> bool {
    c.get(&format!("/v1/networks/{name}")).await.is_ok()
}

async fn cluster_connected(c: &Client) -> bool {
    c.get("/healthz")
        .await
        .is_ok_and(|h| h["cluster"]["connected"] == json!(true))
}

/// A sandbox on `net`; returns its namespace and its address.
async fn sandbox_on(c: &Client, name: &str, net: &str) -> (PathBuf, String) {
    let s = make(c, "/v1/sandboxes", json!({"name": name})).await;
    let e = make(c, "/v1/endpoints", json!({"network": net, "sandbox": name})).await;
    (
        PathBuf::from(s["netns"].as_str().unwrap()),
        e["ipv4"].as_str().unwrap().to_string(),
    )
}

/// Pings until it answers (a remote is programmed within milliseconds of its connect; the
/// first ping may meet a sandbox whose interface is still coming up).
fn reaches(from: &Path, ip: &str) -> bool {
    (0..3).any(|_| ping(from, ip))
}

async fn three_hosts_share_overlay_networks(backend: &str) {
    let mut underlay = Underlay::new();
    let h1 = underlay.join(1, backend);
    let h2 = underlay.join(2, backend);
    let h3 = underlay.join(3, backend);
    let (c1, c2, c3) = (h1.client(), h2.client(), h3.client());
    for c in [&c1, &c2, &c3] {
        assert!(eventually(Duration::from_secs(10), async || cluster_connected(c).await).await);
    }

    // One overlay network, created on h1, appears on every host with its VNI and MTU.
    let ov = make(
        &c1,
        "/v1/networks",
        json!({"name": "ov", "driver": "overlay", "ipv4": {"subnet": "10.70.0.0/24"}}),
    )
    .await;
    assert_eq!(ov["options"]["vni"], "4096", "{ov}");
    assert_eq!(ov["options"]["mtu"], "1450", "{ov}");
    for c in [&c2, &c3] {
        assert!(eventually(Duration::from_secs(5), async || has_network(c, "ov").await).await);
    }
    let details = h2.host.stdout(&["ip", "-d", "link", "show", &vxlan(&ov)]);
    assert!(
        details.contains("vxlan id 4096") && details.contains("local 192.0.2.2"),
        "{details}"
    );

    // A sandbox on each host: distinct addresses, and all reach each other over VXLAN.
    let (s1, a1) = sandbox_on(&c1, "s1", "ov").await;
    let (s2, a2) = sandbox_on(&c2, "s2", "ov").await;
    let (s3, a3) = sandbox_on(&c3, "s3", "ov").await;
    assert!(a1 != a2 && a2 != a3 && a1 != a3, "{a1} {a2} {a3}");
    for (from, to) in [(&s1, &a2), (&s1, &a3), (&s2, &a3), (&s3, &a1)] {
        assert!(reaches(from, to), "{} -> {to}", from.display());
    }
    // Names of every host resolve on each (from the cluster's records), at the local gateway.
    let dig = |from: &Path, name: &str| {
        let args = ["dig", "+short", "+time=2", "+tries=1", "@10.70.0.1", name];
        String::from_utf8(common::net::run_in(from, &args).stdout).unwrap()
    };
    assert_eq!(
        dig(&s1, "s2").trim(),
        a2,
        "a name on host 2 resolves on host 1"
    );
    assert_eq!(dig(&s3, "s1.ov").trim(), a1);
    // Nothing floods: the remote's MAC is a static entry towards its host's VTEP.
    let fdb = h1
        .host
        .stdout(&["bridge", "fdb", "show", "dev", &vxlan(&ov)]);
    assert!(fdb.contains("dst 192.0.2.2 self permanent"), "{fdb}");

    // A second overlay network is isolated from the first.
    make(
        &c2,
        "/v1/networks",
        json!({"name": "ov2", "driver": "overlay", "ipv4": {"subnet": "10.71.0.0/24"}}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), async || has_network(&c1, "ov2")
            .await)
        .await
    );
    let (t1, b1) = sandbox_on(&c1, "t1", "ov2").await;
    let (_, b2) = sandbox_on(&c2, "t2", "ov2").await;
    assert!(reaches(&t1, &b2), "ov2 spans hosts too");
    assert!(
        !ping(&s1, &b2),
        "ov cannot reach ov2's sandbox on another host"
    );
    assert!(!ping(&t1, &a2), "nor ov2 ov's");
    let _ = b1;

    a_label_policy_holds_across_hosts(&c1, &c2, &c3).await;

    // Cluster-wide checks: a name, an address held on another host, a network in use.
    let again = json!({"name": "ov", "driver": "overlay", "ipv4": {"subnet": "10.72.0.0/24"}});
    assert_eq!(
        code(c3.post("/v1/networks", &again).await),
        "409 name_in_use"
    );
    make(&c3, "/v1/sandboxes", json!({"name": "dup"})).await;
    let dup = json!({"network": "ov", "sandbox": "dup", "ipv4": a1});
    assert_eq!(
        code(c3.post("/v1/endpoints", &dup).await),
        "409 address_in_use"
    );
    assert_eq!(
        code(c2.delete("/v1/networks/ov2").await),
        "409 has_endpoints"
    );

    // kill -9 one host's wasmnet: the other two keep talking (to it too: its kernel state
    // stays); restarted, it converges and serves again.
    let host3 = h3.crash();
    assert!(reaches(&s1, &a2), "h1 and h2 keep talking");
    assert!(reaches(&s2, &a3), "h3's sandbox is still reachable");
    let h3 = underlay.start(host3, 3, backend);
    let c3 = h3.client();
    assert!(
        eventually(Duration::from_secs(10), async || cluster_connected(&c3)
            .await)
        .await
    );
    let (s3b, a3b) = sandbox_on(&c3, "s3b", "ov").await;
    assert!(
        reaches(&s3b, &a1),
        "a new sandbox on the restarted host reaches h1"
    );
    assert!(reaches(&s1, &a3), "and the old one still answers");

    // etcd stops: traffic continues, reads answer, cluster writes fail with a clear 503,
    // local ones still work.
    underlay.etcd.stop();
    assert!(reaches(&s1, &a2), "the dataplane does not need etcd");
    assert!(
        has_network(&c1, "ov").await,
        "reads answer from local state"
    );
    make(&c1, "/v1/sandboxes", json!({"name": "late"})).await;
    let late = json!({"network": "ov", "sandbox": "late"});
    assert_eq!(
        code(c1.post("/v1/endpoints", &late).await),
        "503 cluster_unavailable"
    );
    let local = json!({"name": "local", "ipv4": {"subnet": "10.73.0.0/24"}});
    make(&c1, "/v1/networks", local).await;
    // Back: hosts reconnect and writes work again.
    underlay.etcd.restart();
    assert!(
        eventually(Duration::from_secs(15), async || cluster_connected(&c1)
            .await)
        .await
    );
    let e = make(&c1, "/v1/endpoints", late).await;
    let late_ip = e["ipv4"].as_str().unwrap().to_string();
    assert!(![&a1, &a2, &a3, &a3b].contains(&&late_ip), "{late_ip}");

    // A sandbox deleted on one host is withdrawn from the others; an overlay network deleted
    // on a third host (once empty everywhere) is gone from all, with its VXLAN devices.
    let mac3b = mac_of(&c3, "s3b").await;
    c3.delete("/v1/sandboxes/s3b").await.unwrap();
    let withdrawn = eventually(Duration::from_secs(5), async || {
        !remote_entry(&h1, &ov, &mac3b)
    })
    .await;
    assert!(withdrawn, "s3b's entry leaves h1's VXLAN device");
    let ov2 = c1.get("/v1/networks/ov2").await.unwrap();
    c1.delete("/v1/sandboxes/t1").await.unwrap();
    c2.delete("/v1/sandboxes/t2").await.unwrap();
    c3.delete("/v1/networks/ov2").await.unwrap();
    for (c, h) in [(&c1, &h1), (&c2, &h2)] {
        assert!(
            eventually(Duration::from_secs(5), async || !has_network(c, "ov2")
                .await)
            .await
        );
        // The other hosts drop the row first, then their devices, behind the answer.
        assert!(
            eventually(Duration::from_secs(5), async || !h
                .host
                .links()
                .contains(&vxlan(&ov2)))
            .await,
            "VXLAN device removed"
        );
    }

    // A host that leaves: after its lease, its endpoints are gone from the others' tables.
    let mac2 = mac_of(&c2, "s2").await;
    let _host2 = h2.crash();
    let gone = eventually(Duration::from_secs(15), async || {
        !remote_entry(&h1, &ov, &mac2)
    })
    .await;
    assert!(
        gone,
        "h2's endpoint withdrawn from h1 after its lease expired"
    );
    let neigh = h1.host.stdout(&["ip", "neigh", "show", "dev", &vxlan(&ov)]);
    assert!(!neigh.contains(&a2), "{neigh}");
}

/// label-isolation, uploaded on one host and attached on another to an overlay network with
/// members on all three: same tier talks across hosts, other tiers do not, wherever they are.
async fn a_label_policy_holds_across_hosts(c1: &Client, c2: &Client, c3: &Client) {
    let net = json!({"name": "apps", "driver": "overlay", "ipv4": {"subnet": "10.74.0.0/24"}});
    make(c1, "/v1/networks", net).await;
    for c in [c2, c3] {
        assert!(
            eventually(Duration::from_secs(5), async || has_network(c, "apps")
                .await)
            .await
        );
    }
    let web1 = member(c1, "web1", json!({"tier": "web"})).await;
    let web2 = member(c2, "web2", json!({"tier": "web"})).await;
    let db3 = member(c3, "db3", json!({"tier": "db"})).await;
    assert!(reaches(&web1.0, &db3.1), "no policy yet: everyone talks");

    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/dist/label-isolation.wasm"
    ))
    .unwrap();
    c2.upload("/v1/policies?name=tiers", "application/wasm", wasm)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), async || c3
            .get("/v1/policies/tiers")
            .await
            .is_ok())
        .await
    );
    make(c3, "/v1/policies/tiers/attach", json!({"network": "apps"})).await;
    let attached = async |c: &Client| {
        c.get("/v1/policies/tiers")
            .await
            .is_ok_and(|p| p["attachments"].as_array().is_some_and(|a| !a.is_empty()))
    };
    for c in [c1, c2] {
        assert!(eventually(Duration::from_secs(5), async || attached(c).await).await);
    }
    let isolated = async |from: &PathBuf, to: &str| {
        eventually(Duration::from_secs(5), async || !ping(from, to)).await
    };
    assert!(
        isolated(&web1.0, &db3.1).await,
        "web on h1 cannot reach db on h3"
    );
    assert!(
        isolated(&db3.0, &web2.1).await,
        "db on h3 cannot reach web on h2"
    );
    assert!(reaches(&web1.0, &web2.1), "web talks to web across hosts");
    assert!(reaches(&web2.0, &web1.1), "both ways");

    // Detached on the host that uploaded it: everyone talks again, everywhere.
    make(c2, "/v1/policies/tiers/detach", json!({"network": "apps"})).await;
    let open = eventually(Duration::from_secs(5), async || ping(&web1.0, &db3.1)).await;
    assert!(open, "detached cluster-wide");
    c1.delete("/v1/policies/tiers").await.unwrap();
    for c in [c2, c3] {
        let gone = async || c.get("/v1/policies/tiers").await.is_err();
        assert!(eventually(Duration::from_secs(5), gone).await);
    }
}

/// A sandbox with endpoint labels on the `apps` network: its namespace and address.
async fn member(c: &Client, name: &str, labels: Value) -> (PathBuf, String) {
    make(c, "/v1/sandboxes", json!({"name": name})).await;
    let body = json!({"network": "apps", "sandbox": name, "labels": labels});
    let e = make(c, "/v1/endpoints", body).await;
    let s = c.get(&format!("/v1/sandboxes/{name}")).await.unwrap();
    (
        PathBuf::from(s["netns"].as_str().unwrap()),
        e["ipv4"].as_str().unwrap().to_string(),
    )
}

/// Whether `server`'s VXLAN device of `network` has a way to `mac`: its own entry (`dst` a
/// VTEP). The bridge may remember the MAC on that port for a while after; that leads nowhere.
fn remote_entry(server: &Server, network: &Value, mac: &str) -> bool {
    server
        .host
        .stdout(&["bridge", "fdb", "show", "dev", &vxlan(network)])
        .lines()
        .any(|l| l.contains(mac) && l.contains("dst"))
}

fn vxlan(network: &Value) -> String {
    format!("wnx{}", &network["id"].as_str().unwrap()[..12])
}

async fn mac_of(c: &Client, sandbox: &str) -> String {
    let s = c.get(&format!("/v1/sandboxes/{sandbox}")).await.unwrap();
    s["endpoints"][0]["mac"].as_str().unwrap().to_string()
}

common::per_backend!(nftables: three_hosts_share_overlay_networks);
common::per_backend!(iptables: three_hosts_share_overlay_networks);

/// etcd over TLS asking for client certificates: a host with the test PKI's certificate joins
/// and creates an overlay network; one trusting the CA but without a certificate cannot, and
/// says so (health, and a 503 on a cluster write).
#[tokio::test]
async fn the_cluster_store_over_tls() {
    let underlay = Underlay::with_tls();
    let h1 = underlay.join(1, "nftables");
    let c1 = h1.client();
    assert!(
        eventually(Duration::from_secs(10), async || cluster_connected(&c1)
            .await)
        .await
    );
    let net = json!({"name": "sec", "driver": "overlay", "ipv4": {"subnet": "10.75.0.0/24"}});
    make(&c1, "/v1/networks", net).await;

    let ca = underlay.pki.as_ref().unwrap().join("ca.crt");
    let ca = ca.display().to_string();
    let h2 = underlay.join_with(2, Host::new(), &["--cluster-ca", &ca]);
    let c2 = h2.client();
    let failed = async || {
        c2.get("/healthz").await.is_ok_and(|h| {
            h["cluster"]["connected"] == json!(false) && h["cluster"]["last_error"].is_string()
        })
    };
    assert!(eventually(Duration::from_secs(10), failed).await);
    let other = json!({"name": "other", "driver": "overlay", "ipv4": {"subnet": "10.76.0.0/24"}});
    assert_eq!(
        code(c2.post("/v1/networks", &other).await),
        "503 cluster_unavailable"
    );
}

#[tokio::test]
async fn overlay_networks_need_a_cluster_and_valid_cluster_settings() {
    let server = Server::start(&[]);
    let c = server.client();
    let body = json!({"name": "ov", "driver": "overlay"});
    let err = c.post("/v1/networks", &body).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { code, message, .. }
            if code == "invalid" && message.contains("--cluster")),
        "{err:?}"
    );
    let vni = json!({"name": "b", "options": {"vni": "5000"}});
    assert_eq!(code(c.post("/v1/networks", &vni).await), "422 invalid");
    drop(server);

    // Refused at start, with a one-line reason: a VTEP address the host does not have, a bad
    // URL, TLS files without TLS.
    for (args, says) in [
        (
            vec![
                "--cluster",
                "etcd://192.0.2.254:2379",
                "--cluster-advertise",
                "192.0.2.77",
            ],
            "is not an address of this host",
        ),
        (
            vec![
                "--cluster",
                "http://x:2379",
                "--cluster-advertise",
                "192.0.2.1",
            ],
            "expected etcd://",
        ),
        (
            vec!["--cluster", "etcd://x:2379"],
            "needs --cluster-advertise",
        ),
        (
            vec![
                "--cluster",
                "etcd://x:2379",
                "--cluster-advertise",
                "192.0.2.1",
                "--cluster-ca",
                "/x",
            ],
            "need an etcds:// URL",
        ),
    ] {
        let out = serve_once(&Host::new(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `wasmnet serve` on `host` with `args`, for a start that must be refused: its output.
fn serve_once(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .arg(format!("--net={}", host.netns_path().display()))
        .arg(common::BIN)
        .arg("serve")
        .arg("--state-dir")
        .arg(host.dir.join("state"))
        .arg("--run-dir")
        .arg(host.dir.join("run"))
        .args(["--config", "/dev/null", "--docker-plugin-socket", "off"])
        .args(["--default-network", "off"])
        .args(args)
        .output()
        .unwrap()
}

/// A node name is one host's: a second host claiming a live one is refused at start, naming
/// the holder; the holder, restarted, reclaims it at once; /healthz shows the name and VTEP.
#[tokio::test]
async fn a_node_name_is_held_by_one_host() {
    let u = Underlay::new();
    let h1 = u.join(1, "nftables");
    let c1 = h1.client();
    assert!(
        eventually(Duration::from_secs(10), async || cluster_connected(&c1)
            .await)
        .await
    );
    let health = c1.get("/healthz").await.unwrap();
    assert_eq!(health["cluster"]["node"], "h1", "{health}");
    assert_eq!(health["cluster"]["vtep"], "192.0.2.1");

    let twin = u.wired(2);
    let cluster = format!("etcd://{}:2379", common::cluster::ETCD_ADDR);
    let args = [
        "--cluster",
        &cluster,
        "--cluster-advertise",
        "192.0.2.2",
        "--node-name",
        "h1",
    ];
    let out = serve_once(&twin, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second h1 started");
    assert!(
        err.contains("held by the live host at 192.0.2.1") && err.contains("--node-name"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // kill -9 and back at once (its old lease is still live): it is the same host, by its VTEP.
    let host = h1.crash();
    let h1 = u.start(host, 1, "nftables");
    let c1 = h1.client();
    assert!(
        eventually(Duration::from_secs(10), async || cluster_connected(&c1)
            .await)
        .await,
        "host 1 reclaims its name at once"
    );
}
