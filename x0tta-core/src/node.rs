//! The node: [`NodeBuilder`] composes the extension traits; [`Node::run`] drives the MAPE-K
//! loop (DESIGN §3) until shutdown.
//!
//! The loop owns no I/O policy of its own: sensors observe, the healer decides and executes,
//! the knowledge store remembers, the transport tells peers. The node sequences them, signs
//! what changes state, applies the circuit breaker and reports every phase as a [`NodeEvent`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use tokio::sync::{broadcast, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::breaker::{BreakerKey, BreakerVerdict, CircuitBreaker};
use crate::healer::Reobserve;
use crate::{
    Action, ActionContext, ActionRegistry, Anomaly, AnomalyKind, ContentId, Decision, Embedder,
    Envelope, ExecContext, ExecProgress, ExecutionReport, Governance, Healer, Incident,
    IncidentMessage, KnowledgeError, KnowledgeStore, MeshEvent, NodeId, Observation, PeerState,
    PlanContext, PlanDecision, PlanTemplate, Policy, PolicyError, PolicyHandle, PolicyUpdate,
    Proposal, ProposalId, RecoveryPlan, Resolution, Sensor, SensorError, SignedReport, Signer,
    Subject, Timestamp, Transport, contexts, healing::DefaultHealer, names, observation_id,
    to_dag_cbor, topics,
};

/// Capacity of the node-event channel; slow subscribers lose the oldest events.
pub const NODE_EVENT_CAPACITY: usize = 1024;
/// Most emergency heals awaiting a vote at once; more are refused with a
/// [`NodeEvent::Error`] and retried on a later cycle.
pub const MAX_PENDING_VOTES: usize = 64;

/// `build()` refused the combination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required component was not given.
    #[error("node is missing its {0}: call NodeBuilder::{0}(…)")]
    Missing(&'static str),
    /// Components that do not fit together.
    #[error("inconsistent node: {0}")]
    Inconsistent(String),
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// `run()` could not start or continue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The knowledge store refused the node's plan templates.
    #[error("storing plan templates failed: {0}")]
    Templates(#[source] KnowledgeError),
}

/// Why a cycle ran.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WakeReason {
    /// The cycle interval elapsed.
    Tick,
    /// A mesh event arrived.
    Mesh(MeshEvent),
    /// Someone asked for a cycle now.
    Requested,
}

/// Something the node did, as it happens. For dashboards, demos and tests.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// Monitor: a cycle began.
    CycleStarted {
        /// Cycle number.
        cycle: u64,
        /// Why.
        reason: WakeReason,
    },
    /// Monitor: the observation is complete.
    Observed {
        /// Cycle number.
        cycle: u64,
        /// Metrics read.
        metrics: usize,
        /// Probes that failed.
        failed_probes: usize,
        /// Sensors that failed.
        sensor_errors: usize,
    },
    /// Analyze: an anomaly is present.
    AnomalyDetected {
        /// Cycle number.
        cycle: u64,
        /// The anomaly.
        anomaly: Anomaly,
        /// Whether it was absent on the previous cycle.
        new: bool,
        /// When it was first seen.
        first_seen: Timestamp,
    },
    /// Plan: a plan was chosen.
    PlanChosen {
        /// The plan.
        plan: Box<RecoveryPlan>,
    },
    /// Plan: no template matched.
    NoPlan {
        /// The anomaly.
        anomaly: Anomaly,
    },
    /// Execute: progress of a running plan.
    Progress(ExecProgress),
    /// Execute: the plan finished (verification included).
    Executed {
        /// The report.
        report: Box<ExecutionReport>,
    },
    /// The circuit breaker refused a plan; the node escalated.
    Escalated {
        /// The anomaly, severity raised.
        anomaly: Anomaly,
        /// The refused template.
        template: String,
    },
    /// A CRITICAL heal waits for an emergency vote.
    AwaitingVote {
        /// The proposal.
        proposal: ProposalId,
        /// The template it would run.
        template: String,
    },
    /// Knowledge: the incident is stored.
    IncidentRecorded {
        /// Its content id.
        id: ContentId,
        /// How it ended.
        resolution: Resolution,
    },
    /// A new policy version is in force.
    PolicyApplied {
        /// Its version.
        version: u64,
    },
    /// A step of the loop failed (a store, a sensor set, a signer); the loop goes on.
    Error {
        /// What failed.
        what: String,
    },
    /// The cycle finished.
    CycleFinished {
        /// Cycle number.
        cycle: u64,
        /// Its duration, ms.
        duration_ms: u64,
        /// Where the time went.
        phases: CyclePhases,
    },
}

/// Time a cycle spent in each MAPE-K phase, microseconds. Plan, execute and knowledge add up
/// over the anomalies the cycle handled (a cycle without anomalies spends nothing there).
///
/// ```
/// let p = x0tta_core::CyclePhases { monitor_us: 900, analyze_us: 40, ..Default::default() };
/// assert_eq!(p.total_us(), 940);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CyclePhases {
    /// Monitor: sensors, probes and the mesh view.
    pub monitor_us: u64,
    /// Analyze: the healer's detectors.
    pub analyze_us: u64,
    /// Plan: retrieval and plan choice (the knowledge base's hybrid search).
    pub plan_us: u64,
    /// Execute: steps, rollbacks and verification.
    pub execute_us: u64,
    /// Knowledge: recording and publishing incidents.
    pub knowledge_us: u64,
}

impl CyclePhases {
    /// The phases' sum.
    pub fn total_us(&self) -> u64 {
        self.monitor_us
            .saturating_add(self.analyze_us)
            .saturating_add(self.plan_us)
            .saturating_add(self.execute_us)
            .saturating_add(self.knowledge_us)
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Counters and state for `status` commands and dashboards.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// Cycles run.
    pub cycles: u64,
    /// Policy version in force.
    pub policy_version: u64,
    /// Incidents stored.
    pub incidents: u64,
    /// Plans that ran and verified.
    pub heals_succeeded: u64,
    /// Plans that failed or did not verify.
    pub heals_failed: u64,
    /// Escalations by the circuit breaker.
    pub escalations: u64,
    /// Anomalies present at the last cycle.
    pub active_anomalies: usize,
    /// When the last cycle ended.
    pub last_cycle_at: Option<Timestamp>,
}

/// A cheap handle to a node: status, events, policy, and shutdown.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.inner.id)
    }
}

impl NodeHandle {
    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }
    /// A receiver of node events (bounded; slow receivers lose the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }
    /// Current counters.
    pub fn status(&self) -> NodeStatus {
        let mut s = self.inner.lock().status.clone();
        s.policy_version = self.inner.policy.current().version;
        s
    }
    /// The live policy.
    pub fn policy(&self) -> &PolicyHandle {
        &self.inner.policy
    }
    /// Asks the loop to run a cycle now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
    /// Asks the loop to stop after the cycle in progress.
    pub fn shutdown(&self) {
        // send_replace stores the value even before `run` subscribes.
        self.inner.shutdown.send_replace(true);
    }
}

struct Active {
    first_seen: Timestamp,
    escalated: bool,
}

struct Pending {
    plan: RecoveryPlan,
    observation: Arc<Observation>,
    deadline: Instant,
}

#[derive(Default)]
struct LoopState {
    status: NodeStatus,
    active: HashMap<(AnomalyKind, Subject), Active>,
    breaker: CircuitBreaker,
    pending_votes: HashMap<ProposalId, Pending>,
    /// The running cycle's phase times (plan, execute and knowledge add up here).
    phases: CyclePhases,
}

struct Inner {
    id: NodeId,
    transport: Arc<dyn Transport>,
    knowledge: Arc<dyn KnowledgeStore>,
    governance: Option<Arc<dyn Governance>>,
    healer: Arc<dyn Healer>,
    sensors: Vec<Arc<dyn Sensor>>,
    actions: ActionRegistry,
    signer: Arc<dyn Signer>,
    embedder: Option<Arc<dyn Embedder>>,
    policy: PolicyHandle,
    templates: Vec<PlanTemplate>,
    events: broadcast::Sender<NodeEvent>,
    state: Mutex<LoopState>,
    shutdown: watch::Sender<bool>,
    wake: tokio::sync::Notify,
}

impl Inner {
    fn emit(&self, e: NodeEvent) {
        let _ = self.events.send(e);
    }
    fn lock(&self) -> MutexGuard<'_, LoopState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Composes a [`Node`]. See [`Node::builder`].
#[derive(Default)]
pub struct NodeBuilder {
    transport: Option<Arc<dyn Transport>>,
    knowledge: Option<Arc<dyn KnowledgeStore>>,
    governance: Option<Arc<dyn Governance>>,
    healer: Option<Arc<dyn Healer>>,
    sensors: Vec<Arc<dyn Sensor>>,
    actions: Vec<Arc<dyn Action>>,
    signer: Option<Arc<dyn Signer>>,
    embedder: Option<Arc<dyn Embedder>>,
    policy: Option<PolicyHandle>,
    initial_policy: Option<Policy>,
    templates: Vec<PlanTemplate>,
}

impl NodeBuilder {
    /// The mesh (required).
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transport = Some(t);
        self
    }
    /// The memory (required).
    pub fn knowledge(mut self, k: Arc<dyn KnowledgeStore>) -> Self {
        self.knowledge = Some(k);
        self
    }
    /// Collective decisions (optional; required when the policy asks for emergency votes).
    pub fn governance(mut self, g: Arc<dyn Governance>) -> Self {
        self.governance = Some(g);
        self
    }
    /// The healer (default: [`DefaultHealer::standard`]).
    pub fn healer(mut self, h: Arc<dyn Healer>) -> Self {
        self.healer = Some(h);
        self
    }
    /// Adds a sensor.
    pub fn sensor(mut self, s: Arc<dyn Sensor>) -> Self {
        self.sensors.push(s);
        self
    }
    /// Registers a recovery action.
    pub fn action(mut self, a: Arc<dyn Action>) -> Self {
        self.actions.push(a);
        self
    }
    /// The node's signer (required); its id must equal the transport's.
    pub fn signer(mut self, s: Arc<dyn Signer>) -> Self {
        self.signer = Some(s);
        self
    }
    /// A text embedder for retrieval (optional).
    pub fn embedder(mut self, e: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(e);
        self
    }
    /// The initial policy (default: [`Policy::default`]); validated by `build()`.
    pub fn policy(mut self, p: Policy) -> Self {
        self.initial_policy = Some(p);
        self.policy = None;
        self
    }
    /// Shares an existing live policy (e.g. one a reload action also holds).
    pub fn policy_handle(mut self, h: PolicyHandle) -> Self {
        self.policy = Some(h);
        self.initial_policy = None;
        self
    }
    /// Adds a plan template; it is stored in the knowledge store when the node starts.
    pub fn plan_template(mut self, t: PlanTemplate) -> Self {
        self.templates.push(t);
        self
    }

    /// Validates the combination and builds the node.
    ///
    /// Refuses: a missing transport, knowledge store or signer; a signer whose id differs
    /// from the transport's; two actions or two sensors with one name; a template whose step
    /// or rollback names an unregistered action, or that has no steps, or a duplicate name;
    /// a policy that needs emergency votes without a governance.
    pub fn build(self) -> Result<Node, BuildError> {
        let transport = self.transport.ok_or(BuildError::Missing("transport"))?;
        let knowledge = self.knowledge.ok_or(BuildError::Missing("knowledge"))?;
        let signer = self.signer.ok_or(BuildError::Missing("signer"))?;
        let id = transport.local_id().clone();
        if signer.node_id() != &id {
            return Err(BuildError::Inconsistent(format!(
                "signer signs as {} but the transport is {}",
                signer.node_id(),
                id
            )));
        }
        let mut actions = ActionRegistry::new();
        for a in self.actions {
            let name = a.name().to_string();
            if actions.register(a).is_some() {
                return Err(BuildError::Inconsistent(format!(
                    "two actions are named `{name}`"
                )));
            }
        }
        let mut sensor_names = std::collections::HashSet::new();
        for s in &self.sensors {
            if !sensor_names.insert(s.name().to_string()) {
                return Err(BuildError::Inconsistent(format!(
                    "two sensors are named `{}`",
                    s.name()
                )));
            }
        }
        let mut template_names = std::collections::HashSet::new();
        for t in &self.templates {
            if !template_names.insert(t.name.clone()) {
                return Err(BuildError::Inconsistent(format!(
                    "two plan templates are named `{}`",
                    t.name
                )));
            }
            if t.steps.is_empty() {
                return Err(BuildError::Inconsistent(format!(
                    "plan template `{}` has no steps",
                    t.name
                )));
            }
            if t.trigger.kinds.is_empty() {
                return Err(BuildError::Inconsistent(format!(
                    "plan template `{}` triggers on no anomaly kind",
                    t.name
                )));
            }
            for (i, s) in t.steps.iter().enumerate() {
                for action in
                    std::iter::once(&s.action).chain(s.rollback.as_ref().map(|r| &r.action))
                {
                    if !actions.contains(action) {
                        return Err(BuildError::Inconsistent(format!(
                            "plan template `{}` step {} uses action `{action}`, which is not registered (registered: {})",
                            t.name,
                            i + 1,
                            actions.names().collect::<Vec<_>>().join(", ")
                        )));
                    }
                }
            }
        }
        let policy = match (self.policy, self.initial_policy) {
            (Some(h), _) => h,
            (None, Some(p)) => PolicyHandle::new(p)?,
            (None, None) => PolicyHandle::new(Policy::default())?,
        };
        if policy.current().critical_needs_vote && self.governance.is_none() {
            return Err(BuildError::Inconsistent(
                "the policy requires emergency votes for CRITICAL anomalies but no governance is set".into(),
            ));
        }
        let (shutdown, _) = watch::channel(false);
        let inner = Inner {
            id,
            transport,
            knowledge,
            governance: self.governance,
            healer: self
                .healer
                .unwrap_or_else(|| Arc::new(DefaultHealer::standard())),
            sensors: self.sensors,
            actions,
            signer,
            embedder: self.embedder,
            policy,
            templates: self.templates,
            events: broadcast::channel(NODE_EVENT_CAPACITY).0,
            state: Mutex::default(),
            shutdown,
            wake: tokio::sync::Notify::new(),
        };
        Ok(Node {
            inner: Arc::new(inner),
        })
    }
}

/// What one cycle found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    /// Cycle number.
    pub cycle: u64,
    /// Anomalies present.
    pub anomalies: Vec<Anomaly>,
    /// Incidents recorded, with how they ended.
    pub incidents: Vec<(ContentId, Resolution)>,
}

/// An autonomic mesh node.
///
/// ```
/// use std::sync::Arc;
/// use x0tta_core::{Node, memory::{MemoryNetwork, MemoryKnowledge}, BuildError};
/// let net = MemoryNetwork::new();
/// let t = Arc::new(net.join("n1".parse()?));
/// // A node needs a signer: build() says what is missing.
/// let err = Node::builder().transport(t).knowledge(Arc::new(MemoryKnowledge::new(100))).build();
/// assert!(matches!(err, Err(BuildError::Missing("signer"))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("sensors", &self.inner.sensors.len())
            .field("actions", &self.inner.actions)
            .finish_non_exhaustive()
    }
}

struct NodeReobserve<'a> {
    inner: &'a Inner,
}

#[async_trait]
impl Reobserve for NodeReobserve<'_> {
    async fn reobserve(&self) -> Result<Vec<Anomaly>, SensorError> {
        let policy = self.inner.policy.current();
        let obs = observe(self.inner, &policy).await;
        // A blind observation proves nothing: verification must not call it "cleared".
        if let Some((sensor, reason)) = obs.sensor_errors.first() {
            return Err(SensorError {
                sensor: sensor.clone(),
                reason: reason.clone(),
            });
        }
        Ok(self.inner.healer.analyze(&obs, &policy).await)
    }
}

fn sensor_timeout(policy: &Policy) -> Duration {
    policy
        .intervals
        .probe_timeout
        .saturating_mul(2)
        .max(Duration::from_secs(1))
}

/// A point so far ahead it never comes (an `Instant` cannot be infinite).
fn far_future() -> Instant {
    let now = Instant::now();
    [86_400 * 365 * 30, 86_400 * 365, 86_400]
        .into_iter()
        .find_map(|s| now.checked_add(Duration::from_secs(s)))
        .unwrap_or(now)
}

/// `now + d` for the loop's timer, saturating far in the future instead of overflowing.
fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = Instant::now();
    tokio::time::Instant::from_std(now.checked_add(d).unwrap_or_else(far_future))
}

async fn observe(inner: &Inner, policy: &Policy) -> Observation {
    let mut obs = Observation::new(inner.id.clone());
    let limit = sensor_timeout(policy);
    let reads = join_all(inner.sensors.iter().map(|s| async move {
        let r = tokio::time::timeout(limit, s.read(policy)).await;
        (s.name().to_string(), r)
    }))
    .await;
    for (name, r) in reads {
        match r {
            Ok(Ok(reading)) => obs.merge(reading),
            Ok(Err(e)) => obs.sensor_errors.push((name, e.reason)),
            Err(_) => obs
                .sensor_errors
                .push((name, format!("no reading within {limit:?}"))),
        }
    }
    if let Ok(neighbours) = tokio::time::timeout(limit, inner.transport.neighbours()).await {
        let up: Vec<_> = neighbours
            .iter()
            .filter(|n| n.state == PeerState::Up)
            .collect();
        obs.set(names::MESH_NEIGHBOURS, up.len() as f64);
        let rtts: Vec<f64> = up.iter().filter_map(|n| n.rtt_ms).collect();
        if !rtts.is_empty() {
            obs.set(
                names::MESH_RTT_MS,
                rtts.iter().sum::<f64>() / rtts.len() as f64,
            );
        }
        if !up.is_empty() {
            obs.set(
                names::MESH_LOSS,
                up.iter().map(|n| n.loss).sum::<f64>() / up.len() as f64,
            );
        }
        obs.neighbours.extend(neighbours);
    } else {
        obs.sensor_errors.push((
            "mesh".into(),
            "neighbour table not available in time".into(),
        ));
    }
    obs
}

impl Node {
    /// A builder.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// A handle for status, events, policy and shutdown.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            inner: self.inner.clone(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// Reads every sensor and the neighbour table into one observation.
    pub async fn observe(&self) -> Observation {
        let policy = self.inner.policy.current();
        observe(&self.inner, &policy).await
    }

    /// Stores the builder's plan templates in the knowledge store. [`Node::run`] calls this;
    /// call it yourself before driving cycles with [`Node::run_cycle`].
    pub async fn install_templates(&self) -> Result<(), RunError> {
        for t in &self.inner.templates {
            self.inner
                .knowledge
                .put_template(t.clone())
                .await
                .map_err(RunError::Templates)?;
        }
        Ok(())
    }

    /// Runs the MAPE-K loop until [`NodeHandle::shutdown`]. A cycle runs every
    /// `intervals.cycle` of the policy in force, at once on a mesh event (peer down, suspect,
    /// partition) or [`NodeHandle::wake`]. Governance decisions are applied as they arrive.
    /// Shutdown lets the cycle in progress finish.
    pub async fn run(self) -> Result<NodeStatus, RunError> {
        let mut shutdown = self.inner.shutdown.subscribe();
        self.install_templates().await?;
        let inner = &self.inner;
        let initial = inner.policy.current();
        if let Err(e) = inner.knowledge.record_policy(&initial).await {
            debug!(%e, "policy history not kept by this store");
        }
        let mut mesh = inner.transport.events();
        let mut mesh_open = true;
        let mut decisions = inner.governance.as_ref().map(|g| g.decisions());
        let mut policy_rx = inner.policy.subscribe();
        let mut next_tick = tokio::time::Instant::now();
        info!(node = %inner.id, "node running");
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let reason = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep_until(next_tick) => WakeReason::Tick,
                _ = inner.wake.notified() => WakeReason::Requested,
                ev = mesh.next(), if mesh_open => match ev {
                    None => { mesh_open = false; continue; }
                    Some(MeshEvent::Lagged(n)) => { warn!(missed = n, "mesh events lagged"); WakeReason::Mesh(MeshEvent::Lagged(n)) }
                    Some(MeshEvent::PeerUp(p)) => { debug!(peer = %p, "peer up"); continue; }
                    Some(e) => WakeReason::Mesh(e),
                },
                d = recv_decision(&mut decisions) => {
                    if let Some(d) = d { self.apply_decision(d).await; }
                    continue;
                }
                r = policy_rx.changed() => {
                    if r.is_ok() {
                        let p = policy_rx.borrow_and_update().clone();
                        if let Err(e) = inner.knowledge.record_policy(&p).await {
                            debug!(%e, "policy history not kept by this store");
                        }
                        inner.emit(NodeEvent::PolicyApplied { version: p.version });
                    }
                    continue;
                }
            };
            if *shutdown.borrow() {
                break;
            }
            self.run_cycle(reason).await;
            next_tick = deadline_after(inner.policy.current().intervals.cycle);
        }
        info!(node = %inner.id, "node stopped");
        Ok(self.handle().status())
    }

    async fn apply_decision(&self, d: Decision) {
        let inner = &self.inner;
        let pending = inner.lock().pending_votes.remove(&d.id);
        if let Some(p) = d.policy.filter(|_| d.passed) {
            match inner.policy.apply(p) {
                Ok(PolicyUpdate::Applied { to, .. }) => {
                    info!(version = to, "policy changed by governance")
                }
                Ok(other) => debug!(?other, "governance policy not applied"),
                Err(e) => inner.emit(NodeEvent::Error {
                    what: format!("governance policy invalid: {e}"),
                }),
            }
        }
        if let Some(p) = pending {
            if d.passed {
                let policy = inner.policy.current();
                self.execute_and_record(p.plan, p.observation, &policy)
                    .await;
            } else {
                info!(template = %p.plan.template, "emergency heal rejected by vote");
                self.reject(p).await;
            }
        }
    }

    /// Emergency heals whose vote did not conclude in time end as `Rejected`.
    async fn expire_votes(&self) {
        let now = Instant::now();
        let expired: Vec<Pending> = {
            let mut st = self.inner.lock();
            let ids: Vec<ProposalId> = st
                .pending_votes
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| st.pending_votes.remove(id))
                .collect()
        };
        for p in expired {
            warn!(template = %p.plan.template, "emergency vote expired");
            self.reject(p).await;
        }
    }

    /// Ends an emergency heal that will not run.
    async fn reject(&self, p: Pending) {
        let anomaly = p.plan.anomaly.clone();
        self.record(
            anomaly,
            &p.observation,
            Some(p.plan),
            None,
            Resolution::Rejected,
        )
        .await;
    }

    /// Runs one MAPE-K cycle now and reports what it found and did.
    pub async fn run_cycle(&self, reason: WakeReason) -> CycleReport {
        let inner = &self.inner;
        let cycle = {
            let mut st = inner.lock();
            st.status.cycles += 1;
            st.status.cycles
        };
        let span = info_span!("mapek", node = %inner.id, cycle);
        async move {
            let started = Instant::now();
            let policy = inner.policy.current();
            inner.emit(NodeEvent::CycleStarted { cycle, reason });
            self.expire_votes().await;
            inner.lock().phases = CyclePhases::default();

            // Monitor
            let t = Instant::now();
            let obs = Arc::new(observe(inner, &policy).await);
            let monitor_us = micros(t);
            inner.emit(NodeEvent::Observed {
                cycle,
                metrics: obs.metrics.len(),
                failed_probes: obs.probes.iter().filter(|p| !p.healthy).count(),
                sensor_errors: obs.sensor_errors.len(),
            });

            // Analyze
            let t = Instant::now();
            let anomalies = inner.healer.analyze(&obs, &policy).await;
            let analyze_us = micros(t);
            let mut fresh = Vec::with_capacity(anomalies.len());
            {
                let mut st = inner.lock();
                let present: std::collections::HashSet<_> =
                    anomalies.iter().map(Anomaly::key).collect();
                st.active.retain(|k, _| present.contains(k));
                for a in &anomalies {
                    let new = !st.active.contains_key(&a.key());
                    let entry = st.active.entry(a.key()).or_insert(Active {
                        first_seen: obs.at,
                        escalated: false,
                    });
                    fresh.push((new, entry.first_seen));
                }
                st.status.active_anomalies = anomalies.len();
            }
            for (a, (new, first_seen)) in anomalies.iter().zip(&fresh) {
                inner.emit(NodeEvent::AnomalyDetected {
                    cycle,
                    anomaly: a.clone(),
                    new: *new,
                    first_seen: *first_seen,
                });
            }

            // Plan, Execute, Knowledge — most severe first, bounded per cycle.
            let mut report = CycleReport {
                cycle,
                anomalies: anomalies.clone(),
                incidents: Vec::new(),
            };
            for (a, (new, _)) in anomalies
                .iter()
                .zip(fresh)
                .take(policy.max_heals_per_cycle as usize)
            {
                if let Some(r) = self.heal(a, new, obs.clone(), &policy).await {
                    report.incidents.push(r);
                }
            }

            let phases = {
                let mut st = inner.lock();
                st.status.last_cycle_at = Some(Timestamp::now());
                CyclePhases {
                    monitor_us,
                    analyze_us,
                    ..std::mem::take(&mut st.phases)
                }
            };
            inner.emit(NodeEvent::CycleFinished {
                cycle,
                duration_ms: started.elapsed().as_millis().min(u64::MAX as u128) as u64,
                phases,
            });
            report
        }
        .instrument(span)
        .await
    }

    async fn heal(
        &self,
        anomaly: &Anomaly,
        new: bool,
        obs: Arc<Observation>,
        policy: &Policy,
    ) -> Option<(ContentId, Resolution)> {
        let inner = &self.inner;
        let ctx = PlanContext {
            knowledge: inner.knowledge.as_ref(),
            embedder: inner.embedder.as_deref(),
            observation: &obs,
            policy,
            actions: &inner.actions,
        };
        let t = Instant::now();
        let decision = inner.healer.plan(anomaly, &ctx).await;
        inner.lock().phases.plan_us += micros(t);
        let plan = match decision {
            Ok(PlanDecision::Plan(p)) => p,
            Ok(PlanDecision::NoMatch) => {
                if !new {
                    return None;
                }
                inner.emit(NodeEvent::NoPlan {
                    anomaly: anomaly.clone(),
                });
                return self
                    .record(anomaly.clone(), &obs, None, None, Resolution::NoPlan)
                    .await;
            }
            Err(e) => {
                inner.emit(NodeEvent::Error {
                    what: format!("planning {} failed: {e}", anomaly.kind),
                });
                return None;
            }
        };

        let key: BreakerKey = (plan.template.clone(), anomaly.kind, anomaly.subject.clone());
        let verdict = inner
            .lock()
            .breaker
            .check(&key, Instant::now(), &policy.breaker);
        if let BreakerVerdict::Open { .. } = verdict {
            return self.escalate(anomaly, plan, &obs).await;
        }

        if anomaly.severity == crate::Severity::Critical && policy.critical_needs_vote {
            return self.request_vote(plan, obs, policy).await;
        }
        self.execute_and_record(plan, obs, policy).await
    }

    async fn escalate(
        &self,
        anomaly: &Anomaly,
        plan: RecoveryPlan,
        obs: &Observation,
    ) -> Option<(ContentId, Resolution)> {
        let inner = &self.inner;
        {
            let mut st = inner.lock();
            let active = st.active.get_mut(&anomaly.key())?;
            if active.escalated {
                return None; // told once per episode
            }
            active.escalated = true;
            st.status.escalations += 1;
        }
        let mut raised = anomaly.clone();
        raised.severity = raised.severity.escalate();
        warn!(template = %plan.template, kind = %anomaly.kind, "circuit breaker open: escalating");
        inner.emit(NodeEvent::Escalated {
            anomaly: raised.clone(),
            template: plan.template.clone(),
        });
        let notice = IncidentMessage::Notice {
            node: inner.id.clone(),
            anomaly: raised.clone(),
            note: format!(
                "plan `{}` keeps failing; circuit breaker open",
                plan.template
            ),
        };
        self.publish(&notice).await;
        self.record(raised, obs, Some(plan), None, Resolution::Escalated)
            .await
    }

    async fn request_vote(
        &self,
        plan: RecoveryPlan,
        obs: Arc<Observation>,
        policy: &Policy,
    ) -> Option<(ContentId, Resolution)> {
        let inner = &self.inner;
        let governance = inner.governance.as_ref()?;
        {
            let st = inner.lock();
            let key = plan.anomaly.key();
            if st
                .pending_votes
                .values()
                .any(|p| p.plan.anomaly.key() == key)
            {
                return None; // already awaiting a vote for this trouble
            }
        }
        if inner.lock().pending_votes.len() >= MAX_PENDING_VOTES {
            inner.emit(NodeEvent::Error {
                what: "too many emergency heals awaiting votes".into(),
            });
            return None;
        }
        let mut next = policy.clone();
        next.version += 1;
        let proposal = Proposal {
            title: format!(
                "emergency: run `{}` for {} on {}",
                plan.template, plan.anomaly.kind, plan.anomaly.subject
            ),
            description: plan.anomaly.to_text(),
            proposer: inner.id.clone(),
            policy: next,
            emergency: true,
        };
        match governance.submit(proposal).await {
            Ok(id) => {
                inner.emit(NodeEvent::AwaitingVote {
                    proposal: id,
                    template: plan.template.clone(),
                });
                let anomaly = plan.anomaly.clone();
                inner.lock().pending_votes.insert(
                    id,
                    Pending {
                        plan: plan.clone(),
                        observation: obs.clone(),
                        deadline: Instant::now()
                            .checked_add(policy.intervals.vote_timeout)
                            .unwrap_or_else(far_future),
                    },
                );
                self.record(anomaly, &obs, Some(plan), None, Resolution::AwaitingVote)
                    .await
            }
            Err(e) => {
                inner.emit(NodeEvent::Error {
                    what: format!("emergency proposal failed: {e}"),
                });
                None
            }
        }
    }

    async fn execute_and_record(
        &self,
        plan: RecoveryPlan,
        obs: Arc<Observation>,
        policy: &Policy,
    ) -> Option<(ContentId, Resolution)> {
        let inner = &self.inner;
        inner.emit(NodeEvent::PlanChosen {
            plan: Box::new(plan.clone()),
        });
        let reobserve = NodeReobserve { inner };
        let progress = |p: ExecProgress| inner.emit(NodeEvent::Progress(p));
        let ctx = ExecContext {
            actions: &inner.actions,
            action_ctx: ActionContext {
                node: inner.id.clone(),
                anomaly: plan.anomaly.clone(),
                observation: obs.clone(),
                policy: inner.policy.clone(),
                transport: inner.transport.clone(),
                knowledge: inner.knowledge.clone(),
            },
            reobserve: &reobserve,
            policy,
            progress: &progress,
        };
        let t = Instant::now();
        let report = inner
            .healer
            .execute(&plan, &ctx)
            .instrument(info_span!("heal", template = %plan.template))
            .await;
        inner.lock().phases.execute_us += micros(t);
        let key: BreakerKey = (
            plan.template.clone(),
            plan.anomaly.kind,
            plan.anomaly.subject.clone(),
        );
        {
            let mut st = inner.lock();
            st.breaker
                .record(&key, report.success, Instant::now(), &policy.breaker);
            if report.success {
                st.status.heals_succeeded += 1;
            } else {
                st.status.heals_failed += 1;
            }
        }
        inner.emit(NodeEvent::Executed {
            report: Box::new(report.clone()),
        });
        let signed = match to_dag_cbor(&report)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                inner
                    .signer
                    .sign(contexts::EXECUTION_REPORT, &bytes)
                    .map_err(|e| e.to_string())
            }) {
            Ok(signature) => Some(SignedReport {
                report: report.clone(),
                signature,
            }),
            Err(e) => {
                inner.emit(NodeEvent::Error {
                    what: format!("signing the execution report failed: {e}"),
                });
                None
            }
        };
        let resolution = if report.success {
            Resolution::Healed
        } else {
            Resolution::Failed
        };
        let anomaly = plan.anomaly.clone();
        self.record(anomaly, &obs, Some(plan), signed, resolution)
            .await
    }

    async fn record(
        &self,
        anomaly: Anomaly,
        obs: &Observation,
        plan: Option<RecoveryPlan>,
        report: Option<SignedReport>,
        resolution: Resolution,
    ) -> Option<(ContentId, Resolution)> {
        let inner = &self.inner;
        let observation = match observation_id(obs) {
            Ok(id) => id,
            Err(e) => {
                inner.emit(NodeEvent::Error {
                    what: format!("observation not encodable: {e}"),
                });
                return None;
            }
        };
        let ranked = inner
            .healer
            .root_cause(&anomaly, obs, inner.knowledge.as_ref())
            .await;
        let incident = Incident {
            node: inner.id.clone(),
            detected_at: obs.at,
            observation,
            root_cause: Some(ranked.unwrap_or_else(|| {
                anomaly.evidence.first().map_or_else(
                    || format!("{} on {}", anomaly.kind, anomaly.subject),
                    |e| e.note.clone(),
                )
            })),
            anomaly,
            plan,
            report,
            resolution,
        };
        let t = Instant::now();
        let recorded = inner.knowledge.record(&incident).await;
        inner.lock().phases.knowledge_us += micros(t);
        match recorded {
            Ok(id) => {
                inner.lock().status.incidents += 1;
                inner.emit(NodeEvent::IncidentRecorded { id, resolution });
                let t = Instant::now();
                self.publish(&IncidentMessage::Incident {
                    incident: Box::new(incident),
                })
                .await;
                inner.lock().phases.knowledge_us += micros(t);
                Some((id, resolution))
            }
            Err(e) => {
                inner.emit(NodeEvent::Error {
                    what: format!("recording the incident failed: {e}"),
                });
                None
            }
        }
    }

    async fn publish(&self, msg: &IncidentMessage) {
        let inner = &self.inner;
        let sealed = to_dag_cbor(msg)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                Envelope::seal(inner.signer.as_ref(), contexts::INCIDENT, b)
                    .map_err(|e| e.to_string())
            })
            .and_then(|env| to_dag_cbor(&env).map_err(|e| e.to_string()));
        match sealed {
            Ok(bytes) => {
                if let Err(e) = inner.transport.publish(topics::INCIDENTS, bytes).await {
                    debug!(%e, "incident not published");
                }
            }
            Err(e) => inner.emit(NodeEvent::Error {
                what: format!("sealing incident message failed: {e}"),
            }),
        }
    }
}

async fn recv_decision(rx: &mut Option<broadcast::Receiver<Decision>>) -> Option<Decision> {
    match rx {
        None => std::future::pending().await,
        Some(r) => match r.recv().await {
            Ok(d) => Some(d),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "governance decisions lagged");
                None
            }
            Err(broadcast::error::RecvError::Closed) => {
                *rx = None;
                None
            }
        },
    }
}
