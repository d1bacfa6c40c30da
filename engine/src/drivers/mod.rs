//! Network drivers: what a network, a sandbox and an endpoint are in the kernel. `bridge` is
//! one host's; `overlay` adds a VXLAN port to each host's bridge, programmed from the cluster.

pub mod bridge;
pub mod overlay;

pub use bridge::Bridge;
