//! The cluster store: overlay networks, where their endpoints are, and the addresses handed out
//! on them live in etcd, shared by every host's wasmnet. This module is etcd and nothing else;
//! `sync` turns what it reads into the host's kernel state.
//!
//! Fail static: when etcd cannot be reached, nothing is torn down — the dataplane keeps what it
//! was last told, reads answer from the local store, and writes of cluster objects fail with
//! [`Error::Unavailable`] (503) saying why. The session loop in `sync` reconnects and
//! reconciles.

pub mod keys;
pub mod mirror;
pub mod sync;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp,
};

use crate::error::{Error, Result};
use crate::model::Network;
use crate::policy::Attachment;
use keys::{Claim, EndpointRecord, PolicyRecord};

pub use sync::{spawn, Applied, Host};

/// How this host joins the cluster (`wasmnet serve --cluster …`).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd's client URLs, `http://` or `https://`.
    pub endpoints: Vec<String>,
    pub tls: Option<TlsFiles>,
    /// This host's name in the cluster (unique per host).
    pub node: String,
    /// This host's address on the underlay: its VTEP, and what the others send VXLAN to.
    pub advertise: Ipv4Addr,
    pub vxlan_port: u16,
    /// How long a host's endpoints outlive it in the others' forwarding tables.
    pub lease_ttl: Duration,
}

/// Client TLS for etcd: a CA to trust, and a client certificate and key if etcd asks for one.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClusterConfig {
    /// `etcd://HOST:PORT[,HOST:PORT…]` (plain) or `etcds://…` (TLS) into client URLs.
    pub fn parse_url(url: &str) -> std::result::Result<(Vec<String>, bool), String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else {
            return Err(format!(
                "--cluster {url:?}: expected etcd://HOST:PORT[,HOST:PORT…] (or etcds:// for TLS)"
            ));
        };
        let scheme = if tls { "https" } else { "http" };
        let mut out = Vec::new();
        for hostport in rest.split(',') {
            let ok = hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("--cluster {url:?}: {hostport:?} is not HOST:PORT"));
            }
            out.push(format!("{scheme}://{hostport}"));
        }
        Ok((out, tls))
    }
}

/// The connection to etcd, this host's lease, and whether etcd answered last time.
pub struct Cluster {
    pub cfg: ClusterConfig,
    client: Client,
    lease: AtomicI64,
    health: Mutex<Health>,
    /// The underlay link holding the VTEP address, and the overlay MTU it allows.
    pub underlay: String,
    pub mtu: u32,
}

/// What the health endpoint and the dashboard say about the cluster store.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    pub connected: bool,
    pub last_error: Option<String>,
    /// This host's name in the cluster, and its VTEP (underlay) address.
    pub node: String,
    pub vtep: String,
}

/// etcd refuses requests over 1.5 MiB by default; a module, with its record, stays under.
pub const MAX_SHARED_MODULE: usize = 1024 * 1024;

/// The VXLAN header and its UDP, IP and inner Ethernet headers.
pub const VXLAN_OVERHEAD: u32 = 50;

/// What an operation on etcd found, when it could not do what was asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A guard did not hold: the name, VNI or subnet is taken, the address claimed, etc.
    Taken,
    /// The network is gone from the cluster.
    NoNetwork,
    /// Endpoints are still on the network (on some host).
    InUse,
}

impl Cluster {
    /// Connects lazily: an etcd that is down now does not stop the host from starting.
    pub async fn open(cfg: ClusterConfig, underlay: String, underlay_mtu: u32) -> Result<Cluster> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(3))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(tls) = &cfg.tls {
            opts = opts.with_tls(tls_options(tls)?);
        }
        let client = Client::connect(&cfg.endpoints, Some(opts))
            .await
            .map_err(|e| Error::invalid("cluster", e.to_string()))?;
        Ok(Cluster {
            cfg,
            client,
            lease: AtomicI64::new(0),
            health: Mutex::new(Health::default()),
            underlay,
            mtu: underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
        })
    }

    pub fn health(&self) -> Health {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        Health {
            node: self.cfg.node.clone(),
            vtep: self.vtep().to_string(),
            ..h.clone()
        }
    }

    /// The VTEP of the live host holding this host's node name, when it is another host's
    /// (a host is known by its VTEP: a restarted host reclaims its own name at once).
    pub async fn node_holder(&self) -> std::result::Result<Option<String>, etcd_client::Error> {
        let found = self.client().get(keys::host(&self.cfg.node), None).await?;
        Ok(found.kvs().first().and_then(|kv| self.other_holder(kv)))
    }

    fn other_holder(&self, kv: &KeyValue) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
        let theirs = v["vtep"].as_str().unwrap_or_default().to_string();
        (theirs != self.vtep().to_string()).then_some(theirs)
    }

    /// Holds the node name under `lease` unless another live host holds it (then returns its
    /// VTEP). One transaction guarded by what was read, so two hosts cannot both win.
    pub async fn claim_node(
        &self,
        lease: i64,
    ) -> std::result::Result<Option<String>, etcd_client::Error> {
        let key = keys::host(&self.cfg.node);
        let mut client = self.client();
        let found = client.get(key.clone(), None).await?;
        let guard = match found.kvs().first() {
            Some(kv) => match self.other_holder(kv) {
                Some(theirs) => return Ok(Some(theirs)),
                None => Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
            },
            None => Compare::version(key.clone(), CompareOp::Equal, 0),
        };
        let me = serde_json::json!({ "vtep": self.vtep() }).to_string();
        let put = TxnOp::put(key, me, Some(PutOptions::new().with_lease(lease)));
        let r = client.txn(Txn::new().when([guard]).and_then([put])).await?;
        match r.succeeded() {
            true => Ok(None),
            false => Ok(self.node_holder().await?.or(Some("another host".into()))),
        }
    }

    /// Why a node name cannot be this host's.
    pub fn name_taken(&self, holder: &str) -> String {
        format!(
            "node name {:?} is held by the live host at {holder}; give this host another --node-name",
            self.cfg.node
        )
    }

    fn set_health(&self, error: Option<String>) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        h.connected = error.is_none();
        h.last_error = error;
    }

    pub fn vtep(&self) -> IpAddr {
        IpAddr::V4(self.cfg.advertise)
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    /// An etcd failure as the client sees it: 503, naming etcd and what it said.
    fn unavailable(&self, e: etcd_client::Error) -> Error {
        let message = format!(
            "the cluster store ({}) is unreachable: {e}; overlay networks keep forwarding, \
             but cluster objects cannot change until it is back",
            self.cfg.endpoints.join(",")
        );
        self.set_health(Some(e.to_string()));
        Error::Unavailable(message)
    }

    async fn txn(&self, txn: Txn) -> Result<bool> {
        let r = self
            .client()
            .txn(txn)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(r.succeeded())
    }

    /// The VNIs networks hold.
    pub async fn taken_vnis(&self) -> Result<BTreeSet<u32>> {
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let r = self
            .client()
            .get(keys::vnis(), Some(opts))
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.rsplit('/').next()?.parse().ok())
            .collect())
    }

    /// Records a new overlay network, if its name, VNI and subnets are all still free.
    pub async fn create_network(&self, n: &Network, vni: u32) -> Result<Option<Refusal>> {
        let mut guards = vec![
            keys::name(&n.name),
            keys::vni(vni),
            keys::subnet(&n.ipv4.subnet),
        ];
        guards.extend(n.ipv6.as_ref().map(|c| keys::subnet(&c.subnet)));
        let json = serde_json::to_string(n).map_err(|e| Error::Internal(e.to_string()))?;
        let txn = Txn::new()
            .when(
                guards
                    .iter()
                    .map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
                    .collect::<Vec<_>>(),
            )
            .and_then(
                guards
                    .iter()
                    .map(|k| TxnOp::put(k.as_str(), n.id.as_str(), None))
                    .chain([TxnOp::put(keys::network(&n.id), json, None)])
                    .collect::<Vec<_>>(),
            );
        Ok((!self.txn(txn).await?).then_some(Refusal::Taken))
    }

    /// After `create_network` was refused: which guard held, as the client's error.
    pub async fn why_taken(&self, n: &Network, vni: u32) -> Error {
        let mut checks = vec![
            (
                keys::name(&n.name),
                "name_in_use",
                format!("network name {:?} is already in use in the cluster", n.name),
            ),
            (
                keys::vni(vni),
                "vni_in_use",
                format!("VNI {vni} is already another overlay network's"),
            ),
            (
                keys::subnet(&n.ipv4.subnet),
                "subnet_in_use",
                format!(
                    "subnet {} is already another overlay network's",
                    n.ipv4.subnet
                ),
            ),
        ];
        if let Some(c) = &n.ipv6 {
            checks.push((
                keys::subnet(&c.subnet),
                "subnet_in_use",
                format!("subnet {} is already another overlay network's", c.subnet),
            ));
        }
        for (key, code, message) in checks {
            match self.client().get(key, None).await {
                Ok(r) if !r.kvs().is_empty() => return Error::conflict(code, message),
                Ok(_) => {}
                Err(e) => return self.unavailable(e),
            }
        }
        Error::conflict(
            "cluster_conflict",
            format!(
                "network {:?} changed in the cluster meanwhile; try again",
                n.name
            ),
        )
    }

    /// Removes an overlay network and everything kept for it, unless an endpoint is on it on
    /// some host (checked in the same transaction, so no connect can slip in between).
    pub async fn delete_network(&self, n: &Network, vni: u32) -> Result<Option<Refusal>> {
        let no_endpoints =
            Compare::create_revision(keys::endpoints_of(&n.id), CompareOp::Equal, 0).with_prefix();
        let mut ops = vec![
            TxnOp::delete(keys::network(&n.id), None),
            TxnOp::delete(keys::name(&n.name), None),
            TxnOp::delete(keys::vni(vni), None),
            TxnOp::delete(keys::subnet(&n.ipv4.subnet), None),
            TxnOp::delete(
                keys::claims_of(&n.id),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ];
        ops.extend(
            n.ipv6
                .as_ref()
                .map(|c| TxnOp::delete(keys::subnet(&c.subnet), None)),
        );
        let txn = Txn::new().when([no_endpoints]).and_then(ops);
        Ok((!self.txn(txn).await?).then_some(Refusal::InUse))
    }

    /// Claims an endpoint's addresses and publishes where it is, in one transaction: either
    /// every address was free (`fresh`) or already this endpoint's (a re-publication after a
    /// reconnect), and the network exists — or nothing is written.
    pub async fn publish(&self, rec: &EndpointRecord, fresh: bool) -> Result<Option<Refusal>> {
        let claim = serde_json::to_string(&Claim {
            endpoint: rec.id.clone(),
            host: rec.host.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let lease = self.lease.load(Ordering::Relaxed);
        if lease == 0 {
            return Err(Error::Unavailable(format!(
                "not connected to the cluster store ({}) yet{}",
                self.cfg.endpoints.join(","),
                self.health()
                    .last_error
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )));
        }
        let mut ops: Vec<TxnOp> = rec
            .addresses()
            .into_iter()
            .map(|a| TxnOp::put(keys::claim(&rec.network_id, a), claim.as_str(), None))
            .collect();
        let lease = PutOptions::new().with_lease(lease);
        let json = serde_json::to_string(rec).map_err(|e| Error::Internal(e.to_string()))?;
        ops.push(TxnOp::put(
            keys::endpoint(&rec.network_id, &rec.id),
            json,
            Some(lease),
        ));
        let mut guards = vec![Compare::version(
            keys::network(&rec.network_id),
            CompareOp::Greater,
            0,
        )];
        guards.extend(claim_guards(rec, &claim, fresh));
        if self.txn(Txn::new().when(guards).and_then(ops)).await? {
            return Ok(None);
        }
        // Which guard failed decides the answer.
        let mut c = self.client();
        let exists = c
            .get(keys::network(&rec.network_id), None)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Some(if exists.kvs().is_empty() {
            Refusal::NoNetwork
        } else {
            Refusal::Taken
        }))
    }

    /// Withdraws endpoints and frees their addresses, all in one transaction.
    pub async fn withdraw(&self, recs: &[EndpointRecord]) -> Result<()> {
        let mut ops = Vec::new();
        for rec in recs {
            ops.push(TxnOp::delete(
                keys::endpoint(&rec.network_id, &rec.id),
                None,
            ));
            ops.extend(
                rec.addresses()
                    .into_iter()
                    .map(|a| TxnOp::delete(keys::claim(&rec.network_id, a), None)),
            );
        }
        self.txn(Txn::new().and_then(ops)).await.map(drop)
    }

    /// Frees an address a crash left claimed.
    pub async fn release_claim(&self, network_id: &str, addr: IpAddr) -> Result<()> {
        self.client()
            .delete(keys::claim(network_id, addr), None)
            .await
            .map_err(|e| self.unavailable(e))
            .map(drop)
    }

    /// Shares a policy: its record and module, if its name is free cluster-wide.
    pub async fn put_policy(&self, p: &PolicyRecord, wasm: &[u8]) -> Result<Option<Refusal>> {
        if wasm.len() > MAX_SHARED_MODULE {
            return Err(Error::invalid(
                "module",
                format!(
                    "{} bytes: policies are shared through etcd, which takes at most {MAX_SHARED_MODULE} bytes per module",
                    wasm.len()
                ),
            ));
        }
        let json = serde_json::to_string(p).map_err(|e| Error::Internal(e.to_string()))?;
        let name = keys::policy_name(&p.name);
        let txn = Txn::new()
            .when([Compare::create_revision(name.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(name.as_str(), p.id.as_str(), None),
                TxnOp::put(keys::module(&p.id), wasm, None),
                TxnOp::put(keys::policy(&p.id), json, None),
            ]);
        Ok((!self.txn(txn).await?).then_some(Refusal::Taken))
    }

    /// Removes a shared policy and its shared attachments.
    pub async fn delete_policy(&self, id: &str, name: &str) -> Result<()> {
        let txn = Txn::new().and_then([
            TxnOp::delete(keys::policy(id), None),
            TxnOp::delete(keys::module(id), None),
            TxnOp::delete(keys::policy_name(name), None),
            TxnOp::delete(
                keys::attachments_of(id),
                Some(DeleteOptions::new().with_prefix()),
            ),
        ]);
        self.txn(txn).await.map(drop)
    }

    pub async fn put_attachment(&self, policy_id: &str, a: &Attachment) -> Result<()> {
        let json = serde_json::to_string(a).map_err(|e| Error::Internal(e.to_string()))?;
        let key = keys::attachment(policy_id, a.network_id.as_deref());
        self.client()
            .put(key, json, None)
            .await
            .map_err(|e| self.unavailable(e))
            .map(drop)
    }

    pub async fn delete_attachment(&self, policy_id: &str, network_id: Option<&str>) -> Result<()> {
        self.client()
            .delete(keys::attachment(policy_id, network_id), None)
            .await
            .map_err(|e| self.unavailable(e))
            .map(drop)
    }

    /// Everything under wasmnet's root, and the revision it was read at.
    async fn snapshot(&self) -> std::result::Result<(i64, Vec<KeyValue>), etcd_client::Error> {
        let mut r = self
            .client()
            .get(keys::ROOT, Some(GetOptions::new().with_prefix()))
            .await?;
        let rev = r.header().map(|h| h.revision()).unwrap_or(0);
        Ok((rev, r.take_kvs()))
    }
}

/// Each address: not claimed yet (`fresh`), or claimed by this very endpoint.
fn claim_guards(rec: &EndpointRecord, claim: &str, fresh: bool) -> Vec<Compare> {
    rec.addresses()
        .into_iter()
        .map(|a| keys::claim(&rec.network_id, a))
        .map(|k| match fresh {
            true => Compare::create_revision(k, CompareOp::Equal, 0),
            false => Compare::value(k, CompareOp::Equal, claim),
        })
        .collect()
}

fn tls_options(files: &TlsFiles) -> Result<TlsOptions> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| Error::invalid("cluster", format!("{}: {e}", p.display())))
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &files.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    match (&files.cert, &files.key) {
        (Some(c), Some(k)) => tls = tls.identity(Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(Error::invalid(
                "cluster",
                "a client certificate needs its key, and a key its certificate",
            ))
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert_eq!(
            ClusterConfig::parse_url("etcd://10.0.0.1:2379,etcd2:2379").unwrap(),
            (
                vec![
                    "http://10.0.0.1:2379".to_string(),
                    "http://etcd2:2379".to_string()
                ],
                false
            )
        );
        assert_eq!(
            ClusterConfig::parse_url("etcds://e:2379").unwrap().0,
            vec!["https://e:2379"]
        );
        for bad in ["http://e:2379", "etcd://e", "etcd://:2379", "etcd://e:x"] {
            assert!(ClusterConfig::parse_url(bad).is_err(), "{bad}");
        }
    }
}
