//! The PQClean backend: `pqcrypto-mldsa`'s portable C code (built without AVX2/NEON, see the
//! workspace `Cargo.toml`).
//!
//! It works on raw FIPS 204 encodings only; key checks, the context-length rule and the
//! choice of backend belong to the parent module. The C code has no seeded key generation,
//! no deterministic signing and no internal (`M'`) interface, so known-answer tests that need
//! those run against the RustCrypto backend only.

use pqcrypto_mldsa::mldsa65;
use pqcrypto_traits::sign::{DetachedSignature as _, PublicKey as _, SecretKey as _};
use x0tta_core::SignError;
use zeroize::Zeroizing;

use super::{MlDsa65Keypair, MlDsa65PublicKey};

/// A fresh key pair from the operating system's random source: `(public, secret)` encodings.
pub(super) fn generate() -> (Vec<u8>, Zeroizing<Vec<u8>>) {
    let (pk, mut sk) = mldsa65::keypair();
    let secret = Zeroizing::new(sk.as_bytes().to_vec());
    scrub(&mut sk);
    (pk.as_bytes().to_vec(), secret)
}

/// Hedged `ML-DSA.Sign` with a context. The caller has checked `context.len() <= 255`.
pub(super) fn sign(secret: &[u8], context: &[u8], message: &[u8]) -> Result<Vec<u8>, SignError> {
    let mut sk = mldsa65::SecretKey::from_bytes(secret)
        .map_err(|_| SignError("ML-DSA-65 secret key has the wrong length".into()))?;
    let sig = mldsa65::detached_sign_ctx(message, context, &sk);
    scrub(&mut sk);
    Ok(sig.as_bytes().to_vec())
}

/// `ML-DSA.Verify` with a context. The caller has checked the context and signature lengths.
pub(super) fn verify(public: &[u8], context: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(pk), Ok(sig)) = (
        mldsa65::PublicKey::from_bytes(public),
        mldsa65::DetachedSignature::from_bytes(signature),
    ) else {
        return false;
    };
    mldsa65::verify_detached_signature_ctx(&sig, message, context, &pk).is_ok()
}

/// Overwrites a transient pqcrypto secret key. Best effort: pqcrypto's `SecretKey` is a `Copy`
/// array without zeroize support, so copies the compiler or the C code leave on the stack are
/// beyond reach.
fn scrub(sk: &mut mldsa65::SecretKey) {
    if let Ok(zero) = mldsa65::SecretKey::from_bytes(&[0u8; MlDsa65Keypair::SECRET_KEY_LEN]) {
        *sk = zero;
    }
    // Keep the dead store from being optimised away.
    std::hint::black_box(sk);
}

// The sizes in the parent module are written out for readable docs; tie them to the C
// library's.
const _: () = {
    assert!(MlDsa65PublicKey::LEN == mldsa65::public_key_bytes());
    assert!(MlDsa65Keypair::SECRET_KEY_LEN == mldsa65::secret_key_bytes());
    assert!(MlDsa65Keypair::SIGNATURE_LEN == mldsa65::signature_bytes());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_zeroes_the_transient_key() {
        let (_, mut sk) = mldsa65::keypair();
        scrub(&mut sk);
        assert!(sk.as_bytes().iter().all(|&b| b == 0));
    }
}
