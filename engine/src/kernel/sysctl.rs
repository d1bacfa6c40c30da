//! Sysctls of the daemon's own network namespace, through /proc/sys.

use std::path::Path;

use super::{KResult, KernelError};

/// Writes `value` to /proc/sys/`key` (key with slashes, e.g. `net/ipv4/ip_forward`).
pub fn write_sysctl(key: &str, value: &str) -> KResult<()> {
    let path = Path::new("/proc/sys").join(key);
    match std::fs::read_to_string(&path) {
        Ok(current) if current.trim() == value => return Ok(()),
        _ => {}
    }
    std::fs::write(&path, value)
        .map_err(|e| KernelError::new(format!("setting {key} to {value}"), e))
}
