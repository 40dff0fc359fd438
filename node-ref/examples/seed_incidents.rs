//! Fills a node's knowledge store with N varied incidents before the node starts, for the API
//! benchmark (`scripts/bench-api.sh`): `cargo run --release -p node-ref --example
//! seed_incidents -- STORAGE_DIR N`.

use std::sync::Arc;

use x0tta_core::{
    Anomaly, AnomalyKind, ContentId, Evidence, Incident, KnowledgeStore, NodeId, Resolution,
    Severity, Subject, Timestamp,
};
use x0tta_knowledge::{KnowledgeConfig, LexicalEmbedder, RedbKnowledge};

const WORDS: [&str; 16] = [
    "oom",
    "killed",
    "timeout",
    "restart",
    "latency",
    "packet",
    "loss",
    "disk",
    "full",
    "cpu",
    "spike",
    "gc",
    "pause",
    "link",
    "flap",
    "partition",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(n)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: seed_incidents STORAGE_DIR N");
    };
    let n: u64 = n.parse()?;
    let store = RedbKnowledge::open(
        std::path::Path::new(&dir).join("knowledge.redb"),
        KnowledgeConfig::with_retention(n as usize + 1000),
    )?
    .with_embedder(Arc::new(LexicalEmbedder))
    .await?;
    let node = NodeId::new("seed")?;
    for i in 0..n {
        let kind = AnomalyKind::ALL[(i % AnomalyKind::ALL.len() as u64) as usize];
        let note = (0..6)
            .map(|k| WORDS[((i * 7 + k * 5) % 16) as usize])
            .collect::<Vec<_>>()
            .join(" ");
        let incident = Incident {
            node: node.clone(),
            detected_at: Timestamp::from_millis(1_700_000_000_000 + i * 1000),
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
        };
        store.record(&incident).await?;
    }
    store.flush_index().await?;
    println!("{n} incidents in {dir}/knowledge.redb");
    Ok(())
}
