//! Network drivers: what a network, a sandbox and an endpoint are in the kernel.
//! Only `bridge` exists yet; `overlay` will join it behind the same operations.

pub mod bridge;

pub use bridge::Bridge;
