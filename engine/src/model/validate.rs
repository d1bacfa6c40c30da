//! Validation of the values clients send. Pure functions; each error names the field.

use crate::error::{Error, Result};
use crate::model::{Labels, NetworkOptions};

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_LABELS: usize = 64;
const MAX_LABEL_KEY: usize = 128;
const MAX_LABEL_VALUE: usize = 1024;
/// Linux limits interface names to IFNAMSIZ - 1 bytes.
const MAX_IFNAME: usize = 15;

/// Docker's rule for object names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, here at most 128 characters.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} characters long, at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    if !(first_ok && rest_ok) {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a valid name: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
        ));
    }
    Ok(())
}

/// Labels (and options): at most 64; keys `[a-zA-Z0-9][a-zA-Z0-9_./-]*` up to 128 characters,
/// values up to 1024 bytes without control characters.
pub fn validate_labels(field: &str, labels: &Labels) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            field,
            format!("{} entries, at most {MAX_LABELS} are allowed", labels.len()),
        ));
    }
    for (key, value) in labels {
        validate_label_key(field, key)?;
        if value.len() > MAX_LABEL_VALUE {
            return Err(Error::invalid(
                format!("{field}.{key}"),
                format!(
                    "value is {} bytes, at most {MAX_LABEL_VALUE} are allowed",
                    value.len()
                ),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("{field}.{key}"),
                "value must not contain control characters",
            ));
        }
    }
    Ok(())
}

fn validate_label_key(field: &str, key: &str) -> Result<()> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
    if key.len() > MAX_LABEL_KEY || !(first_ok && rest_ok) {
        return Err(Error::invalid(
            field,
            format!(
                "key {key:?} is not valid: use [a-zA-Z0-9][a-zA-Z0-9_./-]*, at most {MAX_LABEL_KEY} characters"
            ),
        ));
    }
    Ok(())
}

/// The driver options wasmnet understands, parsed: the one place they are read from text.
/// Unknown ones are refused rather than ignored, so a typo never silently changes a network's
/// behaviour.
pub fn validate_options(options: &Labels) -> Result<NetworkOptions> {
    validate_labels("options", options)?;
    let mut parsed = NetworkOptions::default();
    for (key, value) in options {
        let field = format!("options.{key}");
        match key.as_str() {
            "mtu" => match value.parse::<u32>() {
                Ok(mtu @ 68..=65535) => parsed.mtu = Some(mtu),
                _ => {
                    return Err(Error::invalid(
                        field,
                        format!("{value:?} is not an MTU between 68 and 65535"),
                    ))
                }
            },
            "vni" => match value.parse::<u32>() {
                Ok(vni @ 1..=16_777_215) => parsed.vni = Some(vni),
                _ => {
                    return Err(Error::invalid(
                        field,
                        format!("{value:?} is not a VXLAN network identifier (1 to 16777215)"),
                    ))
                }
            },
            "icc" | "masquerade" | "dns" | "dns_forward" | "dns_redirect" => {
                let on = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::invalid(
                            field,
                            format!("{value:?} is not true or false"),
                        ))
                    }
                };
                match key.as_str() {
                    "icc" => parsed.icc = on,
                    "dns" => parsed.dns = on,
                    "dns_forward" => parsed.dns_forward = Some(on),
                    "dns_redirect" => parsed.dns_redirect = on,
                    _ => parsed.masquerade = on,
                }
            }
            // A stable name for the bridge, beside its own (derived from the id): the default
            // network's `wasmnet0`, as Docker's is `docker0`.
            "altname" => validate_interface(&field, value)?,
            _ => return Err(Error::invalid(
                field,
                "unknown option (supported: mtu, icc, masquerade, vni, altname, dns, dns_forward, dns_redirect)",
            )),
        }
    }
    Ok(parsed)
}

/// An interface name Linux accepts: 1–15 bytes, no '/', ':', whitespace, not "." or "..".
pub fn validate_interface(field: &str, name: &str) -> Result<()> {
    let bad_char = name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control() || !c.is_ascii());
    if name.is_empty() || name.len() > MAX_IFNAME || bad_char || name == "." || name == ".." {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a valid interface name (1-{MAX_IFNAME} ASCII characters, no '/', ':' or spaces)"),
        ));
    }
    Ok(())
}

/// A unicast MAC address written as six colon-separated hex octets; returned lower-case.
pub fn validate_mac(field: &str, mac: &str) -> Result<String> {
    let octets: Vec<&str> = mac.split(':').collect();
    let parsed: Option<Vec<u8>> = (octets.len() == 6)
        .then(|| {
            octets
                .iter()
                .map(|o| {
                    (o.len() == 2)
                        .then(|| u8::from_str_radix(o, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    match parsed {
        Some(bytes) if bytes[0] & 1 == 0 && bytes.iter().any(|b| *b != 0) => {
            Ok(mac.to_ascii_lowercase())
        }
        Some(_) => Err(Error::invalid(
            field,
            format!("{mac} is not a unicast MAC address"),
        )),
        None => Err(Error::invalid(
            field,
            format!(
                "{mac:?} is not a MAC address (expected six hex octets like 02:42:ac:11:00:02)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> String {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["a", "web", "my-net_1.2", "0abc", &"x".repeat(MAX_NAME_LEN)] {
            validate_name("name", ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "é",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(
                field_of(validate_name("name", bad).unwrap_err()),
                "name",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn labels_are_bounded() {
        let mut labels = Labels::new();
        labels.insert("com.example/tier".into(), "web".into());
        validate_labels("labels", &labels).unwrap();
        labels.insert("".into(), "x".into());
        assert!(validate_labels("labels", &labels).is_err());
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(validate_labels("labels", &many).is_err());
        let big: Labels = [("k".to_string(), "v".repeat(2000))].into();
        assert_eq!(
            field_of(validate_labels("labels", &big).unwrap_err()),
            "labels.k"
        );
        let ctl: Labels = [("k".to_string(), "a\nb".to_string())].into();
        assert!(validate_labels("labels", &ctl).is_err());
    }

    #[test]
    fn options_are_known_and_typed() {
        let ok: Labels = [("mtu", "1400"), ("icc", "false"), ("masquerade", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let parsed = validate_options(&ok).unwrap();
        assert_eq!(
            (parsed.mtu, parsed.icc, parsed.masquerade, parsed.vni),
            (Some(1400), false, true, None)
        );
        for (k, v) in [
            ("mtu", "10"),
            ("mtu", "x"),
            ("icc", "no"),
            ("colour", "blue"),
        ] {
            let o: Labels = [(k.to_string(), v.to_string())].into();
            assert_eq!(
                field_of(validate_options(&o).unwrap_err()),
                format!("options.{k}")
            );
        }
    }

    #[test]
    fn interfaces_and_macs() {
        validate_interface("interface", "eth0").unwrap();
        for bad in ["", "a/b", "a b", "a:b", ".", "sixteen-chars-xx"] {
            assert!(validate_interface("interface", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_mac("mac", "02:42:AC:11:00:02").unwrap(),
            "02:42:ac:11:00:02"
        );
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:42:ac:11:00",
            "zz:42:ac:11:00:02",
            "2:42:ac:11:00:02",
        ] {
            assert!(validate_mac("mac", bad).is_err(), "{bad:?}");
        }
    }
}
