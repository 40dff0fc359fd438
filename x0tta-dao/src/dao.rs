//! [`Dao`]: the ledger wired to a node — proposals and votes travel as signed envelopes on the
//! `x0tta/proposals/1` and `x0tta/votes/1` topics, every node counts them in its own
//! [`Ledger`], and closed proposals become [`Decision`]s the node's loop applies to its live
//! policy. Implements x0tta-core's [`Governance`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};
use x0tta_core::{
    ContentId, Decision, Envelope, Governance, GovernanceError, InboundRequest, KnowledgeStore,
    NodeId, PeerState, Phase as CorePhase, PolicyHandle, Proposal, ProposalId, ProposalState,
    Signer, Timestamp, Transport, TransportError, Verifier, Vote, VoteOutcome, VoteRefusal,
    contexts, from_dag_cbor, to_dag_cbor, topics,
};

use crate::{
    AttestationRefusal, AttestationResult, ByzantineDetector, Change, DaoPolicy, EffectError,
    EffectivenessReport, Equivocation, EvidenceResult, FinalTally, GOV_PROTOCOL, GovDelta,
    GovDigest, Ledger, Offence, PARAMETERS, Phase, ProposalError, ProposalSpec, REPLY_BUDGET,
    Refusal, SignedAttestation, TallyAttestation, Target, Track, VoteBody, VoteResult,
    sign_attestation, sign_vote,
};

/// Capacity of the decisions channel; slow receivers lose the oldest.
pub const DECISION_CAPACITY: usize = 64;
/// How often open proposals are checked for their deadline.
pub const CLOSE_CHECK: Duration = Duration::from_millis(50);
/// Incidents an effectiveness report reads at most (the newest).
pub const MAX_MEASURED: usize = 100_000;
/// Anti-entropy rounds one sync may chain while the peer says it has more.
pub const MAX_SYNC_ROUNDS: usize = 16;

struct Inner {
    me: NodeId,
    signer: Arc<dyn Signer>,
    transport: Arc<dyn Transport>,
    ledger: Mutex<Ledger<Arc<dyn Verifier>>>,
    live: PolicyHandle,
    decisions: broadcast::Sender<Decision>,
    revisions: Mutex<BTreeMap<ContentId, u32>>,
    announced: Mutex<BTreeSet<ContentId>>,
    /// When each passed proposal was announced (put in force) here.
    applied: Mutex<BTreeMap<ContentId, Timestamp>>,
    byzantine: ByzantineDetector,
    sync_interval: Duration,
}

/// Governance of one node. Cheap to clone; background work stops when the transport closes
/// its subscriptions.
#[derive(Clone)]
pub struct Dao {
    inner: Arc<Inner>,
}

/// Starting governance failed.
#[derive(Debug, thiserror::Error)]
#[error("governance cannot start: {0}")]
pub struct StartError(String);

fn now_ms() -> u64 {
    Timestamp::now().as_millis()
}

/// A gossiped message, or `None` (logged) when it is malformed.
fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], what: &str) -> Option<T> {
    let decoded = from_dag_cbor(payload);
    if decoded.is_err() {
        tracing::warn!("malformed {what} refused");
    }
    decoded.ok()
}

/// A random number from the OS (the clock if the OS has none): digest salts, peer choice.
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        (Timestamp::now().as_millis() ^ u64::from(std::process::id()))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    })
}

impl Dao {
    /// Starts governance for the node that `signer` signs as: subscribes to the proposal and
    /// vote topics and closes proposals at their deadline. `verifier` must know every voter's
    /// key; `live` is the node's live policy (proposals are checked against it).
    pub async fn start(
        policy: DaoPolicy,
        stakes: BTreeMap<NodeId, u64>,
        signer: Arc<dyn Signer>,
        verifier: Arc<dyn Verifier>,
        transport: Arc<dyn Transport>,
        live: PolicyHandle,
    ) -> Result<Self, StartError> {
        let mut proposals = transport
            .subscribe(topics::PROPOSALS)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let mut votes = transport
            .subscribe(topics::VOTES)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let mut attestations = transport
            .subscribe(topics::POLICY)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let mut evidence = transport
            .subscribe(topics::EVIDENCE)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let served = transport
            .serve(GOV_PROTOCOL)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let sync_interval = policy.sync_interval;
        let inner = Arc::new(Inner {
            me: signer.node_id().clone(),
            signer,
            transport,
            ledger: Mutex::new(Ledger::new(policy, stakes, verifier)),
            live,
            decisions: broadcast::channel(DECISION_CAPACITY).0,
            revisions: Mutex::default(),
            announced: Mutex::default(),
            applied: Mutex::default(),
            byzantine: ByzantineDetector::new(),
            sync_interval,
        });
        tokio::spawn(serve_sync(Arc::downgrade(&inner), served));
        tokio::spawn(pull_loop(Arc::downgrade(&inner)));
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLOSE_CHECK);
            loop {
                tokio::select! {
                    m = proposals.next() => match (m, weak.upgrade()) {
                        (Some(m), Some(inner)) => {
                            if let Some(env) = decode::<Envelope>(&m.payload, "proposal") {
                                inner.on_proposal(&env, &[]);
                            }
                        }
                        _ => break,
                    },
                    m = votes.next() => match (m, weak.upgrade()) {
                        (Some(m), Some(inner)) => {
                            if let Some(env) = decode::<Envelope>(&m.payload, "vote") {
                                inner.on_vote(&env).await;
                            }
                        }
                        _ => break,
                    },
                    m = evidence.next() => match (m, weak.upgrade()) {
                        (Some(m), Some(inner)) => {
                            if let Some(ev) = decode::<Equivocation>(&m.payload, "evidence") {
                                inner.on_evidence(&ev);
                            }
                        }
                        _ => break,
                    },
                    m = attestations.next() => match (m, weak.upgrade()) {
                        (Some(m), Some(inner)) => {
                            if let Some(env) = decode::<Envelope>(&m.payload, "tally attestation") {
                                inner.on_attestation(&env);
                            }
                        }
                        _ => break,
                    },
                    _ = tick.tick() => match weak.upgrade() {
                        Some(inner) => inner.close_due().await,
                        None => break,
                    },
                }
            }
        });
        Ok(Self { inner })
    }

    /// Submits a proposal in the seed's layout: stamped with its opening time
    /// ([`ProposalSpec::opened_at`]), checked, signed, counted here and gossiped.
    pub async fn propose(&self, mut spec: ProposalSpec) -> Result<ProposalId, GovernanceError> {
        spec.opened_at = Some(now_ms());
        let bytes = to_dag_cbor(&spec).map_err(|e| GovernanceError::Other(e.to_string()))?;
        let env = Envelope::seal(self.inner.signer.as_ref(), contexts::PROPOSAL, bytes)
            .map_err(|e| GovernanceError::Other(e.to_string()))?;
        let id = self
            .inner
            .ledger()
            .submit_signed(&env, &self.inner.live.current(), now_ms())
            .map_err(|e| GovernanceError::Invalid(e.to_string()))?;
        self.inner.publish(topics::PROPOSALS, &env).await;
        Ok(id)
    }

    /// One anti-entropy exchange with `peer` over `/x0tta/gov/1`: sends what this node holds,
    /// verifies and counts what the peer sends back (chaining up to [`MAX_SYNC_ROUNDS`] rounds
    /// while it has more). Returns the signed items taken. Runs on its own every
    /// [`DaoPolicy::sync_interval`] with a random live neighbour; call it to sync at once.
    pub async fn sync_with(&self, peer: &NodeId) -> Result<usize, TransportError> {
        self.inner.sync_with(peer).await
    }

    /// A voter's stake as this node's ledger sees it (after any slashing).
    pub fn stake(&self, node: &NodeId) -> u64 {
        self.inner.ledger().stake(node)
    }

    /// All voters' stake as this node's ledger sees it.
    pub fn total_stake(&self) -> u64 {
        self.inner.ledger().total_stake()
    }

    /// The vote this node counted last (its own or a peer's).
    pub fn last_vote(&self) -> Option<crate::VoteBody> {
        self.inner.ledger().last_vote().cloned()
    }

    /// Publishes an already signed vote as is (to relay votes, and for fault-injection tests).
    pub async fn relay_vote(&self, vote: &crate::SignedVote) {
        self.inner.publish(topics::VOTES, vote).await;
    }

    /// Every proposal this node holds, the most recently opened first.
    pub fn proposals(&self) -> Vec<ProposalId> {
        self.inner.ledger().proposals()
    }

    /// A proposal as submitted (`None`: unknown here).
    pub fn spec(&self, id: &ProposalId) -> Option<ProposalSpec> {
        self.inner.ledger().spec(id).cloned()
    }

    /// When a proposal opened (the creator's signed opening time).
    pub fn opened_at(&self, id: &ProposalId) -> Option<Timestamp> {
        self.inner
            .ledger()
            .opened_at(id)
            .map(Timestamp::from_millis)
    }

    /// The phase of a proposal now.
    pub fn phase(&self, id: &ProposalId) -> Option<Phase> {
        self.inner.ledger().phase(id, now_ms())
    }

    /// The tally more than 2/3 of the stake attested, once the proposal is final. Decisions
    /// ([`Governance::decisions`]) are announced only then.
    pub fn finality(&self, id: &ProposalId) -> Option<FinalTally> {
        self.inner.ledger().finality(id).cloned()
    }

    /// Attestations for a proposal that disagree with the tally this node computed.
    pub fn disagreeing(&self, id: &ProposalId) -> Vec<TallyAttestation> {
        self.inner.ledger().disagreeing(id)
    }

    /// Nodes proven to have signed two different attestations for a proposal.
    pub fn attestation_equivocators(&self, id: &ProposalId) -> Vec<NodeId> {
        self.inner.ledger().attestation_equivocators(id)
    }

    /// The detector that raises BYZANTINE_PEER for every peer this node's governance proved
    /// Byzantine (conflicting votes, seen here or proven by gossiped evidence; conflicting tally
    /// attestations). Add it to the node's healer.
    pub fn detector(&self) -> ByzantineDetector {
        self.inner.byzantine.clone()
    }

    /// Every voter proven to have equivocated, with one proof each.
    pub fn equivocations(&self) -> Vec<Equivocation> {
        self.inner.ledger().equivocations()
    }

    /// When a passed proposal's policy was put in force on this node (`None`: not final
    /// here, rejected, or without changes).
    pub fn applied_at(&self, id: &ProposalId) -> Option<Timestamp> {
        self.inner
            .applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// The effectiveness report of a proposal put in force here: the metric its rationale
    /// names ([`Target::from_rationale`]), measured on `knowledge`'s newest
    /// [`MAX_MEASURED`] incidents over `window` before and after it came into force.
    ///
    /// ```no_run
    /// # async fn f(dao: x0tta_dao::Dao, store: &dyn x0tta_core::KnowledgeStore, id: x0tta_core::ProposalId) -> Result<(), x0tta_dao::EffectError> {
    /// let report = dao.effectiveness(&id, store, std::time::Duration::from_secs(7 * 24 * 3600)).await?;
    /// println!("{report}"); // MTTR of CPU_OVERLOAD: before 61.00s (12 incidents), after 20.00s ...
    /// # Ok(()) }
    /// ```
    pub async fn effectiveness(
        &self,
        id: &ProposalId,
        knowledge: &dyn KnowledgeStore,
        window: Duration,
    ) -> Result<EffectivenessReport, EffectError> {
        let rationale = self
            .inner
            .ledger()
            .spec(id)
            .map(|s| s.rationale.clone())
            .ok_or(EffectError::UnknownProposal)?;
        let applied_at = self.applied_at(id).ok_or(EffectError::NotApplied)?;
        let target = Target::from_rationale(&rationale)?;
        let incidents = knowledge
            .recent(MAX_MEASURED)
            .await
            .map_err(|e| EffectError::Knowledge(e.to_string()))?;
        Ok(EffectivenessReport::measure(
            incidents.iter().map(|(_, i)| i),
            target,
            applied_at,
            window,
            Timestamp::now(),
        ))
    }

    /// Publishes an already signed attestation as is (for fault-injection tests).
    pub async fn relay_attestation(&self, attestation: &SignedAttestation) {
        self.inner.publish(topics::POLICY, attestation).await;
    }
}

impl Inner {
    fn ledger(&self) -> MutexGuard<'_, Ledger<Arc<dyn Verifier>>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn publish(&self, topic: &str, env: &Envelope) {
        match to_dag_cbor(env) {
            Ok(bytes) => {
                if let Err(e) = self.transport.publish(topic, bytes).await {
                    tracing::warn!(%e, topic, "governance message not published");
                }
            }
            Err(e) => tracing::warn!(%e, "governance message not encodable"),
        }
    }

    /// A signed proposal from gossip or a sync. One opened too long ago to vote on is taken
    /// if `attestations` prove it final, and its decision announced.
    fn on_proposal(&self, env: &Envelope, attestations: &[SignedAttestation]) -> bool {
        let live = self.live.current();
        let r = {
            let mut ledger = self.ledger();
            let before = ledger.proposal_count();
            ledger
                .submit_signed(env, &live, now_ms())
                .map(|_| ledger.proposal_count() > before)
        };
        match r {
            Ok(new) => new,
            Err(ProposalError::OpenedAt { .. }) if !attestations.is_empty() => {
                let r = self.ledger().admit_final(env, attestations, &live);
                match r {
                    Ok(f) => {
                        self.took_late(&f);
                        true
                    }
                    Err(e) => {
                        tracing::info!(%e, "late proposal refused");
                        false
                    }
                }
            }
            Err(e @ ProposalError::Forged(_)) => {
                tracing::warn!(signer = %env.signature.signer, %e, "proposal refused");
                false
            }
            Err(e) => {
                tracing::info!(%e, "proposal refused");
                false
            }
        }
    }

    /// A signed vote from gossip or a sync; proof of equivocation is gossiped on.
    async fn on_vote(&self, env: &Envelope) -> bool {
        let r = self.ledger().vote(env, now_ms());
        match r {
            VoteResult::Counted { .. } => true,
            VoteResult::Equivocation(ev) => {
                tracing::warn!(voter = %ev.voter, "equivocation: stake slashed");
                self.byzantine.report(
                    ev.voter.clone(),
                    Offence::VoteEquivocation {
                        proposal: ev.proposal,
                    },
                );
                self.publish_evidence(&ev).await;
                true
            }
            _ => false,
        }
    }

    /// Gossips proof of equivocation, so nodes that saw only one of the votes slash too.
    async fn publish_evidence(&self, ev: &Equivocation) {
        match to_dag_cbor(ev) {
            Ok(bytes) => {
                if let Err(e) = self.transport.publish(topics::EVIDENCE, bytes).await {
                    tracing::warn!(%e, "equivocation evidence not published");
                }
            }
            Err(e) => tracing::warn!(%e, "equivocation evidence not encodable"),
        }
    }

    fn on_evidence(&self, ev: &Equivocation) -> bool {
        let r = self.ledger().accept_evidence(ev);
        match r {
            EvidenceResult::Slashed => {
                tracing::warn!(voter = %ev.voter, proposal = %ev.proposal, "equivocation proven by gossiped evidence: stake slashed");
                self.byzantine.report(
                    ev.voter.clone(),
                    Offence::VoteEquivocation {
                        proposal: ev.proposal,
                    },
                );
            }
            EvidenceResult::Invalid => {
                tracing::warn!(voter = %ev.voter, "evidence that proves nothing refused")
            }
            _ => {}
        }
        r == EvidenceResult::Slashed
    }

    fn on_attestation(&self, env: &Envelope) -> bool {
        let r = self.ledger().attest(env);
        match r {
            AttestationResult::Counted(Some(f)) => {
                self.announce(&f);
                return true;
            }
            AttestationResult::Counted(None) => return true,
            AttestationResult::Equivocation(proof) => {
                tracing::warn!(
                    attester = %env.signature.signer,
                    "two different tally attestations for one proposal: attester excluded"
                );
                if let Ok(body) = from_dag_cbor::<TallyAttestation>(&proof[1].payload) {
                    self.byzantine.report(
                        body.attester,
                        Offence::AttestationEquivocation {
                            proposal: body.proposal,
                        },
                    );
                }
            }
            // Attestations of proposals awaiting proof here (late) or not arrived yet.
            AttestationResult::Refused(AttestationRefusal::UnknownProposal) => {}
            AttestationResult::Refused(why) => tracing::warn!(
                signer = %env.signature.signer,
                ?why,
                "tally attestation refused"
            ),
            _ => {}
        }
        false
    }

    async fn sync_with(&self, peer: &NodeId) -> Result<usize, TransportError> {
        let mut taken = 0;
        for _ in 0..MAX_SYNC_ROUNDS {
            // Unpredictable, so no peer can prepare an item whose digest hides another.
            let digest = self.ledger().digest(random_u64());
            let request = to_dag_cbor(&digest).map_err(|e| TransportError::Other(e.to_string()))?;
            let timeout = self.sync_interval.max(Duration::from_secs(1));
            let reply = self
                .transport
                .request(peer, GOV_PROTOCOL, request, timeout)
                .await?;
            let delta: GovDelta = from_dag_cbor(&reply).map_err(|e| {
                TransportError::Other(format!("malformed /x0tta/gov/1 reply from {peer}: {e}"))
            })?;
            let new = self.take(&delta).await;
            taken += new;
            // Chain only while rounds bring something: a peer that always says "more" cannot
            // keep this node verifying.
            if !delta.more || new == 0 {
                break;
            }
        }
        Ok(taken)
    }

    /// Counts a peer's delta as if it had come by gossip: proposals first, then votes,
    /// evidence and attestations. Returns the items taken.
    async fn take(&self, delta: &GovDelta) -> usize {
        let mut taken = 0;
        for p in &delta.proposals {
            taken += usize::from(self.on_proposal(p, &delta.attestations));
        }
        // Proofs for late proposals gathered over several rounds.
        let finals = self
            .ledger()
            .late_attestations(&delta.attestations, &self.live.current());
        for f in finals {
            self.took_late(&f);
            taken += 1;
        }
        for v in &delta.votes {
            taken += usize::from(self.on_vote(v).await);
        }
        for ev in &delta.evidence {
            taken += usize::from(self.on_evidence(ev));
        }
        for a in &delta.attestations {
            taken += usize::from(self.on_attestation(a));
        }
        taken
    }

    /// A late proposal proven final here: its decision goes to the node's loop.
    fn took_late(&self, f: &FinalTally) {
        tracing::info!(proposal = %f.proposal, passed = f.passed, "late proposal taken with its final tally");
        self.announce(f);
    }

    /// A random live neighbour, if any.
    async fn pick_peer(&self) -> Option<NodeId> {
        let live: Vec<NodeId> = self
            .transport
            .neighbours()
            .await
            .into_iter()
            .filter(|n| n.state == PeerState::Up && n.id != self.me)
            .map(|n| n.id)
            .collect();
        if live.is_empty() {
            return None;
        }
        let i = usize::try_from(random_u64() % live.len() as u64).unwrap_or(0);
        live.into_iter().nth(i)
    }

    /// Closes what is due; for each newly closed proposal (the ledger closes each once),
    /// attests this node's tally (counted here, then gossiped).
    async fn close_due(&self) {
        let now = now_ms();
        let outcomes: Vec<_> = {
            let mut ledger = self.ledger();
            ledger
                .open_proposals()
                .into_iter()
                .filter_map(|id| ledger.close(&id, now))
                .collect()
        };
        for o in outcomes {
            let body = TallyAttestation::of(&o, self.me.clone());
            let env = match sign_attestation(self.signer.as_ref(), &body) {
                Ok(env) => env,
                Err(e) => {
                    tracing::warn!(%e, "cannot sign the tally attestation");
                    continue;
                }
            };
            let counted = self.ledger().attest(&env);
            for d in self.ledger().disagreeing(&o.id) {
                tracing::warn!(attester = %d.attester, proposal = %o.id, "attested a tally that differs from ours");
            }
            self.publish(topics::POLICY, &env).await;
            if let AttestationResult::Counted(Some(f)) = counted {
                self.announce(&f);
            }
        }
    }

    /// Announces the decision of a final proposal, once.
    fn announce(&self, f: &FinalTally) {
        let id = f.proposal;
        let new = self
            .announced
            .lock()
            .map(|mut a| a.insert(id))
            .unwrap_or(false);
        if !new {
            return;
        }
        let policy = if f.passed {
            self.ledger().policy_of(&id)
        } else {
            None
        };
        if policy.is_some() {
            self.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, Timestamp::now());
        }
        let _ = self.decisions.send(Decision {
            id,
            passed: f.passed,
            policy,
        });
    }
}

/// The changes that turn `base` into `target`, over the governable parameters.
fn diff(base: &x0tta_core::Policy, target: &x0tta_core::Policy) -> Vec<Change> {
    PARAMETERS
        .iter()
        .filter_map(|p| {
            let (a, b) = (p.value(base), p.value(target));
            ((a - b).abs() > 1e-9).then(|| Change {
                parameter: p.name.to_string(),
                current: a,
                proposed: b,
            })
        })
        .collect()
}

#[async_trait]
impl Governance for Dao {
    async fn submit(&self, proposal: Proposal) -> Result<ProposalId, GovernanceError> {
        let live = self.inner.live.current();
        let spec = ProposalSpec {
            proposal_id: format!("{}-{}", proposal.proposer, now_ms()),
            title: proposal.title,
            description: proposal.description,
            changes: diff(&live, &proposal.policy),
            rationale: String::new(),
            creator: proposal.proposer,
            timestamp: now_ms(),
            track: if proposal.emergency {
                Track::Emergency
            } else {
                Track::Standard
            },
            opened_at: None, // stamped by `propose`
        };
        self.propose(spec).await
    }

    async fn vote(&self, vote: Vote) -> Result<VoteOutcome, GovernanceError> {
        if vote.voter != self.inner.me {
            return Err(GovernanceError::Invalid(format!(
                "this node votes as {}, not {}",
                self.inner.me, vote.voter
            )));
        }
        let revision = {
            let mut r = self
                .inner
                .revisions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let next = r.get(&vote.proposal).map_or(0, |n| n + 1);
            r.insert(vote.proposal, next);
            next
        };
        let body = VoteBody {
            proposal: vote.proposal,
            voter: vote.voter,
            votes: vote.votes,
            support: vote.support,
            revision,
            signed_at: now_ms(),
        };
        let env = sign_vote(self.inner.signer.as_ref(), &body)
            .map_err(|e| GovernanceError::Other(e.to_string()))?;
        let result = self.inner.ledger().vote(&env, now_ms());
        let outcome = match result {
            VoteResult::Counted { cost } => VoteOutcome::Counted { cost },
            VoteResult::Duplicate => VoteOutcome::Counted { cost: 0 },
            VoteResult::Refused(Refusal::OverBudget { cost, credits }) => {
                VoteOutcome::Refused(VoteRefusal::InsufficientCredits { cost, credits })
            }
            VoteResult::Refused(Refusal::UnknownProposal) => {
                VoteOutcome::Refused(VoteRefusal::UnknownProposal)
            }
            VoteResult::Refused(Refusal::Equivocator) | VoteResult::Equivocation(_) => {
                VoteOutcome::Refused(VoteRefusal::Equivocation)
            }
            VoteResult::Refused(_) => VoteOutcome::Refused(VoteRefusal::NotVoting),
        };
        if matches!(outcome, VoteOutcome::Counted { .. }) {
            self.inner.publish(topics::VOTES, &env).await;
        }
        Ok(outcome)
    }

    async fn state(&self, id: &ProposalId) -> Result<Option<ProposalState>, GovernanceError> {
        let ledger = self.inner.ledger();
        let (Some(spec), Some(base), Some(tally)) =
            (ledger.spec(id), ledger.base_policy(id), ledger.tally(id))
        else {
            return Ok(None);
        };
        // A final tally (> 2/3 of the stake attested it) decides, even before this node's own
        // close has run.
        let decided = ledger
            .finality(id)
            .map(|f| f.passed)
            .or_else(|| ledger.outcome(id).map(|o| o.tally.passed));
        let phase = match (decided, ledger.phase(id, now_ms())) {
            (Some(true), _) => CorePhase::Executed,
            (Some(false), _) => CorePhase::Rejected,
            (None, Some(Phase::Discussion)) => CorePhase::Discussion,
            (None, Some(Phase::Voting)) => CorePhase::Voting,
            (None, _) => CorePhase::Tallied,
        };
        Ok(Some(ProposalState {
            proposal: Proposal {
                title: spec.title.clone(),
                description: spec.description.clone(),
                proposer: spec.creator.clone(),
                policy: spec.apply_to(base).unwrap_or_else(|_| base.clone()),
                emergency: spec.track == Track::Emergency,
            },
            phase,
            votes_for: tally.votes_for,
            votes_against: tally.votes_against,
            participation: if tally.total_stake == 0 {
                0.0
            } else {
                tally.participating_stake as f64 / tally.total_stake as f64
            },
        }))
    }

    fn decisions(&self) -> broadcast::Receiver<Decision> {
        self.inner.decisions.subscribe()
    }
}

/// Answers `/x0tta/gov/1` requests with what the requester lacks, until the transport closes
/// the server or the node's governance is dropped.
async fn serve_sync(inner: std::sync::Weak<Inner>, mut served: mpsc::Receiver<InboundRequest>) {
    while let Some(req) = served.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        let reply = match from_dag_cbor::<GovDigest>(&req.payload) {
            Ok(digest) => {
                let delta = inner.ledger().delta(&digest, REPLY_BUDGET);
                to_dag_cbor(&delta).unwrap_or_default()
            }
            Err(e) => {
                tracing::warn!(from = %req.from, %e, "malformed /x0tta/gov/1 request");
                Vec::new()
            }
        };
        req.respond(reply);
    }
}

/// Every `sync_interval`, one anti-entropy exchange with a random live neighbour.
async fn pull_loop(inner: std::sync::Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(i) => i.sync_interval.max(Duration::from_millis(10)),
        None => return,
    };
    // The first exchange after one period: at start the node has no live neighbour yet.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { break };
        let Some(peer) = inner.pick_peer().await else {
            continue;
        };
        match inner.sync_with(&peer).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(%peer, items = n, "governance items taken by anti-entropy"),
            Err(TransportError::Closed) => break,
            Err(e) => tracing::debug!(%peer, %e, "governance anti-entropy failed"),
        }
    }
}
