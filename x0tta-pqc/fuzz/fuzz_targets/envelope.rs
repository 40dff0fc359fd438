//! Signed envelopes as any bytes, opened against a ring holding a real node: decoding and
//! verification (ML-DSA-65 and hybrid) never panic, and nothing forged opens.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use x0tta_core::{Envelope, contexts};
use x0tta_pqc::{IdentityRing, NodeIdentity};

fn ring() -> &'static IdentityRing {
    static RING: OnceLock<IdentityRing> = OnceLock::new();
    RING.get_or_init(|| {
        let me = NodeIdentity::generate("spiffe://fuzz/a".parse().unwrap());
        IdentityRing::new().with(me.record().clone())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = serde_ipld_dagcbor::from_slice::<Envelope>(data) {
        // No input the fuzzer makes carries a valid signature of the ring's key.
        assert!(env.open(ring(), contexts::GOSSIP).is_err());
    }
});
