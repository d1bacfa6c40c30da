//! `wasmnet endpoint …`: endpoints, a sandbox's connection to a network.

use clap::Subcommand;
use serde_json::Value;
use wasmnet_web::client::encode;

use super::request::filter_query;
use super::{CliResult, Ctx};
use crate::output::{s, short};

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

impl Ctx {
    pub(super) async fn endpoint(&self, cmd: EndpointCmd) -> CliResult {
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
