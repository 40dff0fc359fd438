//! # x0tta-dao
//!
//! **Not implemented yet.** This crate will hold the [`Governance`](x0tta_core::Governance)
//! of x0tta6bl4 nodes (DESIGN §8): proposals, quadratic voting with stake (cost = votes²),
//! quorum 51% (emergency 67%), the proposal lifecycle, equivocation evidence and slashing,
//! and execution of passed proposals into every node's live policy.
