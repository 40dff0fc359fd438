//! The [`Governance`] extension trait: collective decisions over policy.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{ContentId, NodeId, Policy};

/// A proposal's id: the content id of the proposal record.
pub type ProposalId = ContentId;

/// A proposed policy change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Short title.
    pub title: String,
    /// Why.
    pub description: String,
    /// Who proposes.
    pub proposer: NodeId,
    /// The policy that comes into force if it passes.
    pub policy: Policy,
    /// Emergency track (short vote, higher quorum).
    pub emergency: bool,
}

/// A quadratic vote: `votes` of support or opposition cost `votes²` voice credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The proposal.
    pub proposal: ProposalId,
    /// Who votes.
    pub voter: NodeId,
    /// Number of votes.
    pub votes: u32,
    /// For or against.
    pub support: bool,
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoteRefusal {
    /// `votes²` exceeds the voter's credits.
    InsufficientCredits {
        /// Cost of the vote.
        cost: u64,
        /// Credits available.
        credits: u64,
    },
    /// The proposal is not in its voting phase.
    NotVoting,
    /// The proposal is unknown.
    UnknownProposal,
    /// The voter already voted differently (equivocation).
    Equivocation,
}

/// What happened to a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoteOutcome {
    /// Counted at this cost.
    Counted {
        /// Voice credits spent.
        cost: u64,
    },
    /// Refused.
    Refused(VoteRefusal),
}

/// A proposal's lifecycle phase (DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Being discussed.
    Discussion,
    /// Open for votes.
    Voting,
    /// Votes counted.
    Tallied,
    /// Passed and applied.
    Executed,
    /// Did not pass.
    Rejected,
}

/// A proposal's state and tally.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalState {
    /// The proposal.
    pub proposal: Proposal,
    /// Its phase.
    pub phase: Phase,
    /// Votes for.
    pub votes_for: u64,
    /// Votes against.
    pub votes_against: u64,
    /// Participating stake / total stake, 0..1.
    pub participation: f64,
}

/// A decided proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The proposal.
    pub id: ProposalId,
    /// Whether it passed.
    pub passed: bool,
    /// The policy it brings into force, if it passed.
    pub policy: Option<Policy>,
}

/// A governance failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The proposal is invalid.
    #[error("invalid proposal: {0}")]
    Invalid(String),
    /// Anything else.
    #[error("governance failed: {0}")]
    Other(String),
}

/// Collective decisions: proposals, quadratic votes, tallies and decisions.
///
/// # Contract
/// Governance never changes policy by itself: it announces [`Decision`]s and the node applies
/// them through its [`PolicyHandle`](crate::PolicyHandle).
///
/// # Notes to implementers
/// Votes arriving from peers are verified (signature, credits, deadline) before they count;
/// equivocation is evidence, not an error.
#[async_trait]
pub trait Governance: Send + Sync {
    /// Submits a proposal.
    async fn submit(&self, proposal: Proposal) -> Result<ProposalId, GovernanceError>;
    /// Casts this node's vote.
    async fn vote(&self, vote: Vote) -> Result<VoteOutcome, GovernanceError>;
    /// A proposal's state, if known.
    async fn state(&self, id: &ProposalId) -> Result<Option<ProposalState>, GovernanceError>;
    /// A receiver of decisions. Bounded; a slow receiver loses the oldest.
    fn decisions(&self) -> broadcast::Receiver<Decision>;
}
