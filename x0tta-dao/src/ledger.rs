//! The governance ledger: proposals, signed quadratic votes, tallies and decisions, as a
//! sans-I/O state machine. Time comes in as an argument (`now`, ms since the epoch), so tests
//! run a whole lifecycle in microseconds and every node fed the same messages computes the
//! same result, whatever their order or duplication.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use x0tta_core::{
    ContentId, Envelope, NodeId, Policy, Signer, Verifier, contexts, from_dag_cbor, to_dag_cbor,
};

use crate::proposal::{ProposalError, ProposalSpec, Track};

/// Governance settings (DESIGN §8; seed defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DaoPolicy {
    /// Discussion before voting (standard track).
    pub discussion: Duration,
    /// Voting period, standard track.
    pub voting: Duration,
    /// Voting period, emergency track (no discussion).
    pub emergency_voting: Duration,
    /// Participating stake / total stake needed, standard track.
    pub quorum: f64,
    /// The same, emergency track.
    pub emergency_quorum: f64,
    /// Share of the votes cast that must be in favour (0.5: more for than against).
    pub supermajority: f64,
    /// Clock skew tolerated on vote timestamps.
    pub clock_skew: Duration,
    /// Credits a proposal costs its creator.
    pub proposal_fee: u64,
    /// Share of stake an equivocator loses.
    pub slash_fraction: f64,
    /// How long a proposal may take to reach a node: one whose signed opening time is older
    /// than this plus the clock skew is refused (a creator cannot backdate it to skip the
    /// discussion).
    pub max_propagation: Duration,
    /// How often a node asks one live neighbour for the signed governance items it lacks
    /// (anti-entropy over `/x0tta/gov/1`; repairs dropped gossip and brings late joiners up
    /// to date).
    pub sync_interval: Duration,
}

impl Default for DaoPolicy {
    fn default() -> Self {
        Self {
            discussion: Duration::from_secs(24 * 3600),
            voting: Duration::from_secs(48 * 3600),
            emergency_voting: Duration::from_secs(15 * 60),
            quorum: 0.51,
            emergency_quorum: 0.67,
            supermajority: 0.5,
            clock_skew: Duration::from_secs(5),
            proposal_fee: 1,
            slash_fraction: 0.5,
            max_propagation: Duration::from_secs(10),
            sync_interval: Duration::from_secs(5),
        }
    }
}

impl DaoPolicy {
    /// The quorum of a track.
    pub fn quorum_of(&self, track: Track) -> f64 {
        match track {
            Track::Standard => self.quorum,
            Track::Emergency => self.emergency_quorum,
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// What a voter signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteBody {
    /// The proposal (content id of its spec).
    pub proposal: ContentId,
    /// Who votes (must be the signer).
    pub voter: NodeId,
    /// Number of votes; costs `votes²` credits.
    pub votes: u32,
    /// For or against.
    pub support: bool,
    /// 0 for the first vote; an explicit revision replaces a lower one.
    pub revision: u32,
    /// When it was signed, ms since the epoch.
    pub signed_at: u64,
}

/// A vote in its signed envelope, as it travels.
pub type SignedVote = Envelope;

/// Signs `body` as a vote.
pub fn sign_vote(
    signer: &dyn Signer,
    body: &VoteBody,
) -> Result<SignedVote, x0tta_core::SignError> {
    let bytes = to_dag_cbor(body).map_err(|e| x0tta_core::SignError(e.to_string()))?;
    Envelope::seal(signer, contexts::VOTE, bytes)
}

/// Two different votes signed by one voter for one proposal at one revision: proof anyone can
/// check with the voter's public key ([`verify_evidence`]). Gossiped on `x0tta/evidence/1` as
/// DAG-CBOR, so nodes that saw only one of the two votes slash the voter too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The offender.
    pub voter: NodeId,
    /// The proposal.
    pub proposal: ContentId,
    /// The two conflicting signed votes.
    pub votes: [SignedVote; 2],
}

/// Why a vote was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The signature does not verify, or the signer is not the voter.
    Forged,
    /// The payload is not a vote.
    Malformed,
    /// The proposal is unknown here.
    UnknownProposal,
    /// The proposal is not in its voting period (signed or received outside it).
    NotVoting,
    /// The voter has no stake.
    NoStake,
    /// `votes²` exceeds the voter's credits.
    OverBudget {
        /// The cost.
        cost: u64,
        /// The credits.
        credits: u64,
    },
    /// A lower revision than the one already counted.
    Superseded,
    /// The voter equivocated on this proposal; none of their votes count.
    Equivocator,
    /// The voter already signed [`MAX_REVISIONS`] revisions of this vote.
    TooManyRevisions,
}

/// Revisions of one voter's vote on one proposal a ledger keeps; more are refused (each is
/// kept, and served to peers, so equivocation stays provable).
pub const MAX_REVISIONS: usize = 16;

/// What happened to a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoteResult {
    /// Counted (or replaced an earlier revision) at this cost.
    Counted {
        /// Credits it costs.
        cost: u64,
    },
    /// Already counted (a duplicate delivery).
    Duplicate,
    /// Refused.
    Refused(Refusal),
    /// Proof of equivocation: the voter is slashed and excluded from this tally.
    Equivocation(Box<Equivocation>),
}

/// What [`Ledger::accept_evidence`] did with gossiped evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceResult {
    /// Valid and new: the voter is slashed here now.
    Slashed,
    /// Valid, already known.
    Known,
    /// The proposal is unknown here (the evidence may arrive before it).
    UnknownProposal,
    /// Not a proof: a signature fails, the votes are not the voter's, or they agree.
    Invalid,
}

/// A proposal's phase at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before voting opens.
    Discussion,
    /// Votes are counted.
    Voting,
    /// Voting closed; the tally is final.
    Closed,
}

/// The count of a proposal's votes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Votes for (Σ n of supporters).
    pub votes_for: u64,
    /// Votes against.
    pub votes_against: u64,
    /// Stake of the voters counted.
    pub participating_stake: u64,
    /// Stake of every voter.
    pub total_stake: u64,
    /// Whether participation reached the track's quorum.
    pub quorum_reached: bool,
    /// Whether it passes: quorum, and for / (for + against) > supermajority.
    pub passed: bool,
}

/// The end of a proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The proposal.
    pub id: ContentId,
    /// Its final tally.
    pub tally: Tally,
    /// The policy it brings into force, if it passed and still applies.
    pub policy: Option<Policy>,
}

pub(crate) struct Entry {
    pub(crate) spec: ProposalSpec,
    /// The creator's signed envelope, when it came signed (served to peers that lack it).
    pub(crate) signed: Option<Envelope>,
    pub(crate) opened_at: u64,
    /// Every valid vote seen, per voter and revision: the highest revision counts. Keeping
    /// them all makes equivocation detectable whatever the arrival order.
    pub(crate) seen: BTreeMap<NodeId, BTreeMap<u32, (VoteBody, SignedVote)>>,
    pub(crate) equivocators: BTreeMap<NodeId, Equivocation>,
    pub(crate) closed: Option<Outcome>,
    /// Tally attestations (finality), per attester.
    pub(crate) attestations: crate::finality::Attestations,
}

/// The ledger of one node. Feed it proposals and signed votes as they arrive; ask it for
/// tallies and outcomes.
///
/// ```
/// # use std::collections::BTreeMap;
/// use x0tta_core::{NodeId, Policy, Signer};
/// use x0tta_dao::{DaoPolicy, Ledger, ProposalSpec, VoteBody, VoteResult, sign_vote};
/// use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};
/// let alice = MlDsa65Signer::new(NodeId::new("alice")?, MlDsa65Keypair::generate());
/// let stakes = BTreeMap::from([(NodeId::new("alice")?, 100u64)]);
/// let mut ledger = Ledger::new(DaoPolicy::default(), stakes, alice.verifier());
/// let spec = ProposalSpec::from_yaml(
///     "proposal_id: p\ntitle: t\nchanges: [{parameter: cpu_threshold, current: 90, proposed: 70}]\ncreator: alice\ntimestamp: 0\ntrack: emergency\n",
///     "p.yaml",
/// )?;
/// let id = ledger.submit(spec, &Policy::default(), 0)?;
/// let vote = VoteBody { proposal: id, voter: NodeId::new("alice")?, votes: 9, support: true, revision: 0, signed_at: 1 };
/// assert_eq!(ledger.vote(&sign_vote(&alice, &vote)?, 1), VoteResult::Counted { cost: 81 });
/// let outcome = ledger.close(&id, 15 * 60 * 1000 + 10_000).expect("voting is over");
/// assert!(outcome.tally.passed);
/// assert_eq!(outcome.policy.unwrap().thresholds.cpu_percent, 70.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Ledger<V> {
    policy: DaoPolicy,
    pub(crate) stakes: BTreeMap<NodeId, u64>,
    credits_spent_on_fees: BTreeMap<NodeId, u64>,
    pub(crate) verifier: V,
    pub(crate) proposals: BTreeMap<ContentId, Entry>,
    pub(crate) base_policy: BTreeMap<ContentId, Policy>,
    /// Proposals too old to vote on, waiting for proof of finality (anti-entropy).
    pub(crate) late: BTreeMap<ContentId, crate::sync::Late>,
    last_vote: Option<VoteBody>,
}

impl<V: Verifier> Ledger<V> {
    /// A ledger over `stakes` (voice credits = stake), verifying with `verifier`.
    pub fn new(policy: DaoPolicy, stakes: BTreeMap<NodeId, u64>, verifier: V) -> Self {
        Self {
            policy,
            stakes,
            credits_spent_on_fees: BTreeMap::new(),
            verifier,
            proposals: BTreeMap::new(),
            base_policy: BTreeMap::new(),
            late: BTreeMap::new(),
            last_vote: None,
        }
    }

    /// All stake (after any slashing).
    pub fn total_stake(&self) -> u64 {
        self.stakes.values().fold(0, |a, s| a.saturating_add(*s))
    }

    /// The vote counted last, by anyone.
    pub fn last_vote(&self) -> Option<&VoteBody> {
        self.last_vote.as_ref()
    }

    /// The governance settings.
    pub fn policy(&self) -> &DaoPolicy {
        &self.policy
    }

    /// The verifier votes and proposals are checked with.
    pub fn verifier(&self) -> &V {
        &self.verifier
    }

    /// A voter's stake now (after any slashing).
    pub fn stake(&self, node: &NodeId) -> u64 {
        self.stakes.get(node).copied().unwrap_or(0)
    }

    /// A voter's voice credits for one proposal: stake minus proposal fees paid.
    pub fn credits(&self, node: &NodeId) -> u64 {
        self.stake(node)
            .saturating_sub(self.credits_spent_on_fees.get(node).copied().unwrap_or(0))
    }

    /// Opens a proposal written against `live`; the creator pays the fee. Returns its id.
    pub fn submit(
        &mut self,
        spec: ProposalSpec,
        live: &Policy,
        now: u64,
    ) -> Result<ContentId, ProposalError> {
        let skew = ms(self.policy.clock_skew);
        let opened_at = match spec.opened_at {
            None => now,
            Some(t)
                if t <= now.saturating_add(skew)
                    && t.saturating_add(skew)
                        .saturating_add(ms(self.policy.max_propagation))
                        >= now =>
            {
                t
            }
            Some(t) => return Err(ProposalError::OpenedAt { opened_at: t, now }),
        };
        // After the opening check: a proposal too old to vote on is told apart (a late joiner
        // may still take it with proof of finality) even when a later decision superseded it.
        spec.apply_to(live)?; // refuses stale, unknown or out-of-range changes now
        let fee = self.policy.proposal_fee;
        let credits = self.credits(&spec.creator);
        if credits < fee {
            return Err(ProposalError::InsufficientCredits { credits, fee });
        }
        let id = ContentId::of(&spec).map_err(|e| ProposalError::Invalid(e.to_string()))?;
        if self.proposals.contains_key(&id) {
            return Ok(id); // the same proposal again (gossip duplicate)
        }
        self.charge_fee(&spec.creator);
        self.insert_entry(id, spec, opened_at, live.clone());
        Ok(id)
    }

    pub(crate) fn charge_fee(&mut self, creator: &NodeId) {
        *self
            .credits_spent_on_fees
            .entry(creator.clone())
            .or_default() += self.policy.proposal_fee;
    }

    pub(crate) fn insert_entry(
        &mut self,
        id: ContentId,
        spec: ProposalSpec,
        opened_at: u64,
        base: Policy,
    ) {
        self.base_policy.insert(id, base);
        self.proposals.insert(
            id,
            Entry {
                spec,
                signed: None,
                opened_at,
                seen: BTreeMap::new(),
                equivocators: BTreeMap::new(),
                closed: None,
                attestations: Default::default(),
            },
        );
    }

    pub(crate) fn remove_entry(&mut self, id: &ContentId) {
        self.base_policy.remove(id);
        self.proposals.remove(id);
    }

    fn window(&self, e: &Entry) -> (u64, u64) {
        let (discussion, voting) = match e.spec.track {
            Track::Standard => (self.policy.discussion, self.policy.voting),
            Track::Emergency => (Duration::ZERO, self.policy.emergency_voting),
        };
        let start = e.opened_at.saturating_add(ms(discussion));
        (start, start.saturating_add(ms(voting)))
    }

    /// A proposal's phase at `now`.
    pub fn phase(&self, id: &ContentId, now: u64) -> Option<Phase> {
        let e = self.proposals.get(id)?;
        let (start, end) = self.window(e);
        Some(
            if e.closed.is_some() || now > end.saturating_add(ms(self.policy.clock_skew)) {
                Phase::Closed
            } else if now < start {
                Phase::Discussion
            } else {
                Phase::Voting
            },
        )
    }

    /// Verifies and counts a signed vote received at `now`.
    pub fn vote(&mut self, signed: &SignedVote, now: u64) -> VoteResult {
        let Ok(bytes) = signed.open(&self.verifier, contexts::VOTE) else {
            return VoteResult::Refused(Refusal::Forged);
        };
        let Ok(body) = from_dag_cbor::<VoteBody>(bytes) else {
            return VoteResult::Refused(Refusal::Malformed);
        };
        if signed.signature.signer != body.voter {
            return VoteResult::Refused(Refusal::Forged);
        }
        let skew = ms(self.policy.clock_skew);
        let credits = self.credits(&body.voter);
        let stake = self.stake(&body.voter);
        let Some(e) = self.proposals.get(&body.proposal) else {
            return VoteResult::Refused(Refusal::UnknownProposal);
        };
        let (start, end) = self.window(e);
        let in_window = |t: u64| t.saturating_add(skew) >= start && t <= end.saturating_add(skew);
        if e.closed.is_some() || !in_window(body.signed_at) || !in_window(now) {
            return VoteResult::Refused(Refusal::NotVoting);
        }
        if e.equivocators.contains_key(&body.voter) {
            return VoteResult::Refused(Refusal::Equivocator);
        }
        if stake == 0 {
            return VoteResult::Refused(Refusal::NoStake);
        }
        let cost = u64::from(body.votes).saturating_mul(u64::from(body.votes));
        if cost > credits {
            return VoteResult::Refused(Refusal::OverBudget { cost, credits });
        }
        let Some(e) = self.proposals.get_mut(&body.proposal) else {
            return VoteResult::Refused(Refusal::UnknownProposal);
        };
        let revisions = e.seen.entry(body.voter.clone()).or_default();
        if revisions.len() >= MAX_REVISIONS && !revisions.contains_key(&body.revision) {
            return VoteResult::Refused(Refusal::TooManyRevisions);
        }
        if let Some((held, held_signed)) = revisions.get(&body.revision) {
            if *held == body {
                return VoteResult::Duplicate;
            }
            // Same revision, different content: equivocation. Slashed once per proposal.
            let evidence = Equivocation {
                voter: body.voter.clone(),
                proposal: body.proposal,
                votes: [held_signed.clone(), signed.clone()],
            };
            self.slash(&evidence);
            return VoteResult::Equivocation(Box::new(evidence));
        }
        let newest = revisions.keys().next_back().copied();
        revisions.insert(body.revision, (body.clone(), signed.clone()));
        if newest.is_some_and(|r| r > body.revision) {
            VoteResult::Refused(Refusal::Superseded)
        } else {
            self.last_vote = Some(body);
            VoteResult::Counted { cost }
        }
    }

    /// Records proven equivocation: the voter's votes on the proposal stop counting and its
    /// stake loses the policy's slash fraction (once per proposal).
    fn slash(&mut self, evidence: &Equivocation) -> bool {
        let Some(e) = self.proposals.get_mut(&evidence.proposal) else {
            return false;
        };
        if e.equivocators.contains_key(&evidence.voter) {
            return false;
        }
        e.equivocators
            .insert(evidence.voter.clone(), evidence.clone());
        let fraction = self.policy.slash_fraction.clamp(0.0, 1.0);
        if let Some(s) = self.stakes.get_mut(&evidence.voter) {
            let slashed = (*s as f64 * fraction).ceil() as u64;
            *s = s.saturating_sub(slashed);
        }
        true
    }

    /// Takes equivocation evidence a peer gossiped: verified ([`verify_evidence`]) before
    /// anything changes, then the voter is slashed as if this node had seen both votes. Valid
    /// whenever it arrives (evidence is not bound to the voting window).
    pub fn accept_evidence(&mut self, evidence: &Equivocation) -> EvidenceResult {
        if !verify_evidence(&self.verifier, evidence) {
            return EvidenceResult::Invalid;
        }
        let Some(e) = self.proposals.get(&evidence.proposal) else {
            return EvidenceResult::UnknownProposal;
        };
        if e.equivocators.contains_key(&evidence.voter) {
            return EvidenceResult::Known;
        }
        self.slash(evidence);
        EvidenceResult::Slashed
    }

    /// Every voter proven to have equivocated, with one proof each.
    pub fn equivocations(&self) -> Vec<Equivocation> {
        let mut out: BTreeMap<&NodeId, &Equivocation> = BTreeMap::new();
        for e in self.proposals.values() {
            for (voter, ev) in &e.equivocators {
                out.entry(voter).or_insert(ev);
            }
        }
        out.into_values().cloned().collect()
    }

    /// The current count of a proposal.
    pub fn tally(&self, id: &ContentId) -> Option<Tally> {
        let e = self.proposals.get(id)?;
        let total_stake: u64 = self.stakes.values().sum();
        let mut t = Tally {
            votes_for: 0,
            votes_against: 0,
            participating_stake: 0,
            total_stake,
            quorum_reached: false,
            passed: false,
        };
        let counted = e
            .seen
            .iter()
            .filter(|(voter, _)| !e.equivocators.contains_key(*voter))
            .filter_map(|(voter, revs)| revs.values().next_back().map(|(body, _)| (voter, body)));
        for (voter, body) in counted {
            t.participating_stake += self.stake(voter);
            if body.support {
                t.votes_for += u64::from(body.votes);
            } else {
                t.votes_against += u64::from(body.votes);
            }
        }
        let quorum = self.policy.quorum_of(e.spec.track);
        t.quorum_reached =
            total_stake > 0 && t.participating_stake as f64 / total_stake as f64 >= quorum;
        let cast = t.votes_for + t.votes_against;
        t.passed = t.quorum_reached
            && cast > 0
            && t.votes_for as f64 / cast as f64 > self.policy.supermajority;
        Some(t)
    }

    /// Closes a proposal once its voting period (plus skew) is over: the final tally and, if
    /// it passed, the policy it brings into force. `None` while voting is still open.
    pub fn close(&mut self, id: &ContentId, now: u64) -> Option<Outcome> {
        let e = self.proposals.get(id)?;
        if let Some(done) = &e.closed {
            return Some(done.clone());
        }
        let (_, end) = self.window(e);
        if now <= end.saturating_add(ms(self.policy.clock_skew)) {
            return None;
        }
        let tally = self.tally(id)?;
        let policy = if tally.passed {
            self.policy_of(id)
        } else {
            None
        };
        let outcome = Outcome {
            id: *id,
            tally,
            policy,
        };
        if let Some(e) = self.proposals.get_mut(id) {
            e.closed = Some(outcome.clone());
        }
        Some(outcome)
    }

    /// The policy a proposal brings into force if it passes (`None` for one without changes,
    /// or whose changes no longer apply).
    pub fn policy_of(&self, id: &ContentId) -> Option<Policy> {
        let e = self.proposals.get(id)?;
        if e.spec.changes.is_empty() {
            return None;
        }
        self.base_policy
            .get(id)
            .and_then(|base| e.spec.apply_to(base).ok())
    }

    /// Proposals not closed yet.
    pub fn open_proposals(&self) -> Vec<ContentId> {
        self.proposals
            .iter()
            .filter(|(_, e)| e.closed.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Number of proposals held.
    pub fn proposal_count(&self) -> usize {
        self.proposals.len()
    }

    /// Every proposal held, the most recently opened first.
    pub fn proposals(&self) -> Vec<ContentId> {
        let mut all: Vec<(&ContentId, u64)> = self
            .proposals
            .iter()
            .map(|(id, e)| (id, e.opened_at))
            .collect();
        all.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        all.into_iter().map(|(id, _)| *id).collect()
    }

    /// When a proposal opened (ms since the epoch; the creator's signed opening time).
    pub fn opened_at(&self, id: &ContentId) -> Option<u64> {
        self.proposals.get(id).map(|e| e.opened_at)
    }

    /// A proposal's spec.
    pub fn spec(&self, id: &ContentId) -> Option<&ProposalSpec> {
        self.proposals.get(id).map(|e| &e.spec)
    }

    /// The live policy a proposal was written against.
    pub fn base_policy(&self, id: &ContentId) -> Option<&Policy> {
        self.base_policy.get(id)
    }

    /// The outcome, once closed.
    pub fn outcome(&self, id: &ContentId) -> Option<&Outcome> {
        self.proposals.get(id).and_then(|e| e.closed.as_ref())
    }

    /// Equivocation evidence gathered on a proposal.
    pub fn evidence(&self, id: &ContentId) -> Vec<Equivocation> {
        self.proposals
            .get(id)
            .map(|e| e.equivocators.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Checks equivocation evidence received from a peer: both votes verify, come from the named
/// voter, name the same proposal and revision, and differ.
pub fn verify_evidence(verifier: &dyn Verifier, ev: &Equivocation) -> bool {
    let open = |s: &SignedVote| -> Option<VoteBody> {
        let b = s.open(verifier, contexts::VOTE).ok()?;
        let body: VoteBody = from_dag_cbor(b).ok()?;
        (s.signature.signer == body.voter).then_some(body)
    };
    match (open(&ev.votes[0]), open(&ev.votes[1])) {
        (Some(a), Some(b)) => {
            a.voter == ev.voter
                && b.voter == ev.voter
                && a.proposal == ev.proposal
                && b.proposal == ev.proposal
                && a.revision == b.revision
                && a != b
        }
        _ => false,
    }
}
