//! The engine's operations on a fake kernel and a fake firewall, with a real SQLite store:
//! rollback after a failure at each step, teardown past errors, reconciliation decisions and
//! the one-state rule, without root.

use std::path::PathBuf;
use std::sync::Arc;

use super::Engine;
use crate::config::EngineConfig;
use crate::error::Error;
use crate::firewall::docker::{bridge_name, veth_name};
use crate::firewall::fake::FakeFirewall;
use crate::kernel::fake::{FakeKernel, FakeLink};
use crate::model::{Endpoint, EndpointCreate, NetworkCreate, SandboxCreate};

struct Harness {
    engine: Arc<Engine>,
    kernel: Arc<FakeKernel>,
    fw: Arc<FakeFirewall>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness() -> Harness {
    let dir = std::env::temp_dir().join(format!("wasmnet-unit-{}", &crate::ids::new_id()[..12]));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = EngineConfig::new(dir.join("wasmnet.db"), dir.join("run"));
    let kernel = Arc::new(FakeKernel::new());
    let fw = Arc::new(FakeFirewall::new());
    let engine = Engine::open_with(cfg, kernel.clone(), fw.clone())
        .await
        .unwrap();
    Harness {
        engine,
        kernel,
        fw,
        dir,
    }
}

impl Harness {
    /// A network `web` (10.44.0.0/24) and sandboxes `a` and `b`.
    async fn with_network(self) -> Self {
        let req: NetworkCreate = serde_json::from_value(
            serde_json::json!({"name": "web", "ipv4": {"subnet": "10.44.0.0/24"}}),
        )
        .unwrap();
        self.engine.create_network(req).await.unwrap();
        for name in ["a", "b"] {
            let req = SandboxCreate {
                name: Some(name.into()),
                ..Default::default()
            };
            self.engine.create_sandbox(req).await.unwrap();
        }
        self
    }

    async fn connect(&self, sandbox: &str) -> crate::Result<Arc<Endpoint>> {
        let req: EndpointCreate =
            serde_json::from_value(serde_json::json!({"network": "web", "sandbox": sandbox}))
                .unwrap();
        self.engine.connect(req).await
    }

    async fn stored_endpoints(&self) -> usize {
        self.engine.store.load().await.unwrap().endpoints.len()
    }

    fn veths(&self) -> Vec<String> {
        let links = self.kernel.link_names();
        links.into_iter().filter(|l| l.starts_with("wnv")).collect()
    }
}

#[tokio::test]
async fn a_connect_the_kernel_refuses_leaves_no_row_no_rule_and_no_address_taken() {
    let h = harness().await.with_network().await;
    h.kernel.fail_next("create_veth");
    let e = h.connect("a").await.unwrap_err();
    assert!(matches!(e, Error::Kernel(_)), "{e}");
    assert_eq!(h.stored_endpoints().await, 0);
    assert!(
        h.fw.with(|r| r.endpoints.is_empty()),
        "its firewall elements were undone"
    );
    assert!(h.veths().is_empty());
    assert_eq!(h.engine.counts().endpoints, 0);
    let e = h.connect("a").await.unwrap();
    assert_eq!(
        e.ipv4,
        Some("10.44.0.2".parse().unwrap()),
        "the address was not used up"
    );
}

#[tokio::test]
async fn a_connect_the_firewall_refuses_removes_the_veth_made_meanwhile() {
    let h = harness().await.with_network().await;
    h.fw.fail_next("endpoint");
    let e = h.connect("a").await.unwrap_err();
    assert!(matches!(e, Error::Firewall(_)), "{e}");
    assert!(
        h.veths().is_empty(),
        "the veth made at the same time was removed"
    );
    assert_eq!(h.stored_endpoints().await, 0);
    h.connect("a").await.unwrap();
    assert_eq!(h.veths().len(), 1);
}

#[tokio::test]
async fn a_network_the_firewall_refuses_is_removed_from_the_kernel() {
    let h = harness().await;
    h.fw.fail_next("apply");
    let req: NetworkCreate = serde_json::from_value(serde_json::json!({"name": "web"})).unwrap();
    let e = h.engine.create_network(req.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Firewall(_)), "{e}");
    assert!(h.kernel.link_names().iter().all(|l| !l.starts_with("wnbr")));
    assert!(h.engine.store.load().await.unwrap().networks.is_empty());
    assert_eq!(h.engine.counts().networks, 0);
    let n = h.engine.create_network(req).await.unwrap();
    assert!(h.kernel.link_names().contains(&bridge_name(&n.id)));
    assert!(h.fw.with(|r| r.networks.contains(&n.id)));
}

#[tokio::test]
async fn an_undo_that_fails_is_logged_and_the_reconciler_removes_what_it_left() {
    let h = harness().await.with_network().await;
    h.fw.fail_next("endpoint");
    h.kernel.fail_next("unpin_neighbour");
    let e = h.connect("a").await.unwrap_err();
    assert!(
        matches!(e, Error::Firewall(_)),
        "the first failure is the answer: {e}"
    );
    assert_eq!(h.veths().len(), 1, "the undo could not remove it");
    assert!(h.engine.reconcile().await.is_empty());
    assert!(h.veths().is_empty(), "an orphan veth is removed");
}

#[tokio::test]
async fn a_disconnect_commits_and_keeps_going_past_kernel_errors() {
    let h = harness().await.with_network().await;
    let e = h.connect("a").await.unwrap();
    h.kernel.fail_next("unpin_neighbour");
    h.engine.disconnect(&e.id).await.unwrap();
    assert_eq!(h.stored_endpoints().await, 0);
    assert!(
        h.fw.with(|r| !r.endpoints.contains(&e.id)),
        "its elements went first"
    );
    h.engine.reconcile().await;
    assert!(h.veths().is_empty());
}

#[tokio::test]
async fn reconciliation_removes_strays_and_recreates_what_is_missing() {
    let h = harness().await.with_network().await;
    let e = h.connect("a").await.unwrap();
    let netns_dir = h.dir.join("run/netns");
    let stray_ns = netns_dir.join("0".repeat(64));
    h.kernel.with(|k| {
        k.links.remove(&veth_name(&e.id));
        k.links
            .insert("wnv0123456789ab".into(), FakeLink::Bridge { addrs: vec![] });
        k.links
            .insert("eth7".into(), FakeLink::Bridge { addrs: vec![] });
        k.netns.insert(stray_ns.clone());
    });
    let problems = h.engine.reconcile().await;
    assert!(problems.is_empty(), "{problems:?}");
    let links = h.kernel.link_names();
    assert!(
        links.contains(&veth_name(&e.id)),
        "the lost veth is back: {links:?}"
    );
    assert!(!links.contains(&"wnv0123456789ab".to_string()));
    assert!(
        links.contains(&"eth7".to_string()),
        "what is not wasmnet's stays"
    );
    assert!(h.kernel.with(|k| !k.netns.contains(&stray_ns)));
    assert_eq!(
        h.kernel.with(|k| k.netns.len()),
        2,
        "the sandboxes' namespaces stay"
    );
}

#[tokio::test]
async fn a_reader_keeps_one_consistent_state_while_writers_go_on() {
    let h = harness().await.with_network().await;
    let before = h.engine.state();
    let e = h.connect("a").await.unwrap();
    assert_eq!(before.view().endpoint_count(), 0);
    let spaces = before.view().spaces(&e.network_id).unwrap();
    assert_eq!(
        spaces.v4.next_free(),
        e.ipv4,
        "the old state's address space is untouched"
    );
    let after = h.engine.state();
    assert_eq!(after.view().endpoint_count(), 1);
    assert!(after.generation() > before.generation());
    h.engine.delete_sandbox("a").await.unwrap();
    assert_eq!(after.view().sandboxes().len(), 2);
    assert_eq!(h.engine.state().view().sandboxes().len(), 1);
}

fn shipped(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../policies/dist/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn live(h: &Harness, name: &str) -> bool {
    let state = h.engine.state();
    let l = state.policies().resolve(name).unwrap();
    l.module.as_ref().unwrap().is_live()
}

#[tokio::test]
async fn stored_policies_are_bounded_and_only_attached_ones_keep_an_instance() {
    use super::policies::{MAX_ATTACHED, MAX_POLICIES};
    let h = harness().await.with_network().await;
    let wasm = shipped("docker-default");
    for i in 0..MAX_POLICIES {
        h.engine
            .upload_policy(&format!("p{i}"), "", &wasm)
            .await
            .unwrap();
    }
    let e = h
        .engine
        .upload_policy("one-more", "", &wasm)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "policy_limit",
                ..
            }
        ),
        "{e}"
    );
    assert!(!live(&h, "p0"), "the upload's trial instance was dropped");
    let attach = crate::policy::AttachRequest::default();
    for i in 0..MAX_ATTACHED {
        h.engine
            .attach_policy(&format!("p{i}"), attach.clone())
            .await
            .unwrap();
    }
    assert!(live(&h, "p0"));
    let e = h
        .engine
        .attach_policy("p200", attach.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "attach_limit",
                ..
            }
        ),
        "{e}"
    );
    h.engine.detach_policy("p0", None).await.unwrap();
    assert!(!live(&h, "p0"), "detached everywhere: its instance went");
    h.engine.attach_policy("p200", attach).await.unwrap();
}

#[tokio::test]
async fn only_accepted_modules_are_cached_and_deleted_ones_leave_the_cache() {
    let h = harness().await.with_network().await;
    let cache = h.dir.join("wasmnet.policy-cache");
    let files = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    // Compiles, but traps when evaluated: refused at upload.
    let e = h
        .engine
        .upload_policy("trap", "", &shipped("testdata/trap"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Policy { .. }), "{e}");
    assert_eq!(files(), 0, "a refused upload leaves no artifact");
    let p = h
        .engine
        .upload_policy("docker", "", &shipped("docker-default"))
        .await
        .unwrap();
    assert_eq!(files(), 1);
    h.engine
        .upload_policy("again", "", &shipped("docker-default"))
        .await
        .unwrap();
    h.engine.delete_policy(&p.id, false).await.unwrap();
    assert_eq!(files(), 1, "another policy still has the same module");
    h.engine.delete_policy("again", false).await.unwrap();
    assert_eq!(files(), 0);
}

#[tokio::test]
async fn a_picked_subnet_avoids_the_hosts_own_networks() {
    let h = harness().await;
    // docker0's, as on a host running Docker, and a VPN route into the next pool.
    h.kernel.with(|s| {
        s.host_prefixes = vec![
            "172.17.0.0/16".parse().unwrap(),
            "172.18.4.0/24".parse().unwrap(),
        ]
    });
    let req = |name: &str| NetworkCreate {
        name: name.into(),
        ..Default::default()
    };
    let n = h.engine.create_network(req("first")).await.unwrap();
    assert_eq!(n.ipv4.subnet.to_string(), "172.19.0.0/16");
    let n = h.engine.create_network(req("second")).await.unwrap();
    assert_eq!(n.ipv4.subnet.to_string(), "172.20.0.0/16");
    // An asked-for subnet is the client's business.
    let mut asked = req("asked");
    asked.ipv4.subnet = Some("172.17.0.0/16".parse().unwrap());
    assert!(h.engine.create_network(asked).await.is_ok());
}

#[tokio::test]
async fn a_disconnect_retires_the_veth_and_the_reaper_deletes_it() {
    let h = harness().await.with_network().await;
    let e = h
        .engine
        .connect(EndpointCreate {
            network: "web".into(),
            sandbox: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.engine.disconnect(&e.id).await.unwrap();
    let veth = veth_name(&e.id);
    assert!(!h.kernel.link_names().contains(&veth));
    assert!(
        h.kernel.with(|s| s.retired.contains(&veth)),
        "retired, not yet deleted"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while h.kernel.with(|s| !s.retired.is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the reaper never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A service: its address on the bridge, its backends in the firewall as they connect (an
/// incremental change, not a replacement); a firewall failure leaves no row and no address,
/// and a connect whose service change fails is refused whole.
#[tokio::test]
async fn services_follow_their_backends_and_undo_on_failure() {
    let h = harness().await.with_network().await;
    let with_label = |sandbox: &str| {
        let body =
            serde_json::json!({"network": "web", "sandbox": sandbox, "labels": {"app": "x"}});
        serde_json::from_value::<EndpointCreate>(body).unwrap()
    };
    let a = h.engine.connect(with_label("a")).await.unwrap();
    let req = |name: &str| {
        let body = serde_json::json!({"name": name, "network": "web", "selector": {"app": "x"},
            "ports": [{"port": 80}]});
        serde_json::from_value::<crate::model::ServiceCreate>(body).unwrap()
    };
    let bridge_addrs = |h: &Harness| match h.kernel.with(|k| {
        k.links
            .get(&bridge_name(
                &h.engine
                    .state()
                    .view()
                    .networks()
                    .resolve("web")
                    .unwrap()
                    .id,
            ))
            .cloned()
    }) {
        Some(FakeLink::Bridge { addrs }) => {
            addrs.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>()
        }
        _ => vec![],
    };
    h.fw.fail_next("apply");
    assert!(h.engine.create_service(req("s")).await.is_err());
    assert!(h.engine.store.load_services().await.unwrap().is_empty());
    assert_eq!(
        bridge_addrs(&h),
        ["10.44.0.1"],
        "the address was taken back"
    );
    let s = h.engine.create_service(req("s")).await.unwrap();
    let vip = s.ipv4.unwrap().to_string();
    assert_eq!(bridge_addrs(&h), ["10.44.0.1", vip.as_str()]);
    assert_eq!(h.fw.with(|r| r.services[&s.id].clone()), [a.ipv4.unwrap()]);
    let applies = h.fw.with(|r| r.applies);
    let b = h.engine.connect(with_label("b")).await.unwrap();
    assert_eq!(h.fw.with(|r| r.services[&s.id].len()), 2);
    assert_eq!(
        h.fw.with(|r| (r.applies, r.service_changes)),
        (applies, 1),
        "no replacement"
    );
    h.engine.disconnect(&b.id).await.unwrap();
    h.fw.fail_next("services");
    let refused = h.engine.connect(with_label("b")).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        h.stored_endpoints().await,
        1,
        "no row for the refused connect"
    );
    assert_eq!(h.fw.with(|r| r.services[&s.id].len()), 1);
    h.engine.delete_service("s").await.unwrap();
    assert_eq!(bridge_addrs(&h), ["10.44.0.1"]);
    assert!(h.fw.with(|r| r.services.is_empty()));
}
