//! `wasmnet flows`: what the firewall dropped (or would have, or logged), by whom — the
//! newest records, or (`-f`) every new one as it comes.

use clap::Args;
use serde_json::Value;
use wasmnet_web::client::encode;

use super::{CliResult, Ctx};
use crate::output::{self, s, Format};

#[derive(Args)]
pub struct FlowsArgs {
    /// Keep printing new flows as they come, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only flows the policy decided (id, prefix or name).
    #[arg(long)]
    policy: Option<String>,
    /// Only flows with the sandbox at either end (id, prefix or name).
    #[arg(long)]
    sandbox: Option<String>,
    /// Only flows the network's rules decided (id, prefix or name).
    #[arg(long)]
    network: Option<String>,
    /// dropped, would_drop or logged.
    #[arg(long)]
    verdict: Option<String>,
    /// How many of the newest to print first (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

impl FlowsArgs {
    fn query(&self) -> String {
        let pairs = [
            ("policy", &self.policy),
            ("sandbox", &self.sandbox),
            ("network", &self.network),
            ("verdict", &self.verdict),
        ];
        (pairs.iter())
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

const HEADERS: [&str; 7] = [
    "TIME",
    "VERDICT",
    "BY",
    "PROTO",
    "SOURCE",
    "DESTINATION",
    "NETWORK",
];

/// One end: `sandbox (address:port)`, or the address alone when it is not wasmnet's.
fn peer(p: &Value) -> String {
    let at = match p["port"].as_u64() {
        Some(port) if s(p, "address").contains(':') => format!("[{}]:{port}", s(p, "address")),
        Some(port) => format!("{}:{port}", s(p, "address")),
        None => s(p, "address"),
    };
    match p["sandbox"].as_str() {
        Some(sb) => format!("{sb} ({at})"),
        None => at,
    }
}

fn row(f: &Value) -> Vec<String> {
    vec![
        s(f, "time"),
        s(f, "verdict"),
        s(f, "decided_by"),
        s(f, "protocol"),
        peer(&f["source"]),
        peer(&f["destination"]),
        s(f, "network"),
    ]
}

impl Ctx {
    pub(super) async fn flows(&self, args: FlowsArgs) -> CliResult {
        let q = args.query();
        let sep = if q.is_empty() { "" } else { "&" };
        let path = format!("/v1/flows?limit={}{sep}{q}", args.limit);
        let mut stream = match args.follow {
            // Opened first, so nothing falls between the list and the stream.
            true => Some(self.client.stream(&format!("/v1/flows/stream?{q}")).await?),
            false => None,
        };
        let got = self.client.get(&path).await?;
        let items = got["items"].as_array().cloned().unwrap_or_default();
        let last = items.last().and_then(|f| f["seq"].as_u64()).unwrap_or(0);
        match self.format {
            Format::Json => items.iter().for_each(|f| println!("{f}")),
            Format::Table => output::table(&HEADERS, &items.iter().map(row).collect::<Vec<_>>()),
        }
        let Some(stream) = stream.as_mut() else {
            return Ok(());
        };
        while let Some(event) = stream.next().await {
            let (name, data) = event?;
            let f: Value = serde_json::from_str(&data).unwrap_or_default();
            if name != "flow" || f["seq"].as_u64().is_some_and(|n| n <= last) {
                continue;
            }
            match self.format {
                Format::Json => println!("{data}"),
                Format::Table => println!("{}", row(&f).join("   ")),
            }
        }
        Ok(())
    }
}
