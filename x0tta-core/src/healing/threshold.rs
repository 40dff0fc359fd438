//! The threshold detector: compares an observation with the live policy's thresholds.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{
    Anomaly, AnomalyKind, Detector, Evidence, Observation, PeerState, Policy, Severity, Subject,
    names,
};

/// Raises anomalies when metrics cross the thresholds of the policy in force.
///
/// Reads thresholds from the policy it is given on every call, so a policy change takes
/// effect on the next cycle. Keeps one counter per service (consecutive failed probes).
///
/// | signal | anomaly |
/// |---|---|
/// | `host.cpu.percent` > `cpu_percent` | CPU_OVERLOAD (host) |
/// | `host.memory.percent` > `memory_percent` | MEMORY_PRESSURE (host) |
/// | `host.disk.percent` > `disk_percent` | DISK_PRESSURE (host) |
/// | `service.<s>.memory_mb` > `service_memory_mb` | MEMORY_PRESSURE (service) |
/// | `probe_failures` consecutive failed probes | SERVICE_DOWN (service) |
/// | neighbour down | NODE_FAILURE (peer) |
/// | neighbour RTT > `rtt_ms` or loss > `loss_ratio` | LINK_DEGRADED (link) |
/// | neighbour clock offset > `clock_skew_ms` | CLOCK_SKEW (peer) |
/// | live neighbours < `min_neighbours` | NETWORK_PARTITION (mesh) |
///
/// ```
/// use x0tta_core::{healing::ThresholdDetector, Detector, Observation, NodeId, Policy, AnomalyKind, names};
/// let d = ThresholdDetector::new();
/// let mut obs = Observation::new(NodeId::new("n")?);
/// obs.set(names::CPU_PERCENT, 97.0);
/// let found = d.detect(&obs, &Policy::default());
/// assert_eq!(found[0].kind, AnomalyKind::CpuOverload);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ThresholdDetector {
    probe_failures: Mutex<HashMap<String, u32>>,
}

impl ThresholdDetector {
    /// A detector with no history.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Severity by how far `value` is past `threshold` towards `limit`.
fn severity_over(value: f64, threshold: f64, limit: f64) -> Severity {
    let span = (limit - threshold).max(f64::EPSILON);
    let past = (value - threshold) / span;
    if past >= 0.9 {
        Severity::Critical
    } else if past >= 0.5 {
        Severity::High
    } else {
        Severity::Medium
    }
}

fn over(
    out: &mut Vec<Anomaly>,
    obs: &Observation,
    metric: &str,
    threshold: f64,
    kind: AnomalyKind,
    subject: Subject,
    limit: f64,
) {
    let Some(v) = obs.get(metric) else { return };
    if v <= threshold {
        return;
    }
    out.push(
        Anomaly::new(
            kind,
            severity_over(v, threshold, limit),
            0.95,
            subject,
            "threshold",
        )
        .with_evidence(Evidence {
            signal: metric.to_string(),
            value: Some(v),
            reference: Some(threshold),
            note: format!("{metric} = {v:.1} > {threshold:.1}"),
        }),
    );
}

impl Detector for ThresholdDetector {
    fn name(&self) -> &str {
        "threshold"
    }

    fn detect(&self, obs: &Observation, policy: &Policy) -> Vec<Anomaly> {
        let t = &policy.thresholds;
        let mut out = Vec::new();
        over(
            &mut out,
            obs,
            names::CPU_PERCENT,
            t.cpu_percent,
            AnomalyKind::CpuOverload,
            Subject::Host,
            100.0,
        );
        over(
            &mut out,
            obs,
            names::MEMORY_PERCENT,
            t.memory_percent,
            AnomalyKind::MemoryPressure,
            Subject::Host,
            100.0,
        );
        over(
            &mut out,
            obs,
            names::DISK_PERCENT,
            t.disk_percent,
            AnomalyKind::DiskPressure,
            Subject::Host,
            100.0,
        );

        if let Some(limit) = t.service_memory_mb {
            for (metric, _) in obs.metrics.iter() {
                let Some(service) = metric
                    .strip_prefix("service.")
                    .and_then(|r| r.strip_suffix(&format!(".{}", names::SERVICE_MEMORY_MB)))
                else {
                    continue;
                };
                over(
                    &mut out,
                    obs,
                    metric,
                    limit,
                    AnomalyKind::MemoryPressure,
                    Subject::Service(service.to_string()),
                    limit * 2.0,
                );
            }
        }

        // Services: a service is down when its probes failed on `probe_failures` consecutive
        // observations. The counter map only holds services seen in probes (bounded by config).
        let mut per_service: HashMap<&str, (usize, usize, Vec<&crate::ProbeResult>)> =
            HashMap::new();
        for p in &obs.probes {
            let e = per_service.entry(&p.service).or_default();
            e.0 += 1;
            if !p.healthy {
                e.1 += 1;
                e.2.push(p);
            }
        }
        if let Ok(mut counts) = self.probe_failures.lock() {
            counts.retain(|s, _| per_service.contains_key(s.as_str()));
            for (service, (total, failed, failures)) in per_service {
                let c = counts.entry(service.to_string()).or_insert(0);
                if failed == 0 {
                    *c = 0;
                    continue;
                }
                *c = c.saturating_add(1);
                if *c < t.probe_failures.max(1) {
                    continue;
                }
                let severity = if failed == total {
                    Severity::High
                } else {
                    Severity::Medium
                };
                let mut a = Anomaly::new(
                    AnomalyKind::ServiceDown,
                    severity,
                    failed as f64 / total as f64,
                    Subject::Service(service.to_string()),
                    "threshold",
                );
                for p in failures {
                    a = a.with_evidence(Evidence {
                        signal: p.probe.clone(),
                        value: None,
                        reference: None,
                        note: p.detail.clone().unwrap_or_else(|| "probe failed".into()),
                    });
                }
                out.push(a);
            }
        }

        let mut live = 0u32;
        for n in &obs.neighbours {
            match n.state {
                PeerState::Up | PeerState::Suspect => live += 1,
                PeerState::Down => out.push(
                    Anomaly::new(
                        AnomalyKind::NodeFailure,
                        Severity::High,
                        0.9,
                        Subject::Peer(n.id.clone()),
                        "threshold",
                    )
                    .with_evidence(Evidence {
                        signal: "mesh.peer_state".into(),
                        value: None,
                        reference: None,
                        note: format!("peer {} confirmed down", n.id),
                    }),
                ),
                _ => {}
            }
            if n.state != PeerState::Up {
                continue;
            }
            let rtt_bad = n.rtt_ms.is_some_and(|r| r > t.rtt_ms);
            if rtt_bad || n.loss > t.loss_ratio {
                out.push(
                    Anomaly::new(
                        AnomalyKind::LinkDegraded,
                        Severity::Medium,
                        0.8,
                        Subject::Link(n.id.clone()),
                        "threshold",
                    )
                    .with_evidence(Evidence {
                        signal: "mesh.link".into(),
                        value: n.rtt_ms,
                        reference: Some(t.rtt_ms),
                        note: format!("rtt {:?} ms, loss {:.2}", n.rtt_ms, n.loss),
                    }),
                );
            }
            if let Some(off) = n.clock_offset_ms
                && off.unsigned_abs() as f64 > t.clock_skew_ms
            {
                out.push(
                    Anomaly::new(
                        AnomalyKind::ClockSkew,
                        Severity::Medium,
                        0.8,
                        Subject::Peer(n.id.clone()),
                        "threshold",
                    )
                    .with_evidence(Evidence {
                        signal: "mesh.clock_offset_ms".into(),
                        value: Some(off as f64),
                        reference: Some(t.clock_skew_ms),
                        note: format!("clock offset {off} ms"),
                    }),
                );
            }
        }
        if t.min_neighbours > 0 && live < t.min_neighbours {
            let severity = if live == 0 {
                Severity::Critical
            } else {
                Severity::High
            };
            out.push(
                Anomaly::new(
                    AnomalyKind::NetworkPartition,
                    severity,
                    0.9,
                    Subject::Mesh,
                    "threshold",
                )
                .with_evidence(Evidence {
                    signal: names::MESH_NEIGHBOURS.into(),
                    value: Some(f64::from(live)),
                    reference: Some(f64::from(t.min_neighbours)),
                    note: format!("{live} live neighbours < {}", t.min_neighbours),
                }),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, ProbeResult};

    fn probe(ok: bool) -> ProbeResult {
        ProbeResult {
            service: "web".into(),
            probe: "tcp".into(),
            healthy: ok,
            detail: None,
            latency_ms: 1,
        }
    }

    #[test]
    fn service_down_needs_consecutive_failures() {
        let d = ThresholdDetector::new();
        let mut p = Policy::default();
        p.thresholds.probe_failures = 2;
        let mut obs = Observation::new(NodeId::new("n").unwrap());
        obs.probes.push(probe(false));
        assert!(d.detect(&obs, &p).is_empty());
        let found = d.detect(&obs, &p);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, AnomalyKind::ServiceDown);
        obs.probes = vec![probe(true)];
        assert!(d.detect(&obs, &p).is_empty());
    }

    #[test]
    fn service_memory_threshold_is_per_service() {
        let d = ThresholdDetector::new();
        let mut p = Policy::default();
        p.thresholds.service_memory_mb = Some(100.0);
        let mut obs = Observation::new(NodeId::new("n").unwrap());
        obs.set("service.web.memory_mb", 120.0);
        obs.set("service.db.memory_mb", 50.0);
        let found = d.detect(&obs, &p);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, Subject::Service("web".into()));
        assert_eq!(found[0].severity, Severity::Medium);
    }
}
