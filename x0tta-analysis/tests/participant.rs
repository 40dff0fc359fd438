//! Federated rounds between running nodes: four honest participants and a liar on an
//! in-memory mesh, rounds on the clock at the policy's interval, the rule switched by a policy
//! update while they run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use x0tta_analysis::federated::{FL_TOPIC, Federation, FlConfig, Participant, RoundReport, Rule};
use x0tta_analysis::graph::{GraphSage, Labelled};
use x0tta_analysis::scenario::{self, ScenarioConfig};
use x0tta_core::memory::MemoryNetwork;
use x0tta_core::{AggregationRule, NodeId, Policy, PolicyHandle, Signer, Transport, Verifier};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

const HONEST: usize = 4;
const INTERVAL: Duration = Duration::from_millis(1_500);

fn signer(name: &str, ring: Option<&mut KeyRing>) -> Arc<dyn Signer> {
    let id = NodeId::new(name).unwrap();
    let kp = MlDsa65Keypair::generate();
    if let Some(r) = ring {
        r.insert(id.clone(), kp.public_key().clone());
    }
    Arc::new(MlDsa65Signer::new(id, kp))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_on_the_clock_stay_in_step_refuse_strangers_and_follow_the_policys_rule() {
    // Each node's own labelled incidents: two scenarios from its own seed.
    let data: Vec<Vec<Labelled>> = tokio::task::spawn_blocking(|| {
        let cfg = ScenarioConfig::default();
        (0..=HONEST as u64)
            .map(|i| {
                scenario::generate(200 + i..201 + i, &cfg).unwrap()[..2]
                    .iter()
                    .map(|s| s.labelled().unwrap())
                    .collect()
            })
            .collect()
    })
    .await
    .unwrap();
    let sage = scenario::sage_config(true);
    let local = FlConfig {
        epochs: 5,
        ..FlConfig::default()
    };

    let mut ring = KeyRing::new();
    let signers: Vec<Arc<dyn Signer>> = (0..=HONEST)
        .map(|i| signer(&format!("n{i}"), Some(&mut ring)))
        .collect();
    let stranger = signer("stranger", None);
    let verifier: Arc<dyn Verifier> = Arc::new(ring);
    let mut policy = Policy::default();
    policy.federated.interval = INTERVAL;
    policy.federated.rule = AggregationRule::Median;
    let handle = PolicyHandle::new(policy.clone()).unwrap();

    let net = MemoryNetwork::new();
    let (tx, mut rx) = mpsc::channel::<(usize, RoundReport, Vec<f32>)>(256);
    let mut tasks = Vec::new();
    for i in 0..HONEST {
        let transport: Arc<dyn Transport> = Arc::new(net.join(signers[i].node_id().clone()));
        let mut p = Participant::new(
            GraphSage::new(sage, 7).unwrap(),
            local,
            transport,
            signers[i].clone(),
            verifier.clone(),
        )
        .await
        .unwrap();
        let (tx, handle, mine) = (tx.clone(), handle.clone(), data[i].clone());
        tasks.push(tokio::spawn(async move {
            p.run(
                &handle,
                move || mine.clone(),
                |model, report| {
                    let _ = tx.try_send((i, report.clone(), model.parameters().unwrap()));
                },
            )
            .await
        }));
    }

    // The liar holds a trusted key and follows the rounds, but sends its update scaled ×100;
    // a stranger with no trusted key sends an honest-looking one.
    let liar_t = net.join(signers[HONEST].node_id().clone());
    let stranger_t = net.join(stranger.node_id().clone());
    let (liar_s, liar_data, sh) = (
        signers[HONEST].clone(),
        data[HONEST].clone(),
        handle.clone(),
    );
    tasks.push(tokio::spawn(async move {
        let mut fed = Federation::new(GraphSage::new(sage, 7).unwrap(), local);
        loop {
            let interval = sh.current().federated.interval.as_millis() as u64;
            let now = now_ms();
            let round = now / interval;
            fed.enter(round, local);
            tokio::time::sleep(Duration::from_millis(interval / 5)).await;
            let honest = fed.local_update(&liar_data).unwrap();
            let poison: Vec<f32> = honest.iter().map(|x| x * 100.0).collect();
            let bytes = fed.seal(&poison, 1, liar_s.as_ref()).unwrap();
            let _ = liar_t.publish(FL_TOPIC, bytes).await;
            let bytes = fed.seal(&honest, 1, stranger.as_ref()).unwrap();
            let _ = stranger_t.publish(FL_TOPIC, bytes).await;
            let end = (round + 1) * interval;
            tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()))).await;
        }
    }));

    // Collect rounds; after three complete median rounds, switch the policy to FedAvg.
    let mut by_round: std::collections::BTreeMap<u64, Vec<(usize, RoundReport, Vec<f32>)>> =
        Default::default();
    let mut switched_at = None;
    let mut fedavg_seen = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fedavg_seen {
        let (i, report, params) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("rounds keep coming")
            .unwrap();
        let round = report.round;
        let entry = by_round.entry(round).or_default();
        entry.push((i, report, params));
        if entry.len() < HONEST {
            continue;
        }
        let reports = &by_round[&round];
        let full = reports
            .iter()
            .all(|(_, r, _)| r.accepted == HONEST && r.combined == HONEST + 1);
        eprintln!(
            "round {round}: {:?}",
            reports
                .iter()
                .map(|(i, r, _)| (i, r.rule, r.accepted, r.refused, r.combined, r.step_norm))
                .collect::<Vec<_>>()
        );
        if !full {
            // A round the nodes joined part-way through: not everyone's update made it.
            continue;
        }
        // Every honest node combined the same updates: the same step. Nodes that entered
        // the round with the same model (the round before was full too) hold the same model;
        // a round the nodes joined part-way through may have left them apart.
        let step = reports[0].1.step_norm;
        assert!(
            reports
                .iter()
                .all(|(_, r, _)| (r.step_norm - step).abs() <= 1e-5 * step.max(1.0)),
            "round {round}: the same combined step"
        );
        // Each node moved its own model by that same step: compare what the round changed.
        if let Some(before) = by_round
            .get(&round.wrapping_sub(1))
            .filter(|b| b.len() == HONEST)
        {
            let moved = |i: usize| -> Option<Vec<f32>> {
                let (_, _, old) = before.iter().find(|(j, _, _)| *j == i)?;
                let (_, _, new) = reports.iter().find(|(j, _, _)| *j == i)?;
                Some(new.iter().zip(old).map(|(n, o)| n - o).collect())
            };
            let first = moved(reports[0].0).unwrap();
            for (i, _, _) in reports {
                let d = moved(*i).unwrap();
                assert!(
                    d.iter()
                        .zip(&first)
                        .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())),
                    "round {round}: node {i} moved its model by the same step"
                );
            }
        }
        for (_, r, _) in reports {
            assert!(r.refused >= 1, "the stranger's update is refused: {r:?}");
            assert!(r.published > 0 && r.published < 256 * 1024);
        }
        match reports[0].1.rule {
            Rule::Median => {
                for (_, r, _) in reports {
                    assert!(r.step_norm <= local.clip_norm + 1e-3, "median held: {r:?}");
                }
                let complete_median = by_round
                    .values()
                    .filter(|v| {
                        v.len() == HONEST
                            && v.iter()
                                .all(|(_, r, _)| r.rule == Rule::Median && r.combined == HONEST + 1)
                    })
                    .count();
                if complete_median >= 2 && switched_at.is_none() {
                    // Mid-round, so that every node starts the next one under the new rule
                    // (a node reads the policy when it starts a round).
                    let interval = INTERVAL.as_millis() as u64;
                    let into = now_ms() % interval;
                    let wait = (interval / 2).saturating_sub(into) % interval;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let mut next = policy.clone();
                    next.version += 1;
                    next.federated.rule = AggregationRule::Fedavg;
                    handle.apply(next).unwrap();
                    switched_at = Some(round);
                }
            }
            Rule::FedAvg => {
                // One ×100 update among five drags the mean far beyond any median step.
                let median_max = by_round
                    .values()
                    .flatten()
                    .filter(|(_, r, _)| r.rule == Rule::Median)
                    .map(|(_, r, _)| r.step_norm)
                    .fold(0.0f32, f32::max);
                for (_, r, _) in reports {
                    assert!(r.step_norm > 10.0 * median_max, "FedAvg dragged: {r:?}");
                }
                fedavg_seen = true;
            }
            other => panic!("unexpected rule {other:?}"),
        }
    }
    assert!(switched_at.is_some());
    for t in tasks {
        t.abort();
    }
}
