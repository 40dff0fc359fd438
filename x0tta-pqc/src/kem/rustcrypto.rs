//! The RustCrypto backend: the pure-Rust `ml-kem` crate.
//!
//! Takes bytes the parent module has already checked (`ml-kem` repeats the modulus and hash
//! checks itself). Its decapsulation key wipes itself on drop (feature `zeroize`); the
//! byte-array copies this module makes of secrets are wiped before they go out of scope.

#![allow(deprecated)] // The 2400-byte expanded dk encoding is deprecated in ml-kem 0.3.

use ml_kem::array::Array;
use ml_kem::kem::{Decapsulate as _, Encapsulate as _, Kem as _, KeyExport as _};
use ml_kem::ml_kem_768::{Ciphertext, DecapsulationKey, EncapsulationKey};
use ml_kem::{B32, ExpandedKeyEncoding as _, MlKem768, Seed};
use zeroize::{Zeroize as _, Zeroizing};

use super::{CT_LEN, DK_LEN, EK_LEN, SS_LEN};

#[derive(Clone)]
pub(super) struct Ek {
    bytes: Box<[u8; EK_LEN]>,
    key: EncapsulationKey,
}

impl Ek {
    /// `None` if `ml-kem` refuses the key (it runs the FIPS 203 modulus check too).
    pub(super) fn new(bytes: &[u8; EK_LEN]) -> Option<Self> {
        let key = EncapsulationKey::new(&Array::from(*bytes)).ok()?;
        Some(Self {
            bytes: Box::new(*bytes),
            key,
        })
    }

    fn from_key(key: EncapsulationKey) -> Self {
        Self {
            bytes: Box::new(key.to_bytes().into()),
            key,
        }
    }

    pub(super) fn as_bytes(&self) -> &[u8; EK_LEN] {
        &self.bytes
    }

    pub(super) fn encapsulate(&self) -> (Box<[u8; CT_LEN]>, Zeroizing<[u8; SS_LEN]>) {
        let (ct, ss) = self.key.encapsulate();
        finish_encaps(ct, ss)
    }

    pub(super) fn encapsulate_deterministic(
        &self,
        m: &[u8; 32],
    ) -> (Box<[u8; CT_LEN]>, Zeroizing<[u8; SS_LEN]>) {
        let mut m = B32::from(*m);
        let (ct, ss) = self.key.encapsulate_deterministic(&m);
        m.zeroize();
        finish_encaps(ct, ss)
    }
}

fn finish_encaps(
    ct: Ciphertext,
    mut ss: ml_kem::array::Array<u8, ml_kem::array::sizes::U32>,
) -> (Box<[u8; CT_LEN]>, Zeroizing<[u8; SS_LEN]>) {
    let out = Zeroizing::new(ss.into());
    ss.zeroize();
    (Box::new(ct.into()), out)
}

pub(super) struct Dk {
    // Boxed so moving the key around does not leave copies of it behind.
    key: Box<DecapsulationKey>,
}

impl Dk {
    pub(super) fn generate() -> Self {
        let (key, _) = MlKem768::generate_keypair();
        Self { key: Box::new(key) }
    }

    pub(super) fn from_seed(d: &[u8; 32], z: &[u8; 32]) -> Self {
        let mut seed = Seed::default();
        seed[..32].copy_from_slice(d);
        seed[32..].copy_from_slice(z);
        let key = Box::new(DecapsulationKey::from_seed(seed));
        seed.zeroize();
        Self { key }
    }

    /// `None` if `ml-kem` refuses the key (it runs the FIPS 203 hash check too).
    pub(super) fn new(bytes: &[u8; DK_LEN]) -> Option<Self> {
        let Ok(bytes): Result<&Array<u8, _>, _> = <&Array<u8, _>>::try_from(&bytes[..]) else {
            return None;
        };
        let key = DecapsulationKey::from_expanded_bytes(bytes).ok()?;
        Some(Self { key: Box::new(key) })
    }

    pub(super) fn encapsulation_key(&self) -> Ek {
        Ek::from_key(self.key.encapsulation_key().clone())
    }

    pub(super) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut expanded = self.key.to_expanded_bytes();
        let out = Zeroizing::new(expanded.to_vec());
        expanded.zeroize();
        out
    }

    pub(super) fn decapsulate(&self, ct: &[u8; CT_LEN]) -> Zeroizing<[u8; SS_LEN]> {
        let mut ss = self.key.decapsulate(&Ciphertext::from(*ct));
        let out = Zeroizing::new(ss.into());
        ss.zeroize();
        out
    }
}
