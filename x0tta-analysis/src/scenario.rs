//! Labelled fault scenarios from the simulated mesh (feature `eval`): the data GraphSAGE is
//! trained and scored on, and the root-cause ranker judged by.
//!
//! A scenario is one seeded run of x0tta-mesh's [`SimNetwork`]: `nodes` nodes running the real
//! SWIM failure detector over an overlay of average degree `degree`, a warm-up, then one
//! injected fault and an observation period. Every `tick` each node reports its features, the
//! way a node would gossip them:
//!
//! | # | feature | source |
//! |---|---|---|
//! | 0 | CPU use, 0..1 | host model |
//! | 1 | memory use, 0..1 | host model |
//! | 2 | inbound traffic, relative to the node's own normal, ÷ 4 | host model |
//! | 3 | share of its overlay neighbours not `Up` (suspect, down) | SWIM |
//! | 4 | mean RTT to its live neighbours, ÷ 100 ms | SWIM |
//! | 5 | largest RTT to a live neighbour, ÷ 100 ms | SWIM |
//! | 6 | largest loss ratio to a neighbour | SWIM |
//! | 7 | median \|clock offset\| to its neighbours, ÷ 2 s | SWIM |
//! | 8 | largest \|clock offset\| to a neighbour, ÷ 2 s | SWIM |
//! | 9 | memory trend: change over the last 5 s, × 4 | host model |
//!
//! The mesh figures are the real detector's neighbour table. The simulator has no hosts, so
//! CPU, memory and traffic come from a seeded host model: each node has its own normal level,
//! AR(1) noise and, in every scenario, benign bursts (CPU up to 0.8 for a few seconds, memory
//! swings) that a detector must not mistake for faults.
//!
//! Faults ([`Fault`]), and what the injector records as the label:
//! - **node crash** ([`SimNetwork::crash`]): the victim goes silent, so its last report (a
//!   normal one) is all anyone has of it; only its neighbours' views show it;
//! - **link degradation** ([`SimNetwork::set_link`], 30–45 ms one way, 25–50% loss): both
//!   ends are labelled, the culprit is the link;
//! - **CPU hog** and **memory leak** on one node's host;
//! - **partition** ([`SimNetwork::partition`]) cutting a connected region of 3–5 nodes off the
//!   mesh: the region is labelled, and is the culprit;
//! - **clock skew** ([`SimNetwork::set_clock_skew`], ±1.5–8 s) on one node;
//! - **Byzantine flooder**: one node floods its neighbours (junk frames through
//!   [`SimNetwork::inject`], and 3–8× their normal inbound traffic in the host model) while
//!   reporting normal figures about itself.
//!
//! Everything is deterministic from the seed (tokio's paused clock drives the mesh).
//!
//! ```no_run
//! use x0tta_analysis::scenario::{self, Fault, ScenarioConfig};
//! let s = scenario::run(7, Fault::NodeCrash, &ScenarioConfig::default())?;
//! assert_eq!(s.labels.iter().filter(|&&l| l != 0).count(), 1);
//! # Ok::<(), x0tta_analysis::scenario::ScenarioError>(())
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use x0tta_core::{AnomalyKind, InvalidId, NodeId, PeerState, Transport};
use x0tta_mesh::sim::{LinkSpec, SimConfig, SimError, SimNetwork};

use crate::graph::{Graph, GraphError, GraphSage, Labelled, SageConfig};
use crate::rootcause::{Candidate, NodeEvidence};

pub use crate::live::{FEATURE_NAMES, FEATURES};
/// Classes: normal plus one per fault.
pub const CLASSES: usize = Fault::ALL.len();

/// One node's report: [`FEATURES`] values.
pub type Report = [f32; FEATURES];

/// The fault a scenario injects; its class index is its position in [`Fault::ALL`], and
/// class 0 ([`Fault::None`]) is "normal".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Nothing injected.
    None,
    /// A node crashes.
    NodeCrash,
    /// One link gets slow and lossy.
    LinkDegraded,
    /// A process eats a node's CPU.
    CpuHog,
    /// A process leaks a node's memory.
    MemoryLeak,
    /// A region is cut off the mesh.
    Partition,
    /// A node's clock jumps.
    ClockSkew,
    /// A node floods its neighbours and lies about itself.
    Flooder,
}

impl Fault {
    /// Every fault, in class order.
    pub const ALL: [Fault; 8] = [
        Self::None,
        Self::NodeCrash,
        Self::LinkDegraded,
        Self::CpuHog,
        Self::MemoryLeak,
        Self::Partition,
        Self::ClockSkew,
        Self::Flooder,
    ];

    /// Its class index.
    pub fn class(self) -> u32 {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0) as u32
    }

    /// The fault of class `c`.
    pub fn from_class(c: u32) -> Option<Self> {
        Self::ALL.get(c as usize).copied()
    }

    /// The anomaly kind a node in this state shows (`None` for normal).
    pub fn kind(self) -> Option<AnomalyKind> {
        Some(match self {
            Self::None => return None,
            Self::NodeCrash => AnomalyKind::NodeFailure,
            Self::LinkDegraded => AnomalyKind::LinkDegraded,
            Self::CpuHog => AnomalyKind::CpuOverload,
            Self::MemoryLeak => AnomalyKind::MemoryPressure,
            Self::Partition => AnomalyKind::NetworkPartition,
            Self::ClockSkew => AnomalyKind::ClockSkew,
            Self::Flooder => AnomalyKind::ByzantinePeer,
        })
    }

    /// A short name (`node_crash`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "normal",
            Self::NodeCrash => "node_crash",
            Self::LinkDegraded => "link_degraded",
            Self::CpuHog => "cpu_hog",
            Self::MemoryLeak => "memory_leak",
            Self::Partition => "partition",
            Self::ClockSkew => "clock_skew",
            Self::Flooder => "flooder",
        }
    }
}

/// What the injector broke: the answer root-cause ranking is scored against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// Nothing (a [`Fault::None`] scenario).
    None,
    /// One node (crash, hog, leak, skew, flooder).
    Node(usize),
    /// One link, `(low, high)` node indices.
    Link(usize, usize),
    /// A region cut off: any of its nodes names it.
    Region(Vec<usize>),
}

impl Culprit {
    /// Whether the ranker's `candidate` names this culprit (any node of a region does).
    pub fn named_by(&self, candidate: &Candidate) -> bool {
        match (self, candidate) {
            (Self::Node(v), Candidate::Node(u)) => v == u,
            (Self::Link(a, b), Candidate::Link(x, y)) => (a, b) == (x, y),
            (Self::Region(r), Candidate::Node(u)) => r.contains(u),
            _ => false,
        }
    }

    /// Whether node `v` is part of it: the node, an end of the link, a node of the region
    /// (how a baseline that can only name nodes is scored).
    pub fn involves(&self, v: usize) -> bool {
        match self {
            Self::Node(u) => *u == v,
            Self::Link(a, b) => *a == v || *b == v,
            Self::Region(r) => r.contains(&v),
            Self::None => false,
        }
    }
}

/// Shape and timing of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Average overlay degree.
    pub degree: usize,
    /// Simulated time before the fault.
    pub warmup: Duration,
    /// Simulated time after it.
    pub observe: Duration,
    /// How often every node reports.
    pub tick: Duration,
    /// The harder variant: each scenario draws its own mesh size (15–60 nodes, instead of
    /// `nodes`) and degree (4–8), and at the fault three distractors start elsewhere, all
    /// labelled normal: a CPU burst to 0.75–0.85 on another node, a link losing 10–20% of its
    /// messages, and a 0.2–0.8 s clock step on a third node.
    pub hard: bool,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        Self {
            nodes: 30,
            degree: 6,
            warmup: Duration::from_secs(10),
            observe: Duration::from_secs(12),
            tick: Duration::from_millis(500),
            hard: false,
        }
    }
}

/// A scenario could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The simulated mesh refused a control.
    #[error("simulated mesh: {0}")]
    Sim(#[from] SimError),
    /// A configuration that cannot work.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// A node id was refused.
    #[error("node id: {0}")]
    Id(#[from] InvalidId),
}

/// One run: the overlay, every tick's reports and the injector's record.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The seed it ran with.
    pub seed: u64,
    /// What was injected.
    pub fault: Fault,
    /// What was broken.
    pub culprit: Culprit,
    /// Overlay links, `(low, high)`.
    pub edges: Vec<(usize, usize)>,
    /// Each node's class at the end (0 normal, else [`Fault::class`]).
    pub labels: Vec<u32>,
    /// Reports, per tick, per node. A silent node's last report stands.
    pub reports: Vec<Vec<Report>>,
    /// The first tick after the fault.
    pub fault_tick: usize,
    /// Time between ticks.
    pub tick: Duration,
}

/// When a node first alarmed after the fault, by the fixed thresholds of [`alarm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Onset {
    /// Ticks after the fault.
    pub tick: usize,
    /// How far past the thresholds it was then (sum of the excesses).
    pub magnitude: f32,
}

/// The threshold alarm a node raises on its own report, and its magnitude (`None`: quiet).
/// The thresholds: CPU or memory above 0.85, inbound traffic above twice normal, any
/// neighbour not up, an RTT above 50 ms, loss above 20%, a clock offset above 1 s, memory
/// growing by more than 17.5 points in 5 s.
pub fn alarm(r: &Report) -> Option<f32> {
    const LIMITS: Report = [0.85, 0.85, 0.5, 0.0, 0.5, 0.5, 0.2, 0.5, 0.5, 0.7];
    let excess: f32 = r
        .iter()
        .zip(LIMITS)
        .map(|(v, l)| if *v > l { v - l } else { 0.0 })
        .sum();
    (excess > 0.0).then_some(excess)
}

impl Scenario {
    /// Nodes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it has no node (never, once run).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The last tick's reports: what a model classifies.
    pub fn last(&self) -> &[Report] {
        self.reports.last().map_or(&[], Vec::as_slice)
    }

    /// Every node's neighbours.
    pub fn neighbours(&self) -> Vec<Vec<usize>> {
        adjacency(self.len(), &self.edges)
    }

    /// The last tick's reports on the overlay, with the injector's labels: one training or
    /// test example for [`GraphSage`].
    pub fn labelled(&self) -> Result<Labelled, GraphError> {
        Ok(Labelled {
            graph: Graph::new(
                self.last().iter().map(|r| r.to_vec()).collect(),
                &self.edges,
            )?,
            labels: self.labels.clone(),
        })
    }

    /// Evidence for the root-cause ranker: a classifier's class probabilities for every node
    /// (in class order, as [`GraphSage::probabilities`] gives them) with each node's alarm
    /// onset, in seconds after the fault.
    pub fn evidence(&self, probabilities: &[Vec<f32>]) -> Vec<NodeEvidence> {
        probabilities
            .iter()
            .zip(self.onsets())
            .map(|(p, onset)| NodeEvidence {
                kinds: p
                    .iter()
                    .enumerate()
                    .filter_map(|(c, &q)| {
                        let kind = Fault::from_class(c as u32)?.kind()?;
                        Some((kind, q.clamp(0.0, 1.0)))
                    })
                    .collect(),
                onset: onset.map(|o| o.tick as f64 * self.tick.as_secs_f64()),
            })
            .collect()
    }

    /// The "earliest alarm" baseline's answer: the node that alarmed first after the fault
    /// (ties: the larger excess).
    pub fn earliest_alarm(&self) -> Option<usize> {
        let onsets: Vec<Option<(f64, f64)>> = self
            .onsets()
            .iter()
            .map(|o| o.map(|o| (o.tick as f64, f64::from(o.magnitude))))
            .collect();
        crate::rootcause::earliest_alarm(&onsets)
    }

    /// Each node's first alarm at or after the fault tick.
    pub fn onsets(&self) -> Vec<Option<Onset>> {
        (0..self.len())
            .map(|v| {
                self.reports
                    .iter()
                    .enumerate()
                    .skip(self.fault_tick)
                    .find_map(|(t, tick)| {
                        alarm(&tick[v]).map(|magnitude| Onset {
                            tick: t - self.fault_tick,
                            magnitude,
                        })
                    })
            })
            .collect()
    }
}

/// The model shape the scenarios fit: [`FEATURES`] inputs, 32 hidden, [`CLASSES`] outputs,
/// 10 and 5 sampled neighbours; `use_graph: false` is the no-graph baseline.
pub fn sage_config(use_graph: bool) -> SageConfig {
    SageConfig {
        features: FEATURES,
        hidden: 32,
        classes: CLASSES,
        samples: [10, 5],
        use_graph,
    }
}

/// `model`'s macro-F1 and per-class F1 over every node of `data` (neighbours sampled with
/// each example's index as seed).
pub fn evaluate(model: &GraphSage, data: &[Labelled]) -> Result<(f64, Vec<f64>), GraphError> {
    let mut truth = Vec::new();
    let mut predicted = Vec::new();
    for (i, d) in data.iter().enumerate() {
        truth.extend_from_slice(&d.labels);
        predicted.extend(model.predict(&d.graph, i as u64)?);
    }
    Ok(f1_scores(&truth, &predicted, model.config().classes))
}

/// Seeds written `A..B` (B excluded, A < B).
///
/// ```
/// assert_eq!(x0tta_analysis::scenario::parse_seeds("3..7").ok(), Some(3..7));
/// assert!(x0tta_analysis::scenario::parse_seeds("7..3").is_err());
/// ```
pub fn parse_seeds(s: &str) -> Result<Range<u64>, ScenarioError> {
    let bad = |why: &str| ScenarioError::Invalid(format!("seeds {s:?}: {why}"));
    let (a, b) = s.split_once("..").ok_or_else(|| bad("expected A..B"))?;
    let a: u64 = a.trim().parse().map_err(|_| bad("A is not a number"))?;
    let b: u64 = b.trim().parse().map_err(|_| bad("B is not a number"))?;
    if a >= b {
        return Err(bad("empty range"));
    }
    Ok(a..b)
}

/// Runs one scenario on its own single-threaded runtime with tokio's clock paused.
pub fn run(seed: u64, fault: Fault, cfg: &ScenarioConfig) -> Result<Scenario, ScenarioError> {
    if cfg.nodes < 8 || cfg.degree < 2 || cfg.tick.is_zero() {
        return Err(ScenarioError::Invalid(
            "at least 8 nodes, degree 2 and a non-zero tick".into(),
        ));
    }
    paused_runtime()?.block_on(simulate(seed, fault, cfg))
}

/// A single-threaded runtime on tokio's paused clock: simulated time runs as fast as the
/// work allows, and a run is deterministic from its seed.
fn paused_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}

/// The overlay links among `ids`, `(low, high)`, sorted.
fn overlay(net: &SimNetwork, ids: &[NodeId]) -> Vec<(usize, usize)> {
    let index: HashMap<&NodeId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut edges = BTreeSet::new();
    for (i, id) in ids.iter().enumerate() {
        for peer in net.overlay_neighbours(id) {
            if let Some(&j) = index.get(&peer) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
    }
    edges.into_iter().collect()
}

/// Each of `n` nodes' neighbours over `edges`.
fn adjacency(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n];
    for &(a, b) in edges {
        out[a].push(b);
        out[b].push(a);
    }
    out
}

/// One scenario per fault for each seed of `seeds`, in seed then class order.
pub fn generate(seeds: Range<u64>, cfg: &ScenarioConfig) -> Result<Vec<Scenario>, ScenarioError> {
    let mut out = Vec::new();
    for seed in seeds {
        for fault in Fault::ALL {
            out.push(run(mix(seed, u64::from(fault.class())), fault, cfg)?);
        }
    }
    Ok(out)
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Noise in -a..a.
fn noise(rng: &mut SmallRng, a: f32) -> f32 {
    rng.random_range(-a..a)
}

/// One node's host: CPU, memory and inbound traffic around its own normal levels.
#[derive(Debug)]
struct Host {
    cpu_base: f32,
    mem_base: f32,
    cpu: f32,
    mem: f32,
    inbound: f32,
    /// Ticks left of a benign CPU burst, and its level.
    burst: (u32, f32),
    /// A benign memory swing: ticks left and amount.
    swing: (u32, f32),
    hog: Option<f32>,
    leak: f32,
    flooded: f32,
    /// Memory use over the last [`TREND_SECONDS`].
    history: crate::live::MemoryTrend,
}

/// The window of the memory trend.
const TREND_SECONDS: f32 = 5.0;

impl Host {
    fn new(rng: &mut SmallRng) -> Self {
        let cpu_base = rng.random_range(0.05..0.45);
        let mem_base = rng.random_range(0.25..0.65);
        Self {
            cpu_base,
            mem_base,
            cpu: cpu_base,
            mem: mem_base,
            inbound: 1.0,
            burst: (0, 0.0),
            swing: (0, 0.0),
            hog: None,
            leak: 0.0,
            flooded: 0.0,
            history: crate::live::MemoryTrend::default(),
        }
    }

    fn step(&mut self, rng: &mut SmallRng, per_second: f32) {
        if self.burst.0 == 0 && rng.random::<f32>() < 0.02 * per_second {
            self.burst = (rng.random_range(2..10), rng.random_range(0.55..0.8));
        }
        if self.swing.0 == 0 && rng.random::<f32>() < 0.01 * per_second {
            self.swing = (rng.random_range(4..16), rng.random_range(0.05..0.2));
        }
        let mut cpu_target = self.cpu_base;
        if self.burst.0 > 0 {
            self.burst.0 -= 1;
            cpu_target = cpu_target.max(self.burst.1);
        }
        if let Some(h) = self.hog {
            cpu_target = h;
        }
        self.cpu = (cpu_target + 0.5 * (self.cpu - cpu_target) + noise(rng, 0.04)).clamp(0.0, 1.0);
        let mut mem_target = self.mem_base;
        if self.swing.0 > 0 {
            self.swing.0 -= 1;
            mem_target += self.swing.1;
        }
        if self.leak > 0.0 {
            self.mem_base = (self.mem_base + self.leak / per_second).min(0.99);
            mem_target = self.mem_base;
        }
        self.mem = (mem_target + 0.7 * (self.mem - mem_target) + noise(rng, 0.01)).clamp(0.0, 1.0);
        self.inbound = (1.0 + self.flooded) * (1.0 + noise(rng, 0.15));
        self.history
            .push(self.mem, (TREND_SECONDS * per_second).ceil() as usize);
    }
}

/// A node's report from its host and its failure detector's neighbour table.
fn report(host: &Host, table: &[x0tta_core::Neighbour]) -> Report {
    crate::live::features(
        host.cpu,
        host.mem,
        host.inbound,
        host.history.value(),
        table,
    )
}

/// The hard variant's distractors, away from the labelled nodes: a CPU burst, a lossy link
/// and a small clock step.
fn distract(
    net: &SimNetwork,
    ids: &[NodeId],
    edges: &[(usize, usize)],
    labels: &[u32],
    hosts: &mut [Host],
    rng: &mut SmallRng,
) -> Result<(), ScenarioError> {
    let calm: Vec<usize> = (0..ids.len()).filter(|&v| labels[v] == 0).collect();
    let pick = |rng: &mut SmallRng| calm.get(rng.random_range(0..calm.len().max(1))).copied();
    if let Some(v) = pick(rng) {
        hosts[v].burst = (u32::MAX, rng.random_range(0.75..0.85));
    }
    let quiet: Vec<&(usize, usize)> = edges
        .iter()
        .filter(|(a, b)| labels[*a] == 0 && labels[*b] == 0)
        .collect();
    if let Some(&&(a, b)) = quiet.get(rng.random_range(0..quiet.len().max(1))) {
        let spec = LinkSpec {
            latency: net.config().latency,
            loss: rng.random_range(0.1..0.2),
        };
        net.set_link(&ids[a], &ids[b], spec)?;
    }
    if let Some(v) = pick(rng) {
        let ms = rng.random_range(200..800);
        net.set_clock_skew(&ids[v], if rng.random::<bool>() { ms } else { -ms })?;
    }
    Ok(())
}

/// A connected region of `size` nodes grown breadth-first from `start`.
fn region(neighbours: &[Vec<usize>], start: usize, size: usize) -> Vec<usize> {
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &u in &neighbours[v] {
            if seen.len() >= size {
                return seen.into_iter().collect();
            }
            if seen.insert(u) {
                queue.push_back(u);
            }
        }
    }
    seen.into_iter().collect()
}

async fn simulate(
    seed: u64,
    fault: Fault,
    cfg: &ScenarioConfig,
) -> Result<Scenario, ScenarioError> {
    let mut rng = SmallRng::seed_from_u64(mix(seed, 0x5ce0));
    let (size, degree) = if cfg.hard {
        (rng.random_range(15..=60), rng.random_range(4..=8))
    } else {
        (cfg.nodes, cfg.degree)
    };
    let net = SimNetwork::new(
        seed,
        SimConfig {
            degree,
            ..SimConfig::default()
        },
    );
    let ids: Vec<NodeId> = (0..size)
        .map(|i| NodeId::new(format!("n{i}")))
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::with_capacity(ids.len());
    for id in &ids {
        nodes.push(net.join(id.clone())?);
    }
    let edges = overlay(&net, &ids);
    let neighbours = adjacency(ids.len(), &edges);
    // Benign background: every clock a little off, a few links a little slow.
    for id in &ids {
        net.set_clock_skew(id, rng.random_range(-150..150))?;
    }
    for _ in 0..3 {
        let (a, b) = edges[rng.random_range(0..edges.len())];
        let latency = Duration::from_millis(rng.random_range(12..22));
        net.set_link(
            &ids[a],
            &ids[b],
            LinkSpec {
                latency,
                loss: 0.02,
            },
        )?;
    }
    let mut hosts: Vec<Host> = (0..ids.len()).map(|_| Host::new(&mut rng)).collect();

    let per_second = 1.0 / cfg.tick.as_secs_f32();
    let fault_tick = (cfg.warmup.as_secs_f64() / cfg.tick.as_secs_f64()).ceil() as usize;
    let total = fault_tick + (cfg.observe.as_secs_f64() / cfg.tick.as_secs_f64()).ceil() as usize;
    let victim = rng.random_range(0..ids.len());
    let mut labels = vec![0u32; ids.len()];
    let mut culprit = Culprit::None;
    let mut silent = vec![false; ids.len()];
    let mut flooder = None;
    let mut reports: Vec<Vec<Report>> = Vec::with_capacity(total);
    for t in 0..total {
        if t == fault_tick {
            let class = fault.class();
            match fault {
                Fault::None => {}
                Fault::NodeCrash => {
                    net.crash(&ids[victim])?;
                    silent[victim] = true;
                    labels[victim] = class;
                    culprit = Culprit::Node(victim);
                }
                Fault::LinkDegraded => {
                    let (a, b) = edges[rng.random_range(0..edges.len())];
                    let spec = LinkSpec {
                        latency: Duration::from_millis(rng.random_range(30..45)),
                        loss: rng.random_range(0.25..0.5),
                    };
                    net.set_link(&ids[a], &ids[b], spec)?;
                    labels[a] = class;
                    labels[b] = class;
                    culprit = Culprit::Link(a, b);
                }
                Fault::CpuHog => {
                    hosts[victim].hog = Some(rng.random_range(0.9..0.99));
                    labels[victim] = class;
                    culprit = Culprit::Node(victim);
                }
                Fault::MemoryLeak => {
                    hosts[victim].leak = rng.random_range(0.04..0.08);
                    labels[victim] = class;
                    culprit = Culprit::Node(victim);
                }
                Fault::Partition => {
                    let cut = region(&neighbours, victim, rng.random_range(3..=5));
                    let group: Vec<NodeId> = cut.iter().map(|&v| ids[v].clone()).collect();
                    net.partition(&[group]);
                    for &v in &cut {
                        labels[v] = class;
                    }
                    culprit = Culprit::Region(cut);
                }
                Fault::ClockSkew => {
                    let ms = rng.random_range(1500..8000);
                    let sign = if rng.random::<bool>() { 1 } else { -1 };
                    net.set_clock_skew(&ids[victim], sign * ms)?;
                    labels[victim] = class;
                    culprit = Culprit::Node(victim);
                }
                Fault::Flooder => {
                    let factor = rng.random_range(3.0..8.0);
                    for &u in &neighbours[victim] {
                        hosts[u].flooded = factor;
                    }
                    flooder = Some(victim);
                    labels[victim] = class;
                    culprit = Culprit::Node(victim);
                }
            }
        }
        if t == fault_tick && cfg.hard {
            distract(&net, &ids, &edges, &labels, &mut hosts, &mut rng)?;
        }
        if let Some(f) = flooder {
            for &u in &neighbours[f] {
                let junk: Vec<u8> = (0..rng.random_range(8..64)).map(|_| rng.random()).collect();
                // A full inbox refuses the junk: the flood is bounded like any other traffic.
                let _ = net.inject(&ids[f], &ids[u], junk);
            }
        }
        tokio::time::sleep(cfg.tick).await;
        let mut tick = Vec::with_capacity(ids.len());
        for (v, host) in hosts.iter_mut().enumerate() {
            host.step(&mut rng, per_second);
            if silent[v] {
                let last = reports
                    .last()
                    .map_or([0.0; FEATURES], |r: &Vec<Report>| r[v]);
                tick.push(last);
            } else {
                tick.push(report(host, &nodes[v].neighbours().await));
            }
        }
        reports.push(tick);
    }
    net.shutdown();
    Ok(Scenario {
        seed,
        fault,
        culprit,
        edges,
        labels,
        reports,
        fault_tick,
        tick: cfg.tick,
    })
}

/// Per-class F1 and their unweighted mean over the classes present in `truth` or `predicted`.
///
/// ```
/// let (macro_f1, per_class) = x0tta_analysis::scenario::f1_scores(&[0, 1, 1], &[0, 1, 0], 2);
/// assert!((per_class[1] - 2.0 / 3.0).abs() < 1e-9);
/// assert!((macro_f1 - (2.0 / 3.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
/// ```
pub fn f1_scores(truth: &[u32], predicted: &[u32], classes: usize) -> (f64, Vec<f64>) {
    let mut tp = vec![0u64; classes];
    let mut fp = vec![0u64; classes];
    let mut fn_ = vec![0u64; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        let (t, p) = (t as usize, p as usize);
        if t == p {
            if let Some(x) = tp.get_mut(t) {
                *x += 1;
            }
        } else {
            if let Some(x) = fp.get_mut(p) {
                *x += 1;
            }
            if let Some(x) = fn_.get_mut(t) {
                *x += 1;
            }
        }
    }
    let mut per_class = vec![0.0; classes];
    let mut present = 0usize;
    let mut sum = 0.0;
    for c in 0..classes {
        let denom = 2 * tp[c] + fp[c] + fn_[c];
        if denom > 0 {
            per_class[c] = 2.0 * tp[c] as f64 / denom as f64;
            sum += per_class[c];
            present += 1;
        }
    }
    (sum / present.max(1) as f64, per_class)
}

/// How a healing trial runs ([`heal_trial`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HealConfig {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Average overlay degree.
    pub degree: usize,
    /// Time before the fault.
    pub warmup: Duration,
    /// Time from the fault to the remedy (detection and planning).
    pub detect: Duration,
    /// How long the remedy's verification waits.
    pub deadline: Duration,
    /// Each trial's message loss is drawn uniformly from 0 to this.
    pub max_loss: f64,
}

impl Default for HealConfig {
    fn default() -> Self {
        Self {
            nodes: 30,
            degree: 6,
            warmup: Duration::from_secs(5),
            detect: Duration::from_secs(3),
            deadline: Duration::from_secs(1),
            max_loss: 0.5,
        }
    }
}

/// One healing trial's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct HealTrial {
    /// The fault.
    pub fault: Fault,
    /// The remedy applied (a plan template's name).
    pub remedy: &'static str,
    /// The mesh's message loss in this trial.
    pub loss: f64,
    /// Whether verification passed before the deadline.
    pub healed: bool,
    /// How long verification took, if it passed.
    pub recovery: Option<Duration>,
}

/// The remedy a plan applies to `fault` in a healing trial: `restart_node` (crash),
/// `reset_link` (degraded link), `heal_partition` (partition); `None` for the others.
pub fn remedy(fault: Fault) -> Option<&'static str> {
    match fault {
        Fault::NodeCrash => Some("restart_node"),
        Fault::LinkDegraded => Some("reset_link"),
        Fault::Partition => Some("heal_partition"),
        _ => None,
    }
}

/// Injects `fault` into a mesh with a random message loss, applies its [`remedy`] after
/// `detect`, and verifies against the real failure detectors: every peer that lost sight of
/// the culprit (its overlay neighbours; both ends of the link; every link across the cut)
/// must hold it `Up` again within `deadline`. Deterministic from the seed.
pub fn heal_trial(seed: u64, fault: Fault, cfg: &HealConfig) -> Result<HealTrial, ScenarioError> {
    let Some(name) = remedy(fault) else {
        return Err(ScenarioError::Invalid(format!(
            "{} has no remedy in a healing trial",
            fault.name()
        )));
    };
    if cfg.nodes < 8 || cfg.degree < 2 || !(0.0..1.0).contains(&cfg.max_loss) {
        return Err(ScenarioError::Invalid(
            "at least 8 nodes, degree 2 and a loss below 1".into(),
        ));
    }
    paused_runtime()?.block_on(async move {
        let mut rng = SmallRng::seed_from_u64(mix(seed, 0x4ea1));
        let loss = rng.random_range(0.0..=cfg.max_loss);
        let net = SimNetwork::new(
            seed,
            SimConfig {
                degree: cfg.degree,
                loss,
                ..SimConfig::default()
            },
        );
        let ids: Vec<NodeId> = (0..cfg.nodes)
            .map(|i| NodeId::new(format!("n{i}")))
            .collect::<Result<_, _>>()?;
        for id in &ids {
            net.join(id.clone())?;
        }
        tokio::time::sleep(cfg.warmup).await;
        let victim = rng.random_range(0..ids.len());
        // Pairs (observer, observed) that must see each other up again.
        let mut watch: Vec<(NodeId, NodeId)> = Vec::new();
        let normal = LinkSpec {
            latency: net.config().latency,
            loss,
        };
        let mut broken_link = None;
        match fault {
            Fault::NodeCrash => {
                net.crash(&ids[victim])?;
                for n in net.overlay_neighbours(&ids[victim]) {
                    watch.push((n, ids[victim].clone()));
                }
            }
            Fault::LinkDegraded => {
                let peers = net.overlay_neighbours(&ids[victim]);
                let Some(other) = peers.get(rng.random_range(0..peers.len().max(1))) else {
                    return Err(ScenarioError::Invalid("a node without neighbours".into()));
                };
                net.set_link(
                    &ids[victim],
                    other,
                    LinkSpec {
                        latency: Duration::from_millis(200),
                        loss: 0.9,
                    },
                )?;
                watch.push((ids[victim].clone(), other.clone()));
                watch.push((other.clone(), ids[victim].clone()));
                broken_link = Some(other.clone());
            }
            _ => {
                let neighbours = adjacency(ids.len(), &overlay(&net, &ids));
                let cut = region(&neighbours, victim, rng.random_range(3..=5));
                net.partition(&[cut.iter().map(|&v| ids[v].clone()).collect()]);
                for &v in &cut {
                    for &u in neighbours[v].iter().filter(|u| !cut.contains(u)) {
                        watch.push((ids[u].clone(), ids[v].clone()));
                        watch.push((ids[v].clone(), ids[u].clone()));
                    }
                }
            }
        }
        tokio::time::sleep(cfg.detect).await;
        match fault {
            Fault::NodeCrash => net.restart(&ids[victim])?,
            Fault::LinkDegraded => {
                if let Some(other) = &broken_link {
                    net.set_link(&ids[victim], other, normal)?;
                }
            }
            _ => net.heal(),
        }
        let start = tokio::time::Instant::now();
        let step = Duration::from_millis(50);
        let mut recovery = None;
        while start.elapsed() <= cfg.deadline {
            if watch
                .iter()
                .all(|(a, b)| net.peer_state(a, b) == Some(PeerState::Up))
            {
                recovery = Some(start.elapsed());
                break;
            }
            tokio::time::sleep(step).await;
        }
        net.shutdown();
        Ok(HealTrial {
            fault,
            remedy: name,
            loss,
            healed: recovery.is_some(),
            recovery,
        })
    })
}
