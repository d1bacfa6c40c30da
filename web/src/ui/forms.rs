//! The dashboard's forms: what a browser posts, turned into the API's requests, and the
//! engine's errors placed beside the field they name (the same messages as the API's).

use serde::Deserialize;
use wasmnet_engine::model::{
    Driver, EndpointCreate, IpConfigRequest, Labels, NetworkCreate, PortRequest, SandboxCreate,
};
use wasmnet_engine::policy::AttachRequest;
use wasmnet_engine::Error;

/// A form carrying nothing but its CSRF token (deleting, disconnecting, logging out).
#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// Messages beside fields; `general` for the rest.
#[derive(Default, Debug)]
pub struct FormErrors {
    pub general: Option<String>,
    pub name: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub labels: Option<String>,
    pub ip: Option<String>,
    pub publish: Option<String>,
    pub description: Option<String>,
    /// A policy module's upload.
    pub module: Option<String>,
    pub network: Option<String>,
    pub priority: Option<String>,
}

impl FormErrors {
    pub fn from_error(e: &Error) -> Self {
        let mut errors = FormErrors::default();
        let message = match e {
            Error::Conflict { message, .. } => message.clone(),
            other => other.to_string(),
        };
        let slot = match e {
            Error::Invalid { field, .. } => match field.as_str() {
                "name" => &mut errors.name,
                "ipv4.subnet" => &mut errors.subnet,
                "ipv4.gateway" => &mut errors.gateway,
                f if f.starts_with("labels") => &mut errors.labels,
                "ipv4" => &mut errors.ip,
                f if f.starts_with("ports") => &mut errors.publish,
                "description" => &mut errors.description,
                "module" => &mut errors.module,
                "network" => &mut errors.network,
                "priority" => &mut errors.priority,
                _ => &mut errors.general,
            },
            Error::Conflict {
                code: "name_in_use",
                ..
            } => &mut errors.name,
            Error::Conflict {
                code: "subnet_overlap" | "pool_exhausted",
                ..
            } => &mut errors.subnet,
            Error::Conflict {
                code: "address_in_use",
                ..
            } => &mut errors.ip,
            Error::Conflict {
                code: "port_in_use" | "port_exhausted",
                ..
            } => &mut errors.publish,
            _ => &mut errors.general,
        };
        *slot = Some(message);
        errors
    }

    /// The status a form answered with an error gets: 503 when the cluster store is away
    /// (trying again later may work), else 422.
    pub fn status(e: &Error) -> axum::http::StatusCode {
        match e {
            Error::Unavailable(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            _ => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// An upload's error: a module the engine refused is shown beside the file field.
    pub fn from_upload_error(e: &Error) -> Self {
        match e {
            Error::Policy { .. } => FormErrors {
                module: Some(e.to_string()),
                ..Default::default()
            },
            other => FormErrors::from_error(other),
        }
    }
}

/// `key=value, key2=value2` → labels; the error names the field.
fn parse_labels(field: &str, text: &str) -> Result<Labels, Error> {
    text.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(Error::invalid(field, format!("{kv:?} is not key=value"))),
        })
        .collect()
}

fn parse_opt<T: std::str::FromStr>(
    field: &str,
    text: &str,
    what: &str,
) -> Result<Option<T>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| Error::invalid(field, format!("{text:?} is not {what}")))
}

#[derive(Deserialize, Default, Debug)]
pub struct NetworkForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub labels: String,
    /// `bridge` (empty too) or `overlay`.
    #[serde(default)]
    pub driver: String,
    pub ipv6: Option<String>,
    pub internal: Option<String>,
    pub no_icc: Option<String>,
}

impl NetworkForm {
    pub fn to_request(&self) -> Result<NetworkCreate, Error> {
        let mut options = Labels::new();
        if self.no_icc.is_some() {
            options.insert("icc".into(), "false".into());
        }
        let driver = match self.driver.as_str() {
            "" => Driver::Bridge,
            d => d.parse().map_err(|e: String| Error::invalid("driver", e))?,
        };
        Ok(NetworkCreate {
            name: self.name.trim().to_string(),
            driver,
            ipv4: IpConfigRequest {
                subnet: parse_opt("ipv4.subnet", &self.subnet, "a subnet like 10.1.0.0/24")?,
                gateway: parse_opt("ipv4.gateway", &self.gateway, "an IP address")?,
                ip_range: None,
            },
            enable_ipv6: self.ipv6.is_some(),
            internal: self.internal.is_some(),
            labels: parse_labels("labels", &self.labels)?,
            options,
            ..Default::default()
        })
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct SandboxForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: String,
}

impl SandboxForm {
    pub fn to_request(&self) -> Result<SandboxCreate, Error> {
        let name = self.name.trim();
        Ok(SandboxCreate {
            name: (!name.is_empty()).then(|| name.to_string()),
            labels: parse_labels("labels", &self.labels)?,
            netns: None,
            handoff: false,
        })
    }
}

#[derive(Deserialize, Default, Debug)]
pub struct ConnectForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub network: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub publish: String,
}

impl ConnectForm {
    pub fn to_request(&self, sandbox: &str) -> Result<EndpointCreate, Error> {
        let ports = self
            .publish
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
            .map(|(i, p)| {
                p.parse::<PortRequest>()
                    .map_err(|e| Error::invalid(format!("ports[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EndpointCreate {
            network: self.network.clone(),
            sandbox: sandbox.to_string(),
            ipv4: parse_opt("ipv4", &self.ip, "an IPv4 address")?,
            ports,
            ..Default::default()
        })
    }
}

/// The text fields of a policy upload (the module itself is read apart, bounded).
#[derive(Default, Debug)]
pub struct UploadForm {
    pub name: String,
    pub description: String,
}

#[derive(Deserialize, Debug)]
pub struct AttachForm {
    #[serde(default)]
    pub csrf: String,
    /// A network's id; empty: global (every network).
    #[serde(default)]
    pub network: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    pub audit: Option<String>,
    /// Which button: `preview` (a dry run) or `attach`.
    #[serde(default)]
    pub action: String,
}

fn default_priority() -> String {
    "100".into()
}

impl Default for AttachForm {
    fn default() -> Self {
        AttachForm {
            csrf: String::new(),
            network: String::new(),
            priority: default_priority(),
            audit: None,
            action: String::new(),
        }
    }
}

impl AttachForm {
    pub fn to_request(&self) -> Result<AttachRequest, Error> {
        let network = self.network.trim();
        Ok(AttachRequest {
            network: (!network.is_empty()).then(|| network.to_string()),
            priority: parse_opt("priority", &self.priority, "a whole number")?.unwrap_or(100),
            audit: self.audit.is_some(),
        })
    }

    pub fn previewing(&self) -> bool {
        self.action == "preview"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_land_beside_their_field() {
        let e = Error::invalid("ipv4.subnet", "10.0.0.1/24 has host bits set");
        let f = FormErrors::from_error(&e);
        assert_eq!(
            f.subnet.as_deref(),
            Some("ipv4.subnet: 10.0.0.1/24 has host bits set")
        );
        assert!(f.general.is_none() && f.name.is_none());
        let f = FormErrors::from_error(&Error::conflict(
            "name_in_use",
            "network name \"a\" is already in use",
        ));
        assert_eq!(
            f.name.as_deref(),
            Some("network name \"a\" is already in use")
        );
        let f = FormErrors::from_error(&Error::conflict("has_endpoints", "x"));
        assert_eq!(f.general.as_deref(), Some("x"));
    }

    #[test]
    fn forms_become_requests() {
        let f = NetworkForm {
            name: " web ".into(),
            subnet: "10.1.0.0/24".into(),
            labels: "a=1, b=2".into(),
            no_icc: Some("true".into()),
            ..Default::default()
        };
        let r = f.to_request().unwrap();
        assert_eq!(
            (
                r.name.as_str(),
                r.ipv4.subnet.unwrap().to_string(),
                r.labels.len()
            ),
            ("web", "10.1.0.0/24".into(), 2)
        );
        assert_eq!(r.options["icc"], "false");
        let bad = NetworkForm {
            subnet: "nope".into(),
            ..Default::default()
        };
        assert!(
            matches!(bad.to_request(), Err(Error::Invalid { field, .. }) if field == "ipv4.subnet")
        );
        let c = ConnectForm {
            network: "n".into(),
            publish: "8080:80, 53/udp".into(),
            ..Default::default()
        };
        assert_eq!(c.to_request("s").unwrap().ports.len(), 2);
        assert!(ConnectForm {
            publish: "x".into(),
            ..Default::default()
        }
        .to_request("s")
        .is_err());
        let a = AttachForm {
            network: "n1".into(),
            priority: " 50 ".into(),
            audit: Some("true".into()),
            action: "preview".into(),
            ..Default::default()
        };
        let r = a.to_request().unwrap();
        assert_eq!(
            (r.network.as_deref(), r.priority, r.audit),
            (Some("n1"), 50, true)
        );
        assert!(a.previewing());
        let global = AttachForm::default().to_request().unwrap();
        assert_eq!(
            (global.network, global.priority, global.audit),
            (None, 100, false)
        );
        let bad = AttachForm {
            priority: "high".into(),
            ..Default::default()
        };
        let f = FormErrors::from_error(&bad.to_request().unwrap_err());
        assert_eq!(
            f.priority.as_deref(),
            Some("priority: \"high\" is not a whole number")
        );
    }
}
