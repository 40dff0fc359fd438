//! `incidents`, `export-car`, `import-car`: the node's memory from the command line. They open
//! the knowledge store directly, so they run while the node is stopped (a running node holds
//! the file; the error says so).

use std::path::Path;

use anyhow::{Context, Result};
use x0tta_core::config::NodeConfig;
use x0tta_core::{ContentId, Incident, KnowledgeStore, SearchQuery};
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};

fn open(config: &Path) -> Result<RedbKnowledge> {
    let cfg = NodeConfig::load(config)?;
    let path = cfg.node_config.storage.path.join("knowledge.redb");
    RedbKnowledge::open(
        &path,
        KnowledgeConfig::with_retention(cfg.node_config.storage.retention),
    )
    .with_context(|| {
        "is the node running? stop it first (it holds the knowledge store)".to_string()
    })
}

fn line(id: &ContentId, i: &Incident) -> String {
    let template = i.plan.as_ref().map_or("-", |p| p.template.as_str());
    format!(
        "{id}  {}  {:<17} {:<16} {:<8} {:<24} {:?}",
        i.detected_at.as_millis(),
        i.anomaly.kind.to_string(),
        i.anomaly.subject.to_string(),
        i.anomaly.severity.to_string(),
        template,
        i.resolution
    )
}

pub(crate) async fn list(config: &Path, limit: usize) -> Result<()> {
    let store = open(config)?;
    for (id, i) in store.recent(limit).await? {
        println!("{}", line(&id, &i));
    }
    Ok(())
}

pub(crate) async fn show(config: &Path, id: &str) -> Result<()> {
    let store = open(config)?;
    let cid: ContentId = id
        .parse()
        .with_context(|| format!("`{id}` is not an incident id"))?;
    match store.get(&cid).await? {
        Some(i) => {
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        None if store.knows(&cid)? => {
            anyhow::bail!("{cid} is known but its body was evicted by retention")
        }
        None => anyhow::bail!("no incident {cid}"),
    }
}

pub(crate) async fn search(config: &Path, text: &str, limit: usize) -> Result<()> {
    let store = open(config)?;
    let mut q = SearchQuery::text(text);
    q.limit = limit;
    for hit in store.search(&q).await? {
        println!("{:>7.3}  {}", hit.score, line(&hit.id, &hit.incident));
    }
    Ok(())
}

pub(crate) async fn export_car(config: &Path, out: &Path) -> Result<()> {
    let store = open(config)?;
    let file = tokio::fs::File::create(out)
        .await
        .with_context(|| format!("creating {}", out.display()))?;
    let mut w = tokio::io::BufWriter::new(file);
    let r = store.export_car(&mut w).await?;
    tokio::io::AsyncWriteExt::flush(&mut w).await?;
    println!(
        "wrote {} ({} incidents, root {})",
        out.display(),
        r.incidents,
        r.root
    );
    Ok(())
}

pub(crate) async fn import_car(config: &Path, input: &Path) -> Result<()> {
    let store = open(config)?;
    let file = tokio::fs::File::open(input)
        .await
        .with_context(|| format!("opening {}", input.display()))?;
    let r = store.import_car(tokio::io::BufReader::new(file)).await?;
    println!(
        "imported {}: {} new, {} already known, {} other blocks, {} refused",
        input.display(),
        r.added,
        r.already_known,
        r.other_blocks,
        r.refused.len()
    );
    for b in &r.refused {
        println!("  refused {}: {}", b.cid, b.reason);
    }
    if !r.refused.is_empty() {
        anyhow::bail!("{} blocks did not match their CID", r.refused.len());
    }
    Ok(())
}
