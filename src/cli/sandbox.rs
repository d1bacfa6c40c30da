//! `wasmnet sandbox …`: sandboxes (network namespaces).

use clap::Subcommand;
use serde_json::json;

use super::request::{filter_query, key_values};
use super::{CliResult, Ctx, LsArgs};
use crate::output::{origin, s, short};

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

impl Ctx {
    pub(super) async fn sandbox(&self, cmd: SandboxCmd) -> CliResult {
        match cmd {
            SandboxCmd::Ls(ls) => {
                let items = self
                    .client
                    .list_all(&format!("/v1/sandboxes{}", filter_query(&ls.filter)?))
                    .await?;
                self.list(
                    &items,
                    ls.quiet,
                    &["SANDBOX ID", "NAME", "NETNS", "OWNED", "ORIGIN"],
                    |x| {
                        vec![
                            short(&s(x, "id")),
                            s(x, "name"),
                            s(x, "netns"),
                            s(x, "netns_owned"),
                            origin(x),
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
}
