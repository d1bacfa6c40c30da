//! wasmnet's policy host: loads untrusted policy components (the contract is the WIT package in
//! `policies/wit`), runs them in wasmtime within limits, and turns their answers into a
//! validated IR that the engine compiles to firewall rules.
//!
//! A policy imports nothing: it gets no WASI and no host function, so it can only compute.
//! Every call is bounded in time (epoch interruption), memory, tables and instances (store
//! limits) and output size (checked while converting to the IR).

mod error;
pub mod ir;
pub mod limits;
mod runtime;

pub use error::PolicyError;
pub use runtime::{Limits, Module, Runtime};

/// The generated bindings; `wit` below is what the engine builds inputs from.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-module",
    });
}

/// The WIT types as Rust (inputs for `evaluate` and `classify`, raw outputs).
pub use bindings::exports::wasmnet::policy::policy as wit;

/// The interface a policy must export, and the versions this host loads (semver-compatible,
/// so `0.1.x`).
pub const INTERFACE: &str = "wasmnet:policy/policy";
pub const VERSION: &str = "0.1.0";
