//! `wasmnet policy …`: upload and manage Wasm policies on a server, and `policy test`, which
//! runs a policy offline against a fixture.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use wasmnet_web::client::{encode, Client, ClientError};

use crate::cli::common::{inspect_each, remove_each};
use crate::output::{self, s, short, Format};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// List policies.
    #[command(alias = "list")]
    Ls {
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Upload a policy component (.wasm); it is checked and evaluated before it is stored.
    Upload {
        file: PathBuf,
        /// Defaults to the file's name without `.wasm`.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show policies in detail.
    Inspect {
        #[arg(required = true)]
        policies: Vec<String>,
    },
    /// Delete policies.
    Rm {
        #[arg(required = true)]
        policies: Vec<String>,
        /// Detach them first.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Attach a policy to a network, or globally (no --network).
    Attach {
        policy: String,
        #[command(flatten)]
        how: Attachment,
    },
    /// Detach a policy from a network, or its global attachment (no --network).
    Detach {
        policy: String,
        #[arg(long)]
        network: Option<String>,
    },
    /// Show the rules a policy would produce and the diff against those in force.
    DryRun {
        policy: String,
        #[command(flatten)]
        how: Attachment,
    },
    /// Run a policy offline against a fixture of networks and endpoints; print its decisions
    /// and the nft rules they become.
    Test {
        file: PathBuf,
        /// JSON: {"networks":[{"name","subnet",…}],"endpoints":[{"network","sandbox","ipv4","labels","ports"}]}
        #[arg(long)]
        fixture: PathBuf,
    },
}

#[derive(Args)]
pub struct Attachment {
    /// A network's id or name; without it, the global default.
    #[arg(long)]
    network: Option<String>,
    /// Lower runs first.
    #[arg(long, default_value_t = 100)]
    priority: i64,
    /// Count and log would-be drops; enforce nothing.
    #[arg(long)]
    audit: bool,
}

impl Attachment {
    fn body(&self) -> Value {
        json!({"network": self.network, "priority": self.priority, "audit": self.audit})
    }
}

/// Runs one policy command; errors are one line for the user.
pub async fn run(client: &Client, format: Format, cmd: PolicyCmd) -> Result<(), String> {
    match cmd {
        PolicyCmd::Ls { quiet } => ls(client, format, quiet).await?,
        PolicyCmd::Upload {
            file,
            name,
            description,
        } => upload(client, format, &file, name, &description).await?,
        PolicyCmd::Inspect { policies } => {
            if inspect_each(client, "policies", &policies).await {
                return Err(String::new());
            }
        }
        PolicyCmd::Rm { policies, force } => {
            let query = format!("?force={force}");
            if remove_each(client, "policies", &policies, &query).await {
                return Err(String::new());
            }
        }
        PolicyCmd::Attach { policy, how } => {
            let p = client
                .post(&format!("{}/attach", path(&policy)), &how.body())
                .await
                .map_err(err)?;
            print_id(format, &p);
        }
        PolicyCmd::Detach { policy, network } => {
            let p = client
                .post(
                    &format!("{}/detach", path(&policy)),
                    &json!({"network": network}),
                )
                .await
                .map_err(err)?;
            print_id(format, &p);
        }
        PolicyCmd::DryRun { policy, how } => dry_run(client, format, &policy, &how).await?,
        PolicyCmd::Test { file, fixture } => test_offline(&file, &fixture)?,
    }
    Ok(())
}

fn err(e: ClientError) -> String {
    e.to_string()
}

fn path(policy: &str) -> String {
    format!("/v1/policies/{}", encode(policy))
}

async fn ls(client: &Client, format: Format, quiet: bool) -> Result<(), String> {
    let list = client.get("/v1/policies").await.map_err(err)?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    match (format, quiet) {
        (Format::Json, _) => output::json(&Value::Array(items)),
        (Format::Table, true) => items.iter().for_each(|i| println!("{}", s(i, "id"))),
        (Format::Table, false) => output::table(
            &[
                "POLICY ID",
                "NAME",
                "VERSION",
                "SIZE",
                "ATTACHED",
                "LAST ERROR",
            ],
            &items.iter().map(row).collect::<Vec<_>>(),
        ),
    }
    Ok(())
}

async fn upload(
    client: &Client,
    format: Format,
    file: &Path,
    name: Option<String>,
    description: &str,
) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let name = name.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let url = format!(
        "/v1/policies?name={}&description={}",
        encode(&name),
        encode(description)
    );
    let p = client
        .upload(&url, "application/wasm", bytes)
        .await
        .map_err(err)?;
    print_id(format, &p);
    Ok(())
}

async fn dry_run(
    client: &Client,
    format: Format,
    policy: &str,
    how: &Attachment,
) -> Result<(), String> {
    let d = client
        .post(&format!("{}/dry-run", path(policy)), &how.body())
        .await
        .map_err(err)?;
    match format {
        Format::Json => output::json(&d),
        Format::Table if s(&d, "diff").is_empty() => println!("no change"),
        Format::Table => print!("{}", s(&d, "diff")),
    }
    Ok(())
}

/// `policy test`: offline, no server involved.
fn test_offline(file: &Path, fixture: &Path) -> Result<(), String> {
    let wasm = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let text = std::fs::read_to_string(fixture)
        .map_err(|e| format!("reading {}: {e}", fixture.display()))?;
    let fixture = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", fixture.display()))?;
    print!(
        "{}",
        wasmnet_engine::policy::offline::test(&wasm, &fixture)?
    );
    Ok(())
}

fn row(p: &Value) -> Vec<String> {
    let attached: Vec<String> = p["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let scope = a["network_id"].as_str().map_or("global".to_string(), short);
            let audit = if a["audit"].as_bool() == Some(true) {
                " audit"
            } else {
                ""
            };
            format!("{scope}@{}{audit}", a["priority"])
        })
        .collect();
    vec![
        short(&s(p, "id")),
        s(p, "name"),
        s(p, "version"),
        s(p, "size"),
        attached.join(","),
        s(p, "last_error"),
    ]
}

fn print_id(format: Format, p: &Value) {
    match format {
        Format::Json => output::json(p),
        Format::Table => println!("{}", s(p, "id")),
    }
}
