//! `incidents`, `export-car`, `import-car`: the node's memory from the command line. `incidents`
//! asks the running node through its HTTP API; with no node answering it opens the knowledge
//! store itself. `export-car` and `import-car` open the store, so they run while the node is
//! stopped (a running node holds the file; the error says so).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use x0tta_core::config::NodeConfig;
use x0tta_core::{ContentId, Incident, KnowledgeStore, SearchQuery};
use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};

use crate::api::Client;

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

/// Whether `e` says that no node listens (so the store can be opened directly).
fn no_node(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some()
}

fn line(id: &str, i: &Incident) -> String {
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

/// An incident with its id, as the API and `--json` give it.
#[derive(serde::Serialize, Deserialize)]
struct Listed {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    incident: Incident,
}

/// The incidents the node's API answers for `path`, or (no node running) `local`'s.
async fn from_node_or_store<F, Fut>(config: &Path, path: &str, local: F) -> Result<Vec<Listed>>
where
    F: FnOnce(RedbKnowledge) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Listed>>>,
{
    match Client::for_config(config)?.get(path).await {
        Ok(v) => Ok(serde_json::from_value(v)?),
        Err(e) if no_node(&e) => local(open(config)?).await,
        Err(e) => Err(e),
    }
}

fn print(list: &[Listed], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(list)?);
        return Ok(());
    }
    for l in list {
        match l.score {
            Some(score) => println!("{score:>7.3}  {}", line(&l.id, &l.incident)),
            None => println!("{}", line(&l.id, &l.incident)),
        }
    }
    Ok(())
}

pub(crate) async fn list(config: &Path, limit: usize, json: bool) -> Result<()> {
    let got = from_node_or_store(
        config,
        &format!("/api/v1/incidents?limit={limit}"),
        |store| async move {
            Ok(store
                .recent(limit)
                .await?
                .into_iter()
                .map(|(id, incident)| Listed {
                    id: id.to_string(),
                    score: None,
                    incident,
                })
                .collect())
        },
    )
    .await?;
    print(&got, json)
}

pub(crate) async fn show(config: &Path, id: &str) -> Result<()> {
    let cid: ContentId = id
        .parse()
        .with_context(|| format!("`{id}` is not an incident id"))?;
    match Client::for_config(config)?
        .get(&format!("/api/v1/incidents/{cid}"))
        .await
    {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v["incident"])?);
            return Ok(());
        }
        Err(e) if !no_node(&e) => return Err(e),
        Err(_) => {}
    }
    let store = open(config)?;
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

pub(crate) async fn search(config: &Path, text: &str, limit: usize, json: bool) -> Result<()> {
    let query: String = url_encode(text);
    let got = from_node_or_store(
        config,
        &format!("/api/v1/incidents/search?q={query}&limit={limit}"),
        |store| async move {
            let mut q = SearchQuery::text(text);
            q.limit = limit;
            Ok(store
                .search(&q)
                .await?
                .into_iter()
                .map(|h| Listed {
                    id: h.id.to_string(),
                    score: Some(h.score),
                    incident: h.incident,
                })
                .collect())
        },
    )
    .await?;
    print(&got, json)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) async fn export_car(config: &Path, out: &Path, json: bool) -> Result<()> {
    let store = open(config)?;
    let file = tokio::fs::File::create(out)
        .await
        .with_context(|| format!("creating {}", out.display()))?;
    let bar = crate::progress::bytes(None, "exporting");
    let mut w = crate::progress::Counted::new(tokio::io::BufWriter::new(file), bar.clone());
    let r = store.export_car(&mut w).await?;
    tokio::io::AsyncWriteExt::flush(&mut w).await?;
    bar.finish_and_clear();
    if json {
        println!(
            "{}",
            serde_json::json!({ "file": out, "incidents": r.incidents, "root": r.root.to_string(), "bytes": bar.position() })
        );
    } else {
        println!(
            "wrote {} ({} incidents, root {})",
            out.display(),
            r.incidents,
            r.root
        );
    }
    Ok(())
}

pub(crate) async fn import_car(config: &Path, input: &Path, json: bool) -> Result<()> {
    let store = open(config)?;
    let file = tokio::fs::File::open(input)
        .await
        .with_context(|| format!("opening {}", input.display()))?;
    let size = file.metadata().await.ok().map(|m| m.len());
    let bar = crate::progress::bytes(size, "importing");
    let reader = crate::progress::Counted::new(tokio::io::BufReader::new(file), bar.clone());
    let r = store.import_car(reader).await?;
    bar.finish_and_clear();
    if json {
        let refused: Vec<_> = r
            .refused
            .iter()
            .map(
                |b| serde_json::json!({ "cid": b.cid.to_string(), "reason": b.reason.to_string() }),
            )
            .collect();
        println!(
            "{}",
            serde_json::json!({ "file": input, "added": r.added, "already_known": r.already_known, "other_blocks": r.other_blocks, "refused": refused })
        );
    } else {
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
    }
    if !r.refused.is_empty() {
        anyhow::bail!("{} blocks did not match their CID", r.refused.len());
    }
    Ok(())
}
