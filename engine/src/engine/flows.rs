//! Flow records: the flow log read from the kernel, each packet named (its network, who
//! decided, the endpoints and sandboxes at both ends) and kept in the ring, streamed live.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc};

use super::Engine;
use crate::flows::{parse_headers, parse_prefix, protocol_name, Flow, FlowFilter, FlowPeer};
use crate::kernel::nflog::Logged;
use crate::kernel::LinkCounters;
use crate::state::State;

/// Logged packets waiting to be named; past this the reader drops them (counted).
const QUEUE: usize = 4096;

impl Engine {
    /// Reads the flow log (bound before the first ruleset, see `open`) for the engine's
    /// lifetime.
    pub(super) fn start_flows(self: &Arc<Self>, socket: netlink_sys::Socket) {
        let (tx, rx) = mpsc::channel::<Logged>(QUEUE);
        let deliver = move |l: Logged| match tx.try_send(l) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                crate::metrics::get().flows_lost.inc();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if let Err(e) = crate::kernel::nflog::spawn(socket, deliver) {
            tracing::warn!(error = %e, "no flow records: the flow log cannot be read");
            return;
        }
        tokio::spawn(record(Arc::downgrade(self), rx));
    }

    /// The newest `limit` flows matching `filter`, oldest first.
    pub fn flows(&self, filter: &FlowFilter, limit: usize) -> Vec<Flow> {
        let ring = self.flows.lock().unwrap_or_else(|p| p.into_inner());
        ring.query(filter, limit)
    }

    /// Every new flow record.
    pub fn subscribe_flows(&self) -> broadcast::Receiver<Flow> {
        self.flow_events.subscribe()
    }

    /// The traffic of the endpoints `ids`, by id: their host-side veths' counters (one dump
    /// of the kernel's link statistics), so `rx` is what an endpoint sent, `tx` what it
    /// received.
    pub async fn endpoint_traffic(
        &self,
        ids: &[&str],
    ) -> crate::Result<HashMap<String, LinkCounters>> {
        let by_veth: HashMap<String, &str> = (ids.iter())
            .map(|id| (crate::names::veth_name(id), *id))
            .collect();
        let veths: Vec<String> = by_veth.keys().cloned().collect();
        let counters = self.drivers.kernel().link_counters(&veths).await?;
        Ok((counters.into_iter())
            .filter_map(|(veth, c)| by_veth.get(&veth).map(|id| (id.to_string(), c)))
            .collect())
    }

    /// The endpoints at either end of a drop recorded in the last `window`.
    pub fn recently_dropping(&self, window: Duration) -> HashSet<String> {
        let since = SystemTime::now() - window;
        let dropped = FlowFilter {
            verdict: Some(crate::flows::FlowVerdict::Dropped),
            ..Default::default()
        };
        (self.flows(&dropped, 1000).into_iter())
            .filter(|f| humantime::parse_rfc3339(&f.time).is_ok_and(|t| t >= since))
            .flat_map(|f| [f.source.endpoint, f.destination.endpoint])
            .flatten()
            .collect()
    }
}

async fn record(engine: Weak<Engine>, mut rx: mpsc::Receiver<Logged>) {
    let mut names = Names::default();
    while let Some(logged) = rx.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let state = engine.state();
        names.refresh(&state);
        let Some(flow) = name_flow(&state, &names, &logged) else {
            continue;
        };
        let flow = {
            let mut ring = engine.flows.lock().unwrap_or_else(|p| p.into_inner());
            ring.push(flow)
        };
        let verdict = crate::metrics::KindLabel {
            kind: flow.verdict.as_str(),
        };
        crate::metrics::get()
            .flow_records
            .get_or_create(&verdict)
            .inc();
        let _ = engine.flow_events.send(flow);
    }
}

/// Addresses to (endpoint id, sandbox name), rebuilt when the state changes.
#[derive(Default)]
struct Names {
    of: Option<Arc<State>>,
    by_addr: HashMap<IpAddr, (String, String)>,
}

impl Names {
    fn refresh(&mut self, state: &Arc<State>) {
        if self.of.as_ref().is_some_and(|s| Arc::ptr_eq(s, state)) {
            return;
        }
        let v = state.view();
        self.by_addr = (v.endpoints())
            .flat_map(|e| {
                let sandbox =
                    (v.sandboxes().get(&e.sandbox_id)).map_or(String::new(), |s| s.name.clone());
                [e.ipv4, e.ipv6]
                    .into_iter()
                    .flatten()
                    .map(move |a| (a, (e.id.clone(), sandbox.clone())))
            })
            .collect();
        self.of = Some(state.clone());
    }

    fn peer(&self, address: IpAddr, port: Option<u16>) -> FlowPeer {
        let known = self.by_addr.get(&address);
        FlowPeer {
            address,
            port,
            endpoint: known.map(|k| k.0.clone()),
            sandbox: known.map(|k| k.1.clone()),
        }
    }
}

/// A logged packet as a flow record (its sequence number is the ring's to give); None when
/// it is not one of wasmnet's or not IP.
fn name_flow(state: &State, names: &Names, l: &Logged) -> Option<Flow> {
    let (verdict, who, net) = parse_prefix(&l.prefix)?;
    let h = parse_headers(&l.payload)?;
    let network = net.and_then(|n| {
        (state.view().networks().iter_from(None))
            .find(|x| x.id.starts_with(n))
            .map(|x| x.name.clone())
    });
    let policy = (state.policies.loaded.values())
        .find(|p| p.policy.id.starts_with(who))
        .map(|p| p.policy.name.clone());
    Some(Flow {
        seq: 0,
        time: crate::ids::now(),
        network,
        source: names.peer(h.src, h.ports.map(|p| p.0)),
        destination: names.peer(h.dst, h.ports.map(|p| p.1)),
        protocol: protocol_name(h.protocol),
        verdict,
        decided_by: policy.clone().unwrap_or_else(|| who.to_string()),
        policy,
    })
}
