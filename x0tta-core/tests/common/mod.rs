//! Test helpers shared by the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use x0tta_core::*;

/// A keyed-hash signer for tests of the loop (x0tta-pqc provides the ML-DSA-65 signer; core
/// cannot depend on it). It binds context and message like a real signer does.
pub struct TestSigner(pub NodeId);

impl Signer for TestSigner {
    fn node_id(&self) -> &NodeId {
        &self.0
    }
    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        let mut h = Sha256::new();
        h.update(self.0.as_str().as_bytes());
        h.update(context);
        h.update(message);
        Ok(Signature {
            signer: self.0.clone(),
            alg: "test-sha256".into(),
            bytes: h.finalize().to_vec(),
        })
    }
}

/// What scripted actions did, in order.
pub type Journal = Arc<Mutex<Vec<String>>>;

/// An action that records its runs and rollbacks, and can fail or hang on demand.
pub struct Scripted {
    pub name: String,
    pub journal: Journal,
    pub fail: bool,
    pub delay: Duration,
}

impl Scripted {
    pub fn ok(name: &str, journal: &Journal) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            journal: journal.clone(),
            fail: false,
            delay: Duration::ZERO,
        })
    }
    pub fn failing(name: &str, journal: &Journal) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            journal: journal.clone(),
            fail: true,
            delay: Duration::ZERO,
        })
    }
    pub fn slow(name: &str, journal: &Journal, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            journal: journal.clone(),
            fail: false,
            delay,
        })
    }
}

#[async_trait]
impl Action for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    async fn run(&self, _p: &Params, _c: &ActionContext) -> Result<String, ActionError> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("run {}", self.name));
        tokio::time::sleep(self.delay).await;
        if self.fail {
            return Err(ActionError::Failed(format!("{} failed", self.name)));
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("done {}", self.name));
        Ok(format!("{} ok", self.name))
    }
    async fn rollback(&self, _p: &Params, _c: &ActionContext) -> Result<String, ActionError> {
        self.journal
            .lock()
            .unwrap()
            .push(format!("undo {}", self.name));
        Ok(format!("{} undone", self.name))
    }
}

/// A sensor whose metrics the test sets.
#[derive(Clone, Default)]
pub struct Dial(pub Arc<Mutex<Vec<(String, f64)>>>);

impl Dial {
    pub fn set(&self, name: &str, v: f64) {
        let mut m = self.0.lock().unwrap();
        m.retain(|(n, _)| n != name);
        m.push((name.into(), v));
    }
}

#[async_trait]
impl Sensor for Dial {
    fn name(&self) -> &str {
        "dial"
    }
    async fn read(&self, _p: &Policy) -> Result<Reading, SensorError> {
        Ok(Reading {
            metrics: self.0.lock().unwrap().clone(),
            ..Default::default()
        })
    }
}

pub fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

pub fn template(name: &str, kind: AnomalyKind, actions: &[&str]) -> PlanTemplate {
    PlanTemplate {
        name: name.into(),
        description: String::new(),
        trigger: Trigger {
            kinds: vec![kind],
            min_severity: Severity::Low,
            subject: None,
            services: vec![],
        },
        steps: actions
            .iter()
            .map(|a| StepSpec::new(*a).timeout(Duration::from_secs(5)))
            .collect(),
    }
}

/// A policy for fast tests: short verification, no statistical detector.
pub fn fast_policy() -> Policy {
    let mut p = Policy::default();
    p.intervals.cycle = Duration::from_millis(50);
    p.intervals.verify_timeout = Duration::from_millis(200);
    p.intervals.verify_poll = Duration::from_millis(20);
    p.statistical.enabled = false;
    p
}

/// Collects node events until `pred` matches one, or panics after `within`.
pub async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    within: Duration,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> NodeEvent {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("expected event did not arrive in time")
}
