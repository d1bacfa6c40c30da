//! What the engine needs to know about its host; the binary fills it from file, env and flags.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::cluster::ClusterConfig;
use crate::firewall::Backend;
use crate::ipam::{default_v4, default_v6, PoolSpec};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The SQLite database file (created, and migrated, at start).
    pub database: PathBuf,
    /// Where runtime state lives: namespaces wasmnet creates are bind-mounted under `netns/`.
    pub run_dir: PathBuf,
    pub pools_v4: Vec<PoolSpec>,
    pub pools_v6: Vec<PoolSpec>,
    pub firewall: Backend,
    /// The cluster store this host shares overlay networks through, if any.
    pub cluster: Option<ClusterConfig>,
    /// Where a policy may remap a published port: these host-port ranges (1024-65535 by
    /// default), or at or above the port the request asked for when that is below them.
    pub policy_port_ranges: Vec<RangeInclusive<u16>>,
    /// Ports the daemon itself listens on (its API over TCP): no remap may take them.
    pub reserved_ports: Vec<u16>,
    /// The network made at first start (as Docker makes `bridge` on `docker0`), which an
    /// endpoint naming no network joins; none when off.
    pub default_network: Option<DefaultNetwork>,
    /// Names: how sandboxes appear to `ip netns`, and the resolvers names are forwarded to.
    pub names: NamesConfig,
    /// How many flow records are kept in memory (the newest; `GET /v1/flows` reads them).
    pub flow_buffer: usize,
}

/// Where sandboxes wasmnet creates appear to `ip netns`, and what their resolv.conf says.
#[derive(Clone, Debug, PartialEq)]
pub struct NamesConfig {
    /// `ip netns`' directory (/run/netns); None links no sandbox there.
    pub netns_dir: Option<PathBuf>,
    /// A sandbox appears there as this prefix and its name (`wasmnet-web1`).
    pub netns_prefix: String,
    /// `ip netns exec`'s per-namespace /etc (/etc/netns): `<name>/resolv.conf`.
    pub etc_dir: PathBuf,
    /// Whether the embedded DNS server runs (a sandbox's resolv.conf names its gateways).
    pub dns: bool,
    /// The resolvers names wasmnet does not serve are forwarded to (at most three); a
    /// sandbox on no DNS-serving network is given these.
    pub upstreams: Vec<SocketAddr>,
}

impl Default for NamesConfig {
    fn default() -> Self {
        NamesConfig {
            netns_dir: Some("/run/netns".into()),
            netns_prefix: "wasmnet-".into(),
            etc_dir: "/etc/netns".into(),
            dns: true,
            upstreams: vec![],
        }
    }
}

/// The default network: its name and its bridge's stable (alternative) name.
#[derive(Clone, Debug, PartialEq)]
pub struct DefaultNetwork {
    pub name: String,
    pub altname: Option<String>,
}

impl Default for DefaultNetwork {
    fn default() -> Self {
        DefaultNetwork {
            name: "bridge".into(),
            altname: Some("wasmnet0".into()),
        }
    }
}

/// Flow records kept by default: minutes of drops on a busy host, a few MB.
pub const DEFAULT_FLOW_BUFFER: usize = 10_000;

impl EngineConfig {
    pub fn new(database: PathBuf, run_dir: PathBuf) -> Self {
        EngineConfig {
            database,
            run_dir,
            pools_v4: default_v4(),
            pools_v6: default_v6(),
            firewall: Backend::default(),
            cluster: None,
            policy_port_ranges: vec![1024..=65535],
            reserved_ports: vec![],
            default_network: None,
            names: NamesConfig {
                netns_dir: None,
                ..NamesConfig::default()
            },
            flow_buffer: DEFAULT_FLOW_BUFFER,
        }
    }
}
