//! Address allocation inside one subnet: a set of free addresses kept as disjoint intervals,
//! so that finding, taking and releasing an address costs O(log n) however full the subnet is.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::IpConfig;

/// Disjoint, non-adjacent closed intervals `start ..= end` of free values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeSet {
    intervals: BTreeMap<u128, u128>,
    len: u128,
}

impl FreeSet {
    /// Every value of `lo ..= hi` free (empty when `lo > hi`).
    pub fn with_range(lo: u128, hi: u128) -> Self {
        let mut set = FreeSet::default();
        if lo <= hi {
            set.intervals.insert(lo, hi);
            set.len = hi - lo + 1;
        }
        set
    }

    /// How many values are free.
    pub fn len(&self) -> u128 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The interval that holds `value`, if it is free.
    fn interval_of(&self, value: u128) -> Option<(u128, u128)> {
        let (&start, &end) = self.intervals.range(..=value).next_back()?;
        (end >= value).then_some((start, end))
    }

    pub fn contains(&self, value: u128) -> bool {
        self.interval_of(value).is_some()
    }

    /// The lowest free value in `lo ..= hi`.
    pub fn first_in(&self, lo: u128, hi: u128) -> Option<u128> {
        if self.contains(lo) {
            return Some(lo);
        }
        let (&start, _) = self.intervals.range(lo..).next()?;
        (start <= hi).then_some(start)
    }

    /// Marks `value` as used; false when it was not free.
    pub fn take(&mut self, value: u128) -> bool {
        let Some((start, end)) = self.interval_of(value) else {
            return false;
        };
        self.intervals.remove(&start);
        if start < value {
            self.intervals.insert(start, value - 1);
        }
        if value < end {
            self.intervals.insert(value + 1, end);
        }
        self.len -= 1;
        true
    }

    /// Marks `value` as free again, merging with its neighbours; false when it already was.
    pub fn release(&mut self, value: u128) -> bool {
        if self.contains(value) {
            return false;
        }
        let mut start = value;
        let mut end = value;
        if let Some((&ls, &le)) = self.intervals.range(..value).next_back() {
            if le.checked_add(1) == Some(value) {
                start = ls;
            }
        }
        if let Some(next) = value.checked_add(1) {
            if let Some(re) = self.intervals.remove(&next) {
                end = re;
            }
        }
        self.intervals.insert(start, end);
        self.len += 1;
        true
    }
}

pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn from_u128(value: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    }
}

/// First and last address of a subnet as numbers.
pub fn bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The addresses of a subnet that may be given to hosts: all but the network address (and, in
/// IPv4, the broadcast address).
pub fn usable(net: &IpNet) -> (u128, u128) {
    let (lo, hi) = bounds(net);
    match net {
        IpNet::V4(_) => (lo + 1, hi - 1),
        IpNet::V6(_) => (lo + 1, hi),
    }
}

/// Why a static address was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StaticRefusal {
    OutsideSubnet,
    Reserved,
    InUse,
}

/// The address space of one family of one network.
#[derive(Clone, Debug)]
pub struct AddressSpace {
    v6: bool,
    usable: (u128, u128),
    dynamic: (u128, u128),
    gateway: u128,
    free: FreeSet,
}

impl AddressSpace {
    /// A space with every usable address free but the gateway.
    pub fn new(cfg: &IpConfig) -> Self {
        let usable = usable(&cfg.subnet);
        let dynamic = match &cfg.ip_range {
            Some(range) => {
                let (lo, hi) = bounds(range);
                (lo.max(usable.0), hi.min(usable.1))
            }
            None => usable,
        };
        let gateway = to_u128(cfg.gateway);
        let mut free = FreeSet::with_range(usable.0, usable.1);
        free.take(gateway);
        AddressSpace {
            v6: cfg.subnet.network().is_ipv6(),
            usable,
            dynamic,
            gateway,
            free,
        }
    }

    /// The address a dynamic allocation would get now (not yet taken).
    pub fn next_free(&self) -> Option<IpAddr> {
        let (lo, hi) = self.dynamic;
        self.free.first_in(lo, hi).map(|v| from_u128(v, self.v6))
    }

    /// Whether `addr` may be given statically now.
    pub fn check_static(&self, addr: IpAddr) -> Result<(), StaticRefusal> {
        let value = to_u128(addr);
        if addr.is_ipv6() != self.v6 || value < self.usable.0 - 1 || value > self.usable.1 + 1 {
            return Err(StaticRefusal::OutsideSubnet);
        }
        if value < self.usable.0 || value > self.usable.1 || value == self.gateway {
            return Err(StaticRefusal::Reserved);
        }
        if !self.free.contains(value) {
            return Err(StaticRefusal::InUse);
        }
        Ok(())
    }

    /// Marks `addr` used; false when it was not free.
    pub fn take(&mut self, addr: IpAddr) -> bool {
        addr.is_ipv6() == self.v6 && self.free.take(to_u128(addr))
    }

    /// Frees `addr` again; false when it was not in use (or is the gateway).
    pub fn release(&mut self, addr: IpAddr) -> bool {
        let value = to_u128(addr);
        let inside = value >= self.usable.0 && value <= self.usable.1 && value != self.gateway;
        addr.is_ipv6() == self.v6 && inside && self.free.release(value)
    }

    /// (used, total) host addresses, the gateway counted as used.
    pub fn usage(&self) -> (u128, u128) {
        let total = self.usable.1 - self.usable.0 + 1;
        (total - self.free.len(), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn cfg(subnet: &str, gateway: &str, range: Option<&str>) -> IpConfig {
        IpConfig {
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            ip_range: range.map(|r| r.parse().unwrap()),
        }
    }

    fn allocate(space: &mut AddressSpace) -> Option<IpAddr> {
        let addr = space.next_free()?;
        assert!(space.take(addr));
        Some(addr)
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_reserved() {
        let mut s = AddressSpace::new(&cfg("10.0.0.0/29", "10.0.0.1", None));
        let got: Vec<_> = std::iter::from_fn(|| allocate(&mut s)).collect();
        let want: Vec<IpAddr> = (2..=6)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(s.usage(), (6, 6));
    }

    #[test]
    fn ip_range_limits_dynamic_but_not_static() {
        let mut s = AddressSpace::new(&cfg("10.0.0.0/24", "10.0.0.1", Some("10.0.0.128/30")));
        assert_eq!(allocate(&mut s), Some("10.0.0.128".parse().unwrap()));
        assert_eq!(s.check_static("10.0.0.5".parse().unwrap()), Ok(()));
        assert_eq!(
            s.check_static("10.0.0.1".parse().unwrap()),
            Err(StaticRefusal::Reserved)
        );
        assert_eq!(
            s.check_static("10.0.0.255".parse().unwrap()),
            Err(StaticRefusal::Reserved)
        );
        assert_eq!(
            s.check_static("10.0.1.5".parse().unwrap()),
            Err(StaticRefusal::OutsideSubnet)
        );
        assert_eq!(
            s.check_static("10.0.0.128".parse().unwrap()),
            Err(StaticRefusal::InUse)
        );
        for _ in 0..3 {
            allocate(&mut s).unwrap();
        }
        assert_eq!(
            s.next_free(),
            None,
            "the range is exhausted though the subnet is not"
        );
    }

    #[test]
    fn ipv6_has_no_broadcast() {
        let mut s = AddressSpace::new(&cfg("fd00::/126", "fd00::1", None));
        assert_eq!(allocate(&mut s), Some("fd00::2".parse().unwrap()));
        assert_eq!(allocate(&mut s), Some("fd00::3".parse().unwrap()));
        assert_eq!(allocate(&mut s), None);
        assert_eq!(
            s.check_static("10.0.0.1".parse().unwrap()),
            Err(StaticRefusal::OutsideSubnet)
        );
    }

    #[test]
    fn gateway_and_foreign_addresses_cannot_be_released() {
        let mut s = AddressSpace::new(&cfg("10.0.0.0/24", "10.0.0.1", None));
        assert!(!s.release("10.0.0.1".parse().unwrap()));
        assert!(!s.release("10.0.0.9".parse().unwrap()), "never taken");
        assert!(!s.release("fd00::9".parse().unwrap()));
    }

    proptest! {
        /// Any sequence of allocations and releases: allocated addresses are distinct, inside
        /// the dynamic range, never the gateway; released ones are reused before new ones.
        #[test]
        fn allocate_release_reuse(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..400)) {
            let mut s = AddressSpace::new(&cfg("10.1.0.0/23", "10.1.0.1", Some("10.1.0.0/24")));
            let mut held: BTreeSet<u128> = BTreeSet::new();
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    let before_lowest_free = s.next_free();
                    match allocate(&mut s) {
                        Some(a) => {
                            let v = to_u128(a);
                            prop_assert!(held.insert(v), "{a} handed out twice");
                            prop_assert!(a != "10.1.0.1".parse::<IpAddr>().unwrap());
                            prop_assert!((to_u128("10.1.0.1".parse().unwrap())..=to_u128("10.1.0.255".parse().unwrap())).contains(&v));
                            prop_assert_eq!(Some(a), before_lowest_free);
                            // Lowest-free: nothing below it in the range is free.
                            prop_assert!(held.range(..v).count() as u128 == v - to_u128("10.1.0.1".parse().unwrap()) - 1);
                        }
                        None => prop_assert_eq!(held.len(), 254),
                    }
                } else {
                    let v = *held.iter().nth(pick as usize % held.len()).unwrap();
                    prop_assert!(s.release(from_u128(v, false)));
                    held.remove(&v);
                    prop_assert!(!s.release(from_u128(v, false)), "double release accepted");
                }
                prop_assert_eq!(s.usage().0, held.len() as u128 + 1);
            }
        }
    }
}
