//! `demo governance`: N nodes in one process, some Byzantine (forging, equivocating, voting
//! late), run the seed's proposal through discussion and quadratic voting on a short clock;
//! every honest node's MAPE-K loop applies the result to its live policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::{
    Governance, Node, NodeHandle, NodeId, Policy, PolicyHandle, Signer, Timestamp, Transport, Vote,
    VoteOutcome,
};
use x0tta_dao::{Dao, DaoPolicy, ProposalSpec, VoteBody, sign_vote};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

/// The seed's proposal-001.
const SEED_PROPOSAL: &str = include_str!("../../examples/proposals/proposal-001.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    Forger,
    Equivocator,
    Late,
}

struct Member {
    signer: Arc<MlDsa65Signer>,
    role: Role,
    dao: Dao,
    handle: NodeHandle,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

pub(crate) async fn run(nodes: usize) -> Result<()> {
    if !(4..=100).contains(&nodes) {
        bail!("--nodes must be between 4 and 100");
    }
    let byzantine = (nodes - 1) / 3; // f < N/3
    let dao_policy = DaoPolicy {
        discussion: Duration::from_millis(400),
        voting: Duration::from_millis(900),
        clock_skew: Duration::from_millis(100),
        ..DaoPolicy::default()
    };
    println!("x0tta6bl4 demo: governance");
    println!(
        "{nodes} nodes ({byzantine} Byzantine), stake 100 each; discussion {:?}, voting {:?}, quorum {:.0}%",
        dao_policy.discussion,
        dao_policy.voting,
        dao_policy.quorum * 100.0
    );

    let net = MemoryNetwork::new();
    let signers: Vec<Arc<MlDsa65Signer>> = (0..nodes)
        .map(|i| {
            Ok(Arc::new(MlDsa65Signer::new(
                NodeId::new(format!("node-{i}"))?,
                MlDsa65Keypair::generate(),
            )))
        })
        .collect::<Result<_>>()?;
    let ring: Arc<KeyRing> = Arc::new(
        signers
            .iter()
            .map(|s| (s.node_id().clone(), s.public_key().clone()))
            .collect(),
    );
    let stakes: BTreeMap<NodeId, u64> =
        signers.iter().map(|s| (s.node_id().clone(), 100)).collect();
    let roles = [Role::Forger, Role::Equivocator, Role::Late];

    // The live policy the seed's proposal was written against: cpu 80 %, checks every 60 s.
    let mut initial = Policy::default();
    initial.thresholds.cpu_percent = 80.0;
    initial.intervals.cycle = Duration::from_secs(60);

    let mut members = Vec::with_capacity(nodes);
    for (i, s) in signers.iter().enumerate() {
        let role = if i >= nodes - byzantine {
            roles[(i - (nodes - byzantine)) % roles.len()]
        } else {
            Role::Honest
        };
        let transport: Arc<dyn Transport> = Arc::new(net.join(s.node_id().clone()));
        let live = PolicyHandle::new(initial.clone())?;
        let dao = Dao::start(
            dao_policy.clone(),
            stakes.clone(),
            s.clone(),
            ring.clone(),
            transport.clone(),
            live.clone(),
        )
        .await?;
        let node = Node::builder()
            .transport(transport)
            .knowledge(Arc::new(MemoryKnowledge::new(100)))
            .signer(s.clone())
            .governance(Arc::new(dao.clone()))
            .policy_handle(live)
            .build()?;
        let handle = node.handle();
        tokio::spawn(node.run());
        members.push(Member {
            signer: s.clone(),
            role,
            dao,
            handle,
        });
    }
    for m in members.iter().filter(|m| m.role != Role::Honest) {
        println!(
            "  [byzantine] {} will be a {:?}",
            m.signer.node_id(),
            m.role
        );
    }

    let spec = ProposalSpec::from_yaml(SEED_PROPOSAL, "examples/proposals/proposal-001.yaml")?;
    println!(
        "[propose]   {} by {}: {}",
        spec.proposal_id, spec.creator, spec.title
    );
    for c in &spec.changes {
        println!(
            "              {}: {} -> {}",
            c.parameter, c.current, c.proposed
        );
    }
    let proposer = members
        .iter()
        .find(|m| *m.signer.node_id() == spec.creator)
        .context("proposer not in the mesh")?;
    let opened = Instant::now();
    let id = proposer.dao.propose(spec).await?;
    println!(
        "[discuss]   proposal {id} gossiped; voting opens in {:?}",
        dao_policy.discussion
    );
    tokio::time::sleep(dao_policy.discussion + Duration::from_millis(50)).await;

    let honest: Vec<&Member> = members.iter().filter(|m| m.role == Role::Honest).collect();
    let mut expected_for = 0u64;
    for (k, m) in members.iter().enumerate() {
        let now = Timestamp::now().as_millis();
        match m.role {
            Role::Honest => {
                let votes = 5 + (k % 5) as u32;
                let out = m
                    .dao
                    .vote(Vote {
                        proposal: id,
                        voter: m.signer.node_id().clone(),
                        votes,
                        support: true,
                    })
                    .await?;
                if let VoteOutcome::Counted { cost } = out {
                    expected_for += u64::from(votes);
                    println!(
                        "[vote]      {}: {votes} for (costs {cost} of 100 credits)",
                        m.signer.node_id()
                    );
                }
            }
            Role::Forger => {
                // Claims to be an honest node voting heavily against.
                let victim = honest[k % honest.len()].signer.node_id().clone();
                let body = VoteBody {
                    proposal: id,
                    voter: victim.clone(),
                    votes: 10,
                    support: false,
                    revision: 7,
                    signed_at: now,
                };
                m.dao
                    .relay_vote(&sign_vote(m.signer.as_ref(), &body)?)
                    .await;
                println!(
                    "[byzantine] {} forges 10 votes against as {victim}",
                    m.signer.node_id()
                );
            }
            Role::Equivocator => {
                for support in [true, false] {
                    let body = VoteBody {
                        proposal: id,
                        voter: m.signer.node_id().clone(),
                        votes: 9,
                        support,
                        revision: 0,
                        signed_at: now,
                    };
                    m.dao
                        .relay_vote(&sign_vote(m.signer.as_ref(), &body)?)
                        .await;
                }
                println!(
                    "[byzantine] {} signs 9 for and 9 against",
                    m.signer.node_id()
                );
            }
            Role::Late => {}
        }
    }
    let deadline = opened + dao_policy.discussion + dao_policy.voting;
    tokio::time::sleep_until((deadline + dao_policy.clock_skew + Duration::from_millis(20)).into())
        .await;
    for m in members.iter().filter(|m| m.role == Role::Late) {
        let body = VoteBody {
            proposal: id,
            voter: m.signer.node_id().clone(),
            votes: 10,
            support: false,
            revision: 0,
            signed_at: Timestamp::now().as_millis(),
        };
        m.dao
            .relay_vote(&sign_vote(m.signer.as_ref(), &body)?)
            .await;
        println!(
            "[byzantine] {} votes 10 against after the deadline",
            m.signer.node_id()
        );
    }

    // Wait for every honest node's loop to apply the decision.
    let target = |h: &NodeHandle| {
        let p = h.policy().current();
        p.thresholds.cpu_percent == 70.0 && p.intervals.cycle == Duration::from_secs(45)
    };
    let give_up = Instant::now() + Duration::from_secs(10);
    while !honest.iter().all(|m| target(&m.handle)) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let finality = Instant::now().saturating_duration_since(deadline);
    let applied = honest.iter().filter(|m| target(&m.handle)).count();

    let mut forged_accepted = 0;
    let mut passed_everywhere = true;
    for m in &honest {
        let st = m
            .dao
            .state(&id)
            .await?
            .context("proposal unknown to an honest node")?;
        if st.votes_against > 0 || st.votes_for != expected_for {
            forged_accepted += 1;
        }
        passed_everywhere &= st.phase == x0tta_core::Phase::Executed;
    }
    let equivocators: Vec<&Member> = members
        .iter()
        .filter(|m| m.role == Role::Equivocator)
        .collect();
    let slashed = equivocators
        .iter()
        .filter(|e| honest.iter().all(|h| h.dao.stake(e.signer.node_id()) < 100))
        .count();
    if let Some(m) = honest.first() {
        let st = m.dao.state(&id).await?.context("proposal unknown")?;
        println!(
            "[close]     tally: {} for, {} against, participation {:.0}% -> {:?}",
            st.votes_for,
            st.votes_against,
            st.participation * 100.0,
            st.phase
        );
        if let Some(f) = m.dao.finality(&id) {
            println!(
                "[final]     signed tally attestations from {} of {} stake agree (> 2/3): final",
                f.attesting_stake, f.total_stake
            );
        }
        let p = m.handle.policy().current();
        println!(
            "[apply]     {}/{} honest nodes now run policy v{}: cpu {} %, checks every {:?}",
            applied,
            honest.len(),
            p.version,
            p.thresholds.cpu_percent,
            p.intervals.cycle
        );
    }
    for m in &members {
        m.handle.shutdown();
    }
    println!(
        "summary: scenario=governance passed={passed_everywhere} applied={applied}/{} forged_accepted={forged_accepted} slashed={slashed}/{} finality_ms={}",
        honest.len(),
        equivocators.len(),
        ms(finality)
    );
    if !passed_everywhere
        || applied != honest.len()
        || forged_accepted != 0
        || slashed != equivocators.len()
    {
        bail!("governance did not reach the expected outcome on every honest node");
    }
    Ok(())
}
