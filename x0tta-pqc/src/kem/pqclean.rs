//! The PQClean backend: `pqcrypto-mlkem`'s C code — AVX2 where the CPU has it (detected at run
//! time; it passes every ML-KEM vector in the test suite), portable C elsewhere; no NEON.
//!
//! Takes bytes the parent module has already checked; does no input checks of its own
//! because the C code has none to offer. pqcrypto's key and secret types are plain `Copy`
//! arrays without zeroize support, so this module overwrites each one it holds as soon as
//! it is done with it; copies the compiler or the C code leave on the stack are beyond reach.

use pqcrypto_mlkem::mlkem768;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SecretKey as _, SharedSecret as _};
use zeroize::Zeroizing;

use super::{CT_LEN, DK_LEN, EK_LEN, SS_LEN};

#[derive(Clone)]
pub(super) struct Ek {
    key: Box<mlkem768::PublicKey>,
}

impl Ek {
    /// `None` only on a wrong length, which the caller has ruled out.
    pub(super) fn new(bytes: &[u8; EK_LEN]) -> Option<Self> {
        let key = mlkem768::PublicKey::from_bytes(bytes).ok()?;
        Some(Self { key: Box::new(key) })
    }

    pub(super) fn as_bytes(&self) -> &[u8; EK_LEN] {
        match self.key.as_bytes().try_into() {
            Ok(b) => b,
            Err(_) => unreachable!("pqcrypto's ML-KEM-768 public key is {EK_LEN} bytes"),
        }
    }

    pub(super) fn encapsulate(&self) -> (Box<[u8; CT_LEN]>, Zeroizing<[u8; SS_LEN]>) {
        let (mut ss, ct) = mlkem768::encapsulate(&self.key);
        let out = copy_secret(&ss);
        scrub_ss(&mut ss);
        let mut ct_out = Box::new([0u8; CT_LEN]);
        ct_out.copy_from_slice(ct.as_bytes());
        (ct_out, out)
    }
}

/// The secret key, on the heap so the one copy this module keeps stays put; wiped on drop.
pub(super) struct Dk {
    key: Box<mlkem768::SecretKey>,
}

impl Dk {
    pub(super) fn generate() -> (Self, Ek) {
        let (pk, mut sk) = mlkem768::keypair();
        let dk = Self { key: Box::new(sk) };
        scrub_sk(&mut sk);
        (dk, Ek { key: Box::new(pk) })
    }

    /// `None` only on a wrong length, which the caller has ruled out.
    pub(super) fn new(bytes: &[u8; DK_LEN]) -> Option<Self> {
        let mut sk = mlkem768::SecretKey::from_bytes(bytes).ok()?;
        let key = Box::new(sk);
        scrub_sk(&mut sk);
        Some(Self { key })
    }

    pub(super) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.as_bytes().to_vec())
    }

    pub(super) fn decapsulate(&self, ct: &[u8; CT_LEN]) -> Zeroizing<[u8; SS_LEN]> {
        let Ok(ct) = mlkem768::Ciphertext::from_bytes(ct) else {
            unreachable!("pqcrypto's ML-KEM-768 ciphertext is {CT_LEN} bytes");
        };
        let mut ss = mlkem768::decapsulate(&ct, &self.key);
        let out = copy_secret(&ss);
        scrub_ss(&mut ss);
        out
    }
}

impl Drop for Dk {
    fn drop(&mut self) {
        scrub_sk(&mut self.key);
    }
}

fn copy_secret(ss: &mlkem768::SharedSecret) -> Zeroizing<[u8; SS_LEN]> {
    let mut out = Zeroizing::new([0u8; SS_LEN]);
    out.copy_from_slice(ss.as_bytes());
    out
}

fn scrub_sk(sk: &mut mlkem768::SecretKey) {
    if let Ok(zero) = mlkem768::SecretKey::from_bytes(&[0u8; DK_LEN]) {
        *sk = zero;
    }
    // Keep the dead store from being optimised away.
    std::hint::black_box(sk);
}

fn scrub_ss(ss: &mut mlkem768::SharedSecret) {
    if let Ok(zero) = mlkem768::SharedSecret::from_bytes(&[0u8; SS_LEN]) {
        *ss = zero;
    }
    std::hint::black_box(ss);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_zeroes_the_transient_secrets() {
        let (pk, mut sk) = mlkem768::keypair();
        let (mut ss, _) = mlkem768::encapsulate(&pk);
        scrub_sk(&mut sk);
        scrub_ss(&mut ss);
        assert!(sk.as_bytes().iter().all(|&b| b == 0));
        assert!(ss.as_bytes().iter().all(|&b| b == 0));
    }

    /// Why `MlKem768EncapsulationKey` runs the modulus check itself.
    #[test]
    fn the_c_code_encapsulates_to_an_unreduced_key() {
        let mut ek = [0u8; EK_LEN];
        ek[0] = 0xff;
        ek[1] = 0x0f; // coefficient 0 = 4095 ≥ q
        let pk = mlkem768::PublicKey::from_bytes(&ek).unwrap();
        let (_, ct) = mlkem768::encapsulate(&pk);
        assert_eq!(ct.as_bytes().len(), CT_LEN);
        assert!(crate::MlKem768EncapsulationKey::from_bytes(&ek).is_err());
    }
}
