//! Flags into the parts of a request: filters as a query string, `KEY=VALUE` lists, values
//! given once per IP family, published ports.

use serde_json::{Map, Value};
use wasmnet_engine::model::PortRequest;
use wasmnet_web::client::encode;

use super::CliError;

/// `label=k=v` and `name=x` filters as a query string.
pub(super) fn filter_query(filters: &[String]) -> Result<String, CliError> {
    let mut parts = Vec::new();
    for f in filters {
        match f.split_once('=') {
            Some((key @ ("label" | "name"), value)) => {
                parts.push(format!("{key}={}", encode(value)))
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "--filter {f:?}: expected label=KEY[=VALUE] or name=SUBSTRING"
                )))
            }
        }
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
}

pub(super) fn key_values(flag: &str, items: &[String]) -> Result<Map<String, Value>, CliError> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), Value::String(v.to_string()))),
            None => Err(CliError::Usage(format!(
                "{flag} {kv:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// At most one value of each IP family, for flags like `--subnet` that docker takes per family.
pub(super) fn per_family<T: Copy>(
    flag: &str,
    values: &[T],
    is_v6: impl Fn(&T) -> bool,
) -> Result<(Option<T>, Option<T>), CliError> {
    let (v6, v4): (Vec<T>, Vec<T>) = values.iter().partition(|v| is_v6(v));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(CliError::Usage(format!(
            "{flag} may be given once per IP family"
        )));
    }
    Ok((v4.first().copied(), v6.first().copied()))
}

/// Docker's `-p`: `[HOSTIP:][HOSTPORT:]PORT[/PROTO]`, an IPv6 host address in brackets.
pub fn parse_publish(spec: &str) -> Result<Value, String> {
    let port: PortRequest = spec.parse().map_err(|e| format!("--publish {e}"))?;
    Ok(serde_json::to_value(port).expect("a port request serialises"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn publish_specs() {
        let p = |s: &str| parse_publish(s).unwrap();
        assert_eq!(
            p("80"),
            json!({"host_ip": null, "host_port": 0, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("8080:80"),
            json!({"host_ip": null, "host_port": 8080, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("127.0.0.1:8080:80/udp"),
            json!({"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "udp"})
        );
        assert_eq!(
            p("127.0.0.1::80"),
            json!({"host_ip": "127.0.0.1", "host_port": 0, "container_port": 80, "protocol": "tcp"})
        );
        assert_eq!(
            p("[::1]:53:53/udp"),
            json!({"host_ip": "::1", "host_port": 53, "container_port": 53, "protocol": "udp"})
        );
        for bad in ["", "x", "1:2:3:4", "a:80:80", "99999", "[::1]53"] {
            assert!(parse_publish(bad).is_err(), "{bad:?}");
        }
    }
}
