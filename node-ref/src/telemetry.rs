//! What the node measures about itself, for `/metrics` (Prometheus / OpenMetrics text), the
//! dashboard and the API's `cycles`: one [`Telemetry`] fed by the node's events, the mesh's
//! events, the PQ upgrade's observer, knowledge anti-entropy and a sampler of the mesh,
//! knowledge and governance state every [`SAMPLE_INTERVAL`].
//!
//! Names follow Prometheus' conventions: the `x0tta_` prefix, base units in the name
//! (`_seconds`, `_bytes`, `_ratio`), `_total` on counters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use tokio::sync::{broadcast, watch};
use x0tta_core::{
    AnomalyKind, CyclePhases, Governance, MeshEvent, Neighbour, NodeEvent, NodeHandle, NodeStatus,
    PeerState, Resolution, Severity, Subject, Timestamp, Transport, WakeReason,
};
use x0tta_dao::Dao;
use x0tta_ebpf::XdpGuard;
use x0tta_knowledge::{RedbKnowledge, SyncReport};
use x0tta_mesh::p2p::P2pTransport;
use x0tta_pqc::handshake::{AuthMode, Role};
use x0tta_pqc::upgrade::{HandshakeObserver, HandshakeRecord};

/// How often the sampler reads the mesh, knowledge and governance state.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// Cycles kept for `GET /api/v1/cycles`.
pub(crate) const CYCLES_KEPT: usize = 256;
/// Timeline entries kept for the dashboard.
pub(crate) const TIMELINE_KEPT: usize = 200;
/// Anomalies and plans tracked for time to recover (a bound; they are few).
const MAX_TRACKED: usize = 1024;
/// Window of the PQ handshake rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The MAPE-K phases, as the phase label names them.
const PHASES: [&str; 5] = ["monitor", "analyze", "plan", "execute", "knowledge"];
/// Proposal phases, as the proposals gauge names them.
const PROPOSAL_PHASES: [&str; 5] = ["discussion", "voting", "tallied", "executed", "rejected"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnomalyLabels {
    kind: String,
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResolutionLabel {
    resolution: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    role: &'static str,
    /// `first_contact`, `kem_resumed` or `failed`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct XdpLabels {
    interface: String,
    /// `passed`, `rate_dropped` or `blocked_dropped`.
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabel {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachLabels {
    interface: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    node: String,
    version: &'static str,
}

type FGauge = Gauge<f64, AtomicU64>;
type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_buckets() -> Histogram {
    // 100 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn recovery_buckets() -> Histogram {
    // 50 ms .. ~27 min
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The metric families.
struct Metrics {
    cycles: Counter,
    cycle_duration: Histogram,
    phase_duration: HistFamily<PhaseLabel>,
    anomalies: Family<AnomalyLabels, Counter>,
    incidents: Family<ResolutionLabel, Counter>,
    mttd: Histogram,
    mttr: Histogram,
    neighbours: Family<StateLabel, Gauge>,
    rtt: Family<PeerLabel, FGauge>,
    loss: Family<PeerLabel, FGauge>,
    connections: Gauge,
    pq_sessions: Gauge,
    gossip_received: Counter,
    gossip_dropped: Counter,
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_duration: HistFamily<RoleLabel>,
    rag_duration: HistFamily<SourceLabel>,
    knowledge_reads: Family<TierLabel, Counter>,
    crdt_bytes: Family<DirectionLabel, Counter>,
    proposals: Family<StateLabel, Gauge>,
    votes: Gauge,
    stake: Gauge,
    policy_version: Gauge,
    info: Family<InfoLabels, Gauge>,
    xdp_packets: Family<XdpLabels, Counter>,
    xdp_sources: Family<InterfaceLabel, Gauge>,
    xdp_blocked: Family<InterfaceLabel, Gauge>,
    xdp_attached: Family<AttachLabels, Gauge>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            cycles: Counter::default(),
            cycle_duration: seconds_buckets(),
            phase_duration: Family::new_with_constructor(seconds_buckets),
            anomalies: Family::default(),
            incidents: Family::default(),
            mttd: recovery_buckets(),
            mttr: recovery_buckets(),
            neighbours: Family::default(),
            rtt: Family::default(),
            loss: Family::default(),
            connections: Gauge::default(),
            pq_sessions: Gauge::default(),
            gossip_received: Counter::default(),
            gossip_dropped: Counter::default(),
            handshakes: Family::default(),
            handshake_duration: Family::new_with_constructor(seconds_buckets),
            rag_duration: Family::new_with_constructor(seconds_buckets),
            knowledge_reads: Family::default(),
            crdt_bytes: Family::default(),
            proposals: Family::default(),
            votes: Gauge::default(),
            stake: Gauge::default(),
            policy_version: Gauge::default(),
            info: Family::default(),
            xdp_packets: Family::default(),
            xdp_sources: Family::default(),
            xdp_blocked: Family::default(),
            xdp_attached: Family::default(),
        };
        let r = registry;
        r.register("mapek_cycles", "MAPE-K cycles run", m.cycles.clone());
        r.register_with_unit(
            "mapek_cycle_duration",
            "Duration of a MAPE-K cycle",
            Unit::Seconds,
            m.cycle_duration.clone(),
        );
        r.register_with_unit(
            "mapek_phase_duration",
            "Time a cycle spent in each MAPE-K phase (plan, execute and knowledge only when it handled an anomaly)",
            Unit::Seconds,
            m.phase_duration.clone(),
        );
        r.register(
            "anomalies",
            "Anomalies detected (each episode once), by kind and severity",
            m.anomalies.clone(),
        );
        r.register(
            "incidents",
            "Incidents recorded, by how they ended",
            m.incidents.clone(),
        );
        r.register_with_unit(
            "mttd",
            "Time to detect: from the last observation without the anomaly to the one that showed it (an upper bound)",
            Unit::Seconds,
            m.mttd.clone(),
        );
        r.register_with_unit(
            "mttr",
            "Time to recover: from detection to the end of a verified heal",
            Unit::Seconds,
            m.mttr.clone(),
        );
        r.register(
            "neighbours",
            "Neighbours by failure-detector state",
            m.neighbours.clone(),
        );
        r.register_with_unit(
            "neighbour_rtt",
            "Smoothed round-trip time to each neighbour",
            Unit::Seconds,
            m.rtt.clone(),
        );
        r.register_with_unit(
            "neighbour_loss",
            "Probe loss to each neighbour over the recent window",
            Unit::Other("ratio".into()),
            m.loss.clone(),
        );
        r.register(
            "mesh_connections",
            "Established mesh connections",
            m.connections.clone(),
        );
        r.register(
            "pq_sessions",
            "Live neighbours authenticated by the /x0tta/pq/1.0.0 exchange",
            m.pq_sessions.clone(),
        );
        r.register(
            "gossip_received",
            "Gossip messages received",
            m.gossip_received.clone(),
        );
        r.register(
            "gossip_dropped",
            "Gossip messages dropped because a subscriber's queue was full",
            m.gossip_dropped.clone(),
        );
        r.register(
            "pq_handshakes",
            "PQ security upgrades (TLS 1.3 X25519MLKEM768 + PQ proof), by role and result",
            m.handshakes.clone(),
        );
        r.register_with_unit(
            "pq_handshake_duration",
            "Duration of a PQ security upgrade, first TLS byte to authenticated peer",
            Unit::Seconds,
            m.handshake_duration.clone(),
        );
        r.register_with_unit(
            "rag_query_duration",
            "Hybrid retrieval (BM25 + HNSW) latency: the planner's plan phase, or an API search",
            Unit::Seconds,
            m.rag_duration.clone(),
        );
        r.register(
            "knowledge_reads",
            "Incident reads by the tier that served them (hot: in-memory cache)",
            m.knowledge_reads.clone(),
        );
        r.register_with_unit(
            "crdt_sync",
            "CRDT update bytes exchanged by knowledge anti-entropy",
            Unit::Bytes,
            m.crdt_bytes.clone(),
        );
        r.register(
            "dao_proposals",
            "Proposals held, by phase",
            m.proposals.clone(),
        );
        r.register(
            "dao_votes",
            "Votes counted on the proposals held",
            m.votes.clone(),
        );
        r.register("dao_stake", "All voters' stake", m.stake.clone());
        r.register(
            "policy_version",
            "Version of the policy in force",
            m.policy_version.clone(),
        );
        r.register("node", "This node (value 1)", m.info.clone());
        r.register(
            "xdp_packets",
            "IP packets the XDP guard judged, by interface and verdict",
            m.xdp_packets.clone(),
        );
        r.register(
            "xdp_sources",
            "Source addresses the XDP guard tracks",
            m.xdp_sources.clone(),
        );
        r.register(
            "xdp_blocked",
            "Source addresses the XDP guard drops everything from",
            m.xdp_blocked.clone(),
        );
        r.register(
            "xdp_attached",
            "XDP guards attached (value 1), by interface and attach mode",
            m.xdp_attached.clone(),
        );
        m.init_series();
        m
    }

    /// Creates every series whose labels are known in advance, at zero, so that a query sees
    /// a 0 rather than no data before the first event (per-neighbour series come and go
    /// with the neighbours).
    fn init_series(&self) {
        for phase in PHASES {
            let _ = self
                .phase_duration
                .get_or_create_owned(&PhaseLabel { phase });
        }
        for kind in AnomalyKind::ALL {
            for severity in [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ] {
                let _ = self.anomalies.get_or_create_owned(&AnomalyLabels {
                    kind: kind.to_string(),
                    severity: severity.to_string(),
                });
            }
        }
        for r in [
            Resolution::Healed,
            Resolution::Failed,
            Resolution::NoPlan,
            Resolution::Escalated,
            Resolution::AwaitingVote,
            Resolution::Rejected,
        ] {
            let _ = self.incidents.get_or_create_owned(&ResolutionLabel {
                resolution: resolution_name(r),
            });
        }
        for role in ["initiator", "responder"] {
            for result in ["first_contact", "kem_resumed", "failed"] {
                let _ = self
                    .handshakes
                    .get_or_create_owned(&HandshakeLabels { role, result });
            }
            let _ = self
                .handshake_duration
                .get_or_create_owned(&RoleLabel { role });
        }
        for source in ["planner", "api"] {
            let _ = self
                .rag_duration
                .get_or_create_owned(&SourceLabel { source });
        }
        for tier in ["hot", "warm", "cold"] {
            let _ = self
                .knowledge_reads
                .get_or_create_owned(&TierLabel { tier });
        }
        for direction in ["received", "sent"] {
            let _ = self
                .crdt_bytes
                .get_or_create_owned(&DirectionLabel { direction });
        }
        self.zero_states();
    }

    /// Neighbour and proposal gauges at zero for every state (before a sample counts them).
    fn zero_states(&self) {
        for state in ["up", "suspect", "down", "isolated"] {
            self.neighbours.get_or_create(&StateLabel { state }).set(0);
        }
        for state in PROPOSAL_PHASES {
            self.proposals.get_or_create(&StateLabel { state }).set(0);
        }
    }

    fn handshake(&self, r: &HandshakeRecord) {
        let role = match r.role {
            Role::Initiator => "initiator",
            _ => "responder",
        };
        let result = match r.mode {
            Some(AuthMode::FirstContact) => "first_contact",
            Some(_) => "kem_resumed",
            None => "failed",
        };
        self.handshakes
            .get_or_create(&HandshakeLabels { role, result })
            .inc();
        if r.mode.is_some() {
            self.handshake_duration
                .get_or_create(&RoleLabel { role })
                .observe(r.duration.as_secs_f64());
        }
    }
}

/// One MAPE-K cycle, as `GET /api/v1/cycles` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct CycleView {
    /// Cycle number.
    pub(crate) cycle: u64,
    /// Why it ran: `tick`, `mesh` or `requested`.
    pub(crate) reason: String,
    /// When it started, ms since the epoch.
    pub(crate) started_at_ms: u64,
    /// Its duration, ms (absent while it runs).
    pub(crate) duration_ms: Option<u64>,
    /// Time per phase, µs.
    #[schema(value_type = Option<Object>)]
    pub(crate) phases: Option<CyclePhases>,
    /// Metrics read.
    pub(crate) metrics: usize,
    /// Probes that failed.
    pub(crate) failed_probes: usize,
    /// Anomalies present.
    pub(crate) anomalies: Vec<AnomalyBrief>,
    /// Incidents recorded: content id and resolution.
    pub(crate) incidents: Vec<IncidentBrief>,
}

/// An anomaly in a cycle.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AnomalyBrief {
    /// e.g. `SERVICE_DOWN`.
    pub(crate) kind: String,
    /// What it concerns.
    pub(crate) subject: String,
    /// `LOW`, `MEDIUM`, `HIGH` or `CRITICAL`.
    pub(crate) severity: String,
    /// 0..1.
    pub(crate) confidence: f64,
    /// Whether it was absent on the previous cycle.
    pub(crate) new: bool,
}

/// An incident recorded in a cycle.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct IncidentBrief {
    /// Content id.
    pub(crate) id: String,
    /// `healed`, `failed`, `escalated`, …
    pub(crate) resolution: String,
}

/// A line of the dashboard's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct TimelineEntry {
    /// ms since the epoch.
    pub(crate) at_ms: u64,
    /// `anomaly`, `incident`, `policy`, `peer_up`, `peer_down`, `partitioned`, `healed`.
    pub(crate) kind: String,
    /// What happened.
    pub(crate) text: String,
}

/// The four panels, the mesh graph and the timeline: what the dashboard draws.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Dashboard {
    /// This node.
    pub(crate) node: String,
    /// When this snapshot was taken, ms since the epoch.
    pub(crate) at_ms: u64,
    /// Network panel.
    pub(crate) network: NetworkPanel,
    /// Security panel.
    pub(crate) security: SecurityPanel,
    /// Performance panel.
    pub(crate) performance: PerformancePanel,
    /// DAO panel.
    pub(crate) dao: DaoPanel,
    /// The neighbour graph as this node sees it.
    pub(crate) graph: Graph,
    /// Newest first.
    pub(crate) timeline: Vec<TimelineEntry>,
}

/// Network panel.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct NetworkPanel {
    /// This node plus its live neighbours.
    pub(crate) nodes_online: usize,
    /// Neighbours known (any state).
    pub(crate) neighbours: usize,
    /// Mean smoothed RTT over live neighbours, ms.
    pub(crate) mean_latency_ms: Option<f64>,
    /// Mean probe loss over live neighbours, 0..1.
    pub(crate) packet_loss: f64,
}

/// Security panel.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct SecurityPanel {
    /// Successful PQ upgrades per second over the last minute.
    pub(crate) pq_handshakes_per_s: f64,
    /// Successful PQ upgrades since start.
    pub(crate) pq_handshakes_total: u64,
    /// Failed PQ upgrades since start.
    pub(crate) pq_handshakes_failed: u64,
    /// Live neighbours authenticated by the PQ exchange.
    pub(crate) active_sessions: usize,
    /// The newest incident this node recorded.
    pub(crate) last_incident: Option<TimelineEntry>,
    /// Interfaces with the XDP guard attached.
    pub(crate) xdp_interfaces: usize,
    /// Packets the XDP guard dropped per second (rate limits and blocked sources), over the
    /// last sampling interval; none without a guard or before the second sample.
    pub(crate) xdp_dropped_per_s: Option<f64>,
    /// Source addresses the XDP guard blocks.
    pub(crate) xdp_blocked: u64,
}

/// Performance panel.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct PerformancePanel {
    /// Cycles run since start.
    pub(crate) cycles: u64,
    /// Cycles per day at the rate between the first and the latest cycle (needs two).
    pub(crate) cycles_per_day: Option<f64>,
    /// Mean time to recover over the heals since start, seconds.
    pub(crate) mean_mttr_s: Option<f64>,
    /// Share of incident reads served by the in-memory cache.
    pub(crate) rag_cache_hit_rate: Option<f64>,
    /// Incidents this node recorded since start.
    pub(crate) incidents: u64,
}

/// DAO panel.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct DaoPanel {
    /// Proposals in discussion or voting.
    pub(crate) active_proposals: usize,
    /// Proposals held.
    pub(crate) proposals: usize,
    /// All voters' stake.
    pub(crate) total_stake: u64,
    /// The vote counted last.
    pub(crate) last_vote: Option<LastVote>,
    /// Version of the policy in force.
    pub(crate) policy_version: u64,
}

/// A counted vote.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct LastVote {
    /// Proposal id.
    pub(crate) proposal: String,
    /// Voter.
    pub(crate) voter: String,
    /// Votes (cost votes²).
    pub(crate) votes: u32,
    /// For or against.
    pub(crate) support: bool,
    /// When it was signed, ms since the epoch.
    pub(crate) at_ms: u64,
}

/// The neighbour graph.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct Graph {
    /// This node first.
    pub(crate) nodes: Vec<GraphNode>,
    /// Links from this node.
    pub(crate) links: Vec<GraphLink>,
}

/// A node of the graph.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GraphNode {
    /// Node id.
    pub(crate) id: String,
    /// `self`, `up`, `suspect`, `down` or `isolated`.
    pub(crate) state: String,
}

/// A link of the graph.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GraphLink {
    /// One end (this node).
    pub(crate) from: String,
    /// The other.
    pub(crate) to: String,
    /// Smoothed RTT, ms.
    pub(crate) rtt_ms: Option<f64>,
    /// Loss, 0..1.
    pub(crate) loss: f64,
}

#[derive(Default)]
struct Recent {
    cycles: VecDeque<CycleView>,
    timeline: VecDeque<TimelineEntry>,
    last_incident: Option<TimelineEntry>,
    /// When the previous cycle observed, ms (for time to detect).
    last_observed_ms: Option<u64>,
    /// First detection of each active anomaly, ms (for time to recover).
    detected: HashMap<(AnomalyKind, Subject), u64>,
    /// The anomaly each running plan template is for.
    planned: HashMap<String, (AnomalyKind, Subject)>,
    neighbours: Vec<Neighbour>,
    pq_sessions: usize,
    handshake_samples: VecDeque<(Instant, u64)>,
    mttr_sum: f64,
    mttr_count: u64,
    dao: DaoPanel,
    last_gossip: (u64, u64),
    last_tiers: [u64; 3],
    cache_hit_rate: Option<f64>,
    /// When the first and the latest cycle finished here.
    cycle_span: Option<(Instant, Instant)>,
    cycles_finished: u64,
    /// Per interface, the XDP totals last sampled.
    xdp_last: HashMap<String, x0tta_ebpf::Totals>,
    /// XDP drops per second over the last sampling interval, all interfaces.
    xdp_drop_rate: Option<f64>,
    /// Addresses blocked, all interfaces.
    xdp_blocked: u64,
    /// When the XDP totals were last sampled.
    xdp_sampled: Option<Instant>,
}

struct Inner {
    node: String,
    registry: Registry,
    m: Metrics,
    recent: Mutex<Recent>,
    /// Bumped on every change the dashboard shows (a watch: one value, never a queue).
    changed: watch::Sender<u64>,
}

/// The node's measurements. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Telemetry(Arc<Inner>);

fn now_ms() -> u64 {
    Timestamp::now().as_millis()
}

impl Telemetry {
    /// Empty measurements for `node`.
    pub(crate) fn new(node: &str) -> Self {
        let mut registry = Registry::with_prefix("x0tta");
        let m = Metrics::register(&mut registry);
        m.info
            .get_or_create(&InfoLabels {
                node: node.to_string(),
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Self(Arc::new(Inner {
            node: node.to_string(),
            registry,
            m,
            recent: Mutex::new(Recent::default()),
            changed: watch::Sender::new(0),
        }))
    }

    fn recent(&self) -> MutexGuard<'_, Recent> {
        self.0.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.0.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A receiver that wakes whenever the dashboard's figures change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.0.changed.subscribe()
    }

    /// The observer to give the PQ upgrade (counts and times every handshake).
    pub(crate) fn handshake_observer(&self) -> HandshakeObserver {
        let t = self.clone();
        HandshakeObserver::new(move |r| t.0.m.handshake(r))
    }

    /// The registry in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)?;
        Ok(out)
    }

    /// The registry in the Prometheus text format 0.0.4, for scrapers and tools (`promtool`)
    /// that do not ask for OpenMetrics: counters' `HELP`/`TYPE` name the `_total` series,
    /// and the `UNIT` and `EOF` lines go.
    pub(crate) fn encode_text(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_text(&self.encode()?))
    }

    /// An API search took `d`.
    pub(crate) fn searched(&self, d: Duration) {
        self.0
            .m
            .rag_duration
            .get_or_create(&SourceLabel { source: "api" })
            .observe(d.as_secs_f64());
    }

    /// Knowledge anti-entropy exchanged `r`.
    pub(crate) fn synced(&self, r: &SyncReport) {
        let m = &self.0.m;
        let bytes = |direction| m.crdt_bytes.get_or_create(&DirectionLabel { direction });
        bytes("received").inc_by(r.update_bytes_received as u64);
        bytes("sent").inc_by(r.update_bytes_sent as u64);
    }

    /// The recent cycles, newest first.
    pub(crate) fn cycles(&self, limit: usize) -> Vec<CycleView> {
        self.recent()
            .cycles
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    fn timeline(&self, kind: &str, text: String) -> TimelineEntry {
        let entry = TimelineEntry {
            at_ms: now_ms(),
            kind: kind.to_string(),
            text,
        };
        let mut r = self.recent();
        if r.timeline.len() == TIMELINE_KEPT {
            r.timeline.pop_front();
        }
        r.timeline.push_back(entry.clone());
        entry
    }

    /// Takes one node event into the metrics, the cycle list and the timeline.
    pub(crate) fn node_event(&self, e: &NodeEvent) {
        let m = &self.0.m;
        match e {
            NodeEvent::CycleStarted { cycle, reason } => {
                let reason = match reason {
                    WakeReason::Tick => "tick",
                    WakeReason::Mesh(_) => "mesh",
                    _ => "requested",
                };
                let mut r = self.recent();
                if r.cycles.len() == CYCLES_KEPT {
                    r.cycles.pop_front();
                }
                r.cycles.push_back(CycleView {
                    cycle: *cycle,
                    reason: reason.to_string(),
                    started_at_ms: now_ms(),
                    duration_ms: None,
                    phases: None,
                    metrics: 0,
                    failed_probes: 0,
                    anomalies: Vec::new(),
                    incidents: Vec::new(),
                });
            }
            NodeEvent::Observed {
                cycle,
                metrics,
                failed_probes,
                ..
            } => {
                if let Some(c) = self
                    .recent()
                    .cycles
                    .back_mut()
                    .filter(|c| c.cycle == *cycle)
                {
                    c.metrics = *metrics;
                    c.failed_probes = *failed_probes;
                }
            }
            NodeEvent::AnomalyDetected {
                cycle,
                anomaly,
                new,
                ..
            } => {
                let brief = AnomalyBrief {
                    kind: anomaly.kind.to_string(),
                    subject: anomaly.subject.to_string(),
                    severity: anomaly.severity.to_string(),
                    confidence: anomaly.confidence,
                    new: *new,
                };
                let now = now_ms();
                {
                    let mut r = self.recent();
                    if *new {
                        if r.detected.len() >= MAX_TRACKED {
                            r.detected.clear(); // anomalies that cleared without a heal
                        }
                        if let Some(prev) = r.last_observed_ms {
                            m.mttd.observe(now.saturating_sub(prev) as f64 / 1000.0);
                        }
                        r.detected
                            .insert((anomaly.kind, anomaly.subject.clone()), now);
                    }
                    if let Some(c) = r.cycles.back_mut().filter(|c| c.cycle == *cycle) {
                        c.anomalies.push(brief.clone());
                    }
                }
                if *new {
                    m.anomalies
                        .get_or_create(&AnomalyLabels {
                            kind: brief.kind.clone(),
                            severity: brief.severity.clone(),
                        })
                        .inc();
                    self.timeline(
                        "anomaly",
                        format!("{} on {} ({})", brief.kind, brief.subject, brief.severity),
                    );
                    self.bump();
                }
            }
            NodeEvent::PlanChosen { plan } => {
                let key = (plan.anomaly.kind, plan.anomaly.subject.clone());
                let mut r = self.recent();
                if r.planned.len() >= MAX_TRACKED {
                    r.planned.clear();
                }
                r.planned.insert(plan.template.clone(), key);
            }
            NodeEvent::Executed { report } => {
                let mut r = self.recent();
                let key = r.planned.remove(&report.template);
                let since = key.and_then(|k| r.detected.remove(&k));
                if let (true, Some(since)) = (report.success, since) {
                    let done = report
                        .started_at
                        .as_millis()
                        .saturating_add(report.duration_ms);
                    let secs = done.saturating_sub(since) as f64 / 1000.0;
                    m.mttr.observe(secs);
                    r.mttr_sum += secs;
                    r.mttr_count += 1;
                }
            }
            NodeEvent::IncidentRecorded { id, resolution } => {
                let res = resolution_name(*resolution);
                m.incidents
                    .get_or_create(&ResolutionLabel {
                        resolution: res.clone(),
                    })
                    .inc();
                {
                    let mut r = self.recent();
                    if let Some(c) = r.cycles.back_mut() {
                        c.incidents.push(IncidentBrief {
                            id: id.to_string(),
                            resolution: res.clone(),
                        });
                    }
                }
                let entry = self.timeline("incident", format!("incident {id}: {res}"));
                self.recent().last_incident = Some(entry);
                self.bump();
            }
            NodeEvent::PolicyApplied { version } => {
                m.policy_version
                    .set(i64::try_from(*version).unwrap_or(i64::MAX));
                self.timeline("policy", format!("policy v{version} in force"));
                self.bump();
            }
            NodeEvent::CycleFinished {
                cycle,
                duration_ms,
                phases,
            } => {
                m.cycles.inc();
                // Whole milliseconds round a fast cycle to 0; the phases' µs sum does not.
                let secs = (*duration_ms as f64 / 1000.0).max(phases.total_us() as f64 / 1e6);
                m.cycle_duration.observe(secs);
                for (phase, us) in PHASES.into_iter().zip([
                    phases.monitor_us,
                    phases.analyze_us,
                    phases.plan_us,
                    phases.execute_us,
                    phases.knowledge_us,
                ]) {
                    let handled = phases.plan_us > 0;
                    if matches!(phase, "monitor" | "analyze") || handled {
                        m.phase_duration
                            .get_or_create(&PhaseLabel { phase })
                            .observe(us as f64 / 1e6);
                    }
                }
                if phases.plan_us > 0 {
                    m.rag_duration
                        .get_or_create(&SourceLabel { source: "planner" })
                        .observe(phases.plan_us as f64 / 1e6);
                }
                let mut r = self.recent();
                r.last_observed_ms = Some(now_ms());
                let now = Instant::now();
                r.cycle_span = Some((r.cycle_span.map_or(now, |(first, _)| first), now));
                r.cycles_finished += 1;
                if let Some(c) = r.cycles.back_mut().filter(|c| c.cycle == *cycle) {
                    c.duration_ms = Some(*duration_ms);
                    c.phases = Some(*phases);
                }
                drop(r);
                self.bump();
            }
            _ => {}
        }
    }

    /// Takes one mesh event into the timeline.
    pub(crate) fn mesh_event(&self, e: &MeshEvent) {
        let (kind, text) = match e {
            MeshEvent::PeerUp(p) => ("peer_up", format!("{p} up")),
            MeshEvent::PeerSuspect(p) => ("peer_suspect", format!("{p} suspect")),
            MeshEvent::PeerDown(p) => ("peer_down", format!("{p} down")),
            MeshEvent::Partitioned { reachable } => (
                "partitioned",
                format!("partitioned: {reachable} peers reachable"),
            ),
            MeshEvent::Healed => ("healed", "neighbours restored".to_string()),
            _ => return,
        };
        self.timeline(kind, text);
        self.bump();
    }

    /// Reads the mesh, knowledge and governance state into the gauges.
    pub(crate) async fn sample(&self, s: &Sources) {
        self.sample_xdp(&s.xdp).await;
        let m = &self.0.m;
        let neighbours = s.mesh.neighbours().await;
        m.rtt.clear();
        m.loss.clear();
        let mut states: HashMap<&'static str, i64> = HashMap::new();
        let mut pq = 0;
        for n in &neighbours {
            *states.entry(state_name(n.state)).or_default() += 1;
            let peer = PeerLabel {
                peer: n.id.to_string(),
            };
            if let Some(rtt) = n.rtt_ms {
                m.rtt.get_or_create(&peer).set(rtt / 1000.0);
            }
            m.loss.get_or_create(&peer).set(n.loss);
            if n.state == PeerState::Up && s.mesh.pq_authenticated(&n.id) {
                pq += 1;
            }
        }
        let stats = s.mesh.stats();
        m.connections
            .set(i64::try_from(stats.connections).unwrap_or(i64::MAX));
        m.pq_sessions.set(pq);
        let tiers = s.knowledge.tier_stats();
        let tiers = [
            tiers.hot_hits,
            tiers.warm_hits,
            tiers.cold_fetched + tiers.cold_missed,
        ];
        let mut dao = DaoPanel {
            total_stake: s.dao.total_stake(),
            policy_version: s.node.policy().current().version,
            ..DaoPanel::default()
        };
        let mut phases: HashMap<&'static str, i64> = HashMap::new();
        let mut votes = 0u64;
        for id in s.dao.proposals() {
            dao.proposals += 1;
            if let Ok(Some(st)) = Governance::state(&s.dao, &id).await {
                let phase = wire_name(&st.phase);
                if matches!(phase.as_str(), "discussion" | "voting") {
                    dao.active_proposals += 1;
                }
                *phases.entry(phase_name(&phase)).or_default() += 1;
                votes = votes
                    .saturating_add(st.votes_for)
                    .saturating_add(st.votes_against);
            }
        }
        dao.last_vote = s.dao.last_vote().map(|v| LastVote {
            proposal: v.proposal.to_string(),
            voter: v.voter.to_string(),
            votes: v.votes,
            support: v.support,
            at_ms: v.signed_at,
        });
        // Set whole: a scrape never sees a half-counted table.
        m.zero_states();
        for (state, n) in states {
            m.neighbours.get_or_create(&StateLabel { state }).set(n);
        }
        for (state, n) in phases {
            m.proposals.get_or_create(&StateLabel { state }).set(n);
        }
        m.votes.set(i64::try_from(votes).unwrap_or(i64::MAX));
        m.stake
            .set(i64::try_from(dao.total_stake).unwrap_or(i64::MAX));
        m.policy_version
            .set(i64::try_from(dao.policy_version).unwrap_or(i64::MAX));

        let mut r = self.recent();
        let (got, dropped) = (stats.gossip_received, stats.gossip_dropped);
        m.gossip_received
            .inc_by(got.saturating_sub(r.last_gossip.0));
        m.gossip_dropped
            .inc_by(dropped.saturating_sub(r.last_gossip.1));
        r.last_gossip = (got, dropped);
        for (i, tier) in ["hot", "warm", "cold"].into_iter().enumerate() {
            m.knowledge_reads
                .get_or_create(&TierLabel { tier })
                .inc_by(tiers[i].saturating_sub(r.last_tiers[i]));
        }
        r.last_tiers = tiers;
        let reads: u64 = tiers.iter().sum();
        r.cache_hit_rate = (reads > 0).then(|| tiers[0] as f64 / reads as f64);
        r.neighbours = neighbours;
        r.pq_sessions = pq as usize;
        r.dao = dao;
        let total = self.handshakes_ok();
        let now = Instant::now();
        r.handshake_samples.push_back((now, total));
        while r
            .handshake_samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            r.handshake_samples.pop_front();
        }
        drop(r);
        self.bump();
    }

    /// Reads the XDP guards' totals, tracked sources and block lists (map reads: on a blocking
    /// thread).
    async fn sample_xdp(&self, guards: &[Arc<XdpGuard>]) {
        if guards.is_empty() {
            return;
        }
        let gs = guards.to_vec();
        let read = tokio::task::spawn_blocking(move || {
            gs.iter()
                .map(|g| {
                    let totals = g.totals()?;
                    let sources = g.sources()?.len();
                    let blocked = g.blocked()?.len();
                    Ok::<_, x0tta_ebpf::Error>((
                        g.interface().to_string(),
                        g.mode(),
                        totals,
                        sources,
                        blocked,
                    ))
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(read) = read else { return };
        let m = &self.0.m;
        let mut r = self.recent();
        let now = Instant::now();
        let secs = r.xdp_sampled.map(|t| now.duration_since(t).as_secs_f64());
        let (mut dropped, mut blocked_total) = (0u64, 0u64);
        for item in read {
            let (interface, mode, t, sources, blocked) = match item {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "XDP sample failed");
                    continue;
                }
            };
            let before = r.xdp_last.get(&interface).copied().unwrap_or_default();
            for (verdict, now_v, then_v) in [
                ("passed", t.passed, before.passed),
                ("rate_dropped", t.rate_dropped, before.rate_dropped),
                ("blocked_dropped", t.blocked_dropped, before.blocked_dropped),
            ] {
                m.xdp_packets
                    .get_or_create(&XdpLabels {
                        interface: interface.clone(),
                        verdict,
                    })
                    .inc_by(now_v.saturating_sub(then_v));
            }
            dropped += t.dropped().saturating_sub(before.dropped());
            blocked_total += blocked as u64;
            let label = InterfaceLabel {
                interface: interface.clone(),
            };
            m.xdp_sources
                .get_or_create(&label)
                .set(i64::try_from(sources).unwrap_or(i64::MAX));
            m.xdp_blocked
                .get_or_create(&label)
                .set(i64::try_from(blocked).unwrap_or(i64::MAX));
            m.xdp_attached
                .get_or_create(&AttachLabels {
                    interface: interface.clone(),
                    mode: mode.to_string(),
                })
                .set(1);
            r.xdp_last.insert(interface, t);
        }
        r.xdp_drop_rate = secs.filter(|s| *s > 0.0).map(|s| dropped as f64 / s);
        r.xdp_blocked = blocked_total;
        r.xdp_sampled = Some(now);
    }

    fn handshakes_ok(&self) -> u64 {
        let m = &self.0.m;
        let mut total = 0;
        for role in ["initiator", "responder"] {
            for result in ["first_contact", "kem_resumed"] {
                total += m
                    .handshakes
                    .get_or_create(&HandshakeLabels { role, result })
                    .get();
            }
        }
        total
    }

    fn handshakes_failed(&self) -> u64 {
        let m = &self.0.m;
        ["initiator", "responder"]
            .into_iter()
            .map(|role| {
                m.handshakes
                    .get_or_create(&HandshakeLabels {
                        role,
                        result: "failed",
                    })
                    .get()
            })
            .sum()
    }

    /// The dashboard's figures now.
    pub(crate) fn dashboard(&self, status: &NodeStatus) -> Dashboard {
        let cycles = status.cycles;
        let total = self.handshakes_ok();
        let failed = self.handshakes_failed();
        let r = self.recent();
        let live: Vec<&Neighbour> = r
            .neighbours
            .iter()
            .filter(|n| n.state == PeerState::Up)
            .collect();
        let rtts: Vec<f64> = live.iter().filter_map(|n| n.rtt_ms).collect();
        let rate = match (r.handshake_samples.front(), r.handshake_samples.back()) {
            (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                b.saturating_sub(*a) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let mut graph = Graph::default();
        graph.nodes.push(GraphNode {
            id: self.0.node.clone(),
            state: "self".into(),
        });
        for n in &r.neighbours {
            graph.nodes.push(GraphNode {
                id: n.id.to_string(),
                state: state_name(n.state).into(),
            });
            graph.links.push(GraphLink {
                from: self.0.node.clone(),
                to: n.id.to_string(),
                rtt_ms: n.rtt_ms,
                loss: n.loss,
            });
        }
        Dashboard {
            node: self.0.node.clone(),
            at_ms: now_ms(),
            network: NetworkPanel {
                nodes_online: 1 + live.len(),
                neighbours: r.neighbours.len(),
                mean_latency_ms: (!rtts.is_empty())
                    .then(|| rtts.iter().sum::<f64>() / rtts.len() as f64),
                packet_loss: if live.is_empty() {
                    0.0
                } else {
                    live.iter().map(|n| n.loss).sum::<f64>() / live.len() as f64
                },
            },
            security: SecurityPanel {
                pq_handshakes_per_s: rate,
                pq_handshakes_total: total,
                pq_handshakes_failed: failed,
                active_sessions: r.pq_sessions,
                last_incident: r.last_incident.clone(),
                xdp_interfaces: r.xdp_last.len(),
                xdp_dropped_per_s: r.xdp_drop_rate,
                xdp_blocked: r.xdp_blocked,
            },
            performance: PerformancePanel {
                cycles,
                cycles_per_day: match r.cycle_span {
                    Some((first, last)) if r.cycles_finished > 1 && last > first => Some(
                        (r.cycles_finished - 1) as f64 / (last - first).as_secs_f64() * 86_400.0,
                    ),
                    _ => None,
                },
                mean_mttr_s: (r.mttr_count > 0).then(|| r.mttr_sum / r.mttr_count as f64),
                rag_cache_hit_rate: r.cache_hit_rate,
                incidents: status.incidents,
            },
            dao: r.dao.clone(),
            graph,
            timeline: r.timeline.iter().rev().cloned().collect(),
        }
    }
}

/// The name serde gives a unit variant (`no_plan`, `voting`), as the API and labels use it.
pub(crate) fn wire_name<T: Serialize + std::fmt::Debug>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{v:?}").to_lowercase())
}

fn resolution_name(r: Resolution) -> String {
    wire_name(&r)
}

fn state_name(s: PeerState) -> &'static str {
    match s {
        PeerState::Up => "up",
        PeerState::Suspect => "suspect",
        PeerState::Down => "down",
        PeerState::Isolated => "isolated",
        _ => "other",
    }
}

fn phase_name(p: &str) -> &'static str {
    PROPOSAL_PHASES
        .into_iter()
        .find(|known| *known == p)
        .unwrap_or("other")
}

/// What the sampler reads.
#[derive(Clone)]
pub(crate) struct Sources {
    pub(crate) node: NodeHandle,
    pub(crate) mesh: P2pTransport,
    pub(crate) knowledge: RedbKnowledge,
    pub(crate) dao: Dao,
    /// XDP guards (none unless `network.ebpf_hooks` names `xdp` and they attached).
    pub(crate) xdp: Vec<Arc<XdpGuard>>,
}

/// Feeds `t` until the node's event stream closes: node events, mesh events and a sample
/// every [`SAMPLE_INTERVAL`].
pub(crate) async fn feed(t: Telemetry, s: Sources) {
    let mut events = s.node.subscribe();
    let mut mesh = s.mesh.events();
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => t.sample(&s).await,
            ev = events.recv() => match ev {
                Ok(e) => t.node_event(&e),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            ev = mesh.next() => match ev {
                Some(e) => t.mesh_event(&e),
                None => break,
            },
        }
    }
}

/// OpenMetrics text to the Prometheus text format 0.0.4 (see [`Telemetry::encode_text`]).
pub(crate) fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            if let Some(h) = help.take() {
                let text = h.strip_prefix("# HELP ").and_then(|h| h.strip_prefix(name));
                out.push_str(&format!("# HELP {name}_total{}\n", text.unwrap_or("")));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_converts_to_prometheus_text() {
        let om = "# HELP x_c A counter.\n# TYPE x_c counter\nx_c_total 3\n# HELP x_d Seconds.\n# TYPE x_d_seconds gauge\n# UNIT x_d_seconds seconds\nx_d_seconds 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP x_c_total A counter.\n# TYPE x_c_total counter\nx_c_total 3\n# HELP x_d Seconds.\n# TYPE x_d_seconds gauge\nx_d_seconds 1.5\n"
        );
    }

    #[test]
    fn every_family_is_exposed_with_help() {
        let t = Telemetry::new("12D3KooWtest");
        let text = t.encode_text().expect("encodes");
        for family in [
            "x0tta_mapek_cycles_total",
            "x0tta_mapek_cycle_duration_seconds",
            "x0tta_mttr_seconds",
            "x0tta_pq_handshake_duration_seconds",
            "x0tta_dao_stake",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing:\n{text}"
            );
        }
        assert!(!text.contains("# EOF"));
    }
}
