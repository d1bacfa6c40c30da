//! Every name wasmnet gives an object of its own in the kernel: links (a network's bridge and
//! VXLAN device, an endpoint's veth), nftables tables, chains and sets, and iptables chains.
//! Whatever makes, finds or shows one of them names it through here, so that "ours" is
//! recognisable (invariant 2: wasmnet owns only what it created, named with its prefixes).
//!
//! The bottom of the crate: it uses nothing of wasmnet's own.

/// Link names start with one of these; the reconciler lists links by them to find strays.
pub const BRIDGE_PREFIX: &str = "wnbr";
pub const VETH_PREFIX: &str = "wnv";
pub const VXLAN_PREFIX: &str = "wnx";

/// Every prefix of wasmnet's links (none is a prefix of another's names: `wnv`, `wnx`, `wnbr`).
pub const LINK_PREFIXES: [&str; 3] = [VETH_PREFIX, VXLAN_PREFIX, BRIDGE_PREFIX];

/// The Linux bridge of a network: `wnbr` + 11 hex digits of its id (15 characters).
pub fn bridge_name(network_id: &str) -> String {
    format!("{BRIDGE_PREFIX}{}", &network_id[..11])
}

/// The host end of an endpoint's veth: `wnv` + 12 hex digits of its id.
pub fn veth_name(endpoint_id: &str) -> String {
    format!("{VETH_PREFIX}{}", &endpoint_id[..12])
}

/// The VXLAN device of an overlay network: `wnx` + 12 hex digits of its id.
pub fn vxlan_name(network_id: &str) -> String {
    format!("{VXLAN_PREFIX}{}", &network_id[..12])
}

/// wasmnet's nftables tables (one inet, one bridge) are both named this.
pub const TABLE: &str = "wasmnet";

/// nftables chains of the inet table: the base chains, and the one published ports go through.
pub const CHAIN_FORWARD: &str = "forward";
pub const CHAIN_PREROUTING: &str = "prerouting";
pub const CHAIN_OUTPUT: &str = "output";
pub const CHAIN_POSTROUTING: &str = "postrouting";
pub const CHAIN_PUBLISH: &str = "publish";
/// The raw prerouting hook, where traffic within one network is untracked.
pub const CHAIN_RAW: &str = "raw";
pub const CHAIN_INPUT: &str = "input";

/// A service's chain: its id's first 12 hex digits.
pub fn service_chain(service_id: &str) -> String {
    format!("svc_{}", &service_id[..12.min(service_id.len())])
}

pub const SET_VIPS4: &str = "svc_vips4";
pub const SET_VIPS6: &str = "svc_vips6";
pub const SET_HAIRPIN4: &str = "svc_hairpin4";
pub const SET_HAIRPIN6: &str = "svc_hairpin6";
pub const MAP_SERVICES4: &str = "services4";
pub const MAP_SERVICES6: &str = "services6";

/// The chain a network's traffic is dispatched to: `net_` + 12 hex digits of its id.
pub fn network_chain(network_id: &str) -> String {
    format!("net_{}", &network_id[..12])
}

/// What the chains of one policy's rules start with: `pol_` + 8 hex digits of its id + `_`.
pub fn policy_chain_prefix(policy_id: &str) -> String {
    format!("pol_{}_", &policy_id[..8])
}

/// The chain holding one policy's rules for one network: the prefix + 12 hex of the network's id.
pub fn policy_chain(policy_id: &str, network_id: &str) -> String {
    format!("{}{}", policy_chain_prefix(policy_id), &network_id[..12])
}

/// The chain of one `same-group` rule (the `rule`-th of the policy's decision) of a policy
/// for one network and family: the policy's chain + `_sg<rule>_<4|6>`. It holds one rule per
/// group, so a new group is one rule appended here, not a change of the policy's chain.
pub fn same_group_chain(policy_id: &str, network_id: &str, rule: usize, v6: bool) -> String {
    let fam = if v6 { 6 } else { 4 };
    format!("{}_sg{rule}_{fam}", policy_chain(policy_id, network_id))
}

/// The network id prefix a policy chain (or one of its `same-group` chains) is named after,
/// if `chain` is one of the policy's.
pub fn policy_chain_network<'a>(policy_id: &str, chain: &'a str) -> Option<&'a str> {
    let rest = chain.strip_prefix(&policy_chain_prefix(policy_id))?;
    Some(rest.split('_').next().unwrap_or(rest))
}

/// Sets and maps of the inet table: every bridge, the subnets that masquerade, every subnet,
/// the dispatch
/// from a bridge to its network's chain, and the published ports (per family; `_on`: on one
/// host address).
pub const SET_BRIDGES: &str = "bridges";
pub const SET_MASQ4: &str = "masq4";
pub const SET_MASQ6: &str = "masq6";
pub const SET_SUBNETS4: &str = "subnets4";
pub const SET_SUBNETS6: &str = "subnets6";
pub const MAP_FROM_BRIDGE: &str = "from_bridge";
pub const MAP_PUB4: &str = "pub4";
pub const MAP_PUB4_ON: &str = "pub4_on";
pub const MAP_PUB6: &str = "pub6";
pub const MAP_PUB6_ON: &str = "pub6_on";
/// Per family, the bridges and destinations whose traffic stays untracked.
pub const SET_UNTRACKED4: &str = "untracked4";
pub const SET_UNTRACKED6: &str = "untracked6";

/// The bridge table's set of the host ends of the veths of icc=false networks.
pub const SET_NOICC_PORTS: &str = "noicc_ports";

/// The address set of a policy's group, per family: `g_<8 hex of the policy>_<group>_4`.
/// A group that is not already a short set name (lower-case alphanumerics and `_`, at most
/// 32 bytes) is sanitised to such a prefix and gets 128 bits of the SHA-256 of its exact bytes:
/// `Web`, `web_` and `wéb` are three sets, and finding two groups that share one is as hard as
/// a SHA-256 collision. (The two forms never meet: a kept name is at most 32 bytes, a hashed one
/// at least 34.) The engine still refuses a plan in which two groups would share a set, see
/// `group_set_collision`.
pub fn group_set(policy_id: &str, group: &str, v6: bool) -> String {
    let clean: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    let tag = if clean == group {
        String::new()
    } else {
        format!("_{}", digest(group))
    };
    format!(
        "g_{}_{clean}{tag}_{}",
        &policy_id[..8],
        if v6 { 6 } else { 4 }
    )
}

/// The address set of a name pattern (an `fqdn` peer), per family: `f_<32 hex>_4`, 128 bits
/// of the SHA-256 of the pattern (already normalised: lower-case, no final dot), so any two
/// patterns get two sets. Shared by every rule naming the pattern, whichever the policy: it
/// holds what the DNS server answered for matching names, nothing a policy chose.
pub fn fqdn_set(pattern: &str, v6: bool) -> String {
    format!("f_{}_{}", digest(pattern), if v6 { 6 } else { 4 })
}

/// How many addresses one pattern's set holds per family (the kernel refuses more: a
/// hostile name answering with ever new addresses fills its own set, nothing else).
pub const FQDN_SET_SIZE: u32 = 65_536;

/// 32 hex digits (128 bits) of the SHA-256 of `s`.
fn digest(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A (policy id, group) pair.
pub type GroupRef<'a> = (&'a str, &'a str);

/// Two distinct (policy, group) pairs that would share a set, if any: a plan holding them is
/// refused rather than merging the groups in the kernel.
pub fn group_set_collision<'a>(
    groups: impl IntoIterator<Item = GroupRef<'a>>,
) -> Option<(GroupRef<'a>, GroupRef<'a>)> {
    let mut seen = std::collections::HashMap::new();
    for (policy, group) in groups {
        match seen.insert(group_set(policy, group, false), (policy, group)) {
            Some(other) if other != (policy, group) => return Some((other, (policy, group))),
            _ => {}
        }
    }
    None
}

/// iptables: wasmnet's chains, jumped to from the built-in chains of the same name.
pub const IPT_FORWARD: &str = "WASMNET-FORWARD";
pub const IPT_INPUT: &str = "WASMNET-INPUT";
pub const IPT_PREROUTING: &str = "WASMNET-PREROUTING";
pub const IPT_OUTPUT: &str = "WASMNET-OUTPUT";
pub const IPT_POSTROUTING: &str = "WASMNET-POSTROUTING";
/// iptables: the published ports (nftables' `publish`).
pub const IPT_DNAT: &str = "WASMNET-DNAT";

/// iptables: the k-th numbered chain of an apply (networks' and policies' rules).
pub fn ipt_chain(k: usize) -> String {
    format!("WASMNET-C{k}")
}

/// iptables: an interface pattern matching every bridge of wasmnet's.
pub fn ipt_every_bridge() -> String {
    format!("{BRIDGE_PREFIX}+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(bridge_name(&id), "wnbr0123456789a");
        assert_eq!(veth_name(&id), "wnv0123456789ab");
        assert_eq!(vxlan_name(&id), "wnx0123456789ab");
        for name in [bridge_name(&id), veth_name(&id), vxlan_name(&id)] {
            assert!(name.len() <= 15, "{name}");
            let owners = LINK_PREFIXES.iter().filter(|p| name.starts_with(*p));
            assert_eq!(owners.count(), 1, "{name}");
        }
    }

    #[test]
    fn chains() {
        let p = "7".repeat(64);
        let n = "a".repeat(64);
        assert_eq!(network_chain(&n), "net_aaaaaaaaaaaa");
        assert_eq!(policy_chain(&p, &n), "pol_77777777_aaaaaaaaaaaa");
        let chain = policy_chain(&p, &n);
        assert_eq!(policy_chain_network(&p, &chain), Some("aaaaaaaaaaaa"));
        assert_eq!(policy_chain_network(&n, &chain), None);
        let sg = same_group_chain(&p, &n, 3, true);
        assert_eq!(sg, "pol_77777777_aaaaaaaaaaaa_sg3_6");
        assert_eq!(policy_chain_network(&p, &sg), Some("aaaaaaaaaaaa"));
        assert_eq!(ipt_chain(3), "WASMNET-C3");
        assert_eq!(ipt_every_bridge(), "wnbr+");
    }

    #[test]
    fn group_names_are_safe_and_distinct() {
        let p = "0123456789abcdef".repeat(4);
        assert_eq!(group_set(&p, "web", false), "g_01234567_web_4");
        let odd = group_set(&p, "tier=web", true);
        assert!(
            odd.starts_with("g_01234567_tier_web_") && odd.ends_with("_6"),
            "{odd}"
        );
        assert_ne!(group_set(&p, "a b", false), group_set(&p, "a_b", false));
        assert!(group_set(&p, &"x".repeat(64), false).len() < 96);
    }

    #[test]
    fn groups_that_sanitise_alike_get_distinct_sets() {
        // Issue 12: mixed case and non-ASCII letters sanitise to one prefix; a 32-bit hash of
        // them was forged in a second. Every one of these is its own set.
        let p = "0123456789abcdef".repeat(4);
        let groups = [
            "web", "Web", "WEB", "wéb", "w_b", "web_", "web\u{0}", "tier=web",
        ];
        let sets: std::collections::BTreeSet<String> =
            groups.iter().map(|g| group_set(&p, g, false)).collect();
        assert_eq!(sets.len(), groups.len(), "{sets:?}");
        assert!(sets.iter().all(|s| s.len() <= 80 && s.is_ascii()));
        let pairs = groups.iter().map(|g| (p.as_str(), *g));
        assert_eq!(group_set_collision(pairs), None);
        let twice = [(p.as_str(), "web"), (p.as_str(), "web")];
        assert_eq!(group_set_collision(twice), None, "one group named twice");
    }
}

/// The NFLOG group wasmnet's flow rules log to, and reads (`kernel::nflog`).
pub const FLOW_GROUP: u16 = 2387;
