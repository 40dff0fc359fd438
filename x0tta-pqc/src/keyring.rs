//! The set of ML-DSA-65 public keys this node trusts, as x0tta-core's [`Verifier`].
//!
//! It only answers "did this known node sign this"; deciding which nodes to trust (identity
//! records, handshakes, governance) belongs to the callers that fill it.

use std::collections::BTreeMap;
use std::fmt;

use x0tta_core::{NodeId, Rejection, Signature, Verdict, Verifier};

use crate::{Backend, ML_DSA_65, MlDsa65PublicKey};

/// Trusted ML-DSA-65 public keys by node: x0tta-core's [`Verifier`].
///
/// A signature is [`Verdict::Valid`] only if its algorithm is [`ML_DSA_65`], its signer is in
/// the ring, and it verifies under that signer's key for the given message and context.
/// Otherwise the verdict names the first check that failed, in that order:
/// [`Rejection::UnsupportedAlgorithm`], [`Rejection::UnknownSigner`],
/// [`Rejection::BadSignature`].
///
/// Signatures are checked with [`Backend::default()`] unless [`KeyRing::with_backend`] picks
/// another; every backend gives the same verdicts.
///
/// ```
/// use x0tta_core::{NodeId, Rejection, Signer, Verdict, Verifier};
/// use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};
///
/// let a = MlDsa65Signer::new(NodeId::new("a")?, MlDsa65Keypair::generate());
/// let b = MlDsa65Signer::new(NodeId::new("b")?, MlDsa65Keypair::generate());
/// let ring = KeyRing::new().with(NodeId::new("a")?, a.public_key().clone());
///
/// assert!(ring.verify(b"ctx", b"m", &a.sign(b"ctx", b"m")?).is_valid());
/// assert_eq!(
///     ring.verify(b"ctx", b"m", &b.sign(b"ctx", b"m")?),
///     Verdict::Reject(Rejection::UnknownSigner(NodeId::new("b")?)),
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<NodeId, MlDsa65PublicKey>,
    backend: Backend,
}

impl KeyRing {
    /// An empty ring: every signature is rejected as [`Rejection::UnknownSigner`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The ring verifying with `backend`.
    #[must_use]
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The backend signatures are checked with.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The ring with `node` trusted under `key` (replacing any key it had).
    #[must_use]
    pub fn with(mut self, node: NodeId, key: MlDsa65PublicKey) -> Self {
        self.insert(node, key);
        self
    }

    /// Trusts `node` under `key`; returns the key it replaces, if any.
    pub fn insert(&mut self, node: NodeId, key: MlDsa65PublicKey) -> Option<MlDsa65PublicKey> {
        self.keys.insert(node, key)
    }

    /// Stops trusting `node`; returns its key, if it had one.
    pub fn remove(&mut self, node: &NodeId) -> Option<MlDsa65PublicKey> {
        self.keys.remove(node)
    }

    /// The key `node` is trusted under.
    pub fn get(&self, node: &NodeId) -> Option<&MlDsa65PublicKey> {
        self.keys.get(node)
    }

    /// Number of trusted nodes.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no node is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted nodes, in order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.keys.keys()
    }
}

impl FromIterator<(NodeId, MlDsa65PublicKey)> for KeyRing {
    fn from_iter<I: IntoIterator<Item = (NodeId, MlDsa65PublicKey)>>(iter: I) -> Self {
        Self {
            keys: iter.into_iter().collect(),
            backend: Backend::default(),
        }
    }
}

impl Extend<(NodeId, MlDsa65PublicKey)> for KeyRing {
    fn extend<I: IntoIterator<Item = (NodeId, MlDsa65PublicKey)>>(&mut self, iter: I) {
        self.keys.extend(iter);
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Verifier for KeyRing {
    fn verify(&self, context: &[u8], message: &[u8], sig: &Signature) -> Verdict {
        if sig.alg != ML_DSA_65 {
            return Verdict::Reject(Rejection::UnsupportedAlgorithm(sig.alg.clone()));
        }
        match self.keys.get(&sig.signer) {
            None => Verdict::Reject(Rejection::UnknownSigner(sig.signer.clone())),
            Some(key) => key.verify_with(self.backend, context, message, &sig.bytes),
        }
    }
}
