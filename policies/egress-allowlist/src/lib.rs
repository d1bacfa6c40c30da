//! Deny traffic to the world except DNS and the CIDRs a network allows in its label
//! `wasmnet.egress-allow` (comma-separated).

use wasmnet_policy_sdk::*;

/// The network label listing the CIDRs endpoints may reach.
pub const ALLOW_LABEL: &str = "wasmnet.egress-allow";

pub struct EgressAllowlist;

fn decide(network: &Network) -> Result<NetworkDecision, String> {
    let mut decision = NetworkDecision::new(&network.id)
        .rule(Rule::accept(Peer::Any, Peer::Any).udp(&[53]))
        .rule(Rule::accept(Peer::Any, Peer::Any).tcp(&[53]));
    for cidr in list(network.label(ALLOW_LABEL).unwrap_or_default()) {
        parse_cidr(cidr).map_err(|e| format!("{ALLOW_LABEL} of network {}: {e}", network.name))?;
        decision = decision.rule(Rule::accept(Peer::Any, Peer::cidr(cidr)));
    }
    Ok(decision.default_egress(Verdict::Drop))
}

impl Guest for EgressAllowlist {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        networks.iter().map(decide).collect()
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

wasmnet_policy_sdk::export!(EgressAllowlist);

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> Vec<Rule> {
        vec![
            Rule::accept(Peer::Any, Peer::Any).udp(&[53]),
            Rule::accept(Peer::Any, Peer::Any).tcp(&[53]),
        ]
    }

    #[test]
    fn without_the_label_only_dns_goes_out() {
        let out = EgressAllowlist::evaluate(vec![Network::new("n1", "front")]).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.network_id, "n1");
        assert_eq!(d.rules, dns());
        let udp = &d.rules[0];
        assert_eq!(
            (udp.protocol, udp.ports.as_slice()),
            (
                Some(Protocol::Udp),
                &[PortRange {
                    first: 53,
                    last: 53
                }][..]
            )
        );
        assert_eq!(d.default_egress, Some(Verdict::Drop));
        assert_eq!(d.default_internal, None);
        assert_eq!(d.masquerade, None);
        assert_eq!(d.snat, None);
    }

    #[test]
    fn listed_cidrs_are_accepted_in_order() {
        let n = Network::new("n1", "front")
            .with_label(ALLOW_LABEL, "10.1.0.0/16, 192.0.2.7/32,2001:db8::/32,");
        let d = EgressAllowlist::evaluate(vec![n]).unwrap().remove(0);
        let mut want = dns();
        for c in ["10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"] {
            want.push(Rule::accept(Peer::Any, Peer::Cidr(c.into())));
        }
        assert_eq!(d.rules, want);
        assert_eq!(d.default_egress, Some(Verdict::Drop));
    }

    #[test]
    fn a_bad_cidr_fails_evaluate_naming_it() {
        let ok = Network::new("n1", "front");
        let bad = Network::new("n2", "back").with_label(ALLOW_LABEL, "10.0.0.0/8,example.com");
        let err = EgressAllowlist::evaluate(vec![ok, bad]).unwrap_err();
        assert!(err.contains("\"example.com\""), "{err}");
        assert!(err.contains("back"), "{err}");
        let bad = Network::new("n3", "x").with_label(ALLOW_LABEL, "10.0.0.1/8");
        let err = EgressAllowlist::evaluate(vec![bad]).unwrap_err();
        assert!(err.contains("\"10.0.0.1/8\""), "{err}");
    }

    #[test]
    fn classify_decides_nothing() {
        let e = Endpoint::new("e1", "n1").with_port(None, 80, 80);
        let d = EgressAllowlist::classify(e, Network::new("n1", "front")).unwrap();
        assert_eq!(d, EndpointDecision::new());
    }
}
