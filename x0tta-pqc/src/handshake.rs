//! The post-quantum authentication exchange of `/x0tta/pq/1.0.0`, sans I/O.
//!
//! It runs inside a TLS 1.3 channel (X25519MLKEM768 key exchange) whose peers are already
//! authenticated classically (Ed25519, libp2p-tls). It authenticates both peers again with
//! post-quantum keys, KEMTLS-style: each side proves it can decapsulate a fresh ML-KEM-768
//! challenge sent to the static key its identity record names, and the proof is bound to that
//! very channel through the TLS exporter `E` (RFC 8446 §7.5, label [`EXPORTER_LABEL`], 32
//! bytes). No signature is made during the exchange: the record was signed (ML-DSA-65 and
//! Ed25519) once, when it was issued.
//!
//! Both sides send one message per round, at the same time:
//!
//! ```text
//!   round 1  { record: own identity record, challenge?: { record: digest, ct } }
//!            (a challenge when a record of the peer is cached: ct = Encaps(cached ek))
//!   round 2  { proof?: answer to the peer's round-1 challenge,
//!              challenge?: when no valid round-1 challenge was made, one to the record
//!                          just received (verified: both signatures, PeerId, trust) }
//!   round 3  { proof?: answer to the peer's round-2 challenge }   (only if either side
//!                                                                  challenged in round 2)
//!   proof = SHA3-256("x0tta/pq-kem-proof/1" ‖ ss ‖ role ‖ E ‖ H(messages of rounds < this one))
//! ```
//!
//! Steady state (both records cached) takes two rounds, the same one round trip as the TLS
//! finish; first contact takes three. The verifier accepts a proof only for a challenge it
//! made, and a record only if it names the PeerId TLS authenticated, keeps the ML-DSA key of
//! any record cached for that peer (no silent PQ key change), and matches the pinned key when
//! trust is pinned. `role` differs between the two proofs, so one side's proof can never be
//! reflected back as the other's; the challenge is fresh per channel, so no proof replays.
//!
//! Every message is at most [`MAX_MESSAGE_LEN`] bytes; every refusal is a typed
//! [`HandshakeError`]. docs/SECURITY_MODEL.md explains the construction and threat model.

use libp2p_identity::PeerId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use x0tta_core::NodeId;

use crate::{
    IdentityError, IdentityRecord, KeyRing, MlKem768Ciphertext, NodeIdentity, SharedSecret,
};

/// The protocol name negotiated by multistream-select.
pub const PROTOCOL_NAME: &str = "/x0tta/pq/1.0.0";

/// Largest handshake message accepted or sent, in bytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// TLS exporter label the exchange binds to (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-x0tta-pq-auth-1";

const KEM_PROOF_DOMAIN: &[u8] = b"x0tta/pq-kem-proof/1";
const VERSION: u8 = 1;
const LAST_ROUND: u8 = 3;

/// Which end of the channel this side is (the TLS client initiates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialed the connection (TLS client).
    Initiator,
    /// Accepted it (TLS server).
    Responder,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Role::Initiator => b'I',
            Role::Responder => b'R',
        }
    }
    fn other(self) -> Self {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// How the peer proved its PQ identity. Both modes end with the same proof of possession of
/// the static ML-KEM-768 key; they differ in where the record naming that key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Its identity record was not cached: it was verified (ML-DSA-65 and Ed25519) during
    /// this exchange, then challenged. Three rounds.
    FirstContact,
    /// Its cached record was challenged in the first round. Two rounds, no signature
    /// verified.
    KemResumed,
}

/// The PQ authentication exchange was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A message exceeds [`MAX_MESSAGE_LEN`].
    #[error("handshake message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its announced or actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a message.
    #[error("handshake message truncated")]
    Truncated,
    /// A message does not decode, or breaks the exchange's rules.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// The peer speaks another version of the exchange.
    #[error("handshake version {0} is not supported (expected {VERSION})")]
    Version(u8),
    /// A message of another round than the current one (reordered, replayed or extra).
    #[error("handshake message of round {got} where round {expected} was due")]
    Round {
        /// The round due.
        expected: u8,
        /// The round the message claims.
        got: u8,
    },
    /// TLS negotiated a classical key exchange and policy requires the hybrid one.
    #[error("TLS negotiated the classical key exchange {group}; X25519MLKEM768 is required")]
    ClassicalKeyExchange {
        /// The group TLS agreed.
        group: String,
    },
    /// The peer sent a KEM proof for a challenge this side did not make, or not in the round
    /// it was due.
    #[error("peer sent a KEM proof without a challenge")]
    UnexpectedKemProof,
    /// The round in which the peer had to answer this side's challenge passed without a
    /// proof.
    #[error("peer did not answer the KEM challenge")]
    MissingProof,
    /// The KEM proof is wrong: the peer does not hold the ML-KEM key of its record, or the
    /// proof was made for another channel or transcript.
    #[error("KEM proof of possession does not verify")]
    BadKemProof,
    /// The peer's identity record is invalid.
    #[error("peer identity record refused: {0}")]
    Record(#[from] IdentityError),
    /// The record names another PeerId than the one TLS authenticated.
    #[error("identity record is for {record}, but the TLS peer is {tls}")]
    PeerIdMismatch {
        /// PeerId of the TLS certificate (base58).
        tls: String,
        /// PeerId of the record (base58).
        record: String,
    },
    /// The peer presents another ML-DSA-65 key than the one cached for it.
    #[error("peer {0} presents a different ML-DSA-65 key than the one on record")]
    IdentityChanged(NodeId),
    /// Trust is pinned and the peer's ML-DSA-65 key is not the pinned one.
    #[error("peer {0} is not trusted: its ML-DSA-65 key is not pinned")]
    Untrusted(NodeId),
}

/// One side's message of one round.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    v: u8,
    r: u8,
    /// The sender's identity record: round 1, always.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    record: Option<Vec<u8>>,
    /// A challenge to the receiver's static ML-KEM key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge: Option<Challenge>,
    /// The answer to the receiver's challenge of the previous round.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    proof: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    /// Digest of the record whose key was encapsulated to.
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ct: Vec<u8>,
}

/// What the verifier trusts on first contact.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Trust on first use: any valid record for the authenticated PeerId, then that record's
    /// ML-DSA key is held to (see [`HandshakeError::IdentityChanged`]).
    #[default]
    FirstUse,
    /// Only peers whose ML-DSA-65 key is in the ring.
    Pinned(KeyRing),
}

/// The verified outcome: who the peer is, and how it proved it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The peer's verified identity record.
    pub record: IdentityRecord,
    /// How it was proven.
    pub mode: AuthMode,
}

/// What to do after a peer message: send this side's next message, or stop.
#[derive(Debug)]
pub enum Step {
    /// Send this message, then read the peer's message of the same round.
    Send(Vec<u8>),
    /// The exchange is over and the peer is authenticated.
    Done(Authenticated),
}

/// A challenge this side made and the proof it waits for.
struct Outstanding {
    record: IdentityRecord,
    secret: SharedSecret,
    due: u8,
    mode: AuthMode,
}

/// One side of the exchange. Send the message [`Handshake::start`] returns, then for every
/// message read from the peer call [`Handshake::step`] and send what it returns, until it
/// returns [`Step::Done`]. Both sides send one message per round and always agree on the
/// number of rounds (two or three).
///
/// ```
/// use x0tta_pqc::handshake::{AuthMode, Handshake, Role, Step, Trust};
/// use x0tta_pqc::NodeIdentity;
///
/// let a = NodeIdentity::generate("spiffe://mesh/a".parse()?);
/// let b = NodeIdentity::generate("spiffe://mesh/b".parse()?);
/// let exporter = [7u8; 32]; // from the TLS channel both ends share
///
/// // An in-memory channel: both sides send, then both read, round after round.
/// let run = |a_cache, b_cache| -> Result<_, Box<dyn std::error::Error>> {
///     let (mut ha, mut to_b) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), a_cache, exporter);
///     let (mut hb, mut to_a) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), b_cache, exporter);
///     loop {
///         match (ha.step(&to_a, &Trust::FirstUse)?, hb.step(&to_b, &Trust::FirstUse)?) {
///             (Step::Send(x), Step::Send(y)) => (to_b, to_a) = (x, y),
///             (Step::Done(b_seen), Step::Done(a_seen)) => return Ok((b_seen, a_seen)),
///             _ => unreachable!("both sides agree on the rounds"),
///         }
///     }
/// };
///
/// // First contact: neither side has the other's record.
/// let (b_seen, a_seen) = run(None, None)?;
/// assert_eq!((b_seen.mode, &b_seen.record), (AuthMode::FirstContact, b.record()));
///
/// // Steady state: each side challenges the other's cached static ML-KEM key at once.
/// let (b_again, _) = run(Some(b_seen.record), Some(a_seen.record))?;
/// assert_eq!(b_again.mode, AuthMode::KemResumed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Handshake {
    role: Role,
    local: NodeIdentity,
    remote: PeerId,
    exporter: [u8; 32],
    /// The record held for the peer before the exchange (its ML-DSA key must not change).
    known: Option<IdentityRecord>,
    /// Round of the message this side sent last.
    round: u8,
    /// That message.
    sent: Vec<u8>,
    /// Over every message of the completed rounds, initiator's first.
    transcript: Sha3_256,
    /// The challenge this side made.
    challenge: Option<Outstanding>,
    /// Whether this side's message of the current round carries a challenge.
    challenging: bool,
    /// The secret of the peer's challenge, answered in the next round.
    to_answer: Option<SharedSecret>,
    /// Whether the peer already made its (one) challenge.
    challenged: bool,
    peer: Option<Authenticated>,
    done: bool,
}

impl Handshake {
    /// Starts the exchange with `remote` (the PeerId TLS authenticated) on the channel whose
    /// exporter is `exporter`; `cached` is the record held for the peer, if any, which is
    /// then challenged at once. Returns the round-1 message to send.
    pub fn start(
        role: Role,
        local: NodeIdentity,
        remote: PeerId,
        cached: Option<IdentityRecord>,
        exporter: [u8; 32],
    ) -> (Self, Vec<u8>) {
        let known = cached.filter(|r| r.peer_id() == remote);
        let (challenge, outstanding) = match &known {
            Some(record) => {
                let (challenge, secret) = challenge(record);
                let outstanding = Outstanding {
                    record: record.clone(),
                    secret,
                    due: 2,
                    mode: AuthMode::KemResumed,
                };
                (Some(challenge), Some(outstanding))
            }
            None => (None, None),
        };
        let challenging = challenge.is_some();
        let sent = encode(&Message {
            v: VERSION,
            r: 1,
            record: Some(local.record().to_bytes().to_vec()),
            challenge,
            proof: None,
        });
        let handshake = Self {
            role,
            local,
            remote,
            exporter,
            known,
            round: 1,
            sent: sent.clone(),
            transcript: Sha3_256::new(),
            challenge: outstanding,
            challenging,
            to_answer: None,
            challenged: false,
            peer: None,
            done: false,
        };
        (handshake, sent)
    }

    /// Takes the peer's message of the current round; returns this side's next message, or
    /// the authenticated peer once the exchange is over.
    pub fn step(&mut self, peer_msg: &[u8], trust: &Trust) -> Result<Step, HandshakeError> {
        if self.done {
            return Err(HandshakeError::Malformed(
                "message after the exchange ended".into(),
            ));
        }
        check_len(peer_msg.len())?;
        let msg: Message = decode(peer_msg)?;
        if msg.v != VERSION {
            return Err(HandshakeError::Version(msg.v));
        }
        if msg.r != self.round {
            return Err(HandshakeError::Round {
                expected: self.round,
                got: msg.r,
            });
        }
        let before: [u8; 32] = self.transcript.clone().finalize().into();

        // A proof answers this side's challenge, in the round it is due.
        let due = self.challenge.as_ref().is_some_and(|c| c.due == self.round);
        match (msg.proof, due) {
            (Some(mac), true) => {
                let Some(outstanding) = self.challenge.take() else {
                    return Err(HandshakeError::UnexpectedKemProof);
                };
                let expected = kem_mac(
                    &outstanding.secret,
                    self.role.other(),
                    &self.exporter,
                    &before,
                );
                if !constant_time_eq(&mac, &expected) {
                    return Err(HandshakeError::BadKemProof);
                }
                check_trust(trust, &outstanding.record)?;
                self.peer = Some(Authenticated {
                    record: outstanding.record,
                    mode: outstanding.mode,
                });
            }
            (Some(_), false) => return Err(HandshakeError::UnexpectedKemProof),
            (None, true) => return Err(HandshakeError::MissingProof),
            (None, false) => {}
        }

        // The peer's record, in round 1: challenge it next round unless it was just challenged.
        let mut next_challenge = None;
        match (self.round, msg.record) {
            (1, Some(bytes)) => {
                let current = self
                    .challenge
                    .as_ref()
                    .is_some_and(|c| c.record.to_bytes() == bytes.as_slice());
                if !current {
                    let record = self.accept_record(&bytes, trust)?;
                    let (challenge, secret) = challenge(&record);
                    next_challenge = Some(challenge);
                    self.challenge = Some(Outstanding {
                        record,
                        secret,
                        due: 3,
                        mode: AuthMode::FirstContact,
                    });
                }
            }
            (1, None) => {
                return Err(HandshakeError::Malformed(
                    "round 1 carries no identity record".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(HandshakeError::Malformed(
                    "identity record after round 1".into(),
                ));
            }
            (_, None) => {}
        }

        // The peer's challenge to this side, answered next round.
        let peer_challenges = msg.challenge.is_some();
        if let Some(c) = msg.challenge {
            let current = c.record.as_slice() == self.local.record().digest();
            match (self.round, current) {
                // Stale: the peer has this side's record now and challenges it in round 2.
                (1, false) => {}
                (1 | 2, true) if !self.challenged => {
                    let ct = MlKem768Ciphertext::from_bytes(&c.ct)
                        .map_err(|e| HandshakeError::Malformed(format!("challenge: {e}")))?;
                    self.to_answer = Some(self.local.ml_kem().decapsulate(&ct));
                    self.challenged = true;
                }
                _ => {
                    return Err(HandshakeError::Malformed(format!(
                        "unexpected challenge in round {}",
                        self.round
                    )));
                }
            }
        }

        absorb(&mut self.transcript, self.role, &self.sent, peer_msg);
        let more = match self.round {
            1 => true,
            2 => self.challenging || peer_challenges,
            _ => false,
        };
        if !more || self.round >= LAST_ROUND {
            self.done = true;
            return self
                .peer
                .take()
                .map(Step::Done)
                .ok_or(if self.challenge.is_some() {
                    HandshakeError::MissingProof
                } else {
                    HandshakeError::Malformed("the exchange ended without a challenge".into())
                });
        }
        let after: [u8; 32] = self.transcript.clone().finalize().into();
        let proof = self
            .to_answer
            .take()
            .map(|secret| kem_mac(&secret, self.role, &self.exporter, &after).to_vec());
        self.round += 1;
        self.challenging = next_challenge.is_some();
        self.sent = encode(&Message {
            v: VERSION,
            r: self.round,
            record: None,
            challenge: next_challenge,
            proof,
        });
        Ok(Step::Send(self.sent.clone()))
    }

    /// Decodes and checks a record the peer presents: both signatures, the PeerId TLS
    /// authenticated, the ML-DSA key of any cached record, the trust policy.
    fn accept_record(&self, bytes: &[u8], trust: &Trust) -> Result<IdentityRecord, HandshakeError> {
        let record = IdentityRecord::from_bytes(bytes)?;
        if record.peer_id() != self.remote {
            return Err(HandshakeError::PeerIdMismatch {
                tls: self.remote.to_base58(),
                record: record.peer_id().to_base58(),
            });
        }
        if let Some(known) = &self.known
            && known.ml_dsa() != record.ml_dsa()
        {
            return Err(HandshakeError::IdentityChanged(record.node_id().clone()));
        }
        check_trust(trust, &record)?;
        Ok(record)
    }
}

/// Encapsulates to `record`'s static key.
fn challenge(record: &IdentityRecord) -> (Challenge, SharedSecret) {
    let (ct, secret) = record.ml_kem().encapsulate();
    let challenge = Challenge {
        record: record.digest().to_vec(),
        ct: ct.as_bytes().to_vec(),
    };
    (challenge, secret)
}

/// Adds one round to the transcript: the initiator's message, then the responder's, each
/// length-prefixed.
fn absorb(transcript: &mut Sha3_256, role: Role, sent: &[u8], received: &[u8]) {
    let (init, resp) = match role {
        Role::Initiator => (sent, received),
        Role::Responder => (received, sent),
    };
    for msg in [init, resp] {
        transcript.update((msg.len() as u64).to_be_bytes());
        transcript.update(msg);
    }
}

fn check_trust(trust: &Trust, record: &IdentityRecord) -> Result<(), HandshakeError> {
    match trust {
        Trust::FirstUse => Ok(()),
        Trust::Pinned(ring) => match ring.get(record.node_id()) {
            Some(key) if key == record.ml_dsa() => Ok(()),
            _ => Err(HandshakeError::Untrusted(record.node_id().clone())),
        },
    }
}

fn check_len(len: usize) -> Result<(), HandshakeError> {
    if len > MAX_MESSAGE_LEN {
        return Err(HandshakeError::TooLarge {
            len,
            max: MAX_MESSAGE_LEN,
        });
    }
    Ok(())
}

/// The proof that `prover` recovered `secret` on the channel with `exporter`, after the
/// rounds hashed into `transcript`.
fn kem_mac(
    secret: &SharedSecret,
    prover: Role,
    exporter: &[u8; 32],
    transcript: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(KEM_PROOF_DOMAIN);
    h.update(secret.as_bytes());
    h.update([prover.tag()]);
    h.update(exporter);
    h.update(transcript);
    h.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of byte strings and integers always encode.
    serde_ipld_dagcbor::to_vec(value).unwrap_or_default()
}

fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, HandshakeError> {
    crate::identity::decode_canonical(bytes).map_err(HandshakeError::Malformed)
}

/// Decodes a handshake message the way [`Handshake`] does, without any keys: for fuzzing and
/// property tests of the decoder. Never panics; returns whether the bytes decoded.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    check_len(bytes.len()).is_ok() && decode::<Message>(bytes).is_ok()
}
