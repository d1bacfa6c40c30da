//! wasmnet as a Docker plugin: libnetwork's remote network driver and remote IPAM driver on
//! one unix socket (`/run/docker/plugins/wasmnet.sock` by default; Docker finds a plugin by
//! its socket's name there). An adapter over the engine's public operations: every call
//! becomes wasmnet networks, sandboxes and endpoints, marked `wasmnet.origin=docker`.
//!
//! Errors go back in the protocol's own shape, `{"Err": …}` for the network driver and
//! `{"Error": …}` for IPAM, carrying wasmnet's message, so `docker network create` prints it.

mod ipam;
mod network;
mod protocol;
mod translate;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::Mutex;
use wasmnet_engine::{Engine, Error};

pub use translate::{ENDPOINT_ID, NETWORK_ID, ORIGIN, SANDBOX_KEY};

/// The plugin: the engine, and a lock serialising changes to its records (pools, addresses,
/// pending endpoints), which Docker may ask for concurrently.
pub struct Plugin {
    engine: Arc<Engine>,
    registry: Mutex<()>,
}

/// An engine error as the message Docker shows: what the client did wrong is said as it
/// is; what failed inside wasmnet is logged, and Docker hears only that it failed.
pub(crate) fn engine_message(e: Error) -> String {
    match e {
        Error::Invalid { .. }
        | Error::NotFound { .. }
        | Error::Conflict { .. }
        | Error::Unavailable(_)
        | Error::Policy { .. } => format!("wasmnet: {e}"),
        other => {
            tracing::error!(error = %other, "docker plugin call failed");
            "wasmnet: internal error (the reason is in wasmnet's log)".into()
        }
    }
}

/// Which error field a call's failure goes in.
#[derive(Clone, Copy)]
enum Role {
    Network,
    Ipam,
}

fn reply(role: Role, result: Result<Value, String>) -> Response {
    let body = match (result, role) {
        (Ok(v), _) => v,
        (Err(msg), Role::Network) => json!({ "Err": msg }),
        (Err(msg), Role::Ipam) => json!({ "Error": msg }),
    };
    (
        [(CONTENT_TYPE, "application/vnd.docker.plugins.v1+json")],
        body.to_string(),
    )
        .into_response()
}

fn decode<T: DeserializeOwned>(call: &str, body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("wasmnet: {call}: malformed request: {e}"))
}

type Shared = State<Arc<Plugin>>;

/// One route per call: the body decoded as the call's request, the answer or the error in
/// the role's shape.
macro_rules! call {
    ($role:expr, $name:literal, $req:ty, |$p:ident, $r:ident| $body:expr) => {
        post(|State($p): Shared, bytes: Bytes| async move {
            tracing::debug!(call = $name, body = %String::from_utf8_lossy(&bytes), "docker plugin");
            let result = match decode::<$req>($name, &bytes) {
                Ok($r) => $body.await,
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                tracing::info!(call = $name, error = %e, "docker plugin call refused");
            }
            reply($role, result)
        })
    };
}

async fn ready(v: Value) -> Result<Value, String> {
    Ok(v)
}

/// The network driver's calls (and the plugin's activation).
fn network_routes() -> Router<Arc<Plugin>> {
    use protocol::*;
    use Role::Network as Net;
    Router::new()
        .route(
            "/Plugin.Activate",
            call!(Net, "Plugin.Activate", Value, |_p, _r| ready(manifest())),
        )
        .route(
            "/NetworkDriver.GetCapabilities",
            call!(Net, "GetCapabilities", Value, |_p, _r| ready(
                network::capabilities()
            )),
        )
        .route(
            "/NetworkDriver.CreateNetwork",
            call!(Net, "CreateNetwork", CreateNetwork, |p, r| p
                .create_network(r)),
        )
        .route(
            "/NetworkDriver.DeleteNetwork",
            call!(Net, "DeleteNetwork", Ids, |p, r| p.delete_network(r)),
        )
        .route(
            "/NetworkDriver.CreateEndpoint",
            call!(Net, "CreateEndpoint", CreateEndpoint, |p, r| p
                .create_endpoint(r)),
        )
        .route(
            "/NetworkDriver.DeleteEndpoint",
            call!(Net, "DeleteEndpoint", Ids, |p, r| p.delete_endpoint(r)),
        )
        .route(
            "/NetworkDriver.EndpointOperInfo",
            call!(Net, "EndpointOperInfo", Ids, |p, r| p.endpoint_info(r)),
        )
        .route(
            "/NetworkDriver.Join",
            call!(Net, "Join", Join, |p, r| p.join(r)),
        )
        .route(
            "/NetworkDriver.Leave",
            call!(Net, "Leave", Ids, |p, r| p.leave(r.endpoint_id)),
        )
        .route(
            "/NetworkDriver.ProgramExternalConnectivity",
            call!(Net, "ProgramExternalConnectivity", Ids, |p, r| p
                .program_external(r)),
        )
        .route(
            "/NetworkDriver.RevokeExternalConnectivity",
            call!(Net, "RevokeExternalConnectivity", Ids, |_p, _r| ready(
                json!({})
            )),
        )
        .route(
            "/NetworkDriver.DiscoverNew",
            call!(Net, "DiscoverNew", Value, |_p, _r| ready(json!({}))),
        )
        .route(
            "/NetworkDriver.DiscoverDelete",
            call!(Net, "DiscoverDelete", Value, |_p, _r| ready(json!({}))),
        )
}

/// The IPAM driver's calls.
fn ipam_routes() -> Router<Arc<Plugin>> {
    use protocol::*;
    use Role::Ipam;
    Router::new()
        .route(
            "/IpamDriver.GetCapabilities",
            call!(Ipam, "IpamDriver.GetCapabilities", Value, |_p, _r| ready(
                ipam::capabilities()
            )),
        )
        .route(
            "/IpamDriver.GetDefaultAddressSpaces",
            call!(Ipam, "GetDefaultAddressSpaces", Value, |_p, _r| ready(
                ipam::address_spaces()
            )),
        )
        .route(
            "/IpamDriver.RequestPool",
            call!(Ipam, "RequestPool", RequestPool, |p, r| p.request_pool(r)),
        )
        .route(
            "/IpamDriver.ReleasePool",
            call!(Ipam, "ReleasePool", PoolAddress, |p, r| p.release_pool(r)),
        )
        .route(
            "/IpamDriver.RequestAddress",
            call!(Ipam, "RequestAddress", PoolAddress, |p, r| p
                .request_address(r)),
        )
        .route(
            "/IpamDriver.ReleaseAddress",
            call!(Ipam, "ReleaseAddress", PoolAddress, |p, r| p
                .release_address(r)),
        )
}

fn router(plugin: Arc<Plugin>) -> Router {
    network_routes().merge(ipam_routes()).with_state(plugin)
}

impl Plugin {
    async fn pools(&self) -> Result<Vec<ipam::Pool>, String> {
        let records = self
            .engine
            .plugin_records(ipam::POOL)
            .await
            .map_err(engine_message)?;
        records
            .iter()
            .map(|(id, body)| {
                serde_json::from_str(body).map_err(|e| format!("pool {id}: stored record: {e}"))
            })
            .collect()
    }

    async fn save_pool(&self, pool: &ipam::Pool) -> Result<(), String> {
        let body = serde_json::to_string(pool).map_err(|e| e.to_string())?;
        self.engine
            .put_plugin_record(ipam::POOL, &pool.id, &body)
            .await
            .map_err(engine_message)
    }

    async fn pool(&self, id: &str) -> Result<ipam::Pool, String> {
        let body = (self.engine.plugin_record(ipam::POOL, id).await)
            .map_err(engine_message)?
            .ok_or_else(|| format!("wasmnet: no pool {id:?}"))?;
        serde_json::from_str(&body).map_err(|e| format!("pool {id}: stored record: {e}"))
    }

    async fn request_pool(&self, req: protocol::RequestPool) -> Result<Value, String> {
        let _guard = self.registry.lock().await;
        let pools = self.pools().await?;
        let pool =
            ipam::request_pool(&self.engine, &pools, &req).map_err(|e| format!("wasmnet: {e}"))?;
        self.save_pool(&pool).await?;
        Ok(json!({"PoolID": pool.id, "Pool": pool.subnet.to_string(), "Data": {}}))
    }

    async fn release_pool(&self, req: protocol::PoolAddress) -> Result<Value, String> {
        let _guard = self.registry.lock().await;
        self.engine
            .delete_plugin_record(ipam::POOL, &req.pool_id)
            .await
            .map_err(engine_message)?;
        Ok(json!({}))
    }

    async fn request_address(&self, req: protocol::PoolAddress) -> Result<Value, String> {
        let _guard = self.registry.lock().await;
        let mut pool = self.pool(&req.pool_id).await?;
        let addr = ipam::request_address(&self.engine, &mut pool, &req)
            .map_err(|e| format!("wasmnet: {e}"))?;
        self.save_pool(&pool).await?;
        Ok(json!({"Address": addr, "Data": {}}))
    }

    async fn release_address(&self, req: protocol::PoolAddress) -> Result<Value, String> {
        let _guard = self.registry.lock().await;
        let mut pool = self.pool(&req.pool_id).await?;
        ipam::release_address(&mut pool, &req.address).map_err(|e| format!("wasmnet: {e}"))?;
        self.save_pool(&pool).await?;
        Ok(json!({}))
    }
}

impl Plugin {
    /// What Docker could not tell wasmnet while it was down: endpoints it removed (their
    /// record says joined, the engine's reconciler found them handed back and disconnected
    /// them) lose their record, and addresses no endpoint or record holds are free again.
    async fn prune(&self) -> Result<(), String> {
        let _guard = self.registry.lock().await;
        let records = self
            .engine
            .plugin_records(network::ENDPOINT)
            .await
            .map_err(engine_message)?;
        let mut held = std::collections::BTreeSet::new();
        // Docker's endpoint ids the engine holds, from one pass (not one per record).
        let present = network::docker_endpoint_ids(&self.engine);
        for (id, body) in records {
            let Ok(p) = serde_json::from_str::<network::Pending>(&body) else {
                continue;
            };
            if p.joined && !present.contains(&id) {
                tracing::info!(
                    endpoint = id,
                    "Docker removed this endpoint while wasmnet was down"
                );
                self.engine
                    .delete_plugin_record(network::ENDPOINT, &id)
                    .await
                    .map_err(engine_message)?;
                continue;
            }
            held.extend([p.ipv4, p.ipv6].into_iter().flatten());
        }
        let state = self.engine.state();
        held.extend(
            state
                .view()
                .endpoints()
                .flat_map(|e| [e.ipv4, e.ipv6])
                .flatten(),
        );
        for mut pool in self.pools().await? {
            let before = pool.given.len();
            pool.given.retain(|a| held.contains(a));
            if pool.given.len() != before {
                self.save_pool(&pool).await?;
            }
        }
        Ok(())
    }
}

/// Serves the plugin on `listener` until `stop` resolves (after pruning what Docker removed
/// while wasmnet was down).
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let plugin = Arc::new(Plugin {
        engine,
        registry: Mutex::new(()),
    });
    if let Err(e) = plugin.prune().await {
        tracing::warn!(error = %e, "pruning the docker plugin's records");
    }
    axum::serve(listener, router(plugin))
        .with_graceful_shutdown(stop)
        .await
}
