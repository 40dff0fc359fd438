//! The default executor: steps in order with timeouts, reverse-order rollback, verification.

use tokio::time::Instant;

use async_trait::async_trait;

use crate::{
    Anomaly, ExecContext, ExecProgress, ExecutionReport, Executor, Params, RecoveryPlan,
    StepOutcome, StepReport, Timestamp, Verification,
};

/// Runs plans step by step.
///
/// - A step whose condition does not hold on the triggering observation is skipped.
/// - Each step runs under its own timeout; on expiry the action's future is dropped.
/// - When a step fails or times out, the steps that ran are rolled back in reverse order:
///   the step's `rollback` call if it has one, else the action's own `rollback`. A step that
///   timed out is rolled back too (it was cancelled mid-way); one that returned an error is
///   not (an action that fails must leave nothing behind).
/// - When every step succeeds, the executor re-observes (every `verify_poll`, up to
///   `verify_timeout`) until the anomaly (same kind and subject) is gone. If it persists, the
///   plan counts as failed and its steps are rolled back too.
#[derive(Debug, Default, Clone)]
pub struct DefaultExecutor;

impl DefaultExecutor {
    /// A new executor.
    pub fn new() -> Self {
        Self
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis().min(u64::MAX as u128) as u64
}

async fn run_one(
    ctx: &ExecContext<'_>,
    step_name: &str,
    action: &str,
    params: &Params,
    timeout: std::time::Duration,
    rollback: bool,
) -> StepReport {
    let started = Instant::now();
    let outcome = match ctx.actions.get(action) {
        None => StepOutcome::Failed {
            error: format!("action `{action}` is not registered"),
        },
        Some(a) => {
            let fut = async {
                if rollback {
                    a.rollback(params, &ctx.action_ctx).await
                } else {
                    a.run(params, &ctx.action_ctx).await
                }
            };
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(output)) => StepOutcome::Succeeded { output },
                Ok(Err(e)) => StepOutcome::Failed {
                    error: e.to_string(),
                },
                Err(_) => StepOutcome::TimedOut {
                    after_ms: timeout.as_millis().min(u64::MAX as u128) as u64,
                },
            }
        }
    };
    StepReport {
        step: step_name.to_string(),
        action: action.to_string(),
        outcome,
        duration_ms: ms(started),
    }
}

async fn rollback_all(
    plan: &RecoveryPlan,
    done: &[usize],
    ctx: &ExecContext<'_>,
) -> Vec<StepReport> {
    let mut out = Vec::new();
    for &i in done.iter().rev() {
        let step = &plan.steps[i];
        let name = format!("undo {}", step.display_name());
        let r = match &step.rollback {
            Some(call) => {
                run_one(ctx, &name, &call.action, &call.params, call.timeout, false).await
            }
            None => run_one(ctx, &name, &step.action, &step.params, step.timeout, true).await,
        };
        (ctx.progress)(ExecProgress::RolledBack(r.clone()));
        out.push(r);
    }
    out
}

async fn verify(anomaly: &Anomaly, ctx: &ExecContext<'_>) -> Verification {
    let started = Instant::now();
    let key = anomaly.key();
    let mut observations = 0u32;
    loop {
        observations += 1;
        // A failed re-observation is not evidence either way: keep polling, and report the
        // error only if verification runs out of time on it.
        let last_error = match ctx.reobserve.reobserve().await {
            Ok(found) if !found.iter().any(|a| a.key() == key) => {
                return Verification::Cleared {
                    after_ms: ms(started),
                    observations,
                };
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        let poll = ctx.policy.intervals.verify_poll;
        if started.elapsed().saturating_add(poll) > ctx.policy.intervals.verify_timeout {
            return match last_error {
                Some(error) => Verification::Error { error },
                None => Verification::Persisted { observations },
            };
        }
        tokio::time::sleep(poll).await;
    }
}

#[async_trait]
impl Executor for DefaultExecutor {
    async fn execute(&self, plan: &RecoveryPlan, ctx: &ExecContext<'_>) -> ExecutionReport {
        let started_at = Timestamp::now();
        let started = Instant::now();
        let mut steps = Vec::with_capacity(plan.steps.len());
        let mut done = Vec::new();
        let mut failed = false;
        for (i, step) in plan.steps.iter().enumerate() {
            if let Some(cond) = &step.condition
                && !cond.holds(&ctx.action_ctx.observation)
            {
                let r = StepReport {
                    step: step.display_name().to_string(),
                    action: step.action.clone(),
                    outcome: StepOutcome::Skipped,
                    duration_ms: 0,
                };
                (ctx.progress)(ExecProgress::StepFinished(r.clone()));
                steps.push(r);
                continue;
            }
            (ctx.progress)(ExecProgress::StepStarted {
                step: step.display_name().to_string(),
            });
            let r = run_one(
                ctx,
                step.display_name(),
                &step.action,
                &step.params,
                step.timeout,
                false,
            )
            .await;
            (ctx.progress)(ExecProgress::StepFinished(r.clone()));
            let ok = r.outcome.is_ok();
            // A step cancelled by its timeout may have done part of its work: undo it too.
            // A step that returned an error must itself have left nothing to undo.
            let timed_out = matches!(r.outcome, StepOutcome::TimedOut { .. });
            steps.push(r);
            if !ok {
                if timed_out {
                    done.push(i);
                }
                failed = true;
                break;
            }
            done.push(i);
        }

        let (verification, rollbacks) = if failed {
            (Verification::NotRun, rollback_all(plan, &done, ctx).await)
        } else {
            let v = verify(&plan.anomaly, ctx).await;
            let rb = if matches!(v, Verification::Cleared { .. }) {
                Vec::new()
            } else {
                rollback_all(plan, &done, ctx).await
            };
            (v, rb)
        };
        let success = !failed && matches!(verification, Verification::Cleared { .. });
        ExecutionReport {
            template: plan.template.clone(),
            started_at,
            duration_ms: ms(started),
            steps,
            rollbacks,
            verification,
            success,
        }
    }
}
