//! The command line: `docker network`-style verbs, each one REST call (or a few) to the server.

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use wasmnet_engine::model::PortRequest;
use wasmnet_web::client::{encode, Client, ClientError, Target};

use crate::output::{self, s, short, Format};
use crate::serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "wasmnet",
    version,
    about = "Container networking with isolation and NAT programmable in WebAssembly"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct ClientArgs {
    /// The server: unix:///PATH or http://HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "WASMNET_HOST",
        default_value = "unix:///run/wasmnet/wasmnet.sock"
    )]
    pub host: Target,
    /// The API token, needed over TCP (it is in the server's state dir).
    #[arg(long, global = true, env = "WASMNET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage sandboxes (network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Inspect endpoints (a sandbox's connection to a network).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Print every change as it happens, until interrupted.
    Events,
    /// The firewall wasmnet keeps.
    #[command(subcommand)]
    Firewall(FirewallCmd),
    /// Wasm policies: upload, attach, dry-run, and test offline.
    #[command(subcommand)]
    Policy(crate::policy_cli::PolicyCmd),
}

#[derive(Subcommand)]
pub enum FirewallCmd {
    /// Put wasmnet's tables back as the store says (after someone flushed them).
    Reload,
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Create a network.
    Create(NetworkCreateArgs),
    /// Show networks in detail.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a sandbox to a network.
    Connect(ConnectArgs),
    /// Disconnect a sandbox from a network.
    Disconnect { network: String, sandbox: String },
    /// Remove all networks without endpoints.
    Prune {
        /// `label=KEY[=VALUE]`: only networks with this label.
        #[arg(long)]
        filter: Vec<String>,
        /// Accepted for docker compatibility; wasmnet never prompts.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

#[derive(Args)]
pub struct LsArgs {
    /// `label=KEY[=VALUE]` or `name=SUBSTRING`; repeatable.
    #[arg(long, short = 'f')]
    filter: Vec<String>,
    /// Only ids.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
pub struct NetworkCreateArgs {
    name: String,
    #[arg(long, short = 'd', default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form; once per family.
    #[arg(long)]
    subnet: Vec<IpNet>,
    /// Gateway address; once per family.
    #[arg(long)]
    gateway: Vec<IpAddr>,
    /// Allocate dynamic addresses from this sub-range; once per family.
    #[arg(long)]
    ip_range: Vec<IpNet>,
    /// Give the network IPv6 too.
    #[arg(long)]
    ipv6: bool,
    /// No way out of the network.
    #[arg(long)]
    internal: bool,
    /// KEY=VALUE; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Driver option KEY=VALUE (mtu, icc, masquerade); repeatable.
    #[arg(long, short = 'o')]
    opt: Vec<String>,
}

#[derive(Args)]
pub struct ConnectArgs {
    network: String,
    sandbox: String,
    /// Static IPv4 address.
    #[arg(long)]
    ip: Option<IpAddr>,
    /// Static IPv6 address.
    #[arg(long)]
    ip6: Option<IpAddr>,
    /// DNS alias; repeatable.
    #[arg(long)]
    alias: Vec<String>,
    /// Publish a port: [HOSTIP:][HOSTPORT:]PORT[/PROTO]; repeatable.
    #[arg(long, short = 'p')]
    publish: Vec<String>,
    /// Interface name inside the sandbox (default: the next free ethN).
    #[arg(long)]
    interface: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    /// KEY=VALUE; repeatable.
    #[arg(long)]
    label: Vec<String>,
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// List sandboxes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Create a sandbox, or adopt an existing namespace with --netns.
    Create {
        name: Option<String>,
        #[arg(long)]
        label: Vec<String>,
        /// Adopt this namespace (/proc/PID/ns/net, /run/netns/NAME) instead of creating one.
        #[arg(long)]
        netns: Option<String>,
    },
    /// Show sandboxes in detail.
    Inspect {
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
    /// Remove sandboxes (disconnecting their endpoints).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        sandboxes: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum EndpointCmd {
    /// List endpoints.
    #[command(alias = "list")]
    Ls {
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        sandbox: Option<String>,
        /// `label=KEY[=VALUE]`; repeatable.
        #[arg(long, short = 'f')]
        filter: Vec<String>,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show endpoints in detail.
    Inspect {
        #[arg(required = true)]
        endpoints: Vec<String>,
    },
}

pub async fn run(args: &ClientArgs, command: Command) -> Result<(), String> {
    let client = Client::new(args.host.clone(), args.token.clone());
    let ctx = Ctx {
        client,
        format: args.format,
    };
    let result = match command {
        Command::Serve(_) => unreachable!("handled by main"),
        Command::Network(cmd) => ctx.network(cmd).await,
        Command::Sandbox(cmd) => ctx.sandbox(cmd).await,
        Command::Endpoint(cmd) => ctx.endpoint(cmd).await,
        Command::Events => ctx.events().await,
        Command::Policy(cmd) => return crate::policy_cli::run(&ctx.client, ctx.format, cmd).await,
        Command::Firewall(FirewallCmd::Reload) => ctx
            .client
            .post("/v1/firewall/reload", &json!({}))
            .await
            .map(drop)
            .map_err(CliError::from),
    };
    result.map_err(|e| match e {
        CliError::Client(c) => c.to_string(),
        CliError::Usage(m) => m,
        CliError::Reported => String::new(),
    })
}

enum CliError {
    Client(ClientError),
    Usage(String),
    /// Already printed (one line per failed object); only the exit code is left to set.
    Reported,
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

type CliResult = Result<(), CliError>;

struct Ctx {
    client: Client,
    format: Format,
}

impl Ctx {
    async fn network(&self, cmd: NetworkCmd) -> CliResult {
        match cmd {
            NetworkCmd::Ls(ls) => {
                let items = self
                    .client
                    .list_all(&format!("/v1/networks{}", filter_query(&ls.filter)?))
                    .await?;
                self.list(
                    &items,
                    ls.quiet,
                    &[
                        "NETWORK ID",
                        "NAME",
                        "DRIVER",
                        "IPV4 SUBNET",
                        "IPV6 SUBNET",
                        "INTERNAL",
                    ],
                    |n| {
                        vec![
                            short(&s(n, "id")),
                            s(n, "name"),
                            s(n, "driver"),
                            s(&n["ipv4"], "subnet"),
                            s(&n["ipv6"], "subnet"),
                            s(n, "internal"),
                        ]
                    },
                );
            }
            NetworkCmd::Create(args) => {
                let created = self
                    .client
                    .post("/v1/networks", &network_body(args)?)
                    .await?;
                self.created(&created);
            }
            NetworkCmd::Inspect { networks } => self.inspect("networks", &networks).await?,
            NetworkCmd::Rm { networks } => self.remove("networks", &networks).await?,
            NetworkCmd::Connect(args) => {
                let created = self
                    .client
                    .post("/v1/endpoints", &connect_body(args)?)
                    .await?;
                self.created(&created);
            }
            NetworkCmd::Disconnect { network, sandbox } => {
                let path = format!(
                    "/v1/endpoints?network={}&sandbox={}",
                    encode(&network),
                    encode(&sandbox)
                );
                let found = self.client.list_all(&path).await?;
                let Some(endpoint) = found.first() else {
                    return Err(CliError::Usage(format!(
                        "sandbox {sandbox:?} is not connected to network {network:?}"
                    )));
                };
                self.client
                    .delete(&format!("/v1/endpoints/{}", s(endpoint, "id")))
                    .await?;
            }
            NetworkCmd::Prune { filter, force: _ } => {
                let removed = self
                    .client
                    .post(
                        &format!("/v1/networks/prune{}", filter_query(&filter)?),
                        &json!({}),
                    )
                    .await?;
                match self.format {
                    Format::Json => output::json(&removed),
                    Format::Table => removed
                        .as_array()
                        .into_iter()
                        .flatten()
                        .for_each(|n| println!("{}", s(n, "name"))),
                }
            }
        }
        Ok(())
    }

    async fn sandbox(&self, cmd: SandboxCmd) -> CliResult {
        match cmd {
            SandboxCmd::Ls(ls) => {
                let items = self
                    .client
                    .list_all(&format!("/v1/sandboxes{}", filter_query(&ls.filter)?))
                    .await?;
                self.list(
                    &items,
                    ls.quiet,
                    &["SANDBOX ID", "NAME", "NETNS", "OWNED"],
                    |x| {
                        vec![
                            short(&s(x, "id")),
                            s(x, "name"),
                            s(x, "netns"),
                            s(x, "netns_owned"),
                        ]
                    },
                );
            }
            SandboxCmd::Create { name, label, netns } => {
                let body = json!({ "name": name, "labels": key_values("--label", &label)?, "netns": netns });
                let created = self.client.post("/v1/sandboxes", &body).await?;
                self.created(&created);
            }
            SandboxCmd::Inspect { sandboxes } => self.inspect("sandboxes", &sandboxes).await?,
            SandboxCmd::Rm { sandboxes } => self.remove("sandboxes", &sandboxes).await?,
        }
        Ok(())
    }

    async fn endpoint(&self, cmd: EndpointCmd) -> CliResult {
        match cmd {
            EndpointCmd::Ls {
                network,
                sandbox,
                filter,
                quiet,
            } => {
                let mut query = filter_query(&filter)?;
                for (key, value) in [("network", network), ("sandbox", sandbox)] {
                    if let Some(v) = value {
                        query += &format!(
                            "{}{key}={}",
                            if query.is_empty() { '?' } else { '&' },
                            encode(&v)
                        );
                    }
                }
                let items = self
                    .client
                    .list_all(&format!("/v1/endpoints{query}"))
                    .await?;
                self.list(
                    &items,
                    quiet,
                    &[
                        "ENDPOINT ID",
                        "NETWORK",
                        "SANDBOX",
                        "INTERFACE",
                        "IPV4",
                        "IPV6",
                        "PORTS",
                    ],
                    |e| {
                        vec![
                            short(&s(e, "id")),
                            s(e, "network_name"),
                            s(e, "sandbox_name"),
                            s(e, "interface"),
                            s(e, "ipv4"),
                            s(e, "ipv6"),
                            ports(e),
                        ]
                    },
                );
            }
            EndpointCmd::Inspect { endpoints } => self.inspect("endpoints", &endpoints).await?,
        }
        Ok(())
    }

    async fn events(&self) -> CliResult {
        let mut stream = self.client.events().await?;
        while let Some(event) = stream.next().await {
            let (name, data) = event?;
            match self.format {
                Format::Json => println!("{data}"),
                Format::Table => {
                    let e: Value = serde_json::from_str(&data).unwrap_or_default();
                    let name_of = |o: &Value| s(o, "name");
                    println!(
                        "{}  {name:<20} {}  {}",
                        s(&e, "time"),
                        short(&s(&e, "id")),
                        name_of(&e["object"])
                    );
                }
            }
        }
        Ok(())
    }

    fn list(
        &self,
        items: &[Value],
        quiet: bool,
        headers: &[&str],
        row: impl Fn(&Value) -> Vec<String>,
    ) {
        match (self.format, quiet) {
            (Format::Json, _) => output::json(&Value::Array(items.to_vec())),
            (Format::Table, true) => items.iter().for_each(|i| println!("{}", s(i, "id"))),
            (Format::Table, false) => {
                output::table(headers, &items.iter().map(row).collect::<Vec<_>>())
            }
        }
    }

    fn created(&self, obj: &Value) {
        match self.format {
            Format::Json => output::json(obj),
            Format::Table => println!("{}", s(obj, "id")),
        }
    }

    /// Inspects each reference; like docker, prints what it found and fails if any was missing.
    async fn inspect(&self, kind: &str, refs: &[String]) -> CliResult {
        ok_unless(inspect_each(&self.client, kind, refs).await)
    }

    async fn remove(&self, kind: &str, refs: &[String]) -> CliResult {
        ok_unless(remove_each(&self.client, kind, refs, "").await)
    }
}

fn ok_unless(failed: bool) -> CliResult {
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// GETs `/v1/{kind}/{ref}` for each reference and prints what it found as one JSON array;
/// prints an error line for each one missing, and returns whether any was.
pub(crate) async fn inspect_each(client: &Client, kind: &str, refs: &[String]) -> bool {
    let mut found = Vec::new();
    let mut failed = false;
    for r in refs {
        match client.get(&format!("/v1/{kind}/{}", encode(r))).await {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    output::json(&Value::Array(found));
    failed
}

/// DELETEs `/v1/{kind}/{ref}{query}` for each reference, printing each removed; returns
/// whether any failed (each failure printed on its line).
pub(crate) async fn remove_each(client: &Client, kind: &str, refs: &[String], query: &str) -> bool {
    let mut failed = false;
    for r in refs {
        match client
            .delete(&format!("/v1/{kind}/{}{query}", encode(r)))
            .await
        {
            Ok(_) => println!("{r}"),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    failed
}

fn ports(e: &Value) -> String {
    let list = e["ports"].as_array().cloned().unwrap_or_default();
    let one = |p: &Value| {
        let ip = match &p["host_ip"] {
            Value::String(ip) if ip.contains(':') => format!("[{ip}]:"),
            Value::String(ip) => format!("{ip}:"),
            _ => String::new(),
        };
        format!(
            "{ip}{}->{}/{}",
            p["host_port"],
            p["container_port"],
            s(p, "protocol")
        )
    };
    list.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// `label=k=v` and `name=x` filters as a query string.
fn filter_query(filters: &[String]) -> Result<String, CliError> {
    let mut parts = Vec::new();
    for f in filters {
        match f.split_once('=') {
            Some((key @ ("label" | "name"), value)) => {
                parts.push(format!("{key}={}", encode(value)))
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "--filter {f:?}: expected label=KEY[=VALUE] or name=SUBSTRING"
                )))
            }
        }
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
}

fn key_values(flag: &str, items: &[String]) -> Result<Map<String, Value>, CliError> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), Value::String(v.to_string()))),
            None => Err(CliError::Usage(format!(
                "{flag} {kv:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// At most one value of each IP family, for flags like `--subnet` that docker takes per family.
fn per_family<T: Copy>(
    flag: &str,
    values: &[T],
    is_v6: impl Fn(&T) -> bool,
) -> Result<(Option<T>, Option<T>), CliError> {
    let (v6, v4): (Vec<T>, Vec<T>) = values.iter().partition(|v| is_v6(v));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(CliError::Usage(format!(
            "{flag} may be given once per IP family"
        )));
    }
    Ok((v4.first().copied(), v6.first().copied()))
}

fn network_body(a: NetworkCreateArgs) -> Result<Value, CliError> {
    let (subnet4, subnet6) = per_family("--subnet", &a.subnet, |n| matches!(n, IpNet::V6(_)))?;
    let (gw4, gw6) = per_family("--gateway", &a.gateway, IpAddr::is_ipv6)?;
    let (range4, range6) = per_family("--ip-range", &a.ip_range, |n| matches!(n, IpNet::V6(_)))?;
    let ipv6 = (subnet6.is_some() || gw6.is_some() || range6.is_some())
        .then(|| json!({ "subnet": subnet6, "gateway": gw6, "ip_range": range6 }));
    Ok(json!({
        "name": a.name,
        "driver": a.driver,
        "ipv4": { "subnet": subnet4, "gateway": gw4, "ip_range": range4 },
        "enable_ipv6": a.ipv6,
        "ipv6": ipv6,
        "internal": a.internal,
        "labels": key_values("--label", &a.label)?,
        "options": key_values("--opt", &a.opt)?,
    }))
}

fn connect_body(a: ConnectArgs) -> Result<Value, CliError> {
    let ports = a
        .publish
        .iter()
        .map(|p| parse_publish(p).map_err(CliError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "network": a.network,
        "sandbox": a.sandbox,
        "ipv4": a.ip,
        "ipv6": a.ip6,
        "aliases": a.alias,
        "ports": ports,
        "interface": a.interface,
        "mac": a.mac,
        "labels": key_values("--label", &a.label)?,
    }))
}

/// Docker's `-p`: `[HOSTIP:][HOSTPORT:]PORT[/PROTO]`, an IPv6 host address in brackets.
pub fn parse_publish(spec: &str) -> Result<Value, String> {
    let port: PortRequest = spec.parse().map_err(|e| format!("--publish {e}"))?;
    Ok(serde_json::to_value(port).expect("a port request serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = |s: &str| parse_publish(s).unwrap();
        assert_eq!(
            p("80"),
            json!({"host_ip": null, "host_port": 0, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("8080:80"),
            json!({"host_ip": null, "host_port": 8080, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            json!({"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "udp"})
        );
        assert_eq!(
            p("127.0.0.1::80"),
            json!({"host_ip": "127.0.0.1", "host_port": 0, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("[::1]:53:53/udp"),
            json!({"host_ip": "::1", "host_port": 53, "container_port": 53, "protocol": "udp"})
        );
        for bad in ["", "x", "1:2:3:4", "a:80:80", "99999", "[::1]53"] {
            assert!(parse_publish(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subnets_split_by_family() {
        let args = NetworkCreateArgs::try_parse_from_args(&[
            "n",
            "--subnet",
            "10.0.0.0/24",
            "--subnet",
            "fd00::/64",
            "--gateway",
            "10.0.0.254",
        ]);
        let body = network_body(args).ok().unwrap();
        assert_eq!(body["ipv4"]["subnet"], "10.0.0.0/24");
        assert_eq!(body["ipv4"]["gateway"], "10.0.0.254");
        assert_eq!(body["ipv6"]["subnet"], "fd00::/64");
        let twice = NetworkCreateArgs::try_parse_from_args(&[
            "n",
            "--subnet",
            "10.0.0.0/24",
            "--subnet",
            "10.1.0.0/24",
        ]);
        assert!(network_body(twice).is_err());
    }

    impl NetworkCreateArgs {
        fn try_parse_from_args(args: &[&str]) -> Self {
            #[derive(Parser)]
            struct T {
                #[command(flatten)]
                a: NetworkCreateArgs,
            }
            T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .unwrap()
                .a
        }
    }
}
