//! Crash safety: 200 random operations with a kill -9 of the daemon at random moments (at
//! least 10, some in the middle of a request), each followed by a restart; then the kernel
//! must match the store, nothing may have leaked, and no address may be taken twice.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Server;
use serde_json::{json, Value};
use wasmnet_web::client::Client;

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn ids(c: &Client, path: &str) -> Vec<String> {
    // Empty when the daemon was killed under us.
    c.list_all(path)
        .await
        .unwrap_or_default()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

/// One random operation; refusals (4xx) are part of the game, and so are dropped connections.
async fn random_op(c: &Client, rng: &mut Rng, n: usize) {
    let networks = ids(c, "/v1/networks").await;
    let sandboxes = ids(c, "/v1/sandboxes").await;
    let endpoints = ids(c, "/v1/endpoints").await;
    let pick = |v: &Vec<String>, r: &mut Rng| v.get(r.below(v.len().max(1))).cloned();
    let _ = match rng.below(10) {
        0 if networks.len() < 4 => c.post("/v1/networks", &json!({"name": format!("n{n}"), "ipv4": {"subnet": format!("10.{}.{}.0/24", 60 + n / 250, n % 250)}})).await,
        1 | 2 if sandboxes.len() < 8 => c.post("/v1/sandboxes", &json!({"name": format!("s{n}")})).await,
        3..=5 => match (pick(&networks, rng), pick(&sandboxes, rng)) {
            (Some(net), Some(sb)) => {
                let ports = if rng.below(3) == 0 { json!([{"container_port": 80}]) } else { json!([]) };
                c.post("/v1/endpoints", &json!({"network": net, "sandbox": sb, "ports": ports})).await
            }
            _ => Ok(Value::Null),
        },
        6 | 7 => match pick(&endpoints, rng) {
            Some(e) => c.delete(&format!("/v1/endpoints/{e}")).await,
            None => Ok(Value::Null),
        },
        8 => match pick(&sandboxes, rng) {
            Some(s) => c.delete(&format!("/v1/sandboxes/{s}")).await,
            None => Ok(Value::Null),
        },
        _ => match pick(&networks, rng) {
            Some(net) => c.delete(&format!("/v1/networks/{net}")).await,
            None => Ok(Value::Null),
        },
    };
}

#[tokio::test]
async fn kill_9_at_random_moments_then_the_kernel_matches_the_store_nftables() {
    chaos("nftables").await
}

#[tokio::test]
async fn kill_9_at_random_moments_then_the_kernel_matches_the_store_iptables() {
    chaos("iptables").await
}

async fn chaos(backend: &str) {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let mut server = Server::start(&["--firewall-backend", backend]);
    let mut kills = 0;
    for n in 0..200 {
        let c = server.client();
        if n % 18 == 17 {
            // Kill while a request is in flight, at a random point of it.
            let busy = c.clone();
            let mut op_rng = Rng(rng.next() | 1);
            let inflight = tokio::spawn(async move { random_op(&busy, &mut op_rng, n).await });
            tokio::time::sleep(Duration::from_micros(rng.below(4000) as u64)).await;
            let host = server.crash();
            let _ = inflight.await;
            kills += 1;
            server = Server::start_in(host, &["--firewall-backend", backend]);
        } else {
            random_op(&c, &mut rng, n).await;
        }
    }
    assert!(kills >= 10, "{kills} kills");
    // One more crash and restart, then compare.
    let host = server.crash();
    let server = Server::start_in(host, &["--firewall-backend", backend]);
    let c = server.client();
    let networks = c.list_all("/v1/networks").await.unwrap();
    let sandboxes = c.list_all("/v1/sandboxes").await.unwrap();
    let endpoints = c.list_all("/v1/endpoints").await.unwrap();

    let mut want: HashSet<String> = networks
        .iter()
        .map(|n| format!("wnbr{}", &n["id"].as_str().unwrap()[..11]))
        .collect();
    want.extend(
        endpoints
            .iter()
            .map(|e| format!("wnv{}", &e["id"].as_str().unwrap()[..12])),
    );
    let have: HashSet<String> = server
        .host
        .links()
        .into_iter()
        .filter(|l| l.starts_with("wn"))
        .collect();
    assert_eq!(have, want, "links match the store (seed {seed})");

    let want_ns: HashSet<String> = sandboxes
        .iter()
        .map(|s| s["netns"].as_str().unwrap().to_string())
        .collect();
    let have_ns: HashSet<String> = server
        .host
        .sandbox_namespaces()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(have_ns, want_ns, "namespaces match the store (seed {seed})");

    let mut seen = HashSet::new();
    for e in &endpoints {
        let key = format!("{} {}", e["network_id"], e["ipv4"]);
        assert!(
            seen.insert(key.clone()),
            "address handed out twice: {key} (seed {seed})"
        );
        let ns = sandboxes
            .iter()
            .find(|s| s["id"] == e["sandbox_id"])
            .unwrap()["netns"]
            .as_str()
            .unwrap()
            .to_string();
        let out = common::net::run_in(
            std::path::Path::new(&ns),
            &[
                "ip",
                "-o",
                "addr",
                "show",
                "dev",
                e["interface"].as_str().unwrap(),
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(e["ipv4"].as_str().unwrap()),
            "endpoint {} is configured in its sandbox: {text} (seed {seed})",
            e["id"]
        );
    }

    let published: usize = endpoints
        .iter()
        .map(|e| e["ports"].as_array().unwrap().len())
        .sum();
    if backend == "nftables" {
        let elements = server
            .host
            .stdout(&["nft", "list", "set", "inet", "wasmnet", "bridges"]);
        for n in &networks {
            assert!(
                elements.contains(&format!("wnbr{}", &n["id"].as_str().unwrap()[..11])),
                "{elements}"
            );
        }
        let map = server
            .host
            .stdout(&["nft", "-j", "list", "map", "inet", "wasmnet", "pub4"]);
        let map: Value = serde_json::from_str(&map).unwrap();
        let count = map["nftables"][1]["map"]["elem"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(
            count, published,
            "every published port and nothing else is in the map (seed {seed})"
        );
    } else {
        let dnat = server
            .host
            .stdout(&["iptables", "-t", "nat", "-S", "WASMNET-DNAT"]);
        assert_eq!(
            dnat.matches("-j DNAT").count(),
            published,
            "one DNAT rule per published port: {dnat} (seed {seed})"
        );
        let forward = server.host.stdout(&["iptables", "-S", "WASMNET-FORWARD"]);
        // Within, the flow log of the drop to other networks, that drop, out.
        assert_eq!(
            forward.matches("-i wnbr").count(),
            4 * networks.len(),
            "four rules per network (seed {seed})"
        );
    }
}
