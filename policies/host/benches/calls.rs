//! The cost of calling a policy (criterion; `cargo bench -p wasmnet-policy`):
//! - `classify` on a reused instance (what an endpoint joining costs), label isolation;
//! - `classify` on a fresh instance (a new store and instance each time: the cost after a trap);
//! - `evaluate` of 1,000 networks (the whole view, when networks or attachments change).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wasmnet_policy::{wit, Runtime};

fn module(rt: &Runtime, name: &str) -> wasmnet_policy::Module {
    let path = format!("{}/../dist/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    rt.load(&std::fs::read(path).unwrap()).unwrap()
}

fn network(i: usize) -> wit::Network {
    wit::Network {
        id: format!("{i:064x}"),
        name: format!("net{i}"),
        driver: "bridge".into(),
        internal: false,
        labels: vec![],
        options: vec![],
        subnets: vec![format!("10.{}.{}.0/24", i / 256, i % 256)],
    }
}

fn endpoint() -> wit::Endpoint {
    wit::Endpoint {
        id: "e".repeat(64),
        network_id: format!("{:064x}", 0),
        sandbox_id: "s".repeat(64),
        sandbox_name: "web-1".into(),
        interface: "eth0".into(),
        labels: vec![wit::Label {
            key: "tier".into(),
            value: "web".into(),
        }],
        ipv4: Some("10.0.0.2".into()),
        ipv6: None,
        mac: "02:42:0a:00:00:02".into(),
        ports: vec![],
    }
}

fn calls(c: &mut Criterion) {
    let rt = Runtime::new(Default::default(), None).unwrap();
    let m = module(&rt, "label-isolation");
    let (e, n) = (endpoint(), network(0));
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("classify, reused instance", |b| {
        b.iter(|| m.classify(&e, &n).unwrap())
    });
    g.bench_function("classify, fresh instance", |b| {
        b.iter(|| m.classify_fresh(&e, &n).unwrap())
    });
    let nets: Vec<wit::Network> = (0..1000).map(network).collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("evaluate, 1000 networks", |b| {
        b.iter(|| m.evaluate(&nets).unwrap())
    });
    g.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
