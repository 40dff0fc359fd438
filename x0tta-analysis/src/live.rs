//! The GraphSAGE patterns in a running node (feature `graph`): each node's ten features from
//! its own observations, signed reports of them gossiped on [`FEATURES_TOPIC`], the 2-hop
//! neighbourhood they describe, and [`GraphDetector`], a core [`Detector`] that classifies
//! it every cycle. The incidents a node records label its neighbourhood as it was, and those
//! labelled snapshots are the node's data for federated rounds.
//!
//! The features are those of the simulated scenarios the patterns are trained on
//! (`scenario::FEATURE_NAMES`): CPU and memory as fractions, inbound traffic against its own
//! running level, the share of neighbours not up, mean and largest RTT, largest loss, median
//! and largest clock offset, and the memory trend over the last ten observations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use x0tta_core::{
    Anomaly, AnomalyKind, Detector, Evidence, Neighbour, NodeId, Observation, PeerState, Policy,
    Severity, Signer, Subject, Verifier, names,
};

use crate::graph::{Graph, GraphError, GraphSage, Labelled};
use crate::sealed::{self, SealError};

/// Features per node report.
pub const FEATURES: usize = 10;
/// Their names, in order.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "cpu",
    "memory",
    "inbound",
    "down",
    "rtt_mean",
    "rtt_max",
    "loss_max",
    "offset_median",
    "offset_max",
    "memory_trend",
];
/// The anomaly kind of each class the patterns tell apart (class 0: normal).
pub const CLASS_KINDS: [Option<AnomalyKind>; 8] = [
    None,
    Some(AnomalyKind::NodeFailure),
    Some(AnomalyKind::LinkDegraded),
    Some(AnomalyKind::CpuOverload),
    Some(AnomalyKind::MemoryPressure),
    Some(AnomalyKind::NetworkPartition),
    Some(AnomalyKind::ClockSkew),
    Some(AnomalyKind::ByzantinePeer),
];
/// The gossip topic of feature reports.
pub const FEATURES_TOPIC: &str = "x0tta/features/1";
/// Signing context of a feature report.
pub const FEATURES_CONTEXT: &[u8] = b"x0tta/features/v1";
/// Largest sealed report accepted, in bytes.
pub const MAX_REPORT_BYTES: usize = 16 * 1024;
/// Neighbours a report lists at most.
pub const MAX_LISTED: usize = 64;
/// Reports a node keeps at most (one per node heard from).
pub const MAX_REPORTS: usize = 4096;
/// Labelled snapshots a node keeps for federated rounds (the oldest go first).
pub const MAX_EXAMPLES: usize = 64;

/// The class of an anomaly kind, if the patterns know it.
pub fn class_of(kind: AnomalyKind) -> Option<u32> {
    CLASS_KINDS
        .iter()
        .position(|k| *k == Some(kind))
        .map(|c| c as u32)
}

/// The six features a node's neighbour table gives: the share of neighbours not up, mean and
/// largest RTT of those up (in 100 ms, at most 5), the largest loss, the median and largest
/// clock offset (in 2 s, at most 5).
pub fn mesh_features(table: &[Neighbour]) -> [f32; 6] {
    let n = table.len().max(1) as f32;
    let down = table.iter().filter(|p| p.state != PeerState::Up).count() as f32 / n;
    let rtts: Vec<f64> = table
        .iter()
        .filter(|p| p.state == PeerState::Up)
        .filter_map(|p| p.rtt_ms)
        .collect();
    let rtt_mean = if rtts.is_empty() {
        0.0
    } else {
        rtts.iter().sum::<f64>() / rtts.len() as f64
    };
    let rtt_max = rtts.iter().copied().fold(0.0, f64::max);
    let loss_max = table.iter().map(|p| p.loss).fold(0.0, f64::max);
    let mut offsets: Vec<i64> = table
        .iter()
        .filter_map(|p| p.clock_offset_ms.map(i64::abs))
        .collect();
    offsets.sort_unstable();
    let off = |ms: i64| (ms.min(10_000) as f32) / 2000.0;
    [
        down,
        ((rtt_mean / 100.0).min(5.0)) as f32,
        ((rtt_max / 100.0).min(5.0)) as f32,
        loss_max as f32,
        offsets.get(offsets.len() / 2).copied().map_or(0.0, off),
        offsets.last().copied().map_or(0.0, off),
    ]
}

/// The ten features from the host's (CPU and memory as fractions, inbound traffic as a
/// multiple of its usual level, the memory trend) and the neighbour table.
pub fn features(
    cpu: f32,
    memory: f32,
    inbound: f32,
    trend: f32,
    table: &[Neighbour],
) -> [f32; FEATURES] {
    let m = mesh_features(table);
    let inbound = (inbound / 4.0).min(2.5);
    [
        cpu, memory, inbound, m[0], m[1], m[2], m[3], m[4], m[5], trend,
    ]
}

/// The memory-trend feature: the change of memory use over the last `span` readings, ×4,
/// within ±1. The simulated hosts and a live node compute it alike.
#[derive(Debug, Default)]
pub(crate) struct MemoryTrend {
    values: VecDeque<f32>,
}

impl MemoryTrend {
    /// Adds a reading, keeping the last `span`.
    pub(crate) fn push(&mut self, memory: f32, span: usize) {
        while self.values.len() >= span.max(1) {
            self.values.pop_front();
        }
        self.values.push_back(memory);
    }

    /// The trend over the readings kept.
    pub(crate) fn value(&self) -> f32 {
        match (self.values.front(), self.values.back()) {
            (Some(a), Some(b)) => ((b - a) * 4.0).clamp(-1.0, 1.0),
            _ => 0.0,
        }
    }
}

/// Why a feature report was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// Bigger than [`MAX_REPORT_BYTES`].
    #[error("report of {0} bytes, more than the {MAX_REPORT_BYTES} accepted")]
    TooLarge(usize),
    /// Not the canonical encoding of a report.
    #[error("malformed report: {0}")]
    Malformed(String),
    /// The signature does not verify, or the signer is not the node reported on.
    #[error("report rejected: {0}")]
    Rejected(String),
    /// Wrong number of features, a value that is not finite, too many neighbours.
    #[error("report out of bounds: {0}")]
    OutOfBounds(String),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] GraphError),
}

impl From<SealError> for LiveError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::TooLarge { len, .. } => Self::TooLarge(len),
            SealError::Malformed(m) => Self::Malformed(m),
            SealError::Rejected(m) => Self::Rejected(m),
        }
    }
}

/// One node's features at one time, and whom it counts as neighbours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The node.
    pub node: NodeId,
    /// When (ms since the Unix epoch).
    pub at: u64,
    /// [`FEATURES`] values, in [`FEATURE_NAMES`] order.
    pub features: Vec<f32>,
    /// Its neighbours (at most [`MAX_LISTED`]).
    pub neighbours: Vec<NodeId>,
}

impl Report {
    fn check(&self) -> Result<(), LiveError> {
        if self.features.len() != FEATURES {
            return Err(LiveError::OutOfBounds(format!(
                "{} features, expected {FEATURES}",
                self.features.len()
            )));
        }
        if self.features.iter().any(|x| !x.is_finite()) {
            return Err(LiveError::OutOfBounds("a feature is not finite".into()));
        }
        if self.neighbours.len() > MAX_LISTED {
            return Err(LiveError::OutOfBounds(format!(
                "{} neighbours listed, at most {MAX_LISTED}",
                self.neighbours.len()
            )));
        }
        Ok(())
    }

    /// Signs it with `signer` (who must be the node it is about).
    pub fn seal(&self, signer: &dyn Signer) -> Result<Vec<u8>, LiveError> {
        self.check()?;
        if signer.node_id() != &self.node {
            return Err(LiveError::Rejected(format!(
                "{} cannot sign a report about {}",
                signer.node_id(),
                self.node
            )));
        }
        Ok(sealed::seal(
            self,
            signer,
            FEATURES_CONTEXT,
            MAX_REPORT_BYTES,
        )?)
    }

    /// Opens a sealed report: bounded, canonical, signed by a key `verifier` trusts, by the
    /// node it is about, with finite features.
    pub fn open(bytes: &[u8], verifier: &dyn Verifier) -> Result<Self, LiveError> {
        let (r, signer): (Report, NodeId) =
            sealed::open(bytes, verifier, FEATURES_CONTEXT, MAX_REPORT_BYTES)?;
        if r.node != signer {
            return Err(LiveError::Rejected(format!(
                "{signer} signed a report about {}",
                r.node
            )));
        }
        r.check()?;
        Ok(r)
    }
}

/// This node's own features over time: inbound traffic needs its usual level, the memory
/// trend its recent values.
#[derive(Debug, Default)]
pub struct FeatureTracker {
    inbound_level: Option<f64>,
    memory: MemoryTrend,
}

/// Observations the memory trend spans.
const TREND_POINTS: usize = 10;

impl FeatureTracker {
    /// The ten features of `obs` (missing host metrics count as 0).
    pub fn observe(&mut self, obs: &Observation) -> [f32; FEATURES] {
        let pct = |name| (obs.get(name).unwrap_or(0.0) / 100.0).clamp(0.0, 1.0) as f32;
        let (cpu, memory) = (pct(names::CPU_PERCENT), pct(names::MEMORY_PERCENT));
        let rx = obs
            .get(names::NET_RX_BPS)
            .filter(|x| x.is_finite() && *x >= 0.0);
        let inbound = match (rx, self.inbound_level) {
            (Some(x), Some(level)) if level > 0.0 => {
                self.inbound_level = Some(level + 0.05 * (x - level));
                (x / level) as f32
            }
            (Some(x), _) => {
                self.inbound_level = Some(x.max(1.0));
                1.0
            }
            (None, _) => 1.0,
        };
        self.memory.push(memory, TREND_POINTS);
        features(cpu, memory, inbound, self.memory.value(), &obs.neighbours)
    }
}

/// The latest report of every node heard from (bounded), and the 2-hop neighbourhood of this
/// node they describe.
#[derive(Debug)]
pub struct Neighbourhood {
    me: NodeId,
    reports: HashMap<NodeId, Report>,
    max_age_ms: u64,
}

impl Neighbourhood {
    /// Keeps reports for `max_age_ms` after they were made.
    pub fn new(me: NodeId, max_age_ms: u64) -> Self {
        Self {
            me,
            reports: HashMap::new(),
            max_age_ms,
        }
    }

    /// Keeps `r` if it is newer than what is held for its node; at the bound, the oldest
    /// report is dropped. Returns whether it was kept.
    pub fn insert(&mut self, r: Report) -> bool {
        if self.reports.get(&r.node).is_some_and(|old| old.at >= r.at) {
            return false;
        }
        if !self.reports.contains_key(&r.node) && self.reports.len() >= MAX_REPORTS {
            let oldest = self
                .reports
                .values()
                .min_by_key(|r| r.at)
                .map(|r| r.node.clone());
            if let Some(k) = oldest {
                self.reports.remove(&k);
            }
        }
        self.reports.insert(r.node.clone(), r);
        true
    }

    /// Reports held.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// The graph of this node (index 0), its neighbours and theirs, from reports made
    /// within `max_age_ms` of `now_ms`. A node without a fresh report is left out; an edge
    /// counts when either end lists the other.
    pub fn graph(&self, now_ms: u64) -> Result<(Graph, Vec<NodeId>), LiveError> {
        let fresh = |id: &NodeId| {
            self.reports
                .get(id)
                .filter(|r| now_ms.saturating_sub(r.at) <= self.max_age_ms)
        };
        let Some(me) = fresh(&self.me) else {
            return Err(LiveError::OutOfBounds(
                "no fresh report of this node".into(),
            ));
        };
        let mut ids = vec![self.me.clone()];
        let mut index: HashMap<&NodeId, usize> = HashMap::from([(&self.me, 0)]);
        let mut frontier = vec![me];
        for _ in 0..2 {
            let mut next = Vec::new();
            for r in frontier {
                for n in &r.neighbours {
                    if index.contains_key(n) {
                        continue;
                    }
                    if let Some(nr) = fresh(n) {
                        index.insert(&nr.node, ids.len());
                        ids.push(nr.node.clone());
                        next.push(nr);
                    }
                }
            }
            frontier = next;
        }
        let mut edges = HashSet::new();
        for (v, id) in ids.iter().enumerate() {
            if let Some(r) = fresh(id) {
                for n in &r.neighbours {
                    if let Some(&u) = index.get(n)
                        && u != v
                    {
                        edges.insert((v.min(u), v.max(u)));
                    }
                }
            }
        }
        let features = ids
            .iter()
            .map(|id| fresh(id).map(|r| r.features.clone()).unwrap_or_default())
            .collect();
        let mut edges: Vec<_> = edges.into_iter().collect();
        edges.sort_unstable();
        Ok((Graph::new(features, &edges)?, ids))
    }
}

struct State {
    tracker: FeatureTracker,
    hood: Neighbourhood,
    /// The neighbourhood as the last cycle saw it, to be labelled by its incidents.
    last: Option<(Graph, Vec<NodeId>)>,
    examples: VecDeque<Labelled>,
}

/// GraphSAGE over the node's live 2-hop neighbourhood, as one of core's [`Detector`]s.
///
/// Each cycle it computes the node's own [`Report`] from the observation (publish it with
/// [`own_report`](Self::own_report)), builds the neighbourhood from the reports heard
/// ([`heard`](Self::heard)) and classifies every node in it. It raises a LOW anomaly when
/// this node, or a direct neighbour, is in an abnormal class with probability at least
/// `threshold` (0.5): the class's kind, about the host (its own CPU, memory, clock or link),
/// the peer (a neighbour crashed, flooding or skewed), the link (degraded) or the mesh (a
/// partition). The anomaly's confidence is the probability.
///
/// Patterns trained only on the simulated mesh meet real hosts whose figures the simulator
/// never drew (loopback RTTs, busy machines): expect false alarms until federated rounds on
/// the node's own incidents have adapted them. That is why these anomalies are LOW (plan
/// templates act from MEDIUM by default).
///
/// [`label`](Self::label) turns the last neighbourhood into a labelled example from an
/// incident the node recorded; [`examples`](Self::examples) are the node's data for
/// federated rounds, and [`set_model`](Self::set_model) installs the model they produce.
pub struct GraphDetector {
    me: NodeId,
    model: RwLock<GraphSage>,
    threshold: f32,
    state: Mutex<State>,
}

impl std::fmt::Debug for GraphDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphDetector")
            .field("me", &self.me)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl GraphDetector {
    /// A detector for node `me` with `model`; reports older than `max_age_ms` are ignored.
    pub fn new(me: NodeId, model: GraphSage, max_age_ms: u64) -> Self {
        Self {
            state: Mutex::new(State {
                tracker: FeatureTracker::default(),
                hood: Neighbourhood::new(me.clone(), max_age_ms),
                last: None,
                examples: VecDeque::new(),
            }),
            me,
            model: RwLock::new(model),
            threshold: 0.5,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a peer's report (already opened with [`Report::open`]).
    pub fn heard(&self, r: Report) -> bool {
        r.node != self.me && self.lock().hood.insert(r)
    }

    /// This node's latest report, to publish.
    pub fn own_report(&self) -> Option<Report> {
        self.lock().hood.reports.get(&self.me).cloned()
    }

    /// Installs `model` (after a federated round).
    pub fn set_model(&self, model: GraphSage) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
    }

    /// A copy of the model in use.
    pub fn model(&self) -> Result<GraphSage, LiveError> {
        Ok(self
            .model
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()?)
    }

    /// Labels the last neighbourhood with `anomaly`, an incident this node recorded: its
    /// subject gets the kind's class (this node for its host and services and the mesh, the
    /// peer, or both ends of a link), everyone else normal. Kinds the patterns do not know are
    /// ignored. Returns whether an example was kept.
    pub fn label(&self, anomaly: &Anomaly) -> bool {
        let Some(class) = class_of(anomaly.kind) else {
            return false;
        };
        let mut st = self.lock();
        let Some((graph, ids)) = &st.last else {
            return false;
        };
        let mut labels = vec![0u32; ids.len()];
        let at = |id: &NodeId| ids.iter().position(|x| x == id);
        match &anomaly.subject {
            Subject::Peer(p) => match at(p) {
                Some(v) => labels[v] = class,
                None => return false,
            },
            Subject::Link(p) => {
                labels[0] = class;
                if let Some(v) = at(p) {
                    labels[v] = class;
                }
            }
            _ => labels[0] = class,
        }
        let example = Labelled {
            graph: graph.clone(),
            labels,
        };
        if st.examples.len() >= MAX_EXAMPLES {
            st.examples.pop_front();
        }
        st.examples.push_back(example);
        true
    }

    /// The labelled examples kept, oldest first.
    pub fn examples(&self) -> Vec<Labelled> {
        self.lock().examples.iter().cloned().collect()
    }
}

impl Detector for GraphDetector {
    fn name(&self) -> &str {
        "graphsage"
    }

    fn detect(&self, obs: &Observation, _policy: &Policy) -> Vec<Anomaly> {
        let now = obs.at.as_millis();
        let mut st = self.lock();
        let features = st.tracker.observe(obs);
        let own = Report {
            node: self.me.clone(),
            at: now,
            features: features.to_vec(),
            neighbours: obs
                .neighbours
                .iter()
                .take(MAX_LISTED)
                .map(|n| n.id.clone())
                .collect(),
        };
        st.hood.insert(own);
        let Ok((graph, ids)) = st.hood.graph(now) else {
            return Vec::new();
        };
        let probs = {
            let model = self.model.read().unwrap_or_else(|p| p.into_inner());
            model.probabilities(&graph, now)
        };
        st.last = Some((graph, ids.clone()));
        drop(st);
        let Ok(probs) = probs else {
            return Vec::new();
        };
        let direct: HashSet<&NodeId> = obs.neighbours.iter().map(|n| &n.id).collect();
        let mut out = Vec::new();
        for (v, p) in probs.iter().enumerate() {
            let Some((class, &prob)) = p
                .iter()
                .enumerate()
                .skip(1)
                .max_by(|a, b| a.1.total_cmp(b.1))
            else {
                continue;
            };
            if prob < self.threshold {
                continue;
            }
            let Some(kind) = CLASS_KINDS.get(class).copied().flatten() else {
                continue;
            };
            let subject = if v == 0 {
                match kind {
                    AnomalyKind::NetworkPartition => Subject::Mesh,
                    // A node that runs this is neither crashed nor, to itself, a flooder.
                    AnomalyKind::NodeFailure | AnomalyKind::ByzantinePeer => continue,
                    _ => Subject::Host,
                }
            } else if direct.contains(&ids[v]) {
                match kind {
                    AnomalyKind::LinkDegraded => Subject::Link(ids[v].clone()),
                    AnomalyKind::NodeFailure
                    | AnomalyKind::ByzantinePeer
                    | AnomalyKind::ClockSkew => Subject::Peer(ids[v].clone()),
                    // A neighbour's own host trouble is its own to report.
                    _ => continue,
                }
            } else {
                continue;
            };
            out.push(
                Anomaly::new(kind, Severity::Low, f64::from(prob), subject, "graphsage")
                    .with_evidence(Evidence {
                        signal: format!("graphsage.{}", ids[v]),
                        value: Some(f64::from(prob)),
                        reference: Some(f64::from(self.threshold)),
                        note: format!(
                            "GraphSAGE puts {} in class {} with probability {prob:.2} over a neighbourhood of {} nodes",
                            ids[v],
                            kind.as_str(),
                            ids.len()
                        ),
                    }),
            );
        }
        out
    }
}
