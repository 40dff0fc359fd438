//! CRDT laws over random operation histories: merge is commutative, associative and
//! idempotent, so replicas converge whatever the delivery order or duplication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use x0tta_core::NodeId;
use x0tta_knowledge::{LwwRegister, OrSet, PnCounter};

fn node(i: u8) -> NodeId {
    NodeId::new(format!("n{i}")).unwrap()
}

#[derive(Debug, Clone)]
enum SetOp {
    Add(u8, u8),
    Remove(u8),
}

fn set_ops() -> impl Strategy<Value = Vec<SetOp>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..4, 0u8..6).prop_map(|(n, x)| SetOp::Add(n, x)),
            (0u8..6).prop_map(SetOp::Remove)
        ],
        0..20,
    )
}

/// A replica built by applying `ops` as node `me` (adds use their own node id).
fn or_set(me: u8, ops: &[SetOp]) -> OrSet<u8> {
    let mut s = OrSet::default();
    for op in ops {
        match op {
            SetOp::Add(n, x) => {
                s.add(*x, &node(me * 10 + n));
            }
            SetOp::Remove(x) => {
                s.remove(x);
            }
        }
    }
    s
}

fn merged<T: Clone>(a: &T, b: &T, merge: impl Fn(&mut T, &T)) -> T {
    let mut x = a.clone();
    merge(&mut x, b);
    x
}

fn counter(ops: &[(u8, i32)]) -> PnCounter {
    let mut c = PnCounter::default();
    for (n, d) in ops {
        c.add(&node(*n), i64::from(*d));
    }
    c
}

fn register(ops: &[(u8, u8, u16)]) -> LwwRegister<u16> {
    let mut r = LwwRegister::new(0, 0, node(0));
    for (n, v, val) in ops {
        r.set(*val, u64::from(*v), node(*n));
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn or_set_laws(a in set_ops(), b in set_ops(), c in set_ops()) {
        let (x, y, z) = (or_set(1, &a), or_set(2, &b), or_set(3, &c));
        let m = |p: &mut OrSet<u8>, q: &OrSet<u8>| p.merge(q);
        prop_assert_eq!(merged(&x, &y, m), merged(&y, &x, m));
        prop_assert_eq!(merged(&merged(&x, &y, m), &z, m), merged(&x, &merged(&y, &z, m), m));
        prop_assert_eq!(merged(&x, &x, m), x.clone());
        // Members after a merge: added on either side and not removed by a replica that saw that add.
        let xy = merged(&x, &y, m);
        for item in xy.iter() {
            prop_assert!(x.contains(item) || y.contains(item));
        }
    }

    #[test]
    fn pn_counter_laws(a in prop::collection::vec((0u8..4, -50i32..50), 0..20),
                       b in prop::collection::vec((4u8..8, -50i32..50), 0..20),
                       c in prop::collection::vec((8u8..12, -50i32..50), 0..20)) {
        let (x, y, z) = (counter(&a), counter(&b), counter(&c));
        let m = |p: &mut PnCounter, q: &PnCounter| p.merge(q);
        prop_assert_eq!(merged(&x, &y, m), merged(&y, &x, m));
        prop_assert_eq!(merged(&merged(&x, &y, m), &z, m), merged(&x, &merged(&y, &z, m), m));
        prop_assert_eq!(merged(&x, &x, m), x.clone());
        // Disjoint writers: the merged value is the sum of everything done.
        let total: i128 = a.iter().chain(&b).chain(&c).map(|(_, d)| i128::from(*d)).sum();
        prop_assert_eq!(merged(&merged(&x, &y, m), &z, m).value(), total);
    }

    #[test]
    fn lww_register_laws(a in prop::collection::vec((0u8..4, 0u8..10, any::<u16>()), 0..10),
                         b in prop::collection::vec((0u8..4, 0u8..10, any::<u16>()), 0..10),
                         c in prop::collection::vec((0u8..4, 0u8..10, any::<u16>()), 0..10)) {
        let (x, y, z) = (register(&a), register(&b), register(&c));
        let m = |p: &mut LwwRegister<u16>, q: &LwwRegister<u16>| p.merge(q);
        // Registers written with the same stamp by one writer may hold different values only if
        // that writer wrote twice at one version; stamps (and so winners) always agree.
        let stamp = |r: LwwRegister<u16>| (r.stamp().0, r.stamp().1.clone());
        prop_assert_eq!(stamp(merged(&x, &y, m)), stamp(merged(&y, &x, m)));
        prop_assert_eq!(stamp(merged(&merged(&x, &y, m), &z, m)), stamp(merged(&x, &merged(&y, &z, m), m)));
        prop_assert_eq!(merged(&x, &x, m), x.clone());
    }
}
