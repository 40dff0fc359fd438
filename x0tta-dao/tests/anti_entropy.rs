//! Governance anti-entropy (`/x0tta/gov/1`): a ledger that missed gossip catches up from one
//! peer, page by page; a late joiner takes a finished proposal only with proof that more than
//! 2/3 of the stake attested its tally; on the simulated mesh, a node cut off during voting
//! counts every vote once the partition heals, and a node that joins after the decision
//! applies it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use x0tta_core::{
    ContentId, Envelope, NodeId, Policy, PolicyHandle, Signer, Transport, Vote, contexts,
    to_dag_cbor,
};
use x0tta_dao::{
    Dao, DaoPolicy, EvidenceResult, GovDelta, Ledger, ProposalError, ProposalSpec,
    TallyAttestation, VoteBody, VoteResult, sign_attestation, sign_vote,
};
use x0tta_mesh::sim::{SimConfig, SimNetwork};
use x0tta_pqc::{KeyRing, MlDsa65Signer};

const EMERGENCY: &str = "proposal_id: lower-cpu\ntitle: Lower the CPU threshold\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: node-0\ntimestamp: 0\ntrack: emergency\n";
const MINUTE: u64 = 60_000;

fn signed_proposal(signer: &dyn Signer, yaml: &str, opened_at: u64) -> Envelope {
    let mut spec = ProposalSpec::from_yaml(yaml, "p.yaml").unwrap();
    spec.opened_at = Some(opened_at);
    Envelope::seal(signer, contexts::PROPOSAL, to_dag_cbor(&spec).unwrap()).unwrap()
}

fn vote(signer: &MlDsa65Signer, id: ContentId, votes: u32, support: bool, at: u64) -> Envelope {
    let body = VoteBody {
        proposal: id,
        voter: signer.node_id().clone(),
        votes,
        support,
        revision: 0,
        signed_at: at,
    };
    sign_vote(signer, &body).unwrap()
}

/// Everything `delta` carries, counted by `ledger` the way `Dao` does; returns the items taken.
fn take(ledger: &mut Ledger<KeyRing>, delta: &GovDelta, now: u64) -> usize {
    let live = Policy::default();
    let mut n = 0;
    for p in &delta.proposals {
        n += usize::from(ledger.submit_signed(p, &live, now).is_ok());
    }
    for v in &delta.votes {
        n += usize::from(matches!(
            ledger.vote(v, now),
            VoteResult::Counted { .. } | VoteResult::Equivocation(_)
        ));
    }
    for ev in &delta.evidence {
        n += usize::from(ledger.accept_evidence(ev) == EvidenceResult::Slashed);
    }
    for a in &delta.attestations {
        n += usize::from(matches!(
            ledger.attest(a),
            x0tta_dao::AttestationResult::Counted(_)
        ));
    }
    n
}

#[test]
fn a_ledger_that_missed_the_gossip_catches_up_from_one_peer_page_by_page() {
    let v = common::voters(12);
    let mut full = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    let mut empty = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    let env = signed_proposal(&v.signers[0], EMERGENCY, 0);
    let id = full.submit_signed(&env, &Policy::default(), 0).unwrap();
    for (i, s) in v.signers.iter().enumerate().take(11) {
        let r = full.vote(&vote(s, id, 3 + i as u32 % 4, i % 3 != 0, 1_000), 1_000);
        assert!(matches!(r, VoteResult::Counted { .. }), "{r:?}");
    }
    // node-11 equivocates: both of its votes, signed, end up as evidence at `full`.
    let (a, b) = (
        vote(&v.signers[11], id, 5, true, 1_000),
        vote(&v.signers[11], id, 5, false, 1_000),
    );
    full.vote(&a, 1_000);
    assert!(matches!(full.vote(&b, 1_000), VoteResult::Equivocation(_)));

    // Pages of about four votes each: the exchange takes several rounds.
    let mut rounds = 0;
    loop {
        rounds += 1;
        let digest = empty.digest(rounds);
        let delta = full.delta(&digest, 15_000);
        let more = delta.more;
        assert!(
            take(&mut empty, &delta, 2_000) > 0,
            "each round brings something"
        );
        if !more {
            break;
        }
        assert!(rounds < 20, "the exchange ends");
    }
    assert!(rounds > 2, "small pages: {rounds} rounds");
    assert_eq!(
        empty.tally(&id),
        full.tally(&id),
        "the same tally after the sync"
    );
    assert_eq!(
        empty.stake(v.signers[11].node_id()),
        50,
        "the equivocator slashed"
    );
    let again = full.delta(&empty.digest(99), 15_000);
    assert!(
        again.is_empty() && !again.more,
        "nothing left to send: {again:?}"
    );

    // A peer that holds only the evidence is not sent the equivocator's vote it would refuse.
    let mut evidence_only = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    evidence_only
        .submit_signed(&env, &Policy::default(), 0)
        .unwrap();
    let ev = full.evidence(&id).pop().unwrap();
    assert_eq!(evidence_only.accept_evidence(&ev), EvidenceResult::Slashed);
    let delta = full.delta(&evidence_only.digest(5), usize::MAX);
    assert_eq!(delta.votes.len(), 11, "the honest votes only");
    assert!(delta.evidence.is_empty());
    assert!(
        delta
            .votes
            .iter()
            .all(|vote| &vote.signature.signer != v.signers[11].node_id())
    );

    // A peer that closed the proposal is not sent votes it would refuse; a closed ledger
    // still serves its attestations.
    let mut closed = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    closed.submit_signed(&env, &Policy::default(), 0).unwrap();
    closed.close(&id, 20 * MINUTE).unwrap();
    let delta = full.delta(&closed.digest(7), usize::MAX);
    assert!(delta.votes.is_empty() && delta.proposals.is_empty());
    assert_eq!(
        delta.evidence.len(),
        1,
        "evidence is valid whenever it arrives"
    );
}

#[test]
fn a_late_joiner_takes_a_finished_proposal_only_with_proof_from_two_thirds_of_the_stake() {
    let v = common::voters(12);
    let mut full = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    let env = signed_proposal(&v.signers[0], EMERGENCY, 0);
    let id = full.submit_signed(&env, &Policy::default(), 0).unwrap();
    for s in &v.signers[..9] {
        full.vote(&vote(s, id, 4, true, 1_000), 1_000);
    }
    let outcome = full.close(&id, 20 * MINUTE).unwrap();
    assert!(outcome.tally.passed);
    let attestations: Vec<Envelope> = v
        .signers
        .iter()
        .map(|s| {
            let body = TallyAttestation::of(&outcome, s.node_id().clone());
            sign_attestation(s, &body).unwrap()
        })
        .collect();
    // A Byzantine node attests in node-1's name: never counted.
    let forged = sign_attestation(
        &v.signers[11],
        &TallyAttestation::of(&outcome, v.signers[1].node_id().clone()),
    )
    .unwrap();

    let late = || Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    let now = 60 * MINUTE;
    let mut joiner = late();
    assert!(
        matches!(
            joiner.submit_signed(&env, &Policy::default(), now),
            Err(ProposalError::OpenedAt { .. })
        ),
        "too old to vote on"
    );
    // 8 of 12 equal stakes is exactly 2/3: not enough, even with a forgery on top.
    let mut short: Vec<Envelope> = attestations[..8].to_vec();
    short.push(forged.clone());
    let err = joiner
        .admit_final(&env, &short, &Policy::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProposalError::Unproven {
                attesting_stake: 800,
                total_stake: 1200
            }
        ),
        "{err}"
    );
    assert!(
        joiner.spec(&id).is_none(),
        "not held, and not open to votes"
    );

    // Through a sync: the joiner lists the attestations it gathered, the full ledger sends
    // the one it lacks.
    for a in &attestations[..9] {
        full.attest(a);
    }
    let delta = full.delta(&joiner.digest(3), usize::MAX);
    assert!(delta.proposals.is_empty(), "the joiner holds it aside");
    assert_eq!(delta.attestations.len(), 1, "only the missing attestation");
    let finals = joiner.late_attestations(&delta.attestations, &Policy::default());
    assert_eq!(finals.len(), 1);
    let f = finals[0].clone();
    assert!(f.passed);
    assert_eq!(Some(&f), full.finality(&id));
    assert_eq!(joiner.outcome(&id).unwrap().tally, outcome.tally);
    assert_eq!(
        joiner.policy_of(&id).unwrap().thresholds.cpu_percent,
        70.0,
        "the joiner can apply the decision"
    );
    assert!(
        matches!(
            joiner.vote(&vote(&v.signers[10], id, 4, false, now), now),
            VoteResult::Refused(_)
        ),
        "closed to votes"
    );

    // A proof gathered over several small replies.
    let mut paged = late();
    let mut rounds = 0;
    let f = loop {
        rounds += 1;
        let delta = full.delta(&paged.digest(rounds), 8_000);
        if let Some(p) = delta.proposals.first() {
            match paged.admit_final(p, &delta.attestations, &Policy::default()) {
                Ok(f) => break f,
                Err(ProposalError::Unproven { .. }) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        if let Some(f) = paged
            .late_attestations(&delta.attestations, &Policy::default())
            .pop()
        {
            break f;
        }
        assert!(rounds < 20, "the proof never completes");
    };
    assert!(rounds > 2, "{rounds} rounds");
    assert_eq!(Some(&f), full.finality(&id));

    // Another proposal's proof proves nothing about this one.
    let other = signed_proposal(
        &v.signers[0],
        &EMERGENCY.replace("proposed: 70", "proposed: 75"),
        0,
    );
    let err = late()
        .admit_final(&other, &attestations, &Policy::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProposalError::Unproven {
                attesting_stake: 0,
                ..
            }
        ),
        "{err}"
    );

    // Superseded here already (the joiner runs cpu 70): final, with nothing to put in force.
    let mut newer = Policy::default();
    newer.thresholds.cpu_percent = 70.0;
    let mut superseded = late();
    assert!(matches!(
        superseded.submit_signed(&env, &newer, now),
        Err(ProposalError::OpenedAt { .. })
    ));
    let f = superseded.admit_final(&env, &attestations, &newer).unwrap();
    assert!(f.passed);
    assert_eq!(superseded.policy_of(&id), None);
}

#[test]
fn a_voter_cannot_grow_every_digest_with_endless_revisions() {
    let v = common::voters(2);
    let mut ledger = Ledger::new(DaoPolicy::default(), v.stakes.clone(), v.ring.clone());
    let env = signed_proposal(&v.signers[0], EMERGENCY, 0);
    let id = ledger.submit_signed(&env, &Policy::default(), 0).unwrap();
    let revision = |r: u32| {
        let body = VoteBody {
            proposal: id,
            voter: v.signers[1].node_id().clone(),
            votes: 1 + r % 5,
            support: true,
            revision: r,
            signed_at: 1_000,
        };
        sign_vote(&v.signers[1], &body).unwrap()
    };
    for r in 0..x0tta_dao::MAX_REVISIONS as u32 {
        assert!(matches!(
            ledger.vote(&revision(r), 1_000),
            VoteResult::Counted { .. }
        ));
    }
    assert_eq!(
        ledger.vote(&revision(99), 1_000),
        VoteResult::Refused(x0tta_dao::Refusal::TooManyRevisions)
    );
    assert_eq!(
        ledger.digest(1).proposals[0].items.len(),
        x0tta_dao::MAX_REVISIONS
    );
}

struct SimNode {
    dao: Dao,
    live: PolicyHandle,
}

async fn start(
    net: &SimNetwork,
    signer: Arc<MlDsa65Signer>,
    ring: Arc<KeyRing>,
    stakes: BTreeMap<NodeId, u64>,
    policy: DaoPolicy,
) -> SimNode {
    let t: Arc<dyn Transport> = Arc::new(net.join(signer.node_id().clone()).unwrap());
    let live = PolicyHandle::new(Policy::default()).unwrap();
    let dao = Dao::start(policy, stakes, signer, ring, t, live.clone())
        .await
        .unwrap();
    // What a node's loop does with a decision: put its policy in force.
    let mut decisions = x0tta_core::Governance::decisions(&dao);
    let apply = live.clone();
    tokio::spawn(async move {
        while let Ok(d) = decisions.recv().await {
            if let Some(p) = d.policy {
                let _ = apply.replace_rules(p);
            }
        }
    });
    SimNode { dao, live }
}

fn shared(n: usize) -> (Vec<Arc<MlDsa65Signer>>, Arc<KeyRing>, BTreeMap<NodeId, u64>) {
    let v = common::voters(n);
    (
        v.signers.into_iter().map(Arc::new).collect(),
        Arc::new(v.ring),
        v.stakes,
    )
}

/// A node for each of `signers` on `net`, all under `policy`.
async fn start_all(
    net: &SimNetwork,
    signers: &[Arc<MlDsa65Signer>],
    ring: &Arc<KeyRing>,
    stakes: &BTreeMap<NodeId, u64>,
    policy: &DaoPolicy,
) -> Vec<SimNode> {
    let mut nodes = Vec::new();
    for s in signers {
        nodes.push(start(net, s.clone(), ring.clone(), stakes.clone(), policy.clone()).await);
    }
    nodes
}

fn sim_policy(discussion_ms: u64, voting_ms: u64) -> DaoPolicy {
    DaoPolicy {
        discussion: Duration::from_millis(discussion_ms),
        voting: Duration::from_millis(voting_ms),
        emergency_voting: Duration::from_millis(voting_ms),
        clock_skew: Duration::from_millis(100),
        sync_interval: Duration::from_millis(100),
        ..DaoPolicy::default()
    }
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < end,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_during_voting_counts_every_vote_once_the_partition_heals() {
    const N: usize = 6;
    let net = SimNetwork::new(11, SimConfig::default());
    let (signers, ring, stakes) = shared(N);
    let policy = sim_policy(300, 3_000);
    let nodes = start_all(&net, &signers, &ring, &stakes, &policy).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the overlay comes up
    let spec = ProposalSpec::from_yaml(EMERGENCY, "p.yaml").unwrap();
    let id = nodes[0].dao.propose(spec).await.unwrap();
    until(
        "the proposal reaches node-5",
        Duration::from_secs(2),
        || nodes[5].dao.phase(&id).is_some(),
    )
    .await;

    // node-5 is cut off while everyone votes, itself included.
    let ids: Vec<NodeId> = signers.iter().map(|s| s.node_id().clone()).collect();
    net.partition(&[ids[..5].to_vec(), vec![ids[5].clone()]]);
    for (i, n) in nodes.iter().enumerate() {
        let out = x0tta_core::Governance::vote(
            &n.dao,
            Vote {
                proposal: id,
                voter: ids[i].clone(),
                votes: 3,
                support: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(out, x0tta_core::VoteOutcome::Counted { cost: 9 });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut_off = nodes[5].dao.stake(&ids[5]); // still full: nothing slashed
    assert_eq!(cut_off, 100);
    net.heal();

    let every_vote = 3 * N as u64;
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let mut counted = Vec::new();
        for n in &nodes {
            let state = x0tta_core::Governance::state(&n.dao, &id).await.unwrap();
            counted.push(state.unwrap().votes_for);
        }
        if counted.iter().all(|c| *c == every_vote) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "every node holds every vote before the deadline: {counted:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until(
        "final and in force everywhere",
        Duration::from_secs(8),
        || {
            nodes.iter().all(|n| {
                n.dao.finality(&id).is_some() && n.live.current().thresholds.cpu_percent == 70.0
            })
        },
    )
    .await;
    for n in &nodes {
        let f = n.dao.finality(&id).unwrap();
        assert_eq!((f.votes_for, f.passed), (every_vote, true));
        assert!(
            n.dao.disagreeing(&id).is_empty(),
            "no honest node looks Byzantine"
        );
    }
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_after_the_decision_applies_it() {
    const N: usize = 5;
    let net = SimNetwork::new(12, SimConfig::default());
    let (signers, ring, stakes) = shared(N);
    let policy = sim_policy(200, 800);
    let nodes = start_all(&net, &signers[..N - 1], &ring, &stakes, &policy).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spec = ProposalSpec::from_yaml(EMERGENCY, "p.yaml").unwrap();
    let id = nodes[0].dao.propose(spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (i, n) in nodes.iter().enumerate() {
        x0tta_core::Governance::vote(
            &n.dao,
            Vote {
                proposal: id,
                voter: signers[i].node_id().clone(),
                votes: 4,
                support: true,
            },
        )
        .await
        .unwrap();
    }
    until("final at the first four", Duration::from_secs(5), || {
        nodes.iter().all(|n| n.dao.finality(&id).is_some())
    })
    .await;
    // Past the propagation bound: the proposal is too old for the joiner to vote on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late_policy = DaoPolicy {
        max_propagation: Duration::from_millis(100),
        ..policy
    };
    let joiner = start(&net, signers[N - 1].clone(), ring, stakes, late_policy).await;
    until(
        "the joiner applies the decision",
        Duration::from_secs(5),
        || joiner.live.current().thresholds.cpu_percent == 70.0,
    )
    .await;
    assert_eq!(joiner.dao.finality(&id), nodes[0].dao.finality(&id));
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_always_says_more_cannot_keep_a_node_verifying() {
    let net = SimNetwork::new(13, SimConfig::default());
    let (signers, ring, stakes) = shared(2);
    let node = start(
        &net,
        signers[0].clone(),
        ring.clone(),
        stakes.clone(),
        DaoPolicy {
            sync_interval: Duration::from_secs(3600), // only the exchange below
            ..sim_policy(0, 60_000)
        },
    )
    .await;
    // The peer answers every request with the same signed proposal and "more".
    let peer = net.join(signers[1].node_id().clone()).unwrap();
    let env = signed_proposal(
        signers[1].as_ref(),
        &EMERGENCY.replace("creator: node-0", "creator: node-1"),
        x0tta_core::Timestamp::now().as_millis(),
    );
    let delta = GovDelta {
        proposals: vec![env],
        more: true,
        ..GovDelta::default()
    };
    let mut served = peer.serve(x0tta_dao::GOV_PROTOCOL).await.unwrap();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Some(req) = served.recv().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            req.respond(to_dag_cbor(&delta).unwrap());
        }
    });
    let taken = node.dao.sync_with(signers[1].node_id()).await.unwrap();
    assert_eq!(taken, 1, "the proposal, once");
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a round that brings nothing new ends the exchange"
    );
    net.shutdown();
}
