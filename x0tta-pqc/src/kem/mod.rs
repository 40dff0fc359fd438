//! ML-KEM-768 (FIPS 203): key generation, encapsulation and decapsulation over two backends.
//!
//! This module owns the FIPS 203 input checks (length, the encapsulation-key modulus check
//! and the decapsulation-key hash check), so they hold whichever backend runs the maths:
//! PQClean's C code does neither check on its own. It must not log or print key material or
//! shared secrets: every `Debug` here that could show one is redacted.
//!
//! The backends live in `pqclean.rs` and `rustcrypto.rs`; each key remembers the backend that
//! parsed or generated it, and operations on it run on that backend.

use std::fmt;

use sha3::{Digest as _, Sha3_256};
use zeroize::Zeroizing;

use crate::Backend;

#[cfg(feature = "pqclean")]
mod pqclean;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;

/// Length of an encoded ML-KEM-768 encapsulation key (`384·k + 32`, k = 3).
const EK_LEN: usize = 1184;
/// Length of an encoded ML-KEM-768 decapsulation key (`768·k + 96`).
const DK_LEN: usize = 2400;
/// Length of an ML-KEM-768 ciphertext (`32·(d_u·k + d_v)`).
const CT_LEN: usize = 1088;
/// Length of a shared secret, and of each seed half `d`, `z` and of `m`.
const SS_LEN: usize = 32;
/// Bytes of the encoded polynomial vector `t̂` at the start of an encapsulation key.
const T_HAT_LEN: usize = 384 * 3;
/// The ML-KEM modulus q.
const Q: u16 = 3329;

/// An error in ML-KEM-768 input bytes (the FIPS 203 input checks of §7.2 and §7.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MlKemError {
    /// The bytes have the wrong length.
    #[error("{what} is {actual} bytes long, expected {expected}")]
    WrongLength {
        /// What was being parsed (`"ML-KEM-768 encapsulation key"`, …).
        what: &'static str,
        /// Length given.
        actual: usize,
        /// Length required.
        expected: usize,
    },
    /// An encapsulation key failed the FIPS 203 modulus check: a 12-bit coefficient of `t̂`
    /// is not reduced modulo q = 3329.
    #[error("{what}: coefficient {index} is {value}, not reduced modulo 3329")]
    UnreducedCoefficient {
        /// `"ML-KEM-768 encapsulation key"`, or the one embedded in a decapsulation key.
        what: &'static str,
        /// Index of the coefficient (0..768) in `t̂`.
        index: usize,
        /// Its value, 3329..=4095.
        value: u16,
    },
    /// A decapsulation key failed the FIPS 203 hash check: its stored `H(ek)` does not match
    /// the encapsulation key embedded in it.
    #[error("the ML-KEM-768 decapsulation key is corrupt: H(ek) does not match its ek")]
    HashMismatch,
    /// The backend refused bytes that passed the checks above. Not expected to happen; it
    /// would mean the backend checks something this crate does not.
    #[error("the {} backend refused the {what}", backend.name())]
    BackendRejected {
        /// What was being parsed.
        what: &'static str,
        /// The backend that refused it.
        backend: Backend,
    },
}

const EK_WHAT: &str = "ML-KEM-768 encapsulation key";
const DK_EK_WHAT: &str = "encapsulation key inside the ML-KEM-768 decapsulation key";
const DK_WHAT: &str = "ML-KEM-768 decapsulation key";
const CT_WHAT: &str = "ML-KEM-768 ciphertext";

fn check_len<'a, const N: usize>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8; N], MlKemError> {
    bytes.try_into().map_err(|_| MlKemError::WrongLength {
        what,
        actual: bytes.len(),
        expected: N,
    })
}

/// FIPS 203 §7.2 modulus check: `ByteEncode12(ByteDecode12(t̂)) == t̂`, i.e. every 12-bit
/// coefficient is below q. Runs in time independent of the (public) key's content up to the
/// first failure.
fn modulus_check(what: &'static str, ek: &[u8; EK_LEN]) -> Result<(), MlKemError> {
    for (i, c) in ek[..T_HAT_LEN].chunks_exact(3).enumerate() {
        let lo = u16::from(c[0]) | (u16::from(c[1] & 0x0f) << 8);
        let hi = u16::from(c[1] >> 4) | (u16::from(c[2]) << 4);
        for (j, value) in [lo, hi].into_iter().enumerate() {
            if value >= Q {
                return Err(MlKemError::UnreducedCoefficient {
                    what,
                    index: 2 * i + j,
                    value,
                });
            }
        }
    }
    Ok(())
}

/// An ML-KEM-768 encapsulation (public) key: raw FIPS 203 encoding,
/// [`MlKem768EncapsulationKey::LEN`] bytes.
///
/// Every value of this type has passed the FIPS 203 modulus check. `Debug` shows the first
/// 8 bytes.
///
/// ```
/// use x0tta_pqc::{MlKem768DecapsulationKey, MlKem768EncapsulationKey, MlKemError};
///
/// let dk = MlKem768DecapsulationKey::generate();
/// let ek = MlKem768EncapsulationKey::from_bytes(dk.encapsulation_key().as_bytes())?;
/// let (ct, sender_secret) = ek.encapsulate();
/// assert_eq!(dk.decapsulate(&ct), sender_secret);
///
/// // A coefficient of 0xfff is not reduced modulo q = 3329.
/// let mut bad = ek.as_bytes().to_vec();
/// bad[0] = 0xff;
/// bad[1] |= 0x0f;
/// assert!(matches!(
///     MlKem768EncapsulationKey::from_bytes(&bad),
///     Err(MlKemError::UnreducedCoefficient { index: 0, value: 4095, .. })
/// ));
/// # Ok::<(), MlKemError>(())
/// ```
#[derive(Clone)]
pub struct MlKem768EncapsulationKey(EkInner);

#[derive(Clone)]
enum EkInner {
    #[cfg(feature = "pqclean")]
    PqClean(pqclean::Ek),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(rustcrypto::Ek),
}

impl MlKem768EncapsulationKey {
    /// Length of an encoded encapsulation key: 1184 bytes.
    pub const LEN: usize = EK_LEN;

    /// Parses and checks a raw FIPS 203 encapsulation key for the [default](Backend::default)
    /// backend.
    ///
    /// Fails with [`MlKemError::WrongLength`] or, for the FIPS 203 modulus check,
    /// [`MlKemError::UnreducedCoefficient`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlKemError> {
        Self::from_bytes_with(Backend::default(), bytes)
    }

    /// [`from_bytes`](Self::from_bytes) for the given backend.
    pub fn from_bytes_with(backend: Backend, bytes: &[u8]) -> Result<Self, MlKemError> {
        Self::parse(backend, EK_WHAT, bytes)
    }

    fn parse(backend: Backend, what: &'static str, bytes: &[u8]) -> Result<Self, MlKemError> {
        let bytes = check_len::<EK_LEN>(what, bytes)?;
        modulus_check(what, bytes)?;
        let rejected = MlKemError::BackendRejected { what, backend };
        Ok(Self(match backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => EkInner::PqClean(pqclean::Ek::new(bytes).ok_or(rejected)?),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => EkInner::RustCrypto(rustcrypto::Ek::new(bytes).ok_or(rejected)?),
        }))
    }

    /// The raw FIPS 203 encoding.
    pub fn as_bytes(&self) -> &[u8; EK_LEN] {
        match &self.0 {
            #[cfg(feature = "pqclean")]
            EkInner::PqClean(k) => k.as_bytes(),
            #[cfg(feature = "rustcrypto")]
            EkInner::RustCrypto(k) => k.as_bytes(),
        }
    }

    /// The backend this key runs on.
    pub fn backend(&self) -> Backend {
        match &self.0 {
            #[cfg(feature = "pqclean")]
            EkInner::PqClean(_) => Backend::PqClean,
            #[cfg(feature = "rustcrypto")]
            EkInner::RustCrypto(_) => Backend::RustCrypto,
        }
    }

    /// Makes a fresh shared secret and the ciphertext that carries it to the holder of the
    /// decapsulation key (FIPS 203 `ML-KEM.Encaps`), with randomness from the operating
    /// system.
    pub fn encapsulate(&self) -> (MlKem768Ciphertext, SharedSecret) {
        let (ct, ss) = match &self.0 {
            #[cfg(feature = "pqclean")]
            EkInner::PqClean(k) => k.encapsulate(),
            #[cfg(feature = "rustcrypto")]
            EkInner::RustCrypto(k) => k.encapsulate(),
        };
        (MlKem768Ciphertext(ct), SharedSecret(ss))
    }

    /// FIPS 203 `ML-KEM.Encaps_internal`: encapsulation with caller-supplied randomness `m`.
    /// Always runs on the RustCrypto backend (PQClean has no such entry point), whatever
    /// [`backend`](Self::backend) says.
    ///
    /// **For known-answer tests only.** `m` must be 32 fresh uniformly random bytes that are
    /// never used again: anyone who learns or guesses `m` learns the shared secret.
    ///
    /// ```
    /// use x0tta_pqc::MlKem768DecapsulationKey;
    ///
    /// let dk = MlKem768DecapsulationKey::generate_from_seed(&[1; 32], &[2; 32]);
    /// let (ct1, k1) = dk.encapsulation_key().encapsulate_deterministic(&[3; 32]);
    /// let (ct2, k2) = dk.encapsulation_key().encapsulate_deterministic(&[3; 32]);
    /// assert_eq!((&ct1, &k1), (&ct2, &k2));
    /// assert_eq!(dk.decapsulate(&ct1), k1);
    /// ```
    #[cfg(feature = "rustcrypto")]
    pub fn encapsulate_deterministic(&self, m: &[u8; 32]) -> (MlKem768Ciphertext, SharedSecret) {
        let (ct, ss) = match &self.0 {
            EkInner::RustCrypto(k) => k.encapsulate_deterministic(m),
            #[allow(unreachable_patterns)]
            _ => match rustcrypto::Ek::new(self.as_bytes()) {
                Some(k) => k.encapsulate_deterministic(m),
                None => unreachable!("a checked encapsulation key parses on every backend"),
            },
        };
        (MlKem768Ciphertext(ct), SharedSecret(ss))
    }
}

impl PartialEq for MlKem768EncapsulationKey {
    /// Compares the encodings; keys on different backends can be equal.
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MlKem768EncapsulationKey {}

impl fmt::Debug for MlKem768EncapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlKem768EncapsulationKey(")?;
        for b in self.as_bytes().iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…, {})", self.backend().name())
    }
}

/// An ML-KEM-768 decapsulation (secret) key, with its encapsulation key.
///
/// The secret is wiped when the key is dropped and never appears in `Debug` output. Not
/// `Clone`, so there is one copy to wipe. Its raw form is the FIPS 203 expanded encoding of
/// [`MlKem768DecapsulationKey::LEN`] bytes (`dk_PKE ‖ ek ‖ H(ek) ‖ z`).
///
/// ```
/// use x0tta_pqc::{Backend, MlKem768Ciphertext, MlKem768DecapsulationKey};
///
/// // The receiver publishes its encapsulation key.
/// let dk = MlKem768DecapsulationKey::generate();
/// let ek = dk.encapsulation_key().clone();
///
/// // The sender encapsulates and sends the ciphertext.
/// let (ct, sent) = ek.encapsulate();
/// let wire = ct.as_bytes().to_vec();
///
/// // The receiver decapsulates the same 32-byte secret.
/// let received = dk.decapsulate(&MlKem768Ciphertext::from_bytes(&wire)?);
/// assert_eq!(received, sent);
///
/// // The secret key round-trips through its raw encoding, on any enabled backend.
/// for &backend in Backend::ALL {
///     let again = MlKem768DecapsulationKey::from_bytes_with(backend, &dk.to_bytes())?;
///     assert_eq!(again.decapsulate(&ct), sent);
/// }
/// # Ok::<(), x0tta_pqc::MlKemError>(())
/// ```
pub struct MlKem768DecapsulationKey {
    inner: DkInner,
    ek: MlKem768EncapsulationKey,
}

enum DkInner {
    #[cfg(feature = "pqclean")]
    PqClean(pqclean::Dk),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(rustcrypto::Dk),
}

impl MlKem768DecapsulationKey {
    /// Length of an encoded decapsulation key: 2400 bytes.
    pub const LEN: usize = DK_LEN;
    /// Length of a seed `d ‖ z` for [`from_seed`](Self::from_seed): 64 bytes.
    #[cfg(feature = "rustcrypto")]
    pub const SEED_LEN: usize = 64;

    /// Generates a fresh key pair (FIPS 203 `ML-KEM.KeyGen`) on the
    /// [default](Backend::default) backend, with randomness from the operating system.
    pub fn generate() -> Self {
        Self::generate_with(Backend::default())
    }

    /// [`generate`](Self::generate) on the given backend.
    pub fn generate_with(backend: Backend) -> Self {
        match backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => {
                let (dk, ek) = pqclean::Dk::generate();
                Self {
                    inner: DkInner::PqClean(dk),
                    ek: MlKem768EncapsulationKey(EkInner::PqClean(ek)),
                }
            }
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => Self::from_rustcrypto(rustcrypto::Dk::generate()),
        }
    }

    /// FIPS 203 `ML-KEM.KeyGen_internal`: the key pair determined by the 32-byte seeds `d`
    /// and `z`. Always runs on the RustCrypto backend (PQClean has no such entry point).
    ///
    /// The seeds are the whole secret: keep them like the key itself. They must come from a
    /// cryptographically secure random source.
    ///
    /// ```
    /// use x0tta_pqc::MlKem768DecapsulationKey;
    ///
    /// let a = MlKem768DecapsulationKey::generate_from_seed(&[7; 32], &[9; 32]);
    /// let b = MlKem768DecapsulationKey::generate_from_seed(&[7; 32], &[9; 32]);
    /// assert_eq!(a.encapsulation_key(), b.encapsulation_key());
    /// assert_eq!(*a.to_bytes(), *b.to_bytes());
    /// ```
    #[cfg(feature = "rustcrypto")]
    pub fn generate_from_seed(d: &[u8; 32], z: &[u8; 32]) -> Self {
        Self::from_rustcrypto(rustcrypto::Dk::from_seed(d, z))
    }

    /// [`generate_from_seed`](Self::generate_from_seed) with the 64-byte seed `d ‖ z` (the
    /// seed format of Wycheproof and of the IETF ML-KEM private-key encoding). Fails with
    /// [`MlKemError::WrongLength`] unless `seed` is [`SEED_LEN`](Self::SEED_LEN) bytes.
    ///
    /// ```
    /// use x0tta_pqc::MlKem768DecapsulationKey;
    ///
    /// let a = MlKem768DecapsulationKey::from_seed(&[5; 64])?;
    /// let b = MlKem768DecapsulationKey::generate_from_seed(&[5; 32], &[5; 32]);
    /// assert_eq!(a.encapsulation_key(), b.encapsulation_key());
    /// assert!(MlKem768DecapsulationKey::from_seed(&[5; 63]).is_err());
    /// # Ok::<(), x0tta_pqc::MlKemError>(())
    /// ```
    #[cfg(feature = "rustcrypto")]
    pub fn from_seed(seed: &[u8]) -> Result<Self, MlKemError> {
        let seed = check_len::<64>("ML-KEM-768 seed (d ‖ z)", seed)?;
        let (d, z) = seed.split_at(32);
        let (Ok(d), Ok(z)) = (d.try_into(), z.try_into()) else {
            unreachable!("64 bytes split into two halves of 32");
        };
        Ok(Self::generate_from_seed(d, z))
    }

    #[cfg(feature = "rustcrypto")]
    fn from_rustcrypto(dk: rustcrypto::Dk) -> Self {
        let ek = MlKem768EncapsulationKey(EkInner::RustCrypto(dk.encapsulation_key()));
        Self {
            inner: DkInner::RustCrypto(dk),
            ek,
        }
    }

    /// Parses and checks a raw FIPS 203 decapsulation key for the
    /// [default](Backend::default) backend, e.g. one read from a key store.
    ///
    /// Runs the FIPS 203 §7.3 checks: the length ([`MlKemError::WrongLength`]) and the hash
    /// check ([`MlKemError::HashMismatch`]: the stored `H(ek)` must match the embedded `ek`).
    /// The embedded `ek` must also pass the modulus check
    /// ([`MlKemError::UnreducedCoefficient`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlKemError> {
        Self::from_bytes_with(Backend::default(), bytes)
    }

    /// [`from_bytes`](Self::from_bytes) for the given backend.
    pub fn from_bytes_with(backend: Backend, bytes: &[u8]) -> Result<Self, MlKemError> {
        let bytes = check_len::<DK_LEN>(DK_WHAT, bytes)?;
        let ek_bytes = &bytes[T_HAT_LEN..T_HAT_LEN + EK_LEN];
        let h = &bytes[T_HAT_LEN + EK_LEN..T_HAT_LEN + EK_LEN + 32];
        let ek = MlKem768EncapsulationKey::parse(backend, DK_EK_WHAT, ek_bytes)?;
        if Sha3_256::digest(ek_bytes).as_slice() != h {
            return Err(MlKemError::HashMismatch);
        }
        let rejected = MlKemError::BackendRejected {
            what: DK_WHAT,
            backend,
        };
        let inner = match backend {
            #[cfg(feature = "pqclean")]
            Backend::PqClean => DkInner::PqClean(pqclean::Dk::new(bytes).ok_or(rejected)?),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => DkInner::RustCrypto(rustcrypto::Dk::new(bytes).ok_or(rejected)?),
        };
        Ok(Self { inner, ek })
    }

    /// The raw FIPS 203 encoding, [`LEN`](Self::LEN) bytes, in a buffer wiped on drop.
    ///
    /// This is the secret key: write it only where [`from_bytes`](Self::from_bytes) will read
    /// it back, e.g. a key file with owner-only permissions.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        match &self.inner {
            #[cfg(feature = "pqclean")]
            DkInner::PqClean(k) => k.to_bytes(),
            #[cfg(feature = "rustcrypto")]
            DkInner::RustCrypto(k) => k.to_bytes(),
        }
    }

    /// The matching encapsulation key, to publish.
    pub fn encapsulation_key(&self) -> &MlKem768EncapsulationKey {
        &self.ek
    }

    /// The backend this key runs on.
    pub fn backend(&self) -> Backend {
        self.ek.backend()
    }

    /// Recovers the shared secret from a ciphertext (FIPS 203 `ML-KEM.Decaps`).
    ///
    /// Never fails: a ciphertext that was not made for this key yields a pseudorandom secret
    /// (implicit rejection) that matches nobody's, so the mismatch shows up at the first
    /// authenticated message, and an attacker learns nothing from the outcome.
    pub fn decapsulate(&self, ct: &MlKem768Ciphertext) -> SharedSecret {
        SharedSecret(match &self.inner {
            #[cfg(feature = "pqclean")]
            DkInner::PqClean(k) => k.decapsulate(&ct.0),
            #[cfg(feature = "rustcrypto")]
            DkInner::RustCrypto(k) => k.decapsulate(&ct.0),
        })
    }
}

impl fmt::Debug for MlKem768DecapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlKem768DecapsulationKey")
            .field("ek", &self.ek)
            .finish_non_exhaustive()
    }
}

/// An ML-KEM-768 ciphertext: [`MlKem768Ciphertext::LEN`] bytes.
///
/// Any string of that length is a ciphertext; one not made for the decapsulation key just
/// decapsulates to an unrelated secret.
///
/// ```
/// use x0tta_pqc::MlKem768Ciphertext;
///
/// assert!(MlKem768Ciphertext::from_bytes(&[0; 1088]).is_ok());
/// assert!(MlKem768Ciphertext::from_bytes(&[0; 1087]).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MlKem768Ciphertext(Box<[u8; CT_LEN]>);

impl MlKem768Ciphertext {
    /// Length of a ciphertext: 1088 bytes.
    pub const LEN: usize = CT_LEN;

    /// Takes a ciphertext received from a peer. Fails with [`MlKemError::WrongLength`] only.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlKemError> {
        check_len::<CT_LEN>(CT_WHAT, bytes).map(|b| Self(Box::new(*b)))
    }

    /// The raw bytes, to send.
    pub fn as_bytes(&self) -> &[u8; CT_LEN] {
        &self.0
    }
}

impl fmt::Debug for MlKem768Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MlKem768Ciphertext(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// The 32-byte secret that encapsulation and decapsulation agree on.
///
/// Wiped on drop, redacted from `Debug`, compared in constant time, and not `Clone`. Feed it
/// to a KDF rather than using it as a key directly when more than one key is needed.
///
/// ```
/// use x0tta_pqc::MlKem768DecapsulationKey;
///
/// let dk = MlKem768DecapsulationKey::generate();
/// let (_, secret) = dk.encapsulation_key().encapsulate();
/// assert_eq!(secret.as_bytes().len(), 32);
/// assert_eq!(format!("{secret:?}"), "SharedSecret(<redacted>)");
/// ```
pub struct SharedSecret(pub(crate) Zeroizing<[u8; SS_LEN]>);

impl SharedSecret {
    /// Length of a shared secret: 32 bytes.
    pub const LEN: usize = SS_LEN;

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8; SS_LEN] {
        &self.0
    }
}

impl PartialEq for SharedSecret {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl Eq for SharedSecret {}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_check_finds_each_coefficient() {
        let mut ek = [0u8; EK_LEN];
        assert!(modulus_check(EK_WHAT, &ek).is_ok());
        // Coefficient 1 (high nibble of byte 1, all of byte 2) = q.
        ek[1] = ((Q & 0x0f) << 4) as u8;
        ek[2] = (Q >> 4) as u8;
        assert_eq!(
            modulus_check(EK_WHAT, &ek),
            Err(MlKemError::UnreducedCoefficient {
                what: EK_WHAT,
                index: 1,
                value: Q
            })
        );
        // q - 1 is fine; ρ (the last 32 bytes) is not checked.
        ek[1] = (((Q - 1) & 0x0f) << 4) as u8;
        ek[2] = ((Q - 1) >> 4) as u8;
        ek[EK_LEN - 32..].fill(0xff);
        assert!(modulus_check(EK_WHAT, &ek).is_ok());
    }

    #[test]
    fn backends_are_listed_default_first() {
        assert_eq!(Backend::ALL.first(), Some(&Backend::default()));
    }
}
