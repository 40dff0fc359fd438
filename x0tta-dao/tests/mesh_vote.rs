//! Five nodes on an in-process mesh: a proposal gossiped, voted quadratically with ML-DSA-65
//! signatures (one forged vote among them), closed at its deadline, and applied by every
//! node's MAPE-K loop to its live policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;
use x0tta_dao::*;
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_proposal_changes_every_nodes_live_policy() {
    const N: usize = 5;
    let net = MemoryNetwork::new();
    let signers: Vec<Arc<MlDsa65Signer>> = (0..N)
        .map(|i| {
            Arc::new(MlDsa65Signer::new(
                NodeId::new(format!("node-{i}")).unwrap(),
                MlDsa65Keypair::generate(),
            ))
        })
        .collect();
    let ring: Arc<KeyRing> = Arc::new(
        signers
            .iter()
            .map(|s| (s.node_id().clone(), s.public_key().clone()))
            .collect(),
    );
    let stakes: BTreeMap<NodeId, u64> =
        signers.iter().map(|s| (s.node_id().clone(), 100)).collect();
    let dao_policy = DaoPolicy {
        discussion: Duration::from_millis(300),
        voting: Duration::from_millis(700),
        clock_skew: Duration::from_millis(100),
        ..DaoPolicy::default()
    };

    let mut daos = Vec::new();
    let mut handles = Vec::new();
    let mut transports = Vec::new();
    for s in &signers {
        let transport: Arc<dyn Transport> = Arc::new(net.join(s.node_id().clone()));
        transports.push(transport.clone());
        let live = PolicyHandle::new(Policy::default()).unwrap();
        let dao = Dao::start(
            dao_policy.clone(),
            stakes.clone(),
            s.clone(),
            ring.clone(),
            transport.clone(),
            live.clone(),
        )
        .await
        .unwrap();
        let node = Node::builder()
            .transport(transport)
            .knowledge(Arc::new(MemoryKnowledge::new(10)))
            .signer(s.clone())
            .governance(Arc::new(dao.clone()))
            .policy_handle(live)
            .build()
            .unwrap();
        handles.push(node.handle());
        tokio::spawn(node.run());
        daos.push(dao);
    }

    let spec = ProposalSpec::from_yaml(
        "proposal_id: lower-cpu\ntitle: Lower the CPU threshold\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: node-0\ntimestamp: 0\n",
        "lower-cpu.yaml",
    )
    .unwrap();
    let id = daos[0].propose(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        daos[3].phase(&id),
        Some(x0tta_dao::Phase::Discussion),
        "gossiped to every node"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, dao) in daos.iter().enumerate().take(3) {
        let out = dao
            .vote(Vote {
                proposal: id,
                voter: signers[i].node_id().clone(),
                votes: 6,
                support: true,
            })
            .await
            .unwrap();
        assert_eq!(out, VoteOutcome::Counted { cost: 36 });
    }
    // node-4 forges a vote "from node-1" against the proposal, signed with its own key.
    let forged_body = VoteBody {
        proposal: id,
        voter: signers[1].node_id().clone(),
        votes: 10,
        support: false,
        revision: 9,
        signed_at: Timestamp::now().as_millis(),
    };
    let forged = sign_vote(signers[4].as_ref(), &forged_body).unwrap();
    let bytes = to_dag_cbor(&forged).unwrap();
    transports[4].publish(topics::VOTES, bytes).await.unwrap();
    // node-4 also attests, ahead of time, that the proposal failed; when the proposal
    // closes its own node attests the true tally: two different signed attestations.
    let lie = TallyAttestation {
        proposal: id,
        attester: signers[4].node_id().clone(),
        votes_for: 0,
        votes_against: 10,
        participating_stake: 100,
        passed: false,
    };
    daos[4]
        .relay_attestation(&sign_attestation(signers[4].as_ref(), &lie).unwrap())
        .await;

    let started = Instant::now();
    loop {
        let applied = handles
            .iter()
            .filter(|h| h.policy().current().thresholds.cpu_percent == 70.0)
            .count();
        if applied == N {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "only {applied}/{N} nodes applied the decision"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (h, dao) in handles.iter().zip(&daos) {
        assert_eq!(h.policy().current().version, 2);
        let st = dao.state(&id).await.unwrap().unwrap();
        assert_eq!(
            (st.votes_for, st.votes_against),
            (18, 0),
            "the forged vote counted nowhere"
        );
        assert_eq!(st.phase, x0tta_core::Phase::Executed);
        // Applied only once final: more than 2/3 of the stake attested the same tally.
        let f = dao.finality(&id).expect("final");
        assert_eq!((f.votes_for, f.votes_against, f.passed), (18, 0, true));
        assert!(f.attesting_stake * 3 > f.total_stake * 2);
    }
    // Every other node caught node-4's two attestations.
    for dao in &daos[..4] {
        let caught =
            async || dao.attestation_equivocators(&id) == vec![signers[4].node_id().clone()];
        let started = Instant::now();
        while !caught().await {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "equivocating attester not caught"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// node-3 signs two different votes for one proposal; node-2 is cut off from it while the
/// second one travels, so node-2 sees only the first. The nodes that saw both gossip the proof
/// on `x0tta/evidence/1`: every honest node slashes node-3, excludes its votes, and its
/// healer isolates it through the plan for BYZANTINE_PEER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocator_seen_by_one_node_is_slashed_and_isolated_everywhere() {
    const N: usize = 4;
    let net = MemoryNetwork::new();
    let signers: Vec<Arc<MlDsa65Signer>> = (0..N)
        .map(|i| {
            Arc::new(MlDsa65Signer::new(
                NodeId::new(format!("node-{i}")).unwrap(),
                MlDsa65Keypair::generate(),
            ))
        })
        .collect();
    let ids: Vec<NodeId> = signers.iter().map(|s| s.node_id().clone()).collect();
    let ring: Arc<KeyRing> = Arc::new(
        signers
            .iter()
            .map(|s| (s.node_id().clone(), s.public_key().clone()))
            .collect(),
    );
    let stakes: BTreeMap<NodeId, u64> = ids.iter().map(|id| (id.clone(), 100)).collect();
    let dao_policy = DaoPolicy {
        discussion: Duration::from_millis(100),
        voting: Duration::from_secs(5),
        clock_skew: Duration::from_millis(100),
        ..DaoPolicy::default()
    };
    let template = x0tta_core::config::plan_from_yaml(
        include_str!("../../examples/plans/isolate-byzantine-peer.yaml"),
        "isolate-byzantine-peer.yaml",
    )
    .unwrap();
    let mut policy = Policy::default();
    policy.intervals.cycle = Duration::from_millis(100);

    let (mut daos, mut transports, mut stores) = (Vec::new(), Vec::new(), Vec::new());
    for s in &signers {
        let transport: Arc<dyn Transport> = Arc::new(net.join(s.node_id().clone()));
        let live = PolicyHandle::new(policy.clone()).unwrap();
        let dao = Dao::start(
            dao_policy.clone(),
            stakes.clone(),
            s.clone(),
            ring.clone(),
            transport.clone(),
            live.clone(),
        )
        .await
        .unwrap();
        let store = Arc::new(MemoryKnowledge::new(100));
        let healer = healing::DefaultHealer::builder()
            .detector(Arc::new(dao.detector()))
            .build();
        let node = Node::builder()
            .transport(transport.clone())
            .knowledge(store.clone())
            .signer(s.clone())
            .governance(Arc::new(dao.clone()))
            .healer(Arc::new(healer))
            .action(Arc::new(NotifyNeighbors::new(s.clone())))
            .action(Arc::new(DisconnectPeer::new()))
            .plan_template(template.clone())
            .policy_handle(live)
            .build()
            .unwrap();
        tokio::spawn(node.run());
        daos.push(dao);
        transports.push(transport);
        stores.push(store);
    }

    let spec = ProposalSpec::from_yaml(
        "proposal_id: lower-cpu\ntitle: Lower the CPU threshold\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: node-0\ntimestamp: 0\n",
        "lower-cpu.yaml",
    )
    .unwrap();
    let id = daos[0].propose(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(daos[2].phase(&id), Some(x0tta_dao::Phase::Voting));

    let vote = |support: bool| VoteBody {
        proposal: id,
        voter: ids[3].clone(),
        votes: 5,
        support,
        revision: 0,
        signed_at: Timestamp::now().as_millis(),
    };
    let first = sign_vote(signers[3].as_ref(), &vote(true)).unwrap();
    let second = sign_vote(signers[3].as_ref(), &vote(false)).unwrap();
    daos[3].relay_vote(&first).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    net.partition(&[ids[3].clone()], &[ids[2].clone()]);
    daos[3].relay_vote(&second).await;

    let started = Instant::now();
    for (i, dao) in daos.iter().enumerate().take(3) {
        while dao.stake(&ids[3]) != 50 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "node-{i} did not slash the equivocator"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dao.equivocations()[0].voter, ids[3]);
        let st = dao.state(&id).await.unwrap().unwrap();
        assert_eq!(
            (st.votes_for, st.votes_against),
            (0, 0),
            "node-{i} counts its vote"
        );
    }
    // Every honest node's loop raised BYZANTINE_PEER, ran the plan, and isolated node-3.
    for (i, t) in transports.iter().enumerate().take(3) {
        loop {
            let isolated = t
                .neighbours()
                .await
                .iter()
                .any(|n| n.id == ids[3] && n.state == PeerState::Isolated);
            if isolated {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "node-{i} did not isolate the equivocator"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let recorded = stores[i]
                .recent(20)
                .await
                .unwrap()
                .into_iter()
                .any(|(_, inc)| {
                    inc.anomaly.kind == AnomalyKind::ByzantinePeer
                        && inc.anomaly.subject == Subject::Peer(ids[3].clone())
                        && inc.resolution == Resolution::Healed
                });
            if recorded {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "node-{i} recorded no repaired BYZANTINE_PEER incident"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Evidence that proves nothing is refused: the same vote twice.
    let mut ledger = Ledger::new(DaoPolicy::default(), stakes.clone(), ring.clone());
    let bogus = Equivocation {
        voter: ids[3].clone(),
        proposal: id,
        votes: [first.clone(), first.clone()],
    };
    assert_eq!(ledger.accept_evidence(&bogus), EvidenceResult::Invalid);
}
