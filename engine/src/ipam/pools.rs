//! Default address pools, as Docker's `default-address-pools`: subnets for networks created
//! without one are carved, in order, out of a list of (base, size) pools.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::space::{bounds, from_u128};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub base: IpNet,
    /// Prefix length of the subnets carved from `base`.
    pub size: u8,
}

impl PoolSpec {
    pub fn check(&self) -> Result<(), String> {
        let (base, max) = match self.base {
            IpNet::V4(_) => (self.base.prefix_len(), 30),
            IpNet::V6(_) => (self.base.prefix_len(), 126),
        };
        if self.base.trunc() != self.base {
            return Err(format!("pool base {} has host bits set", self.base));
        }
        if self.size < base || self.size > max {
            return Err(format!(
                "pool {}: size /{} must be between /{base} and /{max}",
                self.base, self.size
            ));
        }
        Ok(())
    }
}

impl fmt::Display for PoolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

/// Parses dockerd's syntax, `base=10.10.0.0/16,size=24`.
impl FromStr for PoolSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut base, mut size) = (None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => {
                    base = Some(
                        v.parse::<IpNet>()
                            .map_err(|e| format!("pool base {v:?}: {e}"))?,
                    )
                }
                Some(("size", v)) => {
                    size = Some(
                        v.parse::<u8>()
                            .map_err(|_| format!("pool size {v:?} is not a prefix length"))?,
                    )
                }
                _ => return Err(format!("{s:?} is not a pool (expected base=CIDR,size=N)")),
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            return Err(format!("{s:?} is not a pool (expected base=CIDR,size=N)"));
        };
        let pool = PoolSpec { base, size };
        pool.check()?;
        Ok(pool)
    }
}

/// Docker's default IPv4 pools.
pub fn default_v4() -> Vec<PoolSpec> {
    [
        ("172.17.0.0/16", 16),
        ("172.18.0.0/15", 16),
        ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16),
        ("172.28.0.0/14", 16),
        ("192.168.0.0/16", 20),
    ]
    .into_iter()
    .map(|(b, size)| PoolSpec {
        base: b.parse().unwrap(),
        size,
    })
    .collect()
}

/// A unique-local (fd00::/8) pool for IPv6 networks, cut into /64s.
pub fn default_v6() -> Vec<PoolSpec> {
    vec![PoolSpec {
        base: "fd57:4153:4d00::/40".parse().unwrap(),
        size: 64,
    }]
}

/// The first subnet of any pool that overlaps none of `used` (same family as the pools).
pub fn first_free_subnet(pools: &[PoolSpec], used: &[IpNet]) -> Option<IpNet> {
    let taken = |v6: bool| {
        let mut t: Vec<(u128, u128)> = used.iter().filter(|n| is_v6(n) == v6).map(bounds).collect();
        t.sort_unstable();
        t
    };
    let (taken4, taken6) = (taken(false), taken(true));
    pools.iter().find_map(|pool| {
        first_free_in_pool(pool, if is_v6(&pool.base) { &taken6 } else { &taken4 })
    })
}

fn is_v6(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(_))
}

/// Walks the pool's candidate subnets and the sorted used ranges together: O(pools + used).
fn first_free_in_pool(pool: &PoolSpec, taken: &[(u128, u128)]) -> Option<IpNet> {
    let v6 = is_v6(&pool.base);
    let bits = if v6 { 128 } else { 32 };
    let step: u128 = 1u128.checked_shl(bits - pool.size as u32)?;
    let (base_lo, base_hi) = bounds(&pool.base);
    let mut cand = base_lo;
    for &(lo, hi) in taken.iter().filter(|(_, hi)| *hi >= base_lo) {
        if cand.checked_add(step - 1)? < lo {
            break;
        }
        if cand <= hi {
            // Next candidate: the first aligned block after this used range.
            cand = (hi / step).checked_add(1)?.checked_mul(step)?;
        }
    }
    let last = cand.checked_add(step - 1)?;
    (last <= base_hi).then(|| IpNet::new(from_u128(cand, v6), pool.size).expect("valid prefix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_dockerd_syntax() {
        let p: PoolSpec = "base=10.10.0.0/16,size=24".parse().unwrap();
        assert_eq!(p.to_string(), "base=10.10.0.0/16,size=24");
        assert!("base=10.10.0.0/16".parse::<PoolSpec>().is_err());
        assert!("base=10.10.0.0/16,size=8".parse::<PoolSpec>().is_err());
        assert!("base=10.10.0.1/16,size=24".parse::<PoolSpec>().is_err());
        assert!("base=10.10.0.0/16,size=31".parse::<PoolSpec>().is_err());
    }

    #[test]
    fn carves_in_order_around_used_subnets() {
        let pools = vec![PoolSpec {
            base: "10.0.0.0/22".parse().unwrap(),
            size: 24,
        }];
        assert_eq!(
            first_free_subnet(&pools, &[]),
            Some("10.0.0.0/24".parse().unwrap())
        );
        let used = nets(&["10.0.0.0/24", "10.0.1.128/25", "192.168.0.0/16"]);
        assert_eq!(
            first_free_subnet(&pools, &used),
            Some("10.0.2.0/24".parse().unwrap())
        );
        let used = nets(&["10.0.0.0/23", "10.0.3.0/24"]);
        assert_eq!(
            first_free_subnet(&pools, &used),
            Some("10.0.2.0/24".parse().unwrap())
        );
        let used = nets(&["10.0.0.0/8"]);
        assert_eq!(first_free_subnet(&pools, &used), None);
    }

    #[test]
    fn moves_to_the_next_pool_when_one_is_full() {
        let pools = default_v4();
        let used = nets(&["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]);
        assert_eq!(
            first_free_subnet(&pools, &used),
            Some("172.20.0.0/16".parse().unwrap())
        );
        let all: Vec<IpNet> = nets(&["172.16.0.0/12"]);
        assert_eq!(
            first_free_subnet(&pools, &all),
            Some("192.168.0.0/20".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_pool_gives_64s() {
        let got = first_free_subnet(&default_v6(), &nets(&["fd57:4153:4d00::/64"])).unwrap();
        assert_eq!(got, "fd57:4153:4d00:1::/64".parse::<IpNet>().unwrap());
    }
}
