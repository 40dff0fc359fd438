//! The search index: recall of the HNSW graph against exact search, the exact segment and its
//! merge into the graph (same answers before and after, in the foreground and background),
//! the persisted graph (a reopen loads it, nothing is rebuilt; a damaged or foreign one is
//! refused), every filter, and the score parts of a hit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use x0tta_core::*;
use x0tta_knowledge::{
    BenchIndex, Fusion, KnowledgeConfig, LexicalEmbedder, RedbKnowledge, VectorIndexConfig,
    exact_top_k,
};

/// splitmix64: a seeded generator, so every run sees the same vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

const WORDS: [&str; 16] = [
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
    "volume",
    "segfault",
    "quota",
    "drift",
];

fn incident(i: u64) -> Incident {
    let note = (0..5)
        .map(|k| WORDS[((i * 7 + k * 5 + i / 16) % 16) as usize])
        .collect::<Vec<_>>()
        .join(" ");
    Incident {
        node: NodeId::new(format!("n{}", i % 3)).unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i),
        observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::ALL[(i % 4) as usize],
            Severity::High,
            0.9,
            Subject::Service(format!("svc{}", i % 11)),
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
        resolution: if i.is_multiple_of(5) {
            Resolution::Healed
        } else {
            Resolution::Failed
        },
    }
}

fn config(exact_segment: usize) -> KnowledgeConfig {
    KnowledgeConfig {
        vectors: VectorIndexConfig {
            exact_segment,
            ..VectorIndexConfig::default()
        },
        ..KnowledgeConfig::with_retention(10_000)
    }
}

async fn open(path: &std::path::Path, exact_segment: usize) -> RedbKnowledge {
    RedbKnowledge::open(path, config(exact_segment))
        .unwrap()
        .with_embedder(Arc::new(LexicalEmbedder))
        .await
        .unwrap()
}

async fn fill(store: &RedbKnowledge, n: u64) -> Vec<Incident> {
    let all: Vec<Incident> = (0..n).map(incident).collect();
    store
        .merge_state(&to_dag_cbor(&all).unwrap())
        .await
        .unwrap();
    all
}

/// Ids and scores of a few queries, text and vector.
async fn answers(store: &RedbKnowledge) -> Vec<Vec<(ContentId, f64)>> {
    let mut out = Vec::new();
    for text in [
        "connection refused",
        "heap limit quota",
        "segfault drift volume",
    ] {
        let mut q = SearchQuery::text(text);
        q.limit = 20;
        out.push(
            store
                .search(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.id, h.score))
                .collect(),
        );
    }
    out
}

async fn wait_for(store: &RedbKnowledge, what: impl Fn(&x0tta_knowledge::IndexStats) -> bool) {
    let start = Instant::now();
    while !what(&store.index_stats()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "index never reached the state: {:?}",
            store.index_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn graph_recall_against_exact_search_is_at_least_0_9() {
    // Random unit vectors are the hard case for a graph (no clusters to follow).
    const N: usize = 2000;
    const DIM: usize = 384;
    let mut rng = Rng(7);
    let vectors: Vec<Vec<f32>> = (0..N).map(|_| rng.unit(DIM)).collect();
    // ef 64, a quarter of the default, so the walk is far from visiting every point.
    let index = BenchIndex::new(VectorIndexConfig {
        exact_segment: 64,
        ef_search: 64,
        ..VectorIndexConfig::default()
    });
    for (i, v) in vectors.iter().enumerate() {
        let inc = incident(i as u64);
        index.insert(i as u64, inc.content_id().unwrap(), &inc, Some(v));
    }
    index.merge_now();
    let stats = index.stats();
    assert_eq!((stats.exact_segment, stats.graph_vectors), (0, N));
    let vector_only = Fusion {
        bm25: 0.0,
        ..Fusion::default()
    };
    let (mut found, mut wanted) = (0usize, 0usize);
    for _ in 0..50 {
        let q = rng.unit(DIM);
        let exact: Vec<u64> = exact_top_k(&vectors, &q, 10)
            .into_iter()
            .map(|(i, _)| i as u64)
            .collect();
        let mut query = SearchQuery::text("");
        query.vector = Some(q);
        query.limit = 10;
        let got: Vec<u64> = index
            .search(&query, &vector_only)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        found += got.iter().filter(|s| exact.contains(s)).count();
        wanted += exact.len();
    }
    let recall = found as f64 / wanted as f64;
    println!("recall@10 {recall:.3} over {N} random unit vectors");
    assert!(recall >= 0.9, "recall@10 {recall:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_the_exact_segment_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    // A bound above the data: nothing merges until asked.
    let store = open(&dir.path().join("k.redb"), 10_000).await;
    fill(&store, 300).await;
    let s = store.index_stats();
    assert_eq!((s.exact_segment, s.graph_vectors, s.merges), (300, 0, 0));
    let before = answers(&store).await;
    let s = store.flush_index().await.unwrap();
    assert_eq!((s.exact_segment, s.graph_vectors, s.merges), (0, 300, 1));
    assert_eq!(answers(&store).await, before);
    // New records land in the segment again and are searched beside the graph.
    store.record(&incident(5000)).await.unwrap();
    assert_eq!(store.index_stats().exact_segment, 1);
    let hits = store
        .search(&SearchQuery::text(incident(5000).to_text()))
        .await
        .unwrap();
    assert_eq!(hits[0].incident, incident(5000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_merge_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let exact = open(&dir.path().join("exact.redb"), 10_000).await;
    let merged = open(&dir.path().join("merged.redb"), 64).await;
    fill(&exact, 300).await;
    fill(&merged, 300).await;
    wait_for(&merged, |s| s.exact_segment < 64 && s.saves >= 1).await;
    assert!(merged.index_stats().graph_vectors >= 300 - 64);
    assert_eq!(answers(&merged).await, answers(&exact).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_loads_the_saved_graph_instead_of_rebuilding_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.redb");
    let before = {
        let store = open(&path, 10_000).await;
        fill(&store, 300).await;
        let s = store.flush_index().await.unwrap();
        assert_eq!((s.graph_vectors, s.saves, s.graph_loaded), (300, 1, false));
        answers(&store).await
    };
    // Wait until the previous store's thread is gone (it holds no lock on the file, but may
    // still hold the index for a moment).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let store = open(&path, 10_000).await;
    let s = store.index_stats();
    assert!(s.graph_loaded, "{s:?}");
    assert_eq!(
        (s.graph_vectors, s.exact_segment, s.graph_inserts, s.merges),
        (300, 0, 0, 0),
        "nothing rebuilt or re-merged"
    );
    assert_eq!(answers(&store).await, before);
    drop(store);

    // A damaged graph file is refused; the store opens and rebuilds in the background.
    let side = dir.path().join("k.redb.hnsw");
    let data = std::fs::read_dir(&side)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".hnsw.data"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, bytes).unwrap();
    let store = open(&path, 64).await;
    assert!(!store.index_stats().graph_loaded);
    assert_eq!(answers(&store).await, before);
    wait_for(&store, |s| s.exact_segment < 64 && s.saves >= 1).await;
    drop(store);

    // A graph saved by another store (other vectors under the same sequence numbers) is
    // refused too.
    let other = dir.path().join("other.redb");
    {
        let store = open(&other, 10_000).await;
        let shifted: Vec<Incident> = (1000..1300).map(incident).collect();
        store
            .merge_state(&to_dag_cbor(&shifted).unwrap())
            .await
            .unwrap();
        store.flush_index().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::remove_dir_all(&side).unwrap();
    std::fs::rename(dir.path().join("other.redb.hnsw"), &side).unwrap();
    let store = open(&path, 10_000).await;
    assert!(!store.index_stats().graph_loaded);
    assert_eq!(answers(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_incidents_leave_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbKnowledge::open(
        dir.path().join("k.redb"),
        KnowledgeConfig {
            vectors: VectorIndexConfig {
                exact_segment: 10_000,
                ..VectorIndexConfig::default()
            },
            ..KnowledgeConfig::with_retention(100)
        },
    )
    .unwrap()
    .with_embedder(Arc::new(LexicalEmbedder))
    .await
    .unwrap();
    let first = fill(&store, 100).await;
    store.flush_index().await.unwrap();
    let all: Vec<Incident> = (100..150).map(incident).collect();
    store
        .merge_state(&to_dag_cbor(&all).unwrap())
        .await
        .unwrap();
    let s = store.index_stats();
    assert_eq!((s.incidents, s.graph_vectors, s.tombstones), (100, 50, 50));
    let gone: Vec<ContentId> = first[..50]
        .iter()
        .map(|i| i.content_id().unwrap())
        .collect();
    for text in ["connection refused", "heap limit quota", "disk full"] {
        let mut q = SearchQuery::text(text);
        q.limit = 100;
        for h in store.search(&q).await.unwrap() {
            assert!(!gone.contains(&h.id), "evicted incident returned");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_narrows_both_rankings() {
    let dir = tempfile::tempdir().unwrap();
    // Half the vectors in the graph, half in the exact segment.
    let store = open(&dir.path().join("k.redb"), 10_000).await;
    let first = fill(&store, 150).await;
    store.flush_index().await.unwrap();
    let rest: Vec<Incident> = (150..300).map(incident).collect();
    store
        .merge_state(&to_dag_cbor(&rest).unwrap())
        .await
        .unwrap();
    let all: Vec<Incident> = first.into_iter().chain(rest).collect();

    let base = {
        let mut q = SearchQuery::text("connection refused timeout");
        q.limit = 1000;
        q
    };
    let t = |i: u64| Timestamp::from_millis(1_700_000_000_000 + i);
    type Pass = Box<dyn Fn(&Incident) -> bool>;
    let cases: Vec<(&str, SearchQuery, Pass)> = vec![
        (
            "kind",
            SearchQuery {
                kind: Some(AnomalyKind::CpuOverload),
                ..base.clone()
            },
            Box::new(|i: &Incident| i.anomaly.kind == AnomalyKind::CpuOverload),
        ),
        (
            "since",
            SearchQuery {
                filter: SearchFilter {
                    since: Some(t(250)),
                    ..SearchFilter::default()
                },
                ..base.clone()
            },
            Box::new(move |i: &Incident| i.detected_at >= t(250)),
        ),
        (
            "until",
            SearchQuery {
                filter: SearchFilter {
                    until: Some(t(40)),
                    ..SearchFilter::default()
                },
                ..base.clone()
            },
            Box::new(move |i: &Incident| i.detected_at < t(40)),
        ),
        (
            "node",
            SearchQuery {
                filter: SearchFilter {
                    node: Some(NodeId::new("n1").unwrap()),
                    ..SearchFilter::default()
                },
                ..base.clone()
            },
            Box::new(|i: &Incident| i.node.as_str() == "n1"),
        ),
        (
            "outcome",
            SearchQuery {
                filter: SearchFilter {
                    resolution: Some(Resolution::Healed),
                    ..SearchFilter::default()
                },
                ..base.clone()
            },
            Box::new(|i: &Incident| i.resolution == Resolution::Healed),
        ),
    ];
    let unfiltered = store.search(&base).await.unwrap().len();
    for (name, q, pass) in cases {
        let want = all.iter().filter(|i| pass(i)).count();
        // Text only, vector only, and fused: each ranking applies the filter itself.
        for fusion in [
            Fusion {
                vector: 0.0,
                ..Fusion::default()
            },
            Fusion {
                bm25: 0.0,
                ..Fusion::default()
            },
            Fusion::default(),
        ] {
            let s = store.clone().with_fusion(fusion);
            let mut small = q.clone();
            small.limit = 5;
            let hits = s.search(&small).await.unwrap();
            assert_eq!(
                hits.len(),
                5.min(want),
                "{name} {fusion:?}: a page is filled"
            );
            assert!(hits.iter().all(|h| pass(&h.incident)), "{name} {fusion:?}");
        }
        let hits = store.search(&q).await.unwrap();
        assert!(hits.iter().all(|h| pass(&h.incident)), "{name}");
        assert!(
            !hits.is_empty() && hits.len() < unfiltered,
            "{name} narrows"
        );
        // Every matching incident shares "connection" or a vector neighbour: all are found.
        assert_eq!(hits.len(), want.min(q.limit), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_carry_both_score_parts_and_the_plan_that_worked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("k.redb"), 10_000).await;
    let mut healed = incident(1);
    healed.resolution = Resolution::Healed;
    healed.plan = Some(RecoveryPlan {
        template: "restart".into(),
        anomaly: healed.anomaly.clone(),
        steps: vec![],
        success_probability: 0.9,
        history: PlanStats::default(),
        evidence: vec![],
        score: 1.0,
    });
    store.record(&healed).await.unwrap();
    fill(&store, 50).await;
    let hits = store
        .search_scored(&SearchQuery::text(healed.to_text()))
        .await
        .unwrap();
    let top = &hits[0];
    assert_eq!(top.hit.incident, healed);
    let (b, v) = (top.bm25.unwrap(), top.vector.unwrap());
    assert_eq!((b.rank, v.rank), (1, 1));
    assert!(b.score > 0.0 && v.score > 0.99, "{b:?} {v:?}");
    let f = Fusion::default();
    assert!((top.hit.score - (f.bm25 / (f.k + 1.0) + f.vector / (f.k + 1.0))).abs() < 1e-12);
    assert_eq!(top.plan_that_worked().unwrap().template, "restart");
    assert!(hits[1..].iter().all(|h| h.plan_that_worked().is_none()));

    // Bad query vectors are typed errors.
    let mut q = SearchQuery::text("x");
    q.vector = Some(vec![f32::NAN; 384]);
    assert!(matches!(
        store.search(&q).await,
        Err(KnowledgeError::Invalid(_))
    ));
    // A bad index configuration is refused at open.
    let bad = KnowledgeConfig {
        vectors: VectorIndexConfig {
            m: 1000,
            ..VectorIndexConfig::default()
        },
        ..KnowledgeConfig::default()
    };
    assert!(RedbKnowledge::open(dir.path().join("bad.redb"), bad).is_err());
}

/// Counts how the store calls its embedder (delegating to the lexical fallback).
#[derive(Default)]
struct Counting {
    single: std::sync::atomic::AtomicUsize,
    batches: std::sync::Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl Embedder for Counting {
    fn dimensions(&self) -> usize {
        LexicalEmbedder.dimensions()
    }
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.single
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        LexicalEmbedder.embed(text).await
    }
    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.batches.lock().unwrap().push(texts.len());
        Ok(texts.iter().map(|t| LexicalEmbedder.embed_now(t)).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_incidents_are_embedded_in_one_batch_and_queries_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting::default());
    let store = open(&dir.path().join("k.redb"), 10_000)
        .await
        .with_embedder(counting.clone())
        .await
        .unwrap();
    let all: Vec<Incident> = (0..300).map(incident).collect();
    store
        .merge_state(&to_dag_cbor(&all).unwrap())
        .await
        .unwrap();
    store.record(&incident(1_000)).await.unwrap();
    assert_eq!(*counting.batches.lock().unwrap(), vec![300, 1]);
    assert_eq!(
        counting.single.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A query is one text: `embed` (where an embedder keeps its query cache).
    let hits = store
        .search(&SearchQuery {
            text: all[7].to_text(),
            vector: None,
            kind: None,
            limit: 3,
            filter: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(hits[0].id, all[7].content_id().unwrap());
    assert_eq!(
        counting.single.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Backfill: a second store filled without an embedder gets one batch per 256 incidents.
    let other = RedbKnowledge::open(dir.path().join("other.redb"), config(10_000)).unwrap();
    other
        .merge_state(&to_dag_cbor(&all).unwrap())
        .await
        .unwrap();
    let counting = Arc::new(Counting::default());
    let _other = other.with_embedder(counting.clone()).await.unwrap();
    assert_eq!(*counting.batches.lock().unwrap(), vec![256, 44]);
}
