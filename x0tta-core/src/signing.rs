//! Signing and verification: the contract x0tta-pqc implements (ML-DSA-65, optionally hybrid
//! with Ed25519). Every record that changes state is signed; verification happens at the edge,
//! before anything reaches a store or a tally.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Domain-separation contexts (FIPS 204 context strings), one per message type, so a
/// signature made for one purpose never verifies for another.
pub mod contexts {
    /// Execution reports.
    pub const EXECUTION_REPORT: &[u8] = b"x0tta/execution-report/v1";
    /// Incidents.
    pub const INCIDENT: &[u8] = b"x0tta/incident/v1";
    /// Policies.
    pub const POLICY: &[u8] = b"x0tta/policy/v1";
    /// Gossip messages.
    pub const GOSSIP: &[u8] = b"x0tta/gossip/v1";
    /// Governance proposals.
    pub const PROPOSAL: &[u8] = b"x0tta/proposal/v1";
    /// Governance votes.
    pub const VOTE: &[u8] = b"x0tta/vote/v1";
    /// Governance tally attestations (finality).
    pub const TALLY: &[u8] = b"x0tta/tally/v1";
}

/// A signature with the algorithm and signer that produced it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Who signed.
    pub signer: NodeId,
    /// Algorithm name, e.g. `ML-DSA-65` or `ML-DSA-65+Ed25519`.
    pub alg: String,
    /// The signature bytes.
    #[serde(with = "serde_bytes_compat")]
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({} by {}, {} bytes)",
            self.alg,
            self.signer,
            self.bytes.len()
        )
    }
}

/// Signing failed.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The signer is unknown to this verifier.
    UnknownSigner(NodeId),
    /// The algorithm is not accepted.
    UnsupportedAlgorithm(String),
    /// The signature does not verify.
    BadSignature,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// The signature is valid for the message, context and signer.
    Valid,
    /// It is not.
    Reject(Rejection),
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid)
    }
}

/// Produces signatures as this node.
///
/// # Notes to implementers
/// `sign` must bind `context` (domain separation) and must never log or expose key material.
pub trait Signer: Send + Sync {
    /// The identity signatures are made under.
    fn node_id(&self) -> &NodeId;
    /// Signs `message` under `context`.
    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError>;
}

/// Checks signatures made by known signers.
pub trait Verifier: Send + Sync {
    /// Verifies `sig` over `message` under `context`.
    fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict;
}

impl<T: Signer + ?Sized> Signer for std::sync::Arc<T> {
    fn node_id(&self) -> &NodeId {
        (**self).node_id()
    }
    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        (**self).sign(context, message)
    }
}

impl<T: Verifier + ?Sized> Verifier for std::sync::Arc<T> {
    fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict {
        (**self).verify(context, message, sig)
    }
}

/// Byte strings as CBOR byte strings (not arrays of integers).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(8192));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A signed envelope: `{ payload, signature }`, the signature naming signer and algorithm
/// (DESIGN §4). Verification happens before the payload is decoded or used.
///
/// ```
/// # use x0tta_core::{Envelope, Signer, Verifier, Signature, SignError, Verdict, NodeId, Rejection};
/// # struct Toy(NodeId);
/// # impl Signer for Toy {
/// #     fn node_id(&self) -> &NodeId { &self.0 }
/// #     fn sign(&self, ctx: &[u8], m: &[u8]) -> Result<Signature, SignError> {
/// #         Ok(Signature { signer: self.0.clone(), alg: "toy".into(), bytes: [ctx, m].concat() })
/// #     }
/// # }
/// # impl Verifier for Toy {
/// #     fn verify(&self, ctx: &[u8], m: &[u8], s: &Signature) -> Verdict {
/// #         if s.bytes == [ctx, m].concat() { Verdict::Valid } else { Verdict::Reject(Rejection::BadSignature) }
/// #     }
/// # }
/// let keys = Toy(NodeId::new("a")?);
/// let env = Envelope::seal(&keys, b"ctx", b"payload".to_vec())?;
/// assert_eq!(env.open(&keys, b"ctx")?, b"payload");
/// assert!(env.open(&keys, b"other-ctx").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The signed bytes (a DAG-CBOR record).
    #[serde(with = "serde_bytes_compat")]
    pub payload: Vec<u8>,
    /// The signature over `payload` under the message type's context.
    pub signature: Signature,
}

/// An envelope whose signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("envelope from {signer} rejected: {reason:?}")]
pub struct EnvelopeRejected {
    /// Claimed signer.
    pub signer: NodeId,
    /// Why.
    pub reason: Rejection,
}

impl Envelope {
    /// Signs `payload` under `context`.
    pub fn seal(signer: &dyn Signer, context: &[u8], payload: Vec<u8>) -> Result<Self, SignError> {
        let signature = signer.sign(context, &payload)?;
        Ok(Self { payload, signature })
    }

    /// The payload, if the signature verifies under `context`.
    pub fn open(&self, verifier: &dyn Verifier, context: &[u8]) -> Result<&[u8], EnvelopeRejected> {
        match verifier.verify(context, &self.payload, &self.signature) {
            Verdict::Valid => Ok(&self.payload),
            Verdict::Reject(reason) => Err(EnvelopeRejected {
                signer: self.signature.signer.clone(),
                reason,
            }),
        }
    }
}
