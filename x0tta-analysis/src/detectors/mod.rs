//! Streaming anomaly detectors: one value at a time, a score in [0, 1] for it before the next
//! is seen.

mod cusum;
mod ensemble;
mod windowed_gaussian;

pub use cusum::CoreCusum;
pub use ensemble::{Ensemble, EnsembleConfig};
pub use windowed_gaussian::WindowedGaussian;

/// An online detector of one metric. `score` is called once per point, in time order, and
/// returns that point's anomaly score in [0, 1] (1: certainly anomalous); it never sees a
/// later point before scoring an earlier one.
pub trait StreamingDetector: Send {
    /// The detector's name, as results name it.
    fn name(&self) -> &'static str;
    /// Scores `value`, observed at `timestamp` (seconds), and learns from it.
    fn score(&mut self, timestamp: i64, value: f64) -> f64;
}

/// Makes a fresh detector (one per series).
pub type DetectorFactory = fn() -> Box<dyn StreamingDetector>;

/// The detectors this crate ships, by name.
///
/// ```
/// let make = x0tta_analysis::detectors::by_name("windowedGaussian").expect("known");
/// let mut d = make();
/// assert_eq!(d.score(0, 1.0), 0.0); // nothing learnt yet
/// ```
pub fn by_name(name: &str) -> Option<DetectorFactory> {
    match name {
        "windowedGaussian" => Some(|| Box::new(WindowedGaussian::new())),
        "ensemble" => Some(|| Box::new(Ensemble::default())),
        "cusum" => Some(|| Box::new(CoreCusum::default())),
        _ => None,
    }
}

/// Names [`by_name`] knows.
pub const NAMES: [&str; 3] = ["windowedGaussian", "ensemble", "cusum"];

/// Scores every point of `values` with a fresh detector from `make`.
pub fn run(make: DetectorFactory, timestamps: &[i64], values: &[f64]) -> Vec<f64> {
    let mut d = make();
    timestamps
        .iter()
        .zip(values)
        .map(|(t, v)| d.score(*t, *v))
        .collect()
}
