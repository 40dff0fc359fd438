//! Handshake messages from an attacker: the peer's Hello and Proof, as any bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use x0tta_pqc::NodeIdentity;
use x0tta_pqc::handshake::{Handshake, Role, Trust, decode_any};

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
    // Split the input into a Hello and a Proof from "b"; a cached record makes a challenge.
    let cut = data.first().map_or(0, |&n| usize::from(n)).min(data.len());
    let (hello, proof) = data.split_at(cut);
    let cached = (data.len() % 2 == 0).then(|| b.record().clone());
    let (mut hs, _) = Handshake::start(Role::Initiator, a.clone(), b.peer_id(), cached);
    if hs.respond(hello, &[0u8; 32]).is_ok() {
        let _ = hs.finish(proof, &Trust::FirstUse, None);
    }
});
