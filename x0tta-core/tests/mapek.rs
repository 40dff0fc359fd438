//! The MAPE-K loop on in-memory parts: live policy, planning from history, circuit breaker,
//! wake-up on mesh events, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

struct Setup {
    node: Node,
    dial: Dial,
    journal: Journal,
    knowledge: Arc<MemoryKnowledge>,
}

fn setup(
    policy: Policy,
    actions: Vec<Arc<dyn Action>>,
    templates: Vec<PlanTemplate>,
    journal: Journal,
) -> Setup {
    let net = MemoryNetwork::new();
    let dial = Dial::default();
    let knowledge = Arc::new(MemoryKnowledge::new(100));
    let mut b = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(knowledge.clone())
        .signer(Arc::new(TestSigner(id("n1"))))
        .sensor(Arc::new(dial.clone()))
        .policy(policy);
    for a in actions {
        b = b.action(a);
    }
    for t in templates {
        b = b.plan_template(t);
    }
    Setup {
        node: b.build().unwrap(),
        dial,
        journal,
        knowledge,
    }
}

#[tokio::test]
async fn threshold_change_takes_effect_on_the_next_cycle() {
    let s = setup(fast_policy(), vec![], vec![], Arc::new(Mutex::new(vec![])));
    s.dial.set(names::CPU_PERCENT, 80.0);
    let r = s.node.run_cycle(WakeReason::Requested).await;
    assert!(
        r.anomalies.is_empty(),
        "80% is under the default 90% threshold"
    );

    let live = s.node.handle().policy().clone();
    let mut next = (*live.current()).clone();
    next.version += 1;
    next.thresholds.cpu_percent = 70.0;
    assert!(matches!(
        live.apply(next).unwrap(),
        PolicyUpdate::Applied { .. }
    ));

    let r = s.node.run_cycle(WakeReason::Requested).await;
    assert_eq!(r.anomalies.len(), 1);
    assert_eq!(r.anomalies[0].kind, AnomalyKind::CpuOverload);
    // No template: recorded once as NoPlan, not on every cycle.
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0].1, Resolution::NoPlan);
    let r = s.node.run_cycle(WakeReason::Requested).await;
    assert!(r.incidents.is_empty());
}

#[tokio::test]
async fn a_heal_is_signed_recorded_and_counted_in_the_success_probability() {
    let j: Journal = Arc::new(Mutex::new(vec![]));
    // The action "fixes" the CPU by turning the dial down.
    struct Cool(Dial, Journal);
    #[async_trait::async_trait]
    impl Action for Cool {
        fn name(&self) -> &str {
            "cool"
        }
        async fn run(&self, _: &Params, _: &ActionContext) -> Result<String, ActionError> {
            self.0.set(names::CPU_PERCENT, 10.0);
            self.1.lock().unwrap().push("cool".into());
            Ok("cooled".into())
        }
    }
    let dial = Dial::default();
    let net = MemoryNetwork::new();
    let knowledge = Arc::new(MemoryKnowledge::new(100));
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(knowledge.clone())
        .signer(Arc::new(TestSigner(id("n1"))))
        .sensor(Arc::new(dial.clone()))
        .action(Arc::new(Cool(dial.clone(), j.clone())))
        .plan_template(template("cool-down", AnomalyKind::CpuOverload, &["cool"]))
        .policy(fast_policy())
        .build()
        .unwrap();
    node.install_templates().await.unwrap();
    let mut probabilities = Vec::new();
    for _ in 0..3 {
        dial.set(names::CPU_PERCENT, 99.0);
        let mut events = node.handle().subscribe();
        let r = node.run_cycle(WakeReason::Requested).await;
        assert_eq!(r.incidents.len(), 1);
        assert_eq!(r.incidents[0].1, Resolution::Healed);
        let incident = knowledge.get(&r.incidents[0].0).await.unwrap().unwrap();
        let report = incident.report.as_ref().unwrap();
        assert_eq!(report.signature.signer, id("n1"));
        assert_eq!(
            report.signature.bytes,
            TestSigner(id("n1"))
                .sign(
                    contexts::EXECUTION_REPORT,
                    &to_dag_cbor(&report.report).unwrap()
                )
                .unwrap()
                .bytes
        );
        assert_eq!(incident.content_id().unwrap(), r.incidents[0].0);
        let plan = wait_for(&mut events, Duration::from_secs(1), |e| {
            matches!(e, NodeEvent::PlanChosen { .. })
        })
        .await;
        let NodeEvent::PlanChosen { plan } = plan else {
            unreachable!()
        };
        probabilities.push(plan.success_probability);
        // The cycle says where its time went: it planned, executed and recorded a heal.
        let done = wait_for(&mut events, Duration::from_secs(1), |e| {
            matches!(e, NodeEvent::CycleFinished { .. })
        })
        .await;
        let NodeEvent::CycleFinished {
            duration_ms,
            phases,
            ..
        } = done
        else {
            unreachable!()
        };
        assert!(phases.plan_us > 0 && phases.execute_us > 0 && phases.knowledge_us > 0);
        assert!(
            phases.total_us() <= (duration_ms + 1) * 1000,
            "{phases:?} in {duration_ms} ms"
        );
    }
    // Beta(1,1) posterior mean over recorded outcomes: 1/2, 2/3, 3/4.
    assert_eq!(probabilities, vec![0.5, 2.0 / 3.0, 0.75]);
    assert_eq!(node.handle().status().heals_succeeded, 3);
}

#[tokio::test]
async fn planner_prefers_the_template_history_supports() {
    let j: Journal = Arc::new(Mutex::new(vec![]));
    let s = setup(
        fast_policy(),
        vec![Scripted::ok("a", &j), Scripted::ok("b", &j)],
        vec![
            template("plan-a", AnomalyKind::MemoryPressure, &["a"]),
            template("plan-b", AnomalyKind::MemoryPressure, &["b"]),
        ],
        j.clone(),
    );
    s.node.install_templates().await.unwrap();
    // History: plan-b healed memory pressure twice, plan-a failed once.
    let anomaly = Anomaly::new(
        AnomalyKind::MemoryPressure,
        Severity::High,
        0.9,
        Subject::Host,
        "t",
    );
    for (i, (tpl, ok)) in [("plan-b", true), ("plan-b", true), ("plan-a", false)]
        .into_iter()
        .enumerate()
    {
        let report = ExecutionReport {
            template: tpl.into(),
            started_at: Timestamp::now(),
            duration_ms: 1,
            steps: vec![],
            rollbacks: vec![],
            verification: Verification::NotRun,
            success: ok,
        };
        let signature = TestSigner(id("n1")).sign(b"", b"").unwrap();
        s.knowledge
            .record(&Incident {
                node: id("n1"),
                // Distinct times: identical incidents share a content id and are stored once.
                detected_at: Timestamp::from_millis(1_700_000_000_000 + i as u64),
                observation: ContentId::of_dag_cbor(&[0xa0]),
                anomaly: anomaly.clone(),
                root_cause: None,
                plan: Some(RecoveryPlan {
                    template: tpl.into(),
                    anomaly: anomaly.clone(),
                    steps: vec![],
                    success_probability: 0.5,
                    history: PlanStats::default(),
                    evidence: vec![],
                    score: 0.0,
                }),
                report: Some(SignedReport { report, signature }),
                resolution: if ok {
                    Resolution::Healed
                } else {
                    Resolution::Failed
                },
            })
            .await
            .unwrap();
    }
    s.dial.set(names::MEMORY_PERCENT, 97.0);
    let mut events = s.node.handle().subscribe();
    s.node.run_cycle(WakeReason::Requested).await;
    let NodeEvent::PlanChosen { plan } = wait_for(&mut events, Duration::from_secs(1), |e| {
        matches!(e, NodeEvent::PlanChosen { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(plan.template, "plan-b");
    assert_eq!(
        plan.history,
        PlanStats {
            successes: 2,
            failures: 0
        }
    );
    assert_eq!(
        plan.evidence.len(),
        2,
        "the two healed incidents are the evidence"
    );
    let _ = s.journal;
}

#[tokio::test]
async fn the_breaker_stops_blind_retries_and_escalates_once() {
    let j: Journal = Arc::new(Mutex::new(vec![]));
    let mut policy = fast_policy();
    policy.breaker.max_failures = 2;
    let s = setup(
        policy,
        vec![Scripted::failing("futile", &j)],
        vec![template(
            "futile-fix",
            AnomalyKind::DiskPressure,
            &["futile"],
        )],
        j.clone(),
    );
    s.node.install_templates().await.unwrap();
    s.dial.set(names::DISK_PERCENT, 99.0);
    let mut resolutions = Vec::new();
    for _ in 0..5 {
        let r = s.node.run_cycle(WakeReason::Requested).await;
        resolutions.extend(r.incidents.into_iter().map(|(_, res)| res));
    }
    assert_eq!(
        resolutions,
        vec![
            Resolution::Failed,
            Resolution::Failed,
            Resolution::Escalated
        ]
    );
    assert_eq!(
        j.lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "run futile")
            .count(),
        2
    );
    let status = s.node.handle().status();
    assert_eq!((status.heals_failed, status.escalations), (2, 1));
    let recent = s.knowledge.recent(1).await.unwrap();
    assert_eq!(
        recent[0].1.anomaly.severity,
        Severity::Critical,
        "escalation raises the severity"
    );
}

#[tokio::test]
async fn mesh_events_wake_the_loop_and_shutdown_is_graceful() {
    let net = MemoryNetwork::new();
    let mut policy = fast_policy();
    policy.intervals.cycle = Duration::from_secs(3600);
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(Arc::new(MemoryKnowledge::new(10)))
        .signer(Arc::new(TestSigner(id("n1"))))
        .policy(policy)
        .build()
        .unwrap();
    let _peer = net.join(id("n2"));
    let handle = node.handle();
    let mut events = handle.subscribe();
    let task = tokio::spawn(node.run());
    // The first cycle runs at start; the next would be an hour away.
    wait_for(&mut events, Duration::from_secs(2), |e| {
        matches!(e, NodeEvent::CycleFinished { cycle: 1, .. })
    })
    .await;
    net.crash(&id("n2"));
    let e = wait_for(&mut events, Duration::from_secs(2), |e| {
        matches!(e, NodeEvent::CycleStarted { cycle: 2, .. })
    })
    .await;
    assert_eq!(
        e,
        NodeEvent::CycleStarted {
            cycle: 2,
            reason: WakeReason::Mesh(MeshEvent::PeerDown(id("n2")))
        }
    );
    let found = wait_for(&mut events, Duration::from_secs(2), |e| {
        matches!(e, NodeEvent::AnomalyDetected { .. })
    })
    .await;
    let NodeEvent::AnomalyDetected { anomaly, .. } = found else {
        unreachable!()
    };
    assert_eq!(anomaly.kind, AnomalyKind::NodeFailure);
    assert_eq!(anomaly.subject, Subject::Peer(id("n2")));
    handle.shutdown();
    let status = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status.cycles, 2);
}

#[tokio::test]
async fn incidents_reach_peers_in_signed_envelopes() {
    let net = MemoryNetwork::new();
    let dial = Dial::default();
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(Arc::new(MemoryKnowledge::new(10)))
        .signer(Arc::new(TestSigner(id("n1"))))
        .sensor(Arc::new(dial.clone()))
        .policy(fast_policy())
        .build()
        .unwrap();
    let peer = net.join(id("n2"));
    let mut sub = peer.subscribe(topics::INCIDENTS).await.unwrap();
    dial.set(names::MEMORY_PERCENT, 99.5);
    node.run_cycle(WakeReason::Requested).await;
    let msg = sub.next().await.unwrap();
    let env: Envelope = from_dag_cbor(&msg.payload).unwrap();
    assert_eq!(env.signature.signer, id("n1"));
    let expected = TestSigner(id("n1"))
        .sign(contexts::INCIDENT, &env.payload)
        .unwrap();
    assert_eq!(env.signature.bytes, expected.bytes);
    let inner: IncidentMessage = from_dag_cbor(&env.payload).unwrap();
    let IncidentMessage::Incident { incident } = inner else {
        panic!("expected an incident")
    };
    assert_eq!(incident.anomaly.kind, AnomalyKind::MemoryPressure);
    assert_eq!(incident.anomaly.severity, Severity::Critical);
}

#[tokio::test]
async fn a_shutdown_before_run_is_not_lost() {
    let net = MemoryNetwork::new();
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(Arc::new(MemoryKnowledge::new(10)))
        .signer(Arc::new(TestSigner(id("n1"))))
        .policy(fast_policy())
        .build()
        .unwrap();
    node.handle().shutdown();
    let status = tokio::time::timeout(Duration::from_secs(2), node.run())
        .await
        .expect("run returns")
        .unwrap();
    assert_eq!(status.cycles, 0);
}

/// A governance that records proposals and lets the test announce decisions.
struct Ballot {
    submitted: Mutex<Vec<(ProposalId, Proposal)>>,
    decisions: tokio::sync::broadcast::Sender<Decision>,
}

#[async_trait::async_trait]
impl Governance for Ballot {
    async fn submit(&self, proposal: Proposal) -> Result<ProposalId, GovernanceError> {
        let mut s = self.submitted.lock().unwrap();
        let id = ContentId::of(&(s.len() as u64, &proposal.title)).unwrap();
        s.push((id, proposal));
        Ok(id)
    }
    async fn vote(&self, _vote: Vote) -> Result<VoteOutcome, GovernanceError> {
        Ok(VoteOutcome::Refused(VoteRefusal::NotVoting))
    }
    async fn state(&self, _id: &ProposalId) -> Result<Option<ProposalState>, GovernanceError> {
        Ok(None)
    }
    fn decisions(&self) -> tokio::sync::broadcast::Receiver<Decision> {
        self.decisions.subscribe()
    }
}

#[tokio::test]
async fn a_critical_heal_waits_for_one_emergency_vote() {
    let j: Journal = Arc::new(Mutex::new(vec![]));
    let ballot = Arc::new(Ballot {
        submitted: Mutex::new(vec![]),
        decisions: tokio::sync::broadcast::channel(16).0,
    });
    let mut policy = fast_policy();
    policy.critical_needs_vote = true;
    policy.intervals.cycle = Duration::from_secs(3600);
    let dial = Dial::default();
    let net = MemoryNetwork::new();
    let knowledge = Arc::new(MemoryKnowledge::new(100));
    let node = Node::builder()
        .transport(Arc::new(net.join(id("n1"))))
        .knowledge(knowledge.clone())
        .signer(Arc::new(TestSigner(id("n1"))))
        .governance(ballot.clone())
        .sensor(Arc::new(dial.clone()))
        .action(Scripted::ok("fix", &j))
        .plan_template(template("fix-disk", AnomalyKind::DiskPressure, &["fix"]))
        .policy(policy)
        .build()
        .unwrap();
    let handle = node.handle();
    let mut events = handle.subscribe();
    dial.set(names::DISK_PERCENT, 99.9); // CRITICAL
    let task = tokio::spawn(node.run());
    for cycle in 1..=3 {
        if cycle > 1 {
            handle.wake();
        }
        wait_for(
            &mut events,
            Duration::from_secs(2),
            |e| matches!(e, NodeEvent::CycleFinished { cycle: c, .. } if *c == cycle),
        )
        .await;
    }
    let submitted = ballot.submitted.lock().unwrap().clone();
    assert_eq!(submitted.len(), 1, "one proposal for one lasting trouble");
    assert!(submitted[0].1.emergency);
    assert!(j.lock().unwrap().is_empty(), "nothing runs before the vote");

    // The vote passes: the plan runs (and verifies once the dial is turned down).
    dial.set(names::DISK_PERCENT, 10.0);
    ballot
        .decisions
        .send(Decision {
            id: submitted[0].0,
            passed: true,
            policy: None,
        })
        .unwrap();
    let e = wait_for(&mut events, Duration::from_secs(2), |e| {
        matches!(
            e,
            NodeEvent::IncidentRecorded {
                resolution: Resolution::Healed,
                ..
            }
        )
    })
    .await;
    assert!(matches!(e, NodeEvent::IncidentRecorded { .. }));
    assert_eq!(*j.lock().unwrap(), ["run fix", "done fix"]);
    handle.shutdown();
    task.await.unwrap().unwrap();
    let resolutions: Vec<Resolution> = knowledge
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, i)| i.resolution)
        .collect();
    assert_eq!(resolutions, [Resolution::Healed, Resolution::AwaitingVote]);
}
