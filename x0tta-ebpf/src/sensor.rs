//! [`XdpSensor`]: XDP counters as metrics for the MAPE-K loop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use x0tta_core::{Policy, Reading, Sensor, SensorError};

use crate::{Error, Totals, XdpGuard};

/// Metric names the sensor reports.
pub mod metric {
    /// `xdp.<interface>.<what>`.
    pub fn interface(interface: &str, what: &str) -> String {
        format!("xdp.{interface}.{what}")
    }
    /// `xdp.source.<address>.<what>`.
    pub fn source(addr: std::net::IpAddr, what: &str) -> String {
        format!("xdp.source.{addr}.{what}")
    }
    /// IP packets per second seen on the interface (passed and dropped).
    pub const PACKETS_PER_S: &str = "packets_per_s";
    /// IP bytes per second passed to the stack.
    pub const PASSED_BYTES_PER_S: &str = "passed_bytes_per_s";
    /// Packets per second dropped by rate limits.
    pub const RATE_DROPPED_PER_S: &str = "rate_dropped_per_s";
    /// Packets per second dropped because their source is blocked.
    pub const BLOCKED_DROPPED_PER_S: &str = "blocked_dropped_per_s";
    /// Sources tracked now.
    pub const SOURCES: &str = "sources";
    /// Addresses blocked now.
    pub const BLOCKED: &str = "blocked";
    /// Packets dropped since attach (both reasons).
    pub const DROPPED_TOTAL: &str = "dropped_total";
    /// Per source: packets per second seen from it.
    pub const SOURCE_PACKETS_PER_S: &str = "packets_per_s";
    /// Per source: packets per second dropped (both reasons).
    pub const SOURCE_DROPPED_PER_S: &str = "dropped_per_s";
}

/// How many sources, the busiest first, get their own metrics each read.
const TOP_SOURCES: usize = 16;

/// Per-source and interface rates from one or more [`XdpGuard`]s, for the MAPE-K loop.
///
/// Each read reports, per interface, the totals' rates since the previous read
/// (`xdp.eth0.packets_per_s`, `…rate_dropped_per_s`, `…blocked_dropped_per_s`,
/// `…passed_bytes_per_s`), the tracked and blocked counts, and for the busiest sources
/// (16 at most, summed over interfaces) `xdp.source.<addr>.packets_per_s` and
/// `…dropped_per_s`. Rates need two reads: the first read reports counts only.
///
/// ```no_run
/// use std::sync::Arc;
/// use x0tta_core::{Policy, Sensor};
/// use x0tta_ebpf::{XdpGuard, XdpSensor};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let sensor = XdpSensor::new(vec![Arc::new(XdpGuard::attach("eth0")?)]);
/// let reading = sensor.read(&Policy::default()).await?;
/// for (name, value) in reading.metrics {
///     println!("{name} = {value}");
/// }
/// # Ok(())
/// # }
/// ```
pub struct XdpSensor {
    guards: Vec<Arc<XdpGuard>>,
    last: Mutex<Option<Snapshot>>,
}

struct Snapshot {
    at: Instant,
    totals: Vec<Totals>,
    /// (packets, dropped) per source, summed over interfaces.
    sources: HashMap<IpAddr, (u64, u64)>,
}

impl XdpSensor {
    /// A sensor over `guards`.
    pub fn new(guards: Vec<Arc<XdpGuard>>) -> Self {
        Self {
            guards,
            last: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> Result<(Snapshot, Vec<usize>, Vec<usize>), Error> {
        let mut totals = Vec::with_capacity(self.guards.len());
        let mut tracked = Vec::with_capacity(self.guards.len());
        let mut blocked = Vec::with_capacity(self.guards.len());
        let mut sources: HashMap<IpAddr, (u64, u64)> = HashMap::new();
        for g in &self.guards {
            totals.push(g.totals()?);
            let list = g.sources()?;
            tracked.push(list.len());
            blocked.push(g.blocked()?.len());
            for s in list {
                let e = sources.entry(s.addr).or_default();
                e.0 += s.packets;
                e.1 += s.rate_dropped + s.blocked_dropped;
            }
        }
        Ok((
            Snapshot {
                at: Instant::now(),
                totals,
                sources,
            },
            tracked,
            blocked,
        ))
    }
}

#[async_trait]
impl Sensor for XdpSensor {
    fn name(&self) -> &str {
        "xdp"
    }

    async fn read(&self, _policy: &Policy) -> Result<Reading, SensorError> {
        let fail = |e: &dyn std::fmt::Display| SensorError {
            sensor: "xdp".into(),
            reason: e.to_string(),
        };
        let (now, tracked, blocked) = self.snapshot().map_err(|e| fail(&e))?;
        let mut last = self
            .last
            .lock()
            .map_err(|_| fail(&"sensor state poisoned"))?;
        let mut r = Reading::default();
        for (i, g) in self.guards.iter().enumerate() {
            let name = g.interface();
            let t = &now.totals[i];
            r = r
                .metric(metric::interface(name, metric::SOURCES), tracked[i] as f64)
                .metric(metric::interface(name, metric::BLOCKED), blocked[i] as f64)
                .metric(
                    metric::interface(name, metric::DROPPED_TOTAL),
                    t.dropped() as f64,
                );
        }
        if let Some(prev) = last.as_ref() {
            let secs = now.at.duration_since(prev.at).as_secs_f64();
            if secs > 0.0 {
                let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                for (i, g) in self.guards.iter().enumerate() {
                    let (t, p) = (&now.totals[i], &prev.totals[i]);
                    let seen = t.passed + t.dropped();
                    let seen_before = p.passed + p.dropped();
                    let name = g.interface();
                    r = r
                        .metric(
                            metric::interface(name, metric::PACKETS_PER_S),
                            rate(seen, seen_before),
                        )
                        .metric(
                            metric::interface(name, metric::PASSED_BYTES_PER_S),
                            rate(t.passed_bytes, p.passed_bytes),
                        )
                        .metric(
                            metric::interface(name, metric::RATE_DROPPED_PER_S),
                            rate(t.rate_dropped, p.rate_dropped),
                        )
                        .metric(
                            metric::interface(name, metric::BLOCKED_DROPPED_PER_S),
                            rate(t.blocked_dropped, p.blocked_dropped),
                        );
                }
                // A source evicted and seen again restarts from zero: saturating_sub keeps
                // its rate at zero for that read instead of wrapping.
                let mut busiest: Vec<(IpAddr, f64, f64)> = now
                    .sources
                    .iter()
                    .map(|(addr, (pk, dr))| {
                        let (ppk, pdr) = prev.sources.get(addr).copied().unwrap_or((0, 0));
                        (*addr, rate(*pk, ppk), rate(*dr, pdr))
                    })
                    .filter(|(_, pps, _)| *pps > 0.0)
                    .collect();
                busiest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                for (addr, pps, dps) in busiest.into_iter().take(TOP_SOURCES) {
                    r = r
                        .metric(metric::source(addr, metric::SOURCE_PACKETS_PER_S), pps)
                        .metric(metric::source(addr, metric::SOURCE_DROPPED_PER_S), dps);
                }
            }
        }
        *last = Some(now);
        Ok(r)
    }
}
