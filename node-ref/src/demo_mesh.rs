//! `demo mesh`: N real node processes on 127.0.0.1 form a mesh from one bootstrap entry over
//! the post-quantum libp2p transport; one is SIGKILLed, then restarted. Every figure comes from
//! the nodes' own event logs (`<storage>/mesh-events.jsonl`) and status files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use x0tta_pqc::NodeIdentity;

use crate::run::{MeshLogEntry, StatusFile};
use x0tta_analysis::rootcause::{
    Accusation, Candidate, Ranked as RankedCause, RootCause, evidence_from_accusations,
};
use x0tta_core::AnomalyKind;

/// A scratch directory removed when the demo ends.
struct DemoDir(PathBuf);

impl DemoDir {
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("x0tta-demo-mesh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo must end within this.
const LIMIT: Duration = Duration::from_secs(90);

struct Proc {
    child: Option<Child>,
    config: PathBuf,
    data: PathBuf,
    id: String,
}

impl Proc {
    fn spawn(&mut self, exe: &Path) -> Result<()> {
        let log = std::fs::File::create(self.data.with_extension("log"))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a node")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self) -> Option<StatusFile> {
        let text = std::fs::read_to_string(self.data.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn log(&self) -> Vec<MeshLogEntry> {
        std::fs::read_to_string(self.data.join("mesh-events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node_config(name: &str, port: u16, bootstrap: &Path) -> String {
    format!(
        r#"node_config:
  identity:
    name: {name}
    key_dir: keys
  network:
    listen: ["/ip4/127.0.0.1/tcp/{port}"]
    bootstrap: {boot}
    mdns: false
  mapk:
    intervals:
      cycle: 500ms
  storage:
    path: data
  api:
    listen: 127.0.0.1:0
"#,
        boot = bootstrap.display()
    )
}

fn now_ms() -> i64 {
    i64::try_from(x0tta_core::Timestamp::now().as_millis()).unwrap_or(i64::MAX)
}

fn percentile(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v.get(i).copied()
}

async fn wait_until(what: &str, deadline: Instant, mut f: impl FnMut() -> bool) -> Result<()> {
    let bar = crate::progress::spinner(what);
    while !f() {
        if Instant::now() > deadline {
            bar.finish_and_clear();
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    Ok(())
}

/// The culprit, ranked from what the nodes said about each other after `since_ms`: the
/// overlay from every node's status file (the dead one's is its last), each `peer_down` in
/// the event logs an accusation of NODE_FAILURE, its time the accuser's onset. Returns the
/// top candidate's node index and its evidence.
fn root_cause(procs: &[Proc], since_ms: i64) -> Result<(usize, String)> {
    let index = |id: &str| procs.iter().position(|p| p.id == id);
    let neighbours: Vec<Vec<usize>> = procs
        .iter()
        .map(|p| {
            p.status()
                .map(|s| {
                    s.neighbours
                        .iter()
                        .filter_map(|n| index(n.id.as_str()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let mut said = Vec::new();
    for (by, p) in procs.iter().enumerate() {
        for e in p
            .log()
            .iter()
            .filter(|e| e.event == "peer_down" && e.at_ms >= since_ms)
        {
            if let Some(about) = e.peer.as_deref().and_then(index) {
                said.push(Accusation {
                    by,
                    about,
                    kind: AnomalyKind::NodeFailure,
                    at: (e.at_ms - since_ms) as f64 / 1000.0,
                });
            }
        }
    }
    let evidence = evidence_from_accusations(&neighbours, &said);
    let ranked = RootCause::new().rank(&neighbours, &evidence, 3)?;
    match ranked.first() {
        Some(RankedCause {
            candidate: Candidate::Node(v),
            evidence,
            ..
        }) => Ok((*v, evidence.join("; "))),
        Some(other) => bail!("the root cause is a link, not a node: {other:?}"),
        None => bail!("no root cause: no node accused another"),
    }
}

/// Runs the scenario; prints progress and the summary line.
pub(crate) async fn demo(nodes: usize) -> Result<()> {
    if !(3..=32).contains(&nodes) {
        bail!("demo mesh takes 3 to 32 nodes, not {nodes}");
    }
    let started = Instant::now();
    let deadline = started + LIMIT;
    let exe = std::env::current_exe()?;
    let root = DemoDir::new()?;
    let boot = root.path().join("nodes.json");

    // Node 0's identity first: its PeerId goes into everyone's bootstrap list.
    let mut procs = Vec::new();
    for i in 0..nodes {
        let dir = root.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&dir)?;
        let name = format!("node-{i}");
        let spiffe = format!("spiffe://x0tta.local/{name}").parse()?;
        let id = NodeIdentity::load_or_generate(dir.join("keys"), &spiffe)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if i == 0 {
            let entry = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", id.peer_id());
            std::fs::write(&boot, serde_json::to_string(&[entry])?)?;
        }
        let config = dir.join("node.yaml");
        std::fs::write(&config, node_config(&name, port, &boot))?;
        procs.push(Proc {
            child: None,
            config,
            data: dir.join("data"),
            id: id.node_id().to_string(),
        });
    }
    println!("demo mesh: {nodes} node processes on 127.0.0.1, one bootstrap entry (node-0)");
    for p in &mut procs {
        p.spawn(&exe)?;
    }
    let formed_at = Instant::now();
    let all: Vec<String> = procs.iter().map(|p| p.id.clone()).collect();
    wait_until("the mesh to form", deadline, || {
        procs.iter().all(|p| {
            p.status().is_some_and(|s| {
                let up: HashSet<&str> = s.up_neighbours().collect();
                all.iter()
                    .filter(|id| **id != p.id)
                    .all(|id| up.contains(id.as_str()))
            })
        })
    })
    .await?;
    println!(
        "mesh formed: every node sees {} peers up after {} ms",
        nodes - 1,
        formed_at.elapsed().as_millis()
    );
    // Let heartbeats gossip for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let victim = nodes - 1;
    let victim_id = procs[victim].id.clone();
    let killed_at = now_ms();
    procs[victim].kill();
    println!("SIGKILL node-{victim} ({victim_id})");
    let survivors: Vec<usize> = (0..nodes).filter(|i| *i != victim).collect();
    let down_at = |p: &Proc| {
        p.log()
            .iter()
            .find(|e| {
                e.event == "peer_down"
                    && e.peer.as_deref() == Some(&victim_id)
                    && e.at_ms >= killed_at
            })
            .map(|e| e.at_ms)
    };
    wait_until("every survivor to mark the victim down", deadline, || {
        survivors.iter().all(|&i| down_at(&procs[i]).is_some())
    })
    .await?;
    let mttd: Vec<i64> = survivors
        .iter()
        .filter_map(|&i| down_at(&procs[i]).map(|t| t - killed_at))
        .collect();
    let mttd_max = mttd.iter().copied().max().unwrap_or(0);
    println!(
        "detected: all {} survivors marked node-{victim} down (fastest {} ms, slowest {} ms)",
        survivors.len(),
        mttd.iter().min().unwrap_or(&0),
        mttd_max
    );
    let (culprit, why) = root_cause(&procs, killed_at)?;
    let root_cause_correct = culprit == victim;
    println!("root cause: node-{culprit} ({why})");
    // Mesh recovery as each survivor's transport measured it (PeerDown → neighbour set
    // restored); wait for every survivor to report it.
    wait_until("every survivor's neighbour set to settle", deadline, || {
        survivors.iter().all(|&i| {
            procs[i]
                .status()
                .is_some_and(|s| s.mesh.last_recovery_ms.is_some())
        })
    })
    .await?;
    // Recovery: from the kill until the survivor has marked the victim down and its transport
    // has its neighbour set back (at `min_neighbours`, or every live peer when fewer exist).
    let recovery = survivors
        .iter()
        .filter_map(|&i| {
            let detected = down_at(&procs[i])? - killed_at;
            let settled = procs[i].status()?.mesh.last_recovery_ms?;
            Some(detected + i64::try_from(settled).unwrap_or(i64::MAX))
        })
        .max()
        .unwrap_or(0);

    // Restart the victim: it rejoins and every node sees it up again.
    let restarted = Instant::now();
    procs[victim].spawn(&exe)?;
    wait_until("the restarted node to rejoin", deadline, || {
        survivors.iter().all(|&i| {
            procs[i]
                .status()
                .is_some_and(|s| s.up_neighbours().any(|id| id == victim_id))
        })
    })
    .await?;
    let rejoin_ms = restarted.elapsed().as_millis();
    println!("node-{victim} restarted and rejoined in {rejoin_ms} ms");

    // False downs: a PeerDown for a peer that was alive at that moment.
    let mut false_downs = 0;
    let mut latencies = Vec::new();
    let mut per_node = BTreeMap::new();
    for (i, p) in procs.iter().enumerate() {
        let log = p.log();
        false_downs += log
            .iter()
            .filter(|e| e.event == "peer_down" && e.peer.as_deref() != Some(&victim_id))
            .count();
        let beats: Vec<f64> = log
            .iter()
            .filter(|e| e.event == "heartbeat")
            .filter_map(|e| e.latency_ms)
            .collect();
        let senders: HashSet<String> = log
            .iter()
            .filter(|e| e.event == "heartbeat")
            .filter_map(|e| e.peer.clone())
            .collect();
        per_node.insert(i, senders.len());
        latencies.extend(beats);
    }
    let p50 = percentile(latencies.clone(), 0.5).unwrap_or(f64::NAN);
    let p99 = percentile(latencies.clone(), 0.99).unwrap_or(f64::NAN);
    println!(
        "gossip: {} heartbeats received, p50 {p50:.1} ms, p99 {p99:.1} ms",
        latencies.len()
    );
    // Gossip reached everyone: each node heard heartbeats from every other node.
    if let Some((i, heard)) = per_node.iter().find(|(_, heard)| **heard < nodes - 1) {
        bail!(
            "node-{i} heard heartbeats from only {heard} of {} peers",
            nodes - 1
        );
    }
    // Knowledge: every node ends up holding every incident any node recorded (incident
    // gossip, then anti-entropy when the restarted node came back), each envelope verified.
    let converging = Instant::now();
    let mut held = Vec::new();
    wait_until(
        "every node to hold every recorded incident",
        deadline,
        || {
            let Some(statuses) = procs.iter().map(Proc::status).collect::<Option<Vec<_>>>() else {
                return false;
            };
            let recorded: u64 = statuses.iter().map(|s| s.status.incidents).sum();
            held = statuses.iter().map(|s| s.known_incidents).collect();
            held.iter().all(|h| *h == held[0] && *h >= recorded)
        },
    )
    .await?;
    let knowledge_ms = converging.elapsed().as_millis();
    println!(
        "knowledge: every node holds the same {} verified incidents ({knowledge_ms} ms after the rejoin check)",
        held.first().copied().unwrap_or(0)
    );
    for p in &mut procs {
        p.kill();
    }
    println!(
        "summary: scenario=mesh nodes={nodes} root_cause_correct={root_cause_correct} mttd_ms={mttd_max} recovery_ms={recovery} false_downs={false_downs} gossip_p99_ms={p99:.0} gossip_p50_ms={p50:.0} rejoin_ms={rejoin_ms} incidents_everywhere={} knowledge_converged_ms={knowledge_ms}",
        held.first().copied().unwrap_or(0)
    );
    if false_downs > 0 {
        bail!("{false_downs} live peers were declared down");
    }
    Ok(())
}
