//! The RustCrypto backend (`ml-dsa`, pure Rust), and what only it can do.
//!
//! The crate-private half mirrors the PQClean backend (generate, hedged sign, verify) on raw
//! FIPS 204 encodings. The public half is for known-answer tests and interoperability:
//! deterministic signing, the FIPS 204 *internal* interface (`M'` without the context
//! prefix) and precomputed-μ signing and verification. Node code signs through
//! [`MlDsa65Keypair::sign`], which is hedged and always binds a context; nothing here should
//! be used to sign protocol messages.
//!
//! Secret keys cross into `ml-dsa` through its (deprecated) expanded-key decoder, because the
//! key files hold the 4032-byte expanded encoding that both backends read. The parent module
//! range-checks `s1` and `s2` before a key gets here, which is what the decoder's "may panic
//! on malformed keys" warning is about.

use std::sync::Arc;

use ml_dsa::signature::Keypair as _;
use ml_dsa::{
    B32, EncodedVerifyingKey, ExpandedSigningKey, ExpandedSigningKeyBytes, MlDsa65, Seed,
    Signature as MlDsaSignature, SigningKey, VerifyingKey,
};
use x0tta_core::{Rejection, SignError, Verdict};
use zeroize::{Zeroize, Zeroizing};

use super::{MAX_CONTEXT_LEN, MlDsa65Keypair, MlDsa65PublicKey, check_context};

/// `ml-dsa`'s decoded verifying key (with the expanded matrix `Â`), shared between clones of
/// one [`MlDsa65PublicKey`].
pub(super) type DecodedPublicKey = Arc<VerifyingKey<MlDsa65>>;

/// `ml-dsa`'s decoded signing key (≈ 64 KiB with `Â` and the NTT forms), wiped on drop by
/// `ml-dsa`'s `zeroize` feature.
pub(super) type DecodedSecretKey = Box<ExpandedSigningKey<MlDsa65>>;

/// A fresh key pair from the operating system's random source: `(public, secret)` encodings.
pub(super) fn generate() -> (Vec<u8>, Zeroizing<Vec<u8>>) {
    encode(&<SigningKey<MlDsa65> as ml_dsa::Generate>::generate())
}

/// FIPS 204 `ML-DSA.KeyGen_internal(ξ)`: `(public, secret)` encodings.
pub(super) fn from_seed(seed: &[u8; 32]) -> (Vec<u8>, Zeroizing<Vec<u8>>) {
    let mut xi = Seed::from(*seed);
    let sk = SigningKey::<MlDsa65>::from_seed(&xi);
    xi.zeroize();
    encode(&sk)
}

/// The public key and the expanded secret key (`skEncode`) of `sk`, which `ml-dsa` wipes
/// on drop.
fn encode(sk: &SigningKey<MlDsa65>) -> (Vec<u8>, Zeroizing<Vec<u8>>) {
    let public = sk.verifying_key().encode().to_vec();
    #[allow(deprecated)] // the expanded form is what both backends load
    let mut expanded = sk.expanded_key().to_expanded();
    let secret = Zeroizing::new(expanded.to_vec());
    expanded.zeroize();
    (public, secret)
}

/// The public key belonging to an expanded secret key (`t1` recomputed from `s1`, `s2`).
pub(super) fn public_from_secret(secret: &[u8]) -> Option<Vec<u8>> {
    Some(decode_secret(secret)?.verifying_key().encode().to_vec())
}

pub(super) fn decode_public(public: &[u8]) -> Option<DecodedPublicKey> {
    let enc = EncodedVerifyingKey::<MlDsa65>::try_from(public).ok()?;
    Some(Arc::new(VerifyingKey::decode(&enc)))
}

/// Decodes an expanded secret key whose `s1`/`s2` the caller has range-checked.
pub(super) fn decode_secret(secret: &[u8]) -> Option<DecodedSecretKey> {
    let mut enc = ExpandedSigningKeyBytes::<MlDsa65>::try_from(secret).ok()?;
    #[allow(deprecated)] // see the module comment
    let key = Box::new(ExpandedSigningKey::from_expanded(&enc));
    enc.zeroize();
    Some(key)
}

/// Hedged `ML-DSA.Sign` with a context (fresh `rnd` from the operating system).
pub(super) fn sign(
    key: &ExpandedSigningKey<MlDsa65>,
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, SignError> {
    let mut rng = ml_dsa::common::getrandom::SysRng;
    key.sign_randomized(message, context, &mut rng)
        .map(|sig| sig.encode().to_vec())
        .map_err(|_| {
            SignError(
                "ML-DSA-65 signing failed: no randomness or rejection sampling gave up".into(),
            )
        })
}

/// `ML-DSA.Verify` with a context. Malformed signatures (hint encoding, `‖z‖∞` bound) are
/// rejected while decoding.
pub(super) fn verify(
    key: &VerifyingKey<MlDsa65>,
    context: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    match MlDsaSignature::<MlDsa65>::try_from(signature) {
        Ok(sig) => key.verify_with_context(message, context, &sig),
        Err(_) => false,
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Valid
    } else {
        Verdict::Reject(Rejection::BadSignature)
    }
}

/// Deterministic `ML-DSA.Sign` (FIPS 204's optional variant, `rnd` = 32 zero bytes) under
/// `context`, always with `ml-dsa` whatever `keys.backend()` is.
///
/// For known-answer tests: the same message and key always give the same signature, which
/// leaks more through side channels than hedged signing. Use [`MlDsa65Keypair::sign`] for
/// real messages.
pub fn sign_deterministic(
    keys: &MlDsa65Keypair,
    context: &[u8],
    message: &[u8],
) -> Result<Vec<u8>, SignError> {
    check_context(context)?;
    keys.rustcrypto_key()?
        .sign_deterministic(message, context)
        .map(|sig| sig.encode().to_vec())
        .map_err(|_| SignError("ML-DSA-65 rejection sampling gave up".into()))
}

/// FIPS 204 `ML-DSA.Sign_internal(sk, M', rnd)`: signs `m_prime` as given, with no domain
/// separator or context prefix added.
///
/// For ACVP-style known-answer tests. `m_prime = [0, ctx.len()] ‖ ctx ‖ M` gives the same
/// signature as `ML-DSA.Sign` with randomness `rnd`.
///
/// # Panics
///
/// If `ml-dsa`'s rejection-sampling loop runs out of nonces (about 13,000 attempts, each
/// failing with probability below 0.8; not reachable in practice).
pub fn sign_internal(
    keys: &MlDsa65Keypair,
    m_prime: &[u8],
    rnd: &[u8; 32],
) -> Result<Vec<u8>, SignError> {
    let rnd = B32::from(*rnd);
    Ok(keys
        .rustcrypto_key()?
        .sign_internal(&[m_prime], &rnd)
        .encode()
        .to_vec())
}

/// Deterministic signing of a precomputed μ (FIPS 204's "external μ" variant).
///
/// # Panics
///
/// As [`sign_internal`].
pub fn sign_mu_deterministic(keys: &MlDsa65Keypair, mu: &[u8; 64]) -> Result<Vec<u8>, SignError> {
    Ok(keys
        .rustcrypto_key()?
        .sign_mu_deterministic(&(*mu).into())
        .encode()
        .to_vec())
}

/// FIPS 204 `ML-DSA.Verify_internal(pk, M', σ)`: checks `signature` over `m_prime` as given.
pub fn verify_internal(public: &MlDsa65PublicKey, m_prime: &[u8], signature: &[u8]) -> Verdict {
    let Some(key) = public.rustcrypto_key() else {
        return verdict(false);
    };
    verdict(
        MlDsaSignature::<MlDsa65>::try_from(signature)
            .is_ok_and(|sig| key.verify_internal(m_prime, &sig)),
    )
}

/// Checks `signature` over a precomputed μ.
pub fn verify_mu(public: &MlDsa65PublicKey, mu: &[u8; 64], signature: &[u8]) -> Verdict {
    let Some(key) = public.rustcrypto_key() else {
        return verdict(false);
    };
    verdict(
        MlDsaSignature::<MlDsa65>::try_from(signature)
            .is_ok_and(|sig| key.verify_mu(&(*mu).into(), &sig)),
    )
}

/// μ = SHAKE256(SHAKE256(pk, 64) ‖ 0 ‖ |ctx| ‖ ctx ‖ M, 64), the value signatures bind.
/// `None` if `context` is longer than [`MAX_CONTEXT_LEN`].
pub fn compute_mu(public: &MlDsa65PublicKey, context: &[u8], message: &[u8]) -> Option<[u8; 64]> {
    if context.len() > MAX_CONTEXT_LEN {
        return None;
    }
    let key = public.rustcrypto_key()?;
    let mu = key
        .compute_mu(
            |h| {
                ml_dsa::signature::digest::Update::update(h, message);
                Ok(())
            },
            context,
        )
        .ok()?;
    Some(mu.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_ml_dsa() {
        let (public, secret) = generate();
        assert_eq!(public.len(), MlDsa65PublicKey::LEN);
        assert_eq!(secret.len(), MlDsa65Keypair::SECRET_KEY_LEN);
        let key = decode_secret(&secret).unwrap();
        let sig = sign(&key, b"", b"m").unwrap();
        assert_eq!(sig.len(), MlDsa65Keypair::SIGNATURE_LEN);
        assert_eq!(public_from_secret(&secret).unwrap(), public);
    }
}
