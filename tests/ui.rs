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

/// Sends a raw request from inside the daemon's namespace and parses the answer.
fn send(server: &Server, req: String) -> Resp {
    let addr = server.url.trim_start_matches("http://").to_string();
    let raw = in_netns(server.host.netns_path(), move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
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
        "/topology",
        "/topology.svg",
        "/ruleset",
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
