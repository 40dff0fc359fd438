//! x0tta-core's robust CUSUM (the default healer's statistical detector) as a streaming
//! detector, so that NAB can score what a node runs by default.

use x0tta_core::StatisticalPolicy;
use x0tta_core::healing::{RobustCusum, Step};

use super::StreamingDetector;

/// The default healer's per-metric [`RobustCusum`] under the default
/// [`StatisticalPolicy`]. A detected shift, up or down, scores 1; every other point scores 0.
///
/// ```
/// use x0tta_analysis::detectors::{CoreCusum, StreamingDetector};
/// let mut d = CoreCusum::default();
/// let mut alarms = 0;
/// for i in 0..200 {
///     let x = if i < 150 { 50.0 + (i % 5) as f64 } else { 80.0 };
///     if d.score(i, x) == 1.0 {
///         alarms += 1;
///     }
/// }
/// assert_eq!(alarms, 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CoreCusum {
    cusum: RobustCusum,
    policy: StatisticalPolicy,
}

impl StreamingDetector for CoreCusum {
    fn name(&self) -> &'static str {
        "cusum"
    }

    fn score(&mut self, _timestamp: i64, value: f64) -> f64 {
        match self.cusum.push(value, &self.policy) {
            Step::ShiftUp { .. } | Step::ShiftDown { .. } => 1.0,
            _ => 0.0,
        }
    }
}
