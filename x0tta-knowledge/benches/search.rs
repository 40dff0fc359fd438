//! Hybrid search at 10,000 and 100,000 incidents (issue 5 item 3): indexing rate with and
//! without embedding, BM25 / vector / hybrid query latency p50/p99 with the query vector
//! given, beside baselines measured in the same run: exact brute force over the same vectors,
//! the `bm25` crate's `SearchEngine` over the same texts, `instant-distance` (10,000 only: it
//! has no incremental insert and builds slowly), and the whole store (redb) path.
//!
//! Data: every line of the loghub sample (`$X0TTA_LOGHUB`, default `../../shared/data/loghub`
//! from this crate) becomes an incident text (kind, service, severity, the log line,
//! outcome), shuffled and repeated to the size wanted; vectors are `LexicalEmbedder`'s (384-d)
//! of those texts, computed before the "without embedding" timings start. Queries are 200
//! held-out lines in the same form.
//!
//! `cargo bench -p x0tta-knowledge --bench search` prints the percentile table first, then
//! criterion's means. `X0TTA_BENCH_SIZES=10000` picks sizes; `X0TTA_BENCH_STORE=0` skips the
//! store path. Without `--bench` (cargo test) it runs once at 1,000 incidents.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use x0tta_core::*;
use x0tta_knowledge::{
    BenchIndex, Fusion, KnowledgeConfig, LexicalEmbedder, RedbKnowledge, VectorIndexConfig,
    exact_top_k,
};

const QUERIES: usize = 200;
const KINDS: usize = 9;
const RESOLUTIONS: [Resolution; 4] = [
    Resolution::Healed,
    Resolution::Failed,
    Resolution::NoPlan,
    Resolution::Escalated,
];

/// splitmix64, seeded: every run sees the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn loghub_dir() -> PathBuf {
    std::env::var_os("X0TTA_LOGHUB")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/loghub"))
}

/// (system, log line) for every line of every `<S>/<S>_2k.log_structured.csv`.
fn loghub_lines(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs: Vec<_> = dirs.flatten().filter(|e| e.path().is_dir()).collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let name = d.file_name().to_string_lossy().to_string();
        let Ok(mut r) =
            csv::Reader::from_path(d.path().join(format!("{name}_2k.log_structured.csv")))
        else {
            continue;
        };
        let Some(ci) = r
            .headers()
            .ok()
            .and_then(|h| h.iter().position(|x| x == "Content"))
        else {
            continue;
        };
        for rec in r.records().flatten() {
            out.push((
                name.to_lowercase(),
                rec.get(ci).unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

fn incident(i: usize, system: &str, line: &str, rng: &mut Rng) -> Incident {
    Incident {
        node: NodeId::new(format!("node-{}", rng.below(8))).unwrap(),
        detected_at: Timestamp::from_millis(1_700_000_000_000 + i as u64 * 1000),
        observation: ContentId::of_dag_cbor(&(i as u64).to_be_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::ALL[rng.below(KINDS)],
            Severity::High,
            0.9,
            Subject::Service(format!("{system}-{}", i % 97)),
            "log",
        )
        .with_evidence(Evidence {
            signal: "log".into(),
            value: None,
            reference: None,
            note: line.to_string(),
        }),
        root_cause: None,
        plan: None,
        report: None,
        resolution: RESOLUTIONS[rng.below(RESOLUTIONS.len())],
    }
}

struct Data {
    incidents: Vec<Incident>,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    queries: Vec<(String, Vec<f32>)>,
}

/// `n` incidents and `QUERIES` held-out queries from the loghub lines.
fn data(lines: &[(String, String)], n: usize) -> Data {
    let mut rng = Rng(42);
    let mut order: Vec<usize> = (0..lines.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let (held, pool) = order.split_at(QUERIES.min(order.len() / 10));
    let incidents: Vec<Incident> = (0..n)
        .map(|i| {
            let (s, l) = &lines[pool[i % pool.len()]];
            incident(i, s, l, &mut rng)
        })
        .collect();
    let texts: Vec<String> = incidents.iter().map(Incident::to_text).collect();
    let e = LexicalEmbedder;
    let vectors = texts.iter().map(|t| e.embed_now(t)).collect();
    let queries = held
        .iter()
        .enumerate()
        .map(|(k, i)| {
            let (s, l) = &lines[*i];
            let t = incident(n + k, s, l, &mut rng).to_text();
            let v = e.embed_now(&t);
            (t, v)
        })
        .collect();
    Data {
        incidents,
        texts,
        vectors,
        queries,
    }
}

/// Latencies in ms, and the number of distinct queries they cycle through.
struct Lat(Vec<f64>, usize);
fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}
impl Lat {
    fn pct(&self, p: f64) -> f64 {
        pct(&self.0, p)
    }
    /// p99 over queries of each query's fastest run: the cost of the query itself, without
    /// the scheduling noise of a shared 2-core machine.
    fn intrinsic_p99(&self) -> f64 {
        let q = self.1.max(1);
        let best: Vec<f64> = (0..q.min(self.0.len()))
            .map(|i| {
                self.0
                    .iter()
                    .skip(i)
                    .step_by(q)
                    .copied()
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        pct(&best, 0.99)
    }
    fn line(&self, what: &str) -> String {
        let mean = self.0.iter().sum::<f64>() / self.0.len() as f64;
        let rounds = self.0.len() / self.1.max(1);
        let best = if rounds > 1 {
            format!("  best-of-{rounds} p99 {:>7.3} ms", self.intrinsic_p99())
        } else {
            String::new()
        };
        format!(
            "{what:<58} p50 {:>8.3} ms  p99 {:>8.3} ms  mean {:>8.3} ms  (n={}){best}",
            self.pct(0.5),
            self.pct(0.99),
            mean,
            self.0.len()
        )
    }
}

/// Runs `f` over the queries `rounds` times, timing each call.
fn time(queries: usize, rounds: usize, mut f: impl FnMut(usize)) -> Lat {
    for q in 0..queries.min(20) {
        f(q); // warm up
    }
    let mut out = Vec::with_capacity(queries * rounds);
    for _ in 0..rounds {
        for q in 0..queries {
            let t = Instant::now();
            f(q);
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Lat(out, queries)
}

fn query(text: &str, vector: Option<&[f32]>) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        vector: vector.map(<[f32]>::to_vec),
        kind: None,
        limit: 10,
        filter: SearchFilter::default(),
    }
}

const BM25_ONLY: Fusion = Fusion {
    k: 60.0,
    bm25: 1.0,
    vector: 0.0,
};
const VECTOR_ONLY: Fusion = Fusion {
    k: 60.0,
    bm25: 0.0,
    vector: 1.0,
};

/// The tokenizer the store used with the `bm25` crate before this index.
#[derive(Default, Clone, Copy)]
struct Words;
impl bm25::Tokenizer for Words {
    fn tokenize(&self, text: &str) -> Vec<String> {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect()
    }
}

#[derive(Clone, Copy)]
struct Point<'a>(&'a [f32]);
impl instant_distance::Point for Point<'_> {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - self.0.iter().zip(other.0).map(|(a, b)| a * b).sum::<f32>()
    }
}

/// recall@10 of `got` against exact search, ties at the 10th distance counted as hits.
fn recall(d: &Data, mut got: impl FnMut(usize) -> Vec<f32>) -> f64 {
    let mut total = 0.0;
    for (q, (_, v)) in d.queries.iter().enumerate() {
        let exact = exact_top_k(&d.vectors, v, 10);
        let Some(kth) = exact.last().map(|e| e.1 - 1e-5) else {
            continue;
        };
        total += got(q).iter().take(10).filter(|s| **s >= kth).count() as f64 / exact.len() as f64;
    }
    total / d.queries.len() as f64
}

/// recall@10 of the index's vector ranking.
fn vector_recall(d: &Data, index: &BenchIndex) -> f64 {
    recall(d, |k| {
        let (t, v) = &d.queries[k];
        index
            .search(&query(t, Some(v)), &VECTOR_ONLY)
            .iter()
            .map(|(seq, _)| {
                d.vectors[*seq as usize]
                    .iter()
                    .zip(v)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    })
}

fn rate(n: usize, t: Duration) -> String {
    format!(
        "{:>9.0} docs/s ({n} in {:.2} s)",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64()
    )
}

struct Built {
    n: usize,
    d: Data,
    index: BenchIndex,
}

fn run_size(n: usize, lines: &[(String, String)], quick: bool) -> Built {
    println!("\n== {n} incidents ==");
    let d = data(lines, n);
    let rounds = if quick { 1 } else { 5 };

    // Indexing: text + given vectors (no embedding), then with embedding.
    let index = BenchIndex::new(VectorIndexConfig::default());
    let ids: Vec<ContentId> = (0..n as u64)
        .map(|i| ContentId::of_dag_cbor(&i.to_be_bytes()))
        .collect();
    let t = Instant::now();
    for (i, inc) in d.incidents.iter().enumerate() {
        index.insert(i as u64, ids[i], inc, Some(&d.vectors[i]));
    }
    println!(
        "{:<58} {}",
        "index: text + given vectors (no embedding)",
        rate(n, t.elapsed())
    );
    {
        let e = LexicalEmbedder;
        let with = BenchIndex::new(VectorIndexConfig::default());
        let t = Instant::now();
        for (i, inc) in d.incidents.iter().enumerate() {
            let v = e.embed_now(&inc.to_text());
            with.insert(i as u64, ids[i], inc, Some(&v));
        }
        println!(
            "{:<58} {}",
            "index: text + LexicalEmbedder",
            rate(n, t.elapsed())
        );
        let text_only = BenchIndex::new(VectorIndexConfig::default());
        let t = Instant::now();
        for (i, inc) in d.incidents.iter().enumerate() {
            text_only.insert(i as u64, ids[i], inc, None);
        }
        println!(
            "{:<58} {}",
            "index: text only (BM25 postings)",
            rate(n, t.elapsed())
        );
    }
    let mut engine = bm25::SearchEngineBuilder::<u32, u32, Words>::with_avgdl(16.0)
        .tokenizer(Words)
        .build();
    let t = Instant::now();
    for (i, text) in d.texts.iter().enumerate() {
        engine.upsert(bm25::Document::new(i as u32, text.as_str()));
    }
    println!(
        "{:<58} {}",
        "baseline: bm25 crate SearchEngine upsert",
        rate(n, t.elapsed())
    );

    // Before the merge: everything is in the exact segment.
    let q = d.queries.len();
    let exact_seg = time(q, 1, |k| {
        let (t, v) = &d.queries[k];
        black_box(index.search(&query(t, Some(v)), &Fusion::default()));
    });
    println!(
        "{}",
        exact_seg.line("hybrid, all vectors in the exact segment (before merge)")
    );

    // BM25 does not depend on the graph: measured first.
    let bm = time(q, rounds, |k| {
        black_box(index.search(&query(&d.queries[k].0, None), &BM25_ONLY));
    });
    println!("{}", bm.line("BM25 top-10 (inverted index)"));
    let base_bm = time(q, 1, |k| {
        black_box(engine.search(&d.queries[k].0, 10));
    });
    println!(
        "{}",
        base_bm.line("baseline: bm25 crate SearchEngine top-10")
    );
    let t = Instant::now();
    index.merge_now();
    let built = t.elapsed();
    println!(
        "{:<58} {}",
        "HNSW build (hnsw_rs M=32 efc=200, 1 thread, background)",
        rate(n, built)
    );

    let vec = time(q, rounds, |k| {
        let (t, v) = &d.queries[k];
        black_box(index.search(&query(t, Some(v)), &VECTOR_ONLY));
    });
    println!(
        "{}",
        vec.line("vector top-10 (HNSW ef=256 + exact segment)")
    );
    if !quick {
        for ef in [64, 128] {
            index.set_ef_search(ef);
            let l = time(q, rounds, |k| {
                let (t, v) = &d.queries[k];
                black_box(index.search(&query(t, Some(v)), &VECTOR_ONLY));
            });
            let r = vector_recall(&d, &index);
            println!(
                "{}",
                l.line(&format!("vector top-10, ef={ef} (recall@10 {r:.3})"))
            );
        }
        index.set_ef_search(VectorIndexConfig::default().ef_search);
    }
    let exact = time(q, rounds.min(2), |k| {
        black_box(exact_top_k(&d.vectors, &d.queries[k].1, 10));
    });
    println!(
        "{}",
        exact.line("baseline: exact brute-force cosine top-10")
    );
    let hyb = time(q, rounds, |k| {
        let (t, v) = &d.queries[k];
        black_box(index.search(&query(t, Some(v)), &Fusion::default()));
    });
    println!("{}", hyb.line("hybrid top-10, query vector given"));
    let filtered = time(q, rounds, |k| {
        let (t, v) = &d.queries[k];
        let mut qq = query(t, Some(v));
        qq.kind = Some(AnomalyKind::ALL[k % KINDS]);
        qq.filter.resolution = Some(Resolution::Healed);
        black_box(index.search(&qq, &Fusion::default()));
    });
    println!(
        "{}",
        filtered.line("hybrid top-10 + kind and outcome filters")
    );
    let r = vector_recall(&d, &index);
    println!(
        "{:<58} {r:.3}",
        "vector recall@10 vs exact (HNSW + segment)"
    );
    println!(
        "ratios: hybrid p99 / exact-vector p99 = {:.2}; BM25 p50 speed-up over bm25 crate = {:.1}x",
        hyb.pct(0.99) / exact.pct(0.99),
        base_bm.pct(0.5) / bm.pct(0.5)
    );

    if n <= 10_000 && !quick {
        let points: Vec<Point<'_>> = d.vectors.iter().map(|v| Point(v)).collect();
        let t = Instant::now();
        let (hnsw, _) = instant_distance::Builder::default()
            .ef_search(256)
            .seed(1)
            .build_hnsw(points);
        println!(
            "{:<58} {}",
            "baseline: instant-distance build (M=32, ef=256, 2 threads)",
            rate(n, t.elapsed())
        );
        let mut s = instant_distance::Search::default();
        let id = time(q, rounds, |k| {
            black_box(
                hnsw.search(&Point(&d.queries[k].1), &mut s)
                    .take(10)
                    .count(),
            );
        });
        println!("{}", id.line("baseline: instant-distance top-10 (ef=256)"));
        let r = recall(&d, |k| {
            hnsw.search(&Point(&d.queries[k].1), &mut s)
                .take(10)
                .map(|i| 1.0 - i.distance)
                .collect()
        });
        println!(
            "{:<58} {r:.3}",
            "baseline: instant-distance recall@10 vs exact"
        );
    }
    Built { n, d, index }
}

/// The whole store: durable ingest (LexicalEmbedder), background graph build, search with
/// the query vector given (index + redb body reads), reopen that loads the saved graph.
fn run_store(b: &Built, quick: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.redb");
    let config = KnowledgeConfig::with_retention(b.n);
    rt.block_on(async {
        let store = RedbKnowledge::open(&path, config.clone())
            .unwrap()
            .with_embedder(Arc::new(LexicalEmbedder))
            .await
            .unwrap();
        let t = Instant::now();
        for chunk in b.d.incidents.chunks(1000) {
            store
                .merge_state(&to_dag_cbor(&chunk.to_vec()).unwrap())
                .await
                .unwrap();
        }
        println!(
            "{:<58} {}",
            "store: merge_state x1000 (CBOR, CID, embed, durable commit)",
            rate(b.n, t.elapsed())
        );
        let t = Instant::now();
        let s = store.flush_index().await.unwrap();
        println!(
            "{:<58} {:.2} s ({} vectors in graph)",
            "store: flush_index (finish graph + save)",
            t.elapsed().as_secs_f64(),
            s.graph_vectors
        );
        drop(store);
        let side: u64 = std::fs::read_dir(dir.path().join("bench.redb.hnsw"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let db = std::fs::metadata(&path).map_or(0, |m| m.len());
        println!(
            "{:<58} {:.1} MB graph files, {:.1} MB redb file",
            "store: on disk",
            side as f64 / 1e6,
            db as f64 / 1e6
        );
        let t = Instant::now();
        let store = RedbKnowledge::open(&path, config.clone())
            .unwrap()
            .with_embedder(Arc::new(LexicalEmbedder))
            .await
            .unwrap();
        let s = store.index_stats();
        println!(
            "{:<58} {:.2} s (graph loaded: {}, graph inserts: {})",
            "store: reopen (decode incidents, load saved graph)",
            t.elapsed().as_secs_f64(),
            s.graph_loaded,
            s.graph_inserts
        );
        let q = b.d.queries.len();
        let mut lat = Vec::new();
        for _ in 0..if quick { 1 } else { 3 } {
            for (t, v) in &b.d.queries[..q] {
                let qq = query(t, Some(v));
                let start = Instant::now();
                black_box(store.search_scored(&qq).await.unwrap());
                lat.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        println!(
            "{}",
            Lat(lat, q).line("store: search_scored hybrid top-10, vector given")
        );
    });
}

fn sizes(quick: bool) -> Vec<usize> {
    if let Ok(s) = std::env::var("X0TTA_BENCH_SIZES") {
        return s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    }
    if quick {
        vec![1000]
    } else {
        vec![10_000, 100_000]
    }
}

fn criterion_benches(c: &mut Criterion, built: &[Built]) {
    let mut g = c.benchmark_group("search");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for b in built {
        let q = b.d.queries.len();
        let mut k = 0;
        let mut next = || {
            k = (k + 1) % q;
            &b.d.queries[k]
        };
        g.bench_function(format!("hybrid top-10, vector given, {}", b.n), |bench| {
            bench.iter(|| {
                let (t, v) = next();
                b.index.search(&query(t, Some(v)), &Fusion::default())
            })
        });
        g.bench_function(format!("baseline: exact cosine top-10, {}", b.n), |bench| {
            bench.iter(|| exact_top_k(&b.d.vectors, &next().1, 10))
        });
    }
    g.finish();
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let lines = loghub_lines(&loghub_dir());
    if lines.len() < 10 * QUERIES {
        println!(
            "SKIPPED: loghub sample not found at {}",
            loghub_dir().display()
        );
        return;
    }
    println!(
        "hybrid search bench: {} loghub lines, {} cores, load average {}",
        lines.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut built = Vec::new();
    for n in sizes(quick) {
        let b = run_size(n, &lines, quick);
        if std::env::var("X0TTA_BENCH_STORE").as_deref() != Ok("0") {
            run_store(&b, quick);
        }
        built.push(b);
    }
    if !quick {
        let mut c = Criterion::default().configure_from_args();
        criterion_benches(&mut c, &built);
        c.final_summary();
    }
}
