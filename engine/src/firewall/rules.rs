//! The backend-neutral rules: what Docker's defaults and the policies are lowered to, once
//! (`docker`, `policy`), and what each backend only renders (`render_nft`, `render_iptables`).
//!
//! The layout is nftables' (it is the one that scales): sets, maps and a verdict map are named
//! by what they hold ([`SetId`]) and carry typed elements, and a rule can say "look this up in
//! set X". nftables renders that as one hash lookup; iptables, which has no sets, expands it
//! into one rule per element (linear), splitting into a chain of its own when two lookups
//! would otherwise multiply. Rules that audit carry a [`Tag`] through to the chain views, so
//! readers need not recognise them by their text.

use std::net::IpAddr;

use ipnet::IpNet;
use wasmnet_policy::ir::Protocol;

use crate::model::PortMapping;

/// The IP family a rule is pinned to (by an address it matches, or ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    pub fn of(addr: IpAddr) -> Fam {
        if addr.is_ipv6() {
            Fam::V6
        } else {
            Fam::V4
        }
    }
}

/// Where a table lives: the inet family (routed and, with br_netfilter, bridged IP traffic)
/// or the bridge family (frames between ports of one bridge; nftables only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Inet,
    Bridge,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }
}

/// A set or map, by what it holds; `crate::names` says what each backend calls it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetId {
    /// Every bridge of wasmnet's ([`Element::Bridge`]).
    Bridges,
    /// The subnets that masquerade, per family ([`Element::Subnet`]).
    Masq(Fam),
    /// Every network's subnets, per family ([`Element::Subnet`]).
    Subnets(Fam),
    /// A verdict map from a bridge to its network's chain ([`Element::Dispatch`]).
    FromBridge,
    /// Published ports of one family, keyed by protocol and port and, when `on`, by the host
    /// address too ([`Element::Port`]).
    Ports { fam: Fam, on: bool },
    /// The members of one policy's group, per family ([`Element::Addr`]).
    Group {
        policy: String,
        group: String,
        fam: Fam,
    },
    /// The host ends of the veths of icc=false networks ([`Element::Ifname`]; bridge family).
    NoiccPorts,
    /// Per family, each network no policy governs: its bridge and its subnet's ranges but the
    /// gateway ([`Element::BridgeRange`]).
    Untracked(Fam),
    /// The addresses the DNS server answered for names matching a pattern (an `fqdn` peer),
    /// per family. Always declared empty: its elements come and go with timeouts, put there
    /// by the DNS server, never by a ruleset (so a difference never touches them).
    Fqdn { pattern: String, fam: Fam },
    /// Every service's virtual address, per family ([`Element::Addr`]).
    Vips(Fam),
    /// Every service backend's address paired with itself, per family ([`Element::Pair`]):
    /// a connection from a backend to its own service's address, which must be masqueraded.
    Hairpin(Fam),
    /// A verdict map from (bridge, virtual address, protocol, port) to the service's chain,
    /// per family ([`Element::Service`]).
    Services(Fam),
}

impl SetId {
    /// Whether the set's elements are not the ruleset's (see [`SetId::Fqdn`]).
    pub fn is_dynamic(&self) -> bool {
        matches!(self, SetId::Fqdn { .. })
    }
}

/// One element of a set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Element {
    /// A bridge and its subnets (which stand for it where a backend cannot match it by name).
    Bridge {
        name: String,
        subnets: Vec<IpNet>,
    },
    Subnet(IpNet),
    /// A bridge's packets go to this chain.
    Dispatch {
        bridge: String,
        chain: ChainId,
    },
    Port(Published),
    Addr(IpAddr),
    /// A bridge and a range of addresses (inclusive).
    BridgeRange {
        bridge: String,
        from: IpAddr,
        to: IpAddr,
    },
    Ifname(String),
    /// An address paired with itself (`a . a`).
    Pair(IpAddr),
    /// A service's port on its network's bridge, and the chain that picks its backend.
    Service {
        bridge: String,
        vip: IpAddr,
        proto: crate::model::Protocol,
        port: u16,
        chain: ChainId,
    },
}

/// A published port: `on` the host address (every one when `None`), `proto` `port` to `to`
/// `to_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    pub on: Option<IpAddr>,
    pub proto: crate::model::Protocol,
    pub port: u16,
    pub to: IpAddr,
    pub to_port: u16,
}

impl Published {
    pub fn of(p: &PortMapping, to: IpAddr) -> Published {
        Published {
            on: p.host_ip,
            proto: p.protocol,
            port: p.host_port,
            to,
            to_port: p.container_port,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub id: SetId,
    pub elements: Vec<Element>,
}

/// A chain, by what it is for. The base chains (hooked into the kernel) are the first four,
/// `BridgeForward` and `Raw`; `crate::names` says what each backend calls them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChainId {
    Forward,
    Prerouting,
    Output,
    Postrouting,
    /// Published ports, jumped to for traffic to a local address.
    Publish,
    /// What leaves one network's bridge (its id).
    Network(String),
    /// One policy's rules for one network.
    Policy {
        policy: String,
        network: String,
    },
    /// One `same-group` rule (the `rule`-th of the policy's decision) of a policy for one
    /// network and family: a rule per group, jumped to from the policy's chain.
    SameGroup {
        policy: String,
        network: String,
        rule: usize,
        fam: Fam,
    },
    /// The bridge family's forward hook.
    BridgeForward,
    /// The raw prerouting hook (before connection tracking).
    Raw,
    /// The filter input hook: what reaches the host's own addresses.
    Input,
    /// One service's ports, each picking a backend (the service's id).
    Service(String),
}

/// Interfaces, by name or as a set of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ifaces {
    Name(String),
    Set(SetId),
}

impl Ifaces {
    /// Every bridge of wasmnet's.
    pub fn bridges() -> Ifaces {
        Ifaces::Set(SetId::Bridges)
    }

    /// One network's bridge.
    pub fn bridge_of(network_id: &str) -> Ifaces {
        Ifaces::Name(crate::names::bridge_name(network_id))
    }
}

/// Addresses, as a prefix or a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addrs {
    Net(IpNet),
    Set(SetId),
}

/// Connection tracking's view of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ct {
    EstablishedRelated,
    Invalid,
    /// Destination-NATed (a published port).
    Dnat,
    /// Not tracked (the raw chain's `notrack`, or anyone else's).
    Untracked,
}

/// One condition of a rule; a rule matches when all of its conditions do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Iif(Ifaces),
    Oif(Ifaces),
    NotOif(Ifaces),
    Saddr(Addrs),
    Daddr(Addrs),
    /// The input interface and the destination address, together, in a set of
    /// [`Element::BridgeRange`].
    IifDaddr(SetId),
    /// A protocol, and for tcp, udp and sctp the destination ports (inclusive ranges; none:
    /// any port).
    Proto {
        proto: Protocol,
        ports: Vec<(u16, u16)>,
    },
    Ct(Ct),
    /// To one of the host's own addresses.
    LocalDaddr,
    /// A protocol with ports (tcp, udp, sctp): what a lookup by destination port needs first.
    Transport,
    /// The connection's original destination (before DNAT) in a set of addresses.
    CtOrigDaddr(SetId),
    /// The source and destination address, together, in a set of [`Element::Pair`].
    SaddrDaddr(SetId),
    /// An ARP request for an address in a set (the bridge family: frames, not packets).
    ArpRequestFor(SetId),
}

/// What a matching packet gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// With a TCP reset for TCP, an ICMP error otherwise.
    Reject {
        tcp_reset: bool,
    },
    /// Back to the chain that jumped here.
    Return,
    Jump(ChainId),
    /// To the chain the map gives for the packet's input interface (none: no verdict).
    DispatchIif(SetId),
    Masquerade,
    Snat(IpAddr),
    /// DNAT to one address and port.
    Dnat(std::net::SocketAddr),
    /// DNAT to the map's target for the packet's protocol and destination port (and address,
    /// for a map keyed `on` one).
    DnatMap(SetId),
    /// Not tracked by conntrack (a statement: the chain goes on).
    Notrack,
    /// To the chain the map gives for the packet's input interface, destination address,
    /// protocol and port (none: no verdict).
    DispatchService(SetId),
    /// DNAT to one of `to` (all of one family) on `port`: at random, or by a hash of the
    /// source address when `affinity` (the same client, the same backend while `to` stays).
    DnatPick {
        to: Vec<IpAddr>,
        port: u16,
        affinity: bool,
    },
}

/// A log line for matching packets, at most `per_second` a second when limited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    pub prefix: String,
    pub per_second: Option<u32>,
}

/// What a rule is for, beyond its verdict, for those who read the rules in force.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Tag {
    /// An audit-mode policy's rule that counts (and logs) what it would have dropped.
    Audit { policy: String },
    /// A policy's rule that asked for its matches to be logged.
    Log { policy: String },
    /// A governed network's default (between its endpoints, or out), as the policy decided.
    Default { policy: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The family the rule is for; `None`: both (it matches no address).
    pub fam: Option<Fam>,
    pub matches: Vec<Match>,
    pub counter: bool,
    pub log: Option<Log>,
    pub verdict: Option<Verdict>,
    pub tag: Option<Tag>,
}

impl Rule {
    /// A rule with a counter and a verdict.
    pub fn counted(matches: Vec<Match>, verdict: Verdict) -> Rule {
        Rule {
            fam: None,
            matches,
            counter: true,
            log: None,
            verdict: Some(verdict),
            tag: None,
        }
    }

    /// A rule without a counter.
    pub fn uncounted(matches: Vec<Match>, verdict: Verdict) -> Rule {
        Rule {
            counter: false,
            ..Rule::counted(matches, verdict)
        }
    }

    pub fn pinned(self, fam: Option<Fam>) -> Rule {
        Rule { fam, ..self }
    }

    /// The rule's matches also go to wasmnet's flow log (NFLOG, rate-limited per rule), as
    /// a flow of `verdict` decided by `who` (a policy's id, `isolation`, `icc`, …) on the
    /// network `network_id` (or none).
    pub fn flow(self, verdict: FlowVerdict, who: &str, network_id: Option<&str>) -> Rule {
        if !crate::flows::logging() {
            return self;
        }
        Rule {
            log: Some(Log {
                prefix: crate::flows::prefix(verdict, who, network_id),
                per_second: Some(crate::flows::PER_RULE_PER_SECOND),
            }),
            ..self
        }
    }
}

pub use crate::flows::FlowVerdict;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub id: ChainId,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub sets: Vec<Set>,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(family: Family) -> Table {
        Table {
            family,
            sets: Vec::new(),
            chains: Vec::new(),
        }
    }

    pub fn set(&mut self, id: SetId, elements: Vec<Element>) {
        self.sets.push(Set { id, elements });
    }

    pub fn chain(&mut self, id: ChainId, rules: Vec<Rule>) {
        self.chains.push(Chain { id, rules });
    }

    pub fn elements(&self, id: &SetId) -> &[Element] {
        self.sets
            .iter()
            .find(|s| &s.id == id)
            .map_or(&[], |s| s.elements.as_slice())
    }

    pub fn find(&self, id: &ChainId) -> Option<&Chain> {
        self.chains.iter().find(|c| &c.id == id)
    }
}

/// Everything wasmnet wants in the kernel's firewall: its tables, whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub tables: Vec<Table>,
}

impl Rules {
    pub fn table(&self, family: Family) -> Option<&Table> {
        self.tables.iter().find(|t| t.family == family)
    }
}

/// An element in (or out of) one set: what an endpoint joining or leaving costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementChange {
    pub add: bool,
    pub family: Family,
    pub set: SetId,
    pub element: Element,
}
