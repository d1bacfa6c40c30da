//! Keeps this host in step with the cluster: one session at a time — take a lease, read
//! everything, re-publish this host's endpoints under the lease, make the host match, then
//! follow the watch while keeping the lease alive. Any etcd failure ends the session; the host
//! keeps what it has (fail static) and a new session starts after a back-off, which reconciles
//! whatever changed meanwhile.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};

use super::keys::{self, EndpointRecord};
use super::mirror::Mirror;
use super::Cluster;

/// What this host has made of the mirror so far (it outlives sessions: the kernel keeps it).
#[derive(Default)]
pub struct Applied {
    /// Remote endpoints programmed into VXLAN devices, by endpoint id.
    pub remotes: HashMap<String, EndpointRecord>,
    /// Other hosts' addresses, taken out of the local address spaces.
    pub reserved: HashSet<(String, IpAddr)>,
    /// Cluster networks not mirrored here (their name is a local network's); warned once.
    pub clashes: HashSet<String>,
}

/// What a session asks of the host it keeps in step: the whole interface between the
/// cluster sync and the engine.
pub trait Host: Send + Sync + 'static {
    /// At the start of a session: this host's endpoints and policies are published again
    /// under the new lease, and what a crash left in etcd is withdrawn.
    fn republish(
        &self,
        cluster: &Cluster,
        m: &Mirror,
    ) -> impl Future<Output = crate::Result<()>> + Send;
    /// Makes the host match the mirror; failures are logged, the next event tries again.
    fn converge(
        &self,
        cluster: &Cluster,
        m: &Mirror,
        applied: &mut Applied,
    ) -> impl Future<Output = ()> + Send;
}

pub fn spawn<H: Host>(engine: Arc<H>, cluster: Arc<Cluster>) {
    tokio::spawn(async move {
        let mut applied = Applied::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            let started = std::time::Instant::now();
            let why = session(engine.as_ref(), &cluster, &mut applied).await;
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
async fn session<H: Host>(engine: &H, cluster: &Cluster, applied: &mut Applied) -> String {
    match run(engine, cluster, applied).await {
        Ok(why) => why,
        Err(e) => e.to_string(),
    }
}

async fn run<H: Host>(
    engine: &H,
    cluster: &Cluster,
    applied: &mut Applied,
) -> Result<String, etcd_client::Error> {
    let mut client = cluster.client();
    let ttl = cluster.cfg.lease_ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    cluster
        .lease
        .store(lease, std::sync::atomic::Ordering::Relaxed);
    if let Some(holder) = cluster.claim_node(lease).await? {
        return Ok(cluster.name_taken(&holder));
    }
    let (mut keeper, mut alive) = client.lease_keep_alive(lease).await?;

    let (rev, kvs) = cluster.snapshot().await?;
    let mut mirror = Mirror::default();
    for kv in &kvs {
        mirror.put(kv.key_str().unwrap_or_default(), kv.value());
    }
    if let Err(e) = engine.republish(cluster, &mirror).await {
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
