//! `wasmnet network …`: networks, and connecting sandboxes to them.

use std::net::IpAddr;

use clap::{Args, Subcommand};
use ipnet::IpNet;
use serde_json::{json, Value};
use wasmnet_web::client::encode;

use super::request::{filter_query, key_values, parse_publish, per_family};
use super::{CliError, CliResult, Ctx, LsArgs};
use crate::output::{self, origin, s, short, Format};

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
    /// What resolves on a network: its endpoints' names and addresses.
    Names { network: String },
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
    /// Driver option KEY=VALUE (mtu, icc, masquerade, dns, dns_forward, dns_redirect); repeatable.
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

impl Ctx {
    pub(super) async fn network(&self, cmd: NetworkCmd) -> CliResult {
        match cmd {
            NetworkCmd::Ls(ls) => self.network_ls(ls).await,
            NetworkCmd::Create(args) => {
                let created = self
                    .client
                    .post("/v1/networks", &network_body(args)?)
                    .await?;
                self.created(&created);
                Ok(())
            }
            NetworkCmd::Inspect { networks } => self.inspect("networks", &networks).await,
            NetworkCmd::Rm { networks } => self.remove("networks", &networks).await,
            NetworkCmd::Connect(args) => {
                let created = self
                    .client
                    .post("/v1/endpoints", &connect_body(args)?)
                    .await?;
                self.created(&created);
                Ok(())
            }
            NetworkCmd::Disconnect { network, sandbox } => {
                self.disconnect(&network, &sandbox).await
            }
            NetworkCmd::Names { network } => self.names(&network).await,
            NetworkCmd::Prune { filter, force: _ } => self.prune(&filter).await,
        }
    }

    async fn names(&self, network: &str) -> CliResult {
        let report = self
            .client
            .get(&format!("/v1/networks/{}/names", encode(network)))
            .await?;
        if let Format::Json = self.format {
            output::json(&report);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = (report["names"].as_array().into_iter().flatten())
            .map(|n| {
                let addrs = n["addresses"].as_array().into_iter().flatten();
                vec![
                    s(n, "name"),
                    s(n, "kind"),
                    s(n, "sandbox"),
                    addrs
                        .filter_map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    n["unpublished"].as_str().unwrap_or("published").to_string(),
                ]
            })
            .collect();
        output::table(&["NAME", "KIND", "SANDBOX", "ADDRESSES", "STATUS"], &rows);
        Ok(())
    }

    async fn network_ls(&self, ls: LsArgs) -> CliResult {
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
                "ORIGIN",
            ],
            |n| {
                vec![
                    short(&s(n, "id")),
                    s(n, "name"),
                    s(n, "driver"),
                    s(&n["ipv4"], "subnet"),
                    s(&n["ipv6"], "subnet"),
                    s(n, "internal"),
                    origin(n),
                ]
            },
        );
        Ok(())
    }

    /// Removes the endpoint joining `sandbox` to `network` (the API knows endpoints by id).
    async fn disconnect(&self, network: &str, sandbox: &str) -> CliResult {
        let path = format!(
            "/v1/endpoints?network={}&sandbox={}",
            encode(network),
            encode(sandbox)
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
        Ok(())
    }

    async fn prune(&self, filter: &[String]) -> CliResult {
        let removed = self
            .client
            .post(
                &format!("/v1/networks/prune{}", filter_query(filter)?),
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
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

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
