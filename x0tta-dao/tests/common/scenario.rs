//! The Byzantine governance scenario on the simulated mesh (x0tta-mesh `sim`: flooding gossip
//! over a random overlay with latency and jitter, in real time), shared by the test
//! `byzantine_sim` and the bench `finality`.
//!
//! N nodes of stake 100 run [`Dao`]s; node-0 proposes the seed's worked example
//! (`threshold-adjust-2026-01`: cpu 80 → 70, checks every 60 s → 45 s). Honest nodes vote
//! for it. The Byzantine ones (the last `byzantine` nodes) take turns at four roles:
//! forging votes against it in honest nodes' names, equivocating (9 for and 9 against, both
//! signed), voting against after the deadline, and attesting a false tally (signed before the
//! close, so with the true one their node attests at the close they have signed two).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use x0tta_core::{
    Governance, NodeId, Policy, PolicyHandle, Signer, Timestamp, Transport, Vote, VoteOutcome,
    topics,
};
use x0tta_dao::{
    Dao, DaoPolicy, FinalTally, ProposalSpec, TallyAttestation, VoteBody, sign_attestation,
    sign_vote,
};
use x0tta_mesh::sim::{SimConfig, SimNetwork};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

/// The seed's worked example.
pub(crate) const SEED_PROPOSAL: &str =
    include_str!("../../../examples/proposals/proposal-001.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Honest,
    Forger,
    Equivocator,
    Late,
    FalseAttester,
}

const BYZANTINE_ROLES: [Role; 4] = [
    Role::Forger,
    Role::Equivocator,
    Role::Late,
    Role::FalseAttester,
];

/// What one run found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) honest: usize,
    /// Every honest node holds a final tally, and all of them the same one.
    pub(crate) agree: bool,
    pub(crate) tally: Option<FinalTally>,
    /// Votes for, counting only honest voters.
    pub(crate) expected_for: u64,
    /// Honest nodes whose tally counts any Byzantine vote (forged, equivocating or late).
    pub(crate) forged_accepted: usize,
    /// Honest nodes that had not counted every honest vote by their close (the final tally,
    /// attested by more than 2/3 of the stake, still decides for them).
    pub(crate) short_of_votes: usize,
    pub(crate) equivocators: usize,
    /// Equivocators slashed at every honest node.
    pub(crate) slashed: usize,
    pub(crate) false_attesters: usize,
    /// False attesters every honest node holds proof against.
    pub(crate) false_attesters_caught: usize,
    /// Honest nodes whose live policy is the seed's target (cpu 70 %, checks every 45 s).
    pub(crate) applied: usize,
    /// From the end of the voting period to the last honest node holding the final tally
    /// (`None`: not every honest node got there within 30 s).
    pub(crate) finality: Option<Duration>,
    /// Frames the simulated network dropped (full queues).
    pub(crate) dropped: u64,
    /// Baseline in the same network: one gossip message from node-0 reaching every node.
    pub(crate) flood: Duration,
}

pub(crate) struct Scenario {
    pub(crate) nodes: usize,
    pub(crate) byzantine: usize,
    pub(crate) seed: u64,
    pub(crate) dao: DaoPolicy,
    /// Each simulated node's queue capacity (frames in transit; full queues drop).
    pub(crate) queue: usize,
}

impl Scenario {
    pub(crate) fn new(nodes: usize, byzantine: usize, seed: u64) -> Self {
        Self {
            nodes,
            byzantine,
            seed,
            queue: SimConfig::default().queue,
            dao: DaoPolicy {
                discussion: Duration::from_millis(300),
                voting: Duration::from_millis(1500),
                clock_skew: Duration::from_millis(100),
                sync_interval: Duration::from_millis(500),
                ..DaoPolicy::default()
            },
        }
    }

    fn role(&self, i: usize) -> Role {
        let first = self.nodes - self.byzantine;
        if i < first {
            Role::Honest
        } else {
            BYZANTINE_ROLES[(i - first) % BYZANTINE_ROLES.len()]
        }
    }

    pub(crate) async fn run(&self) -> Report {
        let net = SimNetwork::new(
            self.seed,
            SimConfig {
                latency: Duration::from_millis(5),
                jitter: Duration::from_millis(2),
                queue: self.queue,
                ..SimConfig::default()
            },
        );
        let signers: Vec<Arc<MlDsa65Signer>> = (0..self.nodes)
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
        let mut initial = Policy::default();
        initial.thresholds.cpu_percent = 80.0;
        initial.intervals.cycle = Duration::from_secs(60);

        let (mut daos, mut transports, mut lives) = (Vec::new(), Vec::new(), Vec::new());
        for s in &signers {
            let t: Arc<dyn Transport> = Arc::new(net.join(s.node_id().clone()).unwrap());
            let live = PolicyHandle::new(initial.clone()).unwrap();
            let dao = Dao::start(
                self.dao.clone(),
                stakes.clone(),
                s.clone(),
                ring.clone(),
                t.clone(),
                live.clone(),
            )
            .await
            .unwrap();
            // What a node's loop does with a decision: put its policy in force.
            let mut decisions = dao.decisions();
            let apply = live.clone();
            tokio::spawn(async move {
                while let Ok(d) = decisions.recv().await {
                    if let Some(p) = d.policy {
                        let _ = apply.replace_rules(p);
                    }
                }
            });
            daos.push(dao);
            transports.push(t);
            lives.push(live);
        }
        let honest: Vec<usize> = (0..self.nodes)
            .filter(|i| self.role(*i) == Role::Honest)
            .collect();

        // Baseline: one message flooded from node-0 to every node (the otherwise unused
        // federated-learning topic).
        let mut subs = Vec::new();
        for t in &transports[1..] {
            subs.push(t.subscribe(topics::FL).await.unwrap());
        }
        let started = Instant::now();
        transports[0]
            .publish(topics::FL, b"flood".to_vec())
            .await
            .unwrap();
        for s in &mut subs {
            tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .expect("flood reached every node");
        }
        let flood = started.elapsed();
        drop(subs);

        let spec = ProposalSpec::from_yaml(SEED_PROPOSAL, "proposal-001.yaml").unwrap();
        let opened = Instant::now();
        let id = daos[0].propose(spec).await.unwrap();
        tokio::time::sleep(self.dao.discussion + Duration::from_millis(100)).await;

        let mut expected_for = 0;
        for (i, s) in signers.iter().enumerate() {
            let me = s.node_id().clone();
            let now = Timestamp::now().as_millis();
            let body = |voter: NodeId, votes: u32, support: bool, revision: u32| VoteBody {
                proposal: id,
                voter,
                votes,
                support,
                revision,
                signed_at: now,
            };
            match self.role(i) {
                Role::Honest => {
                    let out = daos[i]
                        .vote(Vote {
                            proposal: id,
                            voter: me,
                            votes: 5,
                            support: true,
                        })
                        .await
                        .unwrap();
                    assert_eq!(out, VoteOutcome::Counted { cost: 25 });
                    expected_for += 5;
                }
                Role::Forger => {
                    let victim = signers[honest[i % honest.len()]].node_id().clone();
                    let forged = sign_vote(s.as_ref(), &body(victim, 10, false, 3)).unwrap();
                    daos[i].relay_vote(&forged).await;
                }
                Role::Equivocator => {
                    for support in [true, false] {
                        let v = sign_vote(s.as_ref(), &body(me.clone(), 9, support, 0)).unwrap();
                        daos[i].relay_vote(&v).await;
                    }
                }
                Role::FalseAttester => {
                    let lie = TallyAttestation {
                        proposal: id,
                        attester: me,
                        votes_for: 0,
                        votes_against: 10,
                        participating_stake: 100,
                        passed: false,
                    };
                    daos[i]
                        .relay_attestation(&sign_attestation(s.as_ref(), &lie).unwrap())
                        .await;
                }
                Role::Late => {}
            }
        }
        let deadline = opened + self.dao.discussion + self.dao.voting;
        tokio::time::sleep_until(
            (deadline + self.dao.clock_skew + Duration::from_millis(10)).into(),
        )
        .await;
        for (i, s) in signers.iter().enumerate() {
            if self.role(i) == Role::Late {
                let late = VoteBody {
                    proposal: id,
                    voter: s.node_id().clone(),
                    votes: 10,
                    support: false,
                    revision: 0,
                    signed_at: Timestamp::now().as_millis(),
                };
                daos[i]
                    .relay_vote(&sign_vote(s.as_ref(), &late).unwrap())
                    .await;
            }
        }

        let give_up = Instant::now() + Duration::from_secs(30);
        let mut finality = None;
        while Instant::now() < give_up {
            if honest.iter().all(|i| daos[*i].finality(&id).is_some()) {
                finality = Some(deadline.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Let late and lying messages land before judging.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let tallies: Vec<Option<FinalTally>> =
            honest.iter().map(|i| daos[*i].finality(&id)).collect();
        // The outcome, not when each node crossed 2/3 (how much stake had attested by then
        // depends on arrival order).
        let outcome = |t: &Option<FinalTally>| {
            t.as_ref().map(|f| {
                (
                    f.proposal,
                    f.votes_for,
                    f.votes_against,
                    f.participating_stake,
                    f.passed,
                )
            })
        };
        let agree = tallies
            .iter()
            .all(|t| t.is_some() && outcome(t) == outcome(&tallies[0]));
        let (mut forged_accepted, mut short_of_votes) = (0, 0);
        for i in &honest {
            let st = daos[*i].state(&id).await.unwrap().unwrap();
            if st.votes_against > 0 || st.votes_for > expected_for {
                forged_accepted += 1;
            } else if st.votes_for < expected_for {
                short_of_votes += 1;
            }
        }
        let with_role = |r: Role| -> Vec<NodeId> {
            (0..self.nodes)
                .filter(|i| self.role(*i) == r)
                .map(|i| signers[i].node_id().clone())
                .collect()
        };
        let equivocators = with_role(Role::Equivocator);
        let slashed = equivocators
            .iter()
            .filter(|e| honest.iter().all(|i| daos[*i].stake(e) < 100))
            .count();
        let liars = with_role(Role::FalseAttester);
        let caught = liars
            .iter()
            .filter(|l| {
                honest
                    .iter()
                    .all(|i| daos[*i].attestation_equivocators(&id).contains(l))
            })
            .count();
        let applied = honest
            .iter()
            .filter(|i| {
                let p = lives[**i].current();
                p.thresholds.cpu_percent == 70.0 && p.intervals.cycle == Duration::from_secs(45)
            })
            .count();
        let dropped = net.stats().dropped;
        net.shutdown();
        Report {
            dropped,
            honest: honest.len(),
            agree,
            tally: tallies.into_iter().next().flatten(),
            expected_for,
            forged_accepted,
            short_of_votes,
            equivocators: equivocators.len(),
            slashed,
            false_attesters: liars.len(),
            false_attesters_caught: caught,
            applied,
            finality,
            flood,
        }
    }
}
