//! Microsegmentation by role: endpoints labelled `role=web` reach those labelled `role=db` on
//! tcp/5432, and nothing else passes between the endpoints of a network.

use wasmnet_policy_sdk::*;

/// The endpoint label whose value is the endpoint's group.
pub const ROLE_LABEL: &str = "role";
/// The port web reaches db on.
pub const DB_PORT: u16 = 5432;

pub struct Microsegmentation;

impl Guest for Microsegmentation {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks
            .iter()
            .map(|n| {
                NetworkDecision::new(&n.id)
                    .rule(Rule::accept(Peer::group("web"), Peer::group("db")).tcp(&[DB_PORT]))
                    .default_internal(Verdict::Drop)
            })
            .collect())
    }

    fn classify(endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new().group_opt(endpoint.label(ROLE_LABEL)))
    }
}

wasmnet_policy_sdk::export!(Microsegmentation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_reaches_db_on_5432_only() {
        let out = Microsegmentation::evaluate(vec![Network::new("n1", "app")]).unwrap();
        assert_eq!(out.len(), 1);
        let d = &out[0];
        assert_eq!(d.network_id, "n1");
        assert_eq!(
            d.rules,
            [Rule {
                from: Peer::Group("web".into()),
                to: Peer::Group("db".into()),
                protocol: Some(Protocol::Tcp),
                ports: vec![PortRange {
                    first: 5432,
                    last: 5432
                }],
                verdict: Verdict::Accept,
                log: false,
            }]
        );
        assert_eq!(d.default_internal, Some(Verdict::Drop));
        assert_eq!(d.default_egress, None);
        assert_eq!(d.masquerade, None);
        assert_eq!(d.snat, None);
    }

    #[test]
    fn classify_groups_by_role() {
        let n = Network::new("n1", "app");
        let web = Endpoint::new("e1", "n1").with_label("role", "web");
        assert_eq!(
            Microsegmentation::classify(web, n.clone()).unwrap().groups,
            ["web"]
        );
        let cache = Endpoint::new("e2", "n1").with_label("role", "cache");
        assert_eq!(
            Microsegmentation::classify(cache, n.clone())
                .unwrap()
                .groups,
            ["cache"]
        );
        let none = Endpoint::new("e3", "n1").with_port(None, 8080, 80);
        let d = Microsegmentation::classify(none, n).unwrap();
        assert!(d.groups.is_empty());
        assert!(d.ports.is_empty());
    }
}
