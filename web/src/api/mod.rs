//! The REST handlers, one module per resource. Each is documented with `utoipa::path`.

pub mod endpoints;
pub mod flows;
pub mod metrics;
pub mod networks;
pub mod policies;
pub mod sandboxes;
pub mod services;
pub mod system;
