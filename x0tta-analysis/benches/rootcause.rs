//! Root-cause ranking on a 1,000-node graph (goal ≤ 10 ms), against the "earliest alarm"
//! baseline over the same nodes in the same run.
//!
//! `cargo bench -p x0tta-analysis --bench rootcause`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use x0tta_analysis::rootcause::{NodeEvidence, RootCause, earliest_alarm};
use x0tta_core::AnomalyKind;

/// `n` nodes, ~`degree` neighbours each; every node carries a probability for every kind and
/// a fifth of them alarmed (deterministic).
fn world(n: usize, degree: usize) -> (Vec<Vec<usize>>, Vec<NodeEvidence>) {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut nb = vec![Vec::new(); n];
    for v in 0..n {
        for _ in 0..degree / 2 {
            let u = (next() % n as u64) as usize;
            if u != v && !nb[v].contains(&u) {
                nb[v].push(u);
                nb[u].push(v);
            }
        }
    }
    let ev = (0..n)
        .map(|_| {
            let total = (next() % 1000) as f32 / 1000.0;
            let share = total / AnomalyKind::ALL.len() as f32;
            NodeEvidence {
                kinds: AnomalyKind::ALL.iter().map(|k| (*k, share)).collect(),
                onset: (next() % 5 == 0).then(|| (next() % 10_000) as f64 / 1000.0),
            }
        })
        .collect();
    (nb, ev)
}

fn bench(c: &mut Criterion) {
    let (nb, ev) = world(1000, 8);
    let onsets: Vec<Option<(f64, f64)>> = ev.iter().map(|e| e.onset.map(|t| (t, 1.0))).collect();
    let ranker = RootCause::new();
    let mut g = c.benchmark_group("rootcause_1000_nodes");
    g.bench_function("earliest_alarm_baseline", |b| {
        b.iter(|| black_box(earliest_alarm(black_box(&onsets))));
    });
    g.bench_function("rank_top3", |b| {
        b.iter(|| black_box(ranker.rank(black_box(&nb), black_box(&ev), 3).unwrap()));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
