//! ML-DSA-65 keys and the node's signer, over two interchangeable backends.
//!
//! This module owns the only long-lived copy of the secret key (in a buffer wiped on drop),
//! the FIPS 204 context-length rule (which the PQClean C code does not enforce on its own),
//! the import checks on secret keys, and the choice of [`Backend`]. The backend modules only
//! turn raw FIPS 204 encodings into signatures and verdicts. Nothing here may log or print key
//! material: every `Debug` is redacted.
//!
//! Both backends read and write the same encodings (1952-byte public key, 4032-byte expanded
//! secret key, 3309-byte signature), so a key made or saved under one signs under the other,
//! and their signatures verify under either (tests/mldsa_vectors.rs cross-checks this).

#[cfg(not(any(feature = "pqclean", feature = "rustcrypto")))]
compile_error!(
    "x0tta-pqc needs an ML-DSA backend: enable feature `pqclean` (the default) or \
     `rustcrypto`, or both"
);

#[cfg(feature = "pqclean")]
mod pqclean;
#[cfg(feature = "rustcrypto")]
pub mod rustcrypto;

use std::fmt;
#[cfg(feature = "rustcrypto")]
use std::sync::OnceLock;

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

/// The ML-DSA-65 implementation that signs and verifies.
///
/// Which variants exist depends on the crate features: `pqclean` (default) gives
/// [`Backend::PqClean`], `rustcrypto` gives `Backend::RustCrypto`. Both produce and accept
/// the same bytes, so the choice is about speed, portability and auditability, never about
/// compatibility. [`Backend::default()`] is PQClean when it is compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// PQClean's portable C code through `pqcrypto-mldsa` (AVX2/NEON paths disabled: the
    /// AVX2 verifier accepts invalid signatures). No seeded key generation, no deterministic
    /// signing, no internal interface.
    #[cfg(feature = "pqclean")]
    PqClean,
    /// RustCrypto's pure-Rust `ml-dsa`. Also offers seeded key generation
    /// (`MlDsa65Keypair::from_seed`) and the extras in the `rustcrypto` module.
    #[cfg(feature = "rustcrypto")]
    RustCrypto,
}

impl Backend {
    /// Every backend compiled into this build, the default first.
    pub const ALL: &'static [Backend] = &[
        #[cfg(feature = "pqclean")]
        Backend::PqClean,
        #[cfg(feature = "rustcrypto")]
        Backend::RustCrypto,
    ];

    /// A short name for logs and test output: `"pqclean"` or `"rustcrypto"`.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => "pqclean",
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => "rustcrypto",
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        #[cfg(feature = "pqclean")]
        return Backend::PqClean;
        #[cfg(all(feature = "rustcrypto", not(feature = "pqclean")))]
        return Backend::RustCrypto;
        // Unreachable: the compile_error! above stops such a build; this only keeps the
        // error list down to that one message.
        #[cfg(not(any(feature = "pqclean", feature = "rustcrypto")))]
        unreachable!("no ML-DSA backend compiled in")
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
/// With the `rustcrypto` feature, the first verification under `Backend::RustCrypto` caches
/// the decoded key (about 37 KiB, shared by clones), so later ones skip expanding the matrix.
#[derive(Clone)]
pub struct MlDsa65PublicKey {
    bytes: Box<[u8]>,
    #[cfg(feature = "rustcrypto")]
    decoded: OnceLock<Option<rustcrypto::DecodedPublicKey>>,
}

impl MlDsa65PublicKey {
    /// Length of an encoded public key: 1952 bytes.
    pub const LEN: usize = 1952;

    /// Parses a raw FIPS 204 public key. Fails only on a wrong length: every
    /// [`Self::LEN`]-byte string decodes to some key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != Self::LEN {
            return Err(KeyError::WrongLength {
                what: "ML-DSA-65 public key",
                actual: bytes.len(),
                expected: Self::LEN,
            });
        }
        Ok(Self {
            bytes: bytes.into(),
            #[cfg(feature = "rustcrypto")]
            decoded: OnceLock::new(),
        })
    }

    /// The raw FIPS 204 encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks a raw `signature` over `message` under `context` (FIPS 204 `ML-DSA.Verify`
    /// with a context string), with the default [`Backend`].
    ///
    /// Returns [`Rejection::BadSignature`] for a signature that does not verify, has the wrong
    /// length, or comes with a context longer than [`MAX_CONTEXT_LEN`].
    pub fn verify(&self, context: &[u8], message: &[u8], signature: &[u8]) -> Verdict {
        self.verify_with(Backend::default(), context, message, signature)
    }

    /// [`Self::verify`] with the given backend. Both give the same verdict on every input
    /// (Wycheproof's and ACVP's vectors included).
    pub fn verify_with(
        &self,
        backend: Backend,
        context: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Verdict {
        if context.len() > MAX_CONTEXT_LEN || signature.len() != MlDsa65Keypair::SIGNATURE_LEN {
            return Verdict::Reject(Rejection::BadSignature);
        }
        let ok = match backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => pqclean::verify(&self.bytes, context, message, signature),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => self
                .rustcrypto_key()
                .is_some_and(|key| rustcrypto::verify(key, context, message, signature)),
        };
        if ok {
            Verdict::Valid
        } else {
            Verdict::Reject(Rejection::BadSignature)
        }
    }

    /// The decoded `ml-dsa` key, decoded on first use.
    #[cfg(feature = "rustcrypto")]
    fn rustcrypto_key(&self) -> Option<&ml_dsa::VerifyingKey<ml_dsa::MlDsa65>> {
        self.decoded
            .get_or_init(|| rustcrypto::decode_public(&self.bytes))
            .as_deref()
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

/// An ML-DSA-65 key pair, and the [`Backend`] it signs with.
///
/// The secret key lives in one heap buffer, in the FIPS 204 expanded encoding both backends
/// read, that is zeroized when the key pair is dropped; it never appears in `Debug` output.
/// Not `Clone`, so there is one copy to wipe.
///
/// Under [`Backend::PqClean`], pqcrypto's own `SecretKey` is a `Copy` array without zeroize
/// support; the transient one built for each signature is overwritten right after use, but
/// copies the compiler or the C code leave on the stack are beyond this type's reach. Under
/// `Backend::RustCrypto`, the key is decoded once into `ml-dsa`'s form, which `ml-dsa`
/// wipes on drop.
pub struct MlDsa65Keypair {
    public: MlDsa65PublicKey,
    secret: Zeroizing<Vec<u8>>,
    backend: Backend,
    #[cfg(feature = "rustcrypto")]
    decoded: OnceLock<Option<rustcrypto::DecodedSecretKey>>,
}

impl MlDsa65Keypair {
    /// Length of an encoded secret key (the FIPS 204 expanded form): 4032 bytes.
    pub const SECRET_KEY_LEN: usize = 4032;
    /// Length of a signature: 3309 bytes.
    pub const SIGNATURE_LEN: usize = 3309;

    /// Generates a fresh key pair from the operating system's random source, with the default
    /// [`Backend`].
    pub fn generate() -> Self {
        Self::generate_with(Backend::default())
    }

    /// Generates a fresh key pair with `backend`, which it then also signs with.
    pub fn generate_with(backend: Backend) -> Self {
        let (public, secret) = match backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => pqclean::generate(),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => rustcrypto::generate(),
        };
        Self::trusted(public, secret, backend)
    }

    /// Derives the key pair FIPS 204 `ML-DSA.KeyGen_internal` makes from the 32-byte seed ξ
    /// (always computed by `ml-dsa`: PQClean has no seeded key generation). It signs with the
    /// default [`Backend`].
    ///
    /// The key files keep the expanded secret key, not ξ: keep the seed yourself if you want
    /// the 32-byte backup form.
    #[cfg(feature = "rustcrypto")]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (public, secret) = rustcrypto::from_seed(seed);
        Self::trusted(public, secret, Backend::default())
    }

    /// Rebuilds a key pair from the expanded secret key alone, recomputing the public key from
    /// `s1` and `s2` (with `ml-dsa`), then checks it like [`Self::from_bytes`].
    #[cfg(feature = "rustcrypto")]
    pub fn from_secret_key(secret: &[u8]) -> Result<Self, KeyError> {
        check_secret_key(secret)?;
        let public = rustcrypto::public_from_secret(secret).ok_or(KeyError::WrongLength {
            what: "ML-DSA-65 secret key",
            actual: secret.len(),
            expected: Self::SECRET_KEY_LEN,
        })?;
        Self::from_bytes(&public, secret)
    }

    /// A key pair straight from a key generator: no import checks.
    fn trusted(public: Vec<u8>, secret: Zeroizing<Vec<u8>>, backend: Backend) -> Self {
        Self {
            public: MlDsa65PublicKey {
                bytes: public.into(),
                #[cfg(feature = "rustcrypto")]
                decoded: OnceLock::new(),
            },
            secret,
            backend,
            #[cfg(feature = "rustcrypto")]
            decoded: OnceLock::new(),
        }
    }

    /// Rebuilds a key pair from raw FIPS 204 encodings, e.g. read from a key store. It signs
    /// with the default [`Backend`] (see [`Self::with_backend`]).
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
        check_secret_key(&secret)?;
        let pair = Self {
            public,
            secret,
            backend: Backend::default(),
            #[cfg(feature = "rustcrypto")]
            decoded: OnceLock::new(),
        };
        let probe = b"x0tta-pqc key pair self-test";
        let sig = pair
            .sign(KEY_CHECK_CONTEXT, probe)
            .map_err(|_| KeyError::Mismatch)?;
        match pair.public.verify(KEY_CHECK_CONTEXT, probe, &sig) {
            Verdict::Valid => Ok(pair),
            Verdict::Reject(_) => Err(KeyError::Mismatch),
        }
    }

    /// The same key pair, signing with `backend` from now on. The key bytes do not change.
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The backend [`Self::sign`] uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The public half.
    pub fn public_key(&self) -> &MlDsa65PublicKey {
        &self.public
    }

    /// Signs `message` under the FIPS 204 context string `context` (hedged: fresh randomness
    /// per signature, so signing the same message twice gives different bytes), with
    /// [`Self::backend`].
    ///
    /// Returns the raw [`Self::SIGNATURE_LEN`]-byte signature. Fails if `context` is longer
    /// than [`MAX_CONTEXT_LEN`]; PQClean's C code would silently return an empty signature
    /// instead.
    pub fn sign(&self, context: &[u8], message: &[u8]) -> Result<Vec<u8>, SignError> {
        check_context(context)?;
        let bytes: Vec<u8> = match self.backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => pqclean::sign(&self.secret, context, message)?,
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => rustcrypto::sign(self.rustcrypto_key()?, context, message)?,
        };
        if bytes.len() != Self::SIGNATURE_LEN {
            // The C signer reports failure only through the length it writes.
            return Err(SignError(format!(
                "ML-DSA-65 signer returned {} bytes, expected {}",
                bytes.len(),
                Self::SIGNATURE_LEN
            )));
        }
        Ok(bytes)
    }

    /// The decoded `ml-dsa` signing key, decoded on first use.
    #[cfg(feature = "rustcrypto")]
    fn rustcrypto_key(&self) -> Result<&ml_dsa::ExpandedSigningKey<ml_dsa::MlDsa65>, SignError> {
        self.decoded
            .get_or_init(|| rustcrypto::decode_secret(&self.secret))
            .as_deref()
            .ok_or_else(|| SignError("ML-DSA-65 secret key has the wrong length".into()))
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
            .field("backend", &self.backend)
            .finish()
    }
}

/// Refuses a context longer than [`MAX_CONTEXT_LEN`].
fn check_context(context: &[u8]) -> Result<(), SignError> {
    if context.len() > MAX_CONTEXT_LEN {
        return Err(SignError(format!(
            "context is {} bytes long; FIPS 204 allows at most {MAX_CONTEXT_LEN}",
            context.len()
        )));
    }
    Ok(())
}

/// Checks an encoded secret key's length, and that `s1` and `s2` have every coefficient in
/// `[-η, η]`.
///
/// FIPS 204 `skDecode` leaves out-of-range coefficients to the caller. The C code would sign
/// with them, and its signatures can even verify; `ml-dsa` documents that its decoder may
/// panic on them. Such a key did not come from `ML-DSA.KeyGen` and is refused on import
/// (Wycheproof "InvalidPrivateKey").
fn check_secret_key(secret: &[u8]) -> Result<(), KeyError> {
    // ML-DSA-65: η = 4, so each coefficient is one nibble holding η - c, which must be <= 2η.
    const ETA: u8 = 4;
    const POLY_BYTES: usize = 128; // 256 coefficients x 4 bits
    const L: usize = 5;
    const K: usize = 6;
    // rho (32) || K (32) || tr (64) || s1 (L polys) || s2 (K polys) || t0
    const S1: usize = 32 + 32 + 64;
    const S2: usize = S1 + L * POLY_BYTES;
    if secret.len() != MlDsa65Keypair::SECRET_KEY_LEN {
        return Err(KeyError::WrongLength {
            what: "ML-DSA-65 secret key",
            actual: secret.len(),
            expected: MlDsa65Keypair::SECRET_KEY_LEN,
        });
    }
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

    /// A key ring that trusts exactly this signer, verifying with the key pair's backend.
    pub fn verifier(&self) -> KeyRing {
        KeyRing::new()
            .with(self.node_id.clone(), self.public_key().clone())
            .with_backend(self.keypair.backend())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret_key() {
        for &backend in Backend::ALL {
            let pair = MlDsa65Keypair::generate_with(backend);
            let shown = format!("{pair:?}");
            assert!(shown.contains("<redacted>"), "{shown}");
            // No 8-byte window of the secret part of the key appears in hex. The first 32
            // bytes are the public seed rho, which the public key (and its fingerprint) also
            // carries.
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
    }

    #[test]
    fn from_bytes_refuses_a_foreign_secret_key() {
        for &backend in Backend::ALL {
            let a = MlDsa65Keypair::generate_with(backend);
            let b = MlDsa65Keypair::generate_with(backend);
            let err = MlDsa65Keypair::from_bytes(a.public_key().as_bytes(), b.secret_bytes());
            assert_eq!(err.unwrap_err(), KeyError::Mismatch);
            assert!(
                MlDsa65Keypair::from_bytes(a.public_key().as_bytes(), a.secret_bytes()).is_ok()
            );
        }
    }

    #[test]
    fn default_backend_comes_first() {
        assert_eq!(Backend::ALL.first(), Some(&Backend::default()));
        #[cfg(feature = "pqclean")]
        assert_eq!(Backend::default(), Backend::PqClean);
        assert_eq!(MlDsa65Keypair::generate().backend(), Backend::default());
    }
}
