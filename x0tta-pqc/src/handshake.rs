//! The post-quantum authentication exchange of `/x0tta/pq/1.0.0`, sans I/O.
//!
//! It runs inside a TLS 1.3 channel (X25519MLKEM768 key exchange) whose peers are already
//! authenticated classically (Ed25519, libp2p-tls). It binds PQ authentication to that very
//! channel through the TLS exporter `E` (RFC 8446 §7.5, label [`EXPORTER_LABEL`], 32 bytes):
//!
//! ```text
//!   each side sends  Hello { v: 1, challenge?: { record: digest(cached peer record),
//!                                                ct: ML-KEM-768.Encaps(cached peer ek) } }
//!   each side sends  Proof = Kem    { mac: SHA3-256("x0tta/pq-kem-proof/1" ‖ ss ‖ T) }
//!                          | Record { record, sig: ML-DSA-65.Sign(ctx "x0tta/pq-auth/1", T) }
//!   T = role ‖ E ‖ SHA3-256(initiator Hello) ‖ SHA3-256(responder Hello)
//! ```
//!
//! A side answers a challenge for its *current* record with a KEM proof (steady state: one
//! decapsulation, no signature); otherwise (no challenge, or one for an older record) it
//! sends its record and signs `T` (first contact). The verifier accepts a KEM proof only for
//! a challenge it made, and a record only if it names the PeerId TLS authenticated, keeps the
//! ML-DSA key of any record cached for that peer (no silent PQ key change), and matches the
//! pinned key when trust is pinned. `role` differs between the two proofs, so one side's
//! proof can never be reflected back as the other's.
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

/// FIPS 204 context of the first-contact signature over the transcript.
pub const AUTH_CONTEXT: &[u8] = b"x0tta/pq-auth/1";

const KEM_PROOF_DOMAIN: &[u8] = b"x0tta/pq-kem-proof/1";
const VERSION: u8 = 1;

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

/// How the peer proved its PQ identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// It sent its identity record and an ML-DSA-65 signature over the channel.
    FirstContact,
    /// It decapsulated a challenge to the static ML-KEM-768 key of its cached record.
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
    /// A message does not decode.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// The peer speaks another version of the exchange.
    #[error("handshake version {0} is not supported (expected {VERSION})")]
    Version(u8),
    /// TLS negotiated a classical key exchange and policy requires the hybrid one.
    #[error("TLS negotiated the classical key exchange {group}; X25519MLKEM768 is required")]
    ClassicalKeyExchange {
        /// The group TLS agreed.
        group: String,
    },
    /// The peer sent a KEM proof for a challenge this side did not make.
    #[error("peer sent a KEM proof without a challenge")]
    UnexpectedKemProof,
    /// The KEM proof is wrong: the peer does not hold the ML-KEM key of its cached record, or
    /// the proof was made for another channel.
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
    /// The first-contact signature over the channel does not verify.
    #[error("ML-DSA-65 signature over the channel does not verify")]
    BadSignature,
    /// Signing the transcript failed.
    #[error("cannot sign the transcript: {0}")]
    Sign(#[from] x0tta_core::SignError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    v: u8,
    challenge: Option<Challenge>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ct: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum Proof {
    Kem {
        #[serde(with = "serde_bytes")]
        mac: Vec<u8>,
    },
    Record {
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        #[serde(with = "serde_bytes")]
        sig: Vec<u8>,
    },
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

/// One side of the exchange. Feed it the peer's messages in order: [`Handshake::start`],
/// [`Handshake::respond`], [`Handshake::finish`].
///
/// ```
/// use x0tta_pqc::handshake::{AuthMode, Handshake, Role, Trust};
/// use x0tta_pqc::NodeIdentity;
///
/// let a = NodeIdentity::generate("spiffe://mesh/a".parse()?);
/// let b = NodeIdentity::generate("spiffe://mesh/b".parse()?);
/// let exporter = [7u8; 32]; // from the TLS channel both ends share
///
/// // First contact: neither side has the other's record.
/// let (mut ha, hello_a) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), None);
/// let (mut hb, hello_b) = Handshake::start(Role::Responder, b.clone(), a.peer_id(), None);
/// let proof_a = ha.respond(&hello_b, &exporter)?;
/// let proof_b = hb.respond(&hello_a, &exporter)?;
/// let b_seen = ha.finish(&proof_b, &Trust::FirstUse, None)?;
/// let a_seen = hb.finish(&proof_a, &Trust::FirstUse, None)?;
/// assert_eq!((b_seen.mode, &b_seen.record), (AuthMode::FirstContact, b.record()));
///
/// // Steady state: each side challenges the other's cached static ML-KEM key.
/// let (mut ha, hello_a) = Handshake::start(Role::Initiator, a, b.peer_id(), Some(b_seen.record.clone()));
/// let (mut hb, hello_b) = Handshake::start(Role::Responder, b, a_seen.record.peer_id(), Some(a_seen.record));
/// let proof_a = ha.respond(&hello_b, &exporter)?;
/// let proof_b = hb.respond(&hello_a, &exporter)?;
/// assert_eq!(ha.finish(&proof_b, &Trust::FirstUse, Some(&b_seen.record))?.mode, AuthMode::KemResumed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Handshake {
    role: Role,
    local: NodeIdentity,
    remote: PeerId,
    /// The cached record challenged, and the secret the peer must prove it recovers.
    challenged: Option<(IdentityRecord, SharedSecret)>,
    hello_hash: [u8; 32],
    /// `T` for the peer's proof, known once the peer's Hello arrived.
    peer_transcript: Option<Vec<u8>>,
}

impl Handshake {
    /// Starts the exchange with `remote` (the PeerId TLS authenticated); `cached` is the
    /// record held for it, if any, which is then challenged. Returns the Hello to send.
    pub fn start(
        role: Role,
        local: NodeIdentity,
        remote: PeerId,
        cached: Option<IdentityRecord>,
    ) -> (Self, Vec<u8>) {
        let cached = cached.filter(|r| r.peer_id() == remote);
        let (challenge, challenged) = match cached {
            Some(record) => {
                let (ct, ss) = record.ml_kem().encapsulate();
                let challenge = Challenge {
                    record: record.digest().to_vec(),
                    ct: ct.as_bytes().to_vec(),
                };
                (Some(challenge), Some((record, ss)))
            }
            None => (None, None),
        };
        let hello = encode(&Hello {
            v: VERSION,
            challenge,
        });
        let handshake = Self {
            role,
            local,
            remote,
            challenged,
            hello_hash: Sha3_256::digest(&hello).into(),
            peer_transcript: None,
        };
        (handshake, hello)
    }

    /// Takes the peer's Hello and returns this side's Proof.
    pub fn respond(
        &mut self,
        peer_hello: &[u8],
        exporter: &[u8; 32],
    ) -> Result<Vec<u8>, HandshakeError> {
        check_len(peer_hello.len())?;
        let hello: Hello = decode(peer_hello)?;
        if hello.v != VERSION {
            return Err(HandshakeError::Version(hello.v));
        }
        let peer_hash: [u8; 32] = Sha3_256::digest(peer_hello).into();
        let (init, resp) = match self.role {
            Role::Initiator => (&self.hello_hash, &peer_hash),
            Role::Responder => (&peer_hash, &self.hello_hash),
        };
        let transcript = |role: Role| {
            let mut t = Vec::with_capacity(1 + 32 * 3);
            t.push(role.tag());
            t.extend_from_slice(exporter);
            t.extend_from_slice(init);
            t.extend_from_slice(resp);
            t
        };
        let mine = transcript(self.role);
        self.peer_transcript = Some(transcript(self.role.other()));

        let own = self.local.record();
        let proof = match hello.challenge {
            Some(c) if c.record.as_slice() == own.digest() => {
                let ct = MlKem768Ciphertext::from_bytes(&c.ct)
                    .map_err(|e| HandshakeError::Malformed(format!("challenge: {e}")))?;
                let ss = self.local.ml_kem().decapsulate(&ct);
                Proof::Kem {
                    mac: kem_mac(&ss, &mine).to_vec(),
                }
            }
            // No challenge, or one for a record this node no longer uses: prove afresh.
            _ => Proof::Record {
                record: own.to_bytes().to_vec(),
                sig: self.local.ml_dsa().sign(AUTH_CONTEXT, &mine)?,
            },
        };
        Ok(encode(&proof))
    }

    /// Verifies the peer's Proof. `known` is the record this node holds for the peer (from
    /// its cache), against which a new record's ML-DSA key is checked.
    pub fn finish(
        self,
        peer_proof: &[u8],
        trust: &Trust,
        known: Option<&IdentityRecord>,
    ) -> Result<Authenticated, HandshakeError> {
        check_len(peer_proof.len())?;
        let transcript = self
            .peer_transcript
            .ok_or_else(|| HandshakeError::Malformed("proof before hello".into()))?;
        match decode::<Proof>(peer_proof)? {
            Proof::Kem { mac } => {
                let (record, ss) = self.challenged.ok_or(HandshakeError::UnexpectedKemProof)?;
                if !constant_time_eq(&mac, &kem_mac(&ss, &transcript)) {
                    return Err(HandshakeError::BadKemProof);
                }
                check_trust(trust, &record)?;
                Ok(Authenticated {
                    record,
                    mode: AuthMode::KemResumed,
                })
            }
            Proof::Record { record, sig } => {
                let record = IdentityRecord::from_bytes(&record)?;
                if record.peer_id() != self.remote {
                    return Err(HandshakeError::PeerIdMismatch {
                        tls: self.remote.to_base58(),
                        record: record.peer_id().to_base58(),
                    });
                }
                if let Some(known) = known.or(self.challenged.as_ref().map(|(r, _)| r))
                    && known.peer_id() == self.remote
                    && known.ml_dsa() != record.ml_dsa()
                {
                    return Err(HandshakeError::IdentityChanged(record.node_id().clone()));
                }
                check_trust(trust, &record)?;
                if !record
                    .ml_dsa()
                    .verify(AUTH_CONTEXT, &transcript, &sig)
                    .is_valid()
                {
                    return Err(HandshakeError::BadSignature);
                }
                Ok(Authenticated {
                    record,
                    mode: AuthMode::FirstContact,
                })
            }
        }
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

fn kem_mac(ss: &SharedSecret, transcript: &[u8]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(KEM_PROOF_DOMAIN);
    h.update(ss.as_bytes());
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

/// Decodes a Hello or Proof the way [`Handshake`] does, without any keys: for fuzzing and
/// property tests of the decoders. Never panics; returns whether the bytes decoded.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    check_len(bytes.len()).is_ok()
        && (decode::<Hello>(bytes).is_ok() || decode::<Proof>(bytes).is_ok())
}
