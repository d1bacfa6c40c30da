//! Deny traffic to the world except to the addresses wasmnet's DNS server answered for the
//! domain names a network allows in its label `wasmnet.egress-fqdn` (comma-separated patterns,
//! `example.com` or `*.example.com`).

use wasmnet_policy_sdk::*;

/// The network label listing the name patterns endpoints may reach.
pub const ALLOW_LABEL: &str = "wasmnet.egress-fqdn";

pub struct FqdnEgress;

/// The host checks patterns too; checking here names the label in the error.
fn check(pattern: &str) -> Result<(), String> {
    let rest = pattern.strip_prefix("*.").unwrap_or(pattern);
    let ok = !rest.is_empty()
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    match ok {
        true => Ok(()),
        false => Err(format!("{pattern:?} is not a name or *.name")),
    }
}

fn decide(network: &Network) -> Result<NetworkDecision, String> {
    let mut decision = NetworkDecision::new(&network.id);
    for pattern in list(network.label(ALLOW_LABEL).unwrap_or_default()) {
        check(pattern).map_err(|e| format!("{ALLOW_LABEL} of network {}: {e}", network.name))?;
        decision = decision.rule(Rule::accept(Peer::Any, Peer::fqdn(pattern)));
    }
    Ok(decision.default_egress(Verdict::Drop))
}

impl Guest for FqdnEgress {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        networks.iter().map(decide).collect()
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(FqdnEgress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names_are_accepted_in_order_and_the_rest_dropped() {
        let n = Network::new("n1", "front").with_label(ALLOW_LABEL, "*.example.com, api.test,");
        let d = FqdnEgress::evaluate(vec![n]).unwrap().remove(0);
        assert_eq!(
            d.rules,
            [
                Rule::accept(Peer::Any, Peer::Fqdn("*.example.com".into())),
                Rule::accept(Peer::Any, Peer::Fqdn("api.test".into())),
            ]
        );
        assert_eq!(d.default_egress, Some(Verdict::Drop));
        assert_eq!(
            (d.default_internal, d.masquerade, d.snat),
            (None, None, None)
        );
    }

    #[test]
    fn without_the_label_nothing_goes_out() {
        let d = FqdnEgress::evaluate(vec![Network::new("n1", "front")])
            .unwrap()
            .remove(0);
        assert!(d.rules.is_empty());
        assert_eq!(d.default_egress, Some(Verdict::Drop));
    }

    #[test]
    fn a_bad_pattern_fails_evaluate_naming_it() {
        let bad = Network::new("n2", "back").with_label(ALLOW_LABEL, "ok.test,a.*.test");
        let err = FqdnEgress::evaluate(vec![bad]).unwrap_err();
        assert!(
            err.contains("\"a.*.test\"") && err.contains("back"),
            "{err}"
        );
        let d = FqdnEgress::classify(Endpoint::new("e", "n2"), Network::new("n2", "b")).unwrap();
        assert_eq!(d, EndpointDecision::new());
    }
}
