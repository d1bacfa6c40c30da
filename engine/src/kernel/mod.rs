//! The only code that touches the host's kernel: network namespaces (nix), links, addresses
//! and routes (rtnetlink), sysctls (/proc/sys). Nothing here spawns `ip`.
//!
//! Namespace switches happen only on short-lived dedicated threads (never on tokio's pooled
//! threads), so no thread is ever left in the wrong namespace, even on error: a netlink socket
//! opened inside a namespace stays bound to it after its thread has gone.

mod links;
mod netns;
pub mod nfset;
mod sysctl;

use std::io;

pub use links::{IfAddr, Links};
pub use links::{VethSpec, VxlanSpec};
pub use netns::{create_netns, list_netns, netns_exists, remove_netns};
pub use sysctl::write_sysctl;

/// A kernel operation that failed: what was being done, and the OS error it got.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct KernelError {
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl KernelError {
    pub fn new(op: impl Into<String>, source: io::Error) -> Self {
        KernelError {
            op: op.into(),
            source,
        }
    }

    /// The errno, when the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Converts a netlink failure into the OS error it carries.
pub(crate) fn netlink_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => io::Error::from_raw_os_error(-code.get()),
            None => io::Error::other("netlink acknowledged without error"),
        },
        other => io::Error::other(other.to_string()),
    }
}

pub type KResult<T> = Result<T, KernelError>;

/// Runs `f` on a new thread and returns its result without blocking the runtime. For work that
/// switches namespaces: the thread ends with `f`, so its namespace dies with it.
pub(crate) async fn on_dedicated_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wasmnet-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawning a thread");
    rx.await.expect("the namespace thread does not panic")
}
