//! `wasmnet serve`'s names settings: the embedded DNS server, its upstream resolvers, and how
//! the sandboxes wasmnet creates appear to `ip netns` (flags, environment, or the config
//! file's `[names]` table).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use wasmnet_dns::{DnsConfig, MAX_UPSTREAMS};
use wasmnet_engine::NamesConfig;

#[derive(Args, Debug, Default)]
pub struct NamesArgs {
    /// The embedded DNS server on every network's gateway: on or off [default: on].
    #[arg(long, env = "WASMNET_DNS")]
    dns: Option<String>,
    /// An upstream resolver (IP or IP:PORT) names wasmnet does not serve are forwarded to;
    /// repeatable, at most three [default: the nameservers of /etc/resolv.conf].
    #[arg(
        long = "dns-upstream",
        env = "WASMNET_DNS_UPSTREAMS",
        value_delimiter = ' '
    )]
    dns_upstreams: Vec<String>,
    /// Queries a second one source may make (bursts of twice that); 0 for no limit
    /// [default: 10000].
    #[arg(long, env = "WASMNET_DNS_RATE_LIMIT")]
    dns_rate_limit: Option<u32>,
    /// Where sandboxes wasmnet creates appear to `ip netns`; `off` for nowhere
    /// [default: /run/netns].
    #[arg(long, env = "WASMNET_NETNS_DIR")]
    netns_dir: Option<PathBuf>,
    /// Their names there: this prefix and the sandbox's name [default: wasmnet-].
    #[arg(long, env = "WASMNET_NETNS_PREFIX")]
    netns_prefix: Option<String>,
    /// `ip netns exec`'s per-namespace /etc, where each gets its resolv.conf
    /// [default: /etc/netns].
    #[arg(long, env = "WASMNET_NETNS_ETC_DIR")]
    netns_etc_dir: Option<PathBuf>,
    /// The least time, in seconds, an address answered for a policy's `fqdn` peer stays
    /// allowed, whatever its TTL [default: 5].
    #[arg(long, env = "WASMNET_FQDN_MIN_TTL")]
    fqdn_min_ttl: Option<u64>,
    /// The most time, in seconds, it stays without being answered again [default: 3600].
    #[arg(long, env = "WASMNET_FQDN_MAX_TTL")]
    fqdn_max_ttl: Option<u64>,
}

/// The config file's `[names]` table, named as the flags are.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NamesFile {
    dns: Option<String>,
    dns_upstreams: Option<Vec<String>>,
    dns_rate_limit: Option<u32>,
    netns_dir: Option<PathBuf>,
    netns_prefix: Option<String>,
    netns_etc_dir: Option<PathBuf>,
    fqdn_min_ttl: Option<u64>,
    fqdn_max_ttl: Option<u64>,
}

/// The engine's names settings, and the DNS server's (None when it is off).
pub fn names_settings(
    a: NamesArgs,
    f: Option<NamesFile>,
) -> Result<(NamesConfig, Option<DnsConfig>), String> {
    let f = f.unwrap_or_default();
    let d = NamesConfig::default();
    let dns = match a.dns.or(f.dns).as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(format!("--dns {other:?}: on or off")),
    };
    let given = match a.dns_upstreams.is_empty() {
        true => f.dns_upstreams,
        false => Some(a.dns_upstreams),
    };
    let upstreams = match given {
        Some(list) => list
            .iter()
            .map(|s| upstream(s))
            .collect::<Result<Vec<_>, _>>()?,
        None => {
            resolv_conf_upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
        }
    };
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(format!(
            "--dns-upstream: at most {MAX_UPSTREAMS} upstream resolvers"
        ));
    }
    let netns_dir = a.netns_dir.or(f.netns_dir).or(d.netns_dir);
    let names = NamesConfig {
        netns_dir: netns_dir.filter(|p| p.as_os_str() != "off"),
        netns_prefix: a.netns_prefix.or(f.netns_prefix).unwrap_or(d.netns_prefix),
        etc_dir: a.netns_etc_dir.or(f.netns_etc_dir).unwrap_or(d.etc_dir),
        dns,
        upstreams: upstreams.clone(),
    };
    if names.netns_prefix.contains('/') {
        return Err("--netns-prefix: no '/'".into());
    }
    let mut server = DnsConfig::default();
    server.upstreams.servers = upstreams;
    if let Some(rate) = a.dns_rate_limit.or(f.dns_rate_limit) {
        server.rate_limit = rate;
    }
    let ttl = &mut server.fqdn_ttl;
    let secs = std::time::Duration::from_secs;
    ttl.min = a.fqdn_min_ttl.or(f.fqdn_min_ttl).map_or(ttl.min, secs);
    ttl.max = a.fqdn_max_ttl.or(f.fqdn_max_ttl).map_or(ttl.max, secs);
    if ttl.min > ttl.max || ttl.max > secs(7 * 86_400) {
        return Err(format!(
            "--fqdn-min-ttl {} and --fqdn-max-ttl {}: min at most max, max at most 604800 (a week)",
            ttl.min.as_secs(),
            ttl.max.as_secs()
        ));
    }
    Ok((names, dns.then_some(server)))
}

/// `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
fn upstream(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("--dns-upstream {s:?}: not IP or IP:PORT"))
}

/// The first three `nameserver` lines of a resolv.conf.
fn resolv_conf_upstreams(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_UPSTREAMS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_from_flags_or_resolv_conf() {
        assert_eq!(
            upstream("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            upstream("[fd00::1]:5353").unwrap(),
            "[fd00::1]:5353".parse().unwrap()
        );
        assert!(upstream("example.com").unwrap_err().contains("not IP"));
        let conf = "# x\nsearch lan\nnameserver 1.1.1.1\nnameserver fe80::1%eth0\nnameserver 8.8.8.8\nnameserver 9.9.9.9\n";
        let got = resolv_conf_upstreams(conf);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], "[fe80::1]:53".parse().unwrap());
        let many = NamesArgs {
            dns_upstreams: vec![
                "1.1.1.1".into(),
                "1.0.0.1".into(),
                "8.8.8.8".into(),
                "8.8.4.4".into(),
            ],
            ..NamesArgs::default()
        };
        assert!(names_settings(many, None)
            .unwrap_err()
            .contains("at most 3"));
    }

    #[test]
    fn fqdn_ttl_bounds_from_flags_are_checked() {
        let args = |min, max| NamesArgs {
            dns_upstreams: vec!["10.0.0.1".into()],
            fqdn_min_ttl: min,
            fqdn_max_ttl: max,
            ..NamesArgs::default()
        };
        let (_, dns) = names_settings(args(Some(1), Some(30)), None).unwrap();
        let ttl = dns.unwrap().fqdn_ttl;
        assert_eq!((ttl.min.as_secs(), ttl.max.as_secs()), (1, 30));
        let (_, dns) = names_settings(args(None, None), None).unwrap();
        assert_eq!(dns.unwrap().fqdn_ttl, Default::default());
        let e = names_settings(args(Some(60), Some(30)), None).unwrap_err();
        assert!(e.contains("min at most max"), "{e}");
        let e = names_settings(args(None, Some(10_000_000)), None).unwrap_err();
        assert!(e.contains("a week"), "{e}");
    }
}
