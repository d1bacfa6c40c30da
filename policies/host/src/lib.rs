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

mod versions;

/// The generated bindings: the current contract (what the engine builds inputs from) and the
/// 0.1 one, whose guests still load (`versions` converts between the two).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-module",
    });

    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "../wit-0.1.0",
            world: "policy-module",
        });
    }
}

/// The WIT types as Rust (inputs for `evaluate` and `classify`, raw outputs).
pub use bindings::exports::wasmnet::policy::policy as wit;

/// The interface a policy must export, and the versions this host loads (semver-compatible
/// with either: `0.2.x`, and `0.1.x` for guests built before the `fqdn` peer).
pub const INTERFACE: &str = "wasmnet:policy/policy";
pub const VERSION: &str = "0.2.0";
pub const VERSIONS: [&str; 2] = [VERSION, "0.1.0"];
