//! What wasmnet counts for a monitoring stack, in the Prometheus (OpenMetrics) text format:
//! operations and their latency, policy calls, firewall changes, watcher restorations,
//! reconciler repairs, and HTTP requests (recorded by the web layer). One registry for the
//! process, as the `metrics` crate's global recorder would be: every part records into it
//! without being handed it, and `/metrics` encodes it. Values read at scrape time (object
//! counts, the cluster's state) are set by the scraper just before encoding.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// 100 µs to ~6.5 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub function: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Every series wasmnet exports.
pub struct Metrics {
    registry: Registry,
    pub operations: Latencies<OpLabels>,
    pub policy_calls: Latencies<PolicyLabels>,
    pub firewall_changes: Family<ResultLabel, Counter>,
    pub firewall_restorations: Counter,
    pub reconcile_repairs: Family<KindLabel, Counter>,
    pub reconcile_problems: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_latency: Latencies<RouteLabels>,
    pub flow_records: Family<KindLabel, Counter>,
    pub flows_lost: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("wasmnet");
        let m = Metrics {
            operations: Family::new_with_constructor(latency),
            policy_calls: Family::new_with_constructor(latency),
            firewall_changes: Family::default(),
            firewall_restorations: Counter::default(),
            reconcile_repairs: Family::default(),
            reconcile_problems: Counter::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            flow_records: Family::default(),
            flows_lost: Counter::default(),
            registry: Registry::default(),
        };
        r.register(
            "operation_duration_seconds",
            "Operations (connect, disconnect, network_create, attach, …) by result",
            m.operations.clone(),
        );
        r.register(
            "policy_call_duration_seconds",
            "Calls into policy modules by policy name, function and result",
            m.policy_calls.clone(),
        );
        r.register(
            "firewall_changes",
            "Changes put in the firewall, by result",
            m.firewall_changes.clone(),
        );
        r.register(
            "firewall_restorations",
            "Times the watcher found wasmnet's rules changed from outside and restored them",
            m.firewall_restorations.clone(),
        );
        r.register(
            "reconcile_repairs",
            "What the reconciler repaired at start, by kind (endpoint_rejoined: a veth that was missing; endpoint_forgotten: a runtime's container gone while wasmnet was down)",
            m.reconcile_repairs.clone(),
        );
        r.register(
            "reconcile_problems",
            "Problems the reconciler met and could not repair",
            m.reconcile_problems.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by method, route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            m.http_latency.clone(),
        );
        r.register(
            "flow_records",
            "Flow records by verdict (kind: dropped, would_drop, logged)",
            m.flow_records.clone(),
        );
        r.register(
            "flows_lost",
            "Logged packets dropped before they were recorded (the reader fell behind)",
            m.flows_lost.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Everything in the OpenMetrics text format: what was counted, then `now`.
    pub fn encode(&self, now: &Snapshot) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &now.registry());
        let _ = encode_eof(&mut out);
        out
    }
}

/// One attached policy on one network, from the kernel's counters: packets its rules
/// matched, those its drop rules dropped, and (audit mode) those it would have dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPackets {
    pub policy: String,
    pub network: String,
    pub matched: u64,
    pub dropped: u64,
    pub would_drop: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyNetworkLabels {
    pub policy: String,
    pub network: String,
}

/// A series of the policies' packets: name, help, which count.
type PacketSeries = (&'static str, &'static str, fn(&PolicyPackets) -> u64);

/// What is read at scrape time rather than counted as it happens.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<(&'static str, usize)>,
    /// Whether the cluster store answers; None without a cluster.
    pub cluster_connected: Option<bool>,
    pub policy_packets: Vec<PolicyPackets>,
}

impl Snapshot {
    /// A registry of its own, built per scrape: the kernel's counters are totals already.
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("wasmnet");
        let objects = Family::<KindLabel, Gauge>::default();
        for (kind, n) in &self.objects {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            objects.get_or_create(&KindLabel { kind }).set(n);
        }
        r.register("objects", "Objects by kind", objects);
        if let Some(up) = self.cluster_connected {
            let g = Gauge::<i64>::default();
            g.set(i64::from(up));
            let help = "1 when the cluster store (etcd) answers, else 0";
            r.register("cluster_connected", help, g);
        }
        let kinds: [PacketSeries; 3] = [
            (
                "policy_matched_packets",
                "Packets a policy's rules matched, per network",
                |p| p.matched,
            ),
            (
                "policy_dropped_packets",
                "Packets a policy's drop rules dropped, per network",
                |p| p.dropped,
            ),
            (
                "policy_would_drop_packets",
                "Packets an audit-mode policy would have dropped, per network",
                |p| p.would_drop,
            ),
        ];
        for (name, help, value) in kinds {
            let family = Family::<PolicyNetworkLabels, Counter>::default();
            for p in &self.policy_packets {
                let labels = PolicyNetworkLabels {
                    policy: p.policy.clone(),
                    network: p.network.clone(),
                };
                family.get_or_create(&labels).inc_by(value(p));
            }
            r.register(name, help, family);
        }
        r
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// `fut`, timed as operation `operation` (with its result).
pub async fn timed<T, E>(
    operation: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let out = fut.await;
    let labels = OpLabels {
        operation,
        result: result_of(&out),
    };
    get()
        .operations
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    out
}

/// A policy call, timed (by the policy's name, not its id: what an operator reads).
pub fn policy_call<T, E>(
    policy: &str,
    function: &'static str,
    call: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let out = call();
    let labels = PolicyLabels {
        policy: policy.to_string(),
        function,
        result: result_of(&out),
    };
    get()
        .policy_calls
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    out
}

/// One repair of kind `kind` by the reconciler.
pub fn repaired(kind: &'static str) {
    get()
        .reconcile_repairs
        .get_or_create(&KindLabel { kind })
        .inc();
}

pub fn result_of<T, E>(r: &Result<T, E>) -> &'static str {
    if r.is_ok() {
        "ok"
    } else {
        "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timed operation shows up with its result; the text ends as OpenMetrics requires.
    #[tokio::test]
    async fn operations_are_counted_by_result() {
        let _ = timed("unit_test_op", async { Ok::<_, ()>(()) }).await;
        let _ = timed("unit_test_op", async { Err::<(), _>(()) }).await;
        let text = get().encode(&Snapshot::default());
        let line = "wasmnet_operation_duration_seconds_count{operation=\"unit_test_op\",result=\"error\"} 1";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("result=\"ok\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
