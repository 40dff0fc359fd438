//! # x0tta-core
//!
//! The heart of an x0tta6bl4 autonomic mesh node: the domain types, the four extension
//! traits — [`Transport`], [`KnowledgeStore`], [`Governance`], [`Healer`] — the smaller traits
//! they are built from ([`Sensor`], [`Detector`], [`Planner`], [`Executor`], [`Action`],
//! [`Signer`]/[`Verifier`], [`Embedder`]), the [`Node`] that composes them and drives the
//! MAPE-K loop, and a [`DefaultHealer`](healing::DefaultHealer).
//!
//! Core depends on no other crate of the workspace and on nothing heavy: a third party who
//! writes their own transport pulls neither libp2p nor redb. Optional features:
//! - `host`: real host sensors (CPU, memory, disk, network), service supervision and probes,
//!   and the actions `restart_service`, `run_command`, `adjust_memory_limits`;
//! - `yaml`: the node configuration and plan-template files, with errors that name file,
//!   line and field.
//!
//! ## Assembling a node
//! ```
//! use std::sync::Arc;
//! use x0tta_core::{
//!     memory::{MemoryKnowledge, MemoryNetwork}, Node, NodeId, Policy, Signer, Signature, SignError,
//! };
//! # struct MySigner(NodeId);
//! # impl Signer for MySigner {
//! #     fn node_id(&self) -> &NodeId { &self.0 }
//! #     fn sign(&self, _: &[u8], m: &[u8]) -> Result<Signature, SignError> {
//! #         Ok(Signature { signer: self.0.clone(), alg: "example".into(), bytes: m.to_vec() })
//! #     }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let id = NodeId::new("node-1")?;
//! let net = MemoryNetwork::new();
//! let node = Node::builder()
//!     .transport(Arc::new(net.join(id.clone())))
//!     .knowledge(Arc::new(MemoryKnowledge::new(1000)))
//!     .signer(Arc::new(MySigner(id)))            // x0tta-pqc provides ML-DSA-65 signers
//!     .policy(Policy::default())
//!     .build()?;
//! let report = node.run_cycle(x0tta_core::WakeReason::Requested).await;
//! assert_eq!(report.cycle, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod actions;
mod anomaly;
mod breaker;
mod governance;
mod healer;
mod id;
mod knowledge;
mod messages;
mod node;
mod observation;
mod plan;
mod policy;
mod report;
mod serde_duration;
mod signing;
mod transport;

pub mod healing;
pub mod memory;

#[cfg(feature = "host")]
pub mod host;

#[cfg(feature = "yaml")]
pub mod config;

pub use actions::{DisconnectPeer, NotifyNeighbors, PolicySource, ReloadPolicy};
pub use anomaly::{Anomaly, AnomalyKind, Evidence, Severity, Subject};
pub use breaker::{BreakerKey, BreakerVerdict, CircuitBreaker, MAX_BREAKER_KEYS};
pub use governance::{
    Decision, Governance, GovernanceError, Phase, Proposal, ProposalId, ProposalState, Vote,
    VoteOutcome, VoteRefusal,
};
pub use healer::{
    Action, ActionContext, ActionError, ActionRegistry, Detector, EmbedError, Embedder,
    ExecContext, ExecProgress, Executor, Healer, PlanContext, PlanDecision, PlanError, Planner,
    Reobserve, RootCauseRanker, Sensor, SensorError,
};
pub use id::{
    ContentId, EncodeError, InvalidId, MAX_NODE_ID_LEN, NodeId, from_canonical_dag_cbor,
    from_dag_cbor, to_dag_cbor,
};
pub use knowledge::{
    KnowledgeError, KnowledgeStore, MergeOutcome, PLAN_STATS_SCAN, SearchFilter, SearchHit,
    SearchQuery,
};
pub use messages::IncidentMessage;
pub use node::{
    BuildError, CyclePhases, CycleReport, MAX_PENDING_VOTES, NODE_EVENT_CAPACITY, Node,
    NodeBuilder, NodeEvent, NodeHandle, NodeStatus, RunError, WakeReason,
};
pub use observation::{
    Neighbour, Observation, PeerState, ProbeResult, Reading, Timestamp, names, service_metric,
};
pub use plan::{
    ActionCall, CmpOp, Condition, ConditionError, ParamError, ParamValue, Params, ParamsExt,
    PlanStats, PlanTemplate, RecoveryPlan, StepSpec, SubjectClass, Trigger,
};
pub use policy::{
    AggregationRule, BreakerPolicy, FederatedPolicy, Intervals, MeshPolicy, Policy, PolicyError,
    PolicyHandle, PolicyUpdate, StatisticalPolicy, Thresholds,
};
pub use report::{
    ExecutionReport, Incident, Resolution, SignedReport, StepOutcome, StepReport, Verification,
    observation_id,
};
pub use signing::{
    Envelope, EnvelopeRejected, Rejection, SignError, Signature, Signer, Verdict, Verifier,
    contexts,
};
pub use transport::{
    CommandOutcome, GossipMessage, InboundRequest, MAX_MESSAGE_BYTES, MeshCommand, MeshEvent,
    MeshEvents, PublishOutcome, Subscription, Transport, TransportError, protocols, topics,
};
