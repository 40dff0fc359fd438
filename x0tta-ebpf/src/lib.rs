//! # x0tta-ebpf
//!
//! An XDP program (C, `bpf/xdp_guard.c`, compiled by clang at build time when clang is
//! present) and its aya loader. Attached to an interface, it keeps per-source packet and byte
//! counters (an LRU table), enforces a token-bucket rate limit per source address (a default
//! plus per-address overrides, changed live), and drops everything from blocked addresses.
//!
//! - [`XdpGuard`]: load, attach (driver mode, generic fallback), read counters, set limits,
//!   block and unblock; detaches on drop.
//! - [`XdpSensor`]: the MAPE-K loop's view: interface totals and the busiest sources' rates.
//! - Actions [`IsolatePeer`] (`isolate_peer`), [`UnisolatePeer`] (`unisolate_peer`) and
//!   [`SetRateLimit`] (`set_rate_limit`), each with a rollback.
//!
//! Loading needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON; without them, or in a
//! build without clang, every entry point returns a typed [`Error`] that says what is missing,
//! and a node runs without the guard. Linux only.
//!
//! ```no_run
//! use std::sync::Arc;
//! use x0tta_ebpf::{RateLimit, XdpGuard, XdpSensor};
//!
//! # fn main() -> Result<(), x0tta_ebpf::Error> {
//! let guard = Arc::new(XdpGuard::builder("eth0").rate_limit(RateLimit::new(50_000, 5_000)?).attach()?);
//! let sensor = XdpSensor::new(vec![guard.clone()]);   // register with the node's healer
//! let actions = x0tta_ebpf::actions(vec![guard]);     // isolate_peer, unisolate_peer, set_rate_limit
//! # let _ = (sensor, actions);
//! # Ok(())
//! # }
//! ```

mod actions;
mod error;
mod guard;
mod sensor;

pub use actions::{ACTION_NAMES, IsolatePeer, SetRateLimit, UnisolatePeer, actions, addresses_of};
pub use error::Error;
pub use guard::{
    AttachMode, MAX_BURST, MAX_RATE_PPS, ModeRequest, RateLimit, SourceStats, Totals, XdpGuard,
    XdpGuardBuilder, build_note, program_built,
};
pub use sensor::{XdpSensor, metric};
