//! `propose`, `vote` and `proposals`: governance of a running node, through its HTTP API.

use std::path::Path;

use anyhow::{Context, Result};

use crate::api::{Client, ProposalView, VoteRequest};

/// Submits the proposal in `file` (the seed's YAML layout) through the node at `config`.
pub(crate) async fn propose(config: &Path, file: &Path, json: bool) -> Result<()> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let client = Client::for_config(config)?;
    let created = client.post("/api/v1/proposals", body).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    if json {
        println!("{}", serde_json::to_string(&created)?);
        return Ok(());
    }
    let view: ProposalView =
        serde_json::from_value(client.get(&format!("/api/v1/proposals/{id}")).await?)?;
    println!("proposed {id}");
    println!(
        "  {} ({}, {} track)",
        view.title, view.proposal_id, view.track
    );
    println!(
        "  phase {}; vote with: x0tta6bl4 vote {id} N --for|--against",
        view.phase
    );
    Ok(())
}

/// Casts this node's `votes` for or against a proposal (costs votes² credits).
pub(crate) async fn vote(
    config: &Path,
    id: &str,
    votes: u32,
    support: bool,
    json: bool,
) -> Result<()> {
    let client = Client::for_config(config)?;
    let body = serde_json::to_vec(&VoteRequest { votes, support })?;
    let r = client
        .post(&format!("/api/v1/proposals/{id}/votes"), body)
        .await?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "vote counted: {votes} {} (cost {} credits)",
            if support { "for" } else { "against" },
            r["cost"]
        );
    }
    Ok(())
}

/// Lists the proposals the node holds, newest first.
pub(crate) async fn list(config: &Path, json: bool) -> Result<()> {
    let all = Client::for_config(config)?.get("/api/v1/proposals").await?;
    if json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    let views: Vec<ProposalView> = serde_json::from_value(all)?;
    if views.is_empty() {
        println!("no proposals");
    }
    for v in views {
        println!(
            "{}  {:<9} for {:>4} against {:>4}  {}",
            v.id, v.phase, v.votes_for, v.votes_against, v.title
        );
    }
    Ok(())
}

/// One proposal, with its effectiveness report once in force.
pub(crate) async fn show(config: &Path, id: &str, json: bool) -> Result<()> {
    let client = Client::for_config(config)?;
    let v = client.get(&format!("/api/v1/proposals/{id}")).await?;
    let report = if v["applied_at"].is_null() {
        None
    } else {
        client
            .get(&format!("/api/v1/proposals/{id}/effectiveness"))
            .await
            .ok()
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "proposal": v, "effectiveness": report })
            )?
        );
        return Ok(());
    }
    let v: ProposalView = serde_json::from_value(v)?;
    println!("{}  {}", v.id, v.title);
    println!(
        "  proposal_id {}  creator {}  track {}",
        v.proposal_id, v.creator, v.track
    );
    for c in &v.changes {
        println!("  change {}: {} -> {}", c.parameter, c.current, c.proposed);
    }
    if !v.rationale.is_empty() {
        println!("  rationale {}", v.rationale);
    }
    println!(
        "  phase {}  votes for {} against {}  participation {:.0}%",
        v.phase,
        v.votes_for,
        v.votes_against,
        v.participation * 100.0
    );
    if let Some(f) = &v.final_tally {
        println!(
            "  final: {} (attested by {} of {} stake)",
            if f.passed { "passed" } else { "rejected" },
            f.attesting_stake,
            f.total_stake
        );
    }
    if let Some(r) = report {
        println!(
            "  effectiveness {}",
            r["summary"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
