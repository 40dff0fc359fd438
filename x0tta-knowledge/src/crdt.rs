//! Typed state-based CRDTs for what nodes replicate beside incidents: a last-writer-wins
//! register (the policy register), an observed-remove set (members such as isolated peers or
//! pinned CIDs) and a positive-negative counter (per-node tallies).
//!
//! Each `merge` is commutative, associative and idempotent (`tests/crdt_laws.rs` checks this
//! with proptest over random operation histories), so replicas that have seen the same
//! updates, in any order and any number of times, hold the same state. Sans-I/O: time and
//! identity come in as arguments.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use x0tta_core::NodeId;

/// A last-writer-wins register. Writes are ordered by `(version, writer)`: the higher version
/// wins, and the writer id breaks ties, so concurrent writes resolve the same on every node.
///
/// ```
/// use x0tta_core::NodeId;
/// use x0tta_knowledge::LwwRegister;
/// let (a, b) = (NodeId::new("a")?, NodeId::new("b")?);
/// let mut x = LwwRegister::new("v1", 1, a.clone());
/// let y = LwwRegister::new("v2", 2, b);
/// x.merge(&y);
/// assert_eq!(*x.get(), "v2");
/// x.set("stale", 1, a); // older version: ignored
/// assert_eq!(*x.get(), "v2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister<T> {
    value: T,
    version: u64,
    writer: NodeId,
}

impl<T: Clone> LwwRegister<T> {
    /// A register holding `value` written at `version` by `writer`.
    pub fn new(value: T, version: u64, writer: NodeId) -> Self {
        Self {
            value,
            version,
            writer,
        }
    }

    /// The value in force.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Its `(version, writer)`.
    pub fn stamp(&self) -> (u64, &NodeId) {
        (self.version, &self.writer)
    }

    /// Writes `value` if `(version, writer)` is newer than the current stamp; returns whether
    /// it took effect. A writer must never write two values under one version (stamps identify
    /// writes; the policy's version numbers do this by construction).
    pub fn set(&mut self, value: T, version: u64, writer: NodeId) -> bool {
        if (version, &writer) > (self.version, &self.writer) {
            self.value = value;
            self.version = version;
            self.writer = writer;
            true
        } else {
            false
        }
    }

    /// Takes the newer of the two states.
    pub fn merge(&mut self, other: &Self) {
        self.set(other.value.clone(), other.version, other.writer.clone());
    }
}

/// A unique tag of one `add`: the adding node and its per-node counter.
pub type Dot = (NodeId, u64);

/// An observed-remove set (add wins over a concurrent remove): `remove` deletes only the adds
/// it has seen.
///
/// ```
/// use x0tta_core::NodeId;
/// use x0tta_knowledge::OrSet;
/// let (a, b) = (NodeId::new("a")?, NodeId::new("b")?);
/// let mut x: OrSet<&str> = OrSet::default();
/// x.add("peer-7", &a);
/// let mut y = x.clone();
/// y.remove(&"peer-7");          // b removes what it saw...
/// x.add("peer-7", &a);          // ...while a adds it again concurrently
/// x.merge(&y);
/// assert!(x.contains(&"peer-7")); // the unseen add survives
/// # let _ = b;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<T: Ord> {
    /// Live dots per element.
    entries: BTreeMap<T, BTreeSet<Dot>>,
    /// Every dot ever removed (so a merge does not resurrect it).
    removed: BTreeSet<Dot>,
    /// Highest counter used per node.
    clock: BTreeMap<NodeId, u64>,
}

impl<T: Ord> Default for OrSet<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            removed: BTreeSet::new(),
            clock: BTreeMap::new(),
        }
    }
}

impl<T: Ord + Clone> OrSet<T> {
    /// Adds `item` as `node`; returns the new dot.
    pub fn add(&mut self, item: T, node: &NodeId) -> Dot {
        let c = self.clock.entry(node.clone()).or_insert(0);
        *c += 1;
        let dot = (node.clone(), *c);
        self.entries.entry(item).or_default().insert(dot.clone());
        dot
    }

    /// Removes `item` (every add of it seen so far); returns whether it was present.
    pub fn remove(&mut self, item: &T) -> bool {
        match self.entries.remove(item) {
            Some(dots) => {
                self.removed.extend(dots);
                true
            }
            None => false,
        }
    }

    /// Whether `item` is in the set.
    pub fn contains(&self, item: &T) -> bool {
        self.entries.contains_key(item)
    }

    /// The members, ordered.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Union of adds minus union of removes.
    pub fn merge(&mut self, other: &Self) {
        self.removed.extend(other.removed.iter().cloned());
        for (item, dots) in &other.entries {
            self.entries
                .entry(item.clone())
                .or_default()
                .extend(dots.iter().cloned());
        }
        let removed = &self.removed;
        self.entries.retain(|_, dots| {
            dots.retain(|d| !removed.contains(d));
            !dots.is_empty()
        });
        for (node, c) in &other.clock {
            let mine = self.clock.entry(node.clone()).or_insert(0);
            *mine = (*mine).max(*c);
        }
    }
}

/// A counter that goes up and down: per-node increments and decrements, each a grow-only
/// maximum, so merges never double-count.
///
/// ```
/// use x0tta_core::NodeId;
/// use x0tta_knowledge::PnCounter;
/// let (a, b) = (NodeId::new("a")?, NodeId::new("b")?);
/// let mut x = PnCounter::default();
/// x.add(&a, 5);
/// let mut y = PnCounter::default();
/// y.add(&b, -2);
/// x.merge(&y);
/// x.merge(&y);
/// assert_eq!(x.value(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    inc: BTreeMap<NodeId, u64>,
    dec: BTreeMap<NodeId, u64>,
}

impl PnCounter {
    /// Adds `delta` (negative subtracts) as `node`.
    pub fn add(&mut self, node: &NodeId, delta: i64) {
        let side = if delta >= 0 {
            &mut self.inc
        } else {
            &mut self.dec
        };
        let e = side.entry(node.clone()).or_insert(0);
        *e = e.saturating_add(delta.unsigned_abs());
    }

    /// The current value.
    pub fn value(&self) -> i128 {
        let sum = |m: &BTreeMap<NodeId, u64>| m.values().map(|v| i128::from(*v)).sum::<i128>();
        sum(&self.inc) - sum(&self.dec)
    }

    /// Per-node maximum of both sides.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in [(&mut self.inc, &other.inc), (&mut self.dec, &other.dec)] {
            for (node, v) in theirs {
                let e = mine.entry(node.clone()).or_insert(0);
                *e = (*e).max(*v);
            }
        }
    }
}
