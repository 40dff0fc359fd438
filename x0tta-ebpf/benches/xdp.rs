//! Userspace costs of driving the XDP guard, on a veth pair in network namespaces (needs
//! root, clang and iproute2; prints SKIPPED otherwise): one counter lookup (the baseline: one
//! `bpf()` call), the interface totals, a block + unblock, listing 10,000 tracked sources,
//! and the sensor's read over them.
//!
//! `cargo bench -p x0tta-ebpf --bench xdp`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use x0tta_core::{Policy, Sensor};
use x0tta_ebpf::{XdpGuard, XdpSensor};

const SOURCES: u32 = 10_000;

fn bench(c: &mut Criterion) {
    if let Some(why) = lab::missing() {
        eprintln!("\n*** SKIPPED xdp map benchmarks: needs {why} ***\n");
        return;
    }
    let lab = lab::Lab::new("m");
    let guard = Arc::new(lab.in_a(|| XdpGuard::attach(lab::RX_IF)).expect("attach"));
    // 10,000 distinct sources in 10.78.0.0/16 and above.
    let sent = lab::spoof(
        &lab,
        (0..SOURCES).map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 78, 0, 0)) + i)),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let tracked = guard.sources().unwrap().len();
    assert_eq!(tracked as u64, sent, "every spoofed source tracked");
    let one: IpAddr = Ipv4Addr::new(10, 78, 0, 7).into();
    let other: IpAddr = Ipv4Addr::new(10, 79, 9, 9).into();

    let mut g = c.benchmark_group("xdp_maps");
    g.bench_function("source_lookup", |b| b.iter(|| guard.source(one).unwrap()));
    g.bench_function("totals", |b| b.iter(|| guard.totals().unwrap()));
    g.bench_function("block_unblock", |b| {
        b.iter(|| {
            guard.block(other).unwrap();
            guard.unblock(other).unwrap()
        })
    });
    g.sample_size(20);
    g.bench_function("sources_10k", |b| b.iter(|| guard.sources().unwrap().len()));
    let sensor = XdpSensor::new(vec![guard.clone()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let policy = Policy::default();
    g.bench_function("sensor_read_10k", |b| {
        b.to_async(&rt)
            .iter(|| async { sensor.read(&policy).await.unwrap().metrics.len() })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
