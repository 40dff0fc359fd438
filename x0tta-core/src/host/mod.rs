//! Real host sensors, service supervision and probes, and host-level recovery actions
//! (feature `host`).
//!
//! - [`HostSensor`]: CPU, memory, disk and network figures of the machine (via `sysinfo`).
//! - [`Supervisor`]: starts services as child processes, restarts and stops them, and puts
//!   them in a cgroup the node controls when configured.
//! - [`ServiceSensor`]: each supervised service's probes (process alive, TCP connect, HTTP GET
//!   status) and its resident memory and CPU.
//! - Actions: [`RestartService`], [`RunCommand`], [`AdjustMemoryLimits`].

mod actions;
mod cgroup;
mod probe;
mod sensor;
mod supervisor;

pub use actions::{AdjustMemoryLimits, MAX_COMMAND_OUTPUT, RestartService, RunCommand};
pub use cgroup::{CgroupError, MemoryLimit, read_memory_limit, write_memory_limit};
pub use probe::{ProbeSpec, run_probe};
pub use sensor::{HostSensor, ServiceSensor};
pub use supervisor::{ServiceSpec, Supervisor, SupervisorError};
