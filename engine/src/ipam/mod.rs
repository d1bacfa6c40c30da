//! IP address management: subnets for networks (from pools or as asked), and addresses for
//! endpoints inside them. Pure: the engine feeds it the committed state and applies its answers.

mod pools;
mod space;

use std::net::IpAddr;

use ipnet::IpNet;

pub use pools::{default_v4, default_v6, first_free_subnet, PoolSpec};
pub use space::{from_u128, to_u128, usable, AddressSpace, FreeSet, StaticRefusal};

use crate::error::{Error, Result};
use crate::model::{IpConfig, IpConfigRequest};

/// One family's subnet already used by a network, for overlap checks.
pub struct UsedSubnet<'a> {
    pub subnet: IpNet,
    pub network: &'a str,
}

/// Turns a request for one family (`ipv4` or `ipv6`, named by `field`) into a checked
/// configuration: an explicit subnet is validated and must overlap no other network's; without
/// one, the first free subnet of `pools` is taken.
pub fn plan_family(
    field: &str,
    req: &IpConfigRequest,
    v6: bool,
    pools: &[PoolSpec],
    used: &[UsedSubnet<'_>],
) -> Result<IpConfig> {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let subnet = match req.subnet {
        Some(subnet) => {
            check_subnet(&format!("{field}.subnet"), subnet, v6)?;
            if let Some(other) = used.iter().find(|u| overlaps(&u.subnet, &subnet)) {
                return Err(Error::conflict(
                    "subnet_overlap",
                    format!(
                        "{field}.subnet {subnet} overlaps {} of network {:?}",
                        other.subnet, other.network
                    ),
                ));
            }
            subnet
        }
        None => {
            for (name, given) in [
                ("gateway", req.gateway.is_some()),
                ("ip_range", req.ip_range.is_some()),
            ] {
                if given {
                    return Err(Error::invalid(
                        format!("{field}.{name}"),
                        format!("requires {field}.subnet"),
                    ));
                }
            }
            let used: Vec<IpNet> = used.iter().map(|u| u.subnet).collect();
            first_free_subnet(pools, &used).ok_or_else(|| {
                let list: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
                Error::conflict(
                    "pool_exhausted",
                    format!("no free {family} subnet left in the default address pools [{}]; give {field}.subnet explicitly", list.join("; ")),
                )
            })?
        }
    };
    let gateway = match req.gateway {
        Some(gw) => check_gateway(&format!("{field}.gateway"), &subnet, gw)?,
        None => space::from_u128(space::usable(&subnet).0, v6),
    };
    if let Some(range) = req.ip_range {
        let f = format!("{field}.ip_range");
        check_family(&f, &range, v6)?;
        check_canonical(&f, &range)?;
        if !subnet.contains(&range) {
            return Err(Error::invalid(
                f,
                format!("{range} is not inside subnet {subnet}"),
            ));
        }
    }
    Ok(IpConfig {
        subnet,
        gateway,
        ip_range: req.ip_range,
    })
}

pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

fn check_family(field: &str, net: &IpNet, v6: bool) -> Result<()> {
    if matches!(net, IpNet::V6(_)) != v6 {
        let want = if v6 { "IPv6" } else { "IPv4" };
        return Err(Error::invalid(
            field,
            format!("{net} is not an {want} network"),
        ));
    }
    Ok(())
}

fn check_canonical(field: &str, net: &IpNet) -> Result<()> {
    if net.trunc() != *net {
        return Err(Error::invalid(
            field,
            format!("{net} has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    Ok(())
}

/// Ranges no bridge network may use: loopback, multicast, "this network", broadcast.
const RESERVED: [&str; 7] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "224.0.0.0/3",
    "::/127",
    "ff00::/8",
    "::ffff:0:0/96",
    "fe80::/10",
];

fn check_subnet(field: &str, subnet: IpNet, v6: bool) -> Result<()> {
    check_family(field, &subnet, v6)?;
    check_canonical(field, &subnet)?;
    let max = if v6 { 126 } else { 30 };
    if subnet.prefix_len() > max {
        return Err(Error::invalid(
            field,
            format!("{subnet} is too small: the prefix must be /{max} or shorter"),
        ));
    }
    let reserved = RESERVED.iter().map(|r| r.parse::<IpNet>().unwrap());
    if let Some(r) = reserved.into_iter().find(|r| overlaps(r, &subnet)) {
        return Err(Error::invalid(
            field,
            format!("{subnet} overlaps the reserved range {r}"),
        ));
    }
    Ok(())
}

fn check_gateway(field: &str, subnet: &IpNet, gw: IpAddr) -> Result<IpAddr> {
    let (lo, hi) = space::usable(subnet);
    let v = space::to_u128(gw);
    if gw.is_ipv6() != subnet.network().is_ipv6() || !subnet.contains(&gw) {
        return Err(Error::invalid(
            field,
            format!("{gw} is not inside subnet {subnet}"),
        ));
    }
    if v < lo || v > hi {
        return Err(Error::invalid(
            field,
            format!("{gw} is the network or broadcast address of {subnet}"),
        ));
    }
    Ok(gw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(subnet: Option<&str>, gateway: Option<&str>, range: Option<&str>) -> IpConfigRequest {
        IpConfigRequest {
            subnet: subnet.map(|s| s.parse().unwrap()),
            gateway: gateway.map(|s| s.parse().unwrap()),
            ip_range: range.map(|s| s.parse().unwrap()),
        }
    }

    fn invalid_field(r: Result<IpConfig>) -> String {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn explicit_subnet_gets_first_host_as_gateway() {
        let c = plan_family(
            "ipv4",
            &req(Some("10.9.0.0/24"), None, None),
            false,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.gateway, "10.9.0.1".parse::<IpAddr>().unwrap());
        let c = plan_family(
            "ipv6",
            &req(Some("fd00:1::/64"), Some("fd00:1::fe"), None),
            true,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(c.gateway, "fd00:1::fe".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn pool_subnet_when_none_given() {
        let used = [UsedSubnet {
            subnet: "172.17.0.0/16".parse().unwrap(),
            network: "bridge",
        }];
        let c = plan_family("ipv4", &req(None, None, None), false, &default_v4(), &used).unwrap();
        assert_eq!(c.subnet, "172.18.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!(c.gateway, "172.18.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn exhaustion_names_the_pools() {
        let pools = vec![PoolSpec {
            base: "10.0.0.0/24".parse().unwrap(),
            size: 24,
        }];
        let used = [UsedSubnet {
            subnet: "10.0.0.0/24".parse().unwrap(),
            network: "a",
        }];
        match plan_family("ipv4", &req(None, None, None), false, &pools, &used) {
            Err(Error::Conflict {
                code: "pool_exhausted",
                message,
            }) => assert!(message.contains("base=10.0.0.0/24,size=24"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlap_is_a_conflict_naming_the_other_network() {
        let used = [UsedSubnet {
            subnet: "10.0.0.0/16".parse().unwrap(),
            network: "big",
        }];
        match plan_family(
            "ipv4",
            &req(Some("10.0.5.0/24"), None, None),
            false,
            &[],
            &used,
        ) {
            Err(Error::Conflict {
                code: "subnet_overlap",
                message,
            }) => assert!(message.contains("\"big\""), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (req(Some("10.0.0.5/24"), None, None), "ipv4.subnet"),
            (req(Some("10.0.0.0/31"), None, None), "ipv4.subnet"),
            (req(Some("127.1.0.0/16"), None, None), "ipv4.subnet"),
            (req(Some("fd00::/64"), None, None), "ipv4.subnet"),
            (
                req(Some("10.0.0.0/24"), Some("10.0.1.1"), None),
                "ipv4.gateway",
            ),
            (
                req(Some("10.0.0.0/24"), Some("10.0.0.0"), None),
                "ipv4.gateway",
            ),
            (
                req(Some("10.0.0.0/24"), Some("10.0.0.255"), None),
                "ipv4.gateway",
            ),
            (
                req(Some("10.0.0.0/24"), None, Some("10.0.1.0/25")),
                "ipv4.ip_range",
            ),
            (
                req(Some("10.0.0.0/24"), None, Some("10.0.0.1/25")),
                "ipv4.ip_range",
            ),
            (req(None, Some("10.0.0.1"), None), "ipv4.gateway"),
            (req(None, None, Some("10.0.0.0/25")), "ipv4.ip_range"),
        ];
        for (r, field) in cases {
            assert_eq!(
                invalid_field(plan_family("ipv4", &r, false, &default_v4(), &[])),
                field,
                "{r:?}"
            );
        }
    }
}
