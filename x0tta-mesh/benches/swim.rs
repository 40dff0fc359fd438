//! The failure detector's hot paths: answering a ping, taking an ack, a protocol period with
//! 1,000 peers, and the neighbour table — beside a baseline in the same run (encoding one
//! SWIM message, which every probe does at least once).
//!
//! `cargo bench -p x0tta-mesh --bench swim`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::time::Instant;
use x0tta_core::NodeId;
use x0tta_mesh::swim::{Swim, SwimConfig, SwimMessage, SwimOutput};

fn swim_with(peers: usize) -> (Swim, Vec<NodeId>, Instant) {
    let now = Instant::now();
    let mut s = Swim::new(NodeId::new("me").unwrap(), SwimConfig::default(), 7);
    let ids: Vec<NodeId> = (0..peers)
        .map(|i| NodeId::new(format!("12D3KooWpeer{i:06}")).unwrap())
        .collect();
    for id in &ids {
        s.add_peer(id.clone(), now);
    }
    while s.poll_output().is_some() {}
    (s, ids, now)
}

fn bench(c: &mut Criterion) {
    let ping = SwimMessage::Ping {
        seq: 42,
        sent_at_ms: 1_700_000_000_000,
    };
    c.bench_function("baseline/encode one swim message", |b| {
        b.iter(|| black_box(&ping).encode())
    });
    let bytes = ping.encode();
    c.bench_function("swim/decode a ping", |b| {
        b.iter(|| SwimMessage::decode(black_box(&bytes)).unwrap())
    });

    let (mut s, ids, now) = swim_with(1000);
    let from = ids[17].clone();
    c.bench_function("swim/answer a ping (1,000 peers)", |b| {
        b.iter(|| {
            s.on_message(from.clone(), ping.clone(), now, 1_700_000_000_000);
            black_box(s.poll_output())
        })
    });

    c.bench_function(
        "swim/one protocol period: probe sent, ack taken (1,000 peers)",
        |b| {
            let (mut s, _, t0) = swim_with(1000);
            let mut t = t0;
            b.iter(|| {
                t += Duration::from_millis(200);
                s.tick(t, 1_700_000_000_000);
                while let Some(out) = s.poll_output() {
                    if let SwimOutput::Send {
                        to,
                        msg: SwimMessage::Ping { seq, .. },
                    } = out
                    {
                        let ack = SwimMessage::Ack {
                            seq,
                            peer_time_ms: 1_700_000_000_000,
                        };
                        s.on_message(to, ack, t + Duration::from_millis(1), 1_700_000_000_001);
                    }
                }
            })
        },
    );

    let (s, _, _) = swim_with(1000);
    c.bench_function("swim/neighbour table (1,000 peers)", |b| {
        b.iter(|| black_box(s.neighbours()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
