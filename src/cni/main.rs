//! `wasmnet-cni`: a CNI plugin (spec 0.4.0, 1.0.0, 1.1.0) that puts a container's network
//! namespace on a wasmnet network. A thin client of the daemon's API socket: the daemon does
//! the plumbing, the addresses, published ports and policies. The runtime runs it with
//! `CNI_COMMAND` and the other `CNI_*` variables and the network configuration on stdin; it
//! answers on stdout (a result, or the spec's error JSON with exit status 1).

mod ops;
mod spec;

use std::io::{Read, Write};
use std::process::ExitCode;

use serde_json::Value;
use spec::{code, CniError};
use wasmnet_web::client::{Client, Target};

/// The daemon's socket when the configuration names none.
const DEFAULT_SOCKET: &str = "/run/wasmnet/wasmnet.sock";
/// A network configuration is small; a runtime sending more is refused.
const MAX_CONFIG: u64 = 1 << 20;

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    let read = std::io::stdin().take(MAX_CONFIG).read_to_end(&mut stdin);
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
        .filter(|v| spec::VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::VERSIONS[spec::VERSIONS.len() - 1].to_string());
    let answer = match read {
        Err(e) => Err(CniError::new(5, format!("reading stdin: {e}"))),
        Ok(_) => run(&command, &stdin, &version),
    };
    let (out, status) = match answer {
        Ok(Some(v)) => (v, ExitCode::SUCCESS),
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => (e.json(&version), ExitCode::FAILURE),
    };
    let _ = writeln!(std::io::stdout(), "{out}");
    status
}

fn run(command: &str, stdin: &[u8], version: &str) -> Result<Option<Value>, CniError> {
    if command == "VERSION" {
        return Ok(Some(spec::version_result(version)));
    }
    let cfg = spec::config(stdin)?;
    let socket = cfg.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into());
    let c = Client::new(Target::Unix(socket.into()), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(5, format!("starting: {e}")))?;
    rt.block_on(async {
        match command {
            "ADD" => ops::add(&c, &cfg, &ops::env(true)?).await.map(Some),
            "DEL" => ops::del(&c, &ops::env(false)?).await.map(|()| None),
            "CHECK" => ops::check(&c, &ops::env(true)?).await.map(|()| None),
            "STATUS" => ops::status(&c).await.map(|()| None),
            "GC" => ops::gc(&c, &cfg).await.map(|()| None),
            other => Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_COMMAND {other:?}: expected ADD, DEL, CHECK, VERSION, STATUS or GC"),
            )),
        }
    })
}
