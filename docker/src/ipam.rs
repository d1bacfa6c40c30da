//! The IPAM driver: Docker's pools are wasmnet's subnets (the same default pools, the same
//! overlap and exhaustion rules), its addresses are free addresses of the network made on
//! the pool. Pools and addresses handed out but not yet used by an endpoint are kept in the
//! engine's store, so a restart loses none.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wasmnet_engine::ipam::{first_free_subnet, from_u128, overlaps, to_u128, usable};
use wasmnet_engine::Engine;

use crate::protocol::{label, PoolAddress, RequestPool};
use crate::translate::address;

/// The store's kind for pool records.
pub const POOL: &str = "docker-pool";
/// Docker's address spaces are names only; wasmnet has one space.
pub const LOCAL_SPACE: &str = "wasmnet-local";
pub const GLOBAL_SPACE: &str = "wasmnet-global";

/// A pool Docker asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    pub id: String,
    pub subnet: IpNet,
    /// `--ip-range`: endpoint addresses come from here.
    pub range: Option<IpNet>,
    pub gateway: Option<IpAddr>,
    /// Addresses handed out (the gateway's not among them).
    pub given: BTreeSet<IpAddr>,
}

pub fn capabilities() -> Value {
    json!({"RequiresMACAddress": false, "RequiresRequestReplay": false})
}

pub fn address_spaces() -> Value {
    json!({"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE})
}

/// Every subnet in use: the networks' and the pools'.
fn used_subnets(engine: &Engine, pools: &[Pool]) -> Vec<(IpNet, String)> {
    let state = engine.state();
    let nets = state.view().networks().iter_from(None);
    let mut used: Vec<(IpNet, String)> = nets
        .flat_map(|n| {
            let v6 = n
                .ipv6
                .as_ref()
                .map(|c| (c.subnet, format!("network {:?}", n.name)));
            std::iter::once((n.ipv4.subnet, format!("network {:?}", n.name))).chain(v6)
        })
        .collect();
    used.extend(pools.iter().map(|p| (p.subnet, format!("pool {}", p.id))));
    used
}

/// RequestPool: the pool asked for, if it overlaps nothing, else the first free default one.
pub fn request_pool(engine: &Engine, pools: &[Pool], req: &RequestPool) -> Result<Pool, String> {
    let used = used_subnets(engine, pools);
    let subnet = match req.pool.as_str() {
        "" => {
            if !req.sub_pool.is_empty() {
                return Err("SubPool (--ip-range) needs Pool (--subnet)".into());
            }
            let cfg = engine.config();
            let (defaults, family) = match req.v6 {
                true => (&cfg.pools_v6, "IPv6"),
                false => (&cfg.pools_v4, "IPv4"),
            };
            let taken: Vec<IpNet> = used.iter().map(|(s, _)| *s).collect();
            first_free_subnet(defaults, &taken).ok_or_else(|| {
                format!("no free {family} subnet left in wasmnet's default address pools; give --subnet")
            })?
        }
        text => cidr("Pool", text, req.v6)?,
    };
    if let Some((s, owner)) = used.iter().find(|(s, _)| overlaps(s, &subnet)) {
        return Err(format!("subnet {subnet} overlaps {s} of {owner}"));
    }
    let range = match req.sub_pool.as_str() {
        "" => None,
        text => {
            let r = cidr("SubPool", text, req.v6)?;
            if !subnet.contains(&r) {
                return Err(format!("SubPool {r} is not inside Pool {subnet}"));
            }
            Some(r)
        }
    };
    Ok(Pool {
        id: format!("{LOCAL_SPACE}/{subnet}"),
        subnet,
        range,
        gateway: None,
        given: BTreeSet::new(),
    })
}

fn cidr(field: &str, text: &str, v6: bool) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("{field}: {text:?} is not a CIDR"))?;
    if net.trunc() != net {
        return Err(format!(
            "{field}: {net} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    if matches!(net, IpNet::V6(_)) != v6 {
        return Err(format!("{field}: {net} is not of the family asked for"));
    }
    Ok(net)
}

/// RequestAddress: the gateway (asked for by type) or an endpoint's address, the one asked
/// for when it is free; returns the address with the pool's prefix length.
pub fn request_address(
    engine: &Engine,
    pool: &mut Pool,
    req: &PoolAddress,
) -> Result<String, String> {
    let opts = req.options.clone().unwrap_or_default();
    let is_gateway =
        opts.get(label::REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(label::GATEWAY);
    let taken = taken_in(engine, pool);
    let addr = match req.address.as_str() {
        "" if is_gateway => from_u128(usable(&pool.subnet).0, pool.subnet.addr().is_ipv6()),
        "" => free_address(pool, &taken)?,
        text => {
            let a = address("Address", text)?;
            let (lo, hi) = usable(&pool.subnet);
            if !(lo..=hi).contains(&to_u128(a)) {
                return Err(format!("{a} is not a usable address of {}", pool.subnet));
            }
            if taken.contains(&a) {
                return Err(format!("{a} is already in use in {}", pool.subnet));
            }
            a
        }
    };
    match is_gateway {
        true => pool.gateway = Some(addr),
        false => {
            pool.given.insert(addr);
        }
    }
    Ok(format!("{addr}/{}", pool.subnet.prefix_len()))
}

/// Addresses of the pool in use: the gateway, those handed out, and those of the endpoints
/// of the network on the pool (connected through wasmnet's API as well).
fn taken_in(engine: &Engine, pool: &Pool) -> BTreeSet<IpAddr> {
    let state = engine.state();
    let v = state.view();
    let mut taken: BTreeSet<IpAddr> = pool.given.iter().copied().chain(pool.gateway).collect();
    let network = v.networks().iter_from(None).find(|n| {
        n.ipv4.subnet == pool.subnet || n.ipv6.as_ref().is_some_and(|c| c.subnet == pool.subnet)
    });
    if let Some(n) = network {
        taken.insert(n.ipv4.gateway);
        taken.extend(n.ipv6.as_ref().map(|c| c.gateway));
        for e in v.endpoints_of_network(&n.id) {
            taken.extend([e.ipv4, e.ipv6].into_iter().flatten());
        }
    }
    taken
}

/// At most this many addresses are looked at for a free one (a /12's worth): bounded time.
const SEARCH_LIMIT: u128 = 1 << 20;

fn free_address(pool: &Pool, taken: &BTreeSet<IpAddr>) -> Result<IpAddr, String> {
    let v6 = pool.subnet.addr().is_ipv6();
    let (lo, hi) = usable(&pool.subnet);
    let (lo, hi) = match pool.range {
        Some(r) => {
            let (a, b) = usable(&r);
            (a.max(lo), b.min(hi))
        }
        None => (lo, hi),
    };
    let end = hi.min(lo.saturating_add(SEARCH_LIMIT));
    (lo..=end)
        .map(|n| from_u128(n, v6))
        .find(|a| !taken.contains(a))
        .ok_or_else(|| {
            format!(
                "no free address left in {}",
                pool.range.unwrap_or(pool.subnet)
            )
        })
}

/// ReleaseAddress: the address is free again (an endpoint still using it keeps it).
pub fn release_address(pool: &mut Pool, text: &str) -> Result<(), String> {
    let a = address("Address", text)?;
    if pool.gateway == Some(a) {
        pool.gateway = None;
    } else {
        pool.given.remove(&a);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(subnet: &str, range: Option<&str>) -> Pool {
        Pool {
            id: "p".into(),
            subnet: subnet.parse().unwrap(),
            range: range.map(|r| r.parse().unwrap()),
            gateway: None,
            given: BTreeSet::new(),
        }
    }

    #[test]
    fn free_addresses_skip_what_is_taken_and_stay_in_the_range() {
        let p = pool("10.1.0.0/24", None);
        let taken: BTreeSet<IpAddr> = ["10.1.0.1", "10.1.0.2"].map(|a| a.parse().unwrap()).into();
        assert_eq!(free_address(&p, &taken).unwrap().to_string(), "10.1.0.3");
        let r = pool("10.1.0.0/24", Some("10.1.0.128/25"));
        assert_eq!(free_address(&r, &taken).unwrap().to_string(), "10.1.0.129");
        let tiny = pool("10.1.0.0/30", None);
        let all: BTreeSet<IpAddr> = ["10.1.0.1", "10.1.0.2"].map(|a| a.parse().unwrap()).into();
        assert!(free_address(&tiny, &all)
            .unwrap_err()
            .contains("no free address"));
        let v6 = pool("fd00::/64", None);
        assert_eq!(
            free_address(&v6, &BTreeSet::new()).unwrap().to_string(),
            "fd00::1"
        );
    }

    #[test]
    fn pools_are_checked_cidrs_and_releases_free_the_gateway_or_an_address() {
        assert!(cidr("Pool", "10.1.0.1/24", false)
            .unwrap_err()
            .contains("host bits"));
        assert!(cidr("Pool", "fd00::/64", false)
            .unwrap_err()
            .contains("family"));
        assert!(cidr("Pool", "nope", false)
            .unwrap_err()
            .contains("not a CIDR"));
        let mut p = pool("10.1.0.0/24", None);
        p.gateway = Some("10.1.0.1".parse().unwrap());
        p.given.insert("10.1.0.2".parse().unwrap());
        release_address(&mut p, "10.1.0.2/24").unwrap();
        assert!(p.given.is_empty() && p.gateway.is_some());
        release_address(&mut p, "10.1.0.1").unwrap();
        assert!(p.gateway.is_none());
        assert!(release_address(&mut p, "x").is_err());
    }
}
