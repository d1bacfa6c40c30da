//! What wasmnet calls its objects in the kernel (its tables, a network's bridge, an endpoint's
//! veth), and the network options the rules read. The bottom of the firewall's modules: the
//! rules IR, the policy compiler and Docker's semantics all use it, none of them through
//! another.

use crate::model::Network;

/// wasmnet's tables (one inet, one bridge) are both named this.
pub const TABLE: &str = "wasmnet";

/// The Linux bridge of a network: `wnbr` + 11 hex digits of its id (15 characters).
pub fn bridge_name(network_id: &str) -> String {
    format!("wnbr{}", &network_id[..11])
}

/// The host end of an endpoint's veth: `wnv` + 12 hex digits of its id.
pub fn veth_name(endpoint_id: &str) -> String {
    format!("wnv{}", &endpoint_id[..12])
}

pub fn option_true(n: &Network, key: &str, default: bool) -> bool {
    n.options.get(key).map_or(default, |v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(bridge_name(&id), "wnbr0123456789a");
        assert_eq!(veth_name(&id), "wnv0123456789ab");
        assert!(bridge_name(&id).len() <= 15 && veth_name(&id).len() <= 15);
    }
}
