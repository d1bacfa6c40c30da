//! The planner over state values built in memory: no store, no kernel.

use super::*;
use crate::model::{Labels, Protocol};

fn state_with(subnet: &str) -> View {
    let mut v = View::default();
    let req: NetworkCreate =
        serde_json::from_value(serde_json::json!({"name": "web", "ipv4": {"subnet": subnet}}))
            .unwrap();
    let n = plan_network(&v, req, &[], &[]).unwrap();
    v.add_network(Arc::new(n));
    for name in ["a", "b"] {
        v.add_sandbox(Arc::new(Sandbox {
            id: ids::new_id(),
            name: name.into(),
            labels: Labels::new(),
            netns: format!("/run/test/{name}"),
            netns_owned: true,
            handoff: false,
            netns_name: None,
            resolv_conf: None,
            created: String::new(),
        }));
    }
    v
}

fn request(sandbox: &str) -> EndpointCreate {
    serde_json::from_value(serde_json::json!({"network": "web", "sandbox": sandbox})).unwrap()
}

fn connect(v: &mut View, req: EndpointCreate) -> Result<Endpoint> {
    let plan = plan_endpoint(v, req)?;
    v.add_endpoint(Arc::new(plan.endpoint.clone()));
    Ok(plan.endpoint)
}

#[test]
fn addresses_are_lowest_free_and_released_ones_are_reused() {
    let mut v = state_with("10.5.0.0/24");
    let a = connect(&mut v, request("a")).unwrap();
    let b = connect(&mut v, request("b")).unwrap();
    assert_eq!(a.ipv4, Some("10.5.0.2".parse().unwrap()));
    assert_eq!(b.ipv4, Some("10.5.0.3".parse().unwrap()));
    assert_eq!(a.interface, "eth0");
    v.remove_endpoint(&a.id);
    let again = plan_endpoint(&v, request("a")).unwrap();
    assert_eq!(again.endpoint.ipv4, a.ipv4);
    assert!(
        again.default_route,
        "the sandbox's first network gives its default route"
    );
}

#[test]
fn a_sandbox_connects_once_per_network() {
    let mut v = state_with("10.5.0.0/24");
    connect(&mut v, request("a")).unwrap();
    let e = plan_endpoint(&v, request("a")).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "already_connected",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_static_address_in_use_or_reserved_is_refused() {
    let mut v = state_with("10.5.0.0/24");
    connect(&mut v, request("a")).unwrap();
    let mut req = request("b");
    req.ipv4 = Some("10.5.0.2".parse().unwrap());
    let e = plan_endpoint(&v, req.clone()).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "address_in_use",
                ..
            }
        ),
        "{e}"
    );
    req.ipv4 = Some("10.5.0.1".parse().unwrap());
    let e = plan_endpoint(&v, req).err().unwrap();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

#[test]
fn host_ports_clash_per_protocol_and_address_and_free_ones_are_picked() {
    let mut v = state_with("10.5.0.0/24");
    let mut req = request("a");
    req.ports = vec!["8080:80".parse().unwrap(), "80".parse().unwrap()];
    let a = connect(&mut v, req).unwrap();
    assert_eq!(a.ports[0].host_port, 8080);
    assert_eq!(a.ports[1].host_port, 49153);
    let mut req = request("b");
    req.ports = vec!["8080:80".parse().unwrap()];
    let e = plan_endpoint(&v, req.clone()).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "port_in_use",
                ..
            }
        ),
        "{e}"
    );
    req.ports[0].protocol = Protocol::Udp;
    assert!(
        plan_endpoint(&v, req).is_ok(),
        "another protocol is another port"
    );
}

#[test]
fn a_network_name_is_taken_once_and_subnets_do_not_overlap() {
    let v = state_with("10.5.0.0/24");
    let req: NetworkCreate = serde_json::from_value(serde_json::json!({"name": "web"})).unwrap();
    let e = plan_network(&v, req, &[], &[]).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "name_in_use",
                ..
            }
        ),
        "{e}"
    );
    let req: NetworkCreate = serde_json::from_value(
        serde_json::json!({"name": "db", "ipv4": {"subnet": "10.5.0.128/25"}}),
    )
    .unwrap();
    let e = plan_network(&v, req, &[], &[]).err().unwrap();
    assert!(
        matches!(
            e,
            Error::Conflict {
                code: "subnet_overlap",
                ..
            }
        ),
        "{e}"
    );
}

fn remap_to(to: u16) -> Vec<(Applied, wasmnet_policy::ir::EndpointDecision)> {
    let applied = Applied {
        policy_id: "p".repeat(64),
        policy_name: "mover".into(),
        audit: false,
        decision: Default::default(),
    };
    let d = wasmnet_policy::ir::EndpointDecision {
        groups: vec![],
        ports: vec![PortDecision::Remap(to)],
    };
    vec![(applied, d)]
}

#[test]
fn remaps_stay_within_the_allowed_ports_and_off_the_daemons_own() {
    let ranges = [1024..=65535];
    let bounds = RemapBounds {
        ranges: &ranges,
        reserved: &[7878],
    };
    let with_port = |spec: &str| {
        let mut req = request("a");
        req.ports = vec![spec.parse().unwrap()];
        req
    };
    let mut req = with_port("8080:80");
    assert!(apply_port_decisions(&mut req, &remap_to(9090), &bounds).unwrap());
    assert_eq!(req.ports[0].host_port, 9090);
    for to in [22, 7878] {
        let mut req = with_port("8080:80");
        let e = apply_port_decisions(&mut req, &remap_to(to), &bounds).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ports[0]: policy \"mover\" remapped"),
            "{e}"
        );
        assert_eq!(req.ports[0].host_port, 8080, "nothing changed");
    }
    let mut req = with_port("80:80");
    assert!(
        apply_port_decisions(&mut req, &remap_to(443), &bounds).is_ok(),
        "a request for a privileged port may be remapped at or above it"
    );
    let mut req = with_port("80:80");
    assert!(apply_port_decisions(&mut req, &remap_to(22), &bounds).is_err());
}
