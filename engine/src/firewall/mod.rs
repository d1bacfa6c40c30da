//! The firewall: a rules IR (`ruleset`), Docker's default semantics compiled into it
//! (`docker`), and backends that put it in the kernel atomically (`nft`).

pub mod docker;
mod nft;
pub mod ruleset;

pub use nft::{matches as nft_matches, FirewallError, Nft};
pub use ruleset::{Change, Fingerprint, Ruleset};
