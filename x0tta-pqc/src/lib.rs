//! Post-quantum identity for x0tta6bl4 nodes.
//!
//! This crate gives a node its ML-DSA-65 (FIPS 204) signing key and implements x0tta-core's
//! [`Signer`](x0tta_core::Signer) and [`Verifier`](x0tta_core::Verifier) with it:
//!
//! - [`MlDsa65Keypair`]: generate, sign with a context string, and keep at rest as two raw
//!   files with owner-only permissions ([`save`](MlDsa65Keypair::save),
//!   [`load`](MlDsa65Keypair::load), [`load_or_generate`](MlDsa65Keypair::load_or_generate)).
//!   The secret key is wiped on drop and never shown by `Debug`.
//! - [`MlDsa65Signer`]: a key pair bound to a [`NodeId`](x0tta_core::NodeId); signatures
//!   carry the algorithm name [`ML_DSA_65`].
//! - [`KeyRing`]: the public keys this node trusts; verdicts say why a signature is refused.
//! - [`MlKem768DecapsulationKey`] / [`MlKem768EncapsulationKey`]: ML-KEM-768 (FIPS 203) key
//!   encapsulation on either [`Backend`], with the FIPS 203 input checks on every imported key;
//!   [`SharedSecret`]s and decapsulation keys are wiped on drop and never shown by `Debug`.
//! - `XWingDecapsulationKey` / `XWingEncapsulationKey` (feature `rustcrypto`): the hybrid KEM
//!   X-Wing (X25519 + ML-KEM-768, draft-connolly-cfrg-xwing-kem-06) with a 32-byte seed as the
//!   private key; its ML-KEM half always runs on RustCrypto, which alone derives keys from seeds.
//!
//! Every signature binds one of the [`contexts`](x0tta_core::contexts) (FIPS 204 context
//! strings), so a signature made for one message type never verifies for another.
//!
//! **Backends.** ML-DSA-65 runs on one of two implementations, chosen by crate features and, when both are
//! built, per key pair and per key ring with [`Backend`]:
//!
//! - `pqclean` (default): PQClean's portable C code through `pqcrypto-mldsa`. Its AVX2 and
//!   NEON paths are **disabled**, because PQClean's AVX2 verifier accepts invalid signatures
//!   (Wycheproof); the portable code passes every vector.
//! - `rustcrypto`: RustCrypto's pure-Rust `ml-dsa`. It adds seeded key generation
//!   (`MlDsa65Keypair::from_seed`) and, in the `rustcrypto` module, deterministic signing and
//!   the FIPS 204 internal interface for known-answer tests.
//!
//! With both features, [`Backend::default()`] is PQClean. The backends share every encoding
//! (key files included) and accept each other's signatures. With neither feature the crate
//! does not compile (a `compile_error!` says which features to enable). Contexts longer than
//! 255 bytes are refused here under every backend, because the C code does not report them.
//!
//! **Identity and links** (DESIGN §5, docs/SECURITY_MODEL.md):
//!
//! - [`NodeIdentity`]: Ed25519 (the libp2p PeerId, hence the [`NodeId`](x0tta_core::NodeId)),
//!   ML-DSA-65 and a static ML-KEM-768 key, bound to a [`SpiffeId`] by an
//!   [`IdentityRecord`] both signature keys sign; kept in a key directory
//!   ([`NodeIdentity::load_or_generate`]). It signs with ML-DSA-65 ([`x0tta_core::Signer`]) or
//!   hybrid ML-DSA-65 + Ed25519 ([`NodeIdentity::hybrid`]); [`IdentityRing`] verifies both.
//! - [`handshake`]: the sans-I/O PQ authentication exchange bound to a TLS exporter (ML-DSA-65
//!   on first contact, ML-KEM-768 proof of possession once a peer's record is cached).
//! - `upgrade` (feature `libp2p`): the libp2p security upgrade `/x0tta/pq/1.0.0` — TLS 1.3
//!   with X25519MLKEM768 required, plus that exchange — for `SwarmBuilder::with_tcp`.
//!
//! # Example
//!
//! ```
//! use x0tta_core::{Envelope, NodeId, Signer, Verifier, contexts};
//! use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};
//!
//! # let dir = std::env::temp_dir().join(format!("x0tta-pqc-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // First start creates the key files (0600); later starts load the same key.
//! let keys = MlDsa65Keypair::load_or_generate(&dir)?;
//! let public = keys.public_key().clone();
//! assert_eq!(MlDsa65Keypair::load(&dir)?.public_key(), &public);
//!
//! let me = MlDsa65Signer::new(NodeId::new("node-a")?, keys);
//! let sig = me.sign(contexts::INCIDENT, b"disk full on /var")?;
//! assert_eq!(sig.alg, "ML-DSA-65");
//!
//! // A peer that trusts node-a's public key.
//! let trusted = KeyRing::new().with(NodeId::new("node-a")?, public);
//! assert!(trusted.verify(contexts::INCIDENT, b"disk full on /var", &sig).is_valid());
//! assert!(!trusted.verify(contexts::POLICY, b"disk full on /var", &sig).is_valid());
//!
//! // Signed envelopes from x0tta-core work with any Signer/Verifier pair.
//! let env = Envelope::seal(&me, contexts::GOSSIP, b"hello".to_vec())?;
//! assert_eq!(env.open(&trusted, contexts::GOSSIP)?, b"hello");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dsa;
pub mod handshake;
mod identity;
#[cfg(unix)]
mod identity_file;
#[cfg(any(feature = "pqclean", feature = "rustcrypto"))]
mod kem;
#[cfg(unix)]
mod keyfile;
mod keyring;
pub mod pkix;
#[cfg(feature = "libp2p")]
pub mod upgrade;
#[cfg(feature = "rustcrypto")]
mod xwing;

#[cfg(feature = "rustcrypto")]
pub use dsa::rustcrypto;
pub use dsa::{
    Backend, KeyError, MAX_CONTEXT_LEN, ML_DSA_65, MlDsa65Keypair, MlDsa65PublicKey, MlDsa65Signer,
};
pub use identity::{
    HybridSigner, IDENTITY_CONTEXT, IdentityError, IdentityRecord, IdentityRing, MAX_RECORD_LEN,
    MAX_SPIFFE_ID_LEN, ML_DSA_65_ED25519, NodeIdentity, SpiffeId, node_id_of,
};
#[cfg(unix)]
pub use identity_file::IdentityFileError;
#[cfg(any(feature = "pqclean", feature = "rustcrypto"))]
pub use kem::{
    MlKem768Ciphertext, MlKem768DecapsulationKey, MlKem768EncapsulationKey, MlKemError,
    SharedSecret,
};
#[cfg(unix)]
pub use keyfile::{KeyFileError, LoadError, SaveError};
pub use keyring::KeyRing;
/// The libp2p identity types a [`NodeIdentity`] hands out.
pub use libp2p_identity;
pub use pkix::Pkcs8Error;
#[cfg(feature = "rustcrypto")]
pub use xwing::{XWingCiphertext, XWingDecapsulationKey, XWingEncapsulationKey, XWingError};
