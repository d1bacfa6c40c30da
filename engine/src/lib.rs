//! wasmnet's engine: the Container Network Model as a library.
//!
//! `model` is plain data and validation, `ipam` pure address management, `store` the SQLite
//! source of truth, `view` the in-memory copy of committed state that reads are served from,
//! and `engine` the operations that tie them together (every mutation: validate, allocate,
//! one store transaction, then update the view and publish an event).

pub mod cluster;
pub mod config;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod events;
pub mod firewall;
pub mod ids;
pub mod ipam;
pub mod kernel;
pub mod model;
pub mod policy;
mod reconcile;
pub mod store;
mod view;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{Error, Kind, Result};
