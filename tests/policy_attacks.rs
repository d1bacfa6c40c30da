//! Attacks on isolation through the policy compiler, end to end in the real kernel: groups
//! that sanitise alike, `same-group` across networks, and answers that used to be ignored
//! silently (each now refused, nothing applied).

mod common;

use common::net::ping;
use common::policy::{api_code, ip, make, member, upload};
use common::Server;
use serde_json::json;

async fn groups_stay_in_their_network_and_apart(backend: &str) {
    let server = Server::start(&["--firewall-backend", backend]);
    let c = server.client();
    for (name, subnet) in [("a", "10.41.0.0/24"), ("b", "10.42.0.0/24")] {
        let body = json!({"name": name, "ipv4": {"subnet": subnet}});
        make(&c, "/v1/networks", body).await;
    }
    let (web_a, _) = member(&c, "web-a", "a", json!({"tier": "web"})).await;
    let (_, e_a2) = member(&c, "web-a2", "a", json!({"tier": "web"})).await;
    let (web_b, e_b) = member(&c, "web-b", "b", json!({"tier": "web"})).await;
    // Sanitised alike (`tier_web`), three different groups.
    let (upper, e_upper) = member(&c, "web-upper", "a", json!({"tier": "Web"})).await;
    let (_, e_accent) = member(&c, "web-accent", "a", json!({"tier": "wéb"})).await;
    assert!(!ping(&web_a, &ip(&e_b)), "Docker isolates networks");

    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({})).await;
    assert!(ping(&web_a, &ip(&e_a2)), "same tier, same network talks");
    assert!(!ping(&web_a, &ip(&e_b)), "a -> b: same tier, other network");
    assert!(
        !ping(&web_b, &ip(&e_a2)),
        "b -> a: same tier, other network"
    );
    assert!(!ping(&web_a, &ip(&e_upper)), "web -> Web");
    assert!(!ping(&upper, &ip(&e_a2)), "Web -> web");
    assert!(!ping(&web_a, &ip(&e_accent)), "web -> wéb");
    let rules = c.get("/v1/ruleset").await.unwrap();
    let text = rules["text"].as_str().unwrap().to_string();
    if backend == "nftables" {
        let sets = text.matches("\tset g_").count();
        assert_eq!(
            sets,
            2 * 3,
            "web, Web and wéb: a set each per family\n{text}"
        );
    }
    c.delete("/v1/policies/tiers?force=true").await.unwrap();
    for s in ["web-a", "web-a2", "web-b", "web-upper", "web-accent"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
}

common::per_backend!(nftables: groups_stay_in_their_network_and_apart);
common::per_backend!(iptables: groups_stay_in_their_network_and_apart);

/// Each answer that used to change what is enforced without a word is refused, naming the
/// policy, the network and the field; the rules in force stay as they were.
#[tokio::test]
async fn fail_open_answers_are_refused_and_change_nothing() {
    let server = Server::start(&[]);
    let c = server.client();
    // Uploaded before its bad networks exist (an upload is tried on the networks there are).
    upload(&c, "sly", "testdata/fail-open").await.unwrap();
    let cases = [
        (
            "missing-network",
            "rule 0: `to` names network \"no-such-network\"",
        ),
        // (One network asked about: the count alone refuses it.)
        ("twice", "decisions for"),
        ("foreign", "names no network"),
        ("snat-v6", "snat fd00:dead::1 is an IPv6 address"),
    ];
    for (i, (attack, _)) in cases.iter().enumerate() {
        let body = json!({"name": attack, "labels": {"attack": attack},
            "ipv4": {"subnet": format!("10.43.{i}.0/24")}});
        make(&c, "/v1/networks", body).await;
    }
    make(
        &c,
        "/v1/networks",
        json!({"name": "fine", "ipv4": {"subnet": "10.43.9.0/24"}}),
    )
    .await;
    let (s1, _) = member(&c, "s1", "fine", json!({})).await;
    let (_, e2) = member(&c, "s2", "fine", json!({})).await;
    let before = c.get("/v1/ruleset").await.unwrap();
    for (attack, says) in cases {
        let r = c
            .post("/v1/policies/sly/attach", &json!({"network": attack}))
            .await;
        let (status, code, message) = api_code(r);
        assert_eq!((status, code.as_str()), (422, "policy_failed"), "{message}");
        assert!(message.contains("policy \"sly\""), "{attack}: {message}");
        assert!(message.contains(says), "{attack}: {message}");
    }
    // Globally attached, the first bad network refuses the whole attach.
    let (status, _, message) = api_code(c.post("/v1/policies/sly/attach", &json!({})).await);
    assert_eq!(status, 422, "{message}");
    let after = c.get("/v1/ruleset").await.unwrap();
    for field in ["generation", "text"] {
        assert_eq!(before[field], after[field], "nothing was applied");
    }
    let p = c.get("/v1/policies/sly").await.unwrap();
    assert_eq!(p["attachments"], json!([]), "{p}");
    assert!(ping(&s1, &ip(&e2)), "still Docker's icc");

    // The same module, on a network it answers well for, is enforced.
    make(&c, "/v1/policies/sly/attach", json!({"network": "fine"})).await;
    assert!(!ping(&s1, &ip(&e2)), "its drop is in force");
    c.delete("/v1/policies/sly?force=true").await.unwrap();
    assert!(ping(&s1, &ip(&e2)));
    for s in ["s1", "s2"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
}

/// The address set named `…_<group>_4` in the ruleset text, with its elements.
fn group_set(ruleset: &serde_json::Value, group: &str) -> Option<String> {
    let text = ruleset["text"].as_str().unwrap();
    let at = text.find(&format!("_{group}_4 {{"))?;
    Some(text[at..at + text[at..].find('}').unwrap()].to_string())
}

/// Relabelling one endpoint classifies that endpoint only: the guest names its group after
/// how many `classify` calls its instance has answered.
#[tokio::test]
async fn a_relabel_classifies_only_that_endpoint() {
    let server = Server::start(&[]);
    let c = server.client();
    let body = json!({"name": "count", "labels": {"count-calls": "1"},
        "ipv4": {"subnet": "10.44.0.0/24"}});
    make(&c, "/v1/networks", body).await;
    upload(&c, "counter", "testdata/amplify").await.unwrap();
    make(
        &c,
        "/v1/policies/counter/attach",
        json!({"network": "count"}),
    )
    .await;
    let mut eps = vec![];
    for s in ["c0", "c1", "c2"] {
        eps.push(member(&c, s, "count", json!({})).await.1);
    }
    let rules = c.get("/v1/ruleset").await.unwrap();
    for (i, e) in eps.iter().enumerate() {
        let set = group_set(&rules, &format!("call{i}")).unwrap();
        assert!(set.contains(&ip(e)), "{set}");
    }
    let id = eps[1]["id"].as_str().unwrap();
    let path = format!("/v1/endpoints/{id}");
    c.patch(&path, &json!({"labels": {"x": "y"}}))
        .await
        .unwrap();
    let rules = c.get("/v1/ruleset").await.unwrap();
    let set = group_set(&rules, "call3").expect("c1 classified again, as the 4th call");
    assert!(set.contains(&ip(&eps[1])), "{set}");
    assert!(
        group_set(&rules, "call4").is_none(),
        "no other endpoint was"
    );
    assert!(group_set(&rules, "call0").unwrap().contains(&ip(&eps[0])));
    assert!(
        group_set(&rules, "call1").is_none(),
        "c1 left its old group"
    );
    c.delete("/v1/policies/counter?force=true").await.unwrap();
    for s in ["c0", "c1", "c2"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
}

/// 1,000 `same-group` rules over 64 groups would be 128,000 firewall rules: the connect is
/// refused with the budget named, and nothing changes; a smaller endpoint still joins.
#[tokio::test]
async fn same_group_amplification_is_refused_by_the_budget() {
    let server = Server::start(&[]);
    let c = server.client();
    let body = json!({"name": "amp", "labels": {"rules": "1000"},
        "ipv4": {"subnet": "10.45.0.0/24"}});
    make(&c, "/v1/networks", body).await;
    upload(&c, "amp", "testdata/amplify").await.unwrap();
    make(&c, "/v1/policies/amp/attach", json!({"network": "amp"})).await;
    let (ok, e1) = member(&c, "small", "amp", json!({"groups": "4"})).await;
    let before = c.get("/v1/ruleset").await.unwrap();
    make(&c, "/v1/sandboxes", json!({"name": "big"})).await;
    let body = json!({"network": "amp", "sandbox": "big", "labels": {"groups": "64"}});
    let (status, code, message) = api_code(c.post("/v1/endpoints", &body).await);
    assert_eq!((status, code.as_str()), (422, "policy_failed"), "{message}");
    assert!(message.contains("policy \"amp\""), "{message}");
    assert!(
        message.contains("more than the budget of 20000"),
        "{message}"
    );
    let after = c.get("/v1/ruleset").await.unwrap();
    for field in ["generation", "text"] {
        assert_eq!(before[field], after[field], "nothing was applied");
    }
    let (_, e2) = member(&c, "small2", "amp", json!({"groups": "4"})).await;
    assert!(ping(&ok, &ip(&e2)), "same groups talk: {}", ip(&e1));
    c.delete("/v1/policies/amp?force=true").await.unwrap();
    for s in ["small", "small2", "big"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
}

/// The handle of the daemon's inet table: a whole replacement makes a new one.
fn table_handle(server: &Server) -> String {
    let out = server
        .host
        .stdout(&["nft", "-a", "list", "table", "inet", "wasmnet"]);
    let first = out.lines().next().unwrap_or_default().to_string();
    assert!(first.contains("# handle"), "{out}");
    first
}

/// A join that brings a new group adds its sets and `same-group` rules in one small
/// transaction: the table is not replaced (its handle stays), and the group works at once.
/// The last member leaving takes the group's sets and rules away again.
#[tokio::test]
async fn a_new_group_joins_without_replacing_the_table() {
    let server = Server::start(&[]);
    let c = server.client();
    let body = json!({"name": "grow", "ipv4": {"subnet": "10.46.0.0/24"}});
    make(&c, "/v1/networks", body).await;
    upload(&c, "tiers", "label-isolation").await.unwrap();
    make(&c, "/v1/policies/tiers/attach", json!({"network": "grow"})).await;
    let (web, _) = member(&c, "web", "grow", json!({"tier": "web"})).await;
    let handle = table_handle(&server);
    let (api1, _) = member(&c, "api1", "grow", json!({"tier": "api"})).await;
    let (_, e2) = member(&c, "api2", "grow", json!({"tier": "api"})).await;
    assert!(ping(&api1, &ip(&e2)), "the new group talks");
    assert!(!ping(&web, &ip(&e2)), "and keeps others out");
    // While someone looks at counters the watcher compares the kernel's table with what it
    // should be every second: had the rules added over netlink differed, it would have
    // replaced the table by now.
    c.get("/v1/policies/tiers/counters").await.unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(table_handle(&server), handle, "the table was replaced");
    let chains = server
        .host
        .stdout(&["nft", "list", "table", "inet", "wasmnet"]);
    let added = chains
        .lines()
        .find(|l| l.contains("tier_api") && l.contains("oifname"));
    let added = added.unwrap_or_else(|| panic!("no same-group rule for tier=api:\n{chains}"));
    assert!(
        added.contains("ip daddr @g_") && added.trim_end().ends_with("accept"),
        "{added}"
    );
    let rules = c.get("/v1/ruleset").await.unwrap();
    assert!(rules["text"].as_str().unwrap().contains("_sg0_4"));
    for s in ["api1", "api2"] {
        c.delete(&format!("/v1/sandboxes/{s}")).await.unwrap();
    }
    let listed = server
        .host
        .stdout(&["nft", "list", "table", "inet", "wasmnet"]);
    let api = "tier_api";
    assert!(
        !listed.contains(api),
        "the group left with its last member:\n{listed}"
    );
    c.delete("/v1/policies/tiers?force=true").await.unwrap();
    c.delete("/v1/sandboxes/web").await.unwrap();
}
