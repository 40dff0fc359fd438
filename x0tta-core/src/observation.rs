//! What the Monitor phase produces: one [`Observation`] per cycle, merged from every sensor.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Milliseconds since the Unix epoch, the workspace's wall-clock timestamp.
///
/// ```
/// use x0tta_core::Timestamp;
/// let t = Timestamp::from_millis(1_700_000_000_000);
/// assert_eq!(t.saturating_add(std::time::Duration::from_secs(1)).as_millis(), 1_700_000_001_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }
    /// Wraps milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }
    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }
    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
            .unwrap_or(0);
        Self(ms)
    }
}

/// Well-known metric names. Sensors may add their own; detectors match on these.
///
/// Service metrics are named `service.<name>.<what>` (see [`service_metric`]).
pub mod names {
    /// Host CPU use over the last sampling interval, percent of all cores.
    pub const CPU_PERCENT: &str = "host.cpu.percent";
    /// Host memory in use, percent of total.
    pub const MEMORY_PERCENT: &str = "host.memory.percent";
    /// Fullest watched disk, percent used.
    pub const DISK_PERCENT: &str = "host.disk.percent";
    /// Bytes received per second over all interfaces.
    pub const NET_RX_BPS: &str = "host.net.rx_bytes_per_s";
    /// Bytes sent per second over all interfaces.
    pub const NET_TX_BPS: &str = "host.net.tx_bytes_per_s";
    /// Neighbours currently up.
    pub const MESH_NEIGHBOURS: &str = "mesh.neighbours";
    /// Mean round-trip time to neighbours, milliseconds.
    pub const MESH_RTT_MS: &str = "mesh.rtt_ms";
    /// Mean loss ratio to neighbours (0..1).
    pub const MESH_LOSS: &str = "mesh.loss_ratio";
    /// Service resident memory, MiB (suffix of `service.<name>.`).
    pub const SERVICE_MEMORY_MB: &str = "memory_mb";
    /// Service CPU use, percent (suffix of `service.<name>.`).
    pub const SERVICE_CPU_PERCENT: &str = "cpu_percent";
}

/// The metric name `service.<service>.<what>`.
pub fn service_metric(service: &str, what: &str) -> String {
    format!("service.{service}.{what}")
}

/// The result of one health probe of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The service probed.
    pub service: String,
    /// What was probed (`process`, `tcp 127.0.0.1:8080`, `http http://…`).
    pub probe: String,
    /// Whether the probe passed.
    pub healthy: bool,
    /// Why it failed, if it did.
    pub detail: Option<String>,
    /// How long the probe took, milliseconds.
    pub latency_ms: u64,
}

/// A neighbour's state as the transport sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The neighbour.
    pub id: NodeId,
    /// Addresses it is reachable at, in the transport's notation.
    pub addresses: Vec<String>,
    /// Smoothed round-trip time, milliseconds, if measured.
    pub rtt_ms: Option<f64>,
    /// Loss ratio over the recent probe window, 0..1.
    pub loss: f64,
    /// Last time it was heard from.
    pub last_seen: Timestamp,
    /// Liveness as failure detection judges it.
    pub state: PeerState,
    /// Estimated clock offset (its clock minus ours), milliseconds, if measured.
    pub clock_offset_ms: Option<i64>,
}

/// Failure-detector state of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PeerState {
    /// Answering.
    Up,
    /// Missed probes; indirect probes pending.
    Suspect,
    /// Confirmed unreachable.
    Down,
    /// Isolated on purpose by this node.
    Isolated,
}

/// Everything a node knows about itself at one instant: metrics, probes and mesh state.
///
/// ```
/// use x0tta_core::{Observation, NodeId, names};
/// let mut obs = Observation::new(NodeId::new("n1")?);
/// obs.set(names::CPU_PERCENT, 42.0);
/// assert_eq!(obs.get(names::CPU_PERCENT), Some(42.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The observing node.
    pub node: NodeId,
    /// When the observation was taken.
    pub at: Timestamp,
    /// Metric values by name (finite values only; see [`Observation::set`]).
    pub metrics: BTreeMap<String, f64>,
    /// Service probe results.
    pub probes: Vec<ProbeResult>,
    /// The neighbour table.
    pub neighbours: Vec<Neighbour>,
    /// Sensors that failed this cycle, with the reason.
    pub sensor_errors: Vec<(String, String)>,
}

impl Observation {
    /// An empty observation taken now.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            at: Timestamp::now(),
            metrics: BTreeMap::new(),
            probes: Vec::new(),
            neighbours: Vec::new(),
            sensor_errors: Vec::new(),
        }
    }

    /// Sets a metric. Non-finite values are dropped: a NaN must never reach a detector or
    /// a content-addressed record.
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.into(), value);
        }
    }

    /// A metric's value, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// Merges another reading into this one (later values win).
    pub fn merge(&mut self, reading: Reading) {
        for (k, v) in reading.metrics {
            self.set(k, v);
        }
        self.probes.extend(reading.probes);
        self.neighbours.extend(reading.neighbours);
    }
}

/// What one sensor contributes to an [`Observation`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Metric values by name.
    pub metrics: Vec<(String, f64)>,
    /// Probe results.
    pub probes: Vec<ProbeResult>,
    /// Neighbour entries.
    pub neighbours: Vec<Neighbour>,
}

impl Reading {
    /// Adds a metric (builder style).
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push((name.into(), value));
        self
    }
}
