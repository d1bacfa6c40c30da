//! One error type for the whole engine. The web layer maps each variant to an HTTP status
//! in one place (`wasmnet_web::error`); internal details stay in the logs.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value a client sent is not acceptable; `field` names it (JSON path, e.g. `ipv4.subnet`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The object named does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound { kind: Kind, name: String },
    /// The request is valid but clashes with the current state (name taken, address in use, …).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Something failed inside wasmnet; the client sees a generic message, the log the detail.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
    /// A netlink, namespace or sysctl operation failed; names the operation and the errno.
    #[error("kernel: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    /// The rules could not be put in place (nft, a netlink element batch, iptables-restore);
    /// says which step and why, with nft's or iptables-restore's report, not interpreted.
    #[error("firewall: {0}")]
    Firewall(#[from] crate::firewall::FirewallError),
    /// The cluster store (etcd) did not answer: cluster objects cannot change now. The
    /// message says which store and why; local objects are unaffected.
    #[error("{0}")]
    Unavailable(String),
    /// A policy could not be loaded, or failed or misbehaved when called; names the policy.
    #[error("policy {policy:?}: {error}")]
    Policy {
        policy: String,
        error: wasmnet_policy::PolicyError,
    },
}

/// The kinds of object wasmnet keeps, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Network,
    Sandbox,
    Endpoint,
    Policy,
    Service,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Network => "network",
            Kind::Sandbox => "sandbox",
            Kind::Endpoint => "endpoint",
            Kind::Policy => "policy",
            Kind::Service => "service",
        })
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(kind: Kind, name: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
