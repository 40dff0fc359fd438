//! A custom node: your own sensor (a work queue's depth), your own action (drain it), a plan
//! template written in code, the SDK's default healer, transport and memory.
//!
//! `cargo run -p x0tta-examples --example custom_node`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use x0tta_core::healing::{DefaultHealer, ThresholdDetector};
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;
use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};

/// A queue whose depth the node watches.
#[derive(Default)]
struct Queue(AtomicU64);

struct QueueSensor(Arc<Queue>);

#[async_trait]
impl Sensor for QueueSensor {
    fn name(&self) -> &str {
        "queue"
    }
    async fn read(&self, _: &Policy) -> Result<Reading, SensorError> {
        // Reported as the host's CPU figure so the stock threshold detector judges it;
        // a real deployment would add its own Detector for its own metric names.
        let depth = self.0.0.load(Ordering::Relaxed) as f64;
        Ok(Reading::default().metric(names::CPU_PERCENT, depth))
    }
}

struct DrainQueue(Arc<Queue>);

#[async_trait]
impl Action for DrainQueue {
    fn name(&self) -> &str {
        "drain_queue"
    }
    async fn run(&self, _: &Params, _: &ActionContext) -> Result<String, ActionError> {
        let before = self.0.0.swap(0, Ordering::Relaxed);
        Ok(format!("drained {before} items"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queue = Arc::new(Queue::default());
    let id = NodeId::new("worker-1")?;
    let signer = Arc::new(MlDsa65Signer::new(id.clone(), MlDsa65Keypair::generate()));
    let drain = PlanTemplate {
        name: "drain-backlog".into(),
        description: "The queue is too deep: drain it.".into(),
        trigger: Trigger {
            kinds: vec![AnomalyKind::CpuOverload],
            min_severity: Severity::Medium,
            subject: None,
            services: vec![],
        },
        steps: vec![StepSpec::new("drain_queue")],
    };
    let node = Node::builder()
        .transport(Arc::new(MemoryNetwork::new().join(id)))
        .knowledge(Arc::new(MemoryKnowledge::new(1000)))
        .signer(signer)
        .healer(Arc::new(
            DefaultHealer::builder()
                .detector(Arc::new(ThresholdDetector::new()))
                .build(),
        ))
        .sensor(Arc::new(QueueSensor(queue.clone())))
        .action(Arc::new(DrainQueue(queue.clone())))
        .plan_template(drain)
        .build()?;
    node.install_templates().await?;

    queue.0.store(97, Ordering::Relaxed); // a backlog builds up
    let report = node.run_cycle(WakeReason::Requested).await;
    for a in &report.anomalies {
        println!("detected {} on {} ({})", a.kind, a.subject, a.severity);
    }
    for (id, resolution) in &report.incidents {
        println!("incident {id}: {resolution:?}");
    }
    println!("queue depth now {}", queue.0.load(Ordering::Relaxed));
    Ok(())
}
