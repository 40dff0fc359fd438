//! `run` and `status`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use x0tta_core::config::NodeConfig;
use x0tta_core::{MeshEvent, Neighbour, NodeEvent, NodeStatus, PeerState, Timestamp, Transport};
use x0tta_mesh::p2p::{HEARTBEAT_TOPIC, P2pTransport};

use std::sync::{Arc, Mutex};

use x0tta_analysis::federated::{FlConfig, Participant};
use x0tta_analysis::live::{FEATURES_TOPIC, GraphDetector, Report};

use crate::api::StatusView;
use crate::assemble::assemble;
use crate::telemetry::{Sources, Telemetry};

/// What `run` leaves in `<storage>/status.json` for `status` (and `demo mesh`) to read.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StatusFile {
    pub(crate) node: String,
    pub(crate) pid: u32,
    pub(crate) updated_at: Timestamp,
    pub(crate) status: NodeStatus,
    pub(crate) services: Vec<(String, Option<u32>)>,
    /// Listen addresses, with `/p2p/<peer id>`.
    #[serde(default)]
    pub(crate) listen: Vec<String>,
    /// The neighbour table.
    #[serde(default)]
    pub(crate) neighbours: Vec<Neighbour>,
    /// Transport counters.
    #[serde(default)]
    pub(crate) mesh: MeshCounters,
    /// Incidents the knowledge store holds: this node's own and those replicated from peers.
    #[serde(default)]
    pub(crate) known_incidents: u64,
    /// The last federated round, if one ran.
    #[serde(default)]
    pub(crate) federated: Option<FederatedStatus>,
    /// The GraphSAGE patterns in use: loaded at start, then each federated round's.
    #[serde(default)]
    pub(crate) model: Option<crate::model::ModelInfo>,
}

impl StatusFile {
    /// Ids of the neighbours failure detection holds up.
    pub(crate) fn up_neighbours(&self) -> impl Iterator<Item = &str> {
        self.neighbours
            .iter()
            .filter(|n| n.state == PeerState::Up)
            .map(|n| n.id.as_str())
    }
}

/// Transport counters in the status file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct MeshCounters {
    pub(crate) connections: usize,
    pub(crate) gossip_received: u64,
    pub(crate) gossip_dropped: u64,
    pub(crate) last_recovery_ms: Option<u64>,
}

/// What the last federated round did (`federated::RoundReport`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FederatedStatus {
    pub(crate) round: u64,
    pub(crate) rule: String,
    /// Bytes of this node's own update (0: no labelled incidents).
    pub(crate) published: usize,
    pub(crate) accepted: usize,
    pub(crate) refused: usize,
    /// Updates combined, this node's own included.
    pub(crate) combined: usize,
    pub(crate) step_norm: f32,
}

/// One line of `<storage>/mesh-events.jsonl`: a mesh event or a received heartbeat.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MeshLogEntry {
    /// Wall clock, ms since the epoch.
    pub(crate) at_ms: i64,
    /// `peer_up`, `peer_suspect`, `peer_down`, `partitioned`, `healed`, `heartbeat`.
    pub(crate) event: String,
    pub(crate) peer: Option<String>,
    /// For heartbeats: sender's timestamp to arrival.
    pub(crate) latency_ms: Option<f64>,
}

fn status_path(cfg: &NodeConfig) -> std::path::PathBuf {
    cfg.node_config.storage.path.join("status.json")
}

pub(crate) async fn run(config: &Path) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    std::fs::create_dir_all(&cfg.node_config.storage.path)?;
    let identity = crate::assemble::load_identity(&cfg)?;
    let loaded = crate::model::load_at_start(&cfg, &identity);
    let model = Arc::new(Mutex::new(loaded.as_ref().map(|(_, i)| i.clone())));
    let federated = Arc::new(Mutex::new(None));
    // Reports of peers count for three cycles (the policy at start), at least ten seconds.
    let max_age = (3 * cfg.node_config.mapk.intervals.cycle).max(Duration::from_secs(10));
    let graph = loaded.map(|(m, _)| {
        Arc::new(GraphDetector::new(
            identity.node_id().clone(),
            m,
            u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
        ))
    });
    let telemetry = Telemetry::new(&identity.peer_id().to_string());
    let a = assemble(
        &cfg,
        Some(config),
        Some(telemetry.handshake_observer()),
        graph.clone(),
    )
    .await?;
    let token = crate::api::ensure_token(&crate::api::token_path(&cfg))?;
    let sources = Sources {
        node: a.node.handle(),
        mesh: a.mesh.clone(),
        knowledge: a.knowledge.clone(),
        dao: a.dao.clone(),
        xdp: a.xdp.clone(),
    };
    let last_status = Arc::new(Mutex::new(None));
    let api = crate::api::start(
        &cfg,
        crate::api::ApiState::new(
            sources.clone(),
            telemetry.clone(),
            token,
            last_status.clone(),
        ),
    )
    .await?;
    info!(%api, "HTTP API on http://{api}/api/v1/, dashboard on http://{api}/dashboard, metrics on http://{api}/metrics");
    tokio::spawn(crate::telemetry::feed(telemetry.clone(), sources));
    a.supervisor.start_all().await?;
    let storage = cfg.node_config.storage.path.clone();
    tokio::spawn(log_mesh(a.mesh.clone(), storage.join("mesh-events.jsonl")));
    tokio::spawn(anti_entropy(
        a.replicator.clone(),
        a.mesh.clone(),
        telemetry,
    ));
    let handle = a.node.handle();
    if let Some(g) = &graph {
        tokio::spawn(feature_reports(g.clone(), a.mesh.clone()));
        tokio::spawn(federated_rounds(
            g.clone(),
            a.mesh.clone(),
            identity.clone(),
            cfg.clone(),
            handle.policy().clone(),
            model.clone(),
            federated.clone(),
        ));
    }
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
                    // This node's features of the cycle, for its neighbours' GraphSAGE.
                    if let Some(r) = graph.as_ref().and_then(|g| g.own_report()) {
                        match r.seal(&identity) {
                            Ok(bytes) => {
                                if let Err(e) = a.mesh.publish(FEATURES_TOPIC, bytes).await {
                                    tracing::debug!(%e, "feature report not published");
                                }
                            }
                            Err(e) => warn!(%e, "feature report not sealed"),
                        }
                    }
                    let mut services = Vec::new();
                    for name in a.supervisor.names() {
                        let pid = a.supervisor.pid(&name).await;
                        services.push((name, pid));
                    }
                    let stats = a.mesh.stats();
                    let file = StatusFile {
                        node: handle.id().to_string(),
                        pid: std::process::id(),
                        updated_at: Timestamp::now(),
                        status: handle.status(),
                        services,
                        listen: a.mesh.listen_addrs().iter().map(ToString::to_string).collect(),
                        neighbours: a.mesh.neighbours().await,
                        mesh: MeshCounters {
                            connections: stats.connections,
                            gossip_received: stats.gossip_received,
                            gossip_dropped: stats.gossip_dropped,
                            last_recovery_ms: stats.last_recovery_ms,
                        },
                        known_incidents: a.knowledge.known_incidents().unwrap_or_default(),
                        model: model.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                        federated: federated.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                    };
                    let tmp = path.with_extension("json.tmp");
                    if let Err(e) = std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?).and_then(|()| std::fs::rename(&tmp, &path)) {
                        warn!(%e, "cannot write {}", path.display());
                    }
                    *last_status.lock().unwrap_or_else(|p| p.into_inner()) = Some(file);
                }
                Ok(NodeEvent::AnomalyDetected { anomaly, new: true, .. }) => {
                    warn!(kind = %anomaly.kind, subject = %anomaly.subject, severity = %anomaly.severity, "anomaly");
                    // What the other detectors found labels the neighbourhood for federated
                    // rounds (GraphSAGE's own findings would only teach it what it thinks).
                    let seen_by_others = anomaly.detector.split('+').any(|d| d != "graphsage");
                    if let Some(g) = graph.as_ref().filter(|_| seen_by_others) {
                        g.label(&anomaly);
                    }
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
    a.mesh.shutdown().await;
    handle.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    a.supervisor.stop_all().await;
    Ok(())
}

/// Peers' feature reports on `x0tta/features/1`, verified under the identity each proved on
/// its link, into the GraphSAGE detector's neighbourhood.
async fn feature_reports(graph: Arc<GraphDetector>, mesh: P2pTransport) {
    let mut sub = match mesh.subscribe(FEATURES_TOPIC).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%e, "not subscribed to {FEATURES_TOPIC}: GraphSAGE sees only this node");
            return;
        }
    };
    let verifier = mesh.records().clone();
    while let Some(m) = sub.next().await {
        match Report::open(&m.payload, &verifier) {
            Ok(r) => {
                graph.heard(r);
            }
            Err(e) => tracing::debug!(from = %m.from, %e, "feature report refused"),
        }
    }
}

/// Federated rounds on the policy's interval: the node's labelled neighbourhoods as data,
/// each round's model installed in the detector and written as the next `patterns.bin`.
async fn federated_rounds(
    graph: Arc<GraphDetector>,
    mesh: P2pTransport,
    identity: x0tta_pqc::NodeIdentity,
    cfg: NodeConfig,
    policy: x0tta_core::PolicyHandle,
    status: Arc<Mutex<Option<crate::model::ModelInfo>>>,
    last_round: Arc<Mutex<Option<FederatedStatus>>>,
) {
    let model = match graph.model() {
        Ok(m) => m,
        Err(e) => {
            warn!(%e, "no federated rounds: the model cannot be copied");
            return;
        }
    };
    let transport: Arc<dyn Transport> = Arc::new(mesh.clone());
    let verifier: Arc<dyn x0tta_core::Verifier> = Arc::new(mesh.records().clone());
    let signer: Arc<dyn x0tta_core::Signer> = Arc::new(identity.clone());
    let mut p =
        match Participant::new(model, FlConfig::default(), transport, signer, verifier).await {
            Ok(p) => p,
            Err(e) => {
                warn!(%e, "no federated rounds");
                return;
            }
        };
    let done = p
        .run(
            &policy,
            || graph.examples(),
            |model, r| {
                info!(
                    round = r.round,
                    rule = r.rule.name(),
                    published = r.published,
                    accepted = r.accepted,
                    refused = r.refused,
                    combined = r.combined,
                    step_norm = r.step_norm,
                    skipped = r.skipped.as_deref().unwrap_or(""),
                    "federated round"
                );
                *last_round.lock().unwrap_or_else(|p| p.into_inner()) = Some(FederatedStatus {
                    round: r.round,
                    rule: r.rule.name().into(),
                    published: r.published,
                    accepted: r.accepted,
                    refused: r.refused,
                    combined: r.combined,
                    step_norm: r.step_norm,
                });
                if r.combined == 0 {
                    return;
                }
                match model.try_clone() {
                    Ok(m) => graph.set_model(m),
                    Err(e) => warn!(%e, "the round's model not installed"),
                }
                match crate::model::write_next(&cfg, &identity, model) {
                    Ok(info) => *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(info),
                    Err(e) => warn!("the round's patterns.bin not written: {e:#}"),
                }
            },
        )
        .await;
    if let Err(e) = done {
        warn!(%e, "federated rounds stopped");
    }
}

/// Interval of knowledge anti-entropy with one live neighbour (round robin).
const ANTI_ENTROPY: Duration = Duration::from_secs(15);
/// Longest one anti-entropy exchange may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Keeps the replicated knowledge converged: syncs with a neighbour as soon as it comes up
/// (a restarted or reconnected node catches up at once) and with one live neighbour every
/// [`ANTI_ENTROPY`] (what gossip dropped is repaired). Runs until the transport closes.
async fn anti_entropy(
    replicator: x0tta_knowledge::Replicator,
    mesh: P2pTransport,
    telemetry: Telemetry,
) {
    let mut events = mesh.events();
    let mut tick = tokio::time::interval(ANTI_ENTROPY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0usize;
    loop {
        let peer = tokio::select! {
            _ = tick.tick() => {
                let up: Vec<_> = mesh
                    .neighbours()
                    .await
                    .into_iter()
                    .filter(|n| n.state == PeerState::Up && mesh.pq_authenticated(&n.id))
                    .map(|n| n.id)
                    .collect();
                if up.is_empty() {
                    continue;
                }
                turn = turn.wrapping_add(1);
                up[turn % up.len()].clone()
            }
            ev = events.next() => match ev {
                Some(MeshEvent::PeerUp(p)) if mesh.pq_authenticated(&p) => p,
                Some(_) => continue,
                None => break,
            },
        };
        // Each request has its own timeout; the whole exchange is bounded too, so one slow
        // peer cannot hold the loop.
        let synced = tokio::time::timeout(4 * SYNC_TIMEOUT, replicator.sync(&peer, SYNC_TIMEOUT))
            .await
            .unwrap_or_else(|_| {
                Err(x0tta_knowledge::ReplicationError::Transport(
                    x0tta_core::TransportError::Timeout(peer.clone()),
                ))
            });
        if let Ok(r) = &synced {
            telemetry.synced(r);
        }
        match synced {
            Ok(r) if r.incidents_added > 0 || r.refused > 0 || r.update_bytes_sent > 2 => info!(
                %peer,
                incidents_added = r.incidents_added,
                refused = r.refused,
                missing = r.missing,
                received = r.update_bytes_received,
                sent = r.update_bytes_sent,
                "knowledge synced"
            ),
            Ok(_) => {}
            Err(e) => warn!(%peer, %e, "knowledge sync failed"),
        }
    }
}

/// Interval of the mesh heartbeat each node gossips (presence and gossip latency).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Appends every mesh event and received heartbeat to `path` (JSON lines), and gossips this
/// node's own heartbeat. Runs until the transport closes.
async fn log_mesh(mesh: P2pTransport, path: std::path::PathBuf) {
    use std::io::Write as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    let Ok(mut file) = file else {
        warn!("cannot open {}", path.display());
        return;
    };
    let mut write = move |e: MeshLogEntry| {
        if let Ok(line) = serde_json::to_string(&e) {
            let _ = writeln!(file, "{line}");
        }
    };
    let mut events = mesh.events();
    let Ok(mut beats) = mesh.subscribe(HEARTBEAT_TOPIC).await else {
        return;
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                let beat = serde_json::json!({ "seq": seq, "sent_ms": now_ms() });
                let _ = mesh.publish(HEARTBEAT_TOPIC, beat.to_string().into_bytes()).await;
            }
            ev = events.next() => {
                let Some(ev) = ev else { break };
                let (event, peer) = match ev {
                    MeshEvent::PeerUp(p) => ("peer_up", Some(p.to_string())),
                    MeshEvent::PeerSuspect(p) => ("peer_suspect", Some(p.to_string())),
                    MeshEvent::PeerDown(p) => ("peer_down", Some(p.to_string())),
                    MeshEvent::Partitioned { .. } => ("partitioned", None),
                    MeshEvent::Healed => ("healed", None),
                    _ => continue,
                };
                write(MeshLogEntry { at_ms: now_ms(), event: event.into(), peer, latency_ms: None });
            }
            msg = beats.next() => {
                let Some(msg) = msg else { break };
                let sent = serde_json::from_slice::<serde_json::Value>(&msg.payload)
                    .ok()
                    .and_then(|v| v.get("sent_ms").and_then(serde_json::Value::as_i64));
                if let Some(sent) = sent {
                    write(MeshLogEntry {
                        at_ms: now_ms(),
                        event: "heartbeat".into(),
                        peer: Some(msg.from.to_string()),
                        latency_ms: Some((now_ms() - sent) as f64),
                    });
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(Timestamp::now().as_millis()).unwrap_or(i64::MAX)
}

/// `status`: asks the running node through its API; with no node answering, shows the state
/// the last run left in `<storage>/status.json`.
pub(crate) async fn status(config: &Path, json: bool) -> Result<()> {
    let cfg = NodeConfig::load(config)?;
    let client = crate::api::Client::for_config(config)?;
    let (view, source) = match client.get("/api/v1/status").await {
        Ok(v) => {
            if json {
                println!("{v}");
                return Ok(());
            }
            (serde_json::from_value::<StatusView>(v)?, None)
        }
        // Nothing listens: the node is not running.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some() => {
            let path = status_path(&cfg);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no node answers at {} and there is no status at {} (has the node run?)",
                    client.addr(),
                    path.display()
                )
            })?;
            let f: StatusFile = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            if json {
                println!("{}", serde_json::to_string(&f)?);
                return Ok(());
            }
            let age = Timestamp::now().since(f.updated_at);
            let view = StatusView {
                node: f.node,
                pid: f.pid,
                uptime_s: 0,
                policy_version: f.status.policy_version,
                status: f.status,
                listen: f.listen,
                connections: f.mesh.connections,
                gossip_received: f.mesh.gossip_received,
                known_incidents: f.known_incidents,
                services: f.services,
                neighbours: f.neighbours,
            };
            (view, Some(age))
        }
        Err(e) => return Err(e),
    };
    println!(
        "node        {} ({})",
        view.node,
        cfg.node_config.identity.spiffe_id()
    );
    match source {
        None => println!(
            "process     {} (running for {} s; API {})",
            view.pid,
            view.uptime_s,
            client.addr()
        ),
        Some(age) => println!(
            "process     {} (not running; its last state, {:.0} s old)",
            view.pid,
            age.as_secs_f64()
        ),
    }
    let s = &view.status;
    println!("policy      v{}", view.policy_version);
    println!("cycles      {}", s.cycles);
    println!("anomalies   {} active", s.active_anomalies);
    println!(
        "incidents   {} recorded here, {} known (with those replicated from peers)",
        s.incidents, view.known_incidents
    );
    println!(
        "heals       {} ok, {} failed, {} escalated",
        s.heals_succeeded, s.heals_failed, s.escalations
    );
    for addr in &view.listen {
        println!("listen      {addr}");
    }
    println!(
        "mesh        {} connections, {} gossip received",
        view.connections, view.gossip_received
    );
    for n in &view.neighbours {
        let rtt = n.rtt_ms.map_or("-".to_string(), |r| format!("{r:.1} ms"));
        let offset = n
            .clock_offset_ms
            .map_or("-".to_string(), |o| format!("{o:+} ms"));
        println!(
            "neighbour   {} {:?} rtt {rtt} loss {:.0}% clock {offset}",
            n.id,
            n.state,
            n.loss * 100.0
        );
    }
    for (name, pid) in &view.services {
        match pid {
            Some(p) => println!("service     {name}: running (pid {p})"),
            None => println!("service     {name}: down"),
        }
    }
    Ok(())
}
