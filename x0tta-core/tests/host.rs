//! Real processes: a full MAPE-K cycle against a supervised child that is killed and
//! restarted; run_command and its timeout; memory limits through a cgroup (root only).
#![cfg(feature = "host")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use x0tta_core::host::*;
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

fn restart_template() -> PlanTemplate {
    let mut t = template(
        "restart-crashed-service",
        AnomalyKind::ServiceDown,
        &["restart_service"],
    );
    t.trigger.min_severity = Severity::Medium;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_process_is_detected_restarted_and_verified() {
    let sup = Supervisor::new([ServiceSpec::new("worker", "sleep").args(["600"])]).unwrap();
    sup.start_all().await.unwrap();
    let first_pid = sup.pid("worker").await.unwrap();

    let net = MemoryNetwork::new();
    let knowledge = Arc::new(MemoryKnowledge::new(100));
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(knowledge.clone())
        .signer(Arc::new(TestSigner(id("n1"))))
        .sensor(Arc::new(ServiceSensor::new(sup.clone()).unwrap()))
        .action(Arc::new(RestartService::new(sup.clone())))
        .plan_template(restart_template())
        .policy(fast_policy())
        .build()
        .unwrap();
    node.install_templates().await.unwrap();

    let healthy = node.run_cycle(WakeReason::Requested).await;
    assert!(healthy.anomalies.is_empty(), "{:?}", healthy.anomalies);

    // Kill the service behind the supervisor's back (as a crash would).
    let status = std::process::Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(50)).await;

    let r = node.run_cycle(WakeReason::Requested).await;
    assert_eq!(r.anomalies.len(), 1);
    assert_eq!(r.anomalies[0].kind, AnomalyKind::ServiceDown);
    assert_eq!(r.anomalies[0].subject, Subject::Service("worker".into()));
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0].1, Resolution::Healed);
    let new_pid = sup.pid("worker").await.expect("restarted");
    assert_ne!(new_pid, first_pid);
    let incident = knowledge.get(&r.incidents[0].0).await.unwrap().unwrap();
    let report = &incident.report.unwrap().report;
    assert!(matches!(report.verification, Verification::Cleared { .. }));
    let StepOutcome::Succeeded { output } = &report.steps[0].outcome else {
        panic!("{:?}", report.steps)
    };
    assert!(output.contains("started worker"), "{output}");

    let after = node.run_cycle(WakeReason::Requested).await;
    assert!(after.anomalies.is_empty());
    sup.stop_all().await;
}

#[tokio::test]
async fn tcp_and_http_probes_see_a_real_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let status = if req.starts_with("GET /health") {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            });
        }
    });
    let t = Duration::from_secs(2);
    assert!(
        run_probe("s", &ProbeSpec::Tcp(addr.to_string()), t)
            .await
            .healthy
    );
    let ok = run_probe(
        "s",
        &ProbeSpec::Http {
            url: format!("http://{addr}/health"),
            status: 200,
        },
        t,
    )
    .await;
    assert!(ok.healthy, "{:?}", ok.detail);
    let nf = run_probe(
        "s",
        &ProbeSpec::Http {
            url: format!("http://{addr}/missing"),
            status: 200,
        },
        t,
    )
    .await;
    assert!(!nf.healthy);
    assert!(nf.detail.unwrap().contains("answered 404"));
    let closed = run_probe("s", &ProbeSpec::Tcp("127.0.0.1:1".into()), t).await;
    assert!(!closed.healthy);
}

fn action_ctx() -> ActionContext {
    let net = MemoryNetwork::new();
    ActionContext {
        node: id("n"),
        anomaly: Anomaly::new(
            AnomalyKind::MemoryPressure,
            Severity::High,
            1.0,
            Subject::Service("svc".into()),
            "t",
        ),
        observation: Arc::new(Observation::new(id("n"))),
        policy: PolicyHandle::new(Policy::default()).unwrap(),
        transport: Arc::new(net.join(id("n"))),
        knowledge: Arc::new(MemoryKnowledge::new(1)),
    }
}

#[tokio::test]
async fn run_command_reports_exit_status_and_dies_with_its_timeout() {
    let ctx = action_ctx();
    let mut p = Params::new();
    p.insert("command".into(), ParamValue::Str("echo cleared".into()));
    assert_eq!(
        RunCommand::new().run(&p, &ctx).await.unwrap(),
        "sh exited 0: cleared"
    );
    p.insert(
        "command".into(),
        ParamValue::List(vec![ParamValue::Str("false".into())]),
    );
    assert!(matches!(
        RunCommand::new().run(&p, &ctx).await,
        Err(ActionError::Failed(_))
    ));

    let marker = std::env::temp_dir().join(format!("x0tta-timeout-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    p.insert(
        "command".into(),
        ParamValue::Str(format!("sleep 1 && touch {}", marker.display())),
    );
    let r = tokio::time::timeout(Duration::from_millis(100), RunCommand::new().run(&p, &ctx)).await;
    assert!(r.is_err(), "the timeout must cancel the step");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(!marker.exists(), "the command was killed with its step");
}

#[tokio::test]
async fn adjust_memory_limits_without_a_cgroup_is_a_clear_error() {
    let sup = Supervisor::new([ServiceSpec::new("svc", "sleep").args(["1"])]).unwrap();
    let mut p = Params::new();
    p.insert("memory_max_mb".into(), ParamValue::Int(64));
    let err = AdjustMemoryLimits::new(sup)
        .run(&p, &action_ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Unavailable(m) if m.contains("runs in no cgroup")),
        "{err}"
    );
}

/// A cgroup with a memory controller this process may create, or why not.
fn make_cgroup() -> Result<std::path::PathBuf, String> {
    let name = format!("x0tta-test-{}", std::process::id());
    let v2 = std::path::Path::new("/sys/fs/cgroup");
    let candidates = [
        (v2.join("cgroup.controllers"), v2.join(&name)),
        (
            v2.join("memory/memory.limit_in_bytes"),
            v2.join("memory").join(&name),
        ),
    ];
    for (probe, dir) in candidates {
        let usable = probe.exists()
            && (!probe.ends_with("cgroup.controllers")
                || std::fs::read_to_string(&probe)
                    .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory")));
        if !usable {
            continue;
        }
        if std::fs::create_dir(&dir).is_ok() && read_memory_limit(&dir).is_ok() {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir(&dir);
    }
    Err("no writable cgroup with a memory controller (needs root and cgroup v2 memory or v1 memory)".into())
}

#[tokio::test]
async fn adjust_memory_limits_writes_the_cgroup_and_rolls_back() {
    let cg = match make_cgroup() {
        Ok(cg) => cg,
        Err(why) => {
            eprintln!("SKIPPED: adjust_memory_limits_writes_the_cgroup_and_rolls_back: {why}");
            return;
        }
    };
    let mut spec = ServiceSpec::new("svc", "sleep").args(["30"]);
    spec.cgroup = Some(cg.clone());
    let sup = Supervisor::new([spec]).unwrap();
    let pid = sup.start("svc").await.unwrap();
    // The service joins its cgroup itself, before exec: wait for it.
    let mut placed = false;
    for _ in 0..100 {
        let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
        if procs.lines().any(|l| l.trim() == pid.to_string()) {
            placed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(placed, "service placed in its cgroup");
    // The shell joins the cgroup, then execs the service: on a busy machine the exec may
    // still be under way when the pid shows up in cgroup.procs.
    let mut cmdline = String::new();
    for _ in 0..100 {
        cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline.starts_with("sleep") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cmdline.starts_with("sleep"),
        "the shell became the service: {cmdline:?}"
    );
    let before = read_memory_limit(&cg).unwrap();
    let action = AdjustMemoryLimits::new(sup.clone());
    let mut p = Params::new();
    p.insert("memory_max_mb".into(), ParamValue::Int(64));
    action.run(&p, &action_ctx()).await.unwrap();
    assert_eq!(
        read_memory_limit(&cg).unwrap(),
        MemoryLimit::Bytes(64 << 20)
    );
    action.rollback(&p, &action_ctx()).await.unwrap();
    assert_eq!(read_memory_limit(&cg).unwrap(), before);
    sup.stop_all().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir(&cg);
}

#[tokio::test]
async fn run_command_survives_large_output_and_kills_its_whole_group_on_timeout() {
    let ctx = action_ctx();
    let mut p = Params::new();
    p.insert(
        "command".into(),
        ParamValue::Str("seq 1 200000 && echo end".into()),
    );
    let out = RunCommand::new()
        .run(&p, &ctx)
        .await
        .expect("no SIGPIPE from the bounded reader");
    assert!(out.len() <= MAX_COMMAND_OUTPUT + 32);

    // `sleep` runs as a grandchild of the step (sh -c "a; b" forks it): the timeout must kill it.
    let marker = std::env::temp_dir().join(format!("x0tta-group-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    p.insert(
        "command".into(),
        ParamValue::Str(format!("sleep 1; touch {}", marker.display())),
    );
    let r = tokio::time::timeout(Duration::from_millis(100), RunCommand::new().run(&p, &ctx)).await;
    assert!(r.is_err());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        !marker.exists(),
        "the command's process group died with its step"
    );
}
