//! The network driver: a Docker network is a wasmnet network (labelled with Docker's id), a
//! Docker sandbox a wasmnet sandbox adopting its namespace with `handoff` (Docker moves and
//! configures the interface itself), a Docker endpoint a wasmnet endpoint, made at Join.
//! Between CreateEndpoint and Join the endpoint is a record in the store.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wasmnet_engine::model::{
    validate_labels, Endpoint, EndpointCreate, Labels, Network, PortRequest, SandboxCreate,
};
use wasmnet_engine::{ids, Engine};

use crate::protocol::{
    label, CreateEndpoint, CreateNetwork, Ids, Interface, InterfaceName, Join, JoinResponse,
};
use crate::translate::{self, ENDPOINT_ID, NETWORK_ID, ORIGIN, SANDBOX_KEY};
use crate::{engine_message, Plugin};

/// The store's kind for endpoints created but not yet joined.
pub const ENDPOINT: &str = "docker-endpoint";

/// What CreateEndpoint said, kept for Join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub network_id: String,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub mac: String,
    pub labels: Labels,
    pub ports: Vec<PortRequest>,
    /// Set once Join made the endpoint: a joined record whose endpoint is gone was removed
    /// by Docker while wasmnet was down (see `Plugin::prune`).
    #[serde(default)]
    pub joined: bool,
}

/// Always `local`. A driver's scope is the driver's, not a network's: reported `global` (as on
/// a host in a cluster), Docker 20.10 outside swarm mode refuses every network of the driver
/// ("This node is not a swarm manager"; `--scope local`: "cannot downgrade network scope").
pub fn capabilities() -> Value {
    json!({"Scope": "local", "ConnectivityScope": "local"})
}

/// The wasmnet network made for a Docker network.
pub fn network_of(engine: &Engine, docker_id: &str) -> Option<Arc<Network>> {
    let state = engine.state();
    let found = state
        .view()
        .networks()
        .iter_from(None)
        .find(|n| n.labels.get(NETWORK_ID).map(String::as_str) == Some(docker_id))
        .cloned();
    found
}

pub(crate) fn endpoint_of(engine: &Engine, docker_id: &str) -> Option<Arc<Endpoint>> {
    let state = engine.state();
    let found = state
        .view()
        .endpoints()
        .find(|e| e.labels.get(ENDPOINT_ID).map(String::as_str) == Some(docker_id))
        .cloned();
    found
}

/// Docker's ids of every endpoint made through the plugin.
pub(crate) fn docker_endpoint_ids(engine: &Engine) -> std::collections::HashSet<String> {
    let state = engine.state();
    let ids = state
        .view()
        .endpoints()
        .filter_map(|e| e.labels.get(ENDPOINT_ID).cloned())
        .collect();
    ids
}

fn require_network(engine: &Engine, docker_id: &str) -> Result<Arc<Network>, String> {
    network_of(engine, docker_id).ok_or_else(|| {
        format!(
            "network {docker_id} is not one of wasmnet's (was it deleted through wasmnet's API?)"
        )
    })
}

impl Plugin {
    pub(crate) async fn create_network(&self, req: CreateNetwork) -> Result<Value, String> {
        if network_of(&self.engine, &req.network_id).is_some() {
            return Ok(json!({}));
        }
        let create = translate::network_request(&req)?;
        self.engine
            .create_network(create)
            .await
            .map_err(engine_message)?;
        Ok(json!({}))
    }

    /// Already gone is done: Docker retries a delete that failed half-way.
    pub(crate) async fn delete_network(&self, req: Ids) -> Result<Value, String> {
        if let Some(n) = network_of(&self.engine, &req.network_id) {
            self.engine
                .delete_network(&n.id)
                .await
                .map_err(engine_message)?;
        }
        Ok(json!({}))
    }

    /// Checks what Docker gave and keeps it for Join; answers the MAC when Docker gave none.
    pub(crate) async fn create_endpoint(&self, req: CreateEndpoint) -> Result<Value, String> {
        let network = require_network(&self.engine, &req.network_id)?;
        let iface = req.interface.clone().unwrap_or_default();
        let ipv4 = non_empty(&iface.address)
            .map(|a| translate::address("Interface.Address", a))
            .transpose()?;
        let ipv6 = non_empty(&iface.address_ipv6)
            .map(|a| translate::address("Interface.AddressIPv6", a))
            .transpose()?;
        if ipv4.is_none() {
            return Err(format!(
                "Docker gave endpoint {} no IPv4 address (its IPAM driver must give one)",
                req.endpoint_id
            ));
        }
        if ipv6.is_some() && network.ipv6.is_none() {
            return Err(format!(
                "network {:?} has no IPv6, yet an IPv6 address was given",
                network.name
            ));
        }
        let mut labels = endpoint_labels(&req.options);
        validate_labels("driver options", &labels).map_err(engine_message)?;
        labels.insert(ORIGIN.0.into(), ORIGIN.1.into());
        labels.insert(ENDPOINT_ID.into(), req.endpoint_id.clone());
        let mac = match iface.mac_address.as_str() {
            "" => ids::derive_mac(ipv4),
            given => given.to_string(),
        };
        let pending = Pending {
            network_id: req.network_id.clone(),
            ipv4,
            ipv6,
            mac: mac.clone(),
            labels,
            ports: translate::ports(&req.options)?,
            joined: false,
        };
        let body = serde_json::to_string(&pending).map_err(|e| e.to_string())?;
        let _guard = self.registry.lock().await;
        self.engine
            .put_plugin_record(ENDPOINT, &req.endpoint_id, &body)
            .await
            .map_err(engine_message)?;
        let answer = match iface.mac_address.is_empty() {
            true => Interface {
                mac_address: mac,
                ..Interface::default()
            },
            false => Interface::default(),
        };
        Ok(json!({"Interface": answer}))
    }

    pub(crate) async fn delete_endpoint(&self, req: Ids) -> Result<Value, String> {
        self.leave(req.endpoint_id.clone()).await?;
        let _guard = self.registry.lock().await;
        self.engine
            .delete_plugin_record(ENDPOINT, &req.endpoint_id)
            .await
            .map_err(engine_message)?;
        Ok(json!({}))
    }

    pub(crate) async fn endpoint_info(&self, req: Ids) -> Result<Value, String> {
        let value = match endpoint_of(&self.engine, &req.endpoint_id) {
            Some(e) => json!({
                "wasmnet.endpoint": e.id, "wasmnet.sandbox": e.sandbox_name,
                "wasmnet.network": e.network_name, "wasmnet.ports": e.ports,
            }),
            None => json!({}),
        };
        Ok(json!({"Value": value}))
    }

    async fn pending(&self, endpoint_id: &str) -> Result<Pending, String> {
        let body = (self.engine.plugin_record(ENDPOINT, endpoint_id).await)
            .map_err(engine_message)?
            .ok_or_else(|| format!("endpoint {endpoint_id} was not created through wasmnet"))?;
        serde_json::from_str(&body)
            .map_err(|e| format!("endpoint {endpoint_id}: stored record: {e}"))
    }

    /// Join: the sandbox (adopting Docker's namespace), then the endpoint, whose container end
    /// stays here as `SrcName` for Docker to move and rename `eth<n>`.
    pub(crate) async fn join(&self, req: Join) -> Result<Value, String> {
        let pending = self.pending(&req.endpoint_id).await?;
        let network = require_network(&self.engine, &pending.network_id)?;
        let joined = match endpoint_of(&self.engine, &req.endpoint_id) {
            Some(e) => e,
            None => {
                let e = self.connect(&req, &pending, &network).await?;
                let record = Pending {
                    joined: true,
                    ..pending
                };
                let body = serde_json::to_string(&record).map_err(|e| e.to_string())?;
                let _guard = self.registry.lock().await;
                let stored = self
                    .engine
                    .put_plugin_record(ENDPOINT, &req.endpoint_id, &body)
                    .await;
                stored.map_err(engine_message)?;
                e
            }
        };
        let gateway = |internal: bool, gw: Option<IpAddr>| match (internal, gw) {
            (false, Some(gw)) => gw.to_string(),
            _ => String::new(),
        };
        let answer = JoinResponse {
            interface_name: InterfaceName {
                src_name: joined.interface.clone(),
                dst_prefix: "eth".into(),
            },
            // No gateway on an internal network: Docker then adds no default route, as for
            // its own internal networks.
            gateway: gateway(network.internal, Some(network.ipv4.gateway)),
            gateway_ipv6: gateway(network.internal, network.ipv6.as_ref().map(|c| c.gateway)),
        };
        serde_json::to_value(answer).map_err(|e| e.to_string())
    }

    async fn connect(
        &self,
        req: &Join,
        p: &Pending,
        network: &Network,
    ) -> Result<Arc<Endpoint>, String> {
        let (sandbox, made) = self.sandbox_for(&req.sandbox_key).await?;
        let create = EndpointCreate {
            network: network.id.clone(),
            sandbox: sandbox.clone(),
            interface: Some(translate::handoff_name(&req.endpoint_id)),
            mac: Some(p.mac.clone()),
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            aliases: vec![],
            ports: p.ports.clone(),
            labels: p.labels.clone(),
        };
        match self.engine.connect(create).await {
            Ok(e) => Ok(e),
            Err(err) => {
                if made {
                    if let Err(e) = self.engine.delete_sandbox(&sandbox).await {
                        tracing::warn!(error = %e, sandbox, "removing a sandbox made for a failed join");
                    }
                }
                Err(engine_message(err))
            }
        }
    }

    /// The wasmnet sandbox of a Docker sandbox (made when it is the first endpoint's);
    /// returns its id and whether it was made now.
    async fn sandbox_for(&self, key: &str) -> Result<(String, bool), String> {
        let name = translate::sandbox_name(key);
        let existing = {
            let state = self.engine.state();
            let found = state
                .view()
                .sandboxes()
                .iter_from(None)
                .find(|s| s.name == name)
                .cloned();
            found
        };
        if let Some(s) = existing {
            if s.netns == key {
                return Ok((s.id.clone(), false));
            }
            // A namespace of that name from before (Docker's ids repeat only after a restart
            // removed the old one): it is replaced.
            self.engine
                .delete_sandbox(&s.id)
                .await
                .map_err(engine_message)?;
        }
        let req = SandboxCreate {
            name: Some(name),
            labels: Labels::from([
                (ORIGIN.0.into(), ORIGIN.1.into()),
                (SANDBOX_KEY.into(), key.to_string()),
            ]),
            netns: Some(key.to_string()),
            handoff: true,
        };
        let s = self
            .engine
            .create_sandbox(req)
            .await
            .map_err(engine_message)?;
        Ok((s.id.clone(), true))
    }

    /// Leave: the endpoint goes (its veth with it), and the sandbox with its last endpoint.
    /// Already gone is done.
    pub(crate) async fn leave(&self, endpoint_id: String) -> Result<Value, String> {
        let Some(e) = endpoint_of(&self.engine, &endpoint_id) else {
            return Ok(json!({}));
        };
        self.engine
            .disconnect(&e.id)
            .await
            .map_err(engine_message)?;
        let state = self.engine.state();
        let empty = state
            .view()
            .endpoints_of_sandbox(&e.sandbox_id)
            .next()
            .is_none();
        let ours = state
            .view()
            .sandboxes()
            .get(&e.sandbox_id)
            .is_some_and(|s| s.handoff);
        if empty && ours {
            self.engine
                .delete_sandbox(&e.sandbox_id)
                .await
                .map_err(engine_message)?;
        }
        Ok(json!({}))
    }

    /// Published ports are programmed with the endpoint at Join (Docker hands them to
    /// CreateEndpoint too); here they are only checked against what is in force.
    pub(crate) async fn program_external(&self, req: Ids) -> Result<Value, String> {
        let asked = translate::ports(&req.options)?;
        if let Some(e) = endpoint_of(&self.engine, &req.endpoint_id) {
            if !asked.is_empty() && asked.len() != e.ports.len() {
                tracing::warn!(
                    endpoint = e.id,
                    ?asked,
                    "ProgramExternalConnectivity asks for ports the endpoint was not created with"
                );
            }
        }
        Ok(json!({}))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// An endpoint's labels: `--driver-opt wasmnet.label.K=V` arrives as a top-level option,
/// options of the generic map too.
fn endpoint_labels(options: &BTreeMap<String, Value>) -> Labels {
    let top: BTreeMap<String, String> = options
        .iter()
        .filter(|(k, _)| k.as_str() != label::GENERIC)
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    let mut labels = translate::labels_of(&translate::generic(options));
    labels.extend(translate::labels_of(&top));
    labels
}
