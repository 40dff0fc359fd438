//! # x0tta-analysis
//!
//! **Not implemented yet.** This crate will hold the AI layer (DESIGN §11): streaming
//! [`Detector`](x0tta_core::Detector)s scored on the Numenta Anomaly Benchmark, GraphSAGE over
//! the neighbour graph, root-cause ranking, Byzantine-robust federated learning, and the
//! calibration of the planner's success probability.
//!
//! The default healer of x0tta-core already ships a threshold detector and a robust CUSUM
//! statistical detector.
