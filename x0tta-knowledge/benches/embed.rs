//! Embedding throughput (docs/s, through `Throughput::Elements`), indexing rate with and
//! without embedding, and search latency including the MiniLM embedding of the query, with the
//! lexical fallback embedder measured in the same run as the baseline.
//!
//! Needs the model: `X0TTA_MINILM_DIR=… cargo bench -p x0tta-knowledge --features minilm
//! --bench embed` (see `MiniLmEmbedder::locate`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use x0tta_core::*;
use x0tta_knowledge::{
    KnowledgeConfig, LexicalEmbedder, MiniLmConfig, MiniLmEmbedder, RedbKnowledge,
};

const NOTES: [&str; 12] = [
    "connection refused on port 8080",
    "resident set above the 2 GiB limit",
    "filesystem /var at 97% capacity",
    "request latency p99 over 800 ms",
    "packet loss 12% on the wireguard tunnel",
    "no heartbeat for 30 s",
    "peer clock 2.3 s ahead of ours",
    "worker threads pinned at 100% utilisation",
    "OOM killer terminated the cache",
    "TLS handshake timeouts from three peers",
    "WAL segments accumulating, archiving stalled",
    "service restarted five times in ten minutes",
];

fn incident(i: u64) -> Incident {
    let note = format!(
        "{}; {}",
        NOTES[(i % 12) as usize],
        NOTES[((i * 7 + 3) % 12) as usize]
    );
    Incident {
        node: NodeId::new("bench").unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::ALL[(i % 9) as usize],
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
    let Some(dir) = MiniLmEmbedder::locate().expect("X0TTA_MINILM_DIR holds a model") else {
        eprintln!("SKIPPED: set X0TTA_MINILM_DIR to the all-MiniLM-L6-v2 model directory");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // No query cache: every measured embedding is a forward pass.
    let minilm = MiniLmEmbedder::load_with(&dir, MiniLmConfig::new().with_cache_capacity(0))
        .expect("model loads");
    let lexical = LexicalEmbedder;
    let sentence = "high cpu usage on service api-gateway: worker threads pinned at 100%";
    let texts: Vec<String> = (0..32).map(|i| incident(i).to_text()).collect();
    let batch: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut g = c.benchmark_group("embed one sentence");
    g.throughput(Throughput::Elements(1));
    g.bench_function("baseline: lexical fallback", |b| {
        b.iter(|| lexical.embed_now(black_box(sentence)))
    });
    g.bench_function("MiniLM (embed_batch of 1, off the executor)", |b| {
        b.to_async(&rt)
            .iter(|| async { minilm.embed_batch(&[black_box(sentence)]).await.unwrap() })
    });
    g.bench_function("MiniLM (embed_batch_blocking of 1)", |b| {
        b.iter(|| minilm.embed_batch_blocking(&[black_box(sentence)]).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("embed 32 incidents");
    g.throughput(Throughput::Elements(32));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("baseline: lexical fallback", |b| {
        b.iter(|| {
            batch
                .iter()
                .map(|t| lexical.embed_now(black_box(t)))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("MiniLM batched (embed_batch)", |b| {
        b.to_async(&rt)
            .iter(|| async { minilm.embed_batch(black_box(&batch)).await.unwrap() })
    });
    g.bench_function("MiniLM one by one", |b| {
        b.to_async(&rt).iter(|| async {
            let mut out = Vec::with_capacity(batch.len());
            for t in &batch {
                out.push(minilm.embed_batch(&[black_box(t)]).await.unwrap());
            }
            out
        })
    });
    g.finish();

    // Indexing rate: one durable `record` each, without an embedder, with the fallback, with
    // MiniLM (the embedding is part of the write).
    let tmp = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        RedbKnowledge::open(
            tmp.path().join(name),
            KnowledgeConfig::with_retention(100_000),
        )
        .unwrap()
    };
    let stores = [
        ("baseline: no embedder", open("plain.redb")),
        (
            "lexical fallback",
            rt.block_on(open("lexical.redb").with_embedder(Arc::new(lexical)))
                .unwrap(),
        ),
        (
            "MiniLM",
            rt.block_on(open("minilm.redb").with_embedder(Arc::new(minilm.clone())))
                .unwrap(),
        ),
    ];
    let mut g = c.benchmark_group("record one incident");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    let mut i = 1_000_000u64;
    for (name, store) in &stores {
        g.bench_function(*name, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    incident(i)
                },
                |inc| rt.block_on(store.record(&inc)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    drop(stores);

    // Search over the seed's 1,000 retained incidents, the query embedded each time.
    let all: Vec<Incident> = (0..1000).map(incident).collect();
    let state = to_dag_cbor(&all).unwrap();
    let searchers = [
        ("baseline: BM25 only", open("s-plain.redb")),
        ("lexical fallback", open("s-lexical.redb")),
        ("MiniLM", open("s-minilm.redb")),
    ];
    for (_, s) in &searchers {
        rt.block_on(s.merge_state(&state)).unwrap();
    }
    let [(n0, plain), (n1, lex), (n2, mini)] = searchers;
    let lex = rt.block_on(lex.with_embedder(Arc::new(lexical))).unwrap();
    // Backfills 1,000 vectors (a forward pass each).
    let mini = rt
        .block_on(mini.with_embedder(Arc::new(minilm.clone())))
        .unwrap();
    let queries: Vec<String> = (0..64)
        .map(|k| format!("processor saturated on svc{k}, requests piling up"))
        .collect();
    let mut g = c.benchmark_group("search 1000 incidents");
    for (name, store) in [(n0, &plain), (n1, &lex), (n2, &mini)] {
        let mut k = 0usize;
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                k = (k + 1) % queries.len();
                let q = SearchQuery::text(queries[k].clone());
                async move { store.search(&q).await.unwrap() }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
