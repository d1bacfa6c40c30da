//! Reads of services: lists and inspects with their backends, from one committed state.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Engine, Filter, Page};
use crate::error::Result;
use crate::model::{Endpoint, Service};
use crate::state::State;

/// A service with its backends (`GET /v1/services/{id}`, and each item of the list).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceDetail {
    #[serde(flatten)]
    pub service: Arc<Service>,
    /// The endpoints the service balances across now, in id order (none: connections to
    /// its address are refused).
    pub backends: Vec<Backend>,
}

/// One backend of a service.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backend {
    pub endpoint: String,
    pub sandbox: String,
    #[schema(value_type = Option<String>)]
    pub ipv4: Option<IpAddr>,
    #[schema(value_type = Option<String>)]
    pub ipv6: Option<IpAddr>,
    /// On another host (overlay networks).
    pub remote: bool,
}

impl Backend {
    fn of(e: &Endpoint, remote: bool) -> Backend {
        Backend {
            endpoint: e.id.clone(),
            sandbox: e.sandbox_name.clone(),
            ipv4: e.ipv4,
            ipv6: e.ipv6,
            remote,
        }
    }
}

impl State {
    pub fn service_detail(&self, s: &Arc<Service>) -> ServiceDetail {
        let local = |e: &Endpoint| self.view().resolve_endpoint(&e.id).is_ok();
        ServiceDetail {
            backends: (self.backends_of(s).iter())
                .map(|e| Backend::of(e, !local(e)))
                .collect(),
            service: s.clone(),
        }
    }

    /// Services in name order, after the name `after`; `network` restricts them to one.
    pub fn list_services(
        &self,
        f: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ServiceDetail>> {
        let v = self.view();
        let network = (f.network.as_deref())
            .map(|r| v.networks().resolve(r))
            .transpose()?;
        let mut it = v.services().iter_from(after).filter(|s| {
            network.as_ref().is_none_or(|n| n.id == s.network_id)
                && f.labels_match(&s.labels)
                && f.name.as_deref().is_none_or(|n| s.name.contains(n))
        });
        let items: Vec<Arc<ServiceDetail>> = (it.by_ref().take(limit))
            .map(|s| Arc::new(self.service_detail(s)))
            .collect();
        let next = match (items.last(), it.next()) {
            (Some(last), Some(_)) => Some(last.service.name.clone()),
            _ => None,
        };
        Ok(Page { items, next })
    }
}

impl Engine {
    pub fn list_services(
        &self,
        f: &Filter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ServiceDetail>> {
        self.state().list_services(f, after, limit)
    }

    /// A service by id, name or unique id prefix, with its backends.
    pub fn service(&self, reference: &str) -> Result<ServiceDetail> {
        let state = self.state();
        let s = state.view().services().resolve(reference)?;
        Ok(state.service_detail(&s))
    }
}
