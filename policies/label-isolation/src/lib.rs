//! Endpoints of a network talk to each other only when they share the value of a label: `tier`,
//! or the label named by the network label `wasmnet.isolation-label`. Traffic to the world is
//! left alone.

use wasmnet_policy_sdk::*;

/// The network label naming the endpoint label to isolate by.
pub const KEY_LABEL: &str = "wasmnet.isolation-label";
/// The endpoint label isolated by when the network doesn't say.
pub const DEFAULT_KEY: &str = "tier";

pub struct LabelIsolation;

/// The endpoint label this network isolates by.
pub fn isolation_key(network: &Network) -> &str {
    network.label(KEY_LABEL).unwrap_or(DEFAULT_KEY)
}

impl Guest for LabelIsolation {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                NetworkDecision::new(&n.id)
                    .rule(Rule::accept(Peer::Any, Peer::SameGroup))
                    .default_internal(Verdict::Drop)
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, network: Network) -> Result<EndpointDecision, String> {
        let key = isolation_key(&network);
        Ok(EndpointDecision::new()
            .group_opt(endpoint.label(key).map(|value| format!("{key}={value}"))))
    }
}

wasmnet_policy_sdk::export!(LabelIsolation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_accepts_same_group_and_drops_the_rest() {
        let out = LabelIsolation::evaluate(vec![
            Network::new("n1", "front"),
            Network::new("n2", "back").with_internal(true),
        ])
        .unwrap();
        assert_eq!(out.len(), 2);
        for (d, id) in out.iter().zip(["n1", "n2"]) {
            assert_eq!(d.network_id, id);
            assert_eq!(
                d.rules,
                [Rule {
                    from: Peer::Any,
                    to: Peer::SameGroup,
                    protocol: None,
                    ports: vec![],
                    verdict: Verdict::Accept,
                    log: false,
                }]
            );
            assert_eq!(d.default_internal, Some(Verdict::Drop));
            assert_eq!(d.default_egress, None, "egress untouched");
            assert_eq!(d.masquerade, None);
            assert_eq!(d.snat, None);
        }
    }

    #[test]
    fn classify_groups_by_tier() {
        let n = Network::new("n1", "front");
        let d = LabelIsolation::classify(Endpoint::new("e1", "n1").with_label("tier", "web"), n)
            .unwrap();
        assert_eq!(d.groups, ["tier=web"]);
        assert!(d.ports.is_empty());
    }

    #[test]
    fn classify_without_the_label_groups_nothing() {
        let n = Network::new("n1", "front");
        let e = Endpoint::new("e1", "n1").with_label("team", "a");
        assert!(LabelIsolation::classify(e, n).unwrap().groups.is_empty());
    }

    #[test]
    fn the_network_chooses_the_label() {
        let n = Network::new("n1", "front").with_label(KEY_LABEL, "team");
        let e = Endpoint::new("e1", "n1")
            .with_label("tier", "web")
            .with_label("team", "payments");
        assert_eq!(
            LabelIsolation::classify(e, n.clone()).unwrap().groups,
            ["team=payments"]
        );
        let e = Endpoint::new("e2", "n1").with_label("tier", "web");
        assert!(LabelIsolation::classify(e, n).unwrap().groups.is_empty());
    }
}
