//! What can go wrong putting wasmnet's rules in the kernel, by where it went wrong, each with
//! its source: nft (its report), the element batches over netlink (`kernel::nfset`),
//! iptables-restore (its stderr and exit status), files and processes (I/O), and the sysctls
//! the rules rely on. The engine carries it as `Error::Firewall`, which the API answers with
//! 500 `firewall` and this message: the operator needs to know which step failed and why.

use std::process::ExitStatus;

use crate::kernel::nfset::NfsetError;
use crate::kernel::KernelError;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// nft ran and refused a transaction (or a listing): its report, shown, never parsed.
    #[error("nft refused the {what}: {report}")]
    NftRefused { what: &'static str, report: String },
    /// nft could not be run, or its answer could not be read.
    #[error("running nft for the {what}: {source}")]
    Nft {
        what: &'static str,
        #[source]
        source: nftables::helper::NftablesError,
    },
    /// A batch of set elements over netlink failed (the kernel's errno is in the message).
    #[error(transparent)]
    Netlink(#[from] NfsetError),
    /// iptables-restore (or ip6tables-restore) refused one table's commit.
    #[error("{program} refused the {table} table ({status}): {stderr}")]
    IptablesRestore {
        program: &'static str,
        table: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    /// A file or a process: writing a script, starting or feeding a program.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A sysctl the rules need (br_netfilter's) could not be set.
    #[error("{why}: {source}")]
    Sysctl {
        why: &'static str,
        #[source]
        source: KernelError,
    },
}

impl FirewallError {
    /// An nft run for `what` that failed: refused (with nft's report) or not run at all.
    pub fn nft(what: &'static str, e: nftables::helper::NftablesError) -> FirewallError {
        match e {
            nftables::helper::NftablesError::NftFailed { stderr, .. } => {
                FirewallError::NftRefused {
                    what,
                    report: stderr.trim().to_string(),
                }
            }
            source => FirewallError::Nft { what, source },
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> FirewallError {
        FirewallError::Io {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftables::helper::NftablesError;

    #[test]
    fn an_nft_refusal_keeps_its_report_and_a_failed_run_its_source() {
        let refused = FirewallError::nft(
            "ruleset",
            NftablesError::NftFailed {
                program: "nft".into(),
                hint: "applying".into(),
                stdout: String::new(),
                stderr: "Error: syntax error\n".into(),
            },
        );
        assert_eq!(
            refused.to_string(),
            "nft refused the ruleset: Error: syntax error"
        );
        let missing = FirewallError::nft(
            "listing",
            NftablesError::NftExecution {
                program: "nft".into(),
                inner: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        );
        assert!(matches!(missing, FirewallError::Nft { .. }));
        assert!(std::error::Error::source(&missing).is_some());
    }
}
