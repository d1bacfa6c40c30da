//! `wasmnet service …`: services, a load-balanced virtual IP on a network.

use std::net::IpAddr;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use wasmnet_engine::model::{Affinity, Protocol, ServicePort};
use wasmnet_web::client::encode;

use super::request::{filter_query, key_values};
use super::{CliError, CliResult, Ctx};
use crate::output::{s, short};

#[derive(Subcommand)]
pub enum ServiceCmd {
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only this network's services (id, prefix or name).
        #[arg(long)]
        network: Option<String>,
        /// `label=KEY[=VALUE]` or `name=SUBSTRING`; repeatable.
        #[arg(long, short = 'f')]
        filter: Vec<String>,
        /// Only ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Create a service: a virtual IP on a network, balanced across the endpoints it selects.
    Create(ServiceCreateArgs),
    /// Show services in detail, with their backends.
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Remove services.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

#[derive(Args)]
pub struct ServiceCreateArgs {
    name: String,
    /// The network the virtual IP is on (id, prefix or name).
    #[arg(long)]
    network: String,
    /// The virtual IPv4 address (default: the lowest free one of the network's subnet).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// The virtual IPv6 address, on a dual-stack network.
    #[arg(long)]
    ip6: Option<IpAddr>,
    /// PORT[:TARGET][/PROTO], e.g. 80:8080/tcp (TARGET: the backends' port); repeatable.
    #[arg(long, short = 'p', required = true)]
    port: Vec<String>,
    /// Backends are the network's endpoints with all these labels: KEY=VALUE; repeatable.
    #[arg(long)]
    selector: Vec<String>,
    /// Or these endpoints (id or unique prefix); repeatable.
    #[arg(long)]
    endpoint: Vec<String>,
    /// How a client's connections are spread over the backends.
    #[arg(long, value_enum, default_value = "none")]
    affinity: AffinityArg,
    /// KEY=VALUE; repeatable.
    #[arg(long)]
    label: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AffinityArg {
    /// Each new connection picks a backend at random.
    #[value(name = "none")]
    None,
    /// A client address's connections go to the same backend.
    #[value(name = "client_ip")]
    ClientIp,
}

impl AffinityArg {
    fn affinity(self) -> Affinity {
        match self {
            AffinityArg::None => Affinity::None,
            AffinityArg::ClientIp => Affinity::ClientIp,
        }
    }
}

impl Ctx {
    pub(super) async fn service(&self, cmd: ServiceCmd) -> CliResult {
        match cmd {
            ServiceCmd::Ls {
                network,
                filter,
                quiet,
            } => {
                let mut query = filter_query(&filter)?;
                if let Some(n) = network {
                    query += &format!(
                        "{}network={}",
                        if query.is_empty() { '?' } else { '&' },
                        encode(&n)
                    );
                }
                let items = self
                    .client
                    .list_all(&format!("/v1/services{query}"))
                    .await?;
                self.list(
                    &items,
                    quiet,
                    &["SERVICE ID", "NAME", "NETWORK", "VIP", "PORTS", "BACKENDS"],
                    |x| {
                        vec![
                            short(&s(x, "id")),
                            s(x, "name"),
                            s(x, "network_name"),
                            vips(x),
                            ports(x),
                            x["backends"].as_array().map_or(0, Vec::len).to_string(),
                        ]
                    },
                );
            }
            ServiceCmd::Create(args) => {
                let created = self
                    .client
                    .post("/v1/services", &service_body(args)?)
                    .await?;
                self.created(&created);
            }
            ServiceCmd::Inspect { services } => self.inspect("services", &services).await?,
            ServiceCmd::Rm { services } => self.remove("services", &services).await?,
        }
        Ok(())
    }
}

fn service_body(a: ServiceCreateArgs) -> Result<Value, CliError> {
    if a.ip.is_some_and(|ip| ip.is_ipv6()) {
        return Err(CliError::Usage(
            "--ip takes an IPv4 address (use --ip6 for IPv6)".into(),
        ));
    }
    if a.ip6.is_some_and(|ip| ip.is_ipv4()) {
        return Err(CliError::Usage(
            "--ip6 takes an IPv6 address (use --ip for IPv4)".into(),
        ));
    }
    let ports = (a.port.iter())
        .map(|p| parse_service_port(p).map_err(CliError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "name": a.name,
        "network": a.network,
        "ipv4": a.ip,
        "ipv6": a.ip6,
        "ports": ports,
        "selector": key_values("--selector", &a.selector)?,
        "endpoints": a.endpoint,
        "affinity": a.affinity.affinity(),
        "labels": key_values("--label", &a.label)?,
    }))
}

/// `PORT[:TARGET][/PROTO]`: the virtual IP's port, the backends' port (default: the same),
/// the protocol (default tcp).
pub fn parse_service_port(spec: &str) -> Result<ServicePort, String> {
    let bad = |why: String| {
        format!("--port {spec:?}: {why} (expected PORT[:TARGET][/PROTO], e.g. 80:8080/tcp)")
    };
    let (ports, protocol) = match spec.split_once('/') {
        Some((ports, proto)) => (ports, proto.parse::<Protocol>().map_err(bad)?),
        None => (spec, Protocol::Tcp),
    };
    let number = |what: &str, text: &str| match text.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(format!(
            "{what} {text:?} is not a port from 1 to 65535"
        ))),
    };
    let (port, target_port) = match ports.split_once(':') {
        Some((port, target)) => (number("port", port)?, number("target", target)?),
        None => {
            let port = number("port", ports)?;
            (port, port)
        }
    };
    Ok(ServicePort {
        protocol,
        port,
        target_port,
    })
}

/// The virtual addresses, IPv4 first.
fn vips(x: &Value) -> String {
    (["ipv4", "ipv6"].iter())
        .map(|k| s(x, k))
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

fn ports(x: &Value) -> String {
    let list = x["ports"].as_array().cloned().unwrap_or_default();
    let one = |p: &Value| {
        let (port, target) = (&p["port"], &p["target_port"]);
        if port == target {
            format!("{port}/{}", s(p, "protocol"))
        } else {
            format!("{port}->{target}/{}", s(p, "protocol"))
        }
    };
    list.iter().map(one).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn port_specs() {
        let p = |spec: &str| parse_service_port(spec).unwrap();
        let port = |protocol, port, target_port| ServicePort {
            protocol,
            port,
            target_port,
        };
        assert_eq!(p("80"), port(Protocol::Tcp, 80, 80));
        assert_eq!(p("80:8080"), port(Protocol::Tcp, 80, 8080));
        assert_eq!(p("80:8080/tcp"), port(Protocol::Tcp, 80, 8080));
        assert_eq!(p("53/udp"), port(Protocol::Udp, 53, 53));
        assert_eq!(p("5000:5001/sctp"), port(Protocol::Sctp, 5000, 5001));
        for bad in [
            "",
            "x",
            "0",
            "80:",
            ":80",
            "80:0",
            "99999",
            "80:8080/icmp",
            "80/",
            "1:2:3",
            "80/tcp/x",
            "-1",
        ] {
            let e = parse_service_port(bad).expect_err(bad);
            assert!(e.starts_with("--port"), "{bad:?}: {e}");
        }
        assert!(parse_service_port("80:x")
            .unwrap_err()
            .contains("target \"x\""));
    }

    #[test]
    fn create_flags_make_the_request() {
        let args = ServiceCreateArgs::try_parse_from_args(&[
            "web",
            "--network",
            "front",
            "--ip",
            "10.0.0.100",
            "-p",
            "80:8080",
            "--port",
            "53/udp",
            "--selector",
            "app=web",
            "--affinity",
            "client_ip",
            "--label",
            "tier=front",
        ]);
        let body = service_body(args).ok().unwrap();
        assert_eq!(
            body,
            json!({
                "name": "web",
                "network": "front",
                "ipv4": "10.0.0.100",
                "ipv6": null,
                "ports": [
                    {"protocol": "tcp", "port": 80, "target_port": 8080},
                    {"protocol": "udp", "port": 53, "target_port": 53},
                ],
                "selector": {"app": "web"},
                "endpoints": [],
                "affinity": "client_ip",
                "labels": {"tier": "front"},
            })
        );
        let v6 = ServiceCreateArgs::try_parse_from_args(&[
            "web",
            "--network",
            "n",
            "-p",
            "80",
            "--ip",
            "fd00::1",
        ]);
        assert!(service_body(v6).is_err());
        let bad = ServiceCreateArgs::try_parse_from_args(&["web", "--network", "n", "-p", "80:"]);
        assert!(service_body(bad).is_err());
    }

    #[test]
    fn list_columns() {
        let x = json!({
            "ipv4": "10.0.0.100",
            "ipv6": "fd00::100",
            "ports": [
                {"protocol": "tcp", "port": 80, "target_port": 8080},
                {"protocol": "udp", "port": 53, "target_port": 53},
            ],
        });
        assert_eq!(vips(&x), "10.0.0.100,fd00::100");
        assert_eq!(ports(&x), "80->8080/tcp, 53/udp");
        assert_eq!(vips(&json!({"ipv4": "10.0.0.1", "ipv6": null})), "10.0.0.1");
    }

    impl ServiceCreateArgs {
        fn try_parse_from_args(args: &[&str]) -> Self {
            #[derive(Parser)]
            struct T {
                #[command(flatten)]
                a: ServiceCreateArgs,
            }
            T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .unwrap()
                .a
        }
    }
}
