//! `/metrics` end to end: counters move with operations, the bearer token guards it over TCP,
//! and a real Prometheus (Debian's) scrapes it and answers a query for one of its series.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::net::ping;
use common::policy::{make, member, upload};
use common::{in_netns, Server};
use serde_json::{json, Value};

/// The value of the sample `series` (name and labels, exactly as exported) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// GET `path` from `addr` (host:port) inside the server's host namespace, HTTP/1.0 over a
/// plain socket: (status, content type, body).
fn http_get(server: &Server, addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
    let addr = addr.to_string();
    let raw = in_netns(server.host.netns_path(), move || {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    });
    let Some(raw) = raw else {
        return (0, String::new(), String::new());
    };
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let ctype = (head.lines())
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// `/metrics` over the unix socket.
async fn scrape(c: &wasmnet_web::client::Client) -> String {
    let (status, body) = c.send(hyper::Method::GET, "/metrics", None).await.unwrap();
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn counters_move_with_operations_and_the_token_guards_them() {
    let server = Server::start(&[]);
    let c = server.client();
    let before = scrape(&c).await;
    let creates =
        "wasmnet_operation_duration_seconds_count{operation=\"network_create\",result=\"ok\"}";
    assert_eq!(sample(&before, creates), None, "{before}");

    make(&c, "/v1/networks", json!({"name": "m1"})).await;
    make(&c, "/v1/networks", json!({"name": "m2"})).await;
    let dup = c.post("/v1/networks", &json!({"name": "m1"})).await;
    assert!(dup.is_err());
    let text = scrape(&c).await;
    assert_eq!(sample(&text, creates), Some(2.0), "{text}");
    let failed =
        "wasmnet_operation_duration_seconds_count{operation=\"network_create\",result=\"error\"}";
    assert_eq!(sample(&text, failed), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "wasmnet_objects{kind=\"networks\"}"),
        Some(2.0)
    );
    let posts =
        "wasmnet_http_requests_total{method=\"POST\",route=\"/v1/networks\",status=\"201\"}";
    assert_eq!(sample(&text, posts), Some(2.0), "{text}");
    let conflicts =
        "wasmnet_http_requests_total{method=\"POST\",route=\"/v1/networks\",status=\"409\"}";
    assert_eq!(sample(&text, conflicts), Some(1.0), "{text}");
    assert!(
        sample(&text, "wasmnet_firewall_changes_total{result=\"ok\"}").unwrap() >= 2.0,
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));

    // Policy calls, by the policy's name and function; attach is an operation too.
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "m1"})).await;
    let web = member(&c, "s1", "m1", json!({"tier": "web"})).await;
    let db = member(&c, "s2", "m1", json!({"tier": "db"})).await;
    let to = db.1["ipv4"].as_str().unwrap().to_string();
    assert!(
        !ping(&web.0, &to),
        "label isolation drops another tier's ping"
    );
    let text = scrape(&c).await;
    let classify = "wasmnet_policy_call_duration_seconds_count{policy=\"tiers\",function=\"classify\",result=\"ok\"}";
    assert!(sample(&text, classify).unwrap_or(0.0) >= 1.0, "{text}");
    let attach = "wasmnet_operation_duration_seconds_count{operation=\"attach\",result=\"ok\"}";
    assert_eq!(sample(&text, attach), Some(1.0), "{text}");
    let connects = "wasmnet_operation_duration_seconds_count{operation=\"connect\",result=\"ok\"}";
    assert_eq!(sample(&text, connects), Some(2.0), "{text}");
    // The kernel's counters of the attached policy, per network (a series each).
    let matched = "wasmnet_policy_matched_packets_total{policy=\"tiers\",network=\"m1\"}";
    assert!(sample(&text, matched).is_some(), "{text}");
    // The kernel's counters are read from a listing at most a second old.
    let dropped = "wasmnet_policy_dropped_packets_total{policy=\"tiers\",network=\"m1\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(&c).await;
        if sample(&text, dropped).unwrap() >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Over TCP: the token is needed, and the content type is OpenMetrics'.
    let addr = server.url.trim_start_matches("http://").to_string();
    let (status, _, body) = http_get(&server, &addr, "/metrics", None);
    assert_eq!(status, 401, "{body}");
    let (status, ctype, body) = http_get(&server, &addr, "/metrics", Some(&server.token));
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.contains(creates), "{body}");
}

/// Debian's Prometheus in the test host's namespace, scraping the server every second.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(server: &Server) -> Prometheus {
        let dir = server.dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let target = server.url.trim_start_matches("http://");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: wasmnet\n    authorization:\n      credentials: {}\n    \
             static_configs:\n      - targets: ['{target}']\n",
            server.token
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", server.host.netns_path().display()))
            .arg("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package) starts");
        Prometheus { child, dir }
    }

    /// The instant query `q` through Prometheus' HTTP API: its result vector.
    fn query(&self, server: &Server, q: &str) -> Option<Vec<Value>> {
        let path: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .finish();
        let path = format!("/api/v1/query?{path}");
        let (status, _, body) = http_get(server, "127.0.0.1:9090", &path, None);
        if status != 200 {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array().cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_metrics() {
    let server = Server::start(&[]);
    let c = server.client();
    make(&c, "/v1/networks", json!({"name": "scraped"})).await;
    let prometheus = Prometheus::start(&server);
    let q = "wasmnet_operation_duration_seconds_count{operation=\"network_create\",result=\"ok\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = None;
    while Instant::now() < deadline {
        if let Some(r) = prometheus.query(&server, q).filter(|r| !r.is_empty()) {
            got = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = got.expect("Prometheus scraped the series within 30 s");
    assert_eq!(result[0]["metric"]["job"], "wasmnet", "{result:?}");
    assert_eq!(result[0]["value"][1], "1", "{result:?}");
    // The target is up (the token was accepted).
    let up = prometheus.query(&server, "up{job=\"wasmnet\"}").unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
}
