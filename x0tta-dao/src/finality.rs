//! Finality. When a proposal closes, each node signs the tally it computed from the votes it
//! holds — a tally attestation, under [`contexts::TALLY`] — and gossips it. The outcome is
//! **final** once attestations that agree on one tally come from more than 2/3 of the stake;
//! only then does a node act on it. Nodes that attest a tally other than the one this node
//! computed are reported ([`Ledger::disagreeing`]); a node that signs two different
//! attestations for one proposal has proven itself Byzantine ([`AttestationResult::Equivocation`])
//! and its attestations no longer count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use x0tta_core::{ContentId, Envelope, NodeId, SignError, Signer, Verifier, contexts};
use x0tta_core::{from_dag_cbor, to_dag_cbor};

use crate::{Ledger, Outcome, Tally};

/// What a node attests about a closed proposal: the tally it computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyAttestation {
    /// The proposal.
    pub proposal: ContentId,
    /// Who attests (must be the signer).
    pub attester: NodeId,
    /// Votes for.
    pub votes_for: u64,
    /// Votes against.
    pub votes_against: u64,
    /// Stake of the voters counted.
    pub participating_stake: u64,
    /// Whether it passed.
    pub passed: bool,
}

impl TallyAttestation {
    /// What `attester` attests for `outcome`.
    pub fn of(outcome: &Outcome, attester: NodeId) -> Self {
        Self {
            proposal: outcome.id,
            attester,
            votes_for: outcome.tally.votes_for,
            votes_against: outcome.tally.votes_against,
            participating_stake: outcome.tally.participating_stake,
            passed: outcome.tally.passed,
        }
    }

    fn key(&self) -> TallyKey {
        (
            self.votes_for,
            self.votes_against,
            self.participating_stake,
            self.passed,
        )
    }

    /// Whether it attests exactly `tally`.
    pub fn agrees_with(&self, tally: &Tally) -> bool {
        self.key()
            == (
                tally.votes_for,
                tally.votes_against,
                tally.participating_stake,
                tally.passed,
            )
    }
}

type TallyKey = (u64, u64, u64, bool);

/// Attestations by attester, as kept here and by late proposals awaiting proof.
pub(crate) type ByAttester = BTreeMap<NodeId, (TallyAttestation, SignedAttestation)>;

/// The tally attested by the most stake among `by`, with that stake.
pub(crate) fn leading(by: &ByAttester, stakes: &BTreeMap<NodeId, u64>) -> Option<(TallyKey, u64)> {
    let mut by_key: BTreeMap<TallyKey, u64> = BTreeMap::new();
    for (attester, (a, _)) in by {
        *by_key.entry(a.key()).or_default() += stakes.get(attester).copied().unwrap_or(0);
    }
    by_key.into_iter().max_by_key(|(_, s)| *s)
}

/// An attestation in its signed envelope, as it travels.
pub type SignedAttestation = Envelope;

/// Signs `body` as a tally attestation.
pub fn sign_attestation(
    signer: &dyn Signer,
    body: &TallyAttestation,
) -> Result<SignedAttestation, SignError> {
    let bytes = to_dag_cbor(body).map_err(|e| SignError(e.to_string()))?;
    Envelope::seal(signer, contexts::TALLY, bytes)
}

/// The tally more than 2/3 of the stake attested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalTally {
    /// The proposal.
    pub proposal: ContentId,
    /// Votes for.
    pub votes_for: u64,
    /// Votes against.
    pub votes_against: u64,
    /// Stake of the voters counted.
    pub participating_stake: u64,
    /// Whether it passed.
    pub passed: bool,
    /// Stake of the nodes that attested it when it became final.
    pub attesting_stake: u64,
    /// All stake then.
    pub total_stake: u64,
}

/// Why an attestation was not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationRefusal {
    /// The signature does not verify, or the signer is not the attester.
    Forged,
    /// The payload is not an attestation.
    Malformed,
    /// The proposal is unknown here.
    UnknownProposal,
    /// The attester has no stake.
    NoStake,
    /// The attester equivocated on this proposal; none of its attestations count.
    Equivocator,
}

/// What happened to an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttestationResult {
    /// Counted; `Some` when it made (or found) the outcome final.
    Counted(Option<FinalTally>),
    /// Already counted.
    Duplicate,
    /// Refused.
    Refused(AttestationRefusal),
    /// Two different attestations signed by one node for one proposal: both, as proof.
    Equivocation(Box<[SignedAttestation; 2]>),
}

/// The attestations of one proposal.
#[derive(Debug, Default)]
pub(crate) struct Attestations {
    by: ByAttester,
    equivocators: BTreeMap<NodeId, [SignedAttestation; 2]>,
    finalized: Option<FinalTally>,
}

impl Attestations {
    /// Every counted signed attestation.
    pub(crate) fn signed(&self) -> impl Iterator<Item = &SignedAttestation> {
        self.by.values().map(|(_, signed)| signed)
    }

    /// The tally attested by the most stake, with that stake.
    fn leading(&self, stakes: &BTreeMap<NodeId, u64>) -> Option<(TallyKey, u64)> {
        leading(&self.by, stakes)
    }
}

impl<V: Verifier> Ledger<V> {
    /// Counts a signed attestation: verified first (signature under [`contexts::TALLY`],
    /// signer = attester, a known proposal, an attester with stake). Returns the final tally
    /// once attestations agreeing on one tally come from more than 2/3 of the stake.
    pub fn attest(&mut self, signed: &SignedAttestation) -> AttestationResult {
        let Ok(bytes) = signed.open(&self.verifier, contexts::TALLY) else {
            return AttestationResult::Refused(AttestationRefusal::Forged);
        };
        let Ok(body) = from_dag_cbor::<TallyAttestation>(bytes) else {
            return AttestationResult::Refused(AttestationRefusal::Malformed);
        };
        if body.attester != signed.signature.signer {
            return AttestationResult::Refused(AttestationRefusal::Forged);
        }
        if self.stakes.get(&body.attester).copied().unwrap_or(0) == 0 {
            return AttestationResult::Refused(AttestationRefusal::NoStake);
        }
        let Some(entry) = self.proposals.get_mut(&body.proposal) else {
            return AttestationResult::Refused(AttestationRefusal::UnknownProposal);
        };
        let a = &mut entry.attestations;
        if a.equivocators.contains_key(&body.attester) {
            return AttestationResult::Refused(AttestationRefusal::Equivocator);
        }
        if let Some((held, first)) = a.by.get(&body.attester) {
            if *held == body {
                return AttestationResult::Duplicate;
            }
            let proof = [first.clone(), signed.clone()];
            a.equivocators.insert(body.attester.clone(), proof.clone());
            a.by.remove(&body.attester);
            return AttestationResult::Equivocation(Box::new(proof));
        }
        let proposal = body.proposal;
        a.by.insert(body.attester.clone(), (body, signed.clone()));
        AttestationResult::Counted(self.check_final(&proposal))
    }

    /// The final tally of a proposal, once there is one.
    pub fn finality(&self, id: &ContentId) -> Option<&FinalTally> {
        self.proposals
            .get(id)
            .and_then(|e| e.attestations.finalized.as_ref())
    }

    /// Nodes whose attestation for a closed proposal disagrees with the tally this node
    /// computed (Byzantine, or partitioned from some votes), with what they attested.
    pub fn disagreeing(&self, id: &ContentId) -> Vec<TallyAttestation> {
        let Some(e) = self.proposals.get(id) else {
            return Vec::new();
        };
        let Some(ours) = &e.closed else {
            return Vec::new();
        };
        e.attestations
            .by
            .values()
            .filter(|(a, _)| !a.agrees_with(&ours.tally))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Attesters proven to have signed two different attestations for a proposal.
    pub fn attestation_equivocators(&self, id: &ContentId) -> Vec<NodeId> {
        self.proposals
            .get(id)
            .map(|e| e.attestations.equivocators.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn check_final(&mut self, id: &ContentId) -> Option<FinalTally> {
        let total: u64 = self.stakes.values().sum();
        let stakes = &self.stakes;
        let e = self.proposals.get_mut(id)?;
        if let Some(done) = &e.attestations.finalized {
            return Some(done.clone());
        }
        let (key, stake) = e.attestations.leading(stakes)?;
        // More than 2/3: 3·stake > 2·total, in integers.
        if u128::from(stake) * 3 <= u128::from(total) * 2 {
            return None;
        }
        let f = FinalTally {
            proposal: *id,
            votes_for: key.0,
            votes_against: key.1,
            participating_stake: key.2,
            passed: key.3,
            attesting_stake: stake,
            total_stake: total,
        };
        e.attestations.finalized = Some(f.clone());
        Some(f)
    }
}
