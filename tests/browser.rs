//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, fantoccini), inside the test host's namespace. Screenshots of every page go
//! to `target/tmp/screenshots/` (and `failure.png` when a step fails).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{in_netns, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

type Step = Result<(), Box<dyn std::error::Error>>;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // Our own child (ip netns exec execs chromedriver): ended by its PID.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn shot(c: &Client, dir: &Path, name: &str) -> Step {
    std::fs::write(dir.join(format!("{name}.png")), c.screenshot().await?)?;
    Ok(())
}

/// Finds an element, waiting (at most 5 s) for the page that has it to load.
async fn find(
    c: &Client,
    at: Locator<'_>,
) -> Result<fantoccini::elements::Element, Box<dyn std::error::Error>> {
    Ok(c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(at)
        .await?)
}

/// Waits (at most 5 s) until the browser is on a page whose path satisfies `ok`.
async fn on_page(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> Step {
    for _ in 0..50 {
        if ok(c.current_url().await?.path())
            && c.execute("return document.readyState", vec![]).await? == "complete"
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("never got to {what}; at {}", c.current_url().await?).into())
}

async fn fill(c: &Client, id: &str, text: &str) -> Step {
    // A page can be replaced between finding a field and typing into it (a navigation still
    // settling): find it again and retry, a few times.
    let mut last = None;
    for _ in 0..5 {
        let field = find(c, Locator::Id(id)).await?;
        match async {
            field.clear().await?;
            field.send_keys(text).await
        }
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("tried").into())
}

async fn submit(c: &Client, form: &str) -> Step {
    click_nav(c, Locator::Css(&format!("{form} button[type=submit]"))).await
}

/// Clicks something that navigates, and waits until the new page has replaced the old one
/// (the clicked element goes stale) and has loaded: no later step can catch the old page.
async fn click_nav(c: &Client, at: Locator<'_>) -> Step {
    let element = find(c, at).await?;
    element.click().await?;
    for _ in 0..50 {
        if element.tag_name().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..50 {
        if c.execute("return document.readyState", vec![]).await? == "complete" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the page never finished loading".into())
}

async fn body(c: &Client) -> Result<String, Box<dyn std::error::Error>> {
    let mut last = None;
    for _ in 0..5 {
        match find(c, Locator::Css("body")).await?.text().await {
            Ok(text) => return Ok(text),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("tried").into())
}

async fn flows(
    c: &Client,
    api: &wasmnet_web::client::Client,
    base: &str,
    token: &str,
    shots: &Path,
) -> Step {
    c.goto(&format!("{base}/")).await?;
    on_page(c, "the login page (not logged in yet)", |p| p == "/login").await?;
    shot(c, shots, "login").await?;
    fill(c, "token", token).await?;
    submit(c, "form").await?;
    on_page(c, "the overview", |p| p == "/").await?;
    assert!(body(c).await?.contains("Overview"));
    shot(c, shots, "overview").await?;

    // Create a network: a validation error inline first, then the real thing.
    c.goto(&format!("{base}/networks")).await?;
    fill(c, "name", "web").await?;
    fill(c, "subnet", "10.9.0.1/24").await?;
    submit(c, "form.create").await?;
    let error = find(c, Locator::Id("subnet-error")).await?.text().await?;
    assert!(error.contains("has host bits set"), "{error}");
    shot(c, shots, "network-error").await?;
    fill(c, "subnet", "10.9.0.0/24").await?;
    submit(c, "form.create").await?;
    on_page(c, "the new network's page", |p| p.starts_with("/networks/")).await?;
    assert!(body(c).await?.contains("1 used of 254"));
    shot(c, shots, "network").await?;

    // Create a sandbox and connect it, publishing a port.
    c.goto(&format!("{base}/sandboxes")).await?;
    fill(c, "name", "box").await?;
    submit(c, "form.create").await?;
    on_page(c, "the new sandbox's page", |p| {
        p.starts_with("/sandboxes/")
    })
    .await?;
    assert!(body(c).await?.contains("Sandbox box"));
    fill(c, "publish", "8080:80").await?;
    submit(c, "form.create").await?;
    find(c, Locator::Css("form[action^='/endpoints/']")).await?;
    let text = body(c).await?;
    assert!(
        text.contains("10.9.0.2") && text.contains("8080→80/tcp"),
        "{text}"
    );
    shot(c, shots, "sandbox").await?;

    // A service in front of it (made over the API: the dashboard shows and deletes them).
    let shop = json!({"name": "shop", "network": "web", "ports": [{"port": 80}]});
    api.post("/v1/services", &shop).await?;
    c.goto(&format!("{base}/services")).await?;
    assert!(body(c).await?.contains("80→80/tcp"));
    click_nav(c, Locator::LinkText("shop")).await?;
    on_page(c, "the service's page", |p| p.starts_with("/services/")).await?;
    let text = body(c).await?;
    assert!(
        text.contains("1 backends") && text.contains("box"),
        "{text}"
    );
    shot(c, shots, "service").await?;
    submit(c, "form[action$='/delete']").await?;
    on_page(c, "the service list", |p| p == "/services").await?;
    assert!(!body(c).await?.contains("shop"));

    // It is in the topology (the picture loads) and in the ruleset.
    c.goto(&format!("{base}/topology")).await?;
    let width = c
        .execute(
            "return document.getElementById('topology').naturalWidth",
            vec![],
        )
        .await?;
    assert!(
        width.as_u64().unwrap_or(0) > 0,
        "the topology picture loaded"
    );
    shot(c, shots, "topology").await?;
    c.goto(&format!("{base}/ruleset")).await?;
    assert!(body(c).await?.contains("tcp . 8080 : 10.9.0.2 . 80"));
    shot(c, shots, "ruleset").await?;
    flows_page(c, api, base, shots).await?;

    // Upload a policy through the file input, preview attaching it to the network (the diff),
    // attach it, and find it on the network's page.
    c.goto(&format!("{base}/policies")).await?;
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/dist");
    // A module that is not a policy: the engine's message beside the file field.
    find(c, Locator::Id("module"))
        .await?
        .send_keys(
            &dist
                .join("testdata/wrong-interface.wasm")
                .display()
                .to_string(),
        )
        .await?;
    fill(c, "name", "wrong").await?;
    submit(c, "form.create").await?;
    let error = find(c, Locator::Id("module-error")).await?.text().await?;
    assert!(error.starts_with("policy \"wrong\": "), "{error}");
    shot(c, shots, "policy-upload-error").await?;
    let wasm = dist.join("label-isolation.wasm");
    find(c, Locator::Id("module"))
        .await?
        .send_keys(&wasm.display().to_string())
        .await?;
    fill(c, "name", "isolation").await?;
    fill(c, "description", "tiers apart").await?;
    shot(c, shots, "policies").await?;
    submit(c, "form.create").await?;
    on_page(c, "the new policy's page", |p| p.starts_with("/policies/")).await?;
    let text = body(c).await?;
    assert!(
        text.contains("Policy isolation") && text.contains("Not attached"),
        "{text}"
    );
    shot(c, shots, "policy").await?;
    find(c, Locator::Id("network"))
        .await?
        .select_by_label("web (10.9.0.0/24)")
        .await?;
    fill(c, "priority", "50").await?;
    click_nav(c, Locator::Id("preview-button")).await?;
    find(c, Locator::Css("pre.diff span.add")).await?;
    let text = body(c).await?;
    assert!(
        text.contains("Nothing has changed yet") && text.contains("Not attached"),
        "{text}"
    );
    let added = c
        .execute(
            "return getComputedStyle(document.querySelector('pre.diff span.add')).backgroundColor",
            vec![],
        )
        .await?;
    assert_eq!(added, "rgb(220, 252, 231)", "added lines are green");
    shot(c, shots, "policy-preview").await?;
    click_nav(c, Locator::Id("attach-button")).await?;
    on_page(c, "the policy's page, attached", |p| {
        p.starts_with("/policies/")
    })
    .await?;
    let text = body(c).await?;
    assert!(text.contains("Detach from web"), "{text}");
    shot(c, shots, "policy-attached").await?;
    c.goto(&format!("{base}/policies")).await?;
    let text = body(c).await?;
    assert!(
        text.contains("1 uploaded") && text.contains("web, priority 50"),
        "{text}"
    );
    shot(c, shots, "policies-list").await?;
    c.goto(&format!("{base}/networks")).await?;
    click_nav(c, Locator::LinkText("web")).await?;
    on_page(c, "the network's page", |p| p.starts_with("/networks/")).await?;
    find(c, Locator::LinkText("isolation")).await?;
    assert!(body(c).await?.contains("to this network"));
    shot(c, shots, "network-policies").await?;

    // Delete everything from the UI.
    c.goto(&format!("{base}/policies")).await?;
    click_nav(c, Locator::LinkText("isolation")).await?;
    on_page(c, "the policy's page", |p| p.starts_with("/policies/")).await?;
    click_nav(c, Locator::Css("form[action$='/delete'] button")).await?;
    on_page(c, "the policy list", |p| p == "/policies").await?;
    assert!(body(c).await?.contains("0 uploaded"));
    c.goto(&format!("{base}/sandboxes")).await?;
    click_nav(c, Locator::LinkText("box")).await?;
    click_nav(c, Locator::Css("form[action^='/endpoints/'] button")).await?;
    on_page(c, "the sandbox again", |p| p.starts_with("/sandboxes/")).await?;
    click_nav(c, Locator::Css("form[action$='/delete'] button")).await?;
    on_page(c, "the sandbox list", |p| p == "/sandboxes").await?;
    c.goto(&format!("{base}/networks")).await?;
    click_nav(c, Locator::LinkText("web")).await?;
    on_page(c, "the network's page", |p| p.starts_with("/networks/")).await?;
    click_nav(c, Locator::Css("form[action$='/delete'] button")).await?;
    on_page(c, "the network list", |p| p == "/networks").await?;
    assert!(!body(c).await?.contains("10.9.0.0/24"));

    // Log out, and be refused.
    click_nav(c, Locator::Css("form.logout button")).await?;
    on_page(c, "the login page after logging out", |p| p == "/login").await?;
    c.goto(&format!("{base}/networks")).await?;
    on_page(c, "the login page (refused)", |p| p == "/login").await?;
    Ok(())
}

/// A ping from `box` to another network, dropped by isolation: on the Flows page, and a
/// second one added live by the page's script.
async fn flows_page(
    c: &Client,
    api: &wasmnet_web::client::Client,
    base: &str,
    shots: &Path,
) -> Step {
    api.post("/v1/networks", &json!({"name": "far"})).await?;
    api.post("/v1/sandboxes", &json!({"name": "remote"}))
        .await?;
    let e = json!({"network": "far", "sandbox": "remote"});
    let to = api.post("/v1/endpoints", &e).await?["ipv4"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let netns = api.get("/v1/sandboxes/box").await?["netns"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ping = || common::net::ping(Path::new(&netns), &to);
    assert!(!ping(), "another network is isolated");
    c.goto(&format!("{base}/flows?sandbox=box")).await?;
    let want = format!("remote ({to})");
    let mut text = body(c).await?;
    for _ in 0..20 {
        if text.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        c.refresh().await?;
        text = body(c).await?;
    }
    assert!(text.contains(&want) && text.contains("isolation"), "{text}");
    let rows = "return document.querySelectorAll('#flows tr').length";
    let before = c.execute(rows, vec![]).await?.as_u64().unwrap_or(0);
    assert!(!ping());
    let mut after = before;
    for _ in 0..40 {
        after = c.execute(rows, vec![]).await?.as_u64().unwrap_or(0);
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        after > before,
        "a new flow appeared live ({before} rows, then {after})"
    );
    shot(c, shots, "flows").await?;
    // The rest of the flow deletes `web`'s sandbox; this one goes now.
    api.delete("/v1/sandboxes/remote").await?;
    api.delete("/v1/networks/far").await?;
    Ok(())
}

#[test]
fn dashboard_flows_in_headless_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
        "install Debian's chromium and chromium-driver (make test does)"
    );
    let server = Server::start(&[]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = server.dir.join("chromium-profile");
    let _driver = Driver(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &server.host.name,
                "chromedriver",
                "--port=9515",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (base, token) = (server.url.clone(), server.token.clone());
    let api = server.client();
    let result = in_netns(server.host.netns_path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut caps = serde_json::Map::new();
            let args = [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,900",
            ];
            let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            args.push(format!("--user-data-dir={}", profile.display()));
            caps.insert(
                "goog:chromeOptions".into(),
                json!({"binary": "/usr/bin/chromium", "args": args}),
            );
            let mut client = None;
            for _ in 0..50 {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect("http://127.0.0.1:9515")
                    .await
                {
                    Ok(c) => {
                        client = Some(c);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            let c = client.expect("chromedriver answers within 10 s");
            let outcome = flows(&c, &api, &base, &token, &shots)
                .await
                .map_err(|e| e.to_string());
            if outcome.is_err() {
                let _ = shot(&c, &shots, "failure").await;
            }
            let _ = c.close().await;
            outcome
        })
    });
    if let Err(e) = result {
        panic!("browser flow failed: {e} (see target/tmp/screenshots/failure.png)");
    }
}
