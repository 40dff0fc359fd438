//! The default [`Healer`]: detectors, a planner and an executor composed by a builder.
//!
//! ```
//! use std::sync::Arc;
//! use x0tta_core::healing::{DefaultHealer, ThresholdDetector, DefaultPlanner, DefaultExecutor};
//! let healer = DefaultHealer::builder()
//!     .detector(Arc::new(ThresholdDetector::new()))
//!     .planner(Arc::new(DefaultPlanner::new()))
//!     .executor(Arc::new(DefaultExecutor::new()))
//!     .build();
//! assert_eq!(healer.detector_names(), vec!["threshold"]);
//! // Or the standard set: threshold + statistical detectors, default planner and executor.
//! let standard = DefaultHealer::standard();
//! assert_eq!(standard.detector_names(), vec!["threshold", "statistical"]);
//! ```

mod executor;
mod planner;
mod statistical;
mod threshold;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use executor::DefaultExecutor;
pub use planner::{DefaultPlanner, EVIDENCE_WEIGHT};
pub use statistical::{
    MAX_TRACKED_METRICS, RobustCusum, StatisticalDetector, Step, metric_anomaly,
};
pub use threshold::ThresholdDetector;

use crate::{
    Anomaly, Detector, ExecContext, ExecutionReport, Executor, Healer, KnowledgeStore, Observation,
    PlanContext, PlanDecision, PlanError, Planner, Policy, RecoveryPlan, RootCauseRanker,
};

/// Detectors + planner + executor.
#[derive(Clone)]
pub struct DefaultHealer {
    detectors: Vec<Arc<dyn Detector>>,
    planner: Arc<dyn Planner>,
    executor: Arc<dyn Executor>,
    root_cause: Option<Arc<dyn RootCauseRanker>>,
}

impl std::fmt::Debug for DefaultHealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultHealer")
            .field("detectors", &self.detector_names())
            .field(
                "root_cause",
                &self.root_cause.as_ref().map(|r| r.name().to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`DefaultHealer`].
#[derive(Default)]
pub struct DefaultHealerBuilder {
    detectors: Vec<Arc<dyn Detector>>,
    planner: Option<Arc<dyn Planner>>,
    executor: Option<Arc<dyn Executor>>,
    root_cause: Option<Arc<dyn RootCauseRanker>>,
}

impl DefaultHealerBuilder {
    /// Adds a detector; detectors run in the order added.
    pub fn detector(mut self, d: Arc<dyn Detector>) -> Self {
        self.detectors.push(d);
        self
    }
    /// Sets the planner (default: [`DefaultPlanner`]).
    pub fn planner(mut self, p: Arc<dyn Planner>) -> Self {
        self.planner = Some(p);
        self
    }
    /// Sets the executor (default: [`DefaultExecutor`]).
    pub fn executor(mut self, e: Arc<dyn Executor>) -> Self {
        self.executor = Some(e);
        self
    }
    /// Sets the root-cause ranker whose answer goes into each incident (default: none; the
    /// incident then carries the anomaly's first evidence note).
    pub fn root_cause(mut self, r: Arc<dyn RootCauseRanker>) -> Self {
        self.root_cause = Some(r);
        self
    }
    /// The healer. With no detector added, it gets the standard two.
    pub fn build(self) -> DefaultHealer {
        let detectors = if self.detectors.is_empty() {
            vec![
                Arc::new(ThresholdDetector::new()) as Arc<dyn Detector>,
                Arc::new(StatisticalDetector::new()),
            ]
        } else {
            self.detectors
        };
        DefaultHealer {
            detectors,
            planner: self
                .planner
                .unwrap_or_else(|| Arc::new(DefaultPlanner::new())),
            executor: self
                .executor
                .unwrap_or_else(|| Arc::new(DefaultExecutor::new())),
            root_cause: self.root_cause,
        }
    }
}

impl DefaultHealer {
    /// A builder.
    pub fn builder() -> DefaultHealerBuilder {
        DefaultHealerBuilder::default()
    }

    /// Threshold and statistical detectors, the default planner and executor.
    pub fn standard() -> Self {
        Self::builder().build()
    }

    /// Names of the detectors, in order.
    pub fn detector_names(&self) -> Vec<&str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }
}

/// Merges anomalies that share a key: the highest severity and confidence win and the
/// evidence is pooled, so two detectors seeing one problem yield one anomaly.
pub fn merge_anomalies(found: Vec<Anomaly>) -> Vec<Anomaly> {
    let mut out: Vec<Anomaly> = Vec::with_capacity(found.len());
    let mut index: HashMap<_, usize> = HashMap::new();
    for a in found {
        match index.get(&a.key()) {
            Some(&i) => {
                let m = &mut out[i];
                if a.severity > m.severity {
                    m.severity = a.severity;
                }
                if a.confidence > m.confidence {
                    m.confidence = a.confidence;
                }
                if !m.detector.split('+').any(|d| d == a.detector) {
                    m.detector = format!("{}+{}", m.detector, a.detector);
                }
                m.evidence.extend(a.evidence);
            }
            None => {
                index.insert(a.key(), out.len());
                out.push(a);
            }
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.confidence.total_cmp(&a.confidence))
    });
    out
}

#[async_trait]
impl Healer for DefaultHealer {
    async fn analyze(&self, obs: &Observation, policy: &Policy) -> Vec<Anomaly> {
        let found = self
            .detectors
            .iter()
            .flat_map(|d| d.detect(obs, policy))
            .collect();
        merge_anomalies(found)
    }

    async fn plan(
        &self,
        anomaly: &Anomaly,
        ctx: &PlanContext<'_>,
    ) -> Result<PlanDecision, PlanError> {
        self.planner.plan(anomaly, ctx).await
    }

    async fn execute(&self, plan: &RecoveryPlan, ctx: &ExecContext<'_>) -> ExecutionReport {
        self.executor.execute(plan, ctx).await
    }

    async fn root_cause(
        &self,
        anomaly: &Anomaly,
        obs: &Observation,
        knowledge: &dyn KnowledgeStore,
    ) -> Option<String> {
        match &self.root_cause {
            Some(r) => r.root_cause(anomaly, obs, knowledge).await,
            None => None,
        }
    }
}
