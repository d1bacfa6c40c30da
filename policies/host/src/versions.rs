//! The contract versions a guest may be built against, behind one interface: a guest of the
//! current version is called as it is; a 0.1 guest gets its inputs converted to the 0.1 types
//! and its answers read back as current ones (0.1 lacks only the `fqdn` peer, so nothing is
//! lost either way).

use wasmtime::component::{Component, Linker};
use wasmtime::Store;

use crate::bindings::v0_1::exports::wasmnet::policy::policy as old;
use crate::bindings::{v0_1, PolicyModule, PolicyModulePre};
use crate::wit;

/// A component ready to instantiate, by the version it exports.
pub(crate) enum Pre<T: 'static> {
    Current(PolicyModulePre<T>),
    V0_1(v0_1::PolicyModulePre<T>),
}

/// A live instance, by version.
pub(crate) enum Instance {
    Current(PolicyModule),
    V0_1(v0_1::PolicyModule),
}

impl<T: 'static> Pre<T> {
    /// `version`: the one `check_contract` found exported (`0.1.x` or the current one).
    pub(crate) fn new(
        linker: &Linker<T>,
        component: &Component,
        version: &str,
    ) -> wasmtime::Result<Pre<T>> {
        let pre = linker.instantiate_pre(component)?;
        Ok(if version.starts_with("0.1.") {
            Pre::V0_1(v0_1::PolicyModulePre::new(pre)?)
        } else {
            Pre::Current(PolicyModulePre::new(pre)?)
        })
    }

    pub(crate) fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Current(p) => Instance::Current(p.instantiate(store)?),
            Pre::V0_1(p) => Instance::V0_1(p.instantiate(store)?),
        })
    }
}

type Answer<T> = wasmtime::Result<Result<T, String>>;

impl Instance {
    pub(crate) fn evaluate<T>(
        &self,
        store: &mut Store<T>,
        networks: &[wit::Network],
    ) -> Answer<Vec<wit::NetworkDecision>> {
        match self {
            Instance::Current(m) => m.wasmnet_policy_policy().call_evaluate(store, networks),
            Instance::V0_1(m) => {
                let networks: Vec<old::Network> = networks.iter().map(network).collect();
                let out = m.wasmnet_policy_policy().call_evaluate(store, &networks)?;
                Ok(out.map(|ds| ds.into_iter().map(decision).collect()))
            }
        }
    }

    pub(crate) fn classify<T>(
        &self,
        store: &mut Store<T>,
        endpoint: &wit::Endpoint,
        net: &wit::Network,
    ) -> Answer<wit::EndpointDecision> {
        match self {
            Instance::Current(m) => m
                .wasmnet_policy_policy()
                .call_classify(store, endpoint, net),
            Instance::V0_1(m) => {
                let (e, n) = (self::endpoint(endpoint), network(net));
                let out = m.wasmnet_policy_policy().call_classify(store, &e, &n)?;
                Ok(out.map(endpoint_decision))
            }
        }
    }
}

fn labels(l: &[wit::Label]) -> Vec<old::Label> {
    l.iter()
        .map(|l| old::Label {
            key: l.key.clone(),
            value: l.value.clone(),
        })
        .collect()
}

fn network(n: &wit::Network) -> old::Network {
    old::Network {
        id: n.id.clone(),
        name: n.name.clone(),
        driver: n.driver.clone(),
        internal: n.internal,
        labels: labels(&n.labels),
        options: labels(&n.options),
        subnets: n.subnets.clone(),
    }
}

fn endpoint(e: &wit::Endpoint) -> old::Endpoint {
    old::Endpoint {
        id: e.id.clone(),
        network_id: e.network_id.clone(),
        sandbox_id: e.sandbox_id.clone(),
        sandbox_name: e.sandbox_name.clone(),
        interface: e.interface.clone(),
        labels: labels(&e.labels),
        ipv4: e.ipv4.clone(),
        ipv6: e.ipv6.clone(),
        mac: e.mac.clone(),
        ports: e
            .ports
            .iter()
            .map(|p| old::PublishedPort {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: protocol_to_old(p.protocol),
            })
            .collect(),
    }
}

fn protocol_to_old(p: wit::Protocol) -> old::Protocol {
    match p {
        wit::Protocol::Tcp => old::Protocol::Tcp,
        wit::Protocol::Udp => old::Protocol::Udp,
        wit::Protocol::Sctp => old::Protocol::Sctp,
        wit::Protocol::Icmp => old::Protocol::Icmp,
    }
}

fn protocol(p: old::Protocol) -> wit::Protocol {
    match p {
        old::Protocol::Tcp => wit::Protocol::Tcp,
        old::Protocol::Udp => wit::Protocol::Udp,
        old::Protocol::Sctp => wit::Protocol::Sctp,
        old::Protocol::Icmp => wit::Protocol::Icmp,
    }
}

fn verdict(v: old::Verdict) -> wit::Verdict {
    match v {
        old::Verdict::Accept => wit::Verdict::Accept,
        old::Verdict::Drop => wit::Verdict::Drop,
        old::Verdict::Reject => wit::Verdict::Reject,
    }
}

fn peer(p: old::Peer) -> wit::Peer {
    match p {
        old::Peer::Any => wit::Peer::Any,
        old::Peer::Group(g) => wit::Peer::Group(g),
        old::Peer::SameGroup => wit::Peer::SameGroup,
        old::Peer::Network(n) => wit::Peer::Network(n),
        old::Peer::Cidr(c) => wit::Peer::Cidr(c),
        old::Peer::World => wit::Peer::World,
    }
}

fn decision(d: old::NetworkDecision) -> wit::NetworkDecision {
    wit::NetworkDecision {
        network_id: d.network_id,
        rules: d
            .rules
            .into_iter()
            .map(|r| wit::Rule {
                from: peer(r.from),
                to: peer(r.to),
                protocol: r.protocol.map(protocol),
                ports: r
                    .ports
                    .into_iter()
                    .map(|p| wit::PortRange {
                        first: p.first,
                        last: p.last,
                    })
                    .collect(),
                verdict: verdict(r.verdict),
                log: r.log,
            })
            .collect(),
        default_internal: d.default_internal.map(verdict),
        default_egress: d.default_egress.map(verdict),
        masquerade: d.masquerade,
        snat: d.snat,
    }
}

fn endpoint_decision(d: old::EndpointDecision) -> wit::EndpointDecision {
    wit::EndpointDecision {
        groups: d.groups,
        ports: d
            .ports
            .into_iter()
            .map(|p| match p {
                old::PortDecision::Honour => wit::PortDecision::Honour,
                old::PortDecision::Refuse(why) => wit::PortDecision::Refuse(why),
                old::PortDecision::Remap(n) => wit::PortDecision::Remap(n),
            })
            .collect(),
    }
}
