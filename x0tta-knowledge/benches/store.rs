//! Durable write rate and search latency of the redb store, beside baselines measured in the
//! same run (figures in docs/PERFORMANCE.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use x0tta_core::*;
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};

const WORDS: [&str; 12] = [
    "connection",
    "refused",
    "heap",
    "limit",
    "disk",
    "full",
    "timeout",
    "signal",
    "restart",
    "latency",
    "packet",
    "loss",
];

fn incident(i: u64) -> Incident {
    let kind = AnomalyKind::ALL[(i % 9) as usize];
    let note = (0..6)
        .map(|k| WORDS[((i * 7 + k * 5) % 12) as usize])
        .collect::<Vec<_>>()
        .join(" ");
    Incident {
        node: NodeId::new("bench").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            kind,
            Severity::High,
            0.9,
            Subject::Service(format!("svc{}", i % 50)),
            "threshold",
        )
        .with_evidence(Evidence {
            signal: "probe".into(),
            value: None,
            reference: None,
            note: note.clone(),
        }),
        root_cause: Some(note),
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = RedbKnowledge::open(
        dir.path().join("bench.redb"),
        KnowledgeConfig::with_retention(10_000),
    )
    .unwrap();

    let mut g = c.benchmark_group("write");
    g.sample_size(30);
    let mut i = 0u64;
    g.bench_function("baseline: encode + CID", |b| {
        b.iter(|| black_box(incident(black_box(7))).content_id().unwrap())
    });
    g.bench_function("record one incident (durable commit)", |b| {
        b.iter_batched(
            || {
                i += 1;
                incident(1_000_000 + i)
            },
            |inc| rt.block_on(store.record(&inc)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("merge 100 incidents (one durable commit)", |b| {
        b.iter_batched(
            || {
                let batch: Vec<Incident> = (0..100)
                    .map(|_| {
                        i += 1;
                        incident(2_000_000 + i)
                    })
                    .collect();
                to_dag_cbor(&batch).unwrap()
            },
            |state| rt.block_on(store.merge_state(&state)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Tiers: the same read served by the hot LRU and by redb (hot tier off).
    let tiers_dir = tempfile::tempdir().unwrap();
    let thousand: Vec<Incident> = (0..1_000).map(incident).collect();
    let open = |name: &str, hot_cache: usize| {
        let s = RedbKnowledge::open(
            tiers_dir.path().join(name),
            KnowledgeConfig {
                hot_cache,
                ..KnowledgeConfig::default()
            },
        )
        .unwrap();
        rt.block_on(s.merge_state(&to_dag_cbor(&thousand).unwrap()))
            .unwrap();
        s
    };
    let (hot, warm) = (open("hot.redb", 256), open("warm.redb", 0));
    let id = thousand[7].content_id().unwrap();
    let mut g = c.benchmark_group("tiers");
    g.bench_function("baseline: get, warm tier (redb read + decode)", |b| {
        b.iter(|| rt.block_on(warm.get(black_box(&id))).unwrap())
    });
    g.bench_function("get, hot tier (LRU hit)", |b| {
        b.iter(|| rt.block_on(hot.get(black_box(&id))).unwrap())
    });
    g.finish();

    let dir = tempfile::tempdir().unwrap();
    let big = RedbKnowledge::open(
        dir.path().join("search.redb"),
        KnowledgeConfig {
            hot_cache: 0,
            ..KnowledgeConfig::with_retention(10_000)
        },
    )
    .unwrap();
    let all: Vec<Incident> = (0..10_000).map(incident).collect();
    rt.block_on(big.merge_state(&to_dag_cbor(&all).unwrap()))
        .unwrap();
    let q = SearchQuery {
        text: "connection refused timeout".into(),
        vector: None,
        kind: None,
        limit: 10,
        filter: Default::default(),
    };
    let mut g = c.benchmark_group("search");
    g.bench_function("baseline: get one incident by CID", |b| {
        let id = all[42].content_id().unwrap();
        b.iter(|| rt.block_on(big.get(black_box(&id))).unwrap())
    });
    g.bench_function("BM25 top-10 over 10,000 incidents", |b| {
        b.iter(|| rt.block_on(big.search(black_box(&q))).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
