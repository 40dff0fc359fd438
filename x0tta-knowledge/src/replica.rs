//! The store's replicated document: a [`CrdtDoc`] whose every change is in the CRDT log
//! (a redb table) before it is acknowledged, and whose `incidents` map names, per incident
//! CID, the signed envelope that proves it.

use std::collections::BTreeSet;

use hashlink::LruCache;
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::mpsc;
use x0tta_core::{
    ContentId, Envelope, Incident, IncidentMessage, KnowledgeError, KnowledgeStore, Rejection,
    Signer, Verifier, contexts, from_dag_cbor, to_dag_cbor,
};
use yrs::types::EntryChange;
use yrs::updates::decoder::Decode;
use yrs::{Any, Map, MapRef, Observable, Origin, Out, ReadTxn, Transact};

use crate::RedbKnowledge;
use crate::store::{BLOCKS, ENVELOPES, INCIDENT_SEQ, META, hold_envelopes, storage};
use crate::ydoc::{CrdtDoc, CrdtError, LwwRegister};

/// The CRDT update log: sequence → v1 update.
pub(crate) const CRDT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("crdt_log");
const NEXT_CRDT: &str = "next_crdt_seq";
const CRDT_CLIENT: &str = "crdt_client_id";
/// Above this many logged updates, opening the store folds the log into one.
const COMPACT_AT: u64 = 512;
/// Root map: incident CID (string) → CID (string) of the signed envelope carrying it.
pub const INCIDENTS_MAP: &str = "incidents";
/// Root map of the policy register (an [`LwwRegister`](crate::LwwRegister) of the CID of a
/// recorded policy's body). An index, not an authority: any peer can write it; the policy in
/// force comes from signed governance decisions.
pub const POLICY_REGISTER: &str = "policy";
/// Local changes waiting for the replicator to gossip them (older ones are dropped when
/// full; anti-entropy carries what gossip missed).
const OUTBOX: usize = 256;
/// The origin of transactions that integrate remote updates.
const REMOTE: &str = "x0tta/remote";

/// An incident this store's document names but whose envelope it has not verified yet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wanted {
    /// The incident's CID (the map key).
    pub incident: ContentId,
    /// The CID of the envelope that carries it (the map value).
    pub envelope: ContentId,
}

/// Why a fetched envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Its bytes do not hash to the CID the document names.
    #[error("block does not match its CID")]
    Cid,
    /// It is not a DAG-CBOR envelope of an incident message.
    #[error("not an incident envelope")]
    Malformed,
    /// Its signature does not verify under the incident context.
    #[error("bad signature")]
    Signature,
    /// It was signed by another node than the one the incident names.
    #[error("signed by {signer}, not by the incident's node {node}")]
    Signer {
        /// Who signed.
        signer: String,
        /// Whose incident it is.
        node: String,
    },
    /// The incident inside is not the one the document names.
    #[error("carries another incident than the key names")]
    Mismatch,
    /// Its signer is not known to this node yet (no identity record proven to it); retried
    /// once it is.
    #[error("signed by {0}, whom this node does not know yet")]
    UnknownSigner(String),
}

impl Refusal {
    /// Whether the same document entry would be refused again whoever sent the block: the
    /// envelope is content-addressed, so only a block that did not match its CID (the
    /// sender's fault) or a signer this node does not know yet can turn out otherwise.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Cid | Self::UnknownSigner(_))
    }
}

/// Document entries whose envelope was refused for good, remembered (newest
/// [`MAX_REFUSED`]) so that syncs stop fetching and verifying them again.
pub const MAX_REFUSED: usize = 10_000;

pub(crate) struct Replica {
    pub(crate) doc: CrdtDoc,
    incidents: MapRef,
    /// Incident entries that remote updates inserted or changed, drained after each apply.
    changed: Arc<Mutex<Vec<(String, String)>>>,
    /// Serialises remote applies with the drain of `changed`.
    applying: Mutex<()>,
    signer: RwLock<Option<Arc<dyn Signer>>>,
    /// Entries refused for good, newest last ([`MAX_REFUSED`]).
    refused: Mutex<LruCache<Wanted, ()>>,
    /// A peer wrote under our client id; the next id is already stored (drawn once).
    collided: std::sync::atomic::AtomicBool,
    outbox: Arc<Mutex<Option<mpsc::Sender<Vec<u8>>>>>,
}

fn cid_string(out: &Out) -> Option<String> {
    match out {
        Out::Any(Any::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn append(db: &Database, updates: &[&[u8]]) -> Result<(), KnowledgeError> {
    let txn = db.begin_write().map_err(storage("begin"))?;
    {
        let mut log = txn.open_table(CRDT_LOG).map_err(storage("table"))?;
        let mut meta = txn.open_table(META).map_err(storage("table"))?;
        let mut next = meta
            .get(NEXT_CRDT)
            .map_err(storage("get"))?
            .map_or(0, |v| v.value());
        for u in updates {
            log.insert(next, *u).map_err(storage("insert"))?;
            next += 1;
        }
        meta.insert(NEXT_CRDT, next).map_err(storage("insert"))?;
    }
    txn.commit().map_err(storage("commit"))
}

/// Draws a new client id (yrs's random one, which fits a JavaScript number so Yjs reads it)
/// and stores it as the one this store writes under.
fn fresh_client(db: &Database) -> Result<u64, KnowledgeError> {
    let c = yrs::Doc::new().client_id().get();
    let txn = db.begin_write().map_err(storage("begin"))?;
    txn.open_table(META)
        .map_err(storage("table"))?
        .insert(CRDT_CLIENT, c)
        .map_err(storage("insert"))?;
    txn.commit().map_err(storage("commit"))?;
    Ok(c)
}

/// The document as the log holds it, writing as `client`, and the log's length.
fn load(db: &Database, client: u64) -> Result<(CrdtDoc, u64), KnowledgeError> {
    let doc = CrdtDoc::with_client_id(client);
    let r = db.begin_read().map_err(storage("read"))?;
    let log = r.open_table(CRDT_LOG).map_err(storage("table"))?;
    let entries = log.len().map_err(storage("len"))?;
    for row in log.iter().map_err(storage("iter"))? {
        let (seq, update) = row.map_err(storage("row"))?;
        doc.apply(update.value())
            .map_err(|e| KnowledgeError::Storage(format!("CRDT log entry {}: {e}", seq.value())))?;
    }
    Ok((doc, entries))
}

/// Whether `doc` holds changes written under its own client id that wait for an earlier one.
fn own_pending(doc: &CrdtDoc) -> bool {
    let own = doc.yrs().client_id();
    let txn = doc.yrs().transact();
    txn.store()
        .pending_update()
        .is_some_and(|p| p.update.state_vector_lower().contains_client(&own))
}

impl Replica {
    /// Loads the document from the log (folding a long log into one update) and wires its
    /// sink to the log.
    pub(crate) fn open(db: &Arc<Database>) -> Result<Self, KnowledgeError> {
        let stored = {
            let txn = db.begin_write().map_err(storage("begin"))?;
            let stored = {
                let meta = txn.open_table(META).map_err(storage("table"))?;
                txn.open_table(CRDT_LOG).map_err(storage("table"))?;
                meta.get(CRDT_CLIENT)
                    .map_err(storage("get"))?
                    .map(|v| v.value())
            };
            txn.commit().map_err(storage("commit"))?;
            stored
        };
        let mut client = match stored {
            Some(c) => c,
            None => fresh_client(db)?,
        };
        let (mut doc, mut entries) = load(db, client)?;
        // Changes of our own that cannot integrate (an earlier one is missing from the log)
        // mean our clock may reuse ids that already name other content somewhere: write
        // under a new id from now on, as Yjs does when it sees its id in use.
        if own_pending(&doc) {
            let old = client;
            client = fresh_client(db)?;
            tracing::warn!(
                old,
                new = client,
                "CRDT log holds changes of ours that cannot integrate; writing under a new client id"
            );
            (doc, entries) = load(db, client)?;
        }
        if entries > COMPACT_AT {
            let state = doc.encode_state();
            let txn = db.begin_write().map_err(storage("begin"))?;
            {
                let mut log = txn.open_table(CRDT_LOG).map_err(storage("table"))?;
                log.retain(|_, _| false).map_err(storage("compact"))?;
                log.insert(0, state.as_slice()).map_err(storage("insert"))?;
                let mut meta = txn.open_table(META).map_err(storage("table"))?;
                meta.insert(NEXT_CRDT, 1).map_err(storage("insert"))?;
            }
            txn.commit().map_err(storage("commit"))?;
        }

        let outbox: Arc<Mutex<Option<mpsc::Sender<Vec<u8>>>>> = Arc::default();
        let (sink_db, sink_outbox) = (db.clone(), outbox.clone());
        let doc = doc.with_sink(Arc::new(move |update: &[u8]| {
            append(&sink_db, &[update]).map_err(|e| CrdtError::Persist(e.to_string()))?;
            if let Some(tx) = sink_outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                let _ = tx.try_send(update.to_vec());
            }
            Ok(())
        }));
        let incidents = doc.yrs().get_or_insert_map(INCIDENTS_MAP);
        let changed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let sink = changed.clone();
        incidents.observe(REMOTE, move |txn, event| {
            if txn.origin() != Some(&Origin::from(REMOTE)) {
                return;
            }
            let mut out = sink.lock().unwrap_or_else(|p| p.into_inner());
            for (key, change) in event.keys(txn) {
                if let EntryChange::Inserted(v) | EntryChange::Updated(_, v) = change
                    && let Some(env) = cid_string(v)
                {
                    out.push((key.to_string(), env));
                }
            }
        });
        Ok(Self {
            doc,
            incidents,
            changed,
            applying: Mutex::new(()),
            signer: RwLock::new(None),
            refused: Mutex::new(LruCache::new(MAX_REFUSED)),
            collided: std::sync::atomic::AtomicBool::new(false),
            outbox,
        })
    }

    pub(crate) fn remember_refused(&self, entries: &[Wanted]) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        for w in entries {
            refused.insert(w.clone(), ());
        }
    }

    pub(crate) fn refused(&self) -> usize {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn set_signer(&self, signer: Arc<dyn Signer>) {
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = Some(signer);
    }

    pub(crate) fn signer(&self) -> Option<Arc<dyn Signer>> {
        self.signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A receiver of local changes (replacing any earlier one).
    pub(crate) fn subscribe_local(&self) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(OUTBOX);
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// Signs `incident` into an envelope for the document, if it is this node's own.
    pub(crate) fn seal(
        &self,
        incident: &Incident,
    ) -> Result<Option<(ContentId, Vec<u8>)>, KnowledgeError> {
        let Some(signer) = self.signer() else {
            return Ok(None);
        };
        if signer.node_id() != &incident.node {
            return Ok(None);
        }
        let msg = IncidentMessage::Incident {
            incident: Box::new(incident.clone()),
        };
        let env = Envelope::seal(signer.as_ref(), contexts::INCIDENT, to_dag_cbor(&msg)?)
            .map_err(|e| KnowledgeError::Storage(format!("signing incident: {e}")))?;
        let bytes = to_dag_cbor(&env)?;
        Ok(Some((ContentId::of_dag_cbor(&bytes), bytes)))
    }

    /// Names `envelope` as the proof of `incident` in the document (durably logged).
    pub(crate) fn publish(&self, entries: &[(ContentId, ContentId)]) -> Result<(), KnowledgeError> {
        let fresh: Vec<_> = {
            let txn = self.doc.yrs().transact();
            entries
                .iter()
                // Ours are written again where the document holds anything else (a peer may
                // have overwritten them).
                .filter(|(i, e)| {
                    self.incidents
                        .get(&txn, &i.to_string())
                        .and_then(|v| cid_string(&v))
                        != Some(e.to_string())
                })
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        self.doc
            .write(|txn| {
                for (incident, envelope) in fresh {
                    self.incidents.insert(
                        txn,
                        incident.to_string(),
                        Any::from(envelope.to_string()),
                    );
                }
            })
            .map_err(|e| KnowledgeError::Storage(e.to_string()))
    }

    /// Integrates a remote update, logs it durably, and returns the incidents it named that
    /// `known` says this store lacks.
    pub(crate) fn apply(
        &self,
        db: &Database,
        update: &[u8],
    ) -> Result<Vec<Wanted>, KnowledgeError> {
        let _guard = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        // Integrated and logged under the document's order lock, like local writes.
        let _order = self.doc.order();
        let own = self.doc.yrs().client_id();
        let clock = || self.doc.yrs().transact().state_vector().get(&own);
        let before = clock();
        {
            let decoded = yrs::Update::decode_v1(update)
                .map_err(|e| KnowledgeError::Invalid(format!("CRDT update: {e}")))?;
            self.doc
                .yrs()
                .transact_mut_with(REMOTE)
                .apply_update(decoded)
                .map_err(|e| KnowledgeError::Invalid(format!("CRDT update: {e}")))?;
        }
        append(db, &[update])?;
        if clock() != before
            && !self
                .collided
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            // Someone else writes under our id (a copied database, or a log that lost our
            // latest changes): the next open writes under a new one.
            let new = fresh_client(db)?;
            tracing::error!(
                client = own.get(),
                next = new,
                "a peer sent changes under this store's own client id; reopen to write under a new one"
            );
        }
        let changed = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
        unknown(db, changed.into_iter())
    }

    /// Incidents the document names that this store lacks (at most `limit`).
    pub(crate) fn wanted(
        &self,
        db: &Database,
        limit: usize,
    ) -> Result<Vec<Wanted>, KnowledgeError> {
        let entries: Vec<(String, String)> = {
            let txn = self.doc.yrs().transact();
            self.incidents
                .iter(&txn)
                .filter_map(|(k, v)| cid_string(&v).map(|e| (k.to_owned(), e)))
                .collect()
        };
        let mut out = unknown(db, entries.into_iter())?;
        {
            let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            out.retain(|w| !refused.contains_key(w));
        }
        out.truncate(limit);
        Ok(out)
    }
}

/// The entries whose incident is not in `INCIDENT_SEQ`; entries that do not parse are skipped.
fn unknown(
    db: &Database,
    entries: impl Iterator<Item = (String, String)>,
) -> Result<Vec<Wanted>, KnowledgeError> {
    let r = db.begin_read().map_err(storage("read"))?;
    let seqs = r.open_table(INCIDENT_SEQ).map_err(storage("table"))?;
    let mut out = BTreeSet::new();
    for (k, v) in entries {
        let (Ok(incident), Ok(envelope)) = (k.parse::<ContentId>(), v.parse::<ContentId>()) else {
            continue;
        };
        if seqs
            .get(incident.to_bytes().as_slice())
            .map_err(storage("get"))?
            .is_none()
        {
            out.insert(Wanted { incident, envelope });
        }
    }
    Ok(out.into_iter().collect())
}

/// The CID of the incident an envelope says it carries (not verified: to pick which of the
/// document entries naming this envelope to verify it for).
pub(crate) fn claimed_incident(bytes: &[u8]) -> Option<ContentId> {
    let env: Envelope = from_dag_cbor(bytes).ok()?;
    match from_dag_cbor::<IncidentMessage>(&env.payload).ok()? {
        IncidentMessage::Incident { incident } => incident.content_id().ok(),
        _ => None,
    }
}

/// Checks a fetched envelope against what the document names; returns the incident inside.
pub(crate) fn verify_envelope(
    wanted: &Wanted,
    bytes: &[u8],
    verifier: &dyn Verifier,
) -> Result<Incident, Refusal> {
    if ContentId::of_dag_cbor(bytes) != wanted.envelope {
        return Err(Refusal::Cid);
    }
    let env: Envelope = from_dag_cbor(bytes).map_err(|_| Refusal::Malformed)?;
    let payload = env
        .open(verifier, contexts::INCIDENT)
        .map_err(|e| match e.reason {
            Rejection::UnknownSigner(who) => Refusal::UnknownSigner(who.to_string()),
            _ => Refusal::Signature,
        })?;
    let Ok(IncidentMessage::Incident { incident }) = from_dag_cbor::<IncidentMessage>(payload)
    else {
        return Err(Refusal::Malformed);
    };
    if incident.node != env.signature.signer {
        return Err(Refusal::Signer {
            signer: env.signature.signer.to_string(),
            node: incident.node.to_string(),
        });
    }
    if incident.content_id().ok() != Some(wanted.incident) {
        return Err(Refusal::Mismatch);
    }
    Ok(*incident)
}

/// Reads blocks by CID (those held here).
pub(crate) fn read_blocks(
    db: &Database,
    cids: &[ContentId],
    budget: usize,
) -> Result<Vec<(ContentId, Vec<u8>)>, KnowledgeError> {
    let r = db.begin_read().map_err(storage("read"))?;
    let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
    let mut out = Vec::new();
    let mut used = 0;
    for cid in cids {
        if let Some(b) = blocks
            .get(cid.to_bytes().as_slice())
            .map_err(storage("get"))?
        {
            let b = b.value();
            if used + b.len() > budget {
                break;
            }
            used += b.len() + 64;
            out.push((*cid, b.to_vec()));
        }
    }
    Ok(out)
}

impl RedbKnowledge {
    /// The replicated document (yrs): the incidents map, the policy register, counters and
    /// sets. Local changes are in the store's CRDT log before a write returns.
    ///
    /// ```
    /// use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};
    /// # let dir = tempfile::tempdir()?;
    /// let store = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default())?;
    /// store.crdt().counter("heals").add(1)?;
    /// drop(store);
    /// let store = RedbKnowledge::open(dir.path().join("k.redb"), KnowledgeConfig::default())?;
    /// assert_eq!(store.crdt().counter("heals").value(), 1); // reloaded from the CRDT log
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn crdt(&self) -> &CrdtDoc {
        &self.replica.doc
    }

    /// The policy register: the CID of the newest recorded policy body, versioned, last
    /// writer wins by version then writer. Unauthenticated (any peer can write it): read it
    /// as a hint of which version exists and fetch the body by CID; the policy in force
    /// comes from signed governance decisions.
    pub fn policy_register(&self) -> LwwRegister<String> {
        self.replica.doc.register(POLICY_REGISTER)
    }

    /// Signs this node's incidents into the replicated document from now on (each named
    /// with its envelope, an ML-DSA-65 signature under [`contexts::INCIDENT`]), and adds the
    /// own incidents already stored that the document lacks. Returns how many it added.
    pub async fn set_signer(&self, signer: Arc<dyn Signer>) -> Result<usize, KnowledgeError> {
        self.replica.set_signer(signer.clone());
        let me = signer.node_id().clone();
        let missing: Vec<(ContentId, Incident)> = self
            .recent(usize::MAX)
            .await?
            .into_iter()
            .filter(|(_, i)| i.node == me)
            .collect();
        let missing = self.without_envelope(missing).await?;
        let replica = self.replica.clone();
        let (entries, blocks) = tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            let mut blocks = Vec::new();
            for (id, inc) in missing {
                if let Some((env, bytes)) = replica.seal(&inc)? {
                    entries.push((id, env));
                    blocks.push((id, env, bytes));
                }
            }
            Ok::<_, KnowledgeError>((entries, blocks))
        })
        .await
        .map_err(|e| KnowledgeError::Storage(format!("signing task failed: {e}")))??;
        self.put_envelopes(blocks).await?;
        let n = entries.len();
        let replica = self.replica.clone();
        tokio::task::spawn_blocking(move || replica.publish(&entries))
            .await
            .map_err(|e| KnowledgeError::Storage(format!("CRDT task failed: {e}")))??;
        Ok(n)
    }

    /// Integrates a remote CRDT update (v1), durably logged before this returns; gives the
    /// incidents it names that this store lacks (fetch their envelopes, then
    /// [`RedbKnowledge::accept_envelope`]).
    pub async fn apply_update(&self, update: Vec<u8>) -> Result<Vec<Wanted>, KnowledgeError> {
        let (db, replica) = (self.db.clone(), self.replica.clone());
        tokio::task::spawn_blocking(move || replica.apply(&db, &update))
            .await
            .map_err(|e| KnowledgeError::Storage(format!("CRDT task failed: {e}")))?
    }

    /// Up to `limit` incidents the document names that this store lacks, less the entries
    /// remembered as refused for good ([`RedbKnowledge::remember_refused`]).
    pub async fn wanted(&self, limit: usize) -> Result<Vec<Wanted>, KnowledgeError> {
        let (db, replica) = (self.db.clone(), self.replica.clone());
        tokio::task::spawn_blocking(move || replica.wanted(&db, limit))
            .await
            .map_err(|e| KnowledgeError::Storage(format!("CRDT task failed: {e}")))?
    }

    /// Remembers document entries whose envelope was refused for good
    /// ([`Refusal::is_permanent`]), so that [`RedbKnowledge::wanted`] stops naming them (the
    /// newest [`MAX_REFUSED`] are kept, in memory: a reopened store checks them once more).
    pub fn remember_refused(&self, entries: &[Wanted]) {
        self.replica.remember_refused(entries);
    }

    /// How many refused document entries are remembered.
    pub fn refused_entries(&self) -> usize {
        self.replica.refused()
    }

    /// Verifies a fetched envelope against what the document names (CID, ML-DSA-65
    /// signature under [`contexts::INCIDENT`], signed by the incident's own node, the incident
    /// the key names) and stores the incident and the envelope. The outer error is storage;
    /// the inner one says why the envelope was refused.
    pub async fn accept_envelope(
        &self,
        wanted: &Wanted,
        bytes: Vec<u8>,
        verifier: &dyn Verifier,
    ) -> Result<Result<ContentId, Refusal>, KnowledgeError> {
        let incident = match verify_envelope(wanted, &bytes, verifier) {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        let inserted = self
            .insert_with_blocks(
                vec![incident],
                vec![(wanted.incident, wanted.envelope, bytes)],
            )
            .await?;
        self.index_inserted(&inserted);
        Ok(Ok(wanted.incident))
    }

    /// [`RedbKnowledge::accept_envelope`] for many envelopes: verified on all cores, the
    /// accepted incidents stored in one durable transaction. Results are in input order.
    pub async fn accept_envelopes(
        &self,
        fetched: Vec<(Wanted, Vec<u8>)>,
        verifier: Arc<dyn Verifier>,
    ) -> Result<Vec<Result<ContentId, Refusal>>, KnowledgeError> {
        let checked = tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let per = fetched.len().div_ceil(threads).max(1);
            std::thread::scope(|s| {
                let handles: Vec<_> = fetched
                    .chunks(per)
                    .map(|part| {
                        let verifier = verifier.clone();
                        s.spawn(move || {
                            part.iter()
                                .map(|(w, b)| {
                                    verify_envelope(w, b, verifier.as_ref())
                                        .map(|i| (w.clone(), b.clone(), i))
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .zip(fetched.chunks(per))
                    .flat_map(|(h, part)| {
                        // A panicked verifier refuses its whole part (results stay in order).
                        h.join().unwrap_or_else(|_| {
                            part.iter().map(|_| Err(Refusal::Malformed)).collect()
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| KnowledgeError::Storage(format!("verification task failed: {e}")))?;
        let mut incidents = Vec::new();
        let mut blocks = Vec::new();
        let mut out = Vec::with_capacity(checked.len());
        for r in checked {
            match r {
                Ok((w, bytes, incident)) => {
                    incidents.push(incident);
                    blocks.push((w.incident, w.envelope, bytes));
                    out.push(Ok(w.incident));
                }
                Err(why) => out.push(Err(why)),
            }
        }
        if !incidents.is_empty() {
            let inserted = self.insert_with_blocks(incidents, blocks).await?;
            self.index_inserted(&inserted);
        }
        Ok(out)
    }

    /// Blocks held here among `cids`, in order, stopping before `budget` bytes.
    pub async fn blocks(
        &self,
        cids: Vec<ContentId>,
        budget: usize,
    ) -> Result<Vec<(ContentId, Vec<u8>)>, KnowledgeError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || read_blocks(&db, &cids, budget))
            .await
            .map_err(|e| KnowledgeError::Storage(format!("storage task failed: {e}")))?
    }

    /// A receiver of this store's local CRDT changes (for gossip), replacing any earlier one.
    pub fn local_updates(&self) -> mpsc::Receiver<Vec<u8>> {
        self.replica.subscribe_local()
    }

    /// Stores (pins) a DAG-CBOR block under the CID of its bytes, so this node serves it over
    /// `/x0tta/block/1`; returns the CID.
    pub async fn put_block(&self, bytes: Vec<u8>) -> Result<ContentId, KnowledgeError> {
        let id = ContentId::of_dag_cbor(&bytes);
        self.put_blocks(vec![(id, bytes)]).await?;
        Ok(id)
    }

    /// The incidents among `incidents` this store holds no envelope for.
    async fn without_envelope(
        &self,
        incidents: Vec<(ContentId, Incident)>,
    ) -> Result<Vec<(ContentId, Incident)>, KnowledgeError> {
        self.blocking(move |db| {
            let r = db.begin_read().map_err(storage("read"))?;
            let held = r.open_table(ENVELOPES).map_err(storage("table"))?;
            let mut out = Vec::new();
            for (id, inc) in incidents {
                if held
                    .get(id.to_bytes().as_slice())
                    .map_err(storage("get"))?
                    .is_none()
                {
                    out.push((id, inc));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Stores self-signed envelopes: (incident, envelope CID, bytes).
    async fn put_envelopes(
        &self,
        envelopes: Vec<(ContentId, ContentId, Vec<u8>)>,
    ) -> Result<(), KnowledgeError> {
        if envelopes.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage("begin"))?;
            {
                let mut blocks = txn.open_table(BLOCKS).map_err(storage("table"))?;
                let mut held = txn.open_table(ENVELOPES).map_err(storage("table"))?;
                hold_envelopes(&mut blocks, &mut held, &envelopes)?;
            }
            txn.commit().map_err(storage("commit"))
        })
        .await
    }

    async fn put_blocks(&self, blocks: Vec<(ContentId, Vec<u8>)>) -> Result<(), KnowledgeError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(storage("begin"))?;
            {
                let mut t = txn.open_table(BLOCKS).map_err(storage("table"))?;
                for (id, b) in &blocks {
                    t.insert(id.to_bytes().as_slice(), b.as_slice())
                        .map_err(storage("insert"))?;
                }
            }
            txn.commit().map_err(storage("commit"))
        })
        .await
        .map_err(|e| KnowledgeError::Storage(format!("storage task failed: {e}")))?
    }
}
