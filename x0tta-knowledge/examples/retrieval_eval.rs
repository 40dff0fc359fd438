//! Retrieval quality on real logs: for each system in a loghub-layout directory
//! (`<System>/<System>_2k.log_structured.csv`), every log line becomes an incident; sampled
//! lines are queries; the relevant set of a query is the other lines with the same EventId.
//! Reports nDCG@10 and recall@10 for BM25, vector (the lexical fallback embedder) and hybrid
//! (weighted reciprocal-rank fusion), per system and macro-averaged.
//!
//! `cargo run --release -p x0tta-knowledge --example retrieval_eval -- ../shared/data/loghub`
//!
//! recall@10 here is |relevant ∩ top 10| / min(|relevant|, 10), so a perfect ranking scores 1
//! even when an event has hundreds of lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use x0tta_core::*;
use x0tta_knowledge::{Fusion, KnowledgeConfig, LexicalEmbedder, RedbKnowledge};

/// Queries sampled per system (every n-th line).
const QUERIES_PER_SYSTEM: usize = 100;

struct Line {
    id: String,
    content: String,
    event: String,
}

fn read_system(csv_path: &Path) -> anyhow::Result<Vec<Line>> {
    let mut r = csv::Reader::from_path(csv_path)?;
    let headers = r.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("{}: no column {name}", csv_path.display()))
    };
    let (ci, ei, li) = (col("Content")?, col("EventId")?, col("LineId")?);
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        out.push(Line {
            id: rec.get(li).unwrap_or_default().to_string(),
            content: rec.get(ci).unwrap_or_default().to_string(),
            event: rec.get(ei).unwrap_or_default().to_string(),
        });
    }
    Ok(out)
}

fn incident(system: &str, i: usize, line: &Line) -> Incident {
    Incident {
        node: NodeId::new("eval").unwrap(),
        detected_at: Timestamp::from_millis(i as u64),
        observation: ContentId::of_dag_cbor(format!("{system}/{}", line.id).as_bytes()),
        anomaly: Anomaly::new(
            AnomalyKind::ServiceDown,
            Severity::Low,
            1.0,
            Subject::Service(format!("{system}-{}", line.id)),
            "log",
        )
        .with_evidence(Evidence {
            signal: "log".into(),
            value: None,
            reference: None,
            note: line.content.clone(),
        }),
        root_cause: None,
        plan: None,
        report: None,
        resolution: Resolution::NoPlan,
    }
}

#[derive(Default, Clone, Copy)]
struct Scores {
    ndcg: f64,
    recall: f64,
    n: usize,
}

impl Scores {
    fn add(&mut self, ranked: &[bool], relevant: usize) {
        let dcg: f64 = ranked
            .iter()
            .enumerate()
            .filter(|(_, r)| **r)
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        self.ndcg += dcg / ideal;
        self.recall += ranked.iter().filter(|r| **r).count() as f64 / relevant.min(10) as f64;
        self.n += 1;
    }
    fn mean(&self) -> (f64, f64) {
        let n = self.n.max(1) as f64;
        (self.ndcg / n, self.recall / n)
    }
}

async fn evaluate(system: &str, lines: &[Line]) -> anyhow::Result<[Scores; 3]> {
    let dir = tempfile::tempdir()?;
    let store = RedbKnowledge::open(
        dir.path().join("eval.redb"),
        KnowledgeConfig::with_retention(lines.len().max(1)),
    )?
    .with_embedder(Arc::new(LexicalEmbedder))
    .await?;
    let all: Vec<Incident> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| incident(system, i, l))
        .collect();
    store.merge_state(&to_dag_cbor(&all)?).await?;
    let mut by_event: HashMap<&str, usize> = HashMap::new();
    for l in lines {
        *by_event.entry(l.event.as_str()).or_default() += 1;
    }
    let modes = [
        Fusion {
            vector: 0.0,
            ..Fusion::default()
        },
        Fusion {
            bm25: 0.0,
            ..Fusion::default()
        },
        Fusion::default(),
    ];
    let stores: Vec<RedbKnowledge> = modes
        .iter()
        .map(|f| store.clone().with_fusion(*f))
        .collect();
    let mut scores = [Scores::default(); 3];
    let step = (lines.len() / QUERIES_PER_SYSTEM).max(1);
    for (qi, q) in lines.iter().enumerate().step_by(step) {
        let relevant = by_event[q.event.as_str()] - 1;
        if relevant == 0 {
            continue; // a unique event has nothing to find
        }
        let me = Subject::Service(format!("{system}-{}", q.id));
        for (m, s) in stores.iter().enumerate() {
            let mut query = SearchQuery::text(&q.content);
            query.limit = 11;
            let hits = s.search(&query).await?;
            let ranked: Vec<bool> = hits
                .iter()
                .filter(|h| h.incident.anomaly.subject != me)
                .take(10)
                .map(|h| {
                    let Subject::Service(name) = &h.incident.anomaly.subject else {
                        return false;
                    };
                    let line_id = name.rsplit('-').next().unwrap_or_default();
                    lines
                        .iter()
                        .find(|l| l.id == line_id)
                        .is_some_and(|l| l.event == q.event)
                })
                .collect();
            scores[m].add(&ranked, relevant);
        }
        let _ = qi;
    }
    Ok(scores)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: retrieval_eval DIR (loghub layout)"))?;
    let mut systems: Vec<_> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    systems.sort_by_key(|e| e.file_name());
    let mut total = [Scores::default(); 3];
    let mut evaluated = 0;
    println!(
        "{:<12} {:>8} {:>10} {:>8} {:>10} {:>8} {:>10}",
        "system", "bm25", "", "vector", "", "hybrid", ""
    );
    println!(
        "{:<12} {:>8} {:>10} {:>8} {:>10} {:>8} {:>10}",
        "", "nDCG@10", "recall@10", "nDCG@10", "recall@10", "nDCG@10", "recall@10"
    );
    for e in systems {
        let name = e.file_name().to_string_lossy().to_string();
        let csv = e.path().join(format!("{name}_2k.log_structured.csv"));
        if !csv.exists() {
            continue;
        }
        let lines = read_system(&csv)?;
        let s = evaluate(&name, &lines).await?;
        let f = |x: Scores| x.mean();
        println!(
            "{name:<12} {:>8.3} {:>10.3} {:>8.3} {:>10.3} {:>8.3} {:>10.3}",
            f(s[0]).0,
            f(s[0]).1,
            f(s[1]).0,
            f(s[1]).1,
            f(s[2]).0,
            f(s[2]).1
        );
        for m in 0..3 {
            let (n, r) = s[m].mean();
            total[m].ndcg += n;
            total[m].recall += r;
        }
        evaluated += 1;
    }
    anyhow::ensure!(
        evaluated > 0,
        "no <System>/<System>_2k.log_structured.csv under {root}"
    );
    let avg = |m: usize| {
        (
            total[m].ndcg / evaluated as f64,
            total[m].recall / evaluated as f64,
        )
    };
    println!(
        "summary: ndcg10_bm25={:.3} ndcg10_vector={:.3} ndcg10_hybrid={:.3} recall10_hybrid={:.3} systems={evaluated}",
        avg(0).0,
        avg(1).0,
        avg(2).0,
        avg(2).1
    );
    Ok(())
}
