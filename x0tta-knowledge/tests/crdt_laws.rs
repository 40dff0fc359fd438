//! CRDT laws of the typed views on yrs, over random histories of three replicas that write
//! concurrently and sync now and then: merging is commutative, associative and idempotent,
//! and the merged values are what the types promise — the OR-Set agrees with a reference
//! observed-remove model, the counter is the sum of every delta, the register holds the
//! highest stamp ever written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use x0tta_core::NodeId;
use x0tta_knowledge::CrdtDoc;

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Remove(u8),
    Count(i8),
    Write(u8),
    /// The replica integrates everything replica `from` has.
    Sync(usize),
}

fn history() -> impl Strategy<Value = Vec<(usize, Op)>> {
    prop::collection::vec(
        (
            0usize..3,
            prop_oneof![
                (0u8..5).prop_map(Op::Add),
                (0u8..5).prop_map(Op::Remove),
                (-9i8..10).prop_map(Op::Count),
                (0u8..6).prop_map(Op::Write),
                (0usize..3).prop_map(Op::Sync),
            ],
        ),
        0..40,
    )
}

/// The reference observed-remove set: adds tagged with unique dots, removes keep the dots
/// they saw.
#[derive(Clone, Default)]
struct Model {
    adds: BTreeSet<(u8, (usize, u32))>,
    removed: BTreeSet<(usize, u32)>,
}

impl Model {
    fn members(&self) -> BTreeSet<String> {
        self.adds
            .iter()
            .filter(|(_, d)| !self.removed.contains(d))
            .map(|(x, _)| x.to_string())
            .collect()
    }
    fn merge(&mut self, o: &Model) {
        self.adds.extend(o.adds.iter().cloned());
        self.removed.extend(o.removed.iter().cloned());
    }
}

fn writer(r: usize) -> NodeId {
    NodeId::new(format!("n{r}")).unwrap()
}

type Observed = (Vec<String>, i128, Option<(u64, String, u64)>);

fn observe(d: &CrdtDoc) -> Observed {
    let reg = d.register::<u64>("policy").get().unwrap();
    (
        d.or_set("set").members(),
        d.counter("count").value(),
        reg.map(|s| (s.version, s.writer.to_string(), s.value)),
    )
}

/// A fresh replica that integrated `parts` in order.
fn union(parts: &[&CrdtDoc]) -> CrdtDoc {
    let d = CrdtDoc::with_client_id(99);
    for p in parts {
        d.apply(&p.encode_state()).unwrap();
    }
    d
}

/// The replicas, their reference sets, the sum of all deltas and the highest stamp written.
type Run = (Vec<CrdtDoc>, Vec<Model>, i128, Option<(u64, String)>);

fn run(ops: &[(usize, Op)]) -> Run {
    let docs: Vec<CrdtDoc> = (1..=3).map(CrdtDoc::with_client_id).collect();
    let mut models = vec![Model::default(); 3];
    let mut counters = [0u32; 3];
    let mut sum = 0i128;
    let mut top: Option<(u64, String)> = None;
    for (r, op) in ops {
        let (d, r) = (&docs[*r], *r);
        match op {
            Op::Add(x) => {
                d.or_set("set").add(&x.to_string()).unwrap();
                counters[r] += 1;
                models[r].adds.insert((*x, (r, counters[r])));
            }
            Op::Remove(x) => {
                let had = d.or_set("set").remove(&x.to_string()).unwrap();
                let m = &mut models[r];
                let seen: Vec<_> = m
                    .adds
                    .iter()
                    .filter(|(y, dot)| y == x && !m.removed.contains(dot))
                    .map(|(_, dot)| *dot)
                    .collect();
                assert_eq!(had, !seen.is_empty());
                m.removed.extend(seen);
            }
            Op::Count(n) => {
                d.counter("count").add(i64::from(*n)).unwrap();
                sum += i128::from(*n);
            }
            Op::Write(v) => {
                let version = u64::from(*v);
                // One value per stamp: the value is a function of it.
                let value = version * 10 + r as u64;
                d.register::<u64>("policy")
                    .set(&value, version, &writer(r))
                    .unwrap();
                let stamp = (version, writer(r).to_string());
                if top.as_ref().is_none_or(|t| stamp > *t) {
                    top = Some(stamp);
                }
            }
            Op::Sync(from) => {
                d.merge(&docs[*from]).unwrap();
                let theirs = models[*from].clone();
                models[r].merge(&theirs);
            }
        }
        let set: BTreeSet<String> = d.or_set("set").members().into_iter().collect();
        assert_eq!(set, models[r].members(), "replica {r} after {op:?}");
    }
    (docs, models, sum, top)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn merges_commute_associate_and_are_idempotent(ops in history()) {
        let (docs, _, _, _) = run(&ops);
        let (a, b, c) = (&docs[0], &docs[1], &docs[2]);
        prop_assert_eq!(observe(&union(&[a, b])), observe(&union(&[b, a])));
        prop_assert_eq!(
            observe(&union(&[&union(&[a, b]), c])),
            observe(&union(&[a, &union(&[b, c])]))
        );
        prop_assert_eq!(observe(&union(&[a, a])), observe(&union(&[a])));
        let ab = union(&[a, b]);
        prop_assert_eq!(observe(&union(&[&ab, b])), observe(&ab));
        // Same state, same bytes: replicas that saw the same updates encode identically.
        prop_assert_eq!(union(&[a, b, c]).encode_state(), union(&[c, a, b]).encode_state());
    }

    #[test]
    fn merged_values_are_what_the_types_promise(ops in history()) {
        let (docs, models, sum, top) = run(&ops);
        let all = union(&[&docs[0], &docs[1], &docs[2]]);
        let mut model = Model::default();
        for m in &models {
            model.merge(m);
        }
        let (members, value, register) = observe(&all);
        prop_assert_eq!(members.into_iter().collect::<BTreeSet<_>>(), model.members());
        prop_assert_eq!(value, sum);
        prop_assert_eq!(register.map(|(v, w, _)| (v, w)), top);
        prop_assert!(!all.has_pending());
    }

    #[test]
    fn updates_in_any_order_converge(ops in history(), seed in any::<u64>()) {
        // Each replica's state as separate updates, delivered shuffled and duplicated:
        // updates that arrive before their predecessors wait, then integrate.
        let (docs, _, _, _) = run(&ops);
        let mut updates: Vec<Vec<u8>> = Vec::new();
        for d in &docs {
            // Split a replica's state into its own writes and the rest it learnt.
            let others = union(&docs.iter().filter(|x| x.client_id() != d.client_id()).collect::<Vec<_>>());
            updates.push(d.diff(&others.state_vector()).unwrap());
            updates.push(d.encode_state());
        }
        let mut order: Vec<usize> = (0..updates.len()).collect();
        let mut s = seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let target = CrdtDoc::with_client_id(77);
        for i in order {
            target.apply(&updates[i]).unwrap();
        }
        prop_assert!(!target.has_pending());
        prop_assert_eq!(observe(&target), observe(&union(&[&docs[0], &docs[1], &docs[2]])));
    }
}

#[test]
fn bad_bytes_are_typed_errors() {
    let d = CrdtDoc::with_client_id(1);
    assert!(d.apply(&[0xff, 0xff, 0xff]).is_err());
    assert!(d.diff(&[0xff]).is_err());
    assert!(d.apply(&[]).is_err());
    // A register read as the wrong type is an error, not a panic.
    d.register::<String>("r")
        .set(&"text".to_string(), 1, &writer(0))
        .unwrap();
    assert!(d.register::<u64>("r").get().is_err());
}

#[test]
fn stale_and_equal_register_writes_are_ignored() {
    let d = CrdtDoc::with_client_id(1);
    let r = d.register::<String>("policy");
    assert!(r.get().unwrap().is_none());
    assert!(r.set(&"v3".into(), 3, &writer(1)).unwrap());
    assert!(!r.set(&"v2".into(), 2, &writer(2)).unwrap());
    assert!(!r.set(&"again".into(), 3, &writer(1)).unwrap());
    assert!(
        r.set(&"v3 by n2".into(), 3, &writer(2)).unwrap(),
        "writer breaks the tie"
    );
    let s = r.get().unwrap().unwrap();
    assert_eq!(
        (s.value.as_str(), s.version, s.writer.as_str()),
        ("v3 by n2", 3, "n2")
    );
}
