//! Governance anti-entropy over `/x0tta/gov/1`. Gossip is best effort: a frame dropped under a
//! burst, a partition during voting or a node that joins late leaves a ledger short of
//! proposals, votes, attestations or evidence, and its tally then differs from its peers'.
//! So each node regularly asks one live neighbour for what it lacks:
//!
//! 1. The requester sends a [`GovDigest`]: for every proposal it holds, short salted digests
//!    of the signed items it holds (votes, tally attestations, evidence per voter), and whether
//!    its voting is closed there.
//! 2. The responder answers with a [`GovDelta`]: the signed proposal envelopes the requester
//!    lacks, then the items it lacks, up to [`REPLY_BUDGET`] bytes (`more` says another round
//!    would bring more). Votes of proposals the requester has closed are not sent: it would
//!    refuse them.
//! 3. The requester verifies and counts everything exactly as if it had come by gossip.
//!
//! Digests are 64-bit truncated SHA-256 under a salt the requester draws per request, so no
//! peer can craft an item that hides behind another. Nothing in a delta is trusted: every
//! envelope is verified before it counts.
//!
//! A proposal opened longer ago than the propagation bound ([`DaoPolicy::max_propagation`])
//! is not open to votes here (its creator might have backdated it); a late joiner still takes
//! it once attestations from more than 2/3 of the stake prove its final tally
//! ([`Ledger::admit_final`]), and then applies the decision like everyone else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x0tta_core::{
    ContentId, Envelope, MAX_MESSAGE_BYTES, Policy, Verifier, contexts, from_dag_cbor,
};

use crate::finality::{ByAttester, SignedAttestation, leading};
use crate::ledger::{Entry, Equivocation, Ledger, Outcome, SignedVote, Tally};
use crate::proposal::{ProposalError, ProposalSpec};
use crate::{FinalTally, TallyAttestation};

/// The request-response protocol of governance anti-entropy.
pub const GOV_PROTOCOL: &str = x0tta_core::protocols::GOV;
/// Bytes of signed items one reply carries at most (half the transport's message limit).
pub const REPLY_BUDGET: usize = MAX_MESSAGE_BYTES / 2;
/// Proposals one digest lists at most (the newest first); a responder reads no more.
pub const MAX_LISTED: usize = 10_000;
/// Item digests one request carries at most (about 450 KiB); older proposals beyond it are
/// left out.
pub const MAX_DIGEST_ITEMS: usize = 50_000;
/// Proposals too old to vote on that may wait for their proof of finality at once.
pub const MAX_LATE: usize = 64;

/// A proposal too old to vote on, waiting for attestations from more than 2/3 of the stake.
pub(crate) struct Late {
    signed: Envelope,
    spec: ProposalSpec,
    opened_at: u64,
    /// Verified attestations, per attester.
    attestations: ByAttester,
}

/// What a requester holds: sent on `/x0tta/gov/1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovDigest {
    /// Salt of every digest in this request.
    pub salt: u64,
    /// The proposals held, with their items.
    pub proposals: Vec<Held>,
}

/// One proposal a requester holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The proposal.
    pub proposal: ContentId,
    /// Voting is closed at the requester (votes would be refused).
    pub closed: bool,
    /// Salted short digests of the votes, attestations and evidence held.
    pub items: Vec<u64>,
}

/// What a responder sends back: signed items the requester lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovDelta {
    /// Signed proposals (under `contexts::PROPOSAL`), before anything that refers to them.
    pub proposals: Vec<Envelope>,
    /// Signed votes.
    pub votes: Vec<SignedVote>,
    /// Signed tally attestations.
    pub attestations: Vec<SignedAttestation>,
    /// Equivocation evidence.
    pub evidence: Vec<Equivocation>,
    /// The budget ran out: another round brings more.
    pub more: bool,
}

impl GovDelta {
    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.proposals.is_empty()
            && self.votes.is_empty()
            && self.attestations.is_empty()
            && self.evidence.is_empty()
    }
}

fn short(salt: u64, tag: &[u8], bytes: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(salt.to_le_bytes());
    h.update((tag.len() as u64).to_le_bytes());
    h.update(tag);
    h.update(bytes);
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// An envelope's key: its signer and signed payload. Two signatures over one payload are the
/// same item to a ledger (a duplicate), and the payload is a fraction of the signature's size.
fn signed_key(salt: u64, env: &Envelope) -> u64 {
    short(salt, env.signature.signer.as_str().as_bytes(), &env.payload)
}

fn evidence_key(salt: u64, ev: &Equivocation) -> u64 {
    short(salt, b"evidence", ev.voter.as_str().as_bytes())
}

/// Wire size of an envelope, near enough for a budget.
fn size(env: &Envelope) -> usize {
    env.payload.len() + env.signature.bytes.len() + env.signature.signer.as_str().len() + 32
}

/// Fills a delta up to a byte budget; the first item always goes in, so every round moves.
struct Filler {
    delta: GovDelta,
    used: usize,
    budget: usize,
}

impl Filler {
    /// Adds `item` of `bytes` to the list `list` picks, unless the budget is spent.
    fn put<T: Clone>(
        &mut self,
        bytes: usize,
        item: &T,
        list: fn(&mut GovDelta) -> &mut Vec<T>,
    ) -> bool {
        if self.used > 0 && self.used + bytes > self.budget {
            self.delta.more = true;
            return false;
        }
        self.used += bytes;
        list(&mut self.delta).push(item.clone());
        true
    }
}

impl Entry {
    fn items(&self) -> impl Iterator<Item = &SignedVote> {
        self.seen
            .values()
            .flat_map(|revs| revs.values().map(|(_, signed)| signed))
    }
}

impl<V: Verifier> Ledger<V> {
    /// Opens a proposal from its signed envelope (under `contexts::PROPOSAL`): the signature
    /// is checked and the signer must be the creator before [`Ledger::submit`] sees it. The
    /// envelope is kept, so the proposal can be served to peers that lack it.
    pub fn submit_signed(
        &mut self,
        signed: &Envelope,
        live: &Policy,
        now: u64,
    ) -> Result<ContentId, ProposalError> {
        // A proposal held already (a gossip or sync duplicate) changes nothing: skip the
        // signature check. Nothing of an unverified envelope is kept.
        if let Ok(spec) = from_dag_cbor::<ProposalSpec>(&signed.payload)
            && let Ok(id) = ContentId::of(&spec)
            && self.proposals.contains_key(&id)
        {
            return Ok(id);
        }
        let spec = self.open_proposal(signed)?;
        let id = self.submit(spec, live, now)?;
        if let Some(e) = self.proposals.get_mut(&id) {
            e.signed.get_or_insert_with(|| signed.clone());
        }
        Ok(id)
    }

    fn open_proposal(&self, signed: &Envelope) -> Result<ProposalSpec, ProposalError> {
        let bytes = signed
            .open(&self.verifier, contexts::PROPOSAL)
            .map_err(|e| ProposalError::Forged(e.to_string()))?;
        let spec: ProposalSpec =
            from_dag_cbor(bytes).map_err(|e| ProposalError::Invalid(e.to_string()))?;
        if spec.creator != signed.signature.signer {
            return Err(ProposalError::Forged(format!(
                "signed by {}, not by its creator {}",
                signed.signature.signer, spec.creator
            )));
        }
        Ok(spec)
    }

    /// Takes a proposal too old to be opened here ([`ProposalError::OpenedAt`]) once it is
    /// proven final: attestations from more than 2/3 of the stake that agree on one tally.
    /// Until then the proposal waits aside (never open to votes), with the attestations of
    /// it verified so far; more arrive through [`Ledger::late_attestations`] (a proof larger
    /// than one sync reply is gathered over several). Once proven, it is held closed with that
    /// tally; a passed one's policy is [`Ledger::policy_of`] it, unless its changes no longer
    /// apply to `live` (a decision superseded since: nothing to put in force).
    pub fn admit_final(
        &mut self,
        signed: &Envelope,
        attestations: &[SignedAttestation],
        live: &Policy,
    ) -> Result<FinalTally, ProposalError> {
        let spec = self.open_proposal(signed)?;
        let id = ContentId::of(&spec).map_err(|e| ProposalError::Invalid(e.to_string()))?;
        if let Some(f) = self.finality(&id) {
            return Ok(f.clone());
        }
        if self.proposals.contains_key(&id) {
            return Err(ProposalError::Invalid(
                "the proposal is already held here and not final yet".into(),
            ));
        }
        if !self.late.contains_key(&id) {
            if self.late.len() >= MAX_LATE {
                return Err(ProposalError::Invalid(format!(
                    "{MAX_LATE} late proposals already await proof"
                )));
            }
            let opened_at = spec.opened_at.unwrap_or(spec.timestamp);
            self.late.insert(
                id,
                Late {
                    signed: signed.clone(),
                    spec,
                    opened_at,
                    attestations: BTreeMap::new(),
                },
            );
        }
        self.feed_late(&id, attestations, live)
    }

    /// Adds attestations to the late proposals they are about ([`Ledger::admit_final`]);
    /// returns the tallies of those now proven final.
    pub fn late_attestations(
        &mut self,
        attestations: &[SignedAttestation],
        live: &Policy,
    ) -> Vec<FinalTally> {
        if self.late.is_empty() {
            return Vec::new();
        }
        let about: BTreeSet<ContentId> = attestations
            .iter()
            .filter_map(|a| from_dag_cbor::<TallyAttestation>(&a.payload).ok())
            .map(|b| b.proposal)
            .filter(|p| self.late.contains_key(p))
            .collect();
        about
            .into_iter()
            .filter_map(|id| self.feed_late(&id, attestations, live).ok())
            .collect()
    }

    fn feed_late(
        &mut self,
        id: &ContentId,
        attestations: &[SignedAttestation],
        live: &Policy,
    ) -> Result<FinalTally, ProposalError> {
        let total: u64 = self.stakes.values().sum();
        let Some(late) = self.late.get_mut(id) else {
            return Err(ProposalError::Invalid("not a late proposal".into()));
        };
        for a in attestations {
            // Cheap checks first: only this proposal's, new attesters with stake, then the
            // signature.
            let Ok(body) = from_dag_cbor::<TallyAttestation>(&a.payload) else {
                continue;
            };
            if body.proposal != *id
                || body.attester != a.signature.signer
                || late.attestations.contains_key(&body.attester)
                || self.stakes.get(&body.attester).copied().unwrap_or(0) == 0
                || a.open(&self.verifier, contexts::TALLY).is_err()
            {
                continue;
            }
            late.attestations
                .insert(body.attester.clone(), (body, a.clone()));
        }
        let leading = leading(&late.attestations, &self.stakes).map_or(0, |(_, s)| s);
        if u128::from(leading) * 3 <= u128::from(total) * 2 {
            return Err(ProposalError::Unproven {
                attesting_stake: leading,
                total_stake: total,
            });
        }
        let Some(late) = self.late.remove(id) else {
            return Err(ProposalError::Invalid("not a late proposal".into()));
        };
        self.insert_entry(*id, late.spec, late.opened_at, live.clone());
        for (_, a) in late.attestations.values() {
            self.attest(a);
        }
        let Some(f) = self.finality(id).cloned() else {
            self.remove_entry(id);
            return Err(ProposalError::Invalid("attestations disagree".into()));
        };
        let quorum = self.proposals.get(id).map_or(self.policy().quorum, |e| {
            self.policy().quorum_of(e.spec.track)
        });
        let tally = Tally {
            votes_for: f.votes_for,
            votes_against: f.votes_against,
            participating_stake: f.participating_stake,
            total_stake: f.total_stake,
            quorum_reached: f.total_stake > 0
                && f.participating_stake as f64 / f.total_stake as f64 >= quorum,
            passed: f.passed,
        };
        self.charge_fee(&late.signed.signature.signer);
        let policy = if f.passed { self.policy_of(id) } else { None };
        if let Some(e) = self.proposals.get_mut(id) {
            e.signed = Some(late.signed);
            e.closed = Some(Outcome {
                id: *id,
                tally,
                policy,
            });
        }
        Ok(f)
    }

    /// What this ledger holds, for a `/x0tta/gov/1` request under `salt`: the newest
    /// [`MAX_LISTED`] proposals.
    pub fn digest(&self, salt: u64) -> GovDigest {
        let mut entries: Vec<(&ContentId, &Entry)> = self.proposals.iter().collect();
        entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.opened_at));
        entries.truncate(MAX_LISTED);
        // Late proposals awaiting proof: held, closed to votes, with the attestations so far.
        let mut proposals: Vec<Held> = self
            .late
            .iter()
            .map(|(id, l)| Held {
                proposal: *id,
                closed: true,
                items: l
                    .attestations
                    .values()
                    .map(|(_, a)| signed_key(salt, a))
                    .collect(),
            })
            .collect();
        let mut listed: usize = proposals.iter().map(|h| h.items.len()).sum();
        for (id, e) in entries {
            // The equivocators' votes count as held: this ledger refuses them, so a peer
            // must not send them again every round.
            let items: Vec<u64> = e
                .items()
                .chain(e.attestations.signed())
                .chain(e.equivocators.values().flat_map(|ev| ev.votes.iter()))
                .map(|s| signed_key(salt, s))
                .chain(e.equivocators.values().map(|ev| evidence_key(salt, ev)))
                .collect();
            listed += items.len() + 1;
            if listed > MAX_DIGEST_ITEMS {
                break;
            }
            proposals.push(Held {
                proposal: *id,
                closed: e.closed.is_some(),
                items,
            });
        }
        GovDigest { salt, proposals }
    }

    /// The signed items a peer that sent `theirs` lacks, up to `budget` bytes (at least one
    /// item when there is any).
    pub fn delta(&self, theirs: &GovDigest, budget: usize) -> GovDelta {
        let salt = theirs.salt;
        let held: HashMap<&ContentId, (bool, HashSet<u64>)> = theirs
            .proposals
            .iter()
            .take(MAX_LISTED)
            .map(|h| (&h.proposal, (h.closed, h.items.iter().copied().collect())))
            .collect();
        let mut f = Filler {
            delta: GovDelta::default(),
            used: 0,
            budget,
        };
        let empty = HashSet::new();
        for (id, e) in &self.proposals {
            let (closed, items) = match held.get(id) {
                Some((closed, items)) => (*closed, items),
                None => {
                    // A proposal they lack: useless to them without its signed envelope.
                    let Some(signed) = &e.signed else { continue };
                    if !f.put(size(signed), signed, |d| &mut d.proposals) {
                        return f.delta;
                    }
                    (e.closed.is_some(), &empty)
                }
            };
            // Attestations first: a late joiner takes a closed proposal on their proof alone.
            for a in e.attestations.signed() {
                if !items.contains(&signed_key(salt, a))
                    && !f.put(size(a), a, |d| &mut d.attestations)
                {
                    return f.delta;
                }
            }
            // Votes only while the peer still counts them.
            for v in e.items().filter(|_| !closed) {
                if !items.contains(&signed_key(salt, v)) && !f.put(size(v), v, |d| &mut d.votes) {
                    return f.delta;
                }
            }
            for ev in e.equivocators.values() {
                let bytes = size(&ev.votes[0]) + size(&ev.votes[1]);
                if !items.contains(&evidence_key(salt, ev))
                    && !f.put(bytes, ev, |d| &mut d.evidence)
                {
                    return f.delta;
                }
            }
        }
        f.delta
    }
}
