//! # x0tta-ebpf
//!
//! **Not implemented yet.** This crate will hold the XDP program (C, built with clang) and its
//! aya loader (DESIGN §9): per-source packet and byte counters as a
//! [`Sensor`](x0tta_core::Sensor), token-bucket rate limiting per source, and a block map
//! behind an `isolate_peer` [`Action`](x0tta_core::Action). It will sit behind a cargo
//! feature and report a clear error without root or CAP_BPF.
