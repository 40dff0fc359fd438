//! Cost per point of the streaming detectors, and of NAB's scoring, against a baseline in the
//! same run: one exponentially weighted mean and variance update (what any streaming detector
//! does at least once per point).
//!
//! `cargo bench -p x0tta-analysis --bench nab`
#![allow(clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use x0tta_analysis::detectors::{self, StreamingDetector};
use x0tta_analysis::nab::{self, Corpus, Profile, Series};

const N: usize = 10_000;

fn series(seed: u64, n: usize) -> Vec<f64> {
    // A daily-ish cycle, noise from a small LCG, and a level shift: deterministic, no I/O.
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let level = if i > n * 3 / 4 { 5.0 } else { 0.0 };
            (i as f64 / 48.0).sin() * 3.0 + noise + level
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let values = series(1, N);
    let ts: Vec<i64> = (0..N as i64).collect();
    let mut g = c.benchmark_group("detector_per_point");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("baseline_ewma", |b| {
        b.iter(|| {
            let (mut m, mut v) = (0.0f64, 0.0f64);
            for x in black_box(&values) {
                let d = x - m;
                m += 0.01 * d;
                v = 0.99 * (v + 0.01 * d * d);
            }
            (m, v)
        })
    });
    for name in detectors::NAMES {
        let make = detectors::by_name(name).expect("a shipped detector");
        g.bench_with_input(BenchmarkId::new("detector", name), &values, |b, values| {
            b.iter(|| {
                let mut d: Box<dyn StreamingDetector> = make();
                d.expect_range(-5.0, 10.0);
                let mut last = 0.0;
                for (t, x) in ts.iter().zip(values) {
                    last = d.score(*t, *x);
                }
                last
            })
        });
    }
    g.finish();

    // Scoring: 20 series of 10,000 points with 2 windows each, all three profiles.
    let corpus = Corpus {
        series: (0..20)
            .map(|k| {
                let v = series(k, N);
                Series::from_points(
                    &format!("s{k}.csv"),
                    (0..N as i64).zip(v).collect(),
                    &[(4_000, 4_500), (7_500, 8_000)],
                )
                .expect("valid windows")
            })
            .collect(),
    };
    let scores: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            detectors::run(
                detectors::by_name("windowedGaussian").expect("shipped"),
                None,
                &s.timestamps,
                &s.values,
            )
        })
        .collect();
    let mut g = c.benchmark_group("nab_scoring");
    g.sample_size(10);
    g.throughput(Throughput::Elements(corpus.points() as u64));
    g.bench_function("evaluate_200k_points_standard", |b| {
        b.iter(|| nab::evaluate(&corpus, &scores, &Profile::standard()).normalized)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
