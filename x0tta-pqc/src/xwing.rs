//! X-Wing: the hybrid KEM X25519 + ML-KEM-768 (draft-connolly-cfrg-xwing-kem-06, the draft
//! RustCrypto's `x-wing` 0.1.1 implements).
//!
//! This module owns the seed expansion, the X25519 half and the combiner. It reuses the
//! crate's ML-KEM-768 types for the post-quantum half, so the FIPS 203 modulus check runs on
//! every imported encapsulation key. It must not log or print secrets: the seed, the
//! expanded keys and the intermediate secrets this module holds are wiped on drop (copies
//! the compiler leaves on the stack are beyond reach), and no `Debug` shows them.
//!
//! **Why only with `rustcrypto`.** The private key is a 32-byte seed that SHAKE256 expands to
//! the ML-KEM seeds `d ‖ z` and the X25519 secret. Deriving the ML-KEM key from `(d, z)`
//! (FIPS 203 `KeyGen_internal`) is available only on RustCrypto's `ml-kem`; PQClean has no
//! seeded entry point. Rather than derive on one backend and run on another, the ML-KEM half
//! of X-Wing always runs on [`Backend::RustCrypto`], whatever [`Backend::default()`] is: one
//! code path, the same one as the `x-wing` reference crate, and deterministic encapsulation
//! for known-answer tests comes for free.
//!
//! **Non-contributory X25519.** Like draft-06 and `x-wing`'s default `DecapsulationKey`, a
//! ciphertext whose X25519 share is a low-order point (all-zero Diffie-Hellman output) is not
//! refused: decapsulation stays infallible, and the secret still depends on the ML-KEM half.

use std::fmt;

use sha3::{Digest as _, Sha3_256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize as _, Zeroizing};

use crate::{
    Backend, MlKem768Ciphertext, MlKem768DecapsulationKey, MlKem768EncapsulationKey, MlKemError,
    SharedSecret,
};

/// Length of an ML-KEM-768 encapsulation key, the first part of an X-Wing one.
const PK_M_LEN: usize = MlKem768EncapsulationKey::LEN;
/// Length of an ML-KEM-768 ciphertext, the first part of an X-Wing one.
const CT_M_LEN: usize = MlKem768Ciphertext::LEN;
/// Length of an X25519 public key, secret and shared secret.
const X25519_LEN: usize = 32;
/// Length of an X-Wing encapsulation key: `pk_M ‖ pk_X`.
const EK_LEN: usize = PK_M_LEN + X25519_LEN;
/// Length of an X-Wing ciphertext: `ct_M ‖ ct_X`.
const CT_LEN: usize = CT_M_LEN + X25519_LEN;
/// Length of the private key (the seed).
const SEED_LEN: usize = 32;
/// Length of the encapsulation randomness `eseed`: 32 bytes for ML-KEM, then 32 for X25519.
const ESEED_LEN: usize = 64;

/// The draft's `XWingLabel`, the ASCII art `\.//^\` (hex `5c2e2f2f5e5c`).
const XWING_LABEL: &[u8; 6] = br"\.//^\";

const EK_WHAT: &str = "X-Wing encapsulation key";
const CT_WHAT: &str = "X-Wing ciphertext";
const SEED_WHAT: &str = "X-Wing decapsulation key (seed)";

/// An error in X-Wing input bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XWingError {
    /// The bytes have the wrong length.
    #[error("{what} is {actual} bytes long, expected {expected}")]
    WrongLength {
        /// What was being parsed (`"X-Wing encapsulation key"`, …).
        what: &'static str,
        /// Length given.
        actual: usize,
        /// Length required.
        expected: usize,
    },
    /// The ML-KEM-768 encapsulation key in bytes `0..1184` of an X-Wing encapsulation key
    /// failed the FIPS 203 checks; the source says which.
    #[error("the ML-KEM-768 part (bytes 0..1184) of the X-Wing encapsulation key is invalid")]
    InvalidMlKemKey(#[source] MlKemError),
}

fn check_len<'a, const N: usize>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8; N], XWingError> {
    bytes.try_into().map_err(|_| XWingError::WrongLength {
        what,
        actual: bytes.len(),
        expected: N,
    })
}

/// An X-Wing encapsulation (public) key: `pk_M ‖ pk_X`, the ML-KEM-768 encapsulation key
/// (1184 bytes) then the X25519 public key (32 bytes), [`XWingEncapsulationKey::LEN`] bytes.
///
/// Every value has passed the FIPS 203 modulus check on its ML-KEM half. The X25519 half is
/// any 32 bytes, as in the draft. `Debug` shows the first 8 bytes.
///
/// ```
/// use x0tta_pqc::{XWingDecapsulationKey, XWingEncapsulationKey, XWingError};
///
/// let dk = XWingDecapsulationKey::generate();
/// let ek = XWingEncapsulationKey::from_bytes(dk.encapsulation_key().as_bytes())?;
/// let (ct, sent) = ek.encapsulate();
/// assert_eq!(dk.decapsulate(&ct), sent);
///
/// // A coefficient of 0xfff in the ML-KEM half is not reduced modulo q = 3329.
/// let mut bad = ek.as_bytes().to_vec();
/// bad[0] = 0xff;
/// bad[1] |= 0x0f;
/// assert!(matches!(
///     XWingEncapsulationKey::from_bytes(&bad),
///     Err(XWingError::InvalidMlKemKey(_))
/// ));
/// assert!(matches!(
///     XWingEncapsulationKey::from_bytes(&bad[..1184]),
///     Err(XWingError::WrongLength { actual: 1184, expected: 1216, .. })
/// ));
/// # Ok::<(), XWingError>(())
/// ```
#[derive(Clone)]
pub struct XWingEncapsulationKey {
    bytes: Box<[u8; EK_LEN]>,
    pk_m: MlKem768EncapsulationKey,
    pk_x: PublicKey,
}

impl XWingEncapsulationKey {
    /// Length of an encoded encapsulation key: 1216 bytes.
    pub const LEN: usize = EK_LEN;
    /// Length of the `eseed` that
    /// [`encapsulate_deterministic`](Self::encapsulate_deterministic) takes: 64 bytes.
    pub const ESEED_LEN: usize = ESEED_LEN;

    /// Parses and checks an encoded X-Wing encapsulation key.
    ///
    /// Fails with [`XWingError::WrongLength`], or with [`XWingError::InvalidMlKemKey`] when
    /// the ML-KEM-768 half fails the FIPS 203 modulus check.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, XWingError> {
        let bytes = check_len::<EK_LEN>(EK_WHAT, bytes)?;
        let pk_m =
            MlKem768EncapsulationKey::from_bytes_with(Backend::RustCrypto, &bytes[..PK_M_LEN])
                .map_err(XWingError::InvalidMlKemKey)?;
        let mut pk_x = [0u8; X25519_LEN];
        pk_x.copy_from_slice(&bytes[PK_M_LEN..]);
        Ok(Self {
            bytes: Box::new(*bytes),
            pk_m,
            pk_x: PublicKey::from(pk_x),
        })
    }

    fn from_parts(pk_m: MlKem768EncapsulationKey, pk_x: PublicKey) -> Self {
        let mut bytes = Box::new([0u8; EK_LEN]);
        bytes[..PK_M_LEN].copy_from_slice(pk_m.as_bytes());
        bytes[PK_M_LEN..].copy_from_slice(pk_x.as_bytes());
        Self { bytes, pk_m, pk_x }
    }

    /// The encoding `pk_M ‖ pk_X`, to publish.
    pub fn as_bytes(&self) -> &[u8; EK_LEN] {
        &self.bytes
    }

    /// Makes a fresh shared secret and the ciphertext that carries it to the holder of the
    /// decapsulation key (the draft's `Encapsulate`), with 64 bytes of randomness from the
    /// operating system.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails, as
    /// [`MlKem768EncapsulationKey::encapsulate`] does.
    pub fn encapsulate(&self) -> (XWingCiphertext, SharedSecret) {
        let mut eseed = Zeroizing::new([0u8; ESEED_LEN]);
        // getrandom 0.4, as re-exported through ml-kem, is the OS RNG the ML-KEM code uses.
        if let Err(e) = ml_kem::kem::common::getrandom::fill(&mut eseed[..]) {
            panic!("the operating system's random number generator failed: {e}");
        }
        self.encapsulate_deterministic(&eseed)
    }

    /// The draft's `EncapsulateDerand`: encapsulation with caller-supplied randomness
    /// `eseed`. Its first 32 bytes are ML-KEM-768's `m`, its last 32 bytes the ephemeral
    /// X25519 secret.
    ///
    /// **For known-answer tests only.** `eseed` must be 64 fresh uniformly random bytes that
    /// are never used again: anyone who learns or guesses it learns the shared secret. The
    /// ML-KEM half is deterministic only on the RustCrypto backend (PQClean's C code draws
    /// its own randomness), which is one reason X-Wing needs the `rustcrypto` feature.
    ///
    /// ```
    /// use x0tta_pqc::XWingDecapsulationKey;
    ///
    /// let dk = XWingDecapsulationKey::from_seed(&[1; 32]);
    /// let (ct1, k1) = dk.encapsulation_key().encapsulate_deterministic(&[3; 64]);
    /// let (ct2, k2) = dk.encapsulation_key().encapsulate_deterministic(&[3; 64]);
    /// assert_eq!((&ct1, &k1), (&ct2, &k2));
    /// assert_eq!(dk.decapsulate(&ct1), k1);
    /// ```
    pub fn encapsulate_deterministic(
        &self,
        eseed: &[u8; ESEED_LEN],
    ) -> (XWingCiphertext, SharedSecret) {
        let mut m = Zeroizing::new([0u8; 32]);
        m.copy_from_slice(&eseed[..32]);
        let mut ek_x = Zeroizing::new([0u8; X25519_LEN]);
        ek_x.copy_from_slice(&eseed[32..]);

        let (ct_m, ss_m) = self.pk_m.encapsulate_deterministic(&m);
        let ek_x = StaticSecret::from(*ek_x);
        let ct_x = PublicKey::from(&ek_x);
        let ss_x = ek_x.diffie_hellman(&self.pk_x);

        let ss = combiner(
            &ss_m,
            ss_x.as_bytes(),
            ct_x.as_bytes(),
            self.pk_x.as_bytes(),
        );
        let mut ct = Box::new([0u8; CT_LEN]);
        ct[..CT_M_LEN].copy_from_slice(ct_m.as_bytes());
        ct[CT_M_LEN..].copy_from_slice(ct_x.as_bytes());
        (XWingCiphertext(ct), ss)
    }
}

impl PartialEq for XWingEncapsulationKey {
    /// Compares the encodings.
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for XWingEncapsulationKey {}

impl fmt::Debug for XWingEncapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XWingEncapsulationKey(")?;
        for b in self.bytes.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// The secret half of an X-Wing key pair, held as its 32-byte seed.
///
/// The seed is the private key of the draft (`sk`), and the only thing to store:
/// [`from_seed`](Self::from_seed) re-derives everything else. The expanded keys are cached so
/// decapsulation does not repeat the expansion. All of it is wiped on drop and none of it
/// appears in `Debug`; not `Clone`, so there is one copy to wipe.
///
/// Needs the `rustcrypto` feature; its ML-KEM half always runs on RustCrypto's `ml-kem`
/// (see [`Backend`]).
///
/// ```
/// use x0tta_pqc::{XWingCiphertext, XWingDecapsulationKey};
///
/// // The receiver publishes its encapsulation key.
/// let dk = XWingDecapsulationKey::generate();
/// let ek = dk.encapsulation_key().clone();
///
/// // The sender encapsulates and sends the ciphertext.
/// let (ct, sent) = ek.encapsulate();
/// let wire = ct.as_bytes().to_vec();
///
/// // The receiver decapsulates the same 32-byte secret.
/// let received = dk.decapsulate(&XWingCiphertext::from_bytes(&wire)?);
/// assert_eq!(received, sent);
///
/// // The 32-byte seed is the whole private key.
/// let again = XWingDecapsulationKey::from_seed(&dk.to_seed());
/// assert_eq!(again.encapsulation_key(), &ek);
/// assert_eq!(format!("{again:?}").contains("seed"), false);
/// # Ok::<(), x0tta_pqc::XWingError>(())
/// ```
pub struct XWingDecapsulationKey {
    // Boxed so moving the key does not leave copies of the secrets behind.
    secret: Box<Secret>,
    sk_m: MlKem768DecapsulationKey,
    ek: XWingEncapsulationKey,
}

/// The seed and the X25519 secret; `StaticSecret` wipes itself (feature `zeroize`).
struct Secret {
    seed: Zeroizing<[u8; SEED_LEN]>,
    sk_x: StaticSecret,
}

impl XWingDecapsulationKey {
    /// Length of the private key (the seed): 32 bytes.
    pub const SEED_LEN: usize = SEED_LEN;

    /// Generates a fresh key pair (the draft's `GenerateKeyPair`): 32 random bytes from the
    /// operating system, expanded with [`from_seed`](Self::from_seed).
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails, as
    /// [`MlKem768DecapsulationKey::generate`] does.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        if let Err(e) = ml_kem::kem::common::getrandom::fill(&mut seed[..]) {
            panic!("the operating system's random number generator failed: {e}");
        }
        Self::from_seed(&seed)
    }

    /// The key pair determined by a 32-byte seed (the draft's
    /// `GenerateKeyPairDerand` and `expandDecapsulationKey`): `SHAKE256(seed, 96)` gives the
    /// ML-KEM-768 seeds `d`, `z` (FIPS 203 `KeyGen_internal`) and the X25519 secret.
    ///
    /// The seed is the whole secret: keep it like the key itself. It must come from a
    /// cryptographically secure random source.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        // Scoped here: `shake`'s `Update` clashes with `sha3`'s `Digest::update`.
        use shake::{ExtendableOutput as _, Shake256, Update as _, XofReader as _};

        let mut expanded = Zeroizing::new([0u8; 96]);
        let mut xof = Shake256::default();
        xof.update(seed);
        xof.finalize_xof().read(&mut expanded[..]);

        let mut d = Zeroizing::new([0u8; 32]);
        let mut z = Zeroizing::new([0u8; 32]);
        let mut sk_x = Zeroizing::new([0u8; X25519_LEN]);
        d.copy_from_slice(&expanded[..32]);
        z.copy_from_slice(&expanded[32..64]);
        sk_x.copy_from_slice(&expanded[64..]);

        let sk_m = MlKem768DecapsulationKey::generate_from_seed(&d, &z);
        let secret = Box::new(Secret {
            seed: Zeroizing::new(*seed),
            sk_x: StaticSecret::from(*sk_x),
        });
        let pk_x = PublicKey::from(&secret.sk_x);
        let ek = XWingEncapsulationKey::from_parts(sk_m.encapsulation_key().clone(), pk_x);
        Self { secret, sk_m, ek }
    }

    /// [`from_seed`](Self::from_seed) from a slice, e.g. read from a key store. Fails with
    /// [`XWingError::WrongLength`] unless `bytes` is [`SEED_LEN`](Self::SEED_LEN) bytes.
    ///
    /// ```
    /// use x0tta_pqc::XWingDecapsulationKey;
    ///
    /// let a = XWingDecapsulationKey::from_bytes(&[5; 32])?;
    /// assert_eq!(a.encapsulation_key(), XWingDecapsulationKey::from_seed(&[5; 32]).encapsulation_key());
    /// assert!(XWingDecapsulationKey::from_bytes(&[5; 64]).is_err());
    /// # Ok::<(), x0tta_pqc::XWingError>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, XWingError> {
        check_len::<SEED_LEN>(SEED_WHAT, bytes).map(Self::from_seed)
    }

    /// The 32-byte seed, in a buffer wiped on drop.
    ///
    /// This is the private key: write it only where [`from_seed`](Self::from_seed) will read
    /// it back, e.g. a key file with owner-only permissions.
    pub fn to_seed(&self) -> Zeroizing<[u8; SEED_LEN]> {
        self.secret.seed.clone()
    }

    /// The matching encapsulation key, to publish.
    pub fn encapsulation_key(&self) -> &XWingEncapsulationKey {
        &self.ek
    }

    /// Recovers the shared secret from a ciphertext (the draft's `Decapsulate`).
    ///
    /// Never fails: a ciphertext that was not made for this key yields a secret that matches
    /// nobody's (ML-KEM's implicit rejection, and a different X25519 share), so the mismatch
    /// shows up at the first authenticated message.
    pub fn decapsulate(&self, ct: &XWingCiphertext) -> SharedSecret {
        let Ok(ct_m) = MlKem768Ciphertext::from_bytes(&ct.0[..CT_M_LEN]) else {
            unreachable!("an X-Wing ciphertext starts with {CT_M_LEN} bytes of ML-KEM");
        };
        let mut ct_x = [0u8; X25519_LEN];
        ct_x.copy_from_slice(&ct.0[CT_M_LEN..]);

        let ss_m = self.sk_m.decapsulate(&ct_m);
        let ss_x = self.secret.sk_x.diffie_hellman(&PublicKey::from(ct_x));
        combiner(&ss_m, ss_x.as_bytes(), &ct_x, self.ek.pk_x.as_bytes())
    }
}

impl fmt::Debug for XWingDecapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XWingDecapsulationKey")
            .field("ek", &self.ek)
            .finish_non_exhaustive()
    }
}

/// An X-Wing ciphertext: `ct_M ‖ ct_X`, the ML-KEM-768 ciphertext (1088 bytes) then the
/// ephemeral X25519 public key (32 bytes), [`XWingCiphertext::LEN`] bytes.
///
/// Any string of that length is a ciphertext; one not made for the decapsulation key just
/// decapsulates to an unrelated secret.
///
/// ```
/// use x0tta_pqc::XWingCiphertext;
///
/// assert!(XWingCiphertext::from_bytes(&[0; 1120]).is_ok());
/// assert!(XWingCiphertext::from_bytes(&[0; 1088]).is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct XWingCiphertext(Box<[u8; CT_LEN]>);

impl XWingCiphertext {
    /// Length of a ciphertext: 1120 bytes.
    pub const LEN: usize = CT_LEN;

    /// Takes a ciphertext received from a peer. Fails with [`XWingError::WrongLength`] only.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, XWingError> {
        check_len::<CT_LEN>(CT_WHAT, bytes).map(|b| Self(Box::new(*b)))
    }

    /// The raw bytes, to send.
    pub fn as_bytes(&self) -> &[u8; CT_LEN] {
        &self.0
    }
}

impl fmt::Debug for XWingCiphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XWingCiphertext(")?;
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// The draft's combiner: `SHA3-256(ss_M ‖ ss_X ‖ ct_X ‖ pk_X ‖ XWingLabel)`.
///
/// ML-KEM's ciphertext is left out on purpose (the draft relies on ML-KEM's ciphertext
/// binding); X25519's ciphertext and public key go in because X25519 alone does not bind them.
fn combiner(
    ss_m: &SharedSecret,
    ss_x: &[u8; X25519_LEN],
    ct_x: &[u8; X25519_LEN],
    pk_x: &[u8; X25519_LEN],
) -> SharedSecret {
    let mut h = Sha3_256::new();
    h.update(ss_m.as_bytes());
    h.update(ss_x);
    h.update(ct_x);
    h.update(pk_x);
    h.update(XWING_LABEL);
    let mut digest = h.finalize();
    let mut out = Zeroizing::new([0u8; SharedSecret::LEN]);
    out.copy_from_slice(&digest);
    digest.zeroize();
    SharedSecret(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up() {
        assert_eq!(EK_LEN, 1216);
        assert_eq!(CT_LEN, 1120);
        assert_eq!(XWING_LABEL, &[0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c]);
    }

    #[test]
    fn encapsulation_key_layout_is_ml_kem_then_x25519() {
        let dk = XWingDecapsulationKey::from_seed(&[9; 32]);
        let ek = dk.encapsulation_key();
        assert_eq!(
            &ek.as_bytes()[..PK_M_LEN],
            dk.sk_m.encapsulation_key().as_bytes()
        );
        assert_eq!(
            &ek.as_bytes()[PK_M_LEN..],
            PublicKey::from(&dk.secret.sk_x).as_bytes()
        );
        assert_eq!(dk.sk_m.backend(), Backend::RustCrypto);
    }
}
