//! The command line: `docker network`-style verbs, each one REST call (or a few) to the server.
//!
//! Here: the flags and commands at the top and what every command shares; one file per kind of
//! object (`network`, `sandbox`, `endpoint`, `service`), and flags made into requests in
//! `request`. The policy commands are `crate::policy_cli`.

pub(crate) mod common;
mod endpoint;
mod flows;
mod network;
mod request;
mod sandbox;
mod service;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use wasmnet_web::client::{Client, ClientError, Target};

use crate::output::{self, s, short, Format};
use crate::serve::ServeArgs;
use common::{inspect_each, remove_each};
use endpoint::EndpointCmd;
use network::NetworkCmd;
use sandbox::SandboxCmd;
use service::ServiceCmd;

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
    Serve(Box<ServeArgs>),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage sandboxes (network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Inspect endpoints (a sandbox's connection to a network).
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Manage services (a load-balanced virtual IP on a network).
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Print every change as it happens, until interrupted.
    Events,
    /// What the firewall dropped (or would have, or logged), and by whom; `-f` follows.
    Flows(flows::FlowsArgs),
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

#[derive(Args)]
pub struct LsArgs {
    /// `label=KEY[=VALUE]` or `name=SUBSTRING`; repeatable.
    #[arg(long, short = 'f')]
    filter: Vec<String>,
    /// Only ids.
    #[arg(long, short = 'q')]
    quiet: bool,
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
        Command::Service(cmd) => ctx.service(cmd).await,
        Command::Events => ctx.events().await,
        Command::Flows(args) => ctx.flows(args).await,
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
