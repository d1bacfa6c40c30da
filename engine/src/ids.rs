//! Identifiers, timestamps and derived MAC addresses.

use std::net::IpAddr;
use std::time::SystemTime;

/// A new object id: 64 hex characters from the OS's random source, like Docker's.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex(&bytes)
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker's MAC scheme: `02:42` followed by the IPv4 address, so a MAC is stable for an
/// address; random (locally administered, unicast) when the endpoint has no IPv4 address.
pub fn derive_mac(ipv4: Option<IpAddr>) -> String {
    let tail = match ipv4 {
        Some(IpAddr::V4(a)) => a.octets(),
        _ => {
            let mut b = [0u8; 4];
            getrandom::fill(&mut b).expect("the OS random source failed");
            b
        }
    };
    let octets = [0x02, 0x42, tail[0], tail[1], tail[2], tail[3]];
    octets
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn mac_follows_the_address() {
        assert_eq!(
            derive_mac(Some("172.17.0.2".parse().unwrap())),
            "02:42:ac:11:00:02"
        );
        assert!(derive_mac(None).starts_with("02:42:"));
    }
}
