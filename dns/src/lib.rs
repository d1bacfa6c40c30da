//! wasmnet's embedded DNS server (hickory-server, in the daemon: no dnsmasq process). Each
//! network that serves DNS (`dns`, on by default) gets a server on its gateway addresses,
//! port 53, UDP and TCP, which the network's sandboxes reach as their resolver. It answers
//! the names `wasmnet_engine::directory` says that querier may see, read from the committed
//! state at each query (a name is there once its connect returned), and forwards the rest to
//! the upstream resolvers — but on internal networks, unless `dns_forward=true`.

mod forward;
mod handler;
mod limit;
mod listeners;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmnet_engine::directory::Directory;
use wasmnet_engine::state::State;
use wasmnet_engine::Engine;

pub use forward::Upstreams;
pub use limit::Limiter;
pub use listeners::Listeners;

/// At most this many upstream resolvers are used (as glibc reads at most three).
pub const MAX_UPSTREAMS: usize = 3;

#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub upstreams: Upstreams,
    /// Queries a second one source may make (bursts of twice that); 0: no limit.
    pub rate_limit: u32,
    /// The port served on the gateways (53; other values for tests of the server alone).
    pub port: u16,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            upstreams: Upstreams {
                servers: vec![],
                timeout: Duration::from_millis(1500),
            },
            rate_limit: 10_000,
            port: 53,
        }
    }
}

/// What every network's server shares.
pub(crate) struct Shared {
    engine: Arc<Engine>,
    /// The directory of the state it was built from; built again when the state moved on.
    cache: RwLock<(Arc<State>, Arc<Directory>)>,
    upstreams: Upstreams,
    limiter: Limiter,
}

impl Shared {
    fn new(engine: Arc<Engine>, cfg: &DnsConfig) -> Shared {
        let state = engine.state();
        let directory = Arc::new(Directory::build(&state));
        Shared {
            engine,
            cache: RwLock::new((state, directory)),
            upstreams: cfg.upstreams.clone(),
            limiter: Limiter::new(cfg.rate_limit),
        }
    }

    /// The directory of the state in force (so a name answers as soon as its connect has).
    pub(crate) fn directory(&self) -> Arc<Directory> {
        let state = self.engine.state();
        {
            let cached = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if Arc::ptr_eq(&cached.0, &state) {
                return cached.1.clone();
            }
        }
        let directory = Arc::new(Directory::build(&state));
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = (state, directory.clone());
        directory
    }
}

/// Starts the servers of every network that serves DNS, and keeps them following the
/// networks as they come and go; they stop when the returned value is dropped.
pub fn start(engine: Arc<Engine>, cfg: DnsConfig) -> Listeners {
    Listeners::start(Arc::new(Shared::new(engine, &cfg)), cfg.port)
}
