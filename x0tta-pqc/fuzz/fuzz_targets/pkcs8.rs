//! PKCS#8 and SPKI documents from anywhere: DER bytes, and the same bytes as PEM text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use x0tta_pqc::{MlDsa65Keypair, MlDsa65PublicKey};

fuzz_target!(|data: &[u8]| {
    let _ = x0tta_pqc::pkix::decode_any(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = MlDsa65Keypair::from_pkcs8_pem(text);
        let _ = MlDsa65PublicKey::from_spki_pem(text);
    }
});
