//! What resolves where: the names of each network's endpoints (their sandbox's name and their
//! aliases, local and on other hosts), as the embedded DNS server answers them and
//! `GET /v1/networks/{id}/names` lists them. Pure: built from one committed state.
//!
//! Docker's semantics: a querier sees the names of every network its sandbox is on (the one
//! it asked on first), as `name` and as `name.network`; a name on another network does not
//! resolve. Names that are not valid DNS names are kept but not published.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{Endpoint, Network, Service};
use crate::state::State;

/// One name a network publishes, and what it resolves to.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct NameEntry {
    pub name: String,
    /// `sandbox` (the sandbox's name), `alias`, `service` (a service's name: its virtual
    /// addresses; `endpoint` is then the service's id) or `tasks` (`tasks.<service>`: its
    /// backends' addresses).
    pub kind: &'static str,
    pub endpoint: String,
    pub sandbox: String,
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<IpAddr>,
    /// True for an endpoint on another host (overlay networks).
    pub remote: bool,
    /// Why the name is not published, when it is not (it is stored as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpublished: Option<String>,
}

/// What resolves on one network (`GET /v1/networks/{id}/names`).
#[derive(Debug, Serialize, ToSchema)]
pub struct NamesReport {
    pub network: String,
    /// Whether the network's DNS server runs (the `dns` option, and the daemon's `--dns`).
    pub dns: bool,
    /// Whether names it does not serve are forwarded upstream.
    pub forward: bool,
    /// Where the network's sandboxes reach it: the gateways, port 53.
    #[schema(value_type = Vec<String>)]
    pub servers: Vec<IpAddr>,
    /// Every name of its endpoints, in name order; unpublished ones say why.
    pub names: Vec<NameEntry>,
}

impl NamesReport {
    pub fn of(state: &State, n: &Network, dns_on: bool) -> NamesReport {
        let directory = Directory::build(state);
        let mut names = directory
            .network(&n.id)
            .map(|d| d.entries.clone())
            .unwrap_or_default();
        names.sort_by(|a, b| (&a.name, &a.endpoint).cmp(&(&b.name, &b.endpoint)));
        let dns = dns_on && n.options.dns();
        NamesReport {
            network: n.name.clone(),
            dns,
            forward: dns && n.forwards_dns(),
            servers: match dns {
                true => n.gateways().collect(),
                false => vec![],
            },
            names,
        }
    }
}

/// One network's names.
#[derive(Default)]
pub struct NetworkNames {
    pub network: Option<Arc<Network>>,
    /// Lowercased name → addresses (several endpoints may share an alias).
    names: HashMap<String, Vec<IpAddr>>,
    /// Address → the name PTR answers (`sandbox.network`).
    reverse: HashMap<IpAddr, String>,
    pub entries: Vec<NameEntry>,
}

/// Every network's names, and who is asking.
#[derive(Default)]
pub struct Directory {
    networks: HashMap<String, NetworkNames>,
    /// Lowercased network name → id.
    by_name: HashMap<String, String>,
    /// (network id, address) → the local sandbox there.
    sources: HashMap<(String, IpAddr), String>,
    /// Local sandbox → the networks it is on.
    sandbox_networks: HashMap<String, Vec<String>>,
}

/// What a reverse lookup found.
#[derive(Debug, PartialEq)]
pub enum Reverse<'a> {
    Name(&'a str),
    /// In a subnet the querier sees, but no endpoint's: NXDOMAIN, not forwarded.
    Unassigned,
    /// Not ours to answer.
    Elsewhere,
}

impl Directory {
    pub fn build(state: &State) -> Directory {
        let view = state.view();
        let mut d = Directory::default();
        for n in view.networks().iter_from(None) {
            d.by_name.insert(n.name.to_ascii_lowercase(), n.id.clone());
            d.networks.insert(
                n.id.clone(),
                NetworkNames {
                    network: Some(n.clone()),
                    ..Default::default()
                },
            );
        }
        for e in view.endpoints() {
            d.add(e, false);
            let src = |ip: IpAddr| ((e.network_id.clone(), ip), e.sandbox_id.clone());
            d.sources.extend(e.ipv4.into_iter().chain(e.ipv6).map(src));
            let nets = d.sandbox_networks.entry(e.sandbox_id.clone()).or_default();
            nets.push(e.network_id.clone());
        }
        for e in state.remotes() {
            d.add(e, true);
        }
        for s in view.services().iter_from(None) {
            d.add_service(state, s);
        }
        d
    }

    /// A service's names (Docker's): its name resolves to its virtual addresses, and
    /// `tasks.<name>` to its backends' addresses.
    fn add_service(&mut self, state: &State, s: &Service) {
        let backends: Vec<IpAddr> = (state.backends_of(s).iter())
            .flat_map(|e| [e.ipv4, e.ipv6])
            .flatten()
            .collect();
        let Some(net) = self.networks.get_mut(&s.network_id) else {
            return;
        };
        let vips: Vec<IpAddr> = s.vips().collect();
        let given = [
            (s.name.clone(), "service", vips.clone()),
            (format!("tasks.{}", s.name), "tasks", backends),
        ];
        for (name, kind, addresses) in given {
            let unpublished = dns_name_problem(&name);
            if unpublished.is_none() {
                let key = name.to_ascii_lowercase();
                net.names.entry(key).or_default().extend(&addresses);
            }
            net.entries.push(NameEntry {
                name,
                kind,
                endpoint: s.id.clone(),
                sandbox: String::new(),
                addresses,
                remote: false,
                unpublished,
            });
        }
        if dns_name_problem(&s.name).is_none() {
            let ptr = format!("{}.{}", s.name, s.network_name).to_ascii_lowercase();
            for ip in vips {
                net.reverse.insert(ip, ptr.clone());
            }
        }
    }

    fn add(&mut self, e: &Endpoint, remote: bool) {
        let Some(net) = self.networks.get_mut(&e.network_id) else {
            return;
        };
        let addresses: Vec<IpAddr> = e.ipv4.into_iter().chain(e.ipv6).collect();
        let given = std::iter::once((&e.sandbox_name, "sandbox"))
            .chain(e.aliases.iter().map(|a| (a, "alias")));
        for (name, kind) in given {
            let unpublished = dns_name_problem(name);
            if unpublished.is_none() {
                let key = name.to_ascii_lowercase();
                net.names.entry(key).or_default().extend(&addresses);
            }
            net.entries.push(NameEntry {
                name: name.clone(),
                kind,
                endpoint: e.id.clone(),
                sandbox: e.sandbox_name.clone(),
                addresses: addresses.clone(),
                remote,
                unpublished,
            });
        }
        if dns_name_problem(&e.sandbox_name).is_none() {
            let ptr = format!("{}.{}", e.sandbox_name, e.network_name).to_ascii_lowercase();
            for ip in &addresses {
                net.reverse.insert(*ip, ptr.clone());
            }
        }
    }

    /// A network's names (None: no such network).
    pub fn network(&self, id: &str) -> Option<&NetworkNames> {
        self.networks.get(id)
    }

    /// The networks whose names a query from `src` on network `on` sees: `on` first, then the
    /// other networks of its sandbox (just `on` for a source that is no sandbox of ours).
    pub fn visible<'a>(&'a self, on: &'a str, src: IpAddr) -> Vec<&'a str> {
        let mut seen = vec![on];
        let sandbox = self.sources.get(&(on.to_string(), src));
        for n in sandbox
            .and_then(|s| self.sandbox_networks.get(s))
            .into_iter()
            .flatten()
        {
            if n != on {
                seen.push(n);
            }
        }
        seen
    }

    /// The addresses `qname` (lowercase, no trailing dot) names for a query from `src` on
    /// network `on`; None when it is none of the names that query sees.
    pub fn lookup(&self, on: &str, src: IpAddr, qname: &str) -> Option<&[IpAddr]> {
        let visible = self.visible(on, src);
        for id in &visible {
            if let Some(addrs) = self.networks.get(*id).and_then(|n| n.names.get(qname)) {
                return Some(addrs);
            }
        }
        // `name.network`, the network being one the querier is on.
        let (name, network) = qname.split_once('.')?;
        let id = self.by_name.get(network)?;
        if !visible.contains(&id.as_str()) {
            return None;
        }
        self.networks.get(id)?.names.get(name).map(Vec::as_slice)
    }

    /// What `ip` is, for a PTR query from `src` on network `on`.
    pub fn reverse(&self, on: &str, src: IpAddr, ip: IpAddr) -> Reverse<'_> {
        let mut ours = false;
        for id in self.visible(on, src) {
            let Some(n) = self.networks.get(id) else {
                continue;
            };
            if let Some(name) = n.reverse.get(&ip) {
                return Reverse::Name(name);
            }
            ours |= n
                .network
                .as_ref()
                .is_some_and(|n| n.subnets().any(|s| s.contains(&ip)));
        }
        match ours {
            true => Reverse::Unassigned,
            false => Reverse::Elsewhere,
        }
    }
}

/// An endpoint's names that are stored but not published in DNS, each with why (what its
/// API object's `warnings` say).
pub fn name_warnings(e: &Endpoint) -> Vec<String> {
    let given = std::iter::once((&e.sandbox_name, "sandbox name"))
        .chain(e.aliases.iter().map(|a| (a, "alias")));
    given
        .filter_map(|(name, kind)| {
            let problem = dns_name_problem(name)?;
            Some(format!("{kind} {problem}: stored, not published in DNS"))
        })
        .collect()
}

/// Why `name` cannot be published in DNS, if it cannot: labels of 1 to 63 letters, digits,
/// `-` or `_` (not starting or ending with `-`), 253 characters in all.
pub fn dns_name_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    for label in name.split('.') {
        let chars_ok = label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let problem = match () {
            _ if label.is_empty() => "has an empty label",
            _ if label.len() > 63 => "has a label longer than 63 characters",
            _ if !chars_ok => "has a character DNS names do not allow",
            _ if label.starts_with('-') || label.ends_with('-') => {
                "has a label starting or ending with '-'"
            }
            _ => continue,
        };
        return Some(format!("{name:?} is not a DNS name: it {problem}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{endpoint, net};

    fn ep(n: &Network, id: char, sandbox: &str, ip: &str, aliases: &[&str]) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            id: id.to_string().repeat(64),
            sandbox_id: sandbox.repeat(8),
            sandbox_name: sandbox.into(),
            ipv6: None,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ..endpoint(n, ip, vec![])
        })
    }

    /// Networks a (web, db; db also on b) and b (api): web and db see each other; db sees api.
    fn directory() -> (Directory, Network, Network) {
        let (a, b) = (
            net('a', "10.1.0.0/24", false, true),
            net('b', "10.2.0.0/24", false, true),
        );
        let mut state = State::default();
        state.view.add_network(Arc::new(a.clone()));
        state.view.add_network(Arc::new(b.clone()));
        state
            .view
            .add_endpoint(ep(&a, '1', "web", "10.1.0.2", &["www", "bad..alias"]));
        state.view.add_endpoint(ep(&a, '2', "db", "10.1.0.3", &[]));
        state.view.add_endpoint(ep(&b, '3', "db", "10.2.0.3", &[]));
        state
            .view
            .add_endpoint(ep(&b, '4', "api", "10.2.0.4", &["WWW"]));
        (Directory::build(&state), a, b)
    }

    #[test]
    fn a_querier_sees_the_names_of_its_own_networks_only() {
        let (d, a, b) = directory();
        let web: IpAddr = "10.1.0.2".parse().unwrap();
        let db: IpAddr = "10.1.0.3".parse().unwrap();
        let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
        assert_eq!(d.lookup(&a.id, web, "db").unwrap(), ip("10.1.0.3"));
        assert_eq!(d.lookup(&a.id, web, "www").unwrap(), ip("10.1.0.2"));
        // api is on b, which web is not on: not even as api.nb.
        assert_eq!(d.lookup(&a.id, web, "api"), None);
        assert_eq!(d.lookup(&a.id, web, "api.nb"), None);
        // db is on both: its own network's www first, b's names too, and name.network.
        assert_eq!(d.lookup(&a.id, db, "www").unwrap(), ip("10.1.0.2"));
        assert_eq!(d.lookup(&a.id, db, "api").unwrap(), ip("10.2.0.4"));
        assert_eq!(d.lookup(&a.id, db, "www.nb").unwrap(), ip("10.2.0.4"));
        assert_eq!(
            d.lookup(&b.id, "10.2.0.3".parse().unwrap(), "db.na")
                .unwrap(),
            ip("10.1.0.3")
        );
        // Not published, but listed with the reason.
        assert_eq!(d.lookup(&a.id, web, "bad..alias"), None);
        let entries = &d.network(&a.id).unwrap().entries;
        let bad = entries.iter().find(|e| e.name == "bad..alias").unwrap();
        assert!(bad.unpublished.as_deref().unwrap().contains("empty label"));
    }

    #[test]
    fn reverse_lookups_answer_for_visible_subnets_only() {
        let (d, a, _) = directory();
        let web: IpAddr = "10.1.0.2".parse().unwrap();
        assert_eq!(
            d.reverse(&a.id, web, "10.1.0.3".parse().unwrap()),
            Reverse::Name("db.na")
        );
        assert_eq!(
            d.reverse(&a.id, web, "10.1.0.99".parse().unwrap()),
            Reverse::Unassigned
        );
        assert_eq!(
            d.reverse(&a.id, web, "10.2.0.4".parse().unwrap()),
            Reverse::Elsewhere
        );
    }

    #[test]
    fn dns_names_are_checked_label_by_label() {
        assert_eq!(dns_name_problem("web"), None);
        assert_eq!(dns_name_problem("web_1.local"), None);
        assert!(dns_name_problem("web..x").unwrap().contains("empty label"));
        assert!(dns_name_problem("web.").unwrap().contains("empty label"));
        assert!(dns_name_problem("web-").unwrap().contains("'-'"));
        assert!(dns_name_problem(&"a".repeat(64)).unwrap().contains("63"));
    }
}
