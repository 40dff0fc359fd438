//! `demo`: self-contained scenarios on embedded defaults, with real processes and real faults,
//! printing every MAPE-K phase as it happens and ending with one machine-readable line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use x0tta_core::config::NodeConfig;
use x0tta_core::host::{ProbeSpec, run_probe};
use x0tta_core::{AnomalyKind, ExecProgress, NodeEvent, StepOutcome, Subject, Verification};

use crate::assemble::assemble;
use crate::init::DEFAULT_PLANS;

/// A demo scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Everything below in turn: the mesh, healing, then governance.
    All,
    /// A supervised service is killed, then made to hog memory; the node heals both.
    Heal,
    /// Nodes (a third of them Byzantine) vote the seed's proposal into every node's policy.
    Governance,
    /// Real node processes form a libp2p mesh; one is SIGKILLed, detected, and restarted.
    Mesh,
}

/// The whole demo must finish within this.
const DEMO_LIMIT: Duration = Duration::from_secs(55);
/// One fault must be healed within this.
const FAULT_LIMIT: Duration = Duration::from_secs(20);

fn demo_config(exe: &Path, port: u16) -> String {
    format!(
        r#"node_config:
  identity:
    name: demo-node
    key_dir: keys
  mapk:
    thresholds:
      service_memory_mb: 96
      probe_failures: 1
    intervals:
      cycle: 200ms
      verify_timeout: 10s
      verify_poll: 100ms
      probe_timeout: 500ms
  storage:
    path: data
    retention: 1000
    plans_dir: plans
services:
  - name: web
    command: "{exe}"
    args: [demo-service, --port, "{port}"]
    probes:
      - process
      - tcp: 127.0.0.1:{port}
      - http:
          url: http://127.0.0.1:{port}/health
"#,
        exe = exe.display()
    )
}

struct DemoDir(PathBuf);

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Prints an event as a phase line; returns nothing for events too chatty to show.
fn phase_line(e: &NodeEvent) -> Option<String> {
    Some(match e {
        NodeEvent::Observed {
            cycle,
            metrics,
            failed_probes,
            sensor_errors,
        } if *failed_probes > 0 || *sensor_errors > 0 => {
            format!(
                "  [monitor]   cycle {cycle}: {metrics} metrics, {failed_probes} probes failing, {sensor_errors} sensor errors"
            )
        }
        NodeEvent::AnomalyDetected {
            anomaly, new: true, ..
        } => {
            let why = anomaly
                .evidence
                .first()
                .map_or(String::new(), |e| format!(" — {}", e.note));
            format!(
                "  [analyze]   {} on {} (severity {}, confidence {:.2}, by {}){why}",
                anomaly.kind,
                anomaly.subject,
                anomaly.severity,
                anomaly.confidence,
                anomaly.detector
            )
        }
        NodeEvent::NoPlan { anomaly } => format!(
            "  [plan]      no template handles {} on {}: recorded only",
            anomaly.kind, anomaly.subject
        ),
        NodeEvent::PlanChosen { plan } => format!(
            "  [plan]      {} — {} steps, success probability {:.2} (from {} healed / {} failed), {} similar incidents",
            plan.template,
            plan.steps.len(),
            plan.success_probability,
            plan.history.successes,
            plan.history.failures,
            plan.evidence.len()
        ),
        NodeEvent::Progress(ExecProgress::StepFinished(r)) => {
            let outcome = match &r.outcome {
                StepOutcome::Succeeded { output } => format!("ok: {output}"),
                StepOutcome::Failed { error } => format!("FAILED: {error}"),
                StepOutcome::TimedOut { after_ms } => format!("TIMED OUT after {after_ms} ms"),
                StepOutcome::Skipped => "skipped (condition false)".into(),
                _ => "finished".into(),
            };
            format!(
                "  [execute]   {} ({}) {outcome} in {} ms",
                r.step, r.action, r.duration_ms
            )
        }
        NodeEvent::Progress(ExecProgress::RolledBack(r)) => {
            format!("  [execute]   rollback {}: {:?}", r.step, r.outcome)
        }
        NodeEvent::Executed { report } => match &report.verification {
            Verification::Cleared {
                after_ms,
                observations,
            } => {
                format!(
                    "  [verify]    anomaly cleared {after_ms} ms after the last step ({observations} observations)"
                )
            }
            other => format!("  [verify]    {other:?}"),
        },
        NodeEvent::IncidentRecorded { id, resolution } => {
            format!("  [knowledge] incident {id} recorded ({resolution:?}), signed ML-DSA-65")
        }
        NodeEvent::Escalated { anomaly, template } => format!(
            "  [escalate]  {template} keeps failing; {} raised to {}",
            anomaly.kind, anomaly.severity
        ),
        NodeEvent::Error { what } => format!("  [error]     {what}"),
        _ => return None,
    })
}

/// Receives events, printing phases, until `pred` holds or `limit` passes.
async fn until(
    rx: &mut Receiver<NodeEvent>,
    limit: Duration,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> Option<(NodeEvent, Instant)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let ev = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return None,
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => return None,
            Ok(Ok(e)) => e,
        };
        let at = Instant::now();
        if let Some(line) = phase_line(&ev) {
            println!("{line}");
        }
        if pred(&ev) {
            return Some((ev, at));
        }
    }
}

struct FaultResult {
    mttd: Duration,
    mttr: Duration,
}

/// After a fault injected at `t0`: detection of `kind` on the web service, then a verified heal.
async fn watch_heal(
    rx: &mut Receiver<NodeEvent>,
    knowledge: &dyn x0tta_core::KnowledgeStore,
    kind: AnomalyKind,
    t0: Instant,
) -> Option<FaultResult> {
    let web = Subject::Service("web".into());
    let (_, detected) = until(rx, FAULT_LIMIT, |e| {
        matches!(e, NodeEvent::AnomalyDetected { anomaly, .. } if anomaly.kind == kind && anomaly.subject == web)
    })
    .await?;
    let (ev, healed) = until(
        rx,
        FAULT_LIMIT,
        |e| matches!(e, NodeEvent::Executed { report } if Some(report.template.as_str()) == template_for(kind)),
    )
    .await?;
    let NodeEvent::Executed { report } = ev else {
        return None;
    };
    if !report.success {
        return None;
    }
    // Let the incident record print before the next fault, with the root cause it carries.
    if let Some((NodeEvent::IncidentRecorded { id, .. }, _)) =
        until(rx, Duration::from_secs(2), |e| {
            matches!(e, NodeEvent::IncidentRecorded { .. })
        })
        .await
        && let Ok(Some(incident)) = knowledge.get(&id).await
        && let Some(rc) = incident.root_cause
    {
        println!("  [root cause] {rc}");
    }
    Some(FaultResult {
        mttd: detected - t0,
        mttr: healed - t0,
    })
}

/// The plan template the demo's defaults use for each injected fault.
fn template_for(kind: AnomalyKind) -> Option<&'static str> {
    match kind {
        AnomalyKind::ServiceDown => Some("restart-crashed-service"),
        AnomalyKind::MemoryPressure => Some("relieve-service-memory"),
        _ => None,
    }
}

async fn http_get(url: &str) -> Result<()> {
    let probe = run_probe(
        "web",
        &ProbeSpec::Http {
            url: url.into(),
            status: 200,
        },
        Duration::from_secs(10),
    )
    .await;
    if probe.healthy {
        Ok(())
    } else {
        bail!("GET {url}: {}", probe.detail.unwrap_or_default())
    }
}

pub(crate) async fn demo(scenario: Scenario, nodes: usize) -> Result<()> {
    match scenario {
        Scenario::All => {
            println!("== demo 1/3: mesh ==");
            Box::pin(demo(Scenario::Mesh, 5)).await?;
            println!("\n== demo 2/3: heal ==");
            Box::pin(demo(Scenario::Heal, 1)).await?;
            println!("\n== demo 3/3: governance ==");
            Box::pin(demo(Scenario::Governance, 7)).await?;
            println!("summary: scenario=all passed=true");
            Ok(())
        }
        Scenario::Mesh => crate::demo_mesh::demo(nodes).await,
        Scenario::Governance => {
            match tokio::time::timeout(DEMO_LIMIT, crate::demo_governance::run(nodes)).await {
                Ok(r) => r,
                Err(_) => {
                    println!("summary: scenario=governance passed=false reason=timeout");
                    bail!("the demo did not finish within {DEMO_LIMIT:?}")
                }
            }
        }
        Scenario::Heal => match tokio::time::timeout(DEMO_LIMIT, heal()).await {
            Ok(r) => r,
            Err(_) => {
                println!("summary: scenario=heal healed=false reason=timeout");
                bail!("the demo did not finish within {DEMO_LIMIT:?}")
            }
        },
    }
}

async fn heal() -> Result<()> {
    let started = Instant::now();
    let dir = DemoDir(std::env::temp_dir().join(format!("x0tta6bl4-demo-{}", std::process::id())));
    std::fs::create_dir_all(dir.0.join("plans"))?;
    for (file, body) in DEFAULT_PLANS {
        std::fs::write(dir.0.join("plans").join(file), body)?;
    }
    let exe = std::env::current_exe().context("locating this binary to run the demo service")?;
    let port = free_port()?;
    let config = dir.0.join("node.yaml");
    std::fs::write(&config, demo_config(&exe, port))?;
    let cfg = NodeConfig::load(&config)?;
    let a = assemble(&cfg, Some(&config), None, None).await?;
    a.supervisor.start_all().await?;
    let health = format!("http://127.0.0.1:{port}/health");
    let ready = Instant::now();
    while http_get(&health).await.is_err() {
        if ready.elapsed() > Duration::from_secs(10) {
            bail!("the demo service did not come up on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = a
        .supervisor
        .pid("web")
        .await
        .context("demo service not running")?;
    println!("x0tta6bl4 demo: heal");
    println!(
        "node demo-node (ML-DSA-65 signed) supervises `web` (pid {pid}) on 127.0.0.1:{port}; MAPE-K cycle {:?}",
        cfg.node_config.mapk.intervals.cycle
    );
    let handle = a.node.handle();
    let mut rx = handle.subscribe();
    let task = tokio::spawn(a.node.run());
    until(&mut rx, Duration::from_secs(5), |e| {
        matches!(e, NodeEvent::CycleFinished { cycle: 3, .. })
    })
    .await
    .context("the node did not complete its first cycles")?;
    println!("monitoring: 3 healthy cycles");

    let mut results = Vec::new();
    println!("[fault 1] SIGKILL to web (pid {pid})");
    let t0 = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    if !killed.success() {
        bail!("could not kill pid {pid}");
    }
    let r1 = watch_heal(&mut rx, &a.knowledge, AnomalyKind::ServiceDown, t0).await;
    match &r1 {
        Some(r) => println!(
            "[fault 1] healed: detected after {} ms, service back after {} ms",
            ms(r.mttd),
            ms(r.mttr)
        ),
        None => println!("[fault 1] NOT healed"),
    }
    results.push(r1);

    if results.iter().all(Option::is_some) {
        let hog_mb = 160;
        println!("[fault 2] web told to hold {hog_mb} MiB (policy limit 96 MiB)");
        let t0 = Instant::now();
        // Fire and forget: the node may restart the service before it has answered (the
        // memory crosses the limit while it is still allocating), which is the heal working.
        let hog = format!("http://127.0.0.1:{port}/hog?mb={hog_mb}");
        tokio::spawn(async move {
            if let Err(e) = http_get(&hog).await {
                tracing::debug!(%e, "the hog request did not complete (service restarted mid-request)");
            }
        });
        let r2 = watch_heal(&mut rx, &a.knowledge, AnomalyKind::MemoryPressure, t0).await;
        match &r2 {
            Some(r) => println!(
                "[fault 2] healed: detected after {} ms, memory back under the limit after {} ms",
                ms(r.mttd),
                ms(r.mttr)
            ),
            None => println!("[fault 2] NOT healed"),
        }
        results.push(r2);
    }

    handle.shutdown();
    let status = tokio::time::timeout(Duration::from_secs(10), task)
        .await??
        .map_err(anyhow::Error::from)?;
    a.supervisor.stop_all().await;
    let healed: Vec<&FaultResult> = results.iter().flatten().collect();
    let all = healed.len() == 2;
    let mean = |f: fn(&FaultResult) -> Duration| {
        if healed.is_empty() {
            0
        } else {
            healed.iter().map(|r| ms(f(r))).sum::<u64>() / healed.len() as u64
        }
    };
    println!(
        "summary: scenario=heal healed={all} mttd_ms={} mttr_ms={} incidents={} faults=2 cycles={} elapsed_ms={}",
        mean(|r| r.mttd),
        mean(|r| r.mttr),
        status.incidents,
        status.cycles,
        ms(started.elapsed())
    );
    if !all {
        bail!("the node did not heal every fault");
    }
    Ok(())
}
