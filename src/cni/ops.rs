//! The CNI commands as calls to wasmnet's API. A container is a sandbox adopting the runtime's
//! namespace (`CNI_NETNS`), named `cni-<container id>` and labelled as coming from CNI; each
//! interface the runtime asks for is an endpoint of the configured network.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use wasmnet_web::client::{encode, Client, ClientError};

use crate::spec::{self, code, Added, CniError, Config};

/// The label marking what the CNI plugin made, and the one holding the container id.
const ORIGIN: (&str, &str) = ("wasmnet.origin", "cni");
const CONTAINER: &str = "cni.container-id";

/// The runtime's environment for one call.
pub struct Env {
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub labels: BTreeMap<String, String>,
    /// Static addresses from `CNI_ARGS` (`IP=`), beside `runtimeConfig.ips`.
    pub ips: Vec<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The variables ADD, DEL and CHECK need (code 4 when one is missing).
pub fn env(needs_netns: bool) -> Result<Env, CniError> {
    let need = |name: &str| {
        var(name).ok_or_else(|| CniError::new(code::INVALID_ENV, format!("{name} is not set")))
    };
    let netns = var("CNI_NETNS");
    if needs_netns && netns.is_none() {
        return Err(CniError::new(code::INVALID_ENV, "CNI_NETNS is not set"));
    }
    Ok(Env {
        container_id: need("CNI_CONTAINERID")?,
        netns,
        ifname: need("CNI_IFNAME")?,
        labels: spec::args(&var("CNI_ARGS").unwrap_or_default())?,
        ips: spec::static_ips(&var("CNI_ARGS").unwrap_or_default()),
    })
}

/// wasmnet's errors as CNI's: unreachable is "try again later", a refusal keeps its message.
fn cni(e: ClientError) -> CniError {
    match e {
        ClientError::Connect { target, source } => CniError {
            code: code::TRY_AGAIN_LATER,
            msg: format!("wasmnet is not reachable at {target}: {source}"),
            details: String::new(),
        },
        ClientError::Api {
            code: c, message, ..
        } => CniError {
            code: code::REFUSED,
            msg: message,
            details: c,
        },
        other => CniError::new(code::REFUSED, other.to_string()),
    }
}

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, .. } if status.as_u16() == 404)
}

/// The sandbox of a container: `cni-` and (up to 100 characters of) its id.
pub fn sandbox_name(container_id: &str) -> String {
    format!("cni-{}", &container_id[..container_id.len().min(100)])
}

async fn get_opt(c: &Client, path: &str) -> Result<Option<Value>, CniError> {
    match c.get(path).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(cni(e)),
    }
}

async fn delete_opt(c: &Client, path: &str) -> Result<(), CniError> {
    match c.delete(path).await {
        Err(e) if !not_found(&e) => Err(cni(e)),
        _ => Ok(()),
    }
}

async fn endpoints_of(c: &Client, sandbox: &str) -> Result<Vec<Value>, CniError> {
    let path = format!("/v1/endpoints?sandbox={}", encode(sandbox));
    match c.list_all(&path).await {
        Ok(v) => Ok(v),
        Err(e) if not_found(&e) => Ok(vec![]),
        Err(e) => Err(cni(e)),
    }
}

/// The container's sandbox on `netns`; one left from an earlier namespace of the same
/// container (its namespace is gone) is replaced.
async fn ensure_sandbox(c: &Client, env: &Env, netns: &str) -> Result<String, CniError> {
    let name = sandbox_name(&env.container_id);
    let path = format!("/v1/sandboxes/{}", encode(&name));
    if let Some(s) = get_opt(c, &path).await? {
        if s["netns"].as_str() == Some(netns) {
            return Ok(name);
        }
        delete_opt(c, &path).await?;
    }
    let labels = json!({ORIGIN.0: ORIGIN.1, CONTAINER: env.container_id});
    let body = json!({"name": name, "netns": netns, "labels": labels});
    c.post("/v1/sandboxes", &body).await.map_err(cni)?;
    Ok(name)
}

fn endpoint_request(cfg: &Config, env: &Env, sandbox: &str) -> Result<Value, CniError> {
    let rc = &cfg.runtime_config;
    let mut labels = cfg.labels();
    labels.extend(env.labels.clone());
    let mut body = json!({
        "sandbox": sandbox, "interface": env.ifname,
        "labels": labels, "aliases": rc.aliases,
        "ports": rc.port_mappings.iter().map(|p| json!({
            "host_ip": p.host_ip.as_deref().filter(|h| !h.is_empty()),
            "host_port": p.host_port, "container_port": p.container_port,
            "protocol": p.protocol.to_ascii_lowercase(),
        })).collect::<Vec<_>>(),
    });
    for ip in rc.ips.iter().chain(&env.ips) {
        let addr: std::net::IpAddr = ip.split('/').next().unwrap_or(ip).parse().map_err(|_| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("runtimeConfig.ips: {ip:?} is not an address"),
            )
        })?;
        body[if addr.is_ipv6() { "ipv6" } else { "ipv4" }] = json!(addr.to_string());
    }
    // Without one, the daemon's default network.
    if let Some(n) = &cfg.network {
        body["network"] = json!(n);
    }
    Ok(body)
}

/// The network a configuration names, or the daemon's default network (labelled so).
async fn network_of(c: &Client, cfg: &Config) -> Result<Value, CniError> {
    let path = match &cfg.network {
        Some(n) => format!("/v1/networks/{}", encode(n)),
        None => {
            let label = encode("wasmnet.default=true");
            let found = c.list_all(&format!("/v1/networks?label={label}")).await;
            match found.map_err(cni)?.first() {
                Some(n) => return Ok(n.clone()),
                None => {
                    let msg =
                        "the configuration names no network and wasmnet has no default network";
                    return Err(CniError::new(code::INVALID_CONFIG, msg));
                }
            }
        }
    };
    c.get(&path).await.map_err(cni)
}

pub async fn add(c: &Client, cfg: &Config, env: &Env) -> Result<Value, CniError> {
    let netns = env.netns.as_deref().unwrap_or_default();
    let sandbox = ensure_sandbox(c, env, netns).await?;
    if endpoints_of(c, &sandbox)
        .await?
        .iter()
        .any(|e| e["interface"] == env.ifname.as_str())
    {
        let msg = format!(
            "container {} already has interface {}",
            env.container_id, env.ifname
        );
        return Err(CniError::new(code::REFUSED, msg));
    }
    let request = endpoint_request(cfg, env, &sandbox);
    let e = match request {
        Ok(body) => c.post("/v1/endpoints", &body).await.map_err(cni),
        Err(e) => Err(e),
    };
    let e = match e {
        Ok(e) => e,
        Err(err) => {
            // Nothing half made: a sandbox left without endpoints goes again.
            if endpoints_of(c, &sandbox).await?.is_empty() {
                delete_opt(c, &format!("/v1/sandboxes/{}", encode(&sandbox))).await?;
            }
            return Err(err);
        }
    };
    let n = c
        .get(&format!(
            "/v1/networks/{}",
            e["network_id"].as_str().unwrap_or_default()
        ))
        .await
        .map_err(cni)?;
    // The names report says which gateways serve DNS (none with `dns=false` or `--dns off`).
    let names = format!(
        "/v1/networks/{}/names",
        encode(n["id"].as_str().unwrap_or_default())
    );
    let names = c.get(&names).await.map_err(cni)?;
    let nameservers = (names["servers"].as_array().into_iter().flatten())
        .filter_map(|ip| ip.as_str().map(str::to_string))
        .collect();
    let ip = |fam: &str, cfg: &Value| -> Option<(std::net::IpAddr, u8, std::net::IpAddr)> {
        let addr = e[fam].as_str()?.parse().ok()?;
        let subnet: ipnet::IpNet = cfg["subnet"].as_str()?.parse().ok()?;
        Some((
            addr,
            subnet.prefix_len(),
            cfg["gateway"].as_str()?.parse().ok()?,
        ))
    };
    let added = Added {
        ifname: &env.ifname,
        mac: e["mac"].as_str().unwrap_or_default(),
        netns,
        ips: [ip("ipv4", &n["ipv4"]), ip("ipv6", &n["ipv6"])]
            .into_iter()
            .flatten()
            .collect(),
        default_route: n["internal"] != true,
        nameservers,
    };
    Ok(spec::result(&cfg.cni_version, &added))
}

/// Idempotent: a container, namespace or interface already gone is done.
pub async fn del(c: &Client, env: &Env) -> Result<(), CniError> {
    let sandbox = sandbox_name(&env.container_id);
    if get_opt(c, &format!("/v1/sandboxes/{}", encode(&sandbox)))
        .await?
        .is_none()
    {
        return Ok(());
    }
    let endpoints = endpoints_of(c, &sandbox).await?;
    for e in endpoints
        .iter()
        .filter(|e| e["interface"] == env.ifname.as_str())
    {
        let id = e["id"].as_str().unwrap_or_default();
        delete_opt(c, &format!("/v1/endpoints/{id}")).await?;
    }
    if endpoints
        .iter()
        .all(|e| e["interface"] == env.ifname.as_str())
    {
        delete_opt(c, &format!("/v1/sandboxes/{}", encode(&sandbox))).await?;
    }
    Ok(())
}

pub async fn check(c: &Client, env: &Env) -> Result<(), CniError> {
    let sandbox = sandbox_name(&env.container_id);
    let there = endpoints_of(c, &sandbox).await?;
    match there.iter().any(|e| e["interface"] == env.ifname.as_str()) {
        true => Ok(()),
        false => {
            let msg = format!(
                "container {} has no interface {} on wasmnet",
                env.container_id, env.ifname
            );
            Err(CniError::new(code::UNKNOWN_CONTAINER, msg))
        }
    }
}

pub async fn status(c: &Client) -> Result<(), CniError> {
    c.get("/healthz").await.map(drop).map_err(|e| {
        let e = cni(e);
        CniError::new(code::NOT_AVAILABLE, e.msg)
    })
}

/// Removes what CNI made on this network that the runtime no longer lists as valid.
pub async fn gc(c: &Client, cfg: &Config) -> Result<(), CniError> {
    let network = network_of(c, cfg).await?;
    let label = encode(&format!("{}={}", ORIGIN.0, ORIGIN.1));
    let sandboxes = c
        .list_all(&format!("/v1/sandboxes?label={label}"))
        .await
        .map_err(cni)?;
    for s in sandboxes {
        let (Some(name), Some(id)) = (s["name"].as_str(), s["labels"][CONTAINER].as_str()) else {
            continue;
        };
        let endpoints = endpoints_of(c, name).await?;
        let mut kept = 0;
        for e in &endpoints {
            let ifname = e["interface"].as_str().unwrap_or_default();
            let valid = cfg
                .valid_attachments
                .iter()
                .any(|a| a.container_id == id && a.ifname == ifname);
            let ours = e["network_id"] == network["id"];
            if valid || !ours {
                kept += 1;
                continue;
            }
            delete_opt(
                c,
                &format!("/v1/endpoints/{}", e["id"].as_str().unwrap_or_default()),
            )
            .await?;
        }
        if kept == 0 {
            delete_opt(c, &format!("/v1/sandboxes/{}", encode(name))).await?;
        }
    }
    Ok(())
}
