//! What the Execute and Knowledge phases produce: execution reports and incidents.

use serde::{Deserialize, Serialize};

use crate::{
    Anomaly, ContentId, EncodeError, NodeId, Observation, RecoveryPlan, Signature, Timestamp,
    to_dag_cbor,
};

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
#[non_exhaustive]
pub enum StepOutcome {
    /// The action succeeded.
    Succeeded {
        /// What it reported.
        output: String,
    },
    /// The action returned an error.
    Failed {
        /// The error.
        error: String,
    },
    /// The action did not finish within its timeout and was cancelled.
    TimedOut {
        /// The timeout, ms.
        after_ms: u64,
    },
    /// Its condition did not hold, so it did not run.
    Skipped,
}

impl StepOutcome {
    /// Whether the step leaves the plan on track (succeeded or skipped).
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Succeeded { .. } | Self::Skipped)
    }
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Step name.
    pub step: String,
    /// Action run.
    pub action: String,
    /// Outcome.
    pub outcome: StepOutcome,
    /// Duration, ms.
    pub duration_ms: u64,
}

/// How verification ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
#[non_exhaustive]
pub enum Verification {
    /// A fresh observation no longer shows the anomaly.
    Cleared {
        /// Time from the end of the last step to the clearing observation, ms.
        after_ms: u64,
        /// Observations taken.
        observations: u32,
    },
    /// The anomaly was still there when verification gave up.
    Persisted {
        /// Observations taken.
        observations: u32,
    },
    /// Verification did not run (steps failed first).
    NotRun,
    /// Re-observing failed.
    Error {
        /// Why.
        error: String,
    },
}

/// The record of one plan execution: the Execute phase's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// The template executed.
    pub template: String,
    /// When execution started.
    pub started_at: Timestamp,
    /// Total duration including rollback and verification, ms.
    pub duration_ms: u64,
    /// Steps in the order they ran.
    pub steps: Vec<StepReport>,
    /// Rollbacks in the order they ran (reverse of the steps they undo).
    pub rollbacks: Vec<StepReport>,
    /// Verification result.
    pub verification: Verification,
    /// Whether every step succeeded and the anomaly cleared.
    pub success: bool,
}

/// A report with the executing node's signature over its DAG-CBOR encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedReport {
    /// The report.
    pub report: ExecutionReport,
    /// Signature under [`contexts::EXECUTION_REPORT`](crate::contexts::EXECUTION_REPORT).
    pub signature: Signature,
}

/// How an incident ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resolution {
    /// A plan ran and the anomaly cleared.
    Healed,
    /// A plan ran and failed or did not clear the anomaly.
    Failed,
    /// No template matched.
    NoPlan,
    /// The circuit breaker refused the plan; the node escalated.
    Escalated,
    /// The plan awaits a governance vote.
    AwaitingVote,
    /// The emergency vote rejected the plan, or did not conclude in time.
    Rejected,
}

/// An incident: the whole story of one anomaly, as the Knowledge phase stores it.
///
/// Content-addressed: [`Incident::content_id`] is the CIDv1 of its DAG-CBOR encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The node that saw it.
    pub node: NodeId,
    /// When it was detected.
    pub detected_at: Timestamp,
    /// Content id of the observation that raised it (the observation itself is not kept).
    pub observation: ContentId,
    /// The anomaly.
    pub anomaly: Anomaly,
    /// The most likely cause, when known.
    pub root_cause: Option<String>,
    /// The plan chosen, if any.
    pub plan: Option<RecoveryPlan>,
    /// The signed execution report, if a plan ran.
    pub report: Option<SignedReport>,
    /// How it ended.
    pub resolution: Resolution,
}

impl Incident {
    /// The incident's content id.
    pub fn content_id(&self) -> Result<ContentId, EncodeError> {
        ContentId::of(self)
    }

    /// The incident's DAG-CBOR encoding.
    pub fn to_dag_cbor(&self) -> Result<Vec<u8>, EncodeError> {
        to_dag_cbor(self)
    }

    /// A text form for retrieval: anomaly text, root cause, template and resolution.
    pub fn to_text(&self) -> String {
        let mut s = self.anomaly.to_text();
        if let Some(rc) = &self.root_cause {
            s.push(' ');
            s.push_str(rc);
        }
        if let Some(p) = &self.plan {
            s.push(' ');
            s.push_str(&p.template);
        }
        s.push_str(match self.resolution {
            Resolution::Healed => " healed",
            Resolution::Failed => " failed",
            Resolution::NoPlan => " no-plan",
            Resolution::Escalated => " escalated",
            Resolution::AwaitingVote => " awaiting-vote",
            Resolution::Rejected => " rejected",
        });
        s
    }

    /// Whether this incident's plan ran and verified.
    pub fn healed(&self) -> bool {
        self.resolution == Resolution::Healed
    }
}

/// The content id of an observation (what incidents keep instead of the observation).
pub fn observation_id(obs: &Observation) -> Result<ContentId, EncodeError> {
    ContentId::of(obs)
}
