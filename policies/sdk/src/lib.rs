//! Write wasmnet policies in Rust.
//!
//! A policy is a WebAssembly component exporting `wasmnet:policy/policy@0.2.0` (see
//! `policies/wit/policy.wit`). This crate holds the bindings for that contract, re-exports its
//! types at the root, and adds a few helpers so a policy is a handful of lines:
//!
//! ```
//! use wasmnet_policy_sdk::*;
//!
//! struct WebToDb;
//!
//! impl Guest for WebToDb {
//!     fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
//!         Ok(networks
//!             .iter()
//!             .map(|n| {
//!                 NetworkDecision::new(&n.id)
//!                     .rule(Rule::accept(Peer::group("web"), Peer::group("db")).tcp(&[5432]))
//!                     .default_internal(Verdict::Drop)
//!             })
//!             .collect())
//!     }
//!
//!     fn classify(endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
//!         Ok(EndpointDecision::new().group_opt(label(&endpoint.labels, "role")))
//!     }
//! }
//!
//! wasmnet_policy_sdk::export!(WebToDb);
//! # fn main() {}
//! ```
//!
//! The same code compiles for the host target, so a policy's logic is unit-tested natively by
//! calling its `Guest` impl directly (`cargo test`); `./build.sh` builds the component.

// Lets the generated code (and the `export!` macro it defines) name this crate the same way from
// inside it and from a policy crate.
extern crate self as wasmnet_policy_sdk;

#[doc(hidden)]
pub use wit_bindgen;

wit_bindgen::generate!({
    world: "policy-module",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "export_component",
    default_bindings_module: "wasmnet_policy_sdk",
    runtime_path: "wasmnet_policy_sdk::wit_bindgen::rt",
    additional_derives: [PartialEq, Eq],
});

/// Exports a type implementing [`Guest`] as the component's `wasmnet:policy/policy`:
/// `wasmnet_policy_sdk::export!(MyPolicy);` once, at the root of the policy crate.
///
/// Only on wasm32: natively (`cargo test`) the policy is a plain Rust type whose `Guest`
/// functions tests call directly (and a native `cdylib` could not carry the component's export
/// names anyway).
#[macro_export]
macro_rules! export {
    ($($t:tt)*) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export_component!($($t)*);
    };
}

pub use exports::wasmnet::policy::policy::{
    Endpoint, EndpointDecision, Guest, Label, Network, NetworkDecision, Peer, PortDecision,
    PortRange, Protocol, PublishedPort, Rule, Verdict,
};

/// The WIT package this SDK implements.
pub const WIT_PACKAGE: &str = "wasmnet:policy@0.2.0";

/// The value of the first label named `key`, if any.
pub fn label<'a>(labels: &'a [Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

/// The value of the network's driver option `key` (e.g. `icc`), if set.
pub fn option<'a>(network: &'a Network, key: &str) -> Option<&'a str> {
    label(&network.options, key)
}

/// The items of a comma-separated list, trimmed, empty ones skipped:
/// `"10.0.0.0/8, 192.168.1.0/24,"` gives two items.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Checks that `s` is a CIDR (`10.0.0.0/8`, `fd00::/64`) with no host bits set, and returns
/// its address and prefix length.
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    use std::net::IpAddr;
    let bad = |why: &str| format!("{s:?} is not a CIDR ({why})");
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = match len.parse() {
        Ok(n) if n <= max && len.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(bad(&format!("prefix length must be 0 to {max}"))),
    };
    let host_bits_set = match addr {
        IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
        IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(len)).unwrap_or(0) != 0,
    };
    if host_bits_set {
        return Err(bad("host bits set"));
    }
    Ok((addr, len))
}

impl Network {
    /// The value of the network label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        label(&self.labels, key)
    }

    /// The value of the driver option `key`, if set.
    pub fn option(&self, key: &str) -> Option<&str> {
        option(self, key)
    }
}

impl Endpoint {
    /// The value of the endpoint label `key` (sandbox labels overlaid with the endpoint's), if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        label(&self.labels, key)
    }
}

/// Builders for the inputs wasmnet passes, to unit-test a policy natively.
impl Network {
    /// A bridge network `name` with id `id`: not internal, no labels, options or subnets.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Network {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            internal: false,
            labels: Vec::new(),
            options: Vec::new(),
            subnets: Vec::new(),
        }
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push(Label::new(key, value));
        self
    }

    pub fn with_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push(Label::new(key, value));
        self
    }

    pub fn with_internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }
}

/// Builders for the inputs wasmnet passes, to unit-test a policy natively.
impl Endpoint {
    /// Endpoint `id` of network `network_id`, in a sandbox of the same name, on `eth0`, without
    /// labels, addresses or published ports.
    pub fn new(id: impl Into<String>, network_id: impl Into<String>) -> Self {
        let id = id.into();
        Endpoint {
            network_id: network_id.into(),
            sandbox_id: id.clone(),
            sandbox_name: id.clone(),
            interface: "eth0".into(),
            labels: Vec::new(),
            ipv4: None,
            ipv6: None,
            mac: "02:42:ac:11:00:02".into(),
            ports: Vec::new(),
            id,
        }
    }

    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push(Label::new(key, value));
        self
    }

    /// Asks to publish `container_port`/tcp on `host_ip` (None: every host address):`host_port`.
    pub fn with_port(mut self, host_ip: Option<&str>, host_port: u16, container_port: u16) -> Self {
        self.ports.push(PublishedPort {
            host_ip: host_ip.map(str::to_string),
            host_port,
            container_port,
            protocol: Protocol::Tcp,
        });
        self
    }
}

impl Label {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Peer {
    /// The endpoints that `classify` put in group `name`.
    pub fn group(name: impl Into<String>) -> Self {
        Peer::Group(name.into())
    }

    /// Addresses in `cidr` (IPv4 or IPv6).
    pub fn cidr(cidr: impl Into<String>) -> Self {
        Peer::Cidr(cidr.into())
    }

    /// Every endpoint of a network, by id or name.
    pub fn network(id_or_name: impl Into<String>) -> Self {
        Peer::Network(id_or_name.into())
    }

    /// As `to`: the addresses wasmnet's DNS server answered for names matching `pattern`
    /// (`example.com`, or `*.example.com` for the names below it).
    pub fn fqdn(pattern: impl Into<String>) -> Self {
        Peer::Fqdn(pattern.into())
    }
}

impl PortRange {
    /// The single port `port`.
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Ports `first..=last`.
    pub fn new(first: u16, last: u16) -> Self {
        PortRange { first, last }
    }
}

impl Rule {
    /// A rule giving `verdict` to every packet from `from` to `to` (any protocol, any port).
    pub fn new(from: Peer, to: Peer, verdict: Verdict) -> Self {
        Rule {
            from,
            to,
            protocol: None,
            ports: Vec::new(),
            verdict,
            log: false,
        }
    }

    pub fn accept(from: Peer, to: Peer) -> Self {
        Rule::new(from, to, Verdict::Accept)
    }

    pub fn drop(from: Peer, to: Peer) -> Self {
        Rule::new(from, to, Verdict::Drop)
    }

    pub fn reject(from: Peer, to: Peer) -> Self {
        Rule::new(from, to, Verdict::Reject)
    }

    /// Only TCP, to these destination ports (empty: every port).
    pub fn tcp(self, ports: &[u16]) -> Self {
        self.protocol(Protocol::Tcp, ports)
    }

    /// Only UDP, to these destination ports (empty: every port).
    pub fn udp(self, ports: &[u16]) -> Self {
        self.protocol(Protocol::Udp, ports)
    }

    /// Only `protocol`, to these destination ports (empty: every port).
    pub fn protocol(mut self, protocol: Protocol, ports: &[u16]) -> Self {
        self.protocol = Some(protocol);
        self.ports = ports.iter().copied().map(PortRange::single).collect();
        self
    }

    /// Adds destination ports `first..=last` (set a protocol too: with none, ports must be empty).
    pub fn port_range(mut self, first: u16, last: u16) -> Self {
        self.ports.push(PortRange::new(first, last));
        self
    }

    /// Log the packets this rule matches.
    pub fn log(mut self) -> Self {
        self.log = true;
        self
    }
}

impl NetworkDecision {
    /// A decision for `network_id` that decides nothing: no rules, every default left to the
    /// next policy (then Docker's).
    pub fn new(network_id: impl Into<String>) -> Self {
        NetworkDecision {
            network_id: network_id.into(),
            rules: Vec::new(),
            default_internal: None,
            default_egress: None,
            masquerade: None,
            snat: None,
        }
    }

    /// Appends a rule (rules are matched in order, the first match decides).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn default_internal(mut self, verdict: Verdict) -> Self {
        self.default_internal = Some(verdict);
        self
    }

    pub fn default_egress(mut self, verdict: Verdict) -> Self {
        self.default_egress = Some(verdict);
        self
    }

    pub fn masquerade(mut self, on: bool) -> Self {
        self.masquerade = Some(on);
        self
    }

    pub fn snat(mut self, address: impl Into<String>) -> Self {
        self.snat = Some(address.into());
        self
    }
}

impl EndpointDecision {
    /// No groups, every published port honoured.
    pub fn new() -> Self {
        EndpointDecision {
            groups: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Adds the endpoint to group `name`.
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.groups.push(name.into());
        self
    }

    /// Adds the endpoint to group `name` if there is one.
    pub fn group_opt(self, name: Option<impl Into<String>>) -> Self {
        match name {
            Some(name) => self.group(name),
            None => self,
        }
    }
}

impl Default for EndpointDecision {
    fn default() -> Self {
        EndpointDecision::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Network {
        Network::new("n1", "front")
            .with_label("tier", "a")
            .with_label("tier", "b")
            .with_option("icc", "false")
    }

    #[test]
    fn labels_and_options() {
        let n = network();
        assert_eq!(n.label("tier"), Some("a"), "the first label wins");
        assert_eq!(n.label("nope"), None);
        assert_eq!(option(&n, "icc"), Some("false"));
        assert_eq!(n.option("tier"), None);
    }

    #[test]
    fn lists() {
        let items: Vec<_> = list(" 10.0.0.0/8, ,192.168.1.0/24,").collect();
        assert_eq!(items, ["10.0.0.0/8", "192.168.1.0/24"]);
        assert_eq!(list("").count(), 0);
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Ok(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().1, 0);
        assert_eq!(parse_cidr("192.0.2.7/32").unwrap().1, 32);
        assert_eq!(parse_cidr("fd00::/64").unwrap().1, 64);
        assert_eq!(parse_cidr("::/0").unwrap().1, 0);
        assert_eq!(parse_cidr("2001:db8::1/128").unwrap().1, 128);
        for bad in [
            "10.0.0.0",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "10.0.0/8",
            "fd00::1/64",
            "fd00::/129",
            "example.com/8",
            "",
        ] {
            let err = parse_cidr(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn rule_builders() {
        let r = Rule::accept(Peer::group("web"), Peer::group("db"))
            .tcp(&[5432])
            .log();
        assert_eq!(
            r,
            Rule {
                from: Peer::Group("web".into()),
                to: Peer::Group("db".into()),
                protocol: Some(Protocol::Tcp),
                ports: vec![PortRange {
                    first: 5432,
                    last: 5432
                }],
                verdict: Verdict::Accept,
                log: true,
            }
        );
        let r = Rule::drop(Peer::Any, Peer::World)
            .udp(&[])
            .port_range(1000, 2000);
        assert_eq!(r.protocol, Some(Protocol::Udp));
        assert_eq!(r.ports, vec![PortRange::new(1000, 2000)]);
        assert_eq!(r.verdict, Verdict::Drop);
        assert!(!r.log);
    }

    #[test]
    fn decisions_default_to_nothing() {
        let d = NetworkDecision::new("n1");
        assert_eq!(d.network_id, "n1");
        assert!(d.rules.is_empty());
        assert_eq!(
            (d.default_internal, d.default_egress, d.masquerade, d.snat),
            (None, None, None, None)
        );
        let e = EndpointDecision::default()
            .group_opt(None::<String>)
            .group("x");
        assert_eq!(e.groups, ["x"]);
        assert!(e.ports.is_empty());
    }
}
