//! The decisions of a policy, validated: what the firewall compiler consumes. Converting from
//! the raw WIT answer checks the contract (CIDRs parse, ports ordered, names short) and the
//! output limits, so a hostile answer is an error here and never reaches the compiler.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::wit;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Peer {
    Any,
    Group(String),
    SameGroup,
    /// A network's id or name, as the policy wrote it (the compiler resolves it).
    Network(String),
    Cidr(IpNet),
    World,
    /// A name pattern, lower-case without the final dot: `example.com`, `*.example.com`.
    Fqdn(String),
}

/// A DNS name pattern checked and normalised: lower-case, no final dot, labels of letters,
/// digits, `-` and `_` (1 to 63 bytes, no `-` at either end), at most 253 bytes, and `*.` only
/// as its first label (then at least one label after it).
pub fn fqdn_pattern(raw: &str) -> Result<String, String> {
    let p = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    let bad = |why: &str| Err(format!("fqdn {:?} {why}", truncated(raw)));
    if p.is_empty() || p.len() > 253 {
        return bad("must be 1 to 253 bytes");
    }
    let rest = p.strip_prefix("*.").unwrap_or(&p);
    for label in rest.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return bad("is not a DNS name or `*.` and one (labels of letters, digits, - and _)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label starting or ending with -");
        }
    }
    Ok(p)
}

/// Whether `name` (any case, with or without the final dot) matches a pattern of
/// [`fqdn_pattern`]: the name itself, or for `*.d` any name ending in `.d`.
pub fn fqdn_matches(pattern: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            name.len() > domain.len() + 1
                && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
                && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain)
        }
        None => name.eq_ignore_ascii_case(pattern),
    }
}

/// Port ranges as text, a single port alone: `80`, `8000{sep}8080`.
pub fn port_ranges(ports: &[(u16, u16)], sep: &str) -> Vec<String> {
    ports
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}{sep}{b}")
            }
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Rule {
    pub from: Peer,
    pub to: Peer,
    pub protocol: Option<Protocol>,
    /// Inclusive ranges of destination ports; empty: every port.
    pub ports: Vec<(u16, u16)>,
    pub verdict: Verdict,
    pub log: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkDecision {
    pub network_id: String,
    pub rules: Vec<Rule>,
    pub default_internal: Option<Verdict>,
    pub default_egress: Option<Verdict>,
    pub masquerade: Option<bool>,
    pub snat: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "action", content = "value")]
pub enum PortDecision {
    Honour,
    Refuse(String),
    Remap(u16),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointDecision {
    pub groups: Vec<String>,
    pub ports: Vec<PortDecision>,
}

/// What an answer may hold.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimits {
    pub rules_per_network: usize,
    pub groups_per_endpoint: usize,
    pub name_len: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            rules_per_network: 10_000,
            groups_per_endpoint: 64,
            name_len: 64,
        }
    }
}

type Checked<T> = Result<T, String>;

impl OutputLimits {
    fn name(&self, what: &str, s: &str) -> Checked<String> {
        if s.is_empty() || s.len() > self.name_len {
            return Err(format!(
                "{what} {:?} must be 1 to {} bytes",
                truncated(s),
                self.name_len
            ));
        }
        if s.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            return Err(format!(
                "{what} {:?} has a control character, quote or backslash",
                truncated(s)
            ));
        }
        Ok(s.to_string())
    }

    pub(crate) fn networks(
        &self,
        raw: Vec<wit::NetworkDecision>,
        asked: usize,
    ) -> Checked<Vec<NetworkDecision>> {
        if raw.len() > asked {
            return Err(format!(
                "{} network decisions for {asked} networks",
                raw.len()
            ));
        }
        raw.into_iter().map(|d| self.network(d)).collect()
    }

    fn network(&self, d: wit::NetworkDecision) -> Checked<NetworkDecision> {
        if d.rules.len() > self.rules_per_network {
            return Err(format!(
                "{} rules for network {}, at most {} are allowed",
                d.rules.len(),
                truncated(&d.network_id),
                self.rules_per_network
            ));
        }
        let rules = d
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.rule(r).map_err(|e| format!("rule {i}: {e}")))
            .collect::<Checked<_>>()?;
        let snat = d
            .snat
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("snat {:?} is not an IP address", truncated(&s)))
            })
            .transpose()?;
        Ok(NetworkDecision {
            network_id: d.network_id,
            rules,
            default_internal: d.default_internal.map(verdict),
            default_egress: d.default_egress.map(verdict),
            masquerade: d.masquerade,
            snat,
        })
    }

    fn rule(&self, r: wit::Rule) -> Checked<Rule> {
        let protocol = r.protocol.map(protocol);
        if !r.ports.is_empty()
            && !matches!(
                protocol,
                Some(Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
            )
        {
            return Err("ports need protocol tcp, udp or sctp".into());
        }
        if r.ports.len() > 64 {
            return Err(format!(
                "{} port ranges, at most 64 are allowed",
                r.ports.len()
            ));
        }
        let ports = r
            .ports
            .iter()
            .map(|p| {
                if p.first > p.last {
                    Err(format!("port range {}-{} is backwards", p.first, p.last))
                } else {
                    Ok((p.first, p.last))
                }
            })
            .collect::<Checked<_>>()?;
        let to = self.peer(r.to)?;
        let from = self.peer(r.from)?;
        if from == Peer::SameGroup {
            return Err("same-group is only meaningful as `to`".into());
        }
        if matches!(from, Peer::Fqdn(_)) {
            return Err("fqdn is only meaningful as `to` (egress to a name)".into());
        }
        Ok(Rule {
            from,
            to,
            protocol,
            ports,
            verdict: verdict(r.verdict),
            log: r.log,
        })
    }

    fn peer(&self, p: wit::Peer) -> Checked<Peer> {
        Ok(match p {
            wit::Peer::Any => Peer::Any,
            wit::Peer::SameGroup => Peer::SameGroup,
            wit::Peer::World => Peer::World,
            wit::Peer::Group(g) => Peer::Group(self.name("group", &g)?),
            wit::Peer::Network(n) => Peer::Network(self.name("network", &n)?),
            wit::Peer::Fqdn(p) => Peer::Fqdn(fqdn_pattern(&p)?),
            wit::Peer::Cidr(c) => Peer::Cidr(
                c.parse::<IpNet>()
                    .map_err(|_| format!("cidr {:?} is not a CIDR", truncated(&c)))?
                    .trunc(),
            ),
        })
    }

    pub(crate) fn endpoint(
        &self,
        d: wit::EndpointDecision,
        ports: usize,
    ) -> Checked<EndpointDecision> {
        if d.groups.len() > self.groups_per_endpoint {
            return Err(format!(
                "{} groups, at most {} are allowed",
                d.groups.len(),
                self.groups_per_endpoint
            ));
        }
        if d.ports.len() > ports {
            return Err(format!(
                "{} port decisions for {ports} ports",
                d.ports.len()
            ));
        }
        let mut groups = d
            .groups
            .iter()
            .map(|g| self.name("group", g))
            .collect::<Checked<Vec<_>>>()?;
        groups.sort();
        groups.dedup();
        let mut out: Vec<PortDecision> = d
            .ports
            .into_iter()
            .map(|p| match p {
                wit::PortDecision::Honour => Ok(PortDecision::Honour),
                wit::PortDecision::Remap(0) => Err("remap to port 0".to_string()),
                wit::PortDecision::Remap(n) => Ok(PortDecision::Remap(n)),
                wit::PortDecision::Refuse(why) => {
                    Ok(PortDecision::Refuse(crate::error::guest_text(why)))
                }
            })
            .collect::<Checked<_>>()?;
        out.resize(ports, PortDecision::Honour);
        Ok(EndpointDecision { groups, ports: out })
    }
}

fn truncated(s: &str) -> &str {
    let cut = (0..=s.len().min(40))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..cut]
}

fn verdict(v: wit::Verdict) -> Verdict {
    match v {
        wit::Verdict::Accept => Verdict::Accept,
        wit::Verdict::Drop => Verdict::Drop,
        wit::Verdict::Reject => Verdict::Reject,
    }
}

fn protocol(p: wit::Protocol) -> Protocol {
    match p {
        wit::Protocol::Tcp => Protocol::Tcp,
        wit::Protocol::Udp => Protocol::Udp,
        wit::Protocol::Sctp => Protocol::Sctp,
        wit::Protocol::Icmp => Protocol::Icmp,
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Any => f.write_str("any"),
            Peer::SameGroup => f.write_str("same-group"),
            Peer::World => f.write_str("world"),
            Peer::Group(g) => write!(f, "group {g}"),
            Peer::Network(n) => write!(f, "network {n}"),
            Peer::Cidr(c) => write!(f, "{c}"),
            Peer::Fqdn(p) => write!(f, "fqdn {p}"),
        }
    }
}

impl fmt::Display for PortDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortDecision::Honour => f.write_str("honour"),
            PortDecision::Refuse(why) => write!(f, "refuse ({why})"),
            PortDecision::Remap(p) => write!(f, "remap to {p}"),
        }
    }
}

/// `accept any -> group db tcp/5432,6000-6010 log`
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.verdict, self.from, self.to)?;
        if let Some(p) = self.protocol {
            write!(f, " {p}")?;
        }
        let ports = port_ranges(&self.ports, "-");
        if !ports.is_empty() {
            write!(f, "/{}", ports.join(","))?;
        }
        if self.log {
            f.write_str(" log")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        to: wit::Peer,
        protocol: Option<wit::Protocol>,
        ports: Vec<wit::PortRange>,
    ) -> wit::Rule {
        wit::Rule {
            from: wit::Peer::Any,
            to,
            protocol,
            ports,
            verdict: wit::Verdict::Accept,
            log: false,
        }
    }

    #[test]
    fn rules_are_checked_and_printed() {
        let l = OutputLimits::default();
        let ok = l
            .rule(rule(
                wit::Peer::Cidr("10.1.2.3/8".into()),
                Some(wit::Protocol::Tcp),
                vec![
                    wit::PortRange {
                        first: 80,
                        last: 80,
                    },
                    wit::PortRange {
                        first: 8000,
                        last: 8080,
                    },
                ],
            ))
            .unwrap();
        assert_eq!(ok.to_string(), "accept any -> 10.0.0.0/8 tcp/80,8000-8080");
        let bad_cidr = l.rule(rule(wit::Peer::Cidr("nope".into()), None, vec![]));
        assert_eq!(bad_cidr.unwrap_err(), "cidr \"nope\" is not a CIDR");
        let ports_without_proto = l.rule(rule(
            wit::Peer::Any,
            None,
            vec![wit::PortRange { first: 1, last: 2 }],
        ));
        assert!(ports_without_proto
            .unwrap_err()
            .contains("ports need protocol"));
        let backwards = l.rule(rule(
            wit::Peer::Any,
            Some(wit::Protocol::Udp),
            vec![wit::PortRange { first: 9, last: 2 }],
        ));
        assert!(backwards.unwrap_err().contains("backwards"));
        let quote = l.rule(rule(wit::Peer::Group("a\"b".into()), None, vec![]));
        assert!(quote.unwrap_err().contains("quote"));
    }

    #[test]
    fn fqdn_patterns_are_checked_and_matched() {
        assert_eq!(fqdn_pattern("Example.COM.").unwrap(), "example.com");
        assert_eq!(fqdn_pattern("*.example.com").unwrap(), "*.example.com");
        for bad in [
            "", "*", "a.*.com", "a..b", "-a.com", "a b.com", "é.com", "*.", "x.*",
        ] {
            assert!(fqdn_pattern(bad).is_err(), "{bad:?}");
        }
        assert!(fqdn_pattern(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(
            fqdn_pattern(&["a"; 130].join(".")).is_err(),
            "over 253 bytes"
        );
        assert!(fqdn_matches("example.com", "EXAMPLE.com."));
        assert!(!fqdn_matches("example.com", "www.example.com"));
        assert!(fqdn_matches("*.example.com", "www.example.com"));
        assert!(fqdn_matches("*.example.com", "a.b.Example.com."));
        assert!(!fqdn_matches("*.example.com", "example.com"));
        assert!(!fqdn_matches("*.example.com", "badexample.com"));
        assert!(!fqdn_matches("*.example.com", ".example.com"));
        let l = OutputLimits::default();
        let from_fqdn = wit::Rule {
            from: wit::Peer::Fqdn("example.com".into()),
            ..rule(wit::Peer::Any, None, vec![])
        };
        assert!(l
            .rule(from_fqdn)
            .unwrap_err()
            .contains("only meaningful as `to`"));
        let to = l.rule(rule(wit::Peer::Fqdn("*.Example.com".into()), None, vec![]));
        assert_eq!(to.unwrap().to_string(), "accept any -> fqdn *.example.com");
    }

    #[test]
    fn output_limits_hold() {
        let l = OutputLimits::default();
        let many = wit::NetworkDecision {
            network_id: "n".into(),
            rules: (0..10_001)
                .map(|_| rule(wit::Peer::Any, None, vec![]))
                .collect(),
            default_internal: None,
            default_egress: None,
            masquerade: None,
            snat: None,
        };
        let err = l.networks(vec![many], 1).unwrap_err();
        assert!(err.contains("10001 rules"), "{err}");
        let groups = wit::EndpointDecision {
            groups: (0..65).map(|i| format!("g{i}")).collect(),
            ports: vec![],
        };
        assert!(l.endpoint(groups, 0).unwrap_err().contains("65 groups"));
        let ports = wit::EndpointDecision {
            groups: vec!["b".into(), "a".into(), "a".into()],
            ports: vec![wit::PortDecision::Remap(8080)],
        };
        let d = l.endpoint(ports, 2).unwrap();
        assert_eq!(d.groups, ["a", "b"]);
        assert_eq!(d.ports, [PortDecision::Remap(8080), PortDecision::Honour]);
    }
}
