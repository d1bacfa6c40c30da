//! wasmnet's embedded DNS server (hickory-server, in the daemon: no dnsmasq process). Each
//! network that serves DNS (`dns`, on by default) gets a server on its gateway addresses,
//! port 53, UDP and TCP, which the network's sandboxes reach as their resolver. It answers
//! the names `wasmnet_engine::directory` says that querier may see, read from the committed
//! state at each query (a name is there once its connect returned), and forwards the rest to
//! the upstream resolvers — but on internal networks, unless `dns_forward=true`. A forwarded
//! answer for a name a policy's `fqdn` peer matches puts its addresses in that pattern's
//! nftables set before the client gets it (`wasmnet_engine::fqdn`).

mod forward;
mod handler;
mod limit;
mod listeners;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmnet_engine::directory::Directory;
use wasmnet_engine::fqdn::{Pattern, Recent, TtlBounds};
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
    /// How long an address answered for an `fqdn` peer's name stays in its set.
    pub fqdn_ttl: TtlBounds,
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
            fqdn_ttl: TtlBounds::default(),
        }
    }
}

/// What the server reads of one committed state.
struct Derived {
    directory: Arc<Directory>,
    /// The policies' name patterns (`fqdn` peers).
    patterns: Vec<Pattern>,
    /// What was put in their sets lately (new with each state: a set made since is empty).
    recent: std::sync::Mutex<Recent>,
}

impl Derived {
    fn of(state: &State) -> Derived {
        Derived {
            directory: Arc::new(Directory::build(state)),
            patterns: state.fqdn_patterns(),
            recent: Default::default(),
        }
    }
}

/// What every network's server shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    /// What was read of the state it was built from; read again when the state moved on.
    cache: RwLock<(Arc<State>, Arc<Derived>)>,
    upstreams: Upstreams,
    limiter: Limiter,
    pub(crate) fqdn_ttl: TtlBounds,
}

impl Shared {
    fn new(engine: Arc<Engine>, cfg: &DnsConfig) -> Shared {
        let state = engine.state();
        let derived = Arc::new(Derived::of(&state));
        Shared {
            engine,
            cache: RwLock::new((state, derived)),
            upstreams: cfg.upstreams.clone(),
            limiter: Limiter::new(cfg.rate_limit),
            fqdn_ttl: cfg.fqdn_ttl,
        }
    }

    /// What was read of the state in force (so a name answers as soon as its connect has).
    fn derived(&self) -> Arc<Derived> {
        let state = self.engine.state();
        {
            let cached = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if Arc::ptr_eq(&cached.0, &state) {
                return cached.1.clone();
            }
        }
        let derived = Arc::new(Derived::of(&state));
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = (state, derived.clone());
        derived
    }

    /// The names each querier may see, in the state in force.
    pub(crate) fn directory(&self) -> Arc<Directory> {
        self.derived().directory.clone()
    }

    /// Puts the addresses of an answer to `qname` in the sets of the patterns it matches
    /// (those not written lately); a failure is logged: the answer still goes out, and the
    /// traffic it would have allowed stays dropped.
    pub(crate) fn learn(&self, qname: &str, addrs: &[(std::net::IpAddr, u32)]) {
        let derived = self.derived();
        if derived.patterns.is_empty() || addrs.is_empty() {
            return;
        }
        let patterns = &derived.patterns;
        let learned = wasmnet_engine::fqdn::learned(patterns, qname, addrs, self.fqdn_ttl);
        if learned.is_empty() {
            return;
        }
        let epoch = self.engine.firewall_replacements();
        let now = std::time::Instant::now();
        let mut recent = derived.recent.lock().unwrap_or_else(|e| e.into_inner());
        let due = recent.due(epoch, patterns, &learned, now);
        if let Err(e) = self.engine.learn_fqdn(&due) {
            tracing::warn!("{qname}: {e}");
        }
    }
}

/// Starts the servers of every network that serves DNS, and keeps them following the
/// networks as they come and go; they stop when the returned value is dropped.
pub fn start(engine: Arc<Engine>, cfg: DnsConfig) -> Listeners {
    Listeners::start(Arc::new(Shared::new(engine, &cfg)), cfg.port)
}
