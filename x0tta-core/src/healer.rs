//! The [`Healer`] extension trait (Analyze, Plan, Execute) and the small traits it is built
//! from: [`Sensor`], [`Detector`], [`Planner`], [`Executor`], [`Action`], [`Embedder`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Anomaly, ExecutionReport, KnowledgeStore, NodeId, Observation, Params, Policy, PolicyHandle,
    Reading, RecoveryPlan, StepReport, Transport,
};

/// A sensor failed to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sensor {sensor}: {reason}")]
pub struct SensorError {
    /// The sensor.
    pub sensor: String,
    /// Why.
    pub reason: String,
}

/// A metrics source: host, mesh, eBPF counters, service probes.
///
/// # Contract
/// `read` returns promptly (the loop applies a timeout and records a sensor that misses it as
/// failed for that cycle). A sensor keeps whatever state it needs between reads (rates need
/// the previous counter value).
#[async_trait]
pub trait Sensor: Send + Sync {
    /// A stable name, unique within a node.
    fn name(&self) -> &str;
    /// Reads current values. `policy` gives timeouts and limits.
    async fn read(&self, policy: &Policy) -> Result<Reading, SensorError>;
}

/// Turns an observation into anomalies. Streaming detectors keep per-metric state behind
/// interior mutability and must be O(1) per point.
pub trait Detector: Send + Sync {
    /// A stable name, recorded in the anomalies it raises.
    fn name(&self) -> &str;
    /// Anomalies present in `obs` under `policy`.
    fn detect(&self, obs: &Observation, policy: &Policy) -> Vec<Anomaly>;
}

/// Turns text into a vector for retrieval.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Vector length.
    fn dimensions(&self) -> usize;
    /// The embedding of `text`.
    async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError>;

    /// The embeddings of `texts`, in order: what stores call when they index many records at
    /// once (a merge, a replication batch). The default embeds one text at a time; embedders
    /// that batch their work (a transformer padding similar texts into one pass) override it.
    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            out.push(self.embed(t).await?);
        }
        Ok(out)
    }
}

/// Embedding failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// A recovery step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// A parameter is missing or wrong.
    #[error(transparent)]
    Param(#[from] crate::ParamError),
    /// The action cannot run in this setting (no cgroup, unknown service, …).
    #[error("{0}")]
    Unavailable(String),
    /// The action ran and failed.
    #[error("{0}")]
    Failed(String),
}

/// What an action gets to work with.
#[derive(Clone)]
pub struct ActionContext {
    /// This node.
    pub node: NodeId,
    /// The anomaly being healed.
    pub anomaly: Anomaly,
    /// The observation that raised it.
    pub observation: Arc<Observation>,
    /// The live policy.
    pub policy: PolicyHandle,
    /// The mesh.
    pub transport: Arc<dyn Transport>,
    /// The node's memory.
    pub knowledge: Arc<dyn KnowledgeStore>,
}

/// A named recovery step.
///
/// # Contract
/// `run` does the step and returns a one-line description of what it did. A `run` that
/// returns an error must leave nothing to undo. A `run` cancelled (dropped) by its timeout is
/// followed by `rollback`, so it must leave nothing half-done that `rollback` cannot undo.
/// `rollback` undoes a `run` with the same parameters, and must be safe to call when that
/// `run` did only part of its work; the default does nothing and says so.
#[async_trait]
pub trait Action: Send + Sync {
    /// The name plan steps refer to.
    fn name(&self) -> &str;
    /// Does the step.
    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError>;
    /// Undoes the step.
    async fn rollback(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let _ = (params, ctx);
        Ok(format!("{}: nothing to undo", self.name()))
    }
}

/// The actions a node can run, by name.
#[derive(Clone, Default)]
pub struct ActionRegistry {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl ActionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers `action`; returns the action it replaced, if any.
    pub fn register(&mut self, action: Arc<dyn Action>) -> Option<Arc<dyn Action>> {
        self.actions.insert(action.name().to_string(), action)
    }
    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }
    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }
    /// Registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}

/// Planning failed (as opposed to finding no plan, which is [`PlanDecision::NoMatch`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The knowledge store failed.
    #[error(transparent)]
    Knowledge(#[from] crate::KnowledgeError),
    /// Anything else.
    #[error("planning failed: {0}")]
    Other(String),
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanDecision {
    /// Run this plan.
    Plan(RecoveryPlan),
    /// No template matches the anomaly.
    NoMatch,
}

/// What a planner gets to work with.
pub struct PlanContext<'a> {
    /// The node's memory (templates, past incidents, outcomes).
    pub knowledge: &'a dyn KnowledgeStore,
    /// Turns the anomaly's text into a vector, if the node has one.
    pub embedder: Option<&'a dyn Embedder>,
    /// The observation that raised the anomaly.
    pub observation: &'a Observation,
    /// The policy in force.
    pub policy: &'a Policy,
    /// Registered actions (templates that need others are not eligible).
    pub actions: &'a ActionRegistry,
}

/// Chooses a recovery plan for an anomaly.
#[async_trait]
pub trait Planner: Send + Sync {
    /// The plan for `anomaly`, or [`PlanDecision::NoMatch`].
    async fn plan(
        &self,
        anomaly: &Anomaly,
        ctx: &PlanContext<'_>,
    ) -> Result<PlanDecision, PlanError>;
}

/// Re-observes the node, for verification after a plan ran.
#[async_trait]
pub trait Reobserve: Send + Sync {
    /// Anomalies present in a fresh observation.
    async fn reobserve(&self) -> Result<Vec<Anomaly>, SensorError>;
}

/// Progress of an execution, reported as it happens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExecProgress {
    /// A step is starting.
    StepStarted {
        /// Step name.
        step: String,
    },
    /// A step finished.
    StepFinished(StepReport),
    /// A rollback finished.
    RolledBack(StepReport),
}

/// What an executor gets to work with.
pub struct ExecContext<'a> {
    /// Registered actions.
    pub actions: &'a ActionRegistry,
    /// Handed to every action.
    pub action_ctx: ActionContext,
    /// Verification by re-observing.
    pub reobserve: &'a dyn Reobserve,
    /// The policy in force (verification timing).
    pub policy: &'a Policy,
    /// Receives progress as it happens.
    pub progress: &'a (dyn Fn(ExecProgress) + Send + Sync),
}

/// Runs a plan: steps with timeouts, reverse-order rollback on failure, verification.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Executes `plan` and reports what happened. Never panics on a failing step.
    async fn execute(&self, plan: &RecoveryPlan, ctx: &ExecContext<'_>) -> ExecutionReport;
}

/// The Analyze–Plan–Execute part of MAPE-K.
///
/// The standard implementation is [`DefaultHealer`](crate::healing::DefaultHealer), assembled
/// from [`Detector`]s, a [`Planner`] and an [`Executor`]; implement this trait to replace the
/// whole pipeline.
#[async_trait]
pub trait Healer: Send + Sync {
    /// Anomalies in `obs` (deduplicated by [`Anomaly::key`]).
    async fn analyze(&self, obs: &Observation, policy: &Policy) -> Vec<Anomaly>;
    /// A plan for `anomaly`.
    async fn plan(
        &self,
        anomaly: &Anomaly,
        ctx: &PlanContext<'_>,
    ) -> Result<PlanDecision, PlanError>;
    /// Runs `plan`.
    async fn execute(&self, plan: &RecoveryPlan, ctx: &ExecContext<'_>) -> ExecutionReport;
    /// The root cause of `anomaly`, for its incident record; `knowledge` holds the recent
    /// incidents of this node and, replicated, of its peers. The default says nothing, and
    /// the node records the anomaly's first evidence note.
    async fn root_cause(
        &self,
        _anomaly: &Anomaly,
        _obs: &Observation,
        _knowledge: &dyn KnowledgeStore,
    ) -> Option<String> {
        None
    }
}

/// Names the likely culprit of an anomaly — a node, a link or a service — from what this
/// node and its peers saw, for the incident record (DESIGN §11). Plugged into
/// [`DefaultHealer`](crate::healing::DefaultHealer) with
/// [`root_cause`](crate::healing::DefaultHealerBuilder::root_cause).
///
/// # Contract
/// Bounded work per call (it runs once per new incident, in the loop); `None` when it has
/// nothing better than the anomaly's own evidence.
#[async_trait]
pub trait RootCauseRanker: Send + Sync {
    /// A name for logs.
    fn name(&self) -> &str;
    /// The root cause of `anomaly` with its evidence, in one line.
    async fn root_cause(
        &self,
        anomaly: &Anomaly,
        obs: &Observation,
        knowledge: &dyn KnowledgeStore,
    ) -> Option<String>;
}
