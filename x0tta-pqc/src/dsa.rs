//! ML-DSA-65 keys and the node's signer.
//!
//! This module owns the only long-lived copy of the secret key (in a buffer wiped on drop)
//! and the FIPS 204 context-length rule, which the PQClean C code does not enforce on its
//! own. It must not log or print key material: every `Debug` here is redacted.

use std::fmt;

use pqcrypto_mldsa::mldsa65;
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use x0tta_core::{NodeId, Rejection, SignError, Signature, Signer, Verdict};
use zeroize::Zeroizing;

use crate::KeyRing;

/// Algorithm name carried in [`Signature::alg`] for plain ML-DSA-65 signatures.
pub const ML_DSA_65: &str = "ML-DSA-65";

/// Longest context string FIPS 204 allows, in bytes.
pub const MAX_CONTEXT_LEN: usize = 255;

/// Context under which [`MlDsa65Keypair::from_bytes`] signs its self-test message, so the
/// probe signature can never be mistaken for one over a real record.
const KEY_CHECK_CONTEXT: &[u8] = b"x0tta/pqc/key-check/v1";

/// An error in raw key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes have the wrong length for the key.
    #[error("{what} is {actual} bytes long, expected {expected}")]
    WrongLength {
        /// Which key (`"ML-DSA-65 public key"` or `"ML-DSA-65 secret key"`).
        what: &'static str,
        /// Length given.
        actual: usize,
        /// Length required.
        expected: usize,
    },
    /// The secret key is not a valid FIPS 204 encoding (a coefficient of `s1` or `s2` out of
    /// range).
    #[error("the ML-DSA-65 secret key is malformed: {0}")]
    MalformedSecretKey(&'static str),
    /// The secret key does not produce signatures that the public key accepts.
    #[error("the ML-DSA-65 secret key does not belong to the public key")]
    Mismatch,
}

/// An ML-DSA-65 public key (FIPS 204 encoding, [`MlDsa65PublicKey::LEN`] bytes).
///
/// Its `Debug` shows a short fingerprint (the first 8 bytes, which are the public seed ρ).
#[derive(Clone)]
pub struct MlDsa65PublicKey(mldsa65::PublicKey);

impl MlDsa65PublicKey {
    /// Length of an encoded public key: 1952 bytes.
    pub const LEN: usize = 1952;

    /// Parses a raw FIPS 204 public key. Fails only on a wrong length: every
    /// [`Self::LEN`]-byte string decodes to some key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        mldsa65::PublicKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::WrongLength {
                what: "ML-DSA-65 public key",
                actual: bytes.len(),
                expected: Self::LEN,
            })
    }

    /// The raw FIPS 204 encoding.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Checks a raw `signature` over `message` under `context` (FIPS 204 `ML-DSA.Verify`
    /// with a context string).
    ///
    /// Returns [`Rejection::BadSignature`] for a signature that does not verify, has the wrong
    /// length, or comes with a context longer than [`MAX_CONTEXT_LEN`].
    pub fn verify(&self, context: &[u8], message: &[u8], signature: &[u8]) -> Verdict {
        let bad = Verdict::Reject(Rejection::BadSignature);
        if context.len() > MAX_CONTEXT_LEN || signature.len() != MlDsa65Keypair::SIGNATURE_LEN {
            return bad;
        }
        let Ok(sig) = mldsa65::DetachedSignature::from_bytes(signature) else {
            return bad;
        };
        match mldsa65::verify_detached_signature_ctx(&sig, message, context, &self.0) {
            Ok(()) => Verdict::Valid,
            Err(_) => bad,
        }
    }
}

impl PartialEq for MlDsa65PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MlDsa65PublicKey {}

impl fmt::Debug for MlDsa65PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlDsa65PublicKey(")?;
        for b in self.as_bytes().iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// An ML-DSA-65 key pair.
///
/// The secret key lives in one heap buffer that is zeroized when the key pair is dropped,
/// and it never appears in `Debug` output. Not `Clone`, so there is one copy to wipe.
///
/// pqcrypto's own `SecretKey` is a `Copy` array without zeroize support; the transient one
/// built for each signature is overwritten right after use, but copies the compiler or the C
/// code leave on the stack are beyond this type's reach.
pub struct MlDsa65Keypair {
    public: MlDsa65PublicKey,
    secret: Zeroizing<Vec<u8>>,
}

impl MlDsa65Keypair {
    /// Length of an encoded secret key (the FIPS 204 expanded form): 4032 bytes.
    pub const SECRET_KEY_LEN: usize = 4032;
    /// Length of a signature: 3309 bytes.
    pub const SIGNATURE_LEN: usize = 3309;

    /// Generates a fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        let (pk, mut sk) = mldsa65::keypair();
        let secret = Zeroizing::new(sk.as_bytes().to_vec());
        scrub(&mut sk);
        Self {
            public: MlDsa65PublicKey(pk),
            secret,
        }
    }

    /// Rebuilds a key pair from raw FIPS 204 encodings, e.g. read from a key store.
    ///
    /// Checks the lengths and that the secret vectors `s1`, `s2` are in range
    /// ([`KeyError::MalformedSecretKey`]). Then it signs a probe message and verifies it with
    /// `public`, so a secret key paired with the wrong public key is refused with
    /// [`KeyError::Mismatch`] rather than producing signatures nobody accepts.
    pub fn from_bytes(public: &[u8], secret: &[u8]) -> Result<Self, KeyError> {
        Self::from_parts(
            MlDsa65PublicKey::from_bytes(public)?,
            Zeroizing::new(secret.to_vec()),
        )
    }

    /// [`Self::from_bytes`] for a public key already parsed and a secret key already in a
    /// wiped buffer (the key-file reader's case).
    pub(crate) fn from_parts(
        public: MlDsa65PublicKey,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<Self, KeyError> {
        if secret.len() != Self::SECRET_KEY_LEN {
            return Err(KeyError::WrongLength {
                what: "ML-DSA-65 secret key",
                actual: secret.len(),
                expected: Self::SECRET_KEY_LEN,
            });
        }
        check_short_vectors(&secret)?;
        let pair = Self { public, secret };
        let probe = b"x0tta-pqc key pair self-test";
        let sig = pair
            .sign(KEY_CHECK_CONTEXT, probe)
            .map_err(|_| KeyError::Mismatch)?;
        match pair.public.verify(KEY_CHECK_CONTEXT, probe, &sig) {
            Verdict::Valid => Ok(pair),
            Verdict::Reject(_) => Err(KeyError::Mismatch),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &MlDsa65PublicKey {
        &self.public
    }

    /// Signs `message` under the FIPS 204 context string `context` (hedged: fresh randomness
    /// per signature, so signing the same message twice gives different bytes).
    ///
    /// Returns the raw [`Self::SIGNATURE_LEN`]-byte signature. Fails if `context` is longer
    /// than [`MAX_CONTEXT_LEN`]; the underlying C code would silently return an empty
    /// signature instead.
    pub fn sign(&self, context: &[u8], message: &[u8]) -> Result<Vec<u8>, SignError> {
        if context.len() > MAX_CONTEXT_LEN {
            return Err(SignError(format!(
                "context is {} bytes long; FIPS 204 allows at most {MAX_CONTEXT_LEN}",
                context.len()
            )));
        }
        let mut sk = mldsa65::SecretKey::from_bytes(&self.secret)
            .map_err(|_| SignError("ML-DSA-65 secret key has the wrong length".into()))?;
        let sig = mldsa65::detached_sign_ctx(message, context, &sk);
        scrub(&mut sk);
        let bytes = sig.as_bytes();
        if bytes.len() != Self::SIGNATURE_LEN {
            // The C signer reports failure only through the length it writes.
            return Err(SignError(format!(
                "ML-DSA-65 signer returned {} bytes, expected {}",
                bytes.len(),
                Self::SIGNATURE_LEN
            )));
        }
        Ok(bytes.to_vec())
    }

    /// The raw secret key, for the key-file writer only.
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for MlDsa65Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlDsa65Keypair")
            .field("public", &self.public)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// Checks that `s1` and `s2` in an encoded secret key have every coefficient in `[-η, η]`.
///
/// FIPS 204 `skDecode` leaves out-of-range coefficients to the caller. The C code would sign
/// with them, and its signatures can even verify, but such a key did not come from
/// `ML-DSA.KeyGen` and is refused on import (Wycheproof "InvalidPrivateKey").
fn check_short_vectors(secret: &[u8]) -> Result<(), KeyError> {
    // ML-DSA-65: η = 4, so each coefficient is one nibble holding η - c, which must be <= 2η.
    const ETA: u8 = 4;
    const POLY_BYTES: usize = 128; // 256 coefficients x 4 bits
    const L: usize = 5;
    const K: usize = 6;
    // rho (32) || K (32) || tr (64) || s1 (L polys) || s2 (K polys) || t0
    const S1: usize = 32 + 32 + 64;
    const S2: usize = S1 + L * POLY_BYTES;
    let in_range = |bytes: &[u8]| {
        bytes
            .iter()
            .all(|b| b & 0x0f <= 2 * ETA && b >> 4 <= 2 * ETA)
    };
    if !secret.get(S1..S2).is_some_and(in_range) {
        return Err(KeyError::MalformedSecretKey("s1 coefficient out of range"));
    }
    if !secret.get(S2..S2 + K * POLY_BYTES).is_some_and(in_range) {
        return Err(KeyError::MalformedSecretKey("s2 coefficient out of range"));
    }
    Ok(())
}

/// Overwrites a transient pqcrypto secret key. Best effort: see [`MlDsa65Keypair`].
fn scrub(sk: &mut mldsa65::SecretKey) {
    if let Ok(zero) = mldsa65::SecretKey::from_bytes(&[0u8; MlDsa65Keypair::SECRET_KEY_LEN]) {
        *sk = zero;
    }
    // Keep the dead store from being optimised away.
    std::hint::black_box(sk);
}

/// Signs as a node with an ML-DSA-65 key: x0tta-core's [`Signer`], algorithm [`ML_DSA_65`].
///
/// ```
/// use x0tta_core::{NodeId, Signer, Verifier, contexts};
/// use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};
///
/// let signer = MlDsa65Signer::new(NodeId::new("node-a")?, MlDsa65Keypair::generate());
/// let sig = signer.sign(contexts::GOSSIP, b"hello")?;
/// assert!(signer.verifier().verify(contexts::GOSSIP, b"hello", &sig).is_valid());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MlDsa65Signer {
    node_id: NodeId,
    keypair: MlDsa65Keypair,
}

impl MlDsa65Signer {
    /// Signs as `node_id` with `keypair`.
    pub fn new(node_id: NodeId, keypair: MlDsa65Keypair) -> Self {
        Self { node_id, keypair }
    }

    /// The public key that verifies this signer's signatures.
    pub fn public_key(&self) -> &MlDsa65PublicKey {
        self.keypair.public_key()
    }

    /// A key ring that trusts exactly this signer.
    pub fn verifier(&self) -> KeyRing {
        KeyRing::new().with(self.node_id.clone(), self.public_key().clone())
    }
}

impl Signer for MlDsa65Signer {
    fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    fn sign(&self, context: &[u8], message: &[u8]) -> Result<Signature, SignError> {
        Ok(Signature {
            signer: self.node_id.clone(),
            alg: ML_DSA_65.to_owned(),
            bytes: self.keypair.sign(context, message)?,
        })
    }
}

// The sizes above are written out for readable docs; tie them to the C library's.
const _: () = {
    assert!(MlDsa65PublicKey::LEN == mldsa65::public_key_bytes());
    assert!(MlDsa65Keypair::SECRET_KEY_LEN == mldsa65::secret_key_bytes());
    assert!(MlDsa65Keypair::SIGNATURE_LEN == mldsa65::signature_bytes());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret_key() {
        let pair = MlDsa65Keypair::generate();
        let shown = format!("{pair:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        // No 8-byte window of the secret part of the key appears in hex. The first 32 bytes
        // are the public seed rho, which the public key (and its fingerprint) also carries.
        let hex: String = pair.secret[32..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for window in hex.as_bytes().chunks(16) {
            let window = std::str::from_utf8(window).unwrap();
            if window.len() == 16 {
                assert!(!shown.contains(window));
            }
        }
    }

    #[test]
    fn scrub_zeroes_the_transient_key() {
        let (_, mut sk) = mldsa65::keypair();
        scrub(&mut sk);
        assert!(sk.as_bytes().iter().all(|&b| b == 0));
    }

    #[test]
    fn from_bytes_refuses_a_foreign_secret_key() {
        let a = MlDsa65Keypair::generate();
        let b = MlDsa65Keypair::generate();
        let err = MlDsa65Keypair::from_bytes(a.public_key().as_bytes(), b.secret_bytes());
        assert_eq!(err.unwrap_err(), KeyError::Mismatch);
        assert!(MlDsa65Keypair::from_bytes(a.public_key().as_bytes(), a.secret_bytes()).is_ok());
    }
}
