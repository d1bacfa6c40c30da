//! Networks, endpoints and policy decisions for the firewall's unit tests.

use std::sync::Arc;

use wasmnet_policy::ir::{self, NetworkDecision, Peer, Rule, Verdict};

use super::policy::{Applied, Plan};
use super::Desired;
use crate::model::{Endpoint, IpConfig, Network, Options, PortMapping, Protocol};

/// A network whose id is `id` 64 times, with its first host as gateway.
pub fn net(id: char, subnet: &str, internal: bool, icc: bool) -> Network {
    let subnet: ipnet::IpNet = subnet.parse().unwrap();
    Network {
        id: id.to_string().repeat(64),
        name: format!("n{id}"),
        driver: Default::default(),
        ipv4: IpConfig {
            gateway: subnet.hosts().next().unwrap(),
            subnet,
            ip_range: None,
        },
        ipv6: None,
        internal,
        labels: Default::default(),
        options: Options::parse([("icc".to_string(), icc.to_string())].into()).unwrap(),
        created: String::new(),
    }
}

pub fn endpoint(net: &Network, ip: &str, ports: Vec<PortMapping>) -> Endpoint {
    Endpoint {
        id: "e".repeat(64),
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        sandbox_id: "s".repeat(64),
        sandbox_name: "s".into(),
        interface: "eth0".into(),
        mac: "02:42:0a:00:00:02".into(),
        ipv4: Some(ip.parse().unwrap()),
        ipv6: Some("fd00::2".parse().unwrap()),
        aliases: vec![],
        ports,
        labels: Default::default(),
        created: String::new(),
    }
}

/// Two published ports: tcp 8080 → 80 on every address, udp 5353 → 53 on 127.0.0.1.
pub fn sample_ports() -> Vec<PortMapping> {
    vec![
        PortMapping {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        },
        PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 5353,
            container_port: 53,
            protocol: Protocol::Udp,
        },
    ]
}

pub fn rule(
    from: Peer,
    to: Peer,
    protocol: Option<ir::Protocol>,
    ports: Vec<(u16, u16)>,
    verdict: Verdict,
) -> Rule {
    Rule {
        from,
        to,
        protocol,
        ports,
        verdict,
        log: false,
    }
}

fn applied(policy: &str, name: &str, audit: bool, decision: NetworkDecision) -> Applied {
    Applied {
        policy_id: policy.into(),
        policy_name: name.into(),
        audit,
        decision,
    }
}

/// Label isolation (`tiers`, policy 7…), then an audited microsegmentation (`micro`, 8…).
fn tiers_then_micro(a: &Network) -> Vec<Applied> {
    let same_tier = rule(Peer::Any, Peer::SameGroup, None, vec![], Verdict::Accept);
    let web_to_db = rule(
        Peer::Group("web".into()),
        Peer::Group("db".into()),
        Some(ir::Protocol::Tcp),
        vec![(5432, 5432)],
        Verdict::Accept,
    );
    let decision = |rules| NetworkDecision {
        network_id: a.id.clone(),
        rules,
        default_internal: Some(Verdict::Drop),
        ..Default::default()
    };
    vec![
        applied(&"7".repeat(64), "tiers", false, decision(vec![same_tier])),
        applied(&"8".repeat(64), "micro", true, decision(vec![web_to_db])),
    ]
}

/// An egress allowlist with SNAT (`egress`, policy 9…).
fn egress(b: &Network) -> Vec<Applied> {
    let rules = vec![
        rule(
            Peer::Any,
            Peer::Any,
            Some(ir::Protocol::Udp),
            vec![(53, 53)],
            Verdict::Accept,
        ),
        rule(
            Peer::Any,
            Peer::Cidr("192.0.2.0/24".parse().unwrap()),
            None,
            vec![],
            Verdict::Accept,
        ),
        rule(
            Peer::Any,
            Peer::Network("na".into()),
            Some(ir::Protocol::Icmp),
            vec![],
            Verdict::Reject,
        ),
    ];
    let decision = NetworkDecision {
        network_id: b.id.clone(),
        rules,
        default_egress: Some(Verdict::Drop),
        snat: Some("198.51.100.7".parse().unwrap()),
        ..Default::default()
    };
    vec![applied(&"9".repeat(64), "egress", false, decision)]
}

/// Two policies on one network (label isolation, then an audited microsegmentation), and an
/// egress allowlist with SNAT on another.
pub fn sample() -> (Vec<Network>, Vec<Endpoint>, Plan) {
    let a = net('a', "10.1.0.0/24", false, true);
    let b = net('b', "10.2.0.0/24", false, true);
    let mut web = endpoint(&a, "10.1.0.2", vec![]);
    web.id = "1".repeat(64);
    let mut db = endpoint(&a, "10.1.0.3", vec![]);
    db.id = "2".repeat(64);
    let mut plan = Plan::default();
    let networks = Arc::make_mut(&mut plan.networks);
    networks.insert(a.id.clone(), tiers_then_micro(&a));
    networks.insert(b.id.clone(), egress(&b));
    let (tiers, micro) = ("7".repeat(64), "8".repeat(64));
    for (e, role) in [(&web, "web"), (&db, "db")] {
        let groups = vec![
            (tiers.clone(), "tier=x".into()),
            (micro.clone(), role.into()),
        ];
        plan.members.insert(e.id.clone(), groups);
    }
    (vec![a, b], vec![web, db], plan)
}

pub fn desired(networks: Vec<Network>, endpoints: Vec<Endpoint>, plan: Plan) -> Desired {
    Desired {
        networks: networks.into_iter().map(Arc::new).collect(),
        endpoints: endpoints.into_iter().map(Arc::new).collect(),
        plan: Arc::new(plan),
        remotes: vec![],
        services: vec![],
    }
}
