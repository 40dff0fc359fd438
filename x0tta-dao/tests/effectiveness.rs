//! The effectiveness report: a passed proposal's rationale names a metric; the report measures
//! it on the knowledge store's incidents before and after the policy came into force.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;
use x0tta_dao::*;
use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};

const HOUR: Duration = Duration::from_secs(3600);

/// An incident of `kind` detected at `at`, healed (by a signed plan run) `mttr` later.
fn healed(signer: &MlDsa65Signer, kind: AnomalyKind, at: Timestamp, mttr: Duration) -> Incident {
    let report = ExecutionReport {
        template: "restart".into(),
        started_at: at.saturating_add(Duration::from_millis(5)),
        duration_ms: mttr.as_millis() as u64 - 5,
        steps: vec![],
        rollbacks: vec![],
        verification: Verification::Cleared {
            after_ms: 1,
            observations: 1,
        },
        success: true,
    };
    let signature = signer
        .sign(contexts::EXECUTION_REPORT, &to_dag_cbor(&report).unwrap())
        .unwrap();
    Incident {
        node: signer.node_id().clone(),
        detected_at: at,
        observation: ContentId::of_dag_cbor(&[0xa0]),
        anomaly: Anomaly::new(kind, Severity::High, 0.9, Subject::Host, "threshold"),
        root_cause: None,
        plan: None,
        report: Some(SignedReport { report, signature }),
        resolution: Resolution::Healed,
    }
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millis(t.as_millis() - d.as_millis() as u64)
}

#[test]
fn rationales_name_their_metric_and_kind() {
    let t = |s: &str| Target::from_rationale(s).map(|t| (t.metric, t.kind));
    assert_eq!(
        t("MTTR of CPU_OVERLOAD incidents should fall."),
        Ok((Metric::Mttr, Some(AnomalyKind::CpuOverload)))
    );
    assert_eq!(
        t("Mean time to recover from disk_pressure"),
        Ok((Metric::Mttr, Some(AnomalyKind::DiskPressure)))
    );
    assert_eq!(
        t("fewer MEMORY_PRESSURE incidents"),
        Ok((Metric::IncidentRate, Some(AnomalyKind::MemoryPressure)))
    );
    assert_eq!(t("the heal rate should rise"), Ok((Metric::HealRate, None)));
    assert!(matches!(
        t("it feels right"),
        Err(EffectError::NoMetric(s)) if s == "it feels right"
    ));
}

#[test]
fn a_report_compares_the_two_windows_for_the_named_kind_only() {
    let s = MlDsa65Signer::new(NodeId::new("n1").unwrap(), MlDsa65Keypair::generate());
    let at = Timestamp::from_millis(1_800_000_000_000);
    let mut incidents = Vec::new();
    // Before: 4 CPU incidents healed in 60 s; one outside the window (ignored).
    for i in 1..=4 {
        incidents.push(healed(
            &s,
            AnomalyKind::CpuOverload,
            minus(at, Duration::from_secs(600 * i)),
            Duration::from_secs(60),
        ));
    }
    incidents.push(healed(
        &s,
        AnomalyKind::CpuOverload,
        minus(at, 2 * HOUR),
        Duration::from_secs(999),
    ));
    // After: 2 CPU incidents healed in 15 and 25 s, and memory ones that do not count.
    for (i, secs) in [15, 25].into_iter().enumerate() {
        incidents.push(healed(
            &s,
            AnomalyKind::CpuOverload,
            at.saturating_add(Duration::from_secs(60 * (i as u64 + 1))),
            Duration::from_secs(secs),
        ));
    }
    incidents.push(healed(
        &s,
        AnomalyKind::MemoryPressure,
        at.saturating_add(Duration::from_secs(10)),
        Duration::from_secs(500),
    ));
    let mut failed = healed(&s, AnomalyKind::CpuOverload, at, Duration::from_secs(1));
    failed.resolution = Resolution::Failed; // not healed: no recovery time
    incidents.push(failed);

    let now = at.saturating_add(HOUR / 2);
    let target = Target::from_rationale("MTTR of CPU_OVERLOAD incidents should fall.").unwrap();
    let r = EffectivenessReport::measure(&incidents, target, at, HOUR, now);
    assert_eq!((r.before.incidents, r.after.incidents), (4, 3));
    assert!((r.before.value.unwrap() - 60.0).abs() < 1e-9);
    assert!((r.after.value.unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(r.after.span, HOUR / 2, "the after window is still running");
    assert!((r.change.unwrap() + 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(r.improved, Some(true));
    let line = r.to_string();
    assert!(
        line.contains("MTTR of CPU_OVERLOAD: before 60.00s (4 incidents)"),
        "{line}"
    );
    assert!(line.contains("improved"), "{line}");

    // Rates per hour; the heal rate counts the failed run.
    let rate = EffectivenessReport::measure(
        &incidents,
        Target::from_rationale("fewer CPU_OVERLOAD incidents").unwrap(),
        at,
        HOUR,
        now,
    );
    assert!((rate.before.value.unwrap() - 4.0).abs() < 1e-9);
    assert!(
        (rate.after.value.unwrap() - 6.0).abs() < 1e-9,
        "3 in half an hour"
    );
    assert_eq!(rate.improved, Some(false));
    let heal = EffectivenessReport::measure(
        &incidents,
        Target::from_rationale("heal rate of CPU_OVERLOAD").unwrap(),
        at,
        HOUR,
        now,
    );
    assert_eq!(
        (heal.before.value, heal.after.value, heal.improved),
        (Some(1.0), Some(2.0 / 3.0), Some(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dao_reports_on_a_proposal_it_put_in_force() {
    let signer = Arc::new(MlDsa65Signer::new(
        NodeId::new("node-0").unwrap(),
        MlDsa65Keypair::generate(),
    ));
    let net = MemoryNetwork::new();
    let transport: Arc<dyn Transport> = Arc::new(net.join(signer.node_id().clone()));
    let live = PolicyHandle::new(Policy::default()).unwrap();
    let dao = Dao::start(
        DaoPolicy {
            emergency_voting: Duration::from_millis(300),
            clock_skew: Duration::from_millis(50),
            ..DaoPolicy::default()
        },
        BTreeMap::from([(signer.node_id().clone(), 100)]),
        signer.clone(),
        Arc::new(signer.verifier()),
        transport,
        live,
    )
    .await
    .unwrap();
    let store = MemoryKnowledge::new(1000);
    let propose = |rationale: &str, cpu: u32| {
        ProposalSpec::from_yaml(
            &format!(
                "proposal_id: p{cpu}\ntitle: t\nchanges: [{{parameter: cpu_threshold, current: 90, proposed: {cpu}}}]\nrationale: {rationale}\ncreator: node-0\ntimestamp: 0\ntrack: emergency\n"
            ),
            "p.yaml",
        )
        .unwrap()
    };
    let id = dao
        .propose(propose("MTTR of CPU_OVERLOAD incidents should fall", 70))
        .await
        .unwrap();
    let vague = dao.propose(propose("it feels right", 75)).await.unwrap();
    for p in [id, vague] {
        let out = Governance::vote(
            &dao,
            Vote {
                proposal: p,
                voter: signer.node_id().clone(),
                votes: 5,
                support: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(out, VoteOutcome::Counted { cost: 25 });
    }
    assert!(matches!(
        dao.effectiveness(&id, &store, HOUR).await,
        Err(EffectError::NotApplied)
    ));
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while dao.applied_at(&id).is_none() || dao.applied_at(&vague).is_none() {
        assert!(std::time::Instant::now() < end, "not final in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at = dao.applied_at(&id).unwrap();
    for i in 1..=3 {
        let before = healed(
            &signer,
            AnomalyKind::CpuOverload,
            minus(at, Duration::from_secs(60 * i)),
            Duration::from_secs(40),
        );
        store.record(&before).await.unwrap();
    }
    let after = healed(
        &signer,
        AnomalyKind::CpuOverload,
        at,
        Duration::from_secs(10),
    );
    store.record(&after).await.unwrap();
    let r = dao.effectiveness(&id, &store, HOUR).await.unwrap();
    assert_eq!((r.before.incidents, r.after.incidents), (3, 1));
    assert_eq!(r.improved, Some(true), "{r}");
    assert!(matches!(
        dao.effectiveness(&vague, &store, HOUR).await,
        Err(EffectError::NoMetric(_))
    ));
    assert!(matches!(
        dao.effectiveness(&ContentId::of_dag_cbor(&[0xa0]), &store, HOUR)
            .await,
        Err(EffectError::UnknownProposal)
    ));
}
