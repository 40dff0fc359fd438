//! # x0tta-dao
//!
//! Quadratic-voting governance (DESIGN §8) for x0tta6bl4 nodes. This first part is the
//! sans-I/O core every node runs:
//!
//! - [`ProposalSpec`]: proposals in the seed's YAML layout (`proposal_id`, `title`,
//!   `changes: [{parameter, current, proposed}]`, `rationale`, `creator`, `timestamp`, `track`),
//!   typed against the policy schema ([`PARAMETERS`]); a stale `current`, an unknown parameter
//!   or an out-of-range value is refused.
//! - [`Ledger`]: lifecycle (discussion, voting, closed) on a clock the caller passes in;
//!   signed quadratic votes (cost = votes², voice credits = stake minus fees); explicit
//!   revisions; equivocation detected, proven ([`verify_evidence`]) and slashed; tallies with
//!   quorum (51%, emergency 67%) and a configurable supermajority; the policy a passed proposal
//!   brings into force.
//!
//! Every node fed the same proposals and votes computes the same tally whatever the order or
//! duplication of messages (property-tested).
//!
//! [`Dao`] wires a ledger to a node: proposals and votes travel as signed envelopes on the
//! gossip topics, each node counts them itself, and closed proposals become decisions that the
//! node's MAPE-K loop applies to its live policy (it implements core's `Governance`).
//!
//! **Finality** ([`TallyAttestation`]): when a proposal closes, each node signs the tally it
//! computed (ML-DSA-65 under `contexts::TALLY`) and gossips it on `x0tta/policy/1`; a decision
//! is announced — and applied by the node's loop — only once attestations agreeing on one
//! tally come from more than 2/3 of the stake. Attesters of another tally are reported
//! ([`Ledger::disagreeing`]); one that signs two different attestations is proven Byzantine
//! and no longer counts.
//!
//! **Byzantine evidence**: a node that sees two conflicting votes of one voter slashes it and
//! gossips the proof ([`Equivocation`]) on `x0tta/evidence/1`; every node verifies it
//! ([`Ledger::accept_evidence`]) before slashing too, so a voter that showed each half of the
//! mesh a different vote is caught everywhere. Proven offenders (conflicting votes or tally
//! attestations) reach the node's healer as BYZANTINE_PEER anomalies through
//! [`Dao::detector`] ([`ByzantineDetector`]); the `isolate-byzantine-peer` plan cuts them off
//! with core's `disconnect_peer`.
//!
//! **Anti-entropy** on `/x0tta/gov/1` ([`GovDigest`], [`GovDelta`]): every
//! [`DaoPolicy::sync_interval`] a node asks a random live neighbour for the signed proposals,
//! votes, attestations and evidence it lacks and counts them as if gossiped, which repairs
//! dropped frames and partitions; a late joiner takes a finished proposal once attestations
//! from more than 2/3 of the stake prove its tally ([`Ledger::admit_final`]).
//!
//! **Effectiveness** ([`Dao::effectiveness`], [`EffectivenessReport`]): the metric a passed
//! proposal's rationale names (MTTR, incident rate or heal rate, optionally of one anomaly
//! kind) measured on the knowledge store's incidents over a window before the policy came into
//! force and the same window after.

mod byzantine;
mod dao;
mod effect;
mod finality;
mod ledger;
mod proposal;
mod sync;

pub use byzantine::{ByzantineDetector, Offence};
pub use dao::{CLOSE_CHECK, DECISION_CAPACITY, Dao, MAX_MEASURED, MAX_SYNC_ROUNDS, StartError};
pub use effect::{EffectError, EffectivenessReport, Metric, Sample, Target};
pub use finality::{
    AttestationRefusal, AttestationResult, FinalTally, SignedAttestation, TallyAttestation,
    sign_attestation,
};
pub use ledger::{
    DaoPolicy, Equivocation, EvidenceResult, Ledger, MAX_REVISIONS, Outcome, Phase, Refusal,
    SignedVote, Tally, VoteBody, VoteResult, sign_vote, verify_evidence,
};
pub use proposal::{Change, PARAMETERS, Parameter, ProposalError, ProposalSpec, Track};
pub use sync::{
    GOV_PROTOCOL, GovDelta, GovDigest, Held, MAX_DIGEST_ITEMS, MAX_LATE, MAX_LISTED, REPLY_BUDGET,
};
