//! Yjs compatibility of the replicated document, both ways:
//! - state written by Yjs (the fixtures in `../shared/data/yrs`: yrs's randomized dataset of
//!   Yjs updates with expected text/map/array, hand-written v1/v2 payloads, and the B4
//!   editing trace with its final Yjs update) loads through [`CrdtDoc::apply`] with the
//!   expected values;
//! - state written by a node's store loads in Yjs itself (Node.js with the `yjs` npm package,
//!   installed by `.ci/run`; `X0TTA_YJS_DIR` names its `node_modules`), and what Yjs writes in
//!   our layout reads back through the typed views.
//!
//! Each part prints SKIPPED when its data or tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use x0tta_core::*;
use x0tta_knowledge::{CrdtDoc, INCIDENTS_MAP, KnowledgeConfig, RedbKnowledge};
use x0tta_pqc::{MlDsa65Keypair, MlDsa65Signer};
use yrs::types::ToJson;
use yrs::updates::decoder::{Decode, Decoder, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Any, GetString, StateVector, Transact, Update};

fn data(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/yrs")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} is missing", p.display());
        None
    }
}

/// yrs's randomized dataset: each case is a list of Yjs updates and the text, map and array
/// they produce. Every case must load through `CrdtDoc::apply` to exactly those values.
#[test]
fn yjs_dataset_loads_with_the_expected_values() {
    let Some(path) = data("small-test-dataset.bin") else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let mut d = DecoderV1::from(bytes.as_slice());
    let cases: u32 = yrs::encoding::read::Read::read_var(&mut d).unwrap();
    assert!(cases > 1000, "{cases} cases");
    let mut updates_seen = 0usize;
    for case in 0..cases {
        let n: u32 = yrs::encoding::read::Read::read_var(&mut d).unwrap();
        let doc = CrdtDoc::with_client_id(1);
        let (text, map, array) = {
            let y = doc.yrs();
            (
                y.get_or_insert_text("text"),
                y.get_or_insert_map("map"),
                y.get_or_insert_array("array"),
            )
        };
        for _ in 0..n {
            let update = yrs::encoding::read::Read::read_buf(&mut d)
                .unwrap()
                .to_vec();
            doc.apply(&update).unwrap();
            updates_seen += 1;
        }
        let want_text = yrs::encoding::read::Read::read_string(&mut d)
            .unwrap()
            .to_owned();
        let want_map = d.read_any().unwrap();
        let want_array = d.read_any().unwrap();
        let txn = doc.yrs().transact();
        assert_eq!(text.get_string(&txn), want_text, "case {case}: text");
        assert_eq!(map.to_json(&txn), want_map, "case {case}: map");
        assert_eq!(array.to_json(&txn), want_array, "case {case}: array");
        assert!(!doc.has_pending(), "case {case}: updates left pending");
    }
    println!("{cases} Yjs cases, {updates_seen} updates: all values as expected");
}

/// The hand-written payloads: v1 updates through `CrdtDoc::apply` (re-encoded byte for byte
/// where the fixture says so), v2 through yrs directly, and a Yjs state vector.
#[test]
fn yjs_payload_vectors() {
    let Some(path) = data("yjs_compat_vectors.json") else {
        return;
    };
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    let mut checked = 0;
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let payload: Vec<u8> = c["payload"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        let v1 = c["encoding"] == "v1";
        if c["kind"] == "state_vector" {
            let sv = StateVector::decode_v1(&payload).unwrap();
            for (client, clock) in c["expected_state_vector"].as_object().unwrap() {
                let id = yrs::block::ClientID::new(client.parse().unwrap());
                assert_eq!(u64::from(sv.get(&id)), clock.as_u64().unwrap(), "{name}");
            }
            assert_eq!(sv.encode_v1(), payload, "{name}: state vector round trip");
            // A state vector Yjs wrote is one a node can answer.
            CrdtDoc::with_client_id(5).diff(&payload).unwrap();
            checked += 1;
            continue;
        }
        let doc = CrdtDoc::with_client_id(5);
        let root = &c["root"];
        let rname = root["name"].as_str().unwrap();
        let y = doc.yrs();
        let (text, map, array, xml) = (
            (root["type"] == "text").then(|| y.get_or_insert_text(rname)),
            (root["type"] == "map").then(|| y.get_or_insert_map(rname)),
            (root["type"] == "array").then(|| y.get_or_insert_array(rname)),
            (root["type"] == "xml_fragment").then(|| y.get_or_insert_xml_fragment(rname)),
        );
        if v1 {
            doc.apply(&payload).unwrap();
        } else {
            y.transact_mut()
                .apply_update(Update::decode_v2(&payload).unwrap())
                .unwrap();
        }
        let txn = y.transact();
        if let Some(t) = text {
            assert_eq!(
                t.get_string(&txn),
                c["expected_text"].as_str().unwrap(),
                "{name}"
            );
        }
        let json = |a: Any| -> Value {
            let mut s = String::new();
            a.to_json(&mut s);
            serde_json::from_str(&s).unwrap()
        };
        if let Some(m) = map {
            assert_eq!(json(m.to_json(&txn)), c["expected_json"], "{name}");
        }
        if let Some(a) = array {
            assert_eq!(json(a.to_json(&txn)), c["expected_json"], "{name}");
        }
        if let Some(x) = xml {
            use yrs::XmlFragment;
            assert!(x.len(&txn) >= 1, "{name}: fragment has children");
        }
        if v1 && c["roundtrip_exact"] == true {
            assert_eq!(
                doc.encode_state(),
                payload,
                "{name}: re-encoded byte for byte"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    println!("{checked} payload vectors checked");
}

/// The B4 editing trace (260k keystrokes of a real paper) replayed through yrs gives the same
/// text as Yjs's final update of it loaded through `CrdtDoc::apply`; the diff between the two
/// replicas is empty both ways.
#[test]
fn b4_trace_matches_the_yjs_update() {
    let (Some(trace), Some(update)) = (data("b4-editing-trace.bin"), data("b4-update.bin")) else {
        return;
    };
    let trace = std::fs::read(trace).unwrap();
    let mut d = DecoderV1::from(trace.as_slice());
    use yrs::encoding::read::Read;
    let n: u32 = d.read_var().unwrap();
    let replay = CrdtDoc::with_client_id(1);
    let t = replay.yrs().get_or_insert_text("text");
    {
        use yrs::Text;
        // One transaction per keystroke, as an editor does: a commit merges adjacent runs, so
        // the block list stays short (one transaction for all 260k keystrokes is quadratic).
        for _ in 0..n {
            let mut txn = replay.yrs().transact_mut();
            match d.read_var::<u32>().unwrap() {
                1 => {
                    let at: u32 = d.read_var().unwrap();
                    let s = d.read_string().unwrap().to_owned();
                    t.insert(&mut txn, at, &s);
                }
                2 => {
                    let at: u32 = d.read_var().unwrap();
                    let len: u32 = d.read_var().unwrap();
                    t.remove_range(&mut txn, at, len);
                }
                other => panic!("unknown op {other}"),
            }
        }
    }
    let yjs = CrdtDoc::with_client_id(2);
    let yt = yjs.yrs().get_or_insert_text("text");
    yjs.apply(&std::fs::read(update).unwrap()).unwrap();
    let (a, b) = (
        t.get_string(&replay.yrs().transact()),
        yt.get_string(&yjs.yrs().transact()),
    );
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b, "replayed trace differs from Yjs's final text");
    println!(
        "B4: {n} operations, {} characters, same text as Yjs",
        a.len()
    );
}

/// Where the Yjs package is, if installed.
fn yjs_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("X0TTA_YJS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/x0tta6bl4/yjs-13.6.27/node_modules"))
        })?;
    if !dir.join("yjs").is_dir() {
        eprintln!(
            "SKIPPED: Yjs not found at {} (set X0TTA_YJS_DIR; .ci/run installs it)",
            dir.display()
        );
        return None;
    }
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: node is not installed");
        return None;
    }
    Some(dir)
}

const SCRIPT: &str = r#"
const Y = require('yjs');
const fs = require('fs');
const [input, ourSv, output] = process.argv.slice(2);
const doc = new Y.Doc();
Y.applyUpdate(doc, fs.readFileSync(input));
const out = {};
for (const name of ['incidents', 'policy', 'heals', 'isolated']) out[name] = doc.getMap(name).toJSON();
out.pending = doc.store.pendingStructs !== null || doc.store.pendingDs !== null;
// Write in the store's layout as another replica: a counter entry and an OR-Set add.
const me = doc.clientID.toString(16);
doc.transact(() => {
  doc.getMap('heals').set(me + '+', 7);
  const clock = Y.getState(doc.store, doc.clientID);
  doc.getMap('isolated').set(me + '.' + clock.toString(16), 'peer-9');
});
fs.writeFileSync(output, Y.encodeStateAsUpdate(doc, fs.readFileSync(ourSv)));
console.log(JSON.stringify(out));
"#;

fn keypair_signer(name: &str) -> Arc<MlDsa65Signer> {
    Arc::new(MlDsa65Signer::new(
        NodeId::new(name).unwrap(),
        MlDsa65Keypair::generate(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_state_loads_in_yjs_and_yjs_writes_read_back() {
    let Some(node_modules) = yjs_dir() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default()).unwrap();
    let signer = keypair_signer("node-a");
    store.set_signer(signer.clone()).await.unwrap();
    let mut ids = Vec::new();
    for (i, kind) in [AnomalyKind::MemoryPressure, AnomalyKind::NodeFailure]
        .into_iter()
        .enumerate()
    {
        let inc = Incident {
            node: signer.node_id().clone(),
            detected_at: Timestamp::from_millis(1_700_000_000_000 + i as u64),
            observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
            anomaly: Anomaly::new(kind, Severity::High, 0.9, Subject::Host, "threshold"),
            root_cause: None,
            plan: None,
            report: None,
            resolution: Resolution::NoPlan,
        };
        ids.push(store.record(&inc).await.unwrap());
    }
    store.crdt().counter("heals").add(3).unwrap();
    store.crdt().or_set("isolated").add("peer-7").unwrap();
    store
        .policy_register()
        .set(&"bafy-policy".to_string(), 4, signer.node_id())
        .unwrap();

    let input = dir.path().join("state.bin");
    let sv = dir.path().join("sv.bin");
    let output = dir.path().join("yjs.bin");
    std::fs::write(&input, store.crdt().encode_state()).unwrap();
    std::fs::write(&sv, store.crdt().state_vector()).unwrap();
    let script = dir.path().join("load.js");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .args([&input, &sv, &output])
        .env("NODE_PATH", &node_modules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["pending"], false, "Yjs is missing part of our state");

    // Yjs sees the incidents map: each incident CID names its envelope's CID.
    let incidents = seen[INCIDENTS_MAP].as_object().unwrap();
    assert_eq!(incidents.len(), 2);
    for id in &ids {
        let env = incidents[&id.to_string()].as_str().unwrap();
        assert!(env.parse::<ContentId>().is_ok(), "{env}");
    }
    // ... the counter, the set and the register as written.
    let heals = seen["heals"].as_object().unwrap();
    assert_eq!(heals.values().map(|v| v.as_i64().unwrap()).sum::<i64>(), 3);
    assert!(
        seen["isolated"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v == "peer-7")
    );
    let policy = seen["policy"].as_object().unwrap();
    assert_eq!(policy.len(), 1);
    assert_eq!(policy.values().next().unwrap(), "bafy-policy");

    // What Yjs wrote (the diff against our state vector) reads back through the typed views.
    let diff = std::fs::read(&output).unwrap();
    assert!(store.apply_update(diff).await.unwrap().is_empty());
    assert_eq!(store.crdt().counter("heals").value(), 10);
    assert_eq!(
        store.crdt().or_set("isolated").members(),
        vec!["peer-7".to_string(), "peer-9".to_string()]
    );
    println!("our state loaded in Yjs; Yjs's writes read back");
}
