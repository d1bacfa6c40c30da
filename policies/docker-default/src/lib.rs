//! Docker's default semantics as a policy: endpoints of a network talk to each other unless
//! the network's `icc` option is `false`, an internal network has no way out, and outbound
//! traffic is masqueraded unless the `masquerade` option is `false`.

use wasmnet_policy_sdk::*;

pub struct DockerDefault;

impl Guest for DockerDefault {
    fn evaluate(networks: Vec<Network>) -> Result<Vec<NetworkDecision>, String> {
        Ok(networks.iter().map(decide).collect())
    }

    fn classify(_endpoint: Endpoint, _network: Network) -> Result<EndpointDecision, String> {
        Ok(EndpointDecision::new())
    }
}

fn decide(network: &Network) -> NetworkDecision {
    let icc = network.option("icc") != Some("false");
    NetworkDecision::new(&network.id)
        .default_internal(if icc { Verdict::Accept } else { Verdict::Drop })
        .default_egress(if network.internal {
            Verdict::Drop
        } else {
            Verdict::Accept
        })
        .masquerade(!network.internal && network.option("masquerade") != Some("false"))
}

wasmnet_policy_sdk::export!(DockerDefault);

#[cfg(test)]
mod tests {
    use super::*;

    fn one(network: Network) -> NetworkDecision {
        let mut out = DockerDefault::evaluate(vec![network]).unwrap();
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    #[test]
    fn plain_bridge_talks_and_goes_out_masqueraded() {
        let d = one(Network::new("n1", "front"));
        assert_eq!(d.network_id, "n1");
        assert!(d.rules.is_empty());
        assert_eq!(d.default_internal, Some(Verdict::Accept));
        assert_eq!(d.default_egress, Some(Verdict::Accept));
        assert_eq!(d.masquerade, Some(true));
        assert_eq!(d.snat, None);
    }

    #[test]
    fn icc_false_drops_between_endpoints() {
        let d = one(Network::new("n1", "front").with_option("icc", "false"));
        assert_eq!(d.default_internal, Some(Verdict::Drop));
        assert_eq!(d.default_egress, Some(Verdict::Accept));
        let d = one(Network::new("n1", "front").with_option("icc", "true"));
        assert_eq!(d.default_internal, Some(Verdict::Accept));
    }

    #[test]
    fn internal_network_has_no_way_out() {
        let d = one(Network::new("n1", "back").with_internal(true));
        assert_eq!(d.default_internal, Some(Verdict::Accept));
        assert_eq!(d.default_egress, Some(Verdict::Drop));
        assert_eq!(d.masquerade, Some(false));
    }

    #[test]
    fn masquerade_can_be_turned_off() {
        let d = one(Network::new("n1", "front").with_option("masquerade", "false"));
        assert_eq!(d.masquerade, Some(false));
        assert_eq!(d.default_egress, Some(Verdict::Accept));
    }

    #[test]
    fn one_decision_per_network_in_order() {
        let out = DockerDefault::evaluate(vec![
            Network::new("a", "a"),
            Network::new("b", "b").with_internal(true),
        ])
        .unwrap();
        let ids: Vec<_> = out.iter().map(|d| d.network_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(DockerDefault::evaluate(vec![]).unwrap().is_empty());
    }

    #[test]
    fn classify_groups_nothing_and_honours_every_port() {
        let e = Endpoint::new("e1", "n1")
            .with_label("tier", "web")
            .with_port(None, 80, 8080);
        let d = DockerDefault::classify(e, Network::new("n1", "front")).unwrap();
        assert!(d.groups.is_empty());
        assert!(d.ports.is_empty(), "missing port decisions are honoured");
    }
}
