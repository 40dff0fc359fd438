//! The effectiveness report: did a passed proposal do what its rationale promised? The
//! rationale names a metric ("MTTR of CPU_OVERLOAD incidents should fall"); the report measures
//! it on the knowledge store's incidents over a window before the policy came into force and
//! the same window after, and says whether it moved the right way.

use std::fmt;
use std::time::Duration;

use x0tta_core::{AnomalyKind, Incident, Resolution, Timestamp};

/// What a rationale can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Mean time to recovery: detection to the end of a healing plan that cleared the
    /// anomaly, over healed incidents (seconds; lower is better).
    Mttr,
    /// Incidents per hour (lower is better).
    IncidentRate,
    /// Healed / (healed + failed) among incidents where a plan ran (higher is better).
    HealRate,
}

impl Metric {
    fn lower_is_better(self) -> bool {
        !matches!(self, Metric::HealRate)
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::Mttr => "s",
            Metric::IncidentRate => "/h",
            Metric::HealRate => "",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Mttr => "MTTR",
            Metric::IncidentRate => "incident rate",
            Metric::HealRate => "heal rate",
        })
    }
}

/// The metric a rationale names, and the anomaly kind it is about (if it names one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The metric.
    pub metric: Metric,
    /// Only incidents of this kind count; `None`: all of them.
    pub kind: Option<AnomalyKind>,
}

/// An effectiveness report cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EffectError {
    /// The rationale names no metric this report knows.
    #[error(
        "the rationale names no measurable metric (say MTTR, incident rate or heal rate, optionally with an anomaly kind such as CPU_OVERLOAD): {0:?}"
    )]
    NoMetric(String),
    /// The proposal is unknown here.
    #[error("unknown proposal")]
    UnknownProposal,
    /// The proposal has not been put in force here (not final, or rejected).
    #[error("the proposal has not been put in force on this node")]
    NotApplied,
    /// The knowledge store failed.
    #[error("knowledge store: {0}")]
    Knowledge(String),
}

impl Target {
    /// Reads the metric and anomaly kind a rationale names, e.g. "MTTR of CPU_OVERLOAD
    /// incidents should fall", "fewer MEMORY_PRESSURE incidents", "heal rate up".
    ///
    /// ```
    /// use x0tta_core::AnomalyKind;
    /// use x0tta_dao::{Metric, Target};
    /// let t = Target::from_rationale("MTTR of CPU_OVERLOAD incidents should fall.")?;
    /// assert_eq!((t.metric, t.kind), (Metric::Mttr, Some(AnomalyKind::CpuOverload)));
    /// assert!(Target::from_rationale("because").is_err());
    /// # Ok::<(), x0tta_dao::EffectError>(())
    /// ```
    pub fn from_rationale(rationale: &str) -> Result<Self, EffectError> {
        let up = rationale.to_uppercase();
        let words: Vec<&str> = up
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let has = |w: &str| words.contains(&w);
        let metric = if has("MTTR") || up.contains("TIME TO RECOVER") || up.contains("TIME TO HEAL")
        {
            Metric::Mttr
        } else if up.contains("HEAL RATE")
            || up.contains("SUCCESS RATE")
            || up.contains("HEALING RATE")
        {
            Metric::HealRate
        } else if up.contains("INCIDENT RATE")
            || up.contains("INCIDENTS PER")
            || (has("FEWER") && (has("INCIDENTS") || has("ANOMALIES")))
        {
            Metric::IncidentRate
        } else {
            return Err(EffectError::NoMetric(rationale.to_string()));
        };
        let kind = AnomalyKind::ALL.into_iter().find(|k| has(k.as_str()));
        Ok(Self { metric, kind })
    }
}

/// The metric over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Incidents of the target kind detected in the window.
    pub incidents: usize,
    /// The metric's value (`None`: nothing to measure, e.g. no healed incident for MTTR).
    pub value: Option<f64>,
    /// The window's length actually covered (the "after" window may still be running).
    pub span: Duration,
}

/// Before and after a policy came into force.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectivenessReport {
    /// What was measured.
    pub target: Target,
    /// When the policy came into force here.
    pub applied_at: Timestamp,
    /// The window on each side.
    pub window: Duration,
    /// `[applied_at - window, applied_at)`.
    pub before: Sample,
    /// `[applied_at, applied_at + window)`, up to now.
    pub after: Sample,
    /// `(after - before) / before`, when both are measured and `before` is not zero.
    pub change: Option<f64>,
    /// Whether the metric moved the way the rationale wants (`None`: not measurable yet).
    pub improved: Option<bool>,
}

impl EffectivenessReport {
    /// Measures `target` on `incidents` around `applied_at`, with `window` on each side, as
    /// of `now` (incidents outside both windows are ignored).
    ///
    /// ```
    /// use std::time::Duration;
    /// use x0tta_core::Timestamp;
    /// use x0tta_dao::{EffectivenessReport, Target};
    /// let target = Target::from_rationale("fewer incidents per hour")?;
    /// let at = Timestamp::from_millis(10_000_000);
    /// let r = EffectivenessReport::measure(&[], target, at, Duration::from_secs(3600), at);
    /// assert_eq!((r.before.incidents, r.improved), (0, None));
    /// # Ok::<(), x0tta_dao::EffectError>(())
    /// ```
    pub fn measure<'a>(
        incidents: impl IntoIterator<Item = &'a Incident>,
        target: Target,
        applied_at: Timestamp,
        window: Duration,
        now: Timestamp,
    ) -> Self {
        let start = Timestamp::from_millis(
            applied_at
                .as_millis()
                .saturating_sub(window.as_millis().min(u128::from(u64::MAX)) as u64),
        );
        let end = applied_at.saturating_add(window).min(now.max(applied_at));
        let (mut before, mut after): (Vec<&Incident>, Vec<&Incident>) = (Vec::new(), Vec::new());
        for i in incidents {
            if target.kind.is_some_and(|k| k != i.anomaly.kind) {
                continue;
            }
            let t = i.detected_at;
            if t >= start && t < applied_at {
                before.push(i);
            } else if t >= applied_at && t < end {
                after.push(i);
            }
        }
        let before = sample(target.metric, &before, applied_at.since(start));
        let after = sample(target.metric, &after, end.since(applied_at));
        let change = match (before.value, after.value) {
            (Some(b), Some(a)) if b.abs() > f64::EPSILON => Some((a - b) / b),
            _ => None,
        };
        let improved = match (before.value, after.value) {
            (Some(b), Some(a)) if target.metric.lower_is_better() => Some(a < b),
            (Some(b), Some(a)) => Some(a > b),
            _ => None,
        };
        Self {
            target,
            applied_at,
            window,
            before,
            after,
            change,
            improved,
        }
    }
}

/// Detection to the end of the plan that healed it.
fn recovery(i: &Incident) -> Option<Duration> {
    if i.resolution != Resolution::Healed {
        return None;
    }
    let r = &i.report.as_ref()?.report;
    let done = r
        .started_at
        .saturating_add(Duration::from_millis(r.duration_ms));
    Some(done.since(i.detected_at))
}

fn sample(metric: Metric, incidents: &[&Incident], span: Duration) -> Sample {
    let value = match metric {
        Metric::Mttr => {
            let times: Vec<f64> = incidents
                .iter()
                .filter_map(|i| recovery(i))
                .map(|d| d.as_secs_f64())
                .collect();
            (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
        }
        Metric::IncidentRate => {
            (span > Duration::ZERO).then(|| incidents.len() as f64 / (span.as_secs_f64() / 3600.0))
        }
        Metric::HealRate => {
            let ran = incidents
                .iter()
                .filter(|i| matches!(i.resolution, Resolution::Healed | Resolution::Failed))
                .count();
            let healed = incidents
                .iter()
                .filter(|i| i.resolution == Resolution::Healed)
                .count();
            (ran > 0).then(|| healed as f64 / ran as f64)
        }
    };
    Sample {
        incidents: incidents.len(),
        value,
        span,
    }
}

impl fmt::Display for EffectivenessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = match self.target.kind {
            Some(k) => format!(" of {k}"),
            None => String::new(),
        };
        let v = |s: &Sample| match s.value {
            Some(x) => format!("{x:.2}{}", self.target.metric.unit()),
            None => "n/a".into(),
        };
        write!(
            f,
            "{}{of}: before {} ({} incidents), after {} ({} incidents, {:.0} of {:.0} s observed)",
            self.target.metric,
            v(&self.before),
            self.before.incidents,
            v(&self.after),
            self.after.incidents,
            self.after.span.as_secs_f64(),
            self.window.as_secs_f64(),
        )?;
        match (self.change, self.improved) {
            (Some(c), Some(i)) => write!(
                f,
                "; change {:+.1}%: {}",
                c * 100.0,
                if i { "improved" } else { "not improved" }
            ),
            (None, Some(i)) => write!(f, "; {}", if i { "improved" } else { "not improved" }),
            _ => write!(f, "; not measurable yet"),
        }
    }
}
