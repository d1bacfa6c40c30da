//! Docker's requests as wasmnet's: pure, so every mapping is unit-tested without a daemon.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use wasmnet_engine::model::{IpConfigRequest, Labels, NetworkCreate, PortRequest, Protocol};

use crate::protocol::{label, CreateNetwork, IpamData, PortBinding};

/// Labels marking what came from Docker, and Docker's ids.
pub const ORIGIN: (&str, &str) = ("wasmnet.origin", "docker");
pub const NETWORK_ID: &str = "docker.network-id";
pub const ENDPOINT_ID: &str = "docker.endpoint-id";
pub const SANDBOX_KEY: &str = "docker.sandbox-key";

/// Driver options (`-o`, `--driver-opt`) that become labels: `wasmnet.label.tier=web` is
/// the label `tier=web`.
const LABEL_PREFIX: &str = "wasmnet.label.";
/// `-o wasmnet.name=web`: the wasmnet network's name (default `docker-<id prefix>`).
const NAME_OPTION: &str = "wasmnet.name";

/// Docker's spelling of wasmnet's network options.
const OPTION_ALIASES: [(&str, &str); 3] = [
    ("com.docker.network.driver.mtu", "mtu"),
    ("com.docker.network.bridge.enable_icc", "icc"),
    (
        "com.docker.network.bridge.enable_ip_masquerade",
        "masquerade",
    ),
];

/// A Docker option value as text (Docker sends strings; booleans and numbers are accepted).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The driver options of a request: the `com.docker.network.generic` map.
pub fn generic(options: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = options.get(label::GENERIC) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| text(v).map(|t| (k.clone(), t)))
        .collect()
}

fn flag(options: &BTreeMap<String, Value>, key: &str) -> bool {
    match options.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// The labels given as `wasmnet.label.K=V` options.
pub fn labels_of<'a>(opts: impl IntoIterator<Item = (&'a String, &'a String)>) -> Labels {
    opts.into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?.to_string(), v.clone())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The name of the wasmnet network for a Docker network without `-o wasmnet.name`.
pub fn default_network_name(docker_id: &str) -> String {
    format!("docker-{}", &docker_id[..docker_id.len().min(12)])
}

/// A Docker network as a wasmnet network.
pub fn network_request(req: &CreateNetwork) -> Result<NetworkCreate, String> {
    let opts = generic(&req.options);
    let mut labels = labels_of(&opts);
    labels.insert(ORIGIN.0.into(), ORIGIN.1.into());
    labels.insert(NETWORK_ID.into(), req.network_id.clone());
    let mut options = Labels::new();
    for (k, v) in &opts {
        if k.starts_with(LABEL_PREFIX) || k == NAME_OPTION {
            continue;
        }
        match OPTION_ALIASES.iter().find(|(docker, _)| docker == k) {
            Some((_, ours)) => {
                options.insert(ours.to_string(), v.clone());
            }
            // Docker's own bridge options mean nothing here (as any driver ignores another's).
            None if k.starts_with("com.docker.") => {}
            // Anything else is wasmnet's to judge: an unknown option is refused, named.
            None => {
                options.insert(k.clone(), v.clone());
            }
        }
    }
    let ipv4 = match one_subnet("IPv4Data", req.ipv4_data.as_deref())? {
        Some(d) => ip_config("IPv4Data", d)?,
        None => IpConfigRequest::default(),
    };
    let ipv6 = match one_subnet("IPv6Data", req.ipv6_data.as_deref())? {
        Some(d) => Some(ip_config("IPv6Data", d)?),
        None => None,
    };
    Ok(NetworkCreate {
        name: opts
            .get(NAME_OPTION)
            .cloned()
            .unwrap_or_else(|| default_network_name(&req.network_id)),
        enable_ipv6: flag(&req.options, label::ENABLE_IPV6) || ipv6.is_some(),
        ipv6,
        ipv4,
        internal: flag(&req.options, label::INTERNAL),
        labels,
        options,
        ..NetworkCreate::default()
    })
}

fn one_subnet<'a>(
    field: &str,
    data: Option<&'a [IpamData]>,
) -> Result<Option<&'a IpamData>, String> {
    match data.unwrap_or_default() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        more => Err(format!(
            "{field}: a wasmnet network has one subnet per family, {} were given",
            more.len()
        )),
    }
}

fn ip_config(field: &str, d: &IpamData) -> Result<IpConfigRequest, String> {
    let subnet: IpNet = d
        .pool
        .parse()
        .map_err(|_| format!("{field}.Pool: {:?} is not a CIDR", d.pool))?;
    let gateway = match d.gateway.as_str() {
        "" => None,
        gw => Some(address(&format!("{field}.Gateway"), gw)?),
    };
    Ok(IpConfigRequest {
        subnet: Some(subnet),
        gateway,
        ip_range: None,
    })
}

/// An address as Docker writes it: bare or with a prefix length (`10.1.0.2/24`).
pub fn address(field: &str, text: &str) -> Result<IpAddr, String> {
    text.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| format!("{field}: {text:?} is not an address"))
}

/// The published ports of `com.docker.network.portmap`. A host port range (`-p 8000-8010:80`)
/// publishes on its first port.
pub fn ports(options: &BTreeMap<String, Value>) -> Result<Vec<PortRequest>, String> {
    let Some(v) = options.get(label::PORT_MAP).filter(|v| !v.is_null()) else {
        return Ok(vec![]);
    };
    let bindings: Vec<PortBinding> =
        serde_json::from_value(v.clone()).map_err(|e| format!("{}: {e}", label::PORT_MAP))?;
    bindings.iter().map(port).collect()
}

fn port(b: &PortBinding) -> Result<PortRequest, String> {
    let protocol = match b.proto {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        p => {
            return Err(format!(
                "{}: IP protocol {p} cannot be published",
                label::PORT_MAP
            ))
        }
    };
    let host_ip = match b.host_ip.as_str() {
        "" | "0.0.0.0" | "::" => None,
        ip => Some(address("HostIP", ip)?),
    };
    Ok(PortRequest {
        host_ip,
        host_port: b.host_port,
        container_port: b.port,
        protocol,
    })
}

/// The wasmnet sandbox of a Docker sandbox: `docker-` and the last part of its key
/// (`/var/run/docker/netns/0123456789ab`).
pub fn sandbox_name(sandbox_key: &str) -> String {
    let base = sandbox_key.rsplit('/').next().unwrap_or(sandbox_key);
    let base: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
        .take(100)
        .collect();
    format!("docker-{base}")
}

/// The name the container end of an endpoint's veth has until Docker moves it: unique per
/// endpoint, 15 characters at most (the kernel's limit).
pub fn handoff_name(endpoint_id: &str) -> String {
    let id: String = endpoint_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(11)
        .collect();
    format!("wnd{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(v: Value) -> CreateNetwork {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_network_takes_its_subnets_options_and_labels() {
        let req = create(json!({
            "NetworkID": "0123456789abcdef0123",
            "Options": {
                "com.docker.network.enable_ipv6": false,
                "com.docker.network.internal": true,
                "com.docker.network.generic": {
                    "wasmnet.label.tier": "web", "com.docker.network.driver.mtu": "1400",
                    "com.docker.network.bridge.name": "br-x", "icc": "false",
                },
            },
            "IPv4Data": [{"AddressSpace": "x", "Pool": "10.9.0.0/24", "Gateway": "10.9.0.1/24"}],
        }));
        let n = network_request(&req).unwrap();
        assert_eq!(n.name, "docker-0123456789ab");
        assert!(n.internal && !n.enable_ipv6);
        assert_eq!(n.ipv4.subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert_eq!(n.ipv4.gateway, Some("10.9.0.1".parse().unwrap()));
        assert_eq!(n.labels["tier"], "web");
        assert_eq!(n.labels[ORIGIN.0], "docker");
        assert_eq!(n.labels[NETWORK_ID], "0123456789abcdef0123");
        let opts: Vec<_> = n.options.iter().collect();
        assert_eq!(
            opts,
            [
                (&"icc".to_string(), &"false".to_string()),
                (&"mtu".into(), &"1400".into())
            ]
        );
    }

    #[test]
    fn a_name_option_and_ipv6_data_are_honoured_and_two_subnets_refused() {
        let mut req = create(json!({
            "NetworkID": "ab", "Options": {"com.docker.network.generic": {"wasmnet.name": "web"}},
            "IPv6Data": [{"Pool": "fd00:1::/64", "Gateway": ""}],
        }));
        let n = network_request(&req).unwrap();
        assert_eq!(n.name, "web");
        assert!(n.enable_ipv6);
        assert_eq!(n.ipv6.unwrap().subnet, Some("fd00:1::/64".parse().unwrap()));
        req.ipv4_data = Some(vec![IpamData::default(), IpamData::default()]);
        let e = network_request(&req).unwrap_err();
        assert!(e.contains("IPv4Data") && e.contains("2 were given"), "{e}");
        req.ipv4_data = Some(vec![IpamData {
            pool: "nope".into(),
            ..IpamData::default()
        }]);
        assert!(network_request(&req).unwrap_err().contains("IPv4Data.Pool"));
    }

    #[test]
    fn published_ports_map_protocols_and_host_addresses() {
        let opts: BTreeMap<String, Value> = serde_json::from_value(json!({
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
                {"Proto": 17, "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353},
            ]
        }))
        .unwrap();
        let p = ports(&opts).unwrap();
        assert_eq!(
            (
                p[0].host_port,
                p[0].container_port,
                p[0].protocol,
                p[0].host_ip
            ),
            (8080, 80, Protocol::Tcp, None)
        );
        assert_eq!(p[1].protocol, Protocol::Udp);
        assert_eq!(p[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        let bad: BTreeMap<String, Value> = serde_json::from_value(
            json!({"com.docker.network.portmap": [{"Proto": 1, "Port": 1}]}),
        )
        .unwrap();
        assert!(ports(&bad).unwrap_err().contains("protocol 1"));
        assert!(ports(&BTreeMap::new()).unwrap().is_empty());
    }

    #[test]
    fn names_fit_the_kernel_and_wasmnet() {
        assert_eq!(
            sandbox_name("/var/run/docker/netns/0123456789ab"),
            "docker-0123456789ab"
        );
        assert_eq!(handoff_name("0123456789abcdef"), "wnd0123456789a");
        assert!(handoff_name("0123456789abcdef").len() <= 15);
        let labels = labels_of(&BTreeMap::from([
            ("wasmnet.label.tier".to_string(), "db".to_string()),
            ("wasmnet.label.".to_string(), "x".to_string()),
            ("other".to_string(), "y".to_string()),
        ]));
        assert_eq!(labels, Labels::from([("tier".into(), "db".into())]));
    }
}
