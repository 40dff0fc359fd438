//! `run` and `status`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use x0tta_core::config::NodeConfig;
use x0tta_core::{NodeEvent, NodeStatus, Timestamp};

use crate::assemble::assemble;

/// What `run` leaves in `<storage>/status.json` for `status` to read.
#[derive(Debug, Serialize, Deserialize)]
struct StatusFile {
    node: String,
    pid: u32,
    updated_at: Timestamp,
    status: NodeStatus,
    services: Vec<(String, Option<u32>)>,
}

fn status_path(cfg: &NodeConfig) -> std::path::PathBuf {
    cfg.node_config.storage.path.join("status.json")
}

pub(crate) async fn run(config: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    std::fs::create_dir_all(&cfg.node_config.storage.path)?;
    let a = assemble(&cfg, Some(config)).await?;
    warn!(
        "mesh transport: in-process only (x0tta-mesh not yet wired); knowledge: in memory, not durable"
    );
    a.supervisor.start_all().await?;
    let handle = a.node.handle();
    let mut events = handle.subscribe();
    let mut task = tokio::spawn(a.node.run());
    info!(node = %handle.id(), config = %config.display(), "running; Ctrl-C or SIGTERM stops");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let path = status_path(&cfg);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            // SIGHUP: re-read the policy (`node_config.mapk`) and put it in force next cycle.
            _ = hup.recv() => match x0tta_core::config::load_policy(config) {
                Ok(p) => match handle.policy().replace_rules(p) {
                    Ok(outcome) => info!(?outcome, "policy reloaded on SIGHUP"),
                    Err(e) => warn!(%e, "policy on SIGHUP refused"),
                },
                Err(e) => warn!(%e, "policy on SIGHUP not reloaded"),
            },
            // The loop ended on its own: an error or a panic. Say so and exit non-zero.
            res = &mut task => {
                a.supervisor.stop_all().await;
                return match res {
                    Ok(Ok(_)) => Err(anyhow::anyhow!("the node stopped unexpectedly")),
                    Ok(Err(e)) => Err(anyhow::Error::from(e).context("the node stopped")),
                    Err(e) => Err(anyhow::anyhow!("the node crashed: {e}")),
                };
            }
            ev = events.recv() => match ev {
                Ok(NodeEvent::CycleFinished { .. }) => {
                    let mut services = Vec::new();
                    for name in a.supervisor.names() {
                        let pid = a.supervisor.pid(&name).await;
                        services.push((name, pid));
                    }
                    let file = StatusFile {
                        node: handle.id().to_string(),
                        pid: std::process::id(),
                        updated_at: Timestamp::now(),
                        status: handle.status(),
                        services,
                    };
                    let tmp = path.with_extension("json.tmp");
                    if let Err(e) = std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?).and_then(|()| std::fs::rename(&tmp, &path)) {
                        warn!(%e, "cannot write {}", path.display());
                    }
                }
                Ok(NodeEvent::AnomalyDetected { anomaly, new: true, .. }) => {
                    warn!(kind = %anomaly.kind, subject = %anomaly.subject, severity = %anomaly.severity, "anomaly");
                }
                Ok(NodeEvent::Executed { report }) => {
                    info!(template = %report.template, success = report.success, ms = report.duration_ms, "plan executed");
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    info!("stopping");
    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    a.supervisor.stop_all().await;
    Ok(())
}

pub(crate) fn status(config: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    let path = status_path(&cfg);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no status at {} (has the node run?)", path.display()))?;
    let f: StatusFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let running = Path::new(&format!("/proc/{}", f.pid)).exists();
    let age = Timestamp::now().since(f.updated_at);
    println!(
        "node        {} ({})",
        f.node,
        cfg.node_config.identity.spiffe_id()
    );
    println!(
        "process     {} ({})",
        f.pid,
        if running { "running" } else { "not running" }
    );
    println!("updated     {:.1} s ago", age.as_secs_f64());
    println!("policy      v{}", f.status.policy_version);
    println!("cycles      {}", f.status.cycles);
    println!("anomalies   {} active", f.status.active_anomalies);
    println!("incidents   {}", f.status.incidents);
    println!(
        "heals       {} ok, {} failed, {} escalated",
        f.status.heals_succeeded, f.status.heals_failed, f.status.escalations
    );
    for (name, pid) in f.services {
        match pid {
            Some(p) => println!("service     {name}: running (pid {p})"),
            None => println!("service     {name}: down"),
        }
    }
    Ok(())
}
