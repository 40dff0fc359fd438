//! The signed records of this crate (`patterns.bin`, federated updates, feature reports): a
//! DAG-CBOR record in a DAG-CBOR [`Envelope`], bounded in size, and accepted only in its
//! canonical encoding (the bytes that were signed and addressed).

use serde::Serialize;
use serde::de::DeserializeOwned;
use x0tta_core::{
    Envelope, NodeId, Signer, Verifier, from_canonical_dag_cbor, from_dag_cbor, to_dag_cbor,
};

/// Why a record could not be sealed or opened; each record's error type takes it in.
#[derive(Debug)]
pub(crate) enum SealError {
    /// `len` bytes, more than the `max` accepted.
    TooLarge { len: usize, max: usize },
    /// It does not encode or decode, or is not the canonical encoding.
    Malformed(String),
    /// Signing failed, or the signature does not verify.
    Rejected(String),
}

/// `record` signed by `signer` under `context`, as bytes (at most `max`).
pub(crate) fn seal<T: Serialize>(
    record: &T,
    signer: &dyn Signer,
    context: &[u8],
    max: usize,
) -> Result<Vec<u8>, SealError> {
    let payload = to_dag_cbor(record).map_err(|e| SealError::Malformed(e.to_string()))?;
    let env =
        Envelope::seal(signer, context, payload).map_err(|e| SealError::Rejected(e.to_string()))?;
    let bytes = to_dag_cbor(&env).map_err(|e| SealError::Malformed(e.to_string()))?;
    if bytes.len() > max {
        return Err(SealError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// The record in `bytes` and its signer: at most `max` bytes, canonical, signed under
/// `context` by a key `verifier` trusts.
pub(crate) fn open<T: DeserializeOwned>(
    bytes: &[u8],
    verifier: &dyn Verifier,
    context: &[u8],
    max: usize,
) -> Result<(T, NodeId), SealError> {
    if bytes.len() > max {
        return Err(SealError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let env: Envelope =
        from_canonical_dag_cbor(bytes).map_err(|e| SealError::Malformed(e.to_string()))?;
    let payload = env
        .open(verifier, context)
        .map_err(|e| SealError::Rejected(e.to_string()))?;
    let record = from_dag_cbor(payload).map_err(|e| SealError::Malformed(e.to_string()))?;
    Ok((record, env.signature.signer))
}
