//! A network's driver options: the string map clients send, get back and SQLite keeps
//! ([`Options`], which serialises as that map), and what it says, typed ([`NetworkOptions`]),
//! parsed once — when the map is validated, or a stored or mirrored network is read back —
//! and never again by the drivers, the firewall or the cluster side.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use super::validate::validate_options;
use super::Labels;
use crate::error::{Error, Result};

/// What a network's options say; every field has Docker's default when the option is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// `mtu`: the bridge's and the endpoints' MTU (an overlay's VXLAN device's too).
    pub mtu: Option<u32>,
    /// `icc`: whether endpoints of the network talk to each other (default true).
    pub icc: bool,
    /// `masquerade`: whether outbound traffic is masqueraded (default true).
    pub masquerade: bool,
    /// `vni`: an overlay network's VXLAN network identifier.
    pub vni: Option<u32>,
    /// `dns`: whether the embedded DNS server answers on the network's gateway (default true).
    pub dns: bool,
    /// `dns_forward`: whether names it does not serve are forwarded upstream (default: yes,
    /// but not on internal networks, which reach nothing outside).
    pub dns_forward: Option<bool>,
    /// `dns_redirect`: DNS (udp and tcp port 53) from the network's sandboxes to any address
    /// goes to its gateway's server instead (default false), so a resolver a sandbox names
    /// itself still answers through wasmnet — and feeds the policies' `fqdn` sets.
    pub dns_redirect: bool,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            mtu: None,
            icc: true,
            masquerade: true,
            vni: None,
            dns: true,
            dns_forward: None,
            dns_redirect: false,
        }
    }
}

/// A network's options as given (served and stored as they are), with what they say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Labels", into = "Labels")]
pub struct Options {
    map: Labels,
    parsed: NetworkOptions,
}

impl Options {
    /// Validates the map (unknown options and bad values are refused, naming the field) and
    /// keeps what it says.
    pub fn parse(map: Labels) -> Result<Options> {
        let parsed = validate_options(&map)?;
        Ok(Options { map, parsed })
    }

    /// What the options say.
    pub fn typed(&self) -> NetworkOptions {
        self.parsed
    }

    pub fn mtu(&self) -> Option<u32> {
        self.parsed.mtu
    }

    pub fn icc(&self) -> bool {
        self.parsed.icc
    }

    pub fn masquerade(&self) -> bool {
        self.parsed.masquerade
    }

    /// `altname`: the bridge's alternative name (checked when the options were parsed).
    pub fn altname(&self) -> Option<&str> {
        self.map.get("altname").map(String::as_str)
    }

    pub fn dns(&self) -> bool {
        self.parsed.dns
    }

    pub fn vni(&self) -> Option<u32> {
        self.parsed.vni
    }

    /// Sets `key` to `value`, checked as a client's would be.
    pub fn set(&mut self, key: &str, value: String) -> Result<()> {
        let mut map = self.map.clone();
        map.insert(key.to_string(), value);
        *self = Options::parse(map)?;
        Ok(())
    }
}

impl Deref for Options {
    type Target = Labels;

    /// The map as given.
    fn deref(&self) -> &Labels {
        &self.map
    }
}

impl<'a> IntoIterator for &'a Options {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl TryFrom<Labels> for Options {
    type Error = Error;

    fn try_from(map: Labels) -> Result<Options> {
        Options::parse(map)
    }
}

impl From<Options> for Labels {
    fn from(o: Options) -> Labels {
        o.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Labels {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parsed_once_and_served_as_given() {
        let o = Options::parse(map(&[("mtu", "1400"), ("icc", "false")])).unwrap();
        assert_eq!(
            o.typed(),
            NetworkOptions {
                mtu: Some(1400),
                icc: false,
                ..NetworkOptions::default()
            }
        );
        let redirect = Options::parse(map(&[("dns_redirect", "true")])).unwrap();
        assert!(redirect.typed().dns_redirect && !NetworkOptions::default().dns_redirect);
        assert!(Options::parse(map(&[("dns_redirect", "yes")])).is_err());
        let dns = Options::parse(map(&[("dns", "false"), ("dns_forward", "true")])).unwrap();
        assert_eq!(
            (dns.typed().dns, dns.typed().dns_forward),
            (false, Some(true))
        );
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json, serde_json::json!({"icc": "false", "mtu": "1400"}));
        let back: Options = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
        assert!(serde_json::from_value::<Options>(serde_json::json!({"colour": "x"})).is_err());
        assert_eq!(Options::default().typed(), NetworkOptions::default());
    }

    #[test]
    fn set_keeps_map_and_types_together() {
        let mut o = Options::default();
        o.set("vni", "4096".into()).unwrap();
        assert_eq!(
            (o.vni(), o.get("vni").map(String::as_str)),
            (Some(4096), Some("4096"))
        );
        assert!(o.set("mtu", "10".into()).is_err());
        assert_eq!(o.mtu(), None, "a refused value changes nothing");
    }
}
