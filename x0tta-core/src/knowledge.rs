//! The [`KnowledgeStore`] extension trait: the node's memory.

use async_trait::async_trait;

use crate::{
    AnomalyKind, ContentId, Incident, NodeId, PlanStats, PlanTemplate, Policy, Resolution,
    Timestamp,
};

/// Restrictions on which incidents a search may return (all that are set must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    /// Detected at or after.
    pub since: Option<Timestamp>,
    /// Detected before.
    pub until: Option<Timestamp>,
    /// Seen by this node.
    pub node: Option<NodeId>,
    /// Ended this way.
    pub resolution: Option<Resolution>,
}

impl SearchFilter {
    /// Whether nothing is restricted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `incident` passes.
    pub fn matches(&self, incident: &Incident) -> bool {
        self.since.is_none_or(|t| incident.detected_at >= t)
            && self.until.is_none_or(|t| incident.detected_at < t)
            && self.node.as_ref().is_none_or(|n| &incident.node == n)
            && self.resolution.is_none_or(|r| incident.resolution == r)
    }
}

/// A retrieval query.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Free text (usually an anomaly's text form).
    pub text: String,
    /// An embedding of the text, when the node has an embedder.
    pub vector: Option<Vec<f32>>,
    /// Restrict to incidents of this kind.
    pub kind: Option<AnomalyKind>,
    /// Most hits to return.
    pub limit: usize,
    /// Time range, node and outcome restrictions.
    pub filter: SearchFilter,
}

impl SearchQuery {
    /// A text query returning at most ten hits.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            vector: None,
            kind: None,
            limit: 10,
            filter: SearchFilter::default(),
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The incident's id.
    pub id: ContentId,
    /// Relevance, higher is better; comparable only within one result list.
    pub score: f64,
    /// The incident.
    pub incident: Incident,
}

/// What a CRDT merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeOutcome {
    /// New records were merged in.
    Merged {
        /// Records added.
        added: usize,
    },
    /// The state held nothing new.
    NoChange,
}

/// A knowledge store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnowledgeError {
    /// The record cannot be encoded.
    #[error(transparent)]
    Encode(#[from] crate::EncodeError),
    /// The backing storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The store does not support the operation.
    #[error("this knowledge store does not support {0}")]
    Unsupported(&'static str),
    /// Input that cannot be accepted.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// How many recent incidents [`KnowledgeStore::plan_stats`]'s provided implementation scans.
pub const PLAN_STATS_SCAN: usize = 10_000;

/// The node's memory: incidents, plan templates, policy history, replication state.
///
/// # Contract
/// - Durable: once `record` returns `Ok`, the incident survives a crash of the process
///   (in-memory stores say loudly that they are not durable).
/// - `record` is idempotent: the same incident yields the same [`ContentId`] and is stored once.
/// - Nothing here verifies signatures; callers verify at the edge before storing.
///
/// # Notes to implementers
/// The first five methods are required. The provided ones either derive their answer from the
/// required ones (`plan_stats`) or report [`KnowledgeError::Unsupported`]; a store that keeps
/// templates, policies or CRDT state overrides them.
///
/// # Example
/// ```
/// use x0tta_core::{memory::MemoryKnowledge, KnowledgeStore, SearchQuery};
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let store = MemoryKnowledge::new(1000);
/// assert!(store.search(&SearchQuery::text("disk full")).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    /// Stores an incident and returns its content id.
    async fn record(&self, incident: &Incident) -> Result<ContentId, KnowledgeError>;

    /// The incident with this id, if known.
    async fn get(&self, id: &ContentId) -> Result<Option<Incident>, KnowledgeError>;

    /// Up to `limit` incidents, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<(ContentId, Incident)>, KnowledgeError>;

    /// Incidents relevant to `query`, best first.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, KnowledgeError>;

    /// Every stored plan template.
    async fn templates(&self) -> Result<Vec<PlanTemplate>, KnowledgeError>;

    /// Stores (or replaces, by name) a plan template.
    async fn put_template(&self, template: PlanTemplate) -> Result<(), KnowledgeError> {
        let _ = template;
        Err(KnowledgeError::Unsupported("put_template"))
    }

    /// Recorded outcomes of `template` on anomalies of `kind`.
    async fn plan_stats(
        &self,
        template: &str,
        kind: AnomalyKind,
    ) -> Result<PlanStats, KnowledgeError> {
        let mut stats = PlanStats::default();
        for (_, inc) in self.recent(PLAN_STATS_SCAN).await? {
            let ran = inc.report.as_ref().map(|r| r.report.success);
            if let (Some(plan), Some(success)) = (&inc.plan, ran)
                && plan.template == template
                && inc.anomaly.kind == kind
            {
                stats.record(success);
            }
        }
        Ok(stats)
    }

    /// Records a policy version that came into force.
    async fn record_policy(&self, policy: &Policy) -> Result<ContentId, KnowledgeError> {
        let _ = policy;
        Err(KnowledgeError::Unsupported("record_policy"))
    }

    /// Policy versions recorded, oldest first.
    async fn policy_history(&self) -> Result<Vec<Policy>, KnowledgeError> {
        Err(KnowledgeError::Unsupported("policy_history"))
    }

    /// This store's replication state, to send to a peer.
    async fn export_state(&self) -> Result<Vec<u8>, KnowledgeError> {
        Err(KnowledgeError::Unsupported("export_state"))
    }

    /// Merges a peer's replication state.
    async fn merge_state(&self, state: &[u8]) -> Result<MergeOutcome, KnowledgeError> {
        let _ = state;
        Err(KnowledgeError::Unsupported("merge_state"))
    }
}
