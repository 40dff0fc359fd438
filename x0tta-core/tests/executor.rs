//! The default executor: step order, reverse-order rollback, timeouts, verification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use x0tta_core::healing::DefaultExecutor;
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

/// Re-observation that reports the anomaly for the first `persist` calls, then clears.
struct Clears {
    anomaly: Anomaly,
    persist: Mutex<u32>,
}

#[async_trait]
impl Reobserve for Clears {
    async fn reobserve(&self) -> Result<Vec<Anomaly>, SensorError> {
        let mut n = self.persist.lock().unwrap();
        if *n == 0 {
            return Ok(vec![]);
        }
        *n -= 1;
        Ok(vec![self.anomaly.clone()])
    }
}

fn anomaly() -> Anomaly {
    Anomaly::new(
        AnomalyKind::ServiceDown,
        Severity::High,
        1.0,
        Subject::Service("web".into()),
        "test",
    )
}

fn plan(steps: Vec<StepSpec>) -> RecoveryPlan {
    RecoveryPlan {
        template: "t".into(),
        anomaly: anomaly(),
        steps,
        success_probability: 0.5,
        history: PlanStats::default(),
        evidence: vec![],
        score: 0.5,
    }
}

async fn execute(
    plan: &RecoveryPlan,
    actions: Vec<Arc<dyn Action>>,
    persist: u32,
    policy: &Policy,
) -> ExecutionReport {
    let mut reg = ActionRegistry::new();
    for a in actions {
        reg.register(a);
    }
    let net = MemoryNetwork::new();
    let reob = Clears {
        anomaly: anomaly(),
        persist: Mutex::new(persist),
    };
    let ctx = ExecContext {
        actions: &reg,
        action_ctx: ActionContext {
            node: id("n"),
            anomaly: anomaly(),
            observation: Arc::new(Observation::new(id("n"))),
            policy: PolicyHandle::new(policy.clone()).unwrap(),
            transport: Arc::new(net.join(id("n"))),
            knowledge: Arc::new(MemoryKnowledge::new(10)),
        },
        reobserve: &reob,
        policy,
        progress: &|_| {},
    };
    DefaultExecutor::new().execute(plan, &ctx).await
}

#[tokio::test]
async fn step_two_of_three_fails_rolls_back_step_one_only() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let p = plan(vec![
        StepSpec::new("a"),
        StepSpec::new("b"),
        StepSpec::new("c"),
    ]);
    let r = execute(
        &p,
        vec![
            Scripted::ok("a", &j),
            Scripted::failing("b", &j),
            Scripted::ok("c", &j),
        ],
        0,
        &fast_policy(),
    )
    .await;
    assert!(!r.success);
    assert_eq!(*j.lock().unwrap(), ["run a", "done a", "run b", "undo a"]);
    assert_eq!(r.steps.len(), 2);
    assert!(matches!(r.steps[1].outcome, StepOutcome::Failed { .. }));
    assert_eq!(r.rollbacks.len(), 1);
    assert_eq!(r.verification, Verification::NotRun);
}

#[tokio::test]
async fn rollbacks_run_in_reverse_order() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let p = plan(vec![
        StepSpec::new("a"),
        StepSpec::new("b"),
        StepSpec::new("c"),
        StepSpec::new("d"),
    ]);
    let r = execute(
        &p,
        vec![
            Scripted::ok("a", &j),
            Scripted::ok("b", &j),
            Scripted::failing("c", &j),
            Scripted::ok("d", &j),
        ],
        0,
        &fast_policy(),
    )
    .await;
    let log = j.lock().unwrap().clone();
    let undo: Vec<_> = log.iter().filter(|l| l.starts_with("undo")).collect();
    assert_eq!(undo, ["undo b", "undo a"]);
    assert!(!log.contains(&"run d".to_string()));
    assert_eq!(
        r.rollbacks
            .iter()
            .map(|s| s.step.as_str())
            .collect::<Vec<_>>(),
        ["undo b", "undo a"]
    );
}

#[tokio::test]
async fn explicit_rollback_call_replaces_the_actions_own() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let mut first = StepSpec::new("a");
    first.rollback = Some(ActionCall {
        action: "cleanup".into(),
        params: Params::new(),
        timeout: Duration::from_secs(1),
    });
    let p = plan(vec![first, StepSpec::new("b")]);
    execute(
        &p,
        vec![
            Scripted::ok("a", &j),
            Scripted::failing("b", &j),
            Scripted::ok("cleanup", &j),
        ],
        0,
        &fast_policy(),
    )
    .await;
    assert_eq!(
        *j.lock().unwrap(),
        ["run a", "done a", "run b", "run cleanup", "done cleanup"]
    );
}

#[tokio::test(start_paused = true)]
async fn step_timeouts_are_honoured() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let p = plan(vec![
        StepSpec::new("a"),
        StepSpec::new("hang").timeout(Duration::from_millis(100)),
        StepSpec::new("c"),
    ]);
    let started = tokio::time::Instant::now();
    let r = execute(
        &p,
        vec![
            Scripted::ok("a", &j),
            Scripted::slow("hang", &j, Duration::from_secs(3600)),
            Scripted::ok("c", &j),
        ],
        0,
        &fast_policy(),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert_eq!(r.steps[1].outcome, StepOutcome::TimedOut { after_ms: 100 });
    // The cancelled step is rolled back first, then the ones before it.
    assert_eq!(
        *j.lock().unwrap(),
        ["run a", "done a", "run hang", "undo hang", "undo a"]
    );
}

#[tokio::test(start_paused = true)]
async fn verification_polls_until_the_anomaly_clears_or_gives_up() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let p = plan(vec![StepSpec::new("a")]);
    let policy = fast_policy();
    let r = execute(&p, vec![Scripted::ok("a", &j)], 3, &policy).await;
    assert!(r.success);
    assert!(
        matches!(
            r.verification,
            Verification::Cleared {
                observations: 4,
                ..
            }
        ),
        "{:?}",
        r.verification
    );
    assert!(r.rollbacks.is_empty());

    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let r = execute(&p, vec![Scripted::ok("a", &j)], 1000, &policy).await;
    assert!(!r.success);
    assert!(matches!(r.verification, Verification::Persisted { .. }));
    assert_eq!(
        *j.lock().unwrap(),
        ["run a", "done a", "undo a"],
        "a plan that did not fix it is undone"
    );
}

#[tokio::test]
async fn a_false_condition_skips_the_step() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let mut guarded = StepSpec::new("b");
    guarded.condition = Some("host.memory.percent > 80".parse().unwrap());
    let p = plan(vec![StepSpec::new("a"), guarded]);
    let r = execute(
        &p,
        vec![Scripted::ok("a", &j), Scripted::ok("b", &j)],
        0,
        &fast_policy(),
    )
    .await;
    assert!(r.success);
    assert_eq!(r.steps[1].outcome, StepOutcome::Skipped);
    assert_eq!(*j.lock().unwrap(), ["run a", "done a"]);
}

/// Re-observation that always fails (a sensor down).
struct Blind;

#[async_trait]
impl Reobserve for Blind {
    async fn reobserve(&self) -> Result<Vec<Anomaly>, SensorError> {
        Err(SensorError {
            sensor: "services".into(),
            reason: "no reading".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_blind_verification_is_not_a_success() {
    let j: Journal = Arc::new(Mutex::new(Vec::new()));
    let mut reg = ActionRegistry::new();
    reg.register(Scripted::ok("a", &j));
    let policy = fast_policy();
    let net = MemoryNetwork::new();
    let ctx = ExecContext {
        actions: &reg,
        action_ctx: ActionContext {
            node: id("n"),
            anomaly: anomaly(),
            observation: Arc::new(Observation::new(id("n"))),
            policy: PolicyHandle::new(policy.clone()).unwrap(),
            transport: Arc::new(net.join(id("n"))),
            knowledge: Arc::new(MemoryKnowledge::new(10)),
        },
        reobserve: &Blind,
        policy: &policy,
        progress: &|_| {},
    };
    let r = DefaultExecutor::new()
        .execute(&plan(vec![StepSpec::new("a")]), &ctx)
        .await;
    assert!(!r.success);
    assert!(
        matches!(&r.verification, Verification::Error { error } if error.contains("no reading")),
        "{:?}",
        r.verification
    );
}
