//! Node identity: an Ed25519 key (the libp2p PeerId), an ML-DSA-65 key and a static
//! ML-KEM-768 key, bound to a SPIFFE-style name by a record both signature keys sign.
//!
//! The record is what peers learn in the handshake and cache: it pins the PQ keys to the
//! classical PeerId. [`IdentityRecord::from_bytes`] verifies both signatures, so a value of
//! that type is always a verified record. Nothing here logs or prints key material.

use std::fmt;
use std::sync::Arc;

use libp2p_identity::{PeerId, ed25519};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};
use x0tta_core::{NodeId, Rejection, SignError, Signature, Signer, Verdict, Verifier};

use crate::{ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey, MlKem768DecapsulationKey};
use crate::{MlKem768EncapsulationKey, MlKemError};

/// Algorithm name of a hybrid signature: ML-DSA-65 and Ed25519, both of which must verify.
pub const ML_DSA_65_ED25519: &str = "ML-DSA-65+Ed25519";

/// FIPS 204 context (and Ed25519 domain prefix) under which identity records are signed.
pub const IDENTITY_CONTEXT: &[u8] = b"x0tta/identity/1";

/// Longest accepted encoded [`IdentityRecord`], in bytes (a record is about 6.9 KB).
pub const MAX_RECORD_LEN: usize = 8 * 1024;

/// Longest accepted SPIFFE id, in bytes (the SPIFFE spec's limit).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Prefix of every Ed25519 message this crate signs, so an Ed25519 signature made here can
/// never be mistaken for one made by libp2p or any other protocol with the same key.
const ED25519_DOMAIN: &[u8] = b"x0tta/ed25519/1\0";

/// Record format version.
const RECORD_VERSION: u8 = 1;

/// An identity record or SPIFFE id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The encoded record is larger than [`MAX_RECORD_LEN`].
    #[error("identity record is {len} bytes, the limit is {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a well-formed record.
    #[error("identity record is malformed: {0}")]
    Malformed(String),
    /// The record has a format version this build does not read.
    #[error("identity record version {0} is not supported (expected {RECORD_VERSION})")]
    Version(u8),
    /// A key in the record is not a valid encoding.
    #[error("identity record holds an invalid {what} key")]
    BadKey {
        /// Which key.
        what: &'static str,
    },
    /// The SPIFFE id is not valid.
    #[error("invalid SPIFFE id {id:?}: {why}")]
    BadSpiffeId {
        /// The id as given (cut to 64 characters).
        id: String,
        /// What is wrong.
        why: &'static str,
    },
    /// One of the two signatures over the record does not verify.
    #[error("identity record signature by its {which} key does not verify")]
    BadSignature {
        /// `"Ed25519"` or `"ML-DSA-65"`.
        which: &'static str,
    },
}

/// A SPIFFE-style identifier: `spiffe://<trust-domain>/<path>`.
///
/// Checked against the SPIFFE ID rules: lowercase scheme, a trust domain of `[a-z0-9.-_]`,
/// a non-empty path of segments of `[A-Za-z0-9.-_]` (no `.` or `..` segments, no empty
/// segment, no trailing slash), at most 2048 bytes.
///
/// ```
/// use x0tta_pqc::SpiffeId;
/// let id: SpiffeId = "spiffe://mesh.example/node/alpha".parse()?;
/// assert_eq!(id.trust_domain(), "mesh.example");
/// assert_eq!(id.path(), "/node/alpha");
/// assert!("spiffe://Mesh/node".parse::<SpiffeId>().is_err());
/// assert!("https://mesh/node".parse::<SpiffeId>().is_err());
/// # Ok::<(), x0tta_pqc::IdentityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId(Arc<str>);

impl SpiffeId {
    const SCHEME: &'static str = "spiffe://";

    /// Parses and checks `id`.
    pub fn new(id: &str) -> Result<Self, IdentityError> {
        let bad = |why| IdentityError::BadSpiffeId {
            id: id.chars().take(64).collect(),
            why,
        };
        if id.len() > MAX_SPIFFE_ID_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        let rest = id
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| bad("must start with spiffe://"))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("has no path after the trust domain"))?;
        if domain.is_empty() {
            return Err(bad("trust domain is empty"));
        }
        if !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad("trust domain may hold only a-z, 0-9, '-', '.', '_'"));
        }
        for segment in path.split('/') {
            match segment {
                "" => return Err(bad("path has an empty segment or a trailing slash")),
                "." | ".." => return Err(bad("path has a '.' or '..' segment")),
                s if !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
                {
                    return Err(bad("path may hold only A-Z, a-z, 0-9, '-', '.', '_'"));
                }
                _ => {}
            }
        }
        Ok(Self(id.into()))
    }

    /// The whole id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain, e.g. `mesh.example`.
    pub fn trust_domain(&self) -> &str {
        let rest = &self.0[Self::SCHEME.len()..];
        rest.split_once('/').map_or(rest, |(d, _)| d)
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        let rest = &self.0[Self::SCHEME.len()..];
        rest.find('/').map_or("", |i| &rest[i..])
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.0)
    }
}

/// The signed part of a record, DAG-CBOR encoded.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    v: u8,
    spiffe: String,
    #[serde(with = "serde_bytes")]
    ed25519: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ml_dsa_65: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ml_kem_768: Vec<u8>,
    issued_at: u64,
}

/// A record on the wire: the body bytes exactly as signed, and the two signatures.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ed25519_sig: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ml_dsa_sig: Vec<u8>,
}

/// A verified identity record: a node's SPIFFE id, Ed25519 key (hence its PeerId and
/// [`NodeId`]), ML-DSA-65 key and static ML-KEM-768 key, signed by both signature keys.
///
/// Encoded as DAG-CBOR `{body, ed25519_sig, ml_dsa_sig}` where `body` is the DAG-CBOR map
/// `{v, spiffe, ed25519, ml_dsa_65, ml_kem_768, issued_at}` (keys in their raw RFC 8032 /
/// FIPS 204 / FIPS 203 encodings, `issued_at` in Unix seconds). The ML-DSA-65 signature is
/// over `body` with the FIPS 204 context [`IDENTITY_CONTEXT`]; the Ed25519 signature is over
/// `"x0tta/ed25519/1\0" ‖ len(ctx) ‖ ctx ‖ body` with the same context.
///
/// Cheap to clone. Only [`IdentityRecord::from_bytes`] and [`NodeIdentity`] make one, and both
/// check the signatures, so holding a record means holding a verified one.
///
/// ```
/// use x0tta_pqc::{IdentityRecord, NodeIdentity};
///
/// let me = NodeIdentity::generate("spiffe://mesh.example/node/a".parse()?);
/// let wire = me.record().to_bytes().to_vec();
/// let learned = IdentityRecord::from_bytes(&wire)?;
/// assert_eq!(learned.node_id(), me.node_id());
/// assert_eq!(learned.digest(), me.record().digest());
///
/// let mut forged = wire.clone();
/// let last = forged.len() - 1;
/// forged[last] ^= 1;
/// assert!(IdentityRecord::from_bytes(&forged).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IdentityRecord(Arc<RecordInner>);

struct RecordInner {
    spiffe: SpiffeId,
    ed25519: ed25519::PublicKey,
    peer_id: PeerId,
    node_id: NodeId,
    ml_dsa: MlDsa65PublicKey,
    ml_kem: MlKem768EncapsulationKey,
    issued_at: u64,
    encoded: Box<[u8]>,
    digest: [u8; 32],
}

impl IdentityRecord {
    /// Decodes `bytes` and verifies both signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(IdentityError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let wire: Wire = decode_canonical(bytes).map_err(IdentityError::Malformed)?;
        let body: Body = decode_canonical(&wire.body)
            .map_err(|e| IdentityError::Malformed(format!("body: {e}")))?;
        if body.v != RECORD_VERSION {
            return Err(IdentityError::Version(body.v));
        }
        let spiffe = SpiffeId::new(&body.spiffe)?;
        let ed25519 = ed25519::PublicKey::try_from_bytes(&body.ed25519)
            .map_err(|_| IdentityError::BadKey { what: "Ed25519" })?;
        let ml_dsa = MlDsa65PublicKey::from_bytes(&body.ml_dsa_65)
            .map_err(|_| IdentityError::BadKey { what: "ML-DSA-65" })?;
        let ml_kem = MlKem768EncapsulationKey::from_bytes(&body.ml_kem_768)
            .map_err(|_: MlKemError| IdentityError::BadKey { what: "ML-KEM-768" })?;
        if !ed25519.verify(
            &ed25519_message(IDENTITY_CONTEXT, &wire.body),
            &wire.ed25519_sig,
        ) {
            return Err(IdentityError::BadSignature { which: "Ed25519" });
        }
        if !ml_dsa
            .verify(IDENTITY_CONTEXT, &wire.body, &wire.ml_dsa_sig)
            .is_valid()
        {
            return Err(IdentityError::BadSignature { which: "ML-DSA-65" });
        }
        Ok(Self::assemble(
            spiffe,
            ed25519,
            ml_dsa,
            ml_kem,
            body.issued_at,
            bytes.into(),
        ))
    }

    /// Signs a new record for the given keys.
    fn issue(
        spiffe: SpiffeId,
        ed: &ed25519::Keypair,
        dsa: &MlDsa65Keypair,
        kem: &MlKem768EncapsulationKey,
        issued_at: u64,
    ) -> Result<Self, SignError> {
        let body = Body {
            v: RECORD_VERSION,
            spiffe: spiffe.as_str().to_owned(),
            ed25519: ed.public().to_bytes().to_vec(),
            ml_dsa_65: dsa.public_key().as_bytes().to_vec(),
            ml_kem_768: kem.as_bytes().to_vec(),
            issued_at,
        };
        let body = serde_ipld_dagcbor::to_vec(&body).map_err(|e| SignError(e.to_string()))?;
        let wire = Wire {
            ed25519_sig: ed.sign(&ed25519_message(IDENTITY_CONTEXT, &body)),
            ml_dsa_sig: dsa.sign(IDENTITY_CONTEXT, &body)?,
            body,
        };
        let encoded = serde_ipld_dagcbor::to_vec(&wire).map_err(|e| SignError(e.to_string()))?;
        Ok(Self::assemble(
            spiffe,
            ed.public(),
            dsa.public_key().clone(),
            kem.clone(),
            issued_at,
            encoded.into(),
        ))
    }

    fn assemble(
        spiffe: SpiffeId,
        ed25519: ed25519::PublicKey,
        ml_dsa: MlDsa65PublicKey,
        ml_kem: MlKem768EncapsulationKey,
        issued_at: u64,
        encoded: Box<[u8]>,
    ) -> Self {
        let peer_id = PeerId::from_public_key(&libp2p_identity::PublicKey::from(ed25519.clone()));
        let node_id = node_id_of(&peer_id);
        let digest = Sha3_256::digest(&encoded).into();
        Self(Arc::new(RecordInner {
            spiffe,
            ed25519,
            peer_id,
            node_id,
            ml_dsa,
            ml_kem,
            issued_at,
            encoded,
            digest,
        }))
    }

    /// The encoded record, as signed and as sent to peers.
    pub fn to_bytes(&self) -> &[u8] {
        &self.0.encoded
    }

    /// SHA3-256 of [`Self::to_bytes`]: names this exact record (a re-issued record of the same
    /// node has another digest).
    pub fn digest(&self) -> &[u8; 32] {
        &self.0.digest
    }

    /// The SPIFFE id.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.0.spiffe
    }

    /// The libp2p PeerId of the Ed25519 key.
    pub fn peer_id(&self) -> PeerId {
        self.0.peer_id
    }

    /// The node's id in the mesh: the base58 PeerId.
    pub fn node_id(&self) -> &NodeId {
        &self.0.node_id
    }

    /// The Ed25519 public key.
    pub fn ed25519(&self) -> &ed25519::PublicKey {
        &self.0.ed25519
    }

    /// The ML-DSA-65 public key.
    pub fn ml_dsa(&self) -> &MlDsa65PublicKey {
        &self.0.ml_dsa
    }

    /// The static ML-KEM-768 encapsulation key (for KEM authentication and for sealing data
    /// to this node).
    pub fn ml_kem(&self) -> &MlKem768EncapsulationKey {
        &self.0.ml_kem
    }

    /// When the record was signed, in Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.0.issued_at
    }

    /// Verifies a signature made by [`NodeIdentity::sign_hybrid`] or
    /// [`NodeIdentity::sign_ml_dsa`] (the [`Signature::alg`] says which).
    pub(crate) fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict {
        match sig.alg.as_str() {
            ML_DSA_65 => self.0.ml_dsa.verify(context, message, &sig.bytes),
            ML_DSA_65_ED25519 => {
                let Some(split) = sig.bytes.len().checked_sub(64) else {
                    return Verdict::Reject(Rejection::BadSignature);
                };
                let (pq, classical) = sig.bytes.split_at(split);
                // Both halves must verify; the PQ half first (the one an attacker with a
                // quantum computer cannot forge).
                match self.0.ml_dsa.verify(context, message, pq) {
                    Verdict::Valid
                        if self
                            .0
                            .ed25519
                            .verify(&ed25519_message(context, message), classical) =>
                    {
                        Verdict::Valid
                    }
                    Verdict::Valid => Verdict::Reject(Rejection::BadSignature),
                    other => other,
                }
            }
            other => Verdict::Reject(Rejection::UnsupportedAlgorithm(other.to_owned())),
        }
    }
}

impl PartialEq for IdentityRecord {
    fn eq(&self, other: &Self) -> bool {
        self.0.digest == other.0.digest
    }
}

impl Eq for IdentityRecord {}

impl fmt::Debug for IdentityRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityRecord")
            .field("spiffe_id", &self.0.spiffe)
            .field("node_id", &self.0.node_id)
            .field("issued_at", &self.0.issued_at)
            .finish_non_exhaustive()
    }
}

/// Decodes DAG-CBOR and insists the bytes are the canonical encoding of what they decode to.
///
/// Serde is lenient where CBOR is not: a map key sent as a byte string instead of a text
/// string, or a field identified by its index, decodes to the same value. Without this check
/// such bit flips would leave a signed structure "valid" under a different encoding; with it,
/// every accepted message has exactly one byte form.
pub(crate) fn decode_canonical<T: Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, String> {
    let value: T = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| e.to_string())?;
    match serde_ipld_dagcbor::to_vec(&value) {
        Ok(again) if again == bytes => Ok(value),
        Ok(_) => Err("not in canonical DAG-CBOR form".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The mesh [`NodeId`] of a libp2p PeerId: its base58 text.
pub fn node_id_of(peer: &PeerId) -> NodeId {
    // A base58 PeerId is ASCII and at most ~60 characters: always a valid NodeId.
    NodeId::new(peer.to_base58()).unwrap_or_else(|_| unreachable!("PeerId text is a valid NodeId"))
}

/// `"x0tta/ed25519/1\0" ‖ len(context) ‖ context ‖ message`: Ed25519 has no context input,
/// so the context is framed into the message.
pub(crate) fn ed25519_message(context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ED25519_DOMAIN.len() + 1 + context.len() + message.len());
    m.extend_from_slice(ED25519_DOMAIN);
    // Contexts are at most 255 bytes (checked by the ML-DSA half, which always signs too).
    m.push(u8::try_from(context.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(context);
    m.extend_from_slice(message);
    m
}

/// A node's own identity: its three key pairs and the record binding them.
///
/// Cheap to clone (shared). Implements [`Signer`] with ML-DSA-65 alone ([`ML_DSA_65`]),
/// which is what a [`KeyRing`](crate::KeyRing) checks; [`NodeIdentity::hybrid`] gives a
/// signer whose signatures carry Ed25519 too ([`ML_DSA_65_ED25519`]). Secret keys are wiped
/// on drop and never shown by `Debug`.
///
/// ```
/// use x0tta_core::{Signer, Verifier, contexts};
/// use x0tta_pqc::{IdentityRing, NodeIdentity};
///
/// let me = NodeIdentity::generate("spiffe://mesh.example/node/a".parse()?);
/// // The node id is the libp2p PeerId of the Ed25519 key.
/// assert_eq!(me.node_id().as_str(), me.peer_id().to_base58());
///
/// let ring = IdentityRing::new().with(me.record().clone());
/// let sig = me.hybrid().sign(contexts::POLICY, b"policy v7")?;
/// assert_eq!(sig.alg, "ML-DSA-65+Ed25519");
/// assert!(ring.verify(contexts::POLICY, b"policy v7", &sig).is_valid());
/// assert!(!ring.verify(contexts::VOTE, b"policy v7", &sig).is_valid());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct NodeIdentity(Arc<IdentityInner>);

struct IdentityInner {
    ed25519: ed25519::Keypair,
    ml_dsa: MlDsa65Keypair,
    ml_kem: MlKem768DecapsulationKey,
    record: IdentityRecord,
}

impl NodeIdentity {
    /// Generates fresh keys for `spiffe` and signs their record (issued now).
    pub fn generate(spiffe: SpiffeId) -> Self {
        Self::from_keys(
            spiffe,
            ed25519::Keypair::generate(),
            MlDsa65Keypair::generate(),
            MlKem768DecapsulationKey::generate(),
        )
        .unwrap_or_else(|e| unreachable!("a fresh key pair signs: {e}"))
    }

    /// Binds existing keys to `spiffe` with a record issued now.
    pub fn from_keys(
        spiffe: SpiffeId,
        ed25519: ed25519::Keypair,
        ml_dsa: MlDsa65Keypair,
        ml_kem: MlKem768DecapsulationKey,
    ) -> Result<Self, SignError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record =
            IdentityRecord::issue(spiffe, &ed25519, &ml_dsa, ml_kem.encapsulation_key(), now)?;
        Ok(Self::from_parts(ed25519, ml_dsa, ml_kem, record))
    }

    /// Keys plus a record already checked to name them.
    pub(crate) fn from_parts(
        ed25519: ed25519::Keypair,
        ml_dsa: MlDsa65Keypair,
        ml_kem: MlKem768DecapsulationKey,
        record: IdentityRecord,
    ) -> Self {
        Self(Arc::new(IdentityInner {
            ed25519,
            ml_dsa,
            ml_kem,
            record,
        }))
    }

    /// The signed record peers learn.
    pub fn record(&self) -> &IdentityRecord {
        &self.0.record
    }

    /// The node id (base58 PeerId).
    pub fn node_id(&self) -> &NodeId {
        self.0.record.node_id()
    }

    /// The libp2p PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.0.record.peer_id()
    }

    /// The SPIFFE id.
    pub fn spiffe_id(&self) -> &SpiffeId {
        self.0.record.spiffe_id()
    }

    /// The libp2p key pair (Ed25519) for a Swarm.
    pub fn libp2p_keypair(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::from(self.0.ed25519.clone())
    }

    /// The ML-DSA-65 key pair.
    pub fn ml_dsa(&self) -> &MlDsa65Keypair {
        &self.0.ml_dsa
    }

    /// The static ML-KEM-768 key pair.
    pub fn ml_kem(&self) -> &MlKem768DecapsulationKey {
        &self.0.ml_kem
    }

    /// An ML-DSA-65 signature under `context`, as [`Signer::sign`] gives.
    pub fn sign_ml_dsa(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        Ok(Signature {
            signer: self.node_id().clone(),
            alg: ML_DSA_65.to_owned(),
            bytes: self.0.ml_dsa.sign(context, message)?,
        })
    }

    /// A hybrid signature: ML-DSA-65 (3309 bytes) followed by Ed25519 (64 bytes) over the
    /// same context and message; [`IdentityRing`] accepts it only if both verify.
    pub fn sign_hybrid(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        let mut bytes = self.0.ml_dsa.sign(context, message)?;
        bytes.extend_from_slice(&self.0.ed25519.sign(&ed25519_message(context, message)));
        Ok(Signature {
            signer: self.node_id().clone(),
            alg: ML_DSA_65_ED25519.to_owned(),
            bytes,
        })
    }

    /// A [`Signer`] that makes hybrid signatures ([`Self::sign_hybrid`]).
    pub fn hybrid(&self) -> HybridSigner {
        HybridSigner(self.clone())
    }
}

impl Signer for NodeIdentity {
    fn node_id(&self) -> &NodeId {
        NodeIdentity::node_id(self)
    }
    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        self.sign_ml_dsa(context, message)
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("record", &self.0.record)
            .finish_non_exhaustive()
    }
}

/// Signs as a [`NodeIdentity`] with hybrid ML-DSA-65 + Ed25519 signatures.
#[derive(Clone, Debug)]
pub struct HybridSigner(NodeIdentity);

impl Signer for HybridSigner {
    fn node_id(&self) -> &NodeId {
        self.0.node_id()
    }
    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        self.0.sign_hybrid(context, message)
    }
}

/// The identity records this node trusts, by [`NodeId`]; a [`Verifier`] for both
/// [`ML_DSA_65`] and [`ML_DSA_65_ED25519`] signatures.
///
/// With [`IdentityRing::require_hybrid`], ML-DSA-only signatures are refused
/// ([`Rejection::UnsupportedAlgorithm`]).
#[derive(Clone, Default, Debug)]
pub struct IdentityRing {
    records: std::collections::BTreeMap<NodeId, IdentityRecord>,
    hybrid_only: bool,
}

impl IdentityRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept only hybrid signatures.
    pub fn require_hybrid(mut self) -> Self {
        self.hybrid_only = true;
        self
    }

    /// Adds a record (builder form of [`Self::insert`]).
    pub fn with(mut self, record: IdentityRecord) -> Self {
        self.insert(record);
        self
    }

    /// Trusts `record`, replacing (and returning) the one held for its node.
    pub fn insert(&mut self, record: IdentityRecord) -> Option<IdentityRecord> {
        self.records.insert(record.node_id().clone(), record)
    }

    /// The record held for `node`.
    pub fn get(&self, node: &NodeId) -> Option<&IdentityRecord> {
        self.records.get(node)
    }

    /// Number of trusted nodes.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no node is trusted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// An ML-DSA-only [`KeyRing`](crate::KeyRing) of the same nodes.
    pub fn to_key_ring(&self) -> crate::KeyRing {
        self.records
            .iter()
            .map(|(id, r)| (id.clone(), r.ml_dsa().clone()))
            .collect()
    }
}

impl Verifier for IdentityRing {
    fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict {
        if self.hybrid_only && sig.alg != ML_DSA_65_ED25519 {
            return Verdict::Reject(Rejection::UnsupportedAlgorithm(sig.alg.clone()));
        }
        match self.records.get(&sig.signer) {
            None => Verdict::Reject(Rejection::UnknownSigner(sig.signer.clone())),
            Some(record) => record.verify(context, message, sig),
        }
    }
}
