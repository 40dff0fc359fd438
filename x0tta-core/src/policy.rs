//! The node's policy: thresholds, intervals and limits that drive the MAPE-K loop.
//!
//! A [`Policy`] is versioned; the live one sits in a [`PolicyHandle`] that the loop reads at
//! the start of every cycle, so a change (a reload, a governance decision) takes effect on the
//! next cycle without a restart. A policy never goes backwards: an update must carry a higher
//! version than the one in force.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Thresholds the threshold detector compares observations with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Host CPU percent above which CPU_OVERLOAD is raised.
    #[serde(deserialize_with = "de::percent")]
    pub cpu_percent: f64,
    /// Host memory percent above which MEMORY_PRESSURE is raised.
    #[serde(deserialize_with = "de::percent")]
    pub memory_percent: f64,
    /// Disk percent above which DISK_PRESSURE is raised.
    #[serde(deserialize_with = "de::percent")]
    pub disk_percent: f64,
    /// Resident memory of one supervised service, MiB, above which MEMORY_PRESSURE is raised
    /// for that service. `None` disables the check.
    #[serde(deserialize_with = "de::opt_positive")]
    pub service_memory_mb: Option<f64>,
    /// Consecutive failed probes before SERVICE_DOWN is raised.
    pub probe_failures: u32,
    /// Round-trip time to a neighbour, ms, above which LINK_DEGRADED is raised.
    #[serde(deserialize_with = "de::positive")]
    pub rtt_ms: f64,
    /// Loss ratio to a neighbour (0..1) above which LINK_DEGRADED is raised.
    #[serde(deserialize_with = "de::ratio")]
    pub loss_ratio: f64,
    /// Fewer live neighbours than this raises NETWORK_PARTITION (0 disables the check).
    pub min_neighbours: u32,
    /// Clock offset to a neighbour, ms, beyond which CLOCK_SKEW is raised.
    #[serde(deserialize_with = "de::positive")]
    pub clock_skew_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu_percent: 90.0,
            memory_percent: 90.0,
            disk_percent: 90.0,
            service_memory_mb: None,
            probe_failures: 1,
            rtt_ms: 500.0,
            loss_ratio: 0.2,
            min_neighbours: 0,
            clock_skew_ms: 500.0,
        }
    }
}

/// How often things happen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    /// Time between two MAPE-K cycles (seed default 60 s). Mesh events wake the loop early.
    #[serde(with = "crate::serde_duration")]
    pub cycle: Duration,
    /// How long verification may wait for an anomaly to clear after a plan ran.
    #[serde(with = "crate::serde_duration")]
    pub verify_timeout: Duration,
    /// Time between two re-observations while verifying.
    #[serde(with = "crate::serde_duration")]
    pub verify_poll: Duration,
    /// Timeout of one service probe.
    #[serde(with = "crate::serde_duration")]
    pub probe_timeout: Duration,
    /// How long an emergency heal waits for its vote before it is abandoned.
    #[serde(with = "crate::serde_duration")]
    pub vote_timeout: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            cycle: Duration::from_secs(60),
            verify_timeout: Duration::from_secs(30),
            verify_poll: Duration::from_millis(250),
            probe_timeout: Duration::from_secs(2),
            // The emergency track votes for 15 minutes (DESIGN §8); allow the tally to arrive.
            vote_timeout: Duration::from_secs(20 * 60),
        }
    }
}

/// The circuit breaker: when a plan keeps failing for the same trouble, stop retrying it
/// blindly and escalate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    /// Failures of one plan for one (kind, subject) within `window` that open the breaker.
    pub max_failures: u32,
    /// The window failures are counted in.
    #[serde(with = "crate::serde_duration")]
    pub window: Duration,
    /// How long an open breaker refuses the plan.
    #[serde(with = "crate::serde_duration")]
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            max_failures: 3,
            window: Duration::from_secs(600),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// Settings of the streaming statistical detector (robust CUSUM per metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticalPolicy {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Points used to learn a metric's baseline before it is judged.
    pub warmup: u32,
    /// CUSUM allowance, in robust standard deviations.
    #[serde(deserialize_with = "de::positive")]
    pub drift: f64,
    /// CUSUM decision threshold, in robust standard deviations.
    #[serde(deserialize_with = "de::positive")]
    pub threshold: f64,
    /// Residuals are clipped at this many standard deviations (robustness to single spikes).
    #[serde(deserialize_with = "de::positive")]
    pub clip: f64,
    /// Baseline adaptation rate per point (0..1).
    #[serde(deserialize_with = "de::ratio")]
    pub adapt: f64,
}

impl Default for StatisticalPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            warmup: 30,
            // Tuned by simulation (σ-noise with 1-in-97 spikes of 12σ): k = 1, h = 8 gives
            // about 2 false alarms in 600,000 points and detects a 3σ shift within 11 points.
            drift: 1.0,
            threshold: 8.0,
            clip: 3.0,
            adapt: 0.01,
        }
    }
}

/// How the nodes' federated updates of the analysis model are combined (x0tta-analysis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationRule {
    /// The plain mean: not robust, for comparison.
    Fedavg,
    /// The coordinate-wise median.
    Median,
    /// The coordinate-wise mean after dropping a third at each end.
    TrimmedMean,
    /// Multi-Krum, withstanding a third of forged updates.
    Krum,
}

/// Federated learning of the analysis model: every node trains on its own labelled
/// incidents once per round and publishes a signed update; each combines what it accepted.
///
/// ```
/// use x0tta_core::{AggregationRule, Policy};
/// let p: Policy =
///     serde_json::from_str(r#"{"federated": {"interval": "1h", "rule": "krum"}}"#).unwrap();
/// assert_eq!(p.federated.rule, AggregationRule::Krum);
/// assert_eq!(p.federated.interval, std::time::Duration::from_secs(3600));
/// assert!(p.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederatedPolicy {
    /// Whether the node takes part.
    pub enabled: bool,
    /// Length of a round (seed: 4 h). Rounds follow the clock, so all nodes agree on them:
    /// round `r` runs from `r × interval` to `(r + 1) × interval` after the Unix epoch.
    #[serde(with = "crate::serde_duration")]
    pub interval: Duration,
    /// How updates are combined.
    pub rule: AggregationRule,
    /// A node clips its own update to this L2 norm.
    #[serde(deserialize_with = "de::positive")]
    pub clip_norm: f64,
    /// Updates with a larger L2 norm are refused (0: the rule alone deals with them).
    pub max_norm: f64,
}

impl Default for FederatedPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(4 * 3600),
            rule: AggregationRule::Median,
            clip_norm: 10.0,
            max_norm: 0.0,
        }
    }
}

/// Failure detection and link security timings of the mesh (x0tta-mesh, x0tta-pqc).
///
/// SWIM-style: every `probe_interval` a node pings one neighbour (round robin); no ack
/// within `probe_timeout` makes it ask `indirect_probes` other neighbours to ping it; no
/// ack through them either makes the peer *suspect*, and a suspect that stays silent for
/// `suspect_timeout` is *down*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshPolicy {
    /// Time between two probes of this node (one neighbour per probe).
    #[serde(with = "crate::serde_duration")]
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack.
    #[serde(with = "crate::serde_duration")]
    pub probe_timeout: Duration,
    /// Neighbours asked to probe a silent peer (SWIM's k).
    pub indirect_probes: u32,
    /// How long a suspect peer has to answer before it is declared down.
    #[serde(with = "crate::serde_duration")]
    pub suspect_timeout: Duration,
    /// Interval between key updates of an encrypted link (forward secrecy).
    #[serde(with = "crate::serde_duration")]
    pub rekey_interval: Duration,
}

impl Default for MeshPolicy {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(100),
            indirect_probes: 3,
            suspect_timeout: Duration::from_millis(800),
            rekey_interval: Duration::from_secs(3600),
        }
    }
}

/// The node's policy: everything the MAPE-K loop reads each cycle.
///
/// ```
/// use x0tta_core::Policy;
/// let p = Policy::default();
/// assert_eq!(p.version, 1);
/// assert!(p.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Monotonic version; a higher version replaces a lower one.
    pub version: u64,
    /// Detector thresholds.
    pub thresholds: Thresholds,
    /// Cycle and verification timing.
    pub intervals: Intervals,
    /// Circuit breaker.
    pub breaker: BreakerPolicy,
    /// Statistical detector.
    pub statistical: StatisticalPolicy,
    /// Whether a CRITICAL anomaly needs a governance emergency vote before its plan runs.
    pub critical_needs_vote: bool,
    /// Most heals the node runs in one cycle; the rest wait for the next cycle.
    pub max_heals_per_cycle: u32,
    /// Failure detection and link timings.
    pub mesh: MeshPolicy,
    /// Federated learning of the analysis model.
    pub federated: FederatedPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            version: 1,
            thresholds: Thresholds::default(),
            intervals: Intervals::default(),
            breaker: BreakerPolicy::default(),
            statistical: StatisticalPolicy::default(),
            critical_needs_vote: false,
            max_heals_per_cycle: 4,
            mesh: MeshPolicy::default(),
            federated: FederatedPolicy::default(),
        }
    }
}

/// A policy that breaks a rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A field has a value outside its range.
    #[error("policy field `{field}`: {problem}")]
    BadValue {
        /// The field, dotted (`intervals.cycle`).
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Policy {
    /// Checks rules the types cannot express.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field, problem: &str| {
            Err(PolicyError::BadValue {
                field,
                problem: problem.to_string(),
            })
        };
        let t = &self.thresholds;
        for (field, v) in [
            ("thresholds.cpu_percent", t.cpu_percent),
            ("thresholds.memory_percent", t.memory_percent),
            ("thresholds.disk_percent", t.disk_percent),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return bad(field, "must be a percentage between 0 and 100");
            }
        }
        if !(0.0..=1.0).contains(&t.loss_ratio) {
            return bad("thresholds.loss_ratio", "must be between 0 and 1");
        }
        if self.intervals.cycle < Duration::from_millis(1) {
            return bad("intervals.cycle", "must be at least 1ms");
        }
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        for (field, v, max, max_text) in [
            ("intervals.cycle", self.intervals.cycle, DAY, "1 day"),
            (
                "intervals.verify_timeout",
                self.intervals.verify_timeout,
                DAY,
                "1 day",
            ),
            (
                "intervals.verify_poll",
                self.intervals.verify_poll,
                HOUR,
                "1 hour",
            ),
            (
                "intervals.probe_timeout",
                self.intervals.probe_timeout,
                HOUR,
                "1 hour",
            ),
            (
                "intervals.vote_timeout",
                self.intervals.vote_timeout,
                7 * DAY,
                "7 days",
            ),
            ("breaker.window", self.breaker.window, 30 * DAY, "30 days"),
            (
                "breaker.cooldown",
                self.breaker.cooldown,
                30 * DAY,
                "30 days",
            ),
        ] {
            if v > max {
                return Err(PolicyError::BadValue {
                    field,
                    problem: format!("must be at most {max_text}"),
                });
            }
        }
        let m = &self.mesh;
        for (field, v, max, max_text) in [
            ("mesh.probe_interval", m.probe_interval, HOUR, "1 hour"),
            ("mesh.probe_timeout", m.probe_timeout, HOUR, "1 hour"),
            ("mesh.suspect_timeout", m.suspect_timeout, DAY, "1 day"),
            ("mesh.rekey_interval", m.rekey_interval, 7 * DAY, "7 days"),
        ] {
            if v.is_zero() {
                return bad(field, "must be positive");
            }
            if v > max {
                return Err(PolicyError::BadValue {
                    field,
                    problem: format!("must be at most {max_text}"),
                });
            }
        }
        let f = &self.federated;
        if f.interval < Duration::from_millis(1) || f.interval > 30 * DAY {
            return bad("federated.interval", "must be between 1ms and 30 days");
        }
        if !(f.max_norm.is_finite() && f.max_norm >= 0.0) {
            return bad(
                "federated.max_norm",
                "must be a non-negative number (0: no limit)",
            );
        }
        if m.probe_timeout > m.probe_interval {
            return bad("mesh.probe_timeout", "must not exceed mesh.probe_interval");
        }
        if m.indirect_probes > 16 {
            return bad("mesh.indirect_probes", "must be at most 16");
        }
        if self.intervals.verify_poll.is_zero() {
            return bad("intervals.verify_poll", "must be positive");
        }
        if self.breaker.max_failures == 0 {
            return bad("breaker.max_failures", "must be at least 1");
        }
        if self.max_heals_per_cycle == 0 {
            return bad("max_heals_per_cycle", "must be at least 1");
        }
        if self.version == 0 {
            return bad("version", "must be at least 1");
        }
        Ok(())
    }

    /// Whether `self` and `other` are the same policy apart from their version.
    pub fn same_rules(&self, other: &Policy) -> bool {
        let mut a = self.clone();
        a.version = other.version;
        a == *other
    }
}

/// What happened to a policy update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyUpdate {
    /// The new policy is in force.
    Applied {
        /// Version replaced.
        from: u64,
        /// Version now in force.
        to: u64,
    },
    /// Refused: not newer than the one in force.
    Stale {
        /// Version in force.
        current: u64,
        /// Version offered.
        offered: u64,
    },
    /// The offered rules equal the ones in force; nothing changed.
    Unchanged,
}

/// The live policy, shared by the loop, the actions and whoever updates it.
///
/// Cheap to clone; every clone sees the same policy.
///
/// ```
/// use x0tta_core::{Policy, PolicyHandle, PolicyUpdate};
/// let live = PolicyHandle::new(Policy::default())?;
/// let mut next = (*live.current()).clone();
/// next.version = 2;
/// next.thresholds.cpu_percent = 75.0;
/// assert_eq!(live.apply(next)?, PolicyUpdate::Applied { from: 1, to: 2 });
/// assert_eq!(live.current().thresholds.cpu_percent, 75.0);
/// # Ok::<(), x0tta_core::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    tx: Arc<watch::Sender<Arc<Policy>>>,
}

impl PolicyHandle {
    /// A handle holding `initial`, after validating it.
    pub fn new(initial: Policy) -> Result<Self, PolicyError> {
        initial.validate()?;
        let (tx, _rx) = watch::channel(Arc::new(initial));
        Ok(Self { tx: Arc::new(tx) })
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.tx.borrow().clone()
    }

    /// Replaces the policy if `next` is valid and has a higher version.
    pub fn apply(&self, next: Policy) -> Result<PolicyUpdate, PolicyError> {
        next.validate()?;
        let mut outcome = PolicyUpdate::Unchanged;
        self.tx.send_if_modified(|cur| {
            if next.version <= cur.version {
                outcome = PolicyUpdate::Stale {
                    current: cur.version,
                    offered: next.version,
                };
                return false;
            }
            outcome = PolicyUpdate::Applied {
                from: cur.version,
                to: next.version,
            };
            *cur = Arc::new(next.clone());
            true
        });
        Ok(outcome)
    }

    /// Replaces the rules with `next`'s, whatever version it carries, under the next version
    /// number. Used for local reloads; returns [`PolicyUpdate::Unchanged`] if the rules equal
    /// the ones in force.
    pub fn replace_rules(&self, mut next: Policy) -> Result<PolicyUpdate, PolicyError> {
        next.validate()?;
        let cur = self.current();
        if cur.same_rules(&next) {
            return Ok(PolicyUpdate::Unchanged);
        }
        next.version = next.version.max(cur.version + 1);
        self.apply(next)
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Policy>> {
        self.tx.subscribe()
    }
}

/// Range-checking deserializers: a bad value is reported by the format with its location.
mod de {
    use serde::{Deserialize, Deserializer, de::Error};

    pub(super) fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = f64::deserialize(d)?;
        if (0.0..=100.0).contains(&v) {
            Ok(v)
        } else {
            Err(D::Error::custom(format!(
                "{v} is not a percentage (expected 0..=100)"
            )))
        }
    }

    pub(super) fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(D::Error::custom(format!(
                "{v} is not a ratio (expected 0..=1)"
            )))
        }
    }

    pub(super) fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(D::Error::custom(format!("{v} must be a positive number")))
        }
    }

    pub(super) fn opt_positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            None => Ok(None),
            Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            Some(v) => Err(D::Error::custom(format!("{v} must be a positive number"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_updates_are_refused() {
        let h = PolicyHandle::new(Policy::default()).unwrap();
        let mut p = Policy::default();
        p.thresholds.cpu_percent = 10.0;
        assert_eq!(
            h.apply(p).unwrap(),
            PolicyUpdate::Stale {
                current: 1,
                offered: 1
            }
        );
        assert_eq!(h.current().thresholds.cpu_percent, 90.0);
    }

    #[test]
    fn replace_rules_bumps_version_or_reports_unchanged() {
        let h = PolicyHandle::new(Policy::default()).unwrap();
        assert_eq!(
            h.replace_rules(Policy::default()).unwrap(),
            PolicyUpdate::Unchanged
        );
        let mut p = Policy::default();
        p.thresholds.disk_percent = 50.0;
        assert_eq!(
            h.replace_rules(p).unwrap(),
            PolicyUpdate::Applied { from: 1, to: 2 }
        );
    }

    #[test]
    fn invalid_policies_are_refused() {
        let mut p = Policy::default();
        p.thresholds.cpu_percent = 120.0;
        assert!(matches!(
            PolicyHandle::new(p),
            Err(PolicyError::BadValue {
                field: "thresholds.cpu_percent",
                ..
            })
        ));
    }
}
