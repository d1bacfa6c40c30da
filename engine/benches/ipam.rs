//! IPAM allocation in a /16 with 60,000 addresses taken: find the next free address, take it,
//! release it again (so every iteration sees the same state).
//! Run: `cargo bench -p wasmnet-engine --bench ipam`.

use criterion::{criterion_group, criterion_main, Criterion};
use wasmnet_engine::ipam::AddressSpace;
use wasmnet_engine::model::IpConfig;

fn bench(c: &mut Criterion) {
    let cfg = IpConfig {
        subnet: "10.20.0.0/16".parse().unwrap(),
        gateway: "10.20.0.1".parse().unwrap(),
        ip_range: None,
    };
    let mut space = AddressSpace::new(&cfg);
    for _ in 0..60_000 {
        let a = space.next_free().unwrap();
        space.take(a);
    }
    // Free a scattered few so the free set is fragmented, as after real churn.
    for i in (0..60_000u32).step_by(997) {
        space.release(
            std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 20, 0, 2)) + i).into(),
        );
    }
    c.bench_function("ipam allocate+release in /16 with 60k taken", |b| {
        b.iter(|| {
            let a = space.next_free().unwrap();
            space.take(a);
            space.release(std::hint::black_box(a));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
