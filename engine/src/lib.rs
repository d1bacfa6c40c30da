//! wasmnet's engine: the Container Network Model as a library.
//!
//! `model` is plain data and validation, `ipam` pure address management, `store` the SQLite
//! source of truth, `state` the committed state in memory (one immutable value that reads are
//! served from), and `engine` the operations that tie them together (every mutation: validate,
//! plan, kernel, one store transaction, then the next state and an event). See
//! docs/architecture.md for the module map.

pub mod cluster;
pub mod config;
pub mod directory;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod events;
pub mod firewall;
pub mod flows;
pub mod fqdn;
pub mod ids;
pub mod ipam;
pub mod kernel;
pub mod metrics;
pub mod model;
pub mod names;
pub mod policy;
pub mod state;
pub mod store;

pub use config::{DefaultNetwork, EngineConfig, NamesConfig};
pub use engine::Engine;
pub use error::{Error, Kind, Result};
