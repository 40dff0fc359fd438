//! Supervision of services as child processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::probe::{ProbeSpec, run_probe};

/// How to run and check one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name (anomaly subjects and metrics use it).
    pub name: String,
    /// Program to run.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Health probes; a service with none gets a `process` probe.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    /// A cgroup directory the node controls (v2 `memory.max` or v1 `memory.limit_in_bytes`);
    /// the service is placed in it at every start, which enables `adjust_memory_limits`.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// File that receives the service's stdout and stderr (default: discarded).
    #[serde(default)]
    pub log: Option<PathBuf>,
}

impl ServiceSpec {
    /// A service running `command` with a process probe.
    pub fn new(name: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            probes: Vec::new(),
            cgroup: None,
            log: None,
        }
    }
    /// Sets the arguments (builder style).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
    /// Adds a probe (builder style).
    pub fn probe(mut self, p: ProbeSpec) -> Self {
        self.probes.push(p);
        self
    }
    /// The probes in force (a process probe when none is configured).
    pub fn effective_probes(&self) -> Vec<ProbeSpec> {
        if self.probes.is_empty() {
            vec![ProbeSpec::Process]
        } else {
            self.probes.clone()
        }
    }
}

/// A supervision failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No service has this name.
    #[error("no supervised service is named `{0}`")]
    Unknown(String),
    /// Two services share a name.
    #[error("two services are named `{0}`")]
    Duplicate(String),
    /// The process could not be started.
    #[error("starting `{service}` ({command}) failed: {error}")]
    Spawn {
        /// The service.
        service: String,
        /// Its command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// Placing it in its cgroup failed.
    #[error("placing `{service}` in cgroup {path}: {error}")]
    Cgroup {
        /// The service.
        service: String,
        /// The cgroup.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Stopping it failed.
    #[error("stopping `{service}`: {error}")]
    Stop {
        /// The service.
        service: String,
        /// Why.
        error: std::io::Error,
    },
}

struct Service {
    spec: ServiceSpec,
    child: Mutex<Option<Child>>,
}

/// Starts, watches, restarts and stops services as child processes.
///
/// Children are killed when the supervisor is dropped. Cheap to clone.
///
/// ```no_run
/// use x0tta_core::host::{ServiceSpec, Supervisor, ProbeSpec};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let sup = Supervisor::new([ServiceSpec::new("cache", "sleep").args(["600"])])?;
/// sup.start_all().await?;
/// assert!(sup.pid("cache").await.is_some());
/// sup.restart("cache").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    services: Arc<BTreeMap<String, Arc<Service>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}

impl Supervisor {
    /// A supervisor of `specs` (nothing is started yet).
    pub fn new(specs: impl IntoIterator<Item = ServiceSpec>) -> Result<Self, SupervisorError> {
        let mut services = BTreeMap::new();
        for spec in specs {
            let name = spec.name.clone();
            let svc = Arc::new(Service {
                spec,
                child: Mutex::new(None),
            });
            if services.insert(name.clone(), svc).is_some() {
                return Err(SupervisorError::Duplicate(name));
            }
        }
        Ok(Self {
            services: Arc::new(services),
        })
    }

    fn get(&self, name: &str) -> Result<&Arc<Service>, SupervisorError> {
        self.services
            .get(name)
            .ok_or_else(|| SupervisorError::Unknown(name.to_string()))
    }

    /// Names of the supervised services.
    pub fn names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// A service's spec.
    pub fn spec(&self, name: &str) -> Result<&ServiceSpec, SupervisorError> {
        Ok(&self.get(name)?.spec)
    }

    /// Starts every service that is not running.
    pub async fn start_all(&self) -> Result<(), SupervisorError> {
        for name in self.services.keys() {
            if self.pid(name).await.is_none() {
                self.start(name).await?;
            }
        }
        Ok(())
    }

    /// Starts `name` (replacing a dead child); returns its pid.
    pub async fn start(&self, name: &str) -> Result<u32, SupervisorError> {
        let svc = self.get(name)?;
        let mut slot = svc.child.lock().await;
        spawn_into(&svc.spec, &mut slot).await
    }

    /// The pid of `name` if it is running. Reaps it if it exited.
    pub async fn pid(&self, name: &str) -> Option<u32> {
        let svc = self.services.get(name)?;
        let mut slot = svc.child.lock().await;
        alive(&mut slot)
    }

    /// Whether `name` is running, with its pid, or why not.
    pub async fn check(&self, name: &str) -> Result<u32, String> {
        let Some(svc) = self.services.get(name) else {
            return Err(format!("no supervised service `{name}`"));
        };
        let mut slot = svc.child.lock().await;
        match slot.as_mut() {
            None => Err("not started".into()),
            Some(child) => match child.try_wait() {
                Ok(None) => child.id().ok_or_else(|| "no pid".to_string()),
                Ok(Some(status)) => Err(format!("exited: {status}")),
                Err(e) => Err(format!("cannot query process: {e}")),
            },
        }
    }

    /// Kills `name` (SIGKILL) and reaps it, without restarting. Returns whether it was running.
    pub async fn stop(&self, name: &str) -> Result<bool, SupervisorError> {
        let svc = self.get(name)?;
        let mut slot = svc.child.lock().await;
        stop_child(name, &mut slot).await
    }

    /// Stops `name` if it runs, starts it again, and waits up to `ready_within` for its
    /// probes to pass. Returns the new pid.
    pub async fn restart_and_wait(
        &self,
        name: &str,
        ready_within: Duration,
    ) -> Result<u32, SupervisorError> {
        let svc = self.get(name)?;
        let pid = {
            let mut slot = svc.child.lock().await;
            stop_child(name, &mut slot).await?;
            spawn_into(&svc.spec, &mut slot).await?
        };
        let deadline = Instant::now() + ready_within;
        let probes: Vec<ProbeSpec> = svc
            .spec
            .effective_probes()
            .into_iter()
            .filter(|p| *p != ProbeSpec::Process)
            .collect();
        while Instant::now() < deadline {
            let mut ok = true;
            for p in &probes {
                if !run_probe(name, p, Duration::from_millis(500)).await.healthy {
                    ok = false;
                    break;
                }
            }
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(pid)
    }

    /// Stops `name` if it runs and starts it again. Returns the new pid.
    pub async fn restart(&self, name: &str) -> Result<u32, SupervisorError> {
        self.restart_and_wait(name, Duration::ZERO).await
    }

    /// Stops every service.
    pub async fn stop_all(&self) {
        for name in self.services.keys() {
            let _ = self.stop(name).await;
        }
    }
}

fn alive(slot: &mut Option<Child>) -> Option<u32> {
    let child = slot.as_mut()?;
    match child.try_wait() {
        Ok(None) => child.id(),
        _ => None,
    }
}

async fn stop_child(name: &str, slot: &mut Option<Child>) -> Result<bool, SupervisorError> {
    let Some(mut child) = slot.take() else {
        return Ok(false);
    };
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(false);
    }
    child.kill().await.map_err(|error| SupervisorError::Stop {
        service: name.to_string(),
        error,
    })?;
    Ok(true)
}

async fn spawn_into(spec: &ServiceSpec, slot: &mut Option<Child>) -> Result<u32, SupervisorError> {
    if let Some(pid) = alive(slot) {
        return Ok(pid);
    }
    let mut cmd = match &spec.cgroup {
        None => {
            let mut c = Command::new(&spec.command);
            c.args(&spec.args);
            c
        }
        Some(cg) => {
            // Join the cgroup *before* exec, so nothing the service forks escapes its limits:
            // a shell writes its own pid into cgroup.procs, then becomes the service.
            let placed = std::fs::create_dir_all(cg).and_then(|()| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(cg.join("cgroup.procs"))
                    .map(drop)
            });
            if let Err(error) = placed {
                return Err(SupervisorError::Cgroup {
                    service: spec.name.clone(),
                    path: cg.clone(),
                    error,
                });
            }
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
                .arg(cg)
                .arg(&spec.command)
                .args(&spec.args);
            c
        }
    };
    cmd.envs(&spec.env).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let spawn_err = |error| SupervisorError::Spawn {
        service: spec.name.clone(),
        command: spec.command.clone(),
        error,
    };
    match &spec.log {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(spawn_err)?;
            let f2 = f.try_clone().map_err(spawn_err)?;
            cmd.stdout(f).stderr(f2);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    let pid = child.id().unwrap_or(0);
    *slot = Some(child);
    Ok(pid)
}
