//! Network drivers: what a network, a sandbox and an endpoint are in the kernel. `bridge` is
//! one host's; `overlay` adds a VXLAN port to each host's bridge, programmed from the cluster.
//! Both work through [`Kernel`], so the engine's logic is tested on a fake kernel too.

pub mod bridge;
pub mod overlay;

use std::sync::Arc;

use async_trait::async_trait;

pub use bridge::Bridge;
pub use overlay::{Overlay, Vtep};

use crate::error::{Error, Result};
use crate::kernel::{KResult, Kernel};
use crate::model::{Driver, Endpoint, Network, Sandbox};

/// What a network and its endpoints are in the kernel, for one kind of network. Every
/// operation is idempotent, so the reconciler can simply run it again.
#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// Makes the network's kernel objects (or finishes making them).
    async fn create_network(&self, n: &Network) -> KResult<()>;
    /// Removes them; already gone is fine.
    async fn delete_network(&self, n: &Network) -> KResult<()>;
    /// Connects an endpoint: its veth, addresses, and the default route when
    /// `default_route` (the sandbox's first non-internal network, as in Docker).
    async fn join(
        &self,
        e: &Endpoint,
        n: &Network,
        s: &Sandbox,
        default_route: bool,
    ) -> KResult<()>;
    /// Disconnects: the endpoint unreachable at once, its veth retired for the reaper
    /// (`Kernel::retire_veth`); `s`, its sandbox, lets the container end be renamed out of
    /// the way of the next endpoint's interface.
    async fn leave(&self, e: &Endpoint, n: &Network, s: Option<&Sandbox>) -> KResult<()>;
    /// The links this driver keeps for the network (the reconciler removes others).
    fn links_of(&self, n: &Network) -> Vec<String>;
}

/// The drivers of this host; the one place that picks a network's.
pub struct Drivers {
    /// The bridge driver, which also makes sandboxes (namespaces) for every driver.
    pub bridge: Arc<Bridge>,
    overlay: Option<Overlay>,
}

impl Drivers {
    /// The bridge driver on `kernel` (and the overlay's, with this host's VTEP in a cluster).
    pub fn new(kernel: Arc<dyn Kernel>, vtep: Option<Vtep>) -> KResult<Drivers> {
        let bridge = Arc::new(Bridge::new(kernel)?);
        let overlay = vtep.map(|v| Overlay::new(bridge.clone(), v));
        Ok(Drivers { bridge, overlay })
    }

    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        self.bridge.kernel()
    }

    /// The driver of a network.
    pub fn of(&self, n: &Network) -> Result<&dyn NetworkDriver> {
        match (n.driver, &self.overlay) {
            (Driver::Bridge, _) => Ok(self.bridge.as_ref()),
            (Driver::Overlay, Some(o)) => Ok(o),
            (Driver::Overlay, None) => Err(Error::Internal(format!(
                "overlay network {:?} is in the store but this host runs without --cluster",
                n.name
            ))),
        }
    }
}
