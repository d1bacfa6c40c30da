//! The CNI contract, pure: the versions spoken, the network configuration and environment as
//! the runtime passes them, `CNI_ARGS`, the results and errors in each version's shape.
//! (CNI spec 1.1.0, with 1.0.0 and 0.4.0 results.)

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Value};

pub const VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The spec's error codes used here.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// wasmnet refused the request (its message says why): plugin-specific, 100 and up.
    pub const REFUSED: u32 = 100;
}

/// A CNI error: printed on stdout as the spec's JSON, with exit status 1.
#[derive(Debug, PartialEq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

/// The network configuration on stdin (the fields wasmnet reads; others are ignored, as the
/// spec asks of plugins).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The wasmnet network (id, prefix or name); absent: the configuration's `name`.
    #[serde(default)]
    pub network: Option<String>,
    /// wasmnet's API socket.
    #[serde(default)]
    pub socket: Option<String>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// Labels every endpoint of this configuration carries (e.g. one configuration per tier,
    /// for a policy to group by); `CNI_ARGS` labels win.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The CNI conventions' `args.cni.labels` (`[{"key", "value"}]`), as `labels`.
    #[serde(default)]
    pub args: Option<ConfigArgs>,
    /// GC: the attachments still valid (`cni.dev/valid-attachments`).
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Vec<Attachment>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ConfigArgs {
    #[serde(default)]
    pub cni: Option<CniArgs>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CniArgs {
    #[serde(default)]
    pub labels: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl Config {
    /// The labels the configuration gives every endpoint.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let conventional = (self.args.iter())
            .flat_map(|a| a.cni.iter())
            .flat_map(|c| c.labels.iter())
            .map(|kv| (kv.key.clone(), kv.value.clone()));
        let mut labels: BTreeMap<String, String> = conventional.collect();
        labels.extend(self.labels.clone());
        labels
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Decodes and checks the configuration: code 6 when it is not the JSON of one, 7 when a
/// value is wrong, 1 when its version is not spoken here.
pub fn config(stdin: &[u8]) -> Result<Config, CniError> {
    let c: Config = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(code::DECODE, format!("the network configuration: {e}")))?;
    if !VERSIONS.contains(&c.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported (supported: {})",
                c.cni_version,
                VERSIONS.join(", ")
            ),
        ));
    }
    if c.kind != "wasmnet" {
        let msg = format!("type {:?}: this plugin is \"wasmnet\"", c.kind);
        return Err(CniError::new(code::INVALID_CONFIG, msg));
    }
    if c.network.is_none() && c.name.is_empty() {
        let msg = "neither \"network\" nor \"name\" names a wasmnet network";
        return Err(CniError::new(code::INVALID_CONFIG, msg));
    }
    Ok(c)
}

/// `CNI_ARGS` (`K=V;K=V`) as wasmnet labels: `wasmnet.label.K=V` as `K`, the pod's name and
/// namespace as Kubernetes' labels. An unknown key is an error unless `IgnoreUnknown` is set.
/// The static addresses `CNI_ARGS` asks for (`IP=10.1.0.5[,fd00::5]`).
pub fn static_ips(raw: &str) -> Vec<String> {
    (raw.split(';'))
        .filter_map(|p| p.strip_prefix("IP="))
        .flat_map(|v| v.split(','))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn args(raw: &str) -> Result<BTreeMap<String, String>, CniError> {
    let pairs: Vec<(&str, &str)> = raw
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=').ok_or_else(|| {
                CniError::new(code::INVALID_ENV, format!("CNI_ARGS: {p:?} is not K=V"))
            })
        })
        .collect::<Result<_, _>>()?;
    let ignore = pairs
        .iter()
        .any(|(k, v)| *k == "IgnoreUnknown" && matches!(*v, "1" | "true" | "True"));
    let mut labels = BTreeMap::new();
    for (k, v) in pairs {
        match k {
            // The older convention for static addresses (podman's CNI backend passes `--ip` so),
            // read by `static_ips`.
            "IgnoreUnknown" | "K8S_POD_INFRA_CONTAINER_ID" | "K8S_POD_UID" | "IP" => {}
            "K8S_POD_NAME" => drop(labels.insert("io.kubernetes.pod.name".into(), v.into())),
            "K8S_POD_NAMESPACE" => {
                drop(labels.insert("io.kubernetes.pod.namespace".into(), v.into()))
            }
            _ => match k.strip_prefix("wasmnet.label.") {
                Some(key) if !key.is_empty() => drop(labels.insert(key.into(), v.into())),
                _ if ignore => {}
                _ => {
                    let msg = format!("CNI_ARGS: unknown key {k:?} (set IgnoreUnknown=1 to allow)");
                    return Err(CniError::new(code::UNSUPPORTED_FIELD, msg));
                }
            },
        }
    }
    Ok(labels)
}

/// What an ADD produced, as the result of `version`.
pub struct Added<'a> {
    pub ifname: &'a str,
    pub mac: &'a str,
    pub netns: &'a str,
    /// (address, prefix length, gateway)
    pub ips: Vec<(IpAddr, u8, IpAddr)>,
    /// A default route through each gateway (the network is not internal).
    pub default_route: bool,
    /// The network's DNS servers (its gateways, when wasmnet's DNS serves it).
    pub nameservers: Vec<String>,
}

pub fn result(version: &str, a: &Added) -> Value {
    let ips: Vec<Value> = a
        .ips
        .iter()
        .map(|(addr, prefix, gw)| {
            let mut ip = json!({"address": format!("{addr}/{prefix}"), "gateway": gw.to_string(), "interface": 0});
            if version == "0.4.0" {
                ip["version"] = json!(if addr.is_ipv6() { "6" } else { "4" });
            }
            ip
        })
        .collect();
    let routes: Vec<Value> = a
        .ips
        .iter()
        .filter(|_| a.default_route)
        .map(|(addr, _, gw)| {
            let dst = if addr.is_ipv6() { "::/0" } else { "0.0.0.0/0" };
            json!({"dst": dst, "gw": gw.to_string()})
        })
        .collect();
    json!({
        "cniVersion": version,
        "interfaces": [{"name": a.ifname, "mac": a.mac, "sandbox": a.netns}],
        "ips": ips,
        "routes": routes,
        "dns": match a.nameservers.is_empty() {
            true => json!({}),
            false => json!({"nameservers": a.nameservers}),
        },
    })
}

pub fn version_result(version: &str) -> Value {
    json!({"cniVersion": version, "supportedVersions": VERSIONS})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked_with_the_specs_codes() {
        let ok = br#"{"cniVersion":"1.0.0","name":"app","type":"wasmnet","extra":1}"#;
        assert_eq!(config(ok).unwrap().name, "app");
        assert_eq!(config(b"{not json").unwrap_err().code, code::DECODE);
        let old = br#"{"cniVersion":"0.3.1","name":"a","type":"wasmnet"}"#;
        assert_eq!(config(old).unwrap_err().code, code::INCOMPATIBLE_VERSION);
        let other = br#"{"cniVersion":"1.0.0","name":"a","type":"bridge"}"#;
        assert_eq!(config(other).unwrap_err().code, code::INVALID_CONFIG);
        let pm = br#"{"cniVersion":"1.1.0","type":"wasmnet","network":"n",
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}}"#;
        let c = config(pm).unwrap();
        assert_eq!(c.runtime_config.port_mappings[0].protocol, "tcp");
    }

    #[test]
    fn cni_args_become_labels() {
        let l = args("IgnoreUnknown=1;K8S_POD_NAME=web-0;wasmnet.label.tier=web;FOO=bar").unwrap();
        assert_eq!(l["tier"], "web");
        assert_eq!(l["io.kubernetes.pod.name"], "web-0");
        assert_eq!(l.len(), 2);
        assert_eq!(args("FOO=bar").unwrap_err().code, code::UNSUPPORTED_FIELD);
        assert_eq!(args("oops").unwrap_err().code, code::INVALID_ENV);
        assert!(args("").unwrap().is_empty());
        assert!(args("IP=10.1.0.5").unwrap().is_empty());
        assert_eq!(
            static_ips("IgnoreUnknown=1;IP=10.1.0.5,fd00::5"),
            ["10.1.0.5", "fd00::5"]
        );
    }

    #[test]
    fn results_take_their_versions_shape() {
        let a = Added {
            ifname: "eth0",
            mac: "02:42:0a:01:00:02",
            netns: "/run/netns/c1",
            ips: vec![("10.1.0.2".parse().unwrap(), 24, "10.1.0.1".parse().unwrap())],
            default_route: true,
            nameservers: vec!["10.1.0.1".into()],
        };
        let v04 = result("0.4.0", &a);
        assert_eq!(v04["ips"][0]["version"], "4");
        assert_eq!(v04["ips"][0]["address"], "10.1.0.2/24");
        assert_eq!(v04["routes"][0]["dst"], "0.0.0.0/0");
        let v1 = result("1.0.0", &a);
        assert!(v1["ips"][0].get("version").is_none());
        assert_eq!(v1["interfaces"][0]["sandbox"], "/run/netns/c1");
        assert_eq!(v1["dns"]["nameservers"][0], "10.1.0.1");
        assert_eq!(version_result("1.1.0")["supportedVersions"][2], "1.1.0");
    }
}
