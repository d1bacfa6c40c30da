//! Real containers on wasmnet through its Docker plugin: Debian's dockerd (20.10) started in a
//! test host's namespace, talking libnetwork's remote driver and IPAM protocol to the daemon
//! on a socket of the test's own in /run/docker/plugins. Reachability, isolation between
//! networks, a published port from outside and from the host, label isolation by driver
//! options, cleanup, and restarts of wasmnet (kill -9) and of dockerd (--live-restore).

mod common;

use common::docker::{start_wasmnet, Dockerd, IMAGE};
use common::net::{outside_world, run_in, HOST_UPLINK};
use common::policy::{make, upload};
use common::{Host, Server};
use serde_json::json;

fn ip_of(d: &Dockerd, container: &str) -> String {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
    let out = d.ok(&["inspect", "-f", format, container]);
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One ping from inside a container.
fn pings(d: &Dockerd, from: &str, to: &str) -> bool {
    let out = d.docker(&["exec", from, "ping", "-c", "1", "-W", "1", to]);
    out.status.success()
}

/// `docker run -d` of the busybox image: `sleep 600`, or httpd serving /www on port 80.
fn run(d: &Dockerd, name: &str, network: &str, publish: Option<&str>) {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    if let Some(p) = publish {
        args.extend(["-p", p, IMAGE, "httpd", "-f", "-p", "80", "-h", "/www"]);
    } else {
        args.extend([IMAGE, "sleep", "600"]);
    }
    d.ok(&args);
}

fn create_network(d: &Dockerd, driver: &str, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["network", "create", "-d", driver, "--ipam-driver", driver];
    args.extend(extra);
    args.push(name);
    d.docker(&args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// What is left of Docker's objects in wasmnet, and of wasmnet's in the kernel.
async fn assert_nothing_left(server: &Server) {
    let c = server.client();
    for path in ["/v1/endpoints", "/v1/sandboxes", "/v1/networks"] {
        let left = c.list_all(path).await.unwrap();
        assert!(left.is_empty(), "{path}: {left:?}");
    }
    let links = server.host.links();
    assert!(
        links.iter().all(|l| !l.starts_with("wn")),
        "links left: {links:?}"
    );
    let rules = c.get("/v1/ruleset").await.unwrap();
    let text = rules["text"].as_str().unwrap();
    assert!(!text.contains("10.88.") && !text.contains("172."), "{text}");
}

#[tokio::test]
async fn docker_runs_containers_on_wasmnet_networks() {
    let (server, driver) = start_wasmnet(Host::new());
    let world = outside_world(&server.host);
    let d = Dockerd::start(&server, false);
    d.import_busybox();
    let c = server.client();

    // Networks: wasmnet's IPAM picks a default pool, or takes the subnet asked for.
    assert!(create_network(&d, &driver, "front", &[]).status.success());
    let back = create_network(&d, &driver, "back", &["--subnet", "10.88.0.0/24"]);
    assert!(back.status.success(), "{}", stderr(&back));
    // Refusals print wasmnet's reason.
    let clash = create_network(&d, &driver, "clash", &["--subnet", "10.88.0.0/25"]);
    assert!(
        stderr(&clash).contains("overlaps 10.88.0.0/24"),
        "{}",
        stderr(&clash)
    );
    let bad = create_network(&d, &driver, "bad", &["-o", "bogus=1"]);
    assert!(stderr(&bad).contains("options.bogus"), "{}", stderr(&bad));
    let nets = c.list_all("/v1/networks").await.unwrap();
    assert_eq!(nets.len(), 2, "{nets:?}");
    assert!(nets
        .iter()
        .all(|n| n["labels"]["wasmnet.origin"] == "docker"));

    run(&d, "c1", "front", None);
    run(&d, "c2", "front", None);
    run(&d, "c3", "back", None);
    run(&d, "web", "front", Some("8080:80"));
    assert!(ip_of(&d, "c3").starts_with("10.88.0."));
    assert!(pings(&d, "c1", &ip_of(&d, "c2")), "same network");
    assert!(
        !pings(&d, "c3", &ip_of(&d, "c1")),
        "another network is isolated"
    );
    // The published port, from the outside world and from the host itself.
    let url = format!("http://{HOST_UPLINK}:8080/");
    let page = run_in(&world.netns_path(), &["curl", "-sS", "-m", "3", &url]);
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("hello from a container"),
        "{page:?}"
    );
    let local = run_in(
        &server.host.netns_path(),
        &["curl", "-sS", "-m", "3", "http://127.0.0.1:8080/"],
    );
    assert!(
        String::from_utf8_lossy(&local.stdout).contains("hello from a container"),
        "{local:?}"
    );
    let eps = c.list_all("/v1/endpoints").await.unwrap();
    let web = eps
        .iter()
        .find(|e| e["ports"].as_array().is_some_and(|p| !p.is_empty()))
        .unwrap();
    assert_eq!(web["ports"][0]["host_port"], 8080);

    // Labels for policies, from driver options.
    let tiers = create_network(&d, &driver, "tiers", &["-o", "wasmnet.name=tiers"]);
    assert!(tiers.status.success(), "{}", stderr(&tiers));
    run(
        &d,
        "w1",
        "name=tiers,driver-opt=wasmnet.label.tier=web",
        None,
    );
    run(
        &d,
        "w2",
        "name=tiers,driver-opt=wasmnet.label.tier=web",
        None,
    );
    run(
        &d,
        "db",
        "name=tiers,driver-opt=wasmnet.label.tier=db",
        None,
    );
    assert!(pings(&d, "w1", &ip_of(&d, "db")), "no policy yet");
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "tiers"})).await;
    assert!(pings(&d, "w1", &ip_of(&d, "w2")), "same tier");
    assert!(!pings(&d, "w1", &ip_of(&d, "db")), "web -> db isolated");
    assert!(!pings(&d, "db", &ip_of(&d, "w2")), "db -> web isolated");
    make(&c, "/v1/policies/tiers/detach", json!({"network": "tiers"})).await;

    // disconnect, rm -f and network rm leave nothing behind.
    d.ok(&["network", "disconnect", "tiers", "w1"]);
    let eps = c.list_all("/v1/endpoints?network=tiers").await.unwrap();
    assert_eq!(eps.len(), 2, "{eps:?}");
    d.ok(&["rm", "-f", "c1", "c2", "c3", "web", "w1", "w2", "db"]);
    d.ok(&["network", "rm", "front", "back", "tiers"]);
    assert_nothing_left(&server).await;
}

#[tokio::test]
async fn containers_keep_their_network_across_restarts() {
    let (server, driver) = start_wasmnet(Host::new());
    let mut d = Dockerd::start(&server, true);
    d.import_busybox();
    assert!(create_network(&d, &driver, "front", &[]).status.success());
    for name in ["c1", "c2", "gone"] {
        run(&d, name, "front", None);
    }
    let (c2, gone) = (ip_of(&d, "c2"), ip_of(&d, "gone"));
    let key = d.ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "c1"]);

    // kill -9 of wasmnet: the containers' traffic flows on.
    let host = server.crash();
    assert!(pings(&d, "c1", &c2), "traffic while wasmnet is down");
    // A container removed meanwhile: Docker tries the plugin for a minute, then goes on.
    d.ok(&["rm", "-f", "gone"]);
    let (server, _) = start_wasmnet(host);
    let c = server.client();
    let eps = c.list_all("/v1/endpoints").await.unwrap();
    assert_eq!(
        eps.len(),
        2,
        "the removed container's endpoint is cleaned up: {eps:?}"
    );
    assert!(eps.iter().all(|e| e["ipv4"] != gone.as_str()));
    assert_eq!(c.list_all("/v1/sandboxes").await.unwrap().len(), 2);
    assert!(server.host.links().iter().all(|l| !l.starts_with("wnd")));
    // Docker's next operations work, and the freed address is given again.
    run(&d, "c3", "front", None);
    assert_eq!(
        ip_of(&d, "c3"),
        gone,
        "the address of the removed container is free again"
    );
    assert!(pings(&d, "c3", &c2));

    // dockerd restarted with --live-restore: the containers stay connected throughout.
    d.stop();
    assert!(
        common::net::ping(std::path::Path::new(&key), &c2),
        "while dockerd is down"
    );
    d.start_again();
    assert!(pings(&d, "c1", &ip_of(&d, "c3")), "after dockerd came back");

    d.ok(&["rm", "-f", "c1", "c2", "c3"]);
    d.ok(&["network", "rm", "front"]);
    assert_nothing_left(&server).await;
}
