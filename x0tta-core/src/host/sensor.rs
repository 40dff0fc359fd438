//! Host and service sensors.

use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessStatus,
    ProcessesToUpdate, RefreshKind, System,
};

use super::probe::{ProbeSpec, process_result, run_probe};
use super::supervisor::Supervisor;
use crate::{Policy, Reading, Sensor, SensorError, names, service_metric};

const MIB: f64 = 1024.0 * 1024.0;

struct HostState {
    sys: System,
    disks: Disks,
    nets: Networks,
    last_net: Option<(Instant, u64, u64)>,
}

/// CPU, memory, disk and network figures of the machine.
///
/// Metrics: `host.cpu.percent` (all cores, since the previous read), `host.memory.percent`,
/// `host.disk.percent` (the fullest real disk), `host.net.rx_bytes_per_s` and
/// `host.net.tx_bytes_per_s` (all interfaces, since the previous read; absent on the first).
pub struct HostSensor {
    state: Mutex<HostState>,
}

impl std::fmt::Debug for HostSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostSensor")
    }
}

impl HostSensor {
    /// A sensor primed with a first sample (CPU use is a difference of two samples).
    pub fn new() -> Result<Self, SensorError> {
        let err = |e: sysinfo::Error| SensorError {
            sensor: "host".into(),
            reason: e.to_string(),
        };
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .map_err(err)?;
        let disks = Disks::new_with_refreshed_list().map_err(err)?;
        let nets = Networks::new_with_refreshed_list().map_err(err)?;
        Ok(Self {
            state: Mutex::new(HostState {
                sys,
                disks,
                nets,
                last_net: None,
            }),
        })
    }
}

#[async_trait]
impl Sensor for HostSensor {
    fn name(&self) -> &str {
        "host"
    }

    async fn read(&self, _policy: &Policy) -> Result<Reading, SensorError> {
        let mut st = self.state.lock().map_err(|_| SensorError {
            sensor: "host".into(),
            reason: "sensor state poisoned".into(),
        })?;
        let st = &mut *st;
        st.sys.refresh_cpu_usage();
        st.sys.refresh_memory();
        let mut r =
            Reading::default().metric(names::CPU_PERCENT, f64::from(st.sys.global_cpu_usage()));
        let total = st.sys.total_memory();
        if total > 0 {
            r = r.metric(
                names::MEMORY_PERCENT,
                100.0 * st.sys.used_memory() as f64 / total as f64,
            );
        }
        st.disks.refresh(true);
        let fullest = st
            .disks
            .iter()
            .filter(|d| d.total_space() > 0)
            .map(|d| {
                100.0 * (d.total_space() - d.available_space().min(d.total_space())) as f64
                    / d.total_space() as f64
            })
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        if let Some(p) = fullest {
            r = r.metric(names::DISK_PERCENT, p);
        }
        st.nets.refresh(true);
        let (rx, tx) = st.nets.iter().fold((0u64, 0u64), |(rx, tx), (_, d)| {
            (rx + d.total_received(), tx + d.total_transmitted())
        });
        let now = Instant::now();
        if let Some((then, prx, ptx)) = st.last_net {
            let secs = now.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                r = r
                    .metric(names::NET_RX_BPS, rx.saturating_sub(prx) as f64 / secs)
                    .metric(names::NET_TX_BPS, tx.saturating_sub(ptx) as f64 / secs);
            }
        }
        st.last_net = Some((now, rx, tx));
        Ok(r)
    }
}

/// Probes and resource use of every service a [`Supervisor`] runs.
///
/// For each service: its probes (process alive through the supervisor; TCP and HTTP probes
/// with the policy's probe timeout), and `service.<name>.memory_mb` and
/// `service.<name>.cpu_percent` while it runs.
pub struct ServiceSensor {
    supervisor: Supervisor,
    sys: Mutex<System>,
}

impl std::fmt::Debug for ServiceSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceSensor({:?})", self.supervisor)
    }
}

impl ServiceSensor {
    /// Watches the services of `supervisor`.
    pub fn new(supervisor: Supervisor) -> Result<Self, SensorError> {
        let sys = System::new_with_specifics(RefreshKind::nothing()).map_err(|e| SensorError {
            sensor: "services".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            supervisor,
            sys: Mutex::new(sys),
        })
    }
}

#[async_trait]
impl Sensor for ServiceSensor {
    fn name(&self) -> &str {
        "services"
    }

    async fn read(&self, policy: &Policy) -> Result<Reading, SensorError> {
        let mut r = Reading::default();
        let timeout = policy.intervals.probe_timeout;
        let mut network_probes = Vec::new();
        for name in self.supervisor.names() {
            let Ok(spec) = self.supervisor.spec(&name) else {
                continue;
            };
            let started = Instant::now();
            let alive = self.supervisor.check(&name).await;
            if let Ok(pid) = &alive
                && let Ok(mut sys) = self.sys.lock()
            {
                let pid = Pid::from_u32(*pid);
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_memory().with_cpu(),
                );
                if let Some(p) = sys
                    .process(pid)
                    .filter(|p| p.status() != ProcessStatus::Zombie)
                {
                    r = r
                        .metric(
                            service_metric(&name, names::SERVICE_MEMORY_MB),
                            p.memory() as f64 / MIB,
                        )
                        .metric(
                            service_metric(&name, names::SERVICE_CPU_PERCENT),
                            f64::from(p.cpu_usage()),
                        );
                }
            }
            for p in spec.effective_probes() {
                match p {
                    ProbeSpec::Process => {
                        r.probes.push(process_result(&name, alive.clone(), started))
                    }
                    other => network_probes.push((name.clone(), other)),
                }
            }
        }
        // Network probes run concurrently: the whole sensor takes one probe timeout, not one
        // per probe, however many services hang.
        let results = futures::future::join_all(
            network_probes
                .iter()
                .map(|(name, spec)| run_probe(name, spec, timeout)),
        )
        .await;
        r.probes.extend(results);
        Ok(r)
    }
}
