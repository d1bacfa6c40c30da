//! `wasmnet`: the daemon (`wasmnet serve`) and the command-line client for its REST API.

mod cli;
mod output;
mod policy_cli;
mod serve;
mod serve_names;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Serve(opts) => serve::run(*opts).await,
        command => cli::run(&args.client, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::FAILURE
        }
    }
}
