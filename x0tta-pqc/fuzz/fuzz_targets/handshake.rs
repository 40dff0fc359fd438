//! Handshake messages from an attacker: every message of the peer's, as any bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use x0tta_pqc::NodeIdentity;
use x0tta_pqc::handshake::{Handshake, Role, Step, Trust, decode_any};

fn nodes() -> &'static (NodeIdentity, NodeIdentity) {
    static NODES: OnceLock<(NodeIdentity, NodeIdentity)> = OnceLock::new();
    NODES.get_or_init(|| {
        let a = NodeIdentity::generate("spiffe://fuzz/a".parse().unwrap());
        let b = NodeIdentity::generate("spiffe://fuzz/b".parse().unwrap());
        (a, b)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_any(data);
    let (a, b) = nodes();
    // The input is up to three messages "from b", split at the lengths its first two bytes
    // give; a cached record makes a challenge in round 1.
    let cached = (data.len() % 2 == 0).then(|| b.record().clone());
    let (mut hs, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), cached, [0u8; 32]);
    let mut rest = data.get(2..).unwrap_or_default();
    for cut in data.iter().take(2).map(|&n| usize::from(n)).chain([usize::MAX]) {
        let (msg, tail) = rest.split_at(cut.min(rest.len()));
        rest = tail;
        match hs.step(msg, &Trust::FirstUse) {
            Ok(Step::Send(_)) => {}
            Ok(Step::Done(_)) | Err(_) => break,
        }
    }
});
