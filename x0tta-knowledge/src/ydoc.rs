//! Replicated state on [yrs](https://docs.rs/yrs), the Rust port of Yjs: a [`CrdtDoc`] holds
//! named root maps, and typed CRDTs — [`LwwRegister`], [`OrSet`], [`PnCounter`] — are views of
//! them. Replicas exchange yrs updates (lib0 v1 encoding, the format Yjs reads): a state
//! vector says what a replica has, a diff against it is what it lacks, and applying updates in
//! any order, any number of times, converges (`tests/crdt_laws.rs` checks the typed views with
//! proptest; `tests/yjs.rs` checks Yjs-written state loads here and ours loads in Yjs).
//!
//! Every local change runs in one yrs transaction whose update goes to the document's
//! [`UpdateSink`] before the call returns: [`RedbKnowledge`](crate::RedbKnowledge) appends it
//! to its CRDT log with a durable commit, so a change that returned `Ok` survives a crash.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use x0tta_core::NodeId;
use yrs::encoding::serde::{from_any, to_any};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, Map, MapRef, Number, Out, ReadTxn, StateVector, Transact, TransactionMut};
use yrs::{Options, Update};

/// The v1 update of a transaction that changed nothing: no structs, an empty delete set.
const EMPTY_UPDATE: [u8; 2] = [0, 0];

/// Largest integer a counter side holds: Yjs numbers are JavaScript doubles, exact up to 2^53.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A CRDT operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdtError {
    /// The bytes are not a lib0 v1 update.
    #[error("malformed update: {0}")]
    Update(String),
    /// The bytes are not a lib0 v1 state vector.
    #[error("malformed state vector: {0}")]
    StateVector(String),
    /// yrs refused to integrate the update.
    #[error("update not applied: {0}")]
    Apply(String),
    /// A value does not encode as a Yjs value.
    #[error("value does not encode: {0}")]
    Encode(String),
    /// A stored value does not decode as the register's type.
    #[error("stored value does not decode as the expected type: {0}")]
    Type(String),
    /// The document's sink did not persist a local change. The change is in memory only and
    /// was not acknowledged.
    #[error("change not persisted: {0}")]
    Persist(String),
}

/// Where local changes go before a write returns (e.g. a durable log). Gets the change's v1
/// update; an error fails the write.
pub type UpdateSink = Arc<dyn Fn(&[u8]) -> Result<(), CrdtError> + Send + Sync>;

/// A yrs document whose root maps hold replicated state. Clones share the document.
///
/// ```
/// use x0tta_knowledge::CrdtDoc;
/// let (a, b) = (CrdtDoc::with_client_id(1), CrdtDoc::with_client_id(2));
/// a.counter("heals").add(3)?;
/// b.counter("heals").add(-1)?;
/// // b tells a what it has; a answers with exactly what b lacks, and the other way round.
/// b.apply(&a.diff(&b.state_vector())?)?;
/// a.apply(&b.diff(&a.state_vector())?)?;
/// assert_eq!(a.counter("heals").value(), 2);
/// assert_eq!(a.encode_state(), b.encode_state());
/// # Ok::<(), x0tta_knowledge::CrdtError>(())
/// ```
#[derive(Clone)]
pub struct CrdtDoc {
    doc: Doc,
    sink: Option<UpdateSink>,
    /// Held from a write's transaction until its sink returns (and by the store while it
    /// integrates and logs a remote update), so updates reach the log in the order they were
    /// integrated: a logged update never depends on one missing from the log.
    order: Arc<Mutex<()>>,
}

impl std::fmt::Debug for CrdtDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdtDoc")
            .field("client_id", &self.client_id())
            .field("persisted", &self.sink.is_some())
            .finish()
    }
}

impl Default for CrdtDoc {
    fn default() -> Self {
        Self::new()
    }
}

impl CrdtDoc {
    /// A document with a random client id (yrs's default).
    pub fn new() -> Self {
        Self {
            doc: Doc::new(),
            sink: None,
            order: Arc::default(),
        }
    }

    /// A document writing as `client_id`. Two replicas must never share one: yrs tells
    /// writers apart by it. Ids above 2^53 are not readable by Yjs.
    pub fn with_client_id(client_id: u64) -> Self {
        Self {
            doc: Doc::with_options(Options {
                client_id: yrs::block::ClientID::new(client_id),
                // Deleted content is collected; the structure Yjs needs to merge is kept.
                skip_gc: false,
                ..Options::default()
            }),
            sink: None,
            order: Arc::default(),
        }
    }

    /// The same document sending every local change to `sink` before a write returns.
    pub fn with_sink(mut self, sink: UpdateSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The client id this replica writes as.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// The state vector (v1): per writer, how many of its changes this replica holds.
    pub fn state_vector(&self) -> Vec<u8> {
        self.doc.transact().state_vector().encode_v1()
    }

    /// What a replica whose state vector is `remote` lacks, as one v1 update.
    pub fn diff(&self, remote: &[u8]) -> Result<Vec<u8>, CrdtError> {
        let sv =
            StateVector::decode_v1(remote).map_err(|e| CrdtError::StateVector(e.to_string()))?;
        Ok(self.doc.transact().encode_diff_v1(&sv))
    }

    /// The whole state as one v1 update (what `Y.encodeStateAsUpdate` gives in Yjs).
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Integrates a v1 update from another replica (or from a log). Parts whose causal
    /// predecessors are missing wait inside the document until those arrive. Remote changes
    /// do not go to the sink: the caller persists what it received.
    pub fn apply(&self, update: &[u8]) -> Result<(), CrdtError> {
        let update = Update::decode_v1(update).map_err(|e| CrdtError::Update(e.to_string()))?;
        self.doc
            .transact_mut()
            .apply_update(update)
            .map_err(|e| CrdtError::Apply(e.to_string()))
    }

    /// Integrates everything `other` holds that this replica lacks.
    pub fn merge(&self, other: &CrdtDoc) -> Result<(), CrdtError> {
        self.apply(&other.diff(&self.state_vector())?)
    }

    /// Whether some received changes wait for predecessors this replica has not seen.
    pub fn has_pending(&self) -> bool {
        self.doc.transact().has_missing_updates()
    }

    /// The last-writer-wins register kept in the root map `name`.
    pub fn register<T>(&self, name: &str) -> LwwRegister<T> {
        LwwRegister {
            doc: self.clone(),
            map: self.doc.get_or_insert_map(name),
            _value: PhantomData,
        }
    }

    /// The observed-remove set kept in the root map `name`.
    pub fn or_set(&self, name: &str) -> OrSet {
        OrSet {
            doc: self.clone(),
            map: self.doc.get_or_insert_map(name),
        }
    }

    /// The counter kept in the root map `name`.
    pub fn counter(&self, name: &str) -> PnCounter {
        PnCounter {
            doc: self.clone(),
            map: self.doc.get_or_insert_map(name),
        }
    }

    /// The underlying yrs document, for shared types beyond the typed views (text, arrays).
    /// Changes made through it directly do not go to the sink.
    pub fn yrs(&self) -> &Doc {
        &self.doc
    }

    /// The integration-order lock (see the field).
    pub(crate) fn order(&self) -> std::sync::MutexGuard<'_, ()> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction and sends its update (if it changed anything) to the sink,
    /// under the order lock.
    pub(crate) fn write<R>(
        &self,
        f: impl FnOnce(&mut TransactionMut<'_>) -> R,
    ) -> Result<R, CrdtError> {
        let _order = self.order();
        let (r, update) = {
            let mut txn = self.doc.transact_mut();
            let r = f(&mut txn);
            let update = txn.encode_update_v1();
            (r, update)
        };
        if update != EMPTY_UPDATE
            && let Some(sink) = &self.sink
        {
            sink(&update)?;
        }
        Ok(r)
    }
}

/// A value with the stamp it was written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: u64,
    /// Who wrote it.
    pub writer: NodeId,
}

/// A last-writer-wins register (the policy register): writes are ordered by
/// `(version, writer)`, the higher version winning and the writer id breaking ties, so
/// concurrent writes resolve the same on every replica.
///
/// In the root map, each write is an entry keyed `"{version:016x}/{writer}"`; a write removes
/// the entries it supersedes, so a replica holds one entry unless writes were concurrent, and
/// the value is the entry with the highest stamp. Entries whose key does not parse are ignored.
///
/// ```
/// use x0tta_core::NodeId;
/// use x0tta_knowledge::CrdtDoc;
/// let (a, b) = (NodeId::new("a")?, NodeId::new("b")?);
/// let doc = CrdtDoc::with_client_id(1);
/// let policy = doc.register::<String>("policy");
/// assert!(policy.set(&"v1".into(), 1, &a)?);
/// assert!(policy.set(&"v2".into(), 2, &b)?);
/// assert!(!policy.set(&"stale".into(), 1, &a)?); // older version: ignored
/// assert_eq!(policy.get()?.map(|s| s.value), Some("v2".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LwwRegister<T> {
    doc: CrdtDoc,
    map: MapRef,
    _value: PhantomData<fn() -> T>,
}

fn register_key(version: u64, writer: &NodeId) -> String {
    format!("{version:016x}/{writer}")
}

fn parse_register_key(key: &str) -> Option<(u64, NodeId)> {
    let (v, w) = key.split_once('/')?;
    if v.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(v, 16).ok()?, NodeId::new(w).ok()?))
}

impl<T: Serialize + DeserializeOwned> LwwRegister<T> {
    fn top<R: ReadTxn>(&self, txn: &R) -> Option<(u64, NodeId, Out)> {
        self.map
            .iter(txn)
            .filter_map(|(k, v)| parse_register_key(k).map(|(ver, w)| (ver, w, v)))
            .max_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)))
    }

    /// The value in force with its stamp; `None` if never written.
    pub fn get(&self) -> Result<Option<Stamped<T>>, CrdtError> {
        let txn = self.doc.yrs().transact();
        let Some((version, writer, out)) = self.top(&txn) else {
            return Ok(None);
        };
        let Out::Any(any) = out else {
            return Err(CrdtError::Type("register entry is a shared type".into()));
        };
        let value = from_any(&any).map_err(|e| CrdtError::Type(e.to_string()))?;
        Ok(Some(Stamped {
            value,
            version,
            writer,
        }))
    }

    /// The stamp in force.
    pub fn stamp(&self) -> Option<(u64, NodeId)> {
        let txn = self.doc.yrs().transact();
        self.top(&txn).map(|(v, w, _)| (v, w))
    }

    /// Writes `value` if `(version, writer)` is newer than the stamp in force; returns
    /// whether it took effect. A writer must never write two values under one stamp.
    pub fn set(&self, value: &T, version: u64, writer: &NodeId) -> Result<bool, CrdtError> {
        let any = to_any(value).map_err(|e| CrdtError::Encode(e.to_string()))?;
        self.doc.write(|txn| {
            if let Some((v, w, _)) = self.top(txn)
                && (version, writer) <= (v, &w)
            {
                return false;
            }
            let superseded: Vec<String> = self.map.keys(txn).map(str::to_owned).collect();
            for k in superseded {
                self.map.remove(txn, &k);
            }
            self.map.insert(txn, register_key(version, writer), any);
            true
        })
    }
}

/// An observed-remove set of strings (add wins over a concurrent remove): each add is an
/// entry under a key unique to that add (`"{client:x}.{clock:x}"`) holding the member, and a
/// remove deletes the entries it has seen, so an add it has not seen survives.
///
/// ```
/// use x0tta_knowledge::CrdtDoc;
/// let (a, b) = (CrdtDoc::with_client_id(1), CrdtDoc::with_client_id(2));
/// a.or_set("isolated").add("peer-7")?;
/// b.merge(&a)?;
/// b.or_set("isolated").remove("peer-7")?; // b removes what it saw...
/// a.or_set("isolated").add("peer-7")?;    // ...while a adds it again concurrently
/// a.merge(&b)?;
/// assert!(a.or_set("isolated").contains("peer-7")); // the unseen add survives
/// # Ok::<(), x0tta_knowledge::CrdtError>(())
/// ```
pub struct OrSet {
    doc: CrdtDoc,
    map: MapRef,
}

impl OrSet {
    /// Adds `member`.
    pub fn add(&self, member: &str) -> Result<(), CrdtError> {
        let client = self.doc.client_id();
        self.doc.write(|txn| {
            // This replica's clock only grows, so (client, clock) names one add for ever.
            let clock = txn.state_vector().get(&yrs::block::ClientID::new(client));
            self.map
                .insert(txn, format!("{client:x}.{clock:x}"), Any::from(member));
        })
    }

    /// Removes `member` (every add of it this replica has seen); returns whether it was in.
    pub fn remove(&self, member: &str) -> Result<bool, CrdtError> {
        self.doc.write(|txn| {
            let keys: Vec<String> = self
                .map
                .iter(txn)
                .filter(|(_, v)| is_member(v, member))
                .map(|(k, _)| k.to_owned())
                .collect();
            for k in &keys {
                self.map.remove(txn, k);
            }
            !keys.is_empty()
        })
    }

    /// Whether `member` is in the set.
    pub fn contains(&self, member: &str) -> bool {
        let txn = self.doc.yrs().transact();
        self.map.iter(&txn).any(|(_, v)| is_member(&v, member))
    }

    /// The members, sorted, each once.
    pub fn members(&self) -> Vec<String> {
        let txn = self.doc.yrs().transact();
        let mut out: Vec<String> = self
            .map
            .iter(&txn)
            .filter_map(|(_, v)| match v {
                Out::Any(Any::String(s)) => Some(s.to_string()),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn is_member(v: &Out, member: &str) -> bool {
    matches!(v, Out::Any(Any::String(s)) if &**s == member)
}

/// A counter that goes up and down. Each replica keeps its own increments and decrements
/// under `"{client:x}+"` and `"{client:x}-"` and only it writes them, so entries never
/// conflict and merges never double-count; the value is the sum over replicas. Each side
/// saturates at [`MAX_SAFE_INTEGER`] (Yjs numbers are doubles).
///
/// ```
/// use x0tta_knowledge::CrdtDoc;
/// let (a, b) = (CrdtDoc::with_client_id(1), CrdtDoc::with_client_id(2));
/// a.counter("incidents").add(5)?;
/// b.counter("incidents").add(-2)?;
/// a.merge(&b)?;
/// a.merge(&b)?; // idempotent
/// assert_eq!(a.counter("incidents").value(), 3);
/// # Ok::<(), x0tta_knowledge::CrdtError>(())
/// ```
pub struct PnCounter {
    doc: CrdtDoc,
    map: MapRef,
}

fn as_i64(v: &Out) -> i64 {
    match v {
        Out::Any(Any::Number(Number::Int(i))) => *i,
        Out::Any(Any::Number(Number::Float(f))) if f.is_finite() => *f as i64,
        _ => 0,
    }
}

impl PnCounter {
    /// Adds `delta` (negative subtracts).
    pub fn add(&self, delta: i64) -> Result<(), CrdtError> {
        if delta == 0 {
            return Ok(());
        }
        let client = self.doc.client_id();
        let key = format!("{client:x}{}", if delta > 0 { '+' } else { '-' });
        self.doc.write(|txn| {
            let now = self.map.get(txn, &key).map(|v| as_i64(&v)).unwrap_or(0);
            let step = i64::try_from(delta.unsigned_abs()).unwrap_or(MAX_SAFE_INTEGER);
            let next = now.saturating_add(step).min(MAX_SAFE_INTEGER);
            self.map.insert(txn, key, Any::Number(Number::Int(next)));
        })
    }

    /// The current value.
    pub fn value(&self) -> i128 {
        let txn = self.doc.yrs().transact();
        self.map
            .iter(&txn)
            .map(|(k, v)| {
                let n = i128::from(as_i64(&v).clamp(0, MAX_SAFE_INTEGER));
                match k.as_bytes().last() {
                    Some(b'+') => n,
                    Some(b'-') => -n,
                    _ => 0, // not a counter entry
                }
            })
            .sum()
    }
}
