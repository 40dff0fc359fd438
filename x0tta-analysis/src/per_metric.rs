//! Streaming detectors in the MAPE-K loop: one per metric, behind core's [`Detector`].

use std::collections::HashMap;
use std::sync::Mutex;

use x0tta_core::healing::{MAX_TRACKED_METRICS, metric_anomaly};
use x0tta_core::names;
use x0tta_core::{Anomaly, Detector, Evidence, Observation, Policy, Severity};

use crate::detectors::{DetectorFactory, StreamingDetector};

/// The score at which [`PerMetricDetector`] raises an anomaly by default: the threshold that
/// NAB's standard profile chose for the [`Ensemble`](crate::detectors::Ensemble) detector over
/// its 58 series (docs/PERFORMANCE.md).
pub const DEFAULT_THRESHOLD: f64 = 0.6029;

/// The threshold NAB's standard profile chose for the [`ContextMemory`] detector over its 58
/// series (docs/PERFORMANCE.md); [`PerMetricDetector::context`] uses it.
///
/// [`ContextMemory`]: crate::detectors::ContextMemory
pub const CONTEXT_THRESHOLD: f64 = 0.7731;

/// Points each metric is learnt from before it can raise anomalies (NAB's probationary
/// period, for a series of a few hundred points).
pub const DEFAULT_WARMUP: u64 = 60;

/// The range a metric's values take by definition, when it has one: percentages and ratios.
///
/// ```
/// use x0tta_analysis::per_metric::known_range;
/// assert_eq!(known_range("host.cpu.percent"), Some((0.0, 100.0)));
/// assert_eq!(known_range("service.web.cpu_percent"), Some((0.0, 100.0)));
/// assert_eq!(known_range("mesh.loss_ratio"), Some((0.0, 1.0)));
/// assert_eq!(known_range("mesh.rtt_ms"), None);
/// ```
pub fn known_range(metric: &str) -> Option<(f64, f64)> {
    match metric {
        names::CPU_PERCENT | names::MEMORY_PERCENT | names::DISK_PERCENT => Some((0.0, 100.0)),
        names::MESH_LOSS => Some((0.0, 1.0)),
        _ => metric
            .strip_prefix("service.")
            .and_then(|rest| rest.rsplit_once('.'))
            .filter(|(_, what)| *what == names::SERVICE_CPU_PERCENT)
            .map(|_| (0.0, 100.0)),
    }
}

struct Track {
    detector: Box<dyn StreamingDetector>,
    points: u64,
    /// Slow mean of the metric: only a rise above it is an anomaly of the metric's kind.
    level: f64,
    /// The observation it was last seen in.
    seen: u64,
}

#[derive(Default)]
struct State {
    by_metric: HashMap<String, Track>,
    observations: u64,
}

/// Runs one streaming detector per resource metric (CPU, memory, disk, mesh RTT and loss,
/// per-service memory and CPU: the metrics [`metric_anomaly`] knows) and raises a LOW anomaly
/// of that metric's kind when a point scores at or above the threshold and lies above the
/// metric's slow mean. A detector is told the metric's [`known_range`] before its first point.
/// At most [`MAX_TRACKED_METRICS`] metrics are tracked; at the bound the one unseen for
/// longest is forgotten.
///
/// It runs while the policy's `statistical.enabled` is set. Its anomalies are LOW: a
/// surprise, not a failure (plan templates act from MEDIUM by default; the threshold and
/// statistical detectors raise those). They become incidents, with the score in the
/// evidence, and feed the root-cause ranking.
///
/// ```
/// use std::sync::Arc;
/// use x0tta_analysis::{detectors, PerMetricDetector};
/// use x0tta_core::{Detector, NodeId, Observation, Policy, AnomalyKind};
///
/// let make = detectors::by_name("ensemble").expect("shipped");
/// let d = PerMetricDetector::new(make);
/// let mut raised = Vec::new();
/// for i in 0..400 {
///     let mut obs = Observation::new(NodeId::new("n1").expect("an id"));
///     let cpu = if i < 300 { 20.0 + (i % 3) as f64 } else { 97.0 };
///     obs.set("host.cpu.percent", cpu);
///     raised.extend(d.detect(&obs, &Policy::default()));
/// }
/// assert!(raised.iter().any(|a| a.kind == AnomalyKind::CpuOverload));
/// // A custom healer takes it like any detector:
/// let _healer = x0tta_core::healing::DefaultHealer::builder().detector(Arc::new(d)).build();
/// ```
pub struct PerMetricDetector {
    name: String,
    make: DetectorFactory,
    threshold: f64,
    warmup: u64,
    state: Mutex<State>,
}

impl PerMetricDetector {
    /// One detector from `make` per metric, with [`DEFAULT_THRESHOLD`] and
    /// [`DEFAULT_WARMUP`].
    pub fn new(make: DetectorFactory) -> Self {
        let name = format!("stream:{}", make().name());
        Self {
            name,
            make,
            threshold: DEFAULT_THRESHOLD,
            warmup: DEFAULT_WARMUP,
            state: Mutex::default(),
        }
    }

    /// One [`ContextMemory`](crate::detectors::ContextMemory) per metric, alarming at
    /// [`CONTEXT_THRESHOLD`]: the detector node-ref runs.
    pub fn context() -> Self {
        Self::new(|| Box::new(crate::detectors::ContextMemory::default()))
            .threshold(CONTEXT_THRESHOLD)
    }

    /// Raises anomalies at scores of `threshold` and above (clamped to 0..=1).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = if threshold.is_finite() {
            threshold.clamp(0.0, 1.0)
        } else {
            DEFAULT_THRESHOLD
        };
        self
    }

    /// Learns each metric from `points` points before judging it.
    pub fn warmup(mut self, points: u64) -> Self {
        self.warmup = points;
        self
    }
}

impl Detector for PerMetricDetector {
    fn name(&self) -> &str {
        &self.name
    }

    fn detect(&self, obs: &Observation, policy: &Policy) -> Vec<Anomaly> {
        // The policy's switch for streaming statistics covers this detector too.
        if !policy.statistical.enabled {
            return Vec::new();
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.observations += 1;
        let now = state.observations;
        let secs = i64::try_from(obs.at.as_millis() / 1000).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for (metric, &x) in &obs.metrics {
            let Some((kind, subject)) = metric_anomaly(metric) else {
                continue;
            };
            if !x.is_finite() {
                continue;
            }
            if !state.by_metric.contains_key(metric) && state.by_metric.len() >= MAX_TRACKED_METRICS
            {
                let stalest = state
                    .by_metric
                    .iter()
                    .min_by_key(|(_, t)| t.seen)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    state.by_metric.remove(&k);
                }
            }
            let make = self.make;
            let t = state.by_metric.entry(metric.clone()).or_insert_with(|| {
                let mut detector = make();
                if let Some((min, max)) = known_range(metric) {
                    detector.expect_range(min, max);
                }
                Track {
                    detector,
                    points: 0,
                    level: x,
                    seen: now,
                }
            });
            t.seen = now;
            t.points += 1;
            let score = t.detector.score(secs, x);
            let level = t.level;
            t.level += 0.01 * (x - t.level);
            if t.points <= self.warmup || score < self.threshold || x <= level {
                continue;
            }
            out.push(
                Anomaly::new(kind, Severity::Low, score, subject, self.name.clone()).with_evidence(
                    Evidence {
                        signal: metric.clone(),
                        value: Some(x),
                        reference: Some(level),
                        note: format!(
                            "{metric} = {x:.2} scored {score:.3} by {} (threshold {:.3}; its level was {level:.2})",
                            self.name, self.threshold
                        ),
                    },
                ),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x0tta_core::{AnomalyKind, NodeId, Subject};

    fn obs(metrics: &[(&str, f64)]) -> Observation {
        let mut o = Observation::new(NodeId::new("n1").unwrap_or_else(|_| unreachable!()));
        for (k, v) in metrics {
            o.set(*k, *v);
        }
        o
    }

    fn ensemble() -> PerMetricDetector {
        PerMetricDetector::new(|| Box::new(crate::detectors::Ensemble::default()))
    }

    #[test]
    fn a_rise_raises_the_metrics_kind_a_drop_does_not() {
        let d = ensemble();
        let p = Policy::default();
        let mut up = Vec::new();
        for i in 0..300 {
            let v = if i < 200 { 40.0 + (i % 4) as f64 } else { 95.0 };
            up.extend(d.detect(&obs(&[("service.web.memory_mb", v)]), &p));
        }
        assert!(!up.is_empty());
        assert!(up.iter().all(|a| a.kind == AnomalyKind::MemoryPressure
            && a.subject == Subject::Service("web".into())
            && a.detector == "stream:ensemble"));
        let d = ensemble();
        let mut down = Vec::new();
        for i in 0..300 {
            let v = if i < 200 { 40.0 + (i % 4) as f64 } else { 1.0 };
            down.extend(d.detect(&obs(&[("host.memory.percent", v)]), &p));
        }
        assert!(down.is_empty(), "{down:?}");
    }

    #[test]
    fn nothing_during_warmup_and_unknown_metrics_are_ignored() {
        let d = ensemble().warmup(1_000);
        let p = Policy::default();
        for i in 0..300 {
            let v = if i % 50 == 0 { 1e6 } else { 1.0 };
            assert!(
                d.detect(
                    &obs(&[("host.cpu.percent", v), ("xdp.eth0.packets_per_s", v)]),
                    &p
                )
                .is_empty()
            );
        }
        let tracked = d.state.lock().map(|s| s.by_metric.len()).unwrap_or(0);
        assert_eq!(tracked, 1, "only the known metric is tracked");
    }

    #[test]
    fn the_context_detector_is_told_known_ranges_and_obeys_the_policy_switch() {
        let d = PerMetricDetector::context();
        let mut off = Policy::default();
        off.statistical.enabled = false;
        for i in 0..400 {
            let v = if i < 300 { 20.0 + (i % 3) as f64 } else { 97.0 };
            assert!(d.detect(&obs(&[("host.cpu.percent", v)]), &off).is_empty());
        }
        let p = Policy::default();
        let mut raised = Vec::new();
        for i in 0..400 {
            let v = if i < 300 { 20.0 + (i % 3) as f64 } else { 97.0 };
            raised.extend(d.detect(&obs(&[("host.cpu.percent", v)]), &p));
        }
        assert_eq!(raised.len(), 1, "one alarm for one jump: {raised:?}");
        let a = &raised[0];
        assert_eq!(
            (a.kind, a.severity),
            (AnomalyKind::CpuOverload, Severity::Low)
        );
        assert_eq!(a.detector, "stream:context");
    }

    #[test]
    fn the_metric_table_is_bounded() {
        let d = ensemble();
        let p = Policy::default();
        for i in 0..MAX_TRACKED_METRICS + 10 {
            let name = format!("service.s{i}.cpu_percent");
            d.detect(&obs(&[(name.as_str(), 1.0)]), &p);
        }
        let tracked = d.state.lock().map(|s| s.by_metric.len()).unwrap_or(0);
        assert_eq!(tracked, MAX_TRACKED_METRICS);
    }
}
