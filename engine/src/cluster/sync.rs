//! Keeps this host in step with the cluster: one session at a time — take a lease, read
//! everything, re-publish this host's endpoints under the lease, make the host match, then
//! follow the watch while keeping the lease alive. Any etcd failure ends the session; the host
//! keeps what it has (fail static) and a new session starts after a back-off, which reconciles
//! whatever changed meanwhile.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, PutOptions, WatchOptions};

use super::keys::{self, EndpointRecord};
use super::mirror::Mirror;
use super::{Cluster, Refusal};
use crate::drivers::overlay;
use crate::engine::Engine;
use crate::model::{Driver, Endpoint, Network};

/// What this host has made of the mirror so far (it outlives sessions: the kernel keeps it).
#[derive(Default)]
struct Applied {
    /// Remote endpoints programmed into VXLAN devices, by endpoint id.
    remotes: HashMap<String, EndpointRecord>,
    /// Other hosts' addresses, taken out of the local address spaces.
    reserved: HashSet<(String, IpAddr)>,
    /// Cluster networks not mirrored here (their name is a local network's); warned once.
    clashes: HashSet<String>,
}

pub fn spawn(engine: &Arc<Engine>) {
    let Some(cluster) = engine.cluster.clone() else {
        return;
    };
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut applied = Applied::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            let started = std::time::Instant::now();
            let why = session(&engine, &cluster, &mut applied).await;
            tracing::warn!(error = %why, "cluster store session ended; the dataplane stays as it is");
            cluster.set_health(Some(why));
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(200);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}

/// One session; returns why it ended.
async fn session(engine: &Engine, cluster: &Cluster, applied: &mut Applied) -> String {
    match run(engine, cluster, applied).await {
        Ok(why) => why,
        Err(e) => e.to_string(),
    }
}

async fn run(
    engine: &Engine,
    cluster: &Cluster,
    applied: &mut Applied,
) -> Result<String, etcd_client::Error> {
    let mut client = cluster.client();
    let ttl = cluster.cfg.lease_ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    cluster
        .lease
        .store(lease, std::sync::atomic::Ordering::Relaxed);
    let me = serde_json::json!({ "vtep": cluster.vtep() }).to_string();
    let leased = PutOptions::new().with_lease(lease);
    client
        .put(keys::host(&cluster.cfg.node), me, Some(leased))
        .await?;
    let (mut keeper, mut alive) = client.lease_keep_alive(lease).await?;

    let (rev, kvs) = cluster.snapshot().await?;
    let mut mirror = Mirror::default();
    for kv in &kvs {
        mirror.put(kv.key_str().unwrap_or_default(), kv.value());
    }
    let republished = match engine.republish(cluster, &mirror).await {
        Ok(()) => engine.republish_policies(cluster, &mirror).await,
        Err(e) => Err(e),
    };
    if let Err(e) = republished {
        return Ok(e.to_string());
    }
    engine.converge(cluster, &mirror, applied).await;
    cluster.set_health(None);
    tracing::info!(revision = rev, "following the cluster store");

    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(rev + 1);
    let mut watch = client.watch(keys::ROOT, Some(opts)).await?;
    let mut tick = tokio::time::interval(cluster.cfg.lease_ttl / 3);
    loop {
        tokio::select! {
            _ = tick.tick() => keeper.keep_alive().await?,
            msg = alive.message() => match msg? {
                Some(r) if r.ttl() > 0 => {}
                _ => return Ok("this host's lease expired".into()),
            },
            msg = watch.message() => {
                let Some(resp) = msg? else {
                    return Ok("the watch ended".into());
                };
                if resp.canceled() {
                    return Ok(format!("the watch was cancelled: {}", resp.cancel_reason()));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = kv.key_str().unwrap_or_default();
                    match ev.event_type() {
                        EventType::Put => mirror.put(key, kv.value()),
                        EventType::Delete => mirror.delete(key),
                    }
                }
                engine.converge(cluster, &mirror, applied).await;
            }
        }
    }
}

impl Engine {
    fn overlay_networks(&self) -> Vec<Arc<Network>> {
        let v = self.view();
        v.networks
            .iter_from(None)
            .filter(|n| n.driver == Driver::Overlay)
            .cloned()
            .collect()
    }

    fn overlay_endpoints(&self) -> Vec<Arc<Endpoint>> {
        let v = self.view();
        let overlay: HashSet<&str> = v
            .networks
            .iter_from(None)
            .filter(|n| n.driver == Driver::Overlay)
            .map(|n| n.id.as_str())
            .collect();
        v.endpoints
            .values()
            .filter(|e| overlay.contains(e.network_id.as_str()))
            .cloned()
            .collect()
    }

    /// At the start of a session: this host's endpoints are published again under the new
    /// lease (their addresses re-claimed), and what a crash left in etcd is withdrawn.
    async fn republish(&self, cluster: &Cluster, m: &Mirror) -> crate::Result<()> {
        let _writer = self.lock_writer().await;
        let node = &cluster.cfg.node;
        let local = self.overlay_endpoints();
        for e in &local {
            let rec = self.record(cluster, e);
            let refused = match cluster.publish(&rec, false).await? {
                Some(Refusal::Taken) => cluster.publish(&rec, true).await?,
                other => other,
            };
            if let Some(r) = refused {
                tracing::warn!(endpoint = %e.id, network = %e.network_name, refusal = ?r,
                    "this endpoint could not be published to the cluster");
            }
        }
        let known: HashSet<&str> = local.iter().map(|e| e.id.as_str()).collect();
        let stale: Vec<&EndpointRecord> = m
            .endpoints
            .values()
            .filter(|r| &r.host == node && !known.contains(r.id.as_str()))
            .collect();
        for r in stale {
            cluster.withdraw(std::slice::from_ref(r)).await?;
        }
        for ((net, addr), c) in &m.claims {
            if &c.host == node && !known.contains(c.endpoint.as_str()) {
                cluster.release_claim(net, *addr).await?;
            }
        }
        Ok(())
    }

    /// Makes the host match the mirror: overlay networks, other hosts' addresses, remote
    /// endpoints. Failures are logged; the next event or session tries again.
    async fn converge(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) {
        let _writer = self.lock_writer().await;
        self.converge_networks(m, applied).await;
        self.converge_claims(cluster, m, applied);
        let policies = self.converge_policies(m).await;
        let remotes = self.converge_remotes(cluster, m, applied).await;
        if policies || (remotes && !self.policies().plan.is_empty()) {
            self.replan().await;
        }
    }

    async fn converge_networks(&self, m: &Mirror, applied: &mut Applied) {
        let local = self.overlay_networks();
        for n in m.networks.values() {
            if local.iter().any(|l| l.id == n.id) {
                continue;
            }
            if self.view().networks.has_name(&n.name) {
                if applied.clashes.insert(n.id.clone()) {
                    tracing::warn!(network = %n.name, "an overlay network has the name of a local network; not mirrored here");
                }
                continue;
            }
            if let Err(e) = self.add_network_locally(Arc::new(n.clone())).await {
                tracing::warn!(network = %n.name, error = %e, "mirroring an overlay network");
            }
        }
        let gone: Vec<Arc<Network>> = local
            .into_iter()
            .filter(|n| !m.networks.contains_key(&n.id))
            .filter(|n| {
                let used = self.view().endpoints_of_network(&n.id).next().is_some();
                if used {
                    tracing::warn!(network = %n.name, "gone from the cluster but has endpoints here; kept");
                }
                !used
            })
            .collect();
        if !gone.is_empty() {
            if let Err(e) = self.remove_networks_locally(&gone).await {
                tracing::warn!(error = %e, "removing overlay networks gone from the cluster");
            }
        }
    }

    /// Other hosts' addresses are taken out of the local address spaces, so a connect here
    /// picks a free one first time (the claim's transaction still decides).
    fn converge_claims(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) {
        let node = &cluster.cfg.node;
        let desired: HashSet<(String, IpAddr)> = m
            .claims
            .iter()
            .filter(|(_, c)| &c.host != node)
            .map(|(k, _)| k.clone())
            .collect();
        let mut v = self.write();
        for (net, addr) in applied.reserved.difference(&desired) {
            v.mark_address(net, *addr, false);
        }
        for (net, addr) in &desired {
            v.mark_address(net, *addr, true);
        }
        applied.reserved = desired;
    }

    /// True when the remote endpoints changed.
    async fn converge_remotes(&self, cluster: &Cluster, m: &Mirror, applied: &mut Applied) -> bool {
        let node = &cluster.cfg.node;
        let here: HashSet<String> = self
            .overlay_networks()
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let desired: HashMap<&String, &EndpointRecord> = m
            .endpoints
            .iter()
            .filter(|(_, r)| &r.host != node && here.contains(&r.network_id))
            .collect();
        let links = self.bridge.links();
        let mut changed = false;
        let stale: Vec<EndpointRecord> = applied
            .remotes
            .iter()
            .filter(|(id, r)| desired.get(id) != Some(r))
            .map(|(_, r)| r.clone())
            .collect();
        for r in stale {
            if let Err(e) = overlay::remove_remote(links, &r).await {
                tracing::warn!(endpoint = %r.id, error = %e, "withdrawing a remote endpoint");
            }
            applied.remotes.remove(&r.id);
            changed = true;
        }
        for (id, r) in &desired {
            if applied.remotes.contains_key(*id) {
                continue;
            }
            changed = true;
            match overlay::add_remote(links, r).await {
                Ok(()) => {
                    applied.remotes.insert((*id).clone(), (*r).clone());
                }
                Err(e) => {
                    tracing::warn!(endpoint = %r.id, host = %r.host, error = %e, "programming a remote endpoint")
                }
            }
        }
        if changed {
            self.set_remotes(&desired);
        }
        changed
    }

    /// Records the remote endpoints (under policies, groups change with them).
    fn set_remotes(&self, desired: &HashMap<&String, &EndpointRecord>) {
        let names: HashMap<String, String> = self
            .overlay_networks()
            .iter()
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let remotes = desired
            .iter()
            .map(|(id, r)| {
                let name = names.get(&r.network_id).cloned().unwrap_or_default();
                ((*id).clone(), Arc::new(r.to_endpoint(&name)))
            })
            .collect();
        *self.remotes.write().unwrap_or_else(|p| p.into_inner()) = remotes;
    }

    /// Computes and enforces the plan again (remote endpoints or cluster policies changed).
    async fn replan(&self) {
        let planned = self.compute_plan(|_| {}, &[], None);
        let enforced = match planned {
            Ok(plan) => self.enforce(plan).await,
            Err(e) => Err(e),
        };
        if let Err(e) = enforced {
            tracing::warn!(error = %e, "enforcing the policies after a cluster change");
        }
    }
}
