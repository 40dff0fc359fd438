//! # x0tta-analysis
//!
//! The AI layer (DESIGN §11), judged by measured quality on data nobody here wrote.
//!
//! Built so far:
//! - [`nab`]: the Numenta Anomaly Benchmark's scoring, as NAB computes it (anomaly windows,
//!   scaled-sigmoid rewards, the standard / reward-low-FP / reward-low-FN profiles, one
//!   threshold optimised over the corpus, normalisation against the null and perfect
//!   detectors), on any directory in NAB's layout;
//! - [`detectors`]: streaming detectors behind [`detectors::StreamingDetector`]. They are
//!   NAB's `windowedGaussian` baseline (it reproduces NAB's published scores and so proves the
//!   scorer right), `ensemble` (O(1) per point, the best here so far) and `cusum` (x0tta-core's
//!   default statistical detector, so that NAB can score what a node runs today);
//! - [`PerMetricDetector`]: any of them inside the MAPE-K loop, as one of core's
//!   [`Detector`](x0tta_core::Detector)s. It runs one detector per resource metric and raises
//!   an anomaly of that metric's kind.
//!
//! - [`graph`] (feature `graph`, candle): a 2-layer GraphSAGE (mean aggregator, sampled
//!   neighbours) that classifies each node of the neighbour graph, with training (AdamW) and
//!   signed, content-addressed, versioned `patterns.bin` weights.
//!
//! Still to come (issue 9): detectors worth deploying, GraphSAGE over the neighbour graph,
//! root-cause ranking, Byzantine-robust federated learning and the calibration of the
//! planner's success probability. Until then the default healer of x0tta-core (threshold and
//! robust CUSUM detectors) is what a node runs.
//!
//! ```no_run
//! use std::path::Path;
//! use x0tta_analysis::{detectors, nab};
//!
//! # fn main() -> Result<(), nab::NabError> {
//! let corpus = nab::Corpus::load(Path::new("NAB"))?;
//! let make = detectors::by_name("windowedGaussian").expect("a shipped detector");
//! let scores: Vec<Vec<f64>> = corpus
//!     .series
//!     .iter()
//!     .map(|s| detectors::run(make, &s.timestamps, &s.values))
//!     .collect();
//! for profile in nab::Profile::all() {
//!     let r = nab::evaluate(&corpus, &scores, &profile);
//!     println!("{}: {:.2}", profile.name, r.normalized);
//! }
//! # Ok(())
//! # }
//! ```

pub mod calibration;
pub mod detectors;
#[cfg(feature = "graph")]
pub mod federated;
#[cfg(feature = "graph")]
pub mod graph;
pub mod nab;
mod per_metric;
pub mod rootcause;
#[cfg(feature = "eval")]
pub mod scenario;

pub use per_metric::{DEFAULT_THRESHOLD, DEFAULT_WARMUP, PerMetricDetector};
