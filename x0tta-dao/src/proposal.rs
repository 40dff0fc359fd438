//! Proposals in the seed's layout, with parameter changes typed against the policy schema.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use x0tta_core::{NodeId, Policy};

/// Which voting track a proposal takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// Discussion, then a long vote, quorum 51%.
    Standard,
    /// No discussion, a short vote, quorum 67%.
    Emergency,
}

/// One parameter change: what the creator saw, and what they propose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// A policy parameter name (see [`PARAMETERS`]).
    pub parameter: String,
    /// Its value in the live policy when the proposal was written.
    pub current: f64,
    /// The proposed value.
    pub proposed: f64,
}

/// A proposal in the seed's `proposal-001.yaml` layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalSpec {
    /// Human id (`threshold-adjust-2026-01`).
    pub proposal_id: String,
    /// Short title.
    pub title: String,
    /// What and why.
    #[serde(default)]
    pub description: String,
    /// The changes, applied together.
    pub changes: Vec<Change>,
    /// The reasoning (and the metric the effectiveness report will compare).
    #[serde(default)]
    pub rationale: String,
    /// The proposing node.
    pub creator: NodeId,
    /// When it was written, ms since the epoch.
    pub timestamp: u64,
    /// Voting track.
    #[serde(default = "standard")]
    pub track: Track,
    /// When its creator put it to the mesh, ms since the epoch: set by
    /// [`Dao::propose`](crate::Dao::propose) and signed with the proposal, so every node times
    /// the discussion and voting periods from the same instant, however late gossip brought
    /// it. Not written in YAML files; absent, a node times the periods from when it received
    /// the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<u64>,
}

fn standard() -> Track {
    Track::Standard
}

/// A proposal that cannot be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// The YAML is malformed (file, line and field in the message).
    #[error("{0}")]
    Parse(String),
    /// A change names a parameter the policy does not have.
    #[error("unknown parameter `{0}` (known: {known})", known = PARAMETERS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "))]
    UnknownParameter(String),
    /// A proposed value is out of its parameter's range.
    #[error("parameter `{parameter}`: {value} is out of range ({range})")]
    OutOfRange {
        /// The parameter.
        parameter: String,
        /// The value.
        value: f64,
        /// The allowed range.
        range: &'static str,
    },
    /// `current` does not match the live policy: the proposal was written against another one.
    #[error(
        "parameter `{parameter}`: the proposal says current = {claimed}, the live policy has {live}"
    )]
    StaleCurrent {
        /// The parameter.
        parameter: String,
        /// What the proposal claims.
        claimed: f64,
        /// What the policy holds.
        live: f64,
    },
    /// The proposal changes nothing, or one parameter twice.
    #[error("invalid proposal: {0}")]
    Invalid(String),
    /// The creator says it opened the proposal too far from this node's clock (ahead by more
    /// than the clock-skew tolerance, or behind by more than that plus the propagation bound).
    #[error("opened at {opened_at} ms, outside the window this node accepts at {now} ms")]
    OpenedAt {
        /// The creator's claim.
        opened_at: u64,
        /// This node's clock.
        now: u64,
    },
    /// The signed proposal does not verify, or its signer is not its creator.
    #[error("forged proposal: {0}")]
    Forged(String),
    /// A proposal opened too long ago to vote on here, without proof that it is final.
    #[error(
        "opened too long ago to vote on here, and not proven final: attestations agreeing on one tally come from {attesting_stake} of {total_stake} stake (more than 2/3 needed)"
    )]
    Unproven {
        /// The largest stake attesting one tally.
        attesting_stake: u64,
        /// All stake.
        total_stake: u64,
    },
    /// The creator cannot pay the proposal fee.
    #[error("the creator has {credits} credits; the proposal fee is {fee}")]
    InsufficientCredits {
        /// Credits available.
        credits: u64,
        /// The fee.
        fee: u64,
    },
}

/// A governable policy parameter.
pub struct Parameter {
    /// Its name in proposals.
    pub name: &'static str,
    /// Allowed values, for people.
    pub range: &'static str,
    check: fn(f64) -> bool,
    get: fn(&Policy) -> f64,
    set: fn(&mut Policy, f64),
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The parameters proposals may change, typed against the policy schema.
pub const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "cpu_threshold",
        range: "0..=100 percent",
        check: |v| (0.0..=100.0).contains(&v),
        get: |p| p.thresholds.cpu_percent,
        set: |p, v| p.thresholds.cpu_percent = v,
    },
    Parameter {
        name: "memory_threshold",
        range: "0..=100 percent",
        check: |v| (0.0..=100.0).contains(&v),
        get: |p| p.thresholds.memory_percent,
        set: |p, v| p.thresholds.memory_percent = v,
    },
    Parameter {
        name: "disk_threshold",
        range: "0..=100 percent",
        check: |v| (0.0..=100.0).contains(&v),
        get: |p| p.thresholds.disk_percent,
        set: |p, v| p.thresholds.disk_percent = v,
    },
    Parameter {
        name: "check_interval",
        range: "1..=86400 seconds",
        check: |v| (1.0..=86_400.0).contains(&v),
        get: |p| secs(p.intervals.cycle),
        set: |p, v| p.intervals.cycle = Duration::from_secs_f64(v),
    },
    Parameter {
        name: "rtt_threshold_ms",
        range: "> 0 ms",
        check: |v| v > 0.0 && v.is_finite(),
        get: |p| p.thresholds.rtt_ms,
        set: |p, v| p.thresholds.rtt_ms = v,
    },
    Parameter {
        name: "loss_threshold",
        range: "0..=1",
        check: |v| (0.0..=1.0).contains(&v),
        get: |p| p.thresholds.loss_ratio,
        set: |p, v| p.thresholds.loss_ratio = v,
    },
    Parameter {
        name: "min_neighbours",
        range: "whole number 0..=1000",
        check: |v| v.fract() == 0.0 && (0.0..=1000.0).contains(&v),
        get: |p| f64::from(p.thresholds.min_neighbours),
        set: |p, v| p.thresholds.min_neighbours = v as u32,
    },
];

impl Parameter {
    /// The parameter's value in `policy`.
    pub fn value(&self, policy: &Policy) -> f64 {
        (self.get)(policy)
    }
}

fn parameter(name: &str) -> Result<&'static Parameter, ProposalError> {
    PARAMETERS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ProposalError::UnknownParameter(name.to_string()))
}

impl ProposalSpec {
    /// Parses the YAML layout; errors name file, line and field.
    ///
    /// ```
    /// use x0tta_dao::ProposalSpec;
    /// let yaml = "proposal_id: p1\ntitle: lower cpu\nchanges:\n  - parameter: cpu_threshold\n    current: 90\n    proposed: 70\ncreator: node-1\ntimestamp: 1700000000000\n";
    /// let p = ProposalSpec::from_yaml(yaml, "p1.yaml")?;
    /// assert_eq!(p.changes[0].proposed, 70.0);
    /// # Ok::<(), x0tta_dao::ProposalError>(())
    /// ```
    pub fn from_yaml(text: &str, file: &str) -> Result<Self, ProposalError> {
        x0tta_core::config::parse(text, file).map_err(|e| ProposalError::Parse(e.to_string()))
    }

    /// Checks every change against `live` and returns the policy it would bring into force
    /// (version + 1).
    pub fn apply_to(&self, live: &Policy) -> Result<Policy, ProposalError> {
        if self.changes.is_empty() && self.track == Track::Standard {
            // Only the emergency track votes on something other than a policy change (e.g. an
            // approval to run a CRITICAL recovery plan).
            return Err(ProposalError::Invalid(
                "a standard proposal must change something".into(),
            ));
        }
        let mut next = live.clone();
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.changes {
            let p = parameter(&c.parameter)?;
            if !seen.insert(p.name) {
                return Err(ProposalError::Invalid(format!(
                    "`{}` is changed twice",
                    p.name
                )));
            }
            let current = (p.get)(live);
            if (current - c.current).abs() > 1e-9 {
                return Err(ProposalError::StaleCurrent {
                    parameter: c.parameter.clone(),
                    claimed: c.current,
                    live: current,
                });
            }
            if !c.proposed.is_finite() || !(p.check)(c.proposed) {
                return Err(ProposalError::OutOfRange {
                    parameter: c.parameter.clone(),
                    value: c.proposed,
                    range: p.range,
                });
            }
            (p.set)(&mut next, c.proposed);
        }
        next.version = live.version + 1;
        next.validate()
            .map_err(|e| ProposalError::Invalid(format!("the resulting policy is invalid: {e}")))?;
        Ok(next)
    }
}
