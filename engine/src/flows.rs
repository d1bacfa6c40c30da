//! Flows: what the firewall dropped (or would have, or was asked to log), as records an
//! operator can watch. The rules send those packets to an NFLOG group (rate-limited per
//! rule) with a prefix saying who decided (`wn:<verdict>:<who>:<network>`); the kernel
//! module reads the group over netlink and hands each packet here, which parses its
//! headers, names its endpoints and keeps it in a bounded ring. All pure but the clock.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Packets per second each flow-logging rule sends at most (the rest are still dropped,
/// just not recorded): a flood costs the reader no more than this per rule.
pub const PER_RULE_PER_SECOND: u32 = 10;

/// Whether the rules log flows at all: off when the flow log cannot be read (no
/// nfnetlink_log on this kernel, say), since a rule logging to it would then fail to load
/// and take the whole firewall with it. Set once at start, before the first ruleset.
static LOGGING: AtomicBool = AtomicBool::new(true);

pub fn set_logging(on: bool) {
    LOGGING.store(on, Ordering::Relaxed);
}

pub fn logging() -> bool {
    LOGGING.load(Ordering::Relaxed)
}

/// What happened to a flow's packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowVerdict {
    Dropped,
    /// An audit-mode policy would have dropped it; it passed.
    WouldDrop,
    /// A policy's rule with `log` matched it (and accepted it).
    Logged,
}

impl FlowVerdict {
    fn code(self) -> char {
        match self {
            FlowVerdict::Dropped => 'd',
            FlowVerdict::WouldDrop => 'w',
            FlowVerdict::Logged => 'l',
        }
    }

    fn of_code(c: &str) -> Option<FlowVerdict> {
        match c {
            "d" => Some(FlowVerdict::Dropped),
            "w" => Some(FlowVerdict::WouldDrop),
            "l" => Some(FlowVerdict::Logged),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlowVerdict::Dropped => "dropped",
            FlowVerdict::WouldDrop => "would_drop",
            FlowVerdict::Logged => "logged",
        }
    }
}

impl std::str::FromStr for FlowVerdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dropped" => Ok(FlowVerdict::Dropped),
            "would_drop" => Ok(FlowVerdict::WouldDrop),
            "logged" => Ok(FlowVerdict::Logged),
            _ => Err(format!(
                "{s:?} is not a verdict (dropped, would_drop, logged)"
            )),
        }
    }
}

/// The log prefix of a flow rule: verdict, who decided (12 characters of a policy's id, or
/// `isolation`, `icc`, `internal`, `default`), 12 of the network's id (or `-`). At most 33
/// characters: iptables' NFLOG prefix takes 64.
pub fn prefix(verdict: FlowVerdict, who: &str, network_id: Option<&str>) -> String {
    let short = |s: &str| s.chars().take(12).collect::<String>();
    let net = network_id.map_or("-".to_string(), short);
    format!("wn:{}:{}:{net}", verdict.code(), short(who))
}

/// A prefix read back: (verdict, who, network id prefix). None: not one of ours.
pub fn parse_prefix(p: &str) -> Option<(FlowVerdict, &str, Option<&str>)> {
    let mut parts = p.strip_prefix("wn:")?.splitn(3, ':');
    let verdict = FlowVerdict::of_code(parts.next()?)?;
    let who = parts.next().filter(|w| !w.is_empty())?;
    let net = parts.next()?;
    Some((verdict, who, (net != "-").then_some(net)))
}

/// The addresses, protocol and ports of an IP packet (from its network header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ports: Option<(u16, u16)>,
}

/// Parses an IPv4 or IPv6 header and, for TCP, UDP and SCTP, the ports; None when `packet`
/// is too short or not IP. IPv6 extension headers are not walked (the protocol is then the
/// first next-header, without ports).
pub fn parse_headers(packet: &[u8]) -> Option<Headers> {
    let (src, dst, protocol, rest) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl {
                return None;
            }
            let a = |i: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    packet[i],
                    packet[i + 1],
                    packet[i + 2],
                    packet[i + 3],
                ))
            };
            (a(12), a(16), packet[9], &packet[ihl..])
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            let a = |i: usize| {
                let b: [u8; 16] = packet[i..i + 16].try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            };
            (a(8)?, a(24)?, packet[6], &packet[40..])
        }
        _ => return None,
    };
    let ports = (matches!(protocol, 6 | 17 | 132) && rest.len() >= 4).then(|| {
        let p = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
        (p(0), p(2))
    });
    Some(Headers {
        src,
        dst,
        protocol,
        ports,
    })
}

/// A protocol number's name.
pub fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

/// One end of a flow: its address and port, and the endpoint and sandbox it is when they
/// are wasmnet's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FlowPeer {
    #[schema(value_type = String)]
    pub address: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One packet the firewall decided about, as an operator reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Flow {
    /// Increases by one per flow since the daemon started.
    pub seq: u64,
    /// RFC 3339, when wasmnet read it.
    pub time: String,
    /// The network whose rule decided (its name), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub source: FlowPeer,
    pub destination: FlowPeer,
    /// tcp, udp, sctp, icmp, icmpv6, or the protocol's number.
    pub protocol: String,
    #[schema(value_type = String)]
    pub verdict: FlowVerdict,
    /// Who decided: a policy's name, or `isolation` (another network), `icc` (icc=false),
    /// `internal` (an internal network's way out), `default` (a governed network's default).
    pub decided_by: String,
    /// The deciding policy's name, when a policy decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// What `GET /v1/flows` filters on (all must hold).
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    pub network: Option<String>,
    pub sandbox: Option<String>,
    pub policy: Option<String>,
    pub verdict: Option<FlowVerdict>,
    /// Only flows after this sequence number.
    pub since: Option<u64>,
}

impl FlowFilter {
    pub fn matches(&self, f: &Flow) -> bool {
        let sandbox = |s: &String| {
            f.source.sandbox.as_ref() == Some(s) || f.destination.sandbox.as_ref() == Some(s)
        };
        self.network
            .as_ref()
            .is_none_or(|n| f.network.as_ref() == Some(n))
            && self.sandbox.as_ref().is_none_or(sandbox)
            && self
                .policy
                .as_ref()
                .is_none_or(|p| f.policy.as_ref() == Some(p))
            && self.verdict.is_none_or(|v| f.verdict == v)
            && self.since.is_none_or(|s| f.seq > s)
    }
}

/// The last `capacity` flows, oldest first.
#[derive(Debug)]
pub struct Ring {
    flows: VecDeque<Flow>,
    capacity: usize,
    next: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Ring {
        Ring {
            flows: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
            next: 1,
        }
    }

    /// Numbers `f`, keeps it (dropping the oldest when full) and returns it numbered.
    pub fn push(&mut self, mut f: Flow) -> Flow {
        f.seq = self.next;
        self.next += 1;
        if self.flows.len() == self.capacity {
            self.flows.pop_front();
        }
        self.flows.push_back(f.clone());
        f
    }

    /// The newest `limit` flows matching `filter`, oldest first.
    pub fn query(&self, filter: &FlowFilter, limit: usize) -> Vec<Flow> {
        let mut out: Vec<Flow> = (self.flows.iter().rev())
            .filter(|f| filter.matches(f))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests;
