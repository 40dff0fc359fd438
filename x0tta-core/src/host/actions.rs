//! Host-level recovery actions.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use super::cgroup::{MemoryLimit, read_memory_limit, write_memory_limit};
use super::supervisor::Supervisor;
use crate::{Action, ActionContext, ActionError, Params, ParamsExt, Subject};

/// The service a step is about: the `service` parameter, else the anomaly's subject.
fn target_service(params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
    if let Some(s) = params.text("service")? {
        return Ok(s.to_string());
    }
    match &ctx.anomaly.subject {
        Subject::Service(s) => Ok(s.clone()),
        other => Err(ActionError::Unavailable(format!(
            "no `service` parameter and the anomaly is about {other}, not a service"
        ))),
    }
}

/// `restart_service`: stops a supervised service and starts it again, then waits (up to
/// `ready_within_ms`, default 5000) for its network probes to pass.
///
/// Parameters: `service` (default: the anomaly's service), `ready_within_ms`.
pub struct RestartService {
    supervisor: Supervisor,
}

impl RestartService {
    /// Restarts services of `supervisor`.
    pub fn new(supervisor: Supervisor) -> Self {
        Self { supervisor }
    }
}

#[async_trait]
impl Action for RestartService {
    fn name(&self) -> &str {
        "restart_service"
    }

    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let service = target_service(params, ctx)?;
        let ready = Duration::from_millis(params.uint("ready_within_ms")?.unwrap_or(5000));
        let before = self.supervisor.pid(&service).await;
        let pid = self
            .supervisor
            .restart_and_wait(&service, ready)
            .await
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        Ok(match before {
            Some(old) => format!("restarted {service} (pid {old} -> {pid})"),
            None => format!("started {service} (pid {pid})"),
        })
    }
}

/// Most output kept from a command, per stream.
pub const MAX_COMMAND_OUTPUT: usize = 4096;

/// `run_command`: runs a program and succeeds when it exits 0. The step's timeout kills it.
///
/// Parameters: `command` — a list `[program, arg, …]`, or one string run by `sh -c`.
pub struct RunCommand;

impl RunCommand {
    /// The action.
    pub fn new() -> Self {
        Self
    }
}

impl Default for RunCommand {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps the first [`MAX_COMMAND_OUTPUT`] bytes and drains the rest, so a chatty command is
/// neither killed by SIGPIPE nor allowed to fill memory.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut buf = Vec::new();
    let _ = (&mut r)
        .take(MAX_COMMAND_OUTPUT as u64)
        .read_to_end(&mut buf)
        .await;
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Kills a command's whole process group unless disarmed: a step cancelled by its timeout
/// takes `sh -c "a && b"` and everything it started down with it.
struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

#[async_trait]
impl Action for RunCommand {
    fn name(&self) -> &str {
        "run_command"
    }

    async fn run(&self, params: &Params, _ctx: &ActionContext) -> Result<String, ActionError> {
        let argv: Vec<String> = match params.get("command") {
            Some(crate::ParamValue::Str(s)) => vec!["sh".into(), "-c".into(), s.clone()],
            _ => params.text_list("command")?.unwrap_or_default(),
        };
        let Some((prog, args)) = argv.split_first() else {
            return Err(ActionError::Param(crate::ParamError {
                name: "command".into(),
                problem: "missing or empty".into(),
            }));
        };
        let mut child = tokio::process::Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true) // the step timeout drops this future: the process dies with it
            .process_group(0) // ... and so does every process it started (GroupGuard)
            .spawn()
            .map_err(|e| ActionError::Failed(format!("cannot run {prog}: {e}")))?;
        let mut guard = GroupGuard(
            child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?)),
        );
        let (out, err) = tokio::join!(
            read_bounded(child.stdout.take()),
            read_bounded(child.stderr.take())
        );
        let status = child
            .wait()
            .await
            .map_err(|e| ActionError::Failed(format!("waiting for {prog}: {e}")))?;
        guard.0 = None; // finished on its own: whatever it left running is its business
        if status.success() {
            Ok(if out.is_empty() {
                format!("{prog} exited 0")
            } else {
                format!("{prog} exited 0: {out}")
            })
        } else {
            Err(ActionError::Failed(format!("{prog} {status}: {err}")))
        }
    }
}

/// `adjust_memory_limits`: sets the memory limit of a service's cgroup (v2 `memory.max`, or
/// v1 `memory.limit_in_bytes`). Works only for services configured with a `cgroup` the node
/// controls; anything else is a clear [`ActionError::Unavailable`].
///
/// Parameters: `service` (default: the anomaly's service), `memory_max_mb` (required; 0 means
/// unlimited). Rollback restores the limit that was in force before.
pub struct AdjustMemoryLimits {
    supervisor: Supervisor,
    previous: Mutex<HashMap<String, MemoryLimit>>,
}

impl AdjustMemoryLimits {
    /// Adjusts services of `supervisor`.
    pub fn new(supervisor: Supervisor) -> Self {
        Self {
            supervisor,
            previous: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Action for AdjustMemoryLimits {
    fn name(&self) -> &str {
        "adjust_memory_limits"
    }

    async fn run(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let service = target_service(params, ctx)?;
        let mb = params
            .uint("memory_max_mb")?
            .ok_or_else(|| crate::ParamError {
                name: "memory_max_mb".into(),
                problem: "required".into(),
            })?;
        let spec = self
            .supervisor
            .spec(&service)
            .map_err(|e| ActionError::Unavailable(e.to_string()))?;
        let Some(cg) = spec.cgroup.clone() else {
            return Err(ActionError::Unavailable(format!(
                "service `{service}` runs in no cgroup the node controls (set `cgroup:` in its config)"
            )));
        };
        let before = read_memory_limit(&cg).map_err(|e| ActionError::Unavailable(e.to_string()))?;
        let limit = if mb == 0 {
            MemoryLimit::Unlimited
        } else {
            MemoryLimit::Bytes(mb.saturating_mul(1024 * 1024))
        };
        write_memory_limit(&cg, limit).map_err(|e| ActionError::Failed(e.to_string()))?;
        if let Ok(mut prev) = self.previous.lock() {
            prev.insert(service.clone(), before);
        }
        Ok(format!("{service}: memory limit {before:?} -> {limit:?}"))
    }

    async fn rollback(&self, params: &Params, ctx: &ActionContext) -> Result<String, ActionError> {
        let service = target_service(params, ctx)?;
        let before = self
            .previous
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&service));
        let Some(before) = before else {
            return Ok(format!(
                "{service}: no earlier limit recorded, nothing to undo"
            ));
        };
        let spec = self
            .supervisor
            .spec(&service)
            .map_err(|e| ActionError::Unavailable(e.to_string()))?;
        let Some(cg) = &spec.cgroup else {
            return Ok("no cgroup, nothing to undo".into());
        };
        write_memory_limit(cg, before).map_err(|e| ActionError::Failed(e.to_string()))?;
        Ok(format!("{service}: memory limit restored to {before:?}"))
    }
}
