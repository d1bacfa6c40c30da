//! The dashboard over HTTP, as a browser speaks it (forms, cookies, redirects), against the real
//! server in its own namespace: access control, CSRF, security headers, inline validation
//! errors, and the create → connect → topology → delete → logout flow.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{in_netns, Server};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request from inside the daemon's namespace; `form` is sent urlencoded.
fn http(
    server: &Server,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Resp {
    let addr = server.url.trim_start_matches("http://").to_string();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req += &format!("Cookie: wasmnet_session={c}\r\n");
    }
    if method == "POST" {
        req += &format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    req += "\r\n";
    req += &body;
    send(server, req)
}

/// A multipart/form-data POST (what a form with a file input sends): text fields, then one
/// file as `module`.
fn upload(
    server: &Server,
    cookie: &str,
    fields: &[(&str, &str)],
    file_name: &str,
    file: &[u8],
) -> Resp {
    let addr = server.url.trim_start_matches("http://");
    let boundary = "----wasmnetTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"module\"; filename=\"{file_name}\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut req = format!(
        "POST /policies HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: wasmnet_session={cookie}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    send(server, req)
}

/// Sends a raw request from inside the daemon's namespace and parses the answer.
fn send(server: &Server, req: impl Into<Vec<u8>>) -> Resp {
    let addr = server.url.trim_start_matches("http://").to_string();
    let req = req.into();
    let raw = in_netns(server.host.netns_path(), move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    });
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A GET with extra raw header lines (the body is left as it comes).
fn http_with(server: &Server, path: &str, extra: &str) -> Resp {
    let addr = server.url.trim_start_matches("http://");
    send(
        server,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"),
    )
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

fn login(server: &Server) -> (String, String) {
    let r = http(server, "POST", "/login", None, &[("token", &server.token)]);
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("wasmnet_session=")
        .to_string();
    let home = http(server, "GET", "/", Some(&session), &[]);
    assert_eq!(home.status, 200);
    (session.clone(), csrf_of(&home.body))
}

#[test]
fn nothing_without_logging_in_and_strict_headers() {
    let server = Server::start(&[]);
    for path in [
        "/",
        "/networks",
        "/sandboxes",
        "/services",
        "/services/x",
        "/topology",
        "/topology.svg",
        "/ruleset",
        "/policies",
        "/policies/x",
        "/ui/events",
    ] {
        let r = http(&server, "GET", path, None, &[]);
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/login")),
            "{path}"
        );
    }
    let r = http(&server, "GET", "/networks", Some("forged"), &[]);
    assert_eq!(r.status, 303, "an unknown session is no session");
    let page = http(&server, "GET", "/login", None, &[]);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(
        page.body.contains("<label for=\"token\">"),
        "labelled field"
    );
    let wrong = http(&server, "POST", "/login", None, &[("token", "nope")]);
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.body.contains("That is not the API token") && wrong.header("set-cookie").is_none()
    );
    let gz = http_with(&server, "/static/app.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(
        gz.header("content-encoding"),
        Some("gzip"),
        "assets are compressed when asked"
    );
    let css = http(&server, "GET", "/static/app.css", None, &[]);
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css"))
    );
    assert!(css.header("cache-control").unwrap().contains("max-age"));
    // The API on the same port still wants its bearer token.
    assert_eq!(http(&server, "GET", "/v1/networks", None, &[]).status, 401);
}

#[test]
fn create_connect_see_and_delete_from_the_browser() {
    let server = Server::start(&[]);
    let (session, csrf) = login(&server);
    let s = Some(session.as_str());

    // Forms without the session's CSRF token are refused.
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[("csrf", "forged"), ("name", "web")],
    );
    assert_eq!(r.status, 403);
    // A validation error is shown inline beside its field, with the API's message.
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[("csrf", &csrf), ("name", "web"), ("subnet", "10.9.0.1/24")],
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"subnet-error\" class=\"error\">ipv4.subnet: 10.9.0.1/24 has host bits set; did you mean 10.9.0.0/24?"), "{}", r.body);
    assert!(r
        .body
        .contains("aria-invalid=\"true\" aria-describedby=\"subnet-error\""));
    assert!(r.body.contains("value=\"web\""), "what was typed is kept");
    // An overlay network on a host without a cluster store: the engine's reason, inline.
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[("csrf", &csrf), ("name", "ov"), ("driver", "overlay")],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("overlay networks need a cluster store"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("<option value=\"overlay\" selected>"),
        "the choice is kept"
    );
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[
            ("csrf", &csrf),
            ("name", "web"),
            ("subnet", "10.9.0.0/24"),
            ("labels", "tier=front"),
        ],
    );
    assert_eq!(r.status, 303);
    let net_url = r.header("location").unwrap().to_string();
    let page = http(&server, "GET", &net_url, s, &[]).body;
    assert!(
        page.contains("Network web") && page.contains("1 used of 254"),
        "{page}"
    );
    assert!(
        page.contains("wnbr"),
        "the rules that concern the network are shown"
    );
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[("csrf", &csrf), ("name", "web")],
    );
    assert!(
        r.body.contains(
            "id=\"name-error\" class=\"error\">network name &#34;web&#34; is already in use"
        ) || r.body.contains("already in use"),
        "{}",
        r.body
    );
    let list = http(&server, "GET", "/networks?q=we", s, &[]).body;
    assert!(list.contains(">web</a>"));
    assert!(!http(&server, "GET", "/networks?q=zzz", s, &[])
        .body
        .contains(">web</a>"));

    let r = http(
        &server,
        "POST",
        "/sandboxes",
        s,
        &[("csrf", &csrf), ("name", "box")],
    );
    assert_eq!(r.status, 303);
    let sb_url = r.header("location").unwrap().to_string();
    let net_id = net_url.trim_start_matches("/networks/");
    let r = http(
        &server,
        "POST",
        &format!("{sb_url}/connect"),
        s,
        &[
            ("csrf", &csrf),
            ("network", net_id),
            ("publish", "nonsense"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"publish-error\""), "{}", r.body);
    let r = http(
        &server,
        "POST",
        &format!("{sb_url}/connect"),
        s,
        &[("csrf", &csrf), ("network", net_id), ("publish", "8080:80")],
    );
    assert_eq!(r.status, 303);
    let page = http(&server, "GET", &sb_url, s, &[]).body;
    assert!(
        page.contains("10.9.0.2") && page.contains("8080&rarr;80/tcp"),
        "{page}"
    );
    // The network's page lists what resolves there.
    let net_page = http(&server, "GET", &net_url, s, &[]).body;
    assert!(
        net_page.contains("<h2>Names</h2>") && net_page.contains("<td>box</td><td>sandbox</td>"),
        "{net_page}"
    );
    let svg = http(&server, "GET", "/topology.svg", s, &[]);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(
        svg.body.contains(">box<")
            && svg.body.contains("web 10.9.0.0/24")
            && svg.body.contains("class=\"edge\""),
        "{}",
        svg.body
    );
    let rules = http(&server, "GET", "/ruleset", s, &[]).body;
    assert!(
        rules.contains("tcp . 8080 : 10.9.0.2 . 80"),
        "the published port is in force"
    );
    assert!(
        rules.contains("chain <code>forward</code>")
            && rules.contains("ct state established,related counter accept")
    );
    assert!(
        rules.contains("<td class=\"num\">0</td>") || rules.contains("<td class=\"num\">1"),
        "the kernel's counters are shown"
    );
    assert!(http(&server, "GET", "/", s, &[])
        .body
        .contains("id=\"count-endpoints\">1<"));

    // Errors are pages with a message, never internals.
    let r = http(&server, "GET", "/networks/nope", s, &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("network &#34;nope&#34; not found") || r.body.contains("not found"));
    let r = http(
        &server,
        "POST",
        &format!("{net_url}/delete"),
        s,
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 409, "the network still has an endpoint");

    let endpoint = page
        .split("/endpoints/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        http(
            &server,
            "POST",
            &format!("/endpoints/{endpoint}/disconnect"),
            s,
            &[("csrf", &csrf)]
        )
        .status,
        303
    );
    assert_eq!(
        http(
            &server,
            "POST",
            &format!("{sb_url}/delete"),
            s,
            &[("csrf", &csrf)]
        )
        .status,
        303
    );
    assert_eq!(
        http(
            &server,
            "POST",
            &format!("{net_url}/delete"),
            s,
            &[("csrf", &csrf)]
        )
        .status,
        303
    );
    assert!(!http(&server, "GET", "/networks", s, &[])
        .body
        .contains(">web</a>"));

    // Logging out ends the session.
    assert_eq!(
        http(&server, "POST", "/logout", s, &[("csrf", &csrf)]).status,
        303
    );
    assert_eq!(http(&server, "GET", "/", s, &[]).status, 303);
}

#[test]
fn upload_preview_attach_detach_and_delete_a_policy() {
    let server = Server::start(&[]);
    let (session, csrf) = login(&server);
    let s = Some(session.as_str());
    let r = http(
        &server,
        "POST",
        "/networks",
        s,
        &[("csrf", &csrf), ("name", "web"), ("subnet", "10.9.0.0/24")],
    );
    assert_eq!(r.status, 303);
    let net_url = r.header("location").unwrap().to_string();
    let net_id = net_url.trim_start_matches("/networks/").to_string();

    let page = http(&server, "GET", "/policies", s, &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<a href=\"/policies\">Policies</a>")
            && page.body.contains("enctype=\"multipart/form-data\"")
            && page.body.contains("<label for=\"module\">")
            && page.body.contains("at most 8.0 MiB"),
        "{}",
        page.body
    );

    // A module that is not one: the engine's message, inline beside the file field; no 5xx.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = upload(
        &server,
        &session,
        &[("csrf", &csrf), ("name", "junk"), ("description", "")],
        "junk.wasm",
        &junk,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body
            .contains("id=\"module-error\" class=\"error\" role=\"alert\">policy &#34;junk&#34;: "),
        "{}",
        r.body
    );
    assert!(r.body.contains("aria-invalid=\"true\""));
    assert!(r.body.contains("value=\"junk\""), "what was typed is kept");
    assert!(!r.body.contains("href=\"/policies/"), "nothing was stored");
    // Without the session's CSRF token: refused, before anything is looked at.
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/dist/label-isolation.wasm"
    ))
    .unwrap();
    let r = upload(
        &server,
        &session,
        &[("csrf", "forged"), ("name", "x")],
        "x.wasm",
        &wasm,
    );
    assert_eq!(r.status, 403);
    // Larger than the limit: an inline error, not a broken connection or a 5xx.
    let big = vec![0u8; 9 << 20];
    let r = upload(
        &server,
        &session,
        &[("csrf", &csrf), ("name", "big")],
        "big.wasm",
        &big,
    );
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("id=\"module-error\"")
            && r.body.contains("larger than 8.0 MiB")
            && r.body.contains("value=\"big\""),
        "{}",
        r.body
    );
    // No file chosen.
    let r = upload(
        &server,
        &session,
        &[("csrf", &csrf), ("name", "none")],
        "",
        b"",
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Choose a policy module"), "{}", r.body);

    // The real thing.
    let r = upload(
        &server,
        &session,
        &[
            ("csrf", &csrf),
            ("name", "isolation"),
            ("description", "tiers apart"),
        ],
        "label-isolation.wasm",
        &wasm,
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let pol_url = r.header("location").unwrap().to_string();
    assert!(pol_url.starts_with("/policies/"), "{pol_url}");
    let pol_id = pol_url.trim_start_matches("/policies/").to_string();
    let page = http(&server, "GET", &pol_url, s, &[]).body;
    assert!(
        page.contains("<h1>Policy isolation</h1>")
            && page.contains("tiers apart")
            && page.contains("wasmnet:policy@0.2")
            && page.contains(&format!("({} bytes)", wasm.len()))
            && page.contains("Not attached"),
        "{page}"
    );
    assert!(page.contains("<option value=\"\" selected>global (every network)</option>"));
    let list = http(&server, "GET", "/policies", s, &[]).body;
    assert!(
        list.contains(&format!("<a href=\"{pol_url}\">isolation</a>"))
            && list.contains("not attached"),
        "{list}"
    );
    let r = upload(
        &server,
        &session,
        &[("csrf", &csrf), ("name", "isolation")],
        "l.wasm",
        &wasm,
    );
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("id=\"name-error\""),
        "a taken name, beside the name field"
    );

    // Preview: the diff, coloured line by line, the form as it was filled, nothing changed.
    let attach_url = format!("{pol_url}/attach");
    let r = http(
        &server,
        "POST",
        &attach_url,
        s,
        &[
            ("csrf", &csrf),
            ("network", &net_id),
            ("priority", "50"),
            ("action", "preview"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("<pre class=\"diff\"")
            && r.body.contains("<span class=\"add\">+")
            && r.body.contains("<span class=\"file\">--- in force")
            && r.body.contains("<span class=\"hunk\">@@")
            && r.body.contains("Nothing has changed yet"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("<option value=\"{net_id}\" selected>web"))
            && r.body.contains("value=\"50\""),
        "the form is pre-filled"
    );
    assert!(http(&server, "GET", &pol_url, s, &[])
        .body
        .contains("Not attached"));
    let r = http(
        &server,
        "POST",
        &attach_url,
        s,
        &[
            ("csrf", &csrf),
            ("network", &net_id),
            ("priority", "high"),
            ("action", "attach"),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains(
            "id=\"priority-error\" class=\"error\">priority: &#34;high&#34; is not a whole number"
        ),
        "{}",
        r.body
    );
    let r = http(
        &server,
        "POST",
        &attach_url,
        s,
        &[
            ("csrf", "forged"),
            ("network", &net_id),
            ("action", "attach"),
        ],
    );
    assert_eq!(r.status, 403);

    // Attach: enforced, listed on the policy's page and the network's.
    let generation = |body: &str| -> u64 {
        let marker = "id=\"generation\">";
        let at = body.find(marker).expect("a generation") + marker.len();
        body[at..].split('<').next().unwrap().parse().unwrap()
    };
    let before = generation(&http(&server, "GET", "/", s, &[]).body);
    let r = http(
        &server,
        "POST",
        &attach_url,
        s,
        &[
            ("csrf", &csrf),
            ("network", &net_id),
            ("priority", "50"),
            ("action", "attach"),
        ],
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some(pol_url.as_str()))
    );
    assert!(
        generation(&http(&server, "GET", "/", s, &[]).body) > before,
        "the ruleset changed"
    );
    let page = http(&server, "GET", &pol_url, s, &[]).body;
    assert!(
        page.contains(&format!("<a href=\"{net_url}\">web</a>"))
            && page.contains("Detach from web")
            && page.contains("Would-drop packets")
            && page.contains("Detach everywhere and delete policy"),
        "{page}"
    );
    let net = http(&server, "GET", &net_url, s, &[]).body;
    assert!(
        net.contains(&format!("<a href=\"{pol_url}\">isolation</a>"))
            && net.contains("to this network"),
        "{net}"
    );
    assert!(http(&server, "GET", "/policies", s, &[])
        .body
        .contains("web, priority 50"));
    let rules = http(&server, "GET", "/ruleset", s, &[]).body;
    assert!(
        rules.contains(&format!("pol_{}", &pol_id[..8])),
        "its chain is in force"
    );

    // Deleting an attached policy needs force.
    let r = http(
        &server,
        "POST",
        &format!("{pol_url}/delete"),
        s,
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 409);
    assert!(r.body.contains("detach it first"), "{}", r.body);

    // Detach; attach globally in audit mode; the network's page says so.
    let r = http(
        &server,
        "POST",
        &format!("{pol_url}/detach"),
        s,
        &[("csrf", &csrf), ("network", &net_id)],
    );
    assert_eq!(r.status, 303);
    assert!(http(&server, "GET", &pol_url, s, &[])
        .body
        .contains("Not attached"));
    assert!(!http(&server, "GET", &net_url, s, &[])
        .body
        .contains("isolation</a>"));
    let r = http(
        &server,
        "POST",
        &attach_url,
        s,
        &[
            ("csrf", &csrf),
            ("network", ""),
            ("priority", "100"),
            ("audit", "true"),
            ("action", "attach"),
        ],
    );
    assert_eq!(r.status, 303);
    let net = http(&server, "GET", &net_url, s, &[]).body;
    assert!(
        net.contains("globally (every network)")
            && net.contains("audit (counts, enforces nothing)"),
        "{net}"
    );
    let page = http(&server, "GET", &pol_url, s, &[]).body;
    assert!(
        page.contains("Detach from global (every network)"),
        "{page}"
    );

    // Delete with force: gone from the list and from the network's page.
    let r = http(
        &server,
        "POST",
        &format!("{pol_url}/delete"),
        s,
        &[("csrf", &csrf), ("force", "true")],
    );
    assert_eq!((r.status, r.header("location")), (303, Some("/policies")));
    assert!(!http(&server, "GET", "/policies", s, &[])
        .body
        .contains(&pol_url));
    assert!(http(&server, "GET", &net_url, s, &[])
        .body
        .contains("No policy governs this network"));
    assert_eq!(http(&server, "GET", &pol_url, s, &[]).status, 404);
}

/// The services pages: the list with the virtual address and backend count, a service's page
/// with its backends, and its delete button (CSRF-checked).
#[test]
fn services_pages_show_backends_and_delete() {
    let server = Server::start(&[]);
    let (session, csrf) = login(&server);
    let s = Some(session.as_str());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let svc = rt.block_on(async {
        let net = serde_json::json!({"name": "front", "ipv4": {"subnet": "10.77.0.0/24"}});
        c.post("/v1/networks", &net).await.unwrap();
        c.post("/v1/sandboxes", &serde_json::json!({"name": "web1"}))
            .await
            .unwrap();
        let e =
            serde_json::json!({"network": "front", "sandbox": "web1", "labels": {"app": "web"}});
        c.post("/v1/endpoints", &e).await.unwrap();
        let body = serde_json::json!({"name": "shop", "network": "front",
            "selector": {"app": "web"}, "ports": [{"port": 80, "target_port": 8080}]});
        c.post("/v1/services", &body).await.unwrap()
    });
    let id = svc["id"].as_str().unwrap();
    let vip = svc["ipv4"].as_str().unwrap();
    let list = http(&server, "GET", "/services", s, &[]);
    assert_eq!(list.status, 200);
    for want in ["shop", vip, "80&rarr;8080/tcp", "front"] {
        assert!(list.body.contains(want), "{want} in {}", list.body);
    }
    let page = http(&server, "GET", &format!("/services/{id}"), s, &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("1 backends") && page.body.contains("web1"),
        "{}",
        page.body
    );
    assert!(page.body.contains("app=web"), "the selector");
    let missing = http(&server, "GET", "/services/nope", s, &[]);
    assert_eq!(missing.status, 404);
    let forged = http(
        &server,
        "POST",
        &format!("/services/{id}/delete"),
        s,
        &[("csrf", "x")],
    );
    assert_eq!(forged.status, 403);
    let gone = http(
        &server,
        "POST",
        &format!("/services/{id}/delete"),
        s,
        &[("csrf", &csrf)],
    );
    assert_eq!(gone.status, 303);
    let list = http(&server, "GET", "/services", s, &[]);
    assert!(!list.body.contains(vip), "{}", list.body);
}

/// The Flows page lists a drop with its filters; the topology shows each endpoint's traffic
/// and draws an edge with a recent drop red; a policy's page lists its recent flows.
#[test]
fn flows_topology_traffic_and_a_policys_recent_drops() {
    use common::policy::{make, member, upload};
    let server = Server::start(&[]);
    let (session, _) = login(&server);
    let s = Some(session.as_str());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = server.client();
    let (sa, sb, web, db) = rt.block_on(async {
        let net =
            |n: &str, subnet: &str| serde_json::json!({"name": n, "ipv4": {"subnet": subnet}});
        make(&c, "/v1/networks", net("a", "10.84.0.0/24")).await;
        make(&c, "/v1/networks", net("b", "10.84.1.0/24")).await;
        make(&c, "/v1/networks", net("app", "10.84.2.0/24")).await;
        let sa = member(&c, "sa", "a", serde_json::json!({})).await;
        let sb = member(&c, "sb", "b", serde_json::json!({})).await;
        let web = member(&c, "web", "app", serde_json::json!({"tier": "web"})).await;
        let db = member(&c, "db", "app", serde_json::json!({"tier": "db"})).await;
        upload(&c, "tiers", "label-isolation").await.unwrap();
        let attach = serde_json::json!({"network": "app"});
        make(&c, "/v1/policies/tiers/attach", attach).await;
        (sa, sb, web, db)
    });
    let ip =
        |e: &(std::path::PathBuf, serde_json::Value)| e.1["ipv4"].as_str().unwrap().to_string();
    assert!(!common::net::ping(&sa.0, &ip(&sb)), "another network");
    assert!(!common::net::ping(&web.0, &ip(&db)), "another tier");
    // The flow log is read asynchronously: a moment for the records to land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        let page = http(&server, "GET", "/flows?sandbox=sa&verdict=dropped", s, &[]);
        if page.body.contains("isolation") || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(page.status, 200);
    let want = format!("sb ({})", ip(&sb));
    assert!(
        page.body.contains(&want) && page.body.contains("<td>isolation</td>"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<td>tiers</td>"),
        "filtered to sa: {}",
        page.body
    );
    let bad = http(&server, "GET", "/flows?sandbox=nope", s, &[]);
    assert_eq!(bad.status, 404);
    assert!(
        bad.body.contains("role=\"alert\"") && bad.body.contains("nope"),
        "{}",
        bad.body
    );

    let svg = http(&server, "GET", "/topology.svg", s, &[]).body;
    assert!(svg.contains("class=\"edge dropped\""), "{svg}");
    let edge = format!("eth0 {} ↑", ip(&sa));
    assert!(
        svg.contains(&edge) && !svg.contains(&format!("{edge}0 B")),
        "{svg}"
    );

    let row = format!("db ({})", ip(&db));
    let policy = loop {
        let page = http(&server, "GET", "/policies/tiers", s, &[]).body;
        if page.contains(&row) || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        policy.contains("Recent flows") && policy.contains(&row),
        "{policy}"
    );
}
