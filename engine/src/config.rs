//! What the engine needs to know about its host; the binary fills it from file, env and flags.

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
}

impl EngineConfig {
    pub fn new(database: PathBuf, run_dir: PathBuf) -> Self {
        EngineConfig {
            database,
            run_dir,
            pools_v4: default_v4(),
            pools_v6: default_v6(),
            firewall: Backend::default(),
            cluster: None,
        }
    }
}
