//! The redb-backed store.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use x0tta_core::{
    ContentId, Embedder, Incident, KnowledgeError, KnowledgeStore, MergeOutcome, PlanTemplate,
    Policy, SearchHit, SearchQuery, from_dag_cbor, to_dag_cbor,
};

use crate::index::{DocMeta, Fusion, Index, IndexStats, MergeStep, ScoredHit, merge_step};
use crate::replica::{CRDT_LOG, Replica};
use crate::tier::{BlockSource, TierStats, Tiers};
use crate::vector::{self, VectorIndexConfig};

/// Record bodies by CID bytes (DAG-CBOR).
pub(crate) const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// Incidents that keep their body, by sequence number → CID bytes (oldest first).
const INCIDENT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("incident_log");
/// Every incident ever recorded: CID bytes → sequence number.
pub(crate) const INCIDENT_SEQ: TableDefinition<&[u8], u64> = TableDefinition::new("incident_seq");
/// Plan templates by name (DAG-CBOR).
const TEMPLATES: TableDefinition<&str, &[u8]> = TableDefinition::new("templates");
/// Policy versions in the order they came into force → CID bytes (body in BLOCKS).
const POLICY_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("policy_log");
/// Embeddings of incidents that keep their body: sequence → little-endian f32s.
const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors");
/// Envelopes held for incidents: incident CID bytes → envelope CID bytes (body in BLOCKS).
/// Written only with a verified (or self-signed) envelope, in the transaction that stores it,
/// and read by retention, which never takes what to delete from the replicated document.
pub(crate) const ENVELOPES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("envelopes");
/// Counters.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Incidents embedded per batch when an embedder is added to a store that holds some.
const BACKFILL_BATCH: usize = 256;

const NEXT_INCIDENT: &str = "next_incident_seq";
const NEXT_POLICY: &str = "next_policy_seq";

/// How a [`RedbKnowledge`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeConfig {
    /// Incidents that keep their body locally (seed: 1,000); older ones keep only their CID.
    pub retention: usize,
    /// How BM25 and vector rankings are fused.
    pub fusion: Fusion,
    /// How vectors are indexed (exact segment, HNSW graph, persistence).
    pub vectors: VectorIndexConfig,
    /// Incidents the hot tier keeps decoded in memory (least recently read evicted first;
    /// 0: no hot tier).
    pub hot_cache: usize,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            retention: 1000,
            fusion: Fusion::default(),
            vectors: VectorIndexConfig::default(),
            hot_cache: 256,
        }
    }
}

impl KnowledgeConfig {
    /// The defaults with another retention.
    pub fn with_retention(retention: usize) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }
}

/// What a write stored — per incident: id, sequence if new, the incident, its vector — and
/// the sequences retention evicted.
pub(crate) type Inserted = (
    Vec<(ContentId, Option<u64>, Incident, Option<Vec<f32>>)>,
    Vec<u64>,
);

fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The store cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database file cannot be created or opened (another process may hold it).
    #[error("cannot open knowledge store {path}: {reason}")]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file opened but its contents cannot be read back.
    #[error("knowledge store {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("invalid knowledge store configuration: {0}")]
    Config(&'static str),
}

/// Stores envelopes — (incident, envelope CID, bytes), each verified or signed here — as
/// blocks, and notes which incident each one carries (what retention deletes with it).
pub(crate) fn hold_envelopes(
    blocks: &mut redb::Table<&[u8], &[u8]>,
    held: &mut redb::Table<&[u8], &[u8]>,
    envelopes: &[(ContentId, ContentId, Vec<u8>)],
) -> Result<(), KnowledgeError> {
    for (incident, id, bytes) in envelopes {
        let key = id.to_bytes();
        blocks
            .insert(key.as_slice(), bytes.as_slice())
            .map_err(storage("insert"))?;
        held.insert(incident.to_bytes().as_slice(), key.as_slice())
            .map_err(storage("insert"))?;
    }
    Ok(())
}

pub(crate) fn storage<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> KnowledgeError {
    move |e| KnowledgeError::Storage(format!("{what}: {e}"))
}

/// What a store's clones share besides the database: the search index and its merge task.
struct Shared {
    index: RwLock<Index>,
    /// Serialises merges (the background thread and `flush_index`); holds whether the graph
    /// changed since it was last saved.
    merging: Mutex<bool>,
    /// Wakes the merge thread, started on first need. Capacity 1: a pending wake-up covers any
    /// number of requests, so `record` never blocks on it.
    wake: Mutex<Option<SyncSender<()>>>,
    /// Where the graph is persisted (`<file>.hnsw/`), if it is.
    sidecar: Option<PathBuf>,
    /// The hot tier and read counters.
    tiers: Tiers,
    /// Where evicted bodies are fetched from.
    cold: RwLock<Option<Arc<dyn BlockSource>>>,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges until there is nothing left to merge (`force`: down to an empty exact segment),
    /// then saves the graph if it changed.
    fn run_merges(&self, force: bool) -> Result<(), String> {
        let mut dirty = self.merging.lock().unwrap_or_else(|p| p.into_inner());
        while merge_step(&self.index, force) != MergeStep::Idle {
            *dirty = true;
        }
        if let (true, Some(dir)) = (*dirty, &self.sidecar) {
            let (graph, counters) = {
                let ix = self.read();
                (ix.graph(), ix.counters())
            };
            if let Some(graph) = graph {
                let generation = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                vector::save(&graph, dir, generation)
                    .map_err(|e| format!("saving the vector graph to {}: {e}", dir.display()))?;
                counters
                    .saves
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            *dirty = false;
        }
        Ok(())
    }

    /// Asks the merge thread to run if the index has merge work; starts the thread if needed.
    fn wake(self: &Arc<Self>) {
        if !self.read().needs_merge() {
            return;
        }
        let mut wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = wake.as_ref() {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => return,
                Err(TrySendError::Disconnected(())) => *wake = None, // it died: start another
            }
        }
        let (tx, rx) = sync_channel(1);
        let weak = Arc::downgrade(self);
        match std::thread::Builder::new()
            .name("x0tta-knowledge-merge".into())
            .spawn(move || merge_thread(weak, rx))
        {
            Ok(_) => {
                let _ = tx.try_send(());
                *wake = Some(tx);
            }
            Err(err) => tracing::warn!(
                %err,
                "cannot start the vector merge thread; new vectors stay in the exact segment"
            ),
        }
    }
}

/// The background merge task: one thread per open store, alive while the store is (it holds
/// only a weak reference; dropping the last clone drops the sender and ends it).
fn merge_thread(shared: Weak<Shared>, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(err) = shared.run_merges(false) {
            tracing::warn!(%err, "vector graph merge");
        }
    }
}

/// A durable, content-addressed incident memory in one redb file. See the crate docs.
///
/// Cheap to clone; clones share the database and the index. One process opens a file at a
/// time (redb holds a lock); a second open fails with [`OpenError::Database`].
///
/// With an embedder, vectors are searched in two parts: the newest (up to
/// [`VectorIndexConfig::exact_segment`]) by brute force, the rest through an HNSW graph that a
/// background thread extends when the exact segment fills and saves next to the file
/// (`<file>.hnsw/`), so a reopen neither re-embeds nor rebuilds.
#[derive(Clone)]
pub struct RedbKnowledge {
    pub(crate) db: Arc<Database>,
    pub(crate) replica: Arc<Replica>,
    shared: Arc<Shared>,
    config: KnowledgeConfig,
    path: PathBuf,
    embedder: Option<Arc<dyn Embedder>>,
}

impl std::fmt::Debug for RedbKnowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKnowledge")
            .field("path", &self.path)
            .field("retention", &self.config.retention)
            .finish_non_exhaustive()
    }
}

impl RedbKnowledge {
    /// Opens (or creates) the store at `path` and rebuilds its search index.
    pub fn open(path: impl AsRef<Path>, config: KnowledgeConfig) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        if config.retention == 0 {
            return Err(OpenError::Config("retention must be at least 1"));
        }
        config.vectors.check().map_err(OpenError::Config)?;
        let db = Database::create(&path).map_err(|e| OpenError::Database {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let corrupt = |e: KnowledgeError| OpenError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        };
        // Create every table so readers never meet a missing one.
        let txn = db.begin_write().map_err(|e| corrupt(storage("begin")(e)))?;
        {
            let t = (|| -> Result<(), redb::TableError> {
                txn.open_table(BLOCKS)?;
                txn.open_table(INCIDENT_LOG)?;
                txn.open_table(INCIDENT_SEQ)?;
                txn.open_table(TEMPLATES)?;
                txn.open_table(POLICY_LOG)?;
                txn.open_table(META)?;
                txn.open_table(VECTORS)?;
                txn.open_table(CRDT_LOG)?;
                txn.open_table(ENVELOPES)?;
                Ok(())
            })();
            t.map_err(|e| corrupt(storage("tables")(e)))?;
        }
        txn.commit().map_err(|e| corrupt(storage("commit")(e)))?;
        let db = Arc::new(db);
        let replica = Arc::new(Replica::open(&db).map_err(corrupt)?);

        let sidecar = config.vectors.persist.then(|| vector::sidecar_dir(&path));
        let store = Self {
            db,
            replica,
            shared: Arc::new(Shared {
                index: RwLock::new(Index::new(config.vectors.clone())),
                merging: Mutex::new(false),
                wake: Mutex::new(None),
                sidecar,
                tiers: Tiers::new(config.hot_cache),
                cold: RwLock::new(None),
            }),
            config,
            path: path.clone(),
            embedder: None,
        };
        store.rebuild_index().map_err(corrupt)?;
        store.shared.wake();
        Ok(store)
    }

    /// The same store (shared file and index) searching with other fusion weights.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.config.fusion = fusion;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Incidents that keep their body.
    pub fn retention(&self) -> usize {
        self.config.retention
    }

    /// Incidents ever recorded (with or without their body).
    pub fn known_incidents(&self) -> Result<u64, KnowledgeError> {
        let r = self.db.begin_read().map_err(storage("read"))?;
        r.open_table(INCIDENT_SEQ)
            .map_err(storage("table"))?
            .len()
            .map_err(storage("len"))
    }

    /// Whether `id` was recorded here, even if its body has been evicted.
    pub fn knows(&self, id: &ContentId) -> Result<bool, KnowledgeError> {
        Self::knows_in(&self.db, id)
    }

    fn knows_in(db: &Database, id: &ContentId) -> Result<bool, KnowledgeError> {
        let r = db.begin_read().map_err(storage("read"))?;
        let t = r.open_table(INCIDENT_SEQ).map_err(storage("table"))?;
        Ok(t.get(id.to_bytes().as_slice())
            .map_err(storage("get"))?
            .is_some())
    }

    /// Sets where bodies evicted by retention are fetched from on demand (the cold tier;
    /// [`Replicator::start`](crate::Replicator::start) sets the mesh peers), replacing any
    /// earlier source. Shared by every clone of this store.
    pub fn set_block_source(&self, source: Arc<dyn BlockSource>) {
        *self.shared.cold.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Where reads were served from since the store was opened.
    pub fn tier_stats(&self) -> TierStats {
        self.shared.tiers.stats()
    }

    /// The state of the search index: how many vectors are in the exact segment and in the
    /// graph, and whether this open loaded a persisted graph (example at [`IndexStats`] and
    /// [`RedbKnowledge::flush_index`]).
    pub fn index_stats(&self) -> IndexStats {
        self.shared.read().stats()
    }

    /// Merges every vector of the exact segment into the HNSW graph now (instead of waiting
    /// for the segment to fill) and saves the graph; returns when done, with the index's state.
    /// The background thread does the same on its own; this is for shutdown paths and tests.
    /// Under a steady stream of new incidents it returns once it has caught up with them.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use x0tta_core::*;
    /// use x0tta_knowledge::{KnowledgeConfig, LexicalEmbedder, RedbKnowledge};
    /// # tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("x0tta-flush-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = RedbKnowledge::open(dir.join("k.redb"), KnowledgeConfig::default())?
    ///     .with_embedder(Arc::new(LexicalEmbedder))
    ///     .await?;
    /// let incident = Incident {
    ///     node: NodeId::new("n1")?,
    ///     detected_at: Timestamp::from_millis(1),
    ///     observation: ContentId::of_dag_cbor(b"obs"),
    ///     anomaly: Anomaly::new(AnomalyKind::DiskPressure, Severity::High, 0.9, Subject::Host, "t"),
    ///     root_cause: None,
    ///     plan: None,
    ///     report: None,
    ///     resolution: Resolution::NoPlan,
    /// };
    /// store.record(&incident).await?;
    /// assert_eq!(store.index_stats().exact_segment, 1);
    /// let stats = store.flush_index().await?;
    /// assert_eq!((stats.exact_segment, stats.graph_vectors, stats.saves), (0, 1, 1));
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn flush_index(&self) -> Result<IndexStats, KnowledgeError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.run_merges(true).map_err(KnowledgeError::Storage)?;
            Ok(shared.read().stats())
        })
        .await
        .map_err(|e| KnowledgeError::Storage(format!("index task failed: {e}")))?
    }

    fn rebuild_index(&self) -> Result<(), KnowledgeError> {
        let r = self.db.begin_read().map_err(storage("read"))?;
        let log = r.open_table(INCIDENT_LOG).map_err(storage("table"))?;
        let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
        let vectors = r.open_table(VECTORS).map_err(storage("table"))?;
        let mut index = Index::new(self.config.vectors.clone());
        for entry in log.iter().map_err(storage("iter"))? {
            let (seq, cid) = entry.map_err(storage("iter"))?;
            let cid_bytes = cid.value().to_vec();
            let Some(body) = blocks.get(cid_bytes.as_slice()).map_err(storage("get"))? else {
                return Err(KnowledgeError::Storage(format!(
                    "incident {} has no body",
                    seq.value()
                )));
            };
            let incident: Incident = from_dag_cbor(body.value())?;
            let id = ContentId::from_bytes(&cid_bytes)
                .map_err(|e| KnowledgeError::Invalid(e.to_string()))?;
            let vector = vectors
                .get(seq.value())
                .map_err(storage("get"))?
                .map(|v| decode_vector(v.value()));
            index.insert(
                seq.value(),
                id,
                DocMeta::of(&incident),
                &incident.to_text(),
                vector.as_deref(),
            );
        }
        // The persisted graph, if it matches the stored vectors; else the background thread
        // rebuilds it from them (nothing is re-embedded either way).
        if let Some(dir) = &self.shared.sidecar
            && index.dimensions() > 0
        {
            match vector::load(dir, index.dimensions()).and_then(|g| match g {
                Some(g) => index.adopt(g),
                None => Ok(()),
            }) {
                Ok(()) => {}
                Err(err) => tracing::warn!(
                    %err,
                    dir = %dir.display(),
                    "persisted vector graph not used; rebuilding it in the background"
                ),
            }
        }
        *self.shared.write() = index;
        Ok(())
    }

    /// Runs blocking database work off the async runtime.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, KnowledgeError> + Send + 'static,
    ) -> Result<T, KnowledgeError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| KnowledgeError::Storage(format!("storage task failed: {e}")))?
    }

    /// Stores incidents in one durable transaction; returns, per incident, its id and whether
    /// it was new, plus the sequence numbers evicted by retention.
    async fn insert_incidents(&self, incidents: Vec<Incident>) -> Result<Inserted, KnowledgeError> {
        self.insert_with_blocks(incidents, Vec::new()).await
    }

    /// [`Self::insert_incidents`], storing `envelopes` — (incident, envelope CID, envelope
    /// bytes), each verified or signed here — in the same transaction.
    pub(crate) async fn insert_with_blocks(
        &self,
        incidents: Vec<Incident>,
        envelopes: Vec<(ContentId, ContentId, Vec<u8>)>,
    ) -> Result<Inserted, KnowledgeError> {
        let texts: Vec<String> = incidents.iter().map(Incident::to_text).collect();
        let vectors = self.embed_all(&texts).await;
        let mut encoded = Vec::with_capacity(incidents.len());
        for (inc, vector) in incidents.into_iter().zip(vectors) {
            let bytes = to_dag_cbor(&inc)?;
            encoded.push((ContentId::of_dag_cbor(&bytes), bytes, inc, vector));
        }
        let retention = self.config.retention as u64;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage("begin"))?;
            let mut out = Vec::with_capacity(encoded.len());
            let mut evicted = Vec::new();
            {
                let mut blocks = txn.open_table(BLOCKS).map_err(storage("table"))?;
                let mut log = txn.open_table(INCIDENT_LOG).map_err(storage("table"))?;
                let mut seqs = txn.open_table(INCIDENT_SEQ).map_err(storage("table"))?;
                let mut meta = txn.open_table(META).map_err(storage("table"))?;
                let mut vectors = txn.open_table(VECTORS).map_err(storage("table"))?;
                let mut held = txn.open_table(ENVELOPES).map_err(storage("table"))?;
                hold_envelopes(&mut blocks, &mut held, &envelopes)?;
                let mut next = meta
                    .get(NEXT_INCIDENT)
                    .map_err(storage("get"))?
                    .map_or(0, |v| v.value());
                for (id, bytes, inc, vector) in encoded {
                    let key = id.to_bytes();
                    if seqs.get(key.as_slice()).map_err(storage("get"))?.is_some() {
                        out.push((id, None, inc, None)); // already known: idempotent
                        continue;
                    }
                    if let Some(v) = &vector {
                        vectors
                            .insert(next, encode_vector(v).as_slice())
                            .map_err(storage("insert"))?;
                    }
                    blocks
                        .insert(key.as_slice(), bytes.as_slice())
                        .map_err(storage("insert"))?;
                    log.insert(next, key.as_slice())
                        .map_err(storage("insert"))?;
                    seqs.insert(key.as_slice(), next)
                        .map_err(storage("insert"))?;
                    out.push((id, Some(next), inc, vector));
                    next += 1;
                }
                meta.insert(NEXT_INCIDENT, next)
                    .map_err(storage("insert"))?;
                // Retention: the oldest bodies go; their CIDs stay in INCIDENT_SEQ.
                while log.len().map_err(storage("len"))? > retention {
                    let Some((seq, cid)) = log.pop_first().map_err(storage("pop"))? else {
                        break;
                    };
                    let (seq, cid) = (seq.value(), cid.value().to_vec());
                    blocks.remove(cid.as_slice()).map_err(storage("remove"))?;
                    vectors.remove(seq).map_err(storage("remove"))?;
                    evicted.push(seq);
                    // Its envelope goes with it, as this store recorded it.
                    let envelope = held
                        .remove(cid.as_slice())
                        .map_err(storage("remove"))?
                        .map(|e| e.value().to_vec());
                    if let Some(envelope) = envelope {
                        blocks
                            .remove(envelope.as_slice())
                            .map_err(storage("remove"))?;
                    }
                }
            }
            txn.commit().map_err(storage("commit"))?;
            Ok((out, evicted))
        })
        .await
    }

    /// The embeddings of `texts` in one batch, if an embedder is set and it succeeds (a
    /// failure is logged and the incidents stay searchable by text).
    async fn embed_all(&self, texts: &[String]) -> Vec<Option<Vec<f32>>> {
        let Some(e) = self.embedder.as_ref() else {
            return vec![None; texts.len()];
        };
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        match e.embed_batch(&refs).await {
            Ok(vs) if vs.len() == texts.len() => vs.into_iter().map(Some).collect(),
            Ok(vs) => {
                tracing::warn!(
                    got = vs.len(),
                    wanted = texts.len(),
                    "embedder returned a wrong number of vectors; incidents indexed by text only"
                );
                vec![None; texts.len()]
            }
            Err(err) => {
                tracing::warn!(%err, "embedding failed; incidents indexed by text only");
                vec![None; texts.len()]
            }
        }
    }

    /// Puts what a write stored into the index; returns how many incidents were new.
    pub(crate) fn index_inserted(&self, (stored, evicted): &Inserted) -> usize {
        let mut index = self.shared.write();
        let mut added = 0;
        for (id, seq, inc, vector) in stored {
            if let Some(seq) = seq {
                index.insert(
                    *seq,
                    *id,
                    DocMeta::of(inc),
                    &inc.to_text(),
                    vector.as_deref(),
                );
                added += 1;
            }
        }
        for seq in evicted {
            index.remove(*seq);
        }
        drop(index);
        self.shared.wake();
        added
    }

    /// Sets the embedder used for new incidents and queries, and embeds (and persists the
    /// vectors of) the stored incidents that have none, so a restart does not re-embed.
    pub async fn with_embedder(
        mut self,
        embedder: Arc<dyn Embedder>,
    ) -> Result<Self, KnowledgeError> {
        self.embedder = Some(embedder);
        let missing = self.shared.read().missing_vectors();
        if missing.is_empty() {
            return Ok(self);
        }
        let seqs = missing.clone();
        let bodies: Vec<(u64, Incident)> = self
            .blocking(move |db| {
                let r = db.begin_read().map_err(storage("read"))?;
                let log = r.open_table(INCIDENT_LOG).map_err(storage("table"))?;
                let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
                let mut out = Vec::new();
                for seq in seqs {
                    let Some(cid) = log.get(seq).map_err(storage("get"))? else {
                        continue;
                    };
                    if let Some(body) = blocks.get(cid.value()).map_err(storage("get"))? {
                        out.push((seq, from_dag_cbor(body.value())?));
                    }
                }
                Ok(out)
            })
            .await?;
        let mut computed = Vec::with_capacity(bodies.len());
        for part in bodies.chunks(BACKFILL_BATCH) {
            let texts: Vec<String> = part.iter().map(|(_, inc)| inc.to_text()).collect();
            for ((seq, _), v) in part.iter().zip(self.embed_all(&texts).await) {
                if let Some(v) = v {
                    computed.push((*seq, v));
                }
            }
        }
        let to_store = computed.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage("begin"))?;
            {
                let mut t = txn.open_table(VECTORS).map_err(storage("table"))?;
                for (seq, v) in &to_store {
                    t.insert(*seq, encode_vector(v).as_slice())
                        .map_err(storage("insert"))?;
                }
            }
            txn.commit().map_err(storage("commit"))
        })
        .await?;
        let mut index = self.shared.write();
        for (seq, v) in computed {
            index.set_vector(seq, &v);
        }
        drop(index);
        self.shared.wake();
        Ok(self)
    }

    /// Hybrid search: BM25 over the text, plus cosine similarity to the query vector (given,
    /// or computed by the embedder when one is set), fused by weighted reciprocal rank
    /// ([`Fusion`]). Every filter of the query (anomaly kind, time range, node, outcome) is
    /// applied inside both rankings, so a selective filter still fills the page. Each hit
    /// carries the fused score and both parts; its incident carries the plan it ran
    /// ([`ScoredHit::plan_that_worked`]).
    ///
    /// A query vector of another width than the index's, or with a non-finite value, is
    /// refused with [`KnowledgeError::Invalid`].
    ///
    /// ```
    /// use x0tta_core::{KnowledgeStore, Resolution, SearchQuery};
    /// use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};
    /// # tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("x0tta-search-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let store = RedbKnowledge::open(dir.join("k.redb"), KnowledgeConfig::default())?;
    /// let mut q = SearchQuery::text("connection refused");
    /// q.filter.resolution = Some(Resolution::Healed);
    /// let hits = store.search_scored(&q).await?;
    /// assert!(hits.iter().all(|h| h.hit.incident.resolution == Resolution::Healed));
    /// # drop(store);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn search_scored(
        &self,
        query: &SearchQuery,
    ) -> Result<Vec<ScoredHit>, KnowledgeError> {
        let vector = match &query.vector {
            Some(v) => Some(v.clone()),
            None => match self.embedder.as_ref() {
                // One text: `embed`, which an embedder may serve from its query cache.
                Some(e) => match e.embed(&query.text).await {
                    Ok(v) => Some(v),
                    Err(err) => {
                        tracing::warn!(%err, "query embedding failed; searching by text only");
                        None
                    }
                },
                None => None,
            },
        };
        if let Some(v) = &vector {
            let indexed = self.shared.read().dimensions();
            let expected = self
                .embedder
                .as_ref()
                .map(|e| e.dimensions())
                .or((indexed > 0).then_some(indexed));
            if let Some(want) = expected
                && v.len() != want
            {
                return Err(KnowledgeError::Invalid(format!(
                    "query vector has {} dimensions, the index {want}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(KnowledgeError::Invalid(
                    "query vector has a non-finite value".into(),
                ));
            }
        }
        // Milliseconds of CPU at 100,000 incidents: off the async runtime, with the body reads.
        let (shared, q, fusion) = (self.shared.clone(), query.clone(), self.config.fusion);
        let (ranked, bodies) = self
            .blocking(move |db| {
                let ranked = shared.read().hybrid(&q, vector.as_deref(), &fusion);
                let ids: Vec<ContentId> = ranked.iter().map(|r| r.id).collect();
                Ok((ranked, Self::load(db, &ids)?))
            })
            .await?;
        Ok(ranked
            .into_iter()
            .zip(bodies)
            .filter_map(|(r, body)| {
                // The index filtered already; this re-checks against the stored body.
                let incident = body.filter(|i| {
                    query.filter.matches(i) && query.kind.is_none_or(|k| i.anomaly.kind == k)
                })?;
                Some(ScoredHit {
                    hit: SearchHit {
                        id: r.id,
                        score: r.fused,
                        incident,
                    },
                    bm25: r.bm25,
                    vector: r.vector,
                })
            })
            .collect())
    }

    fn load(db: &Database, ids: &[ContentId]) -> Result<Vec<Option<Incident>>, KnowledgeError> {
        let r = db.begin_read().map_err(storage("read"))?;
        let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
        ids.iter()
            .map(|id| {
                match blocks
                    .get(id.to_bytes().as_slice())
                    .map_err(storage("get"))?
                {
                    Some(body) => Ok(Some(from_dag_cbor(body.value())?)),
                    None => Ok(None),
                }
            })
            .collect()
    }
}

#[async_trait]
impl KnowledgeStore for RedbKnowledge {
    async fn record(&self, incident: &Incident) -> Result<ContentId, KnowledgeError> {
        // This node's own incidents also go into the replicated document, each named with
        // the signed envelope that proves it (stored as a block beside it).
        let sealed = match self.replica.signer() {
            Some(_) => {
                let replica = self.replica.clone();
                let inc = incident.clone();
                tokio::task::spawn_blocking(move || replica.seal(&inc))
                    .await
                    .map_err(|e| KnowledgeError::Storage(format!("signing task failed: {e}")))??
            }
            None => None,
        };
        let envelopes = match &sealed {
            Some((envelope, bytes)) => vec![(incident.content_id()?, *envelope, bytes.clone())],
            None => Vec::new(),
        };
        let inserted = self
            .insert_with_blocks(vec![incident.clone()], envelopes)
            .await?;
        self.index_inserted(&inserted);
        let id = inserted
            .0
            .first()
            .map(|(id, ..)| *id)
            .ok_or_else(|| KnowledgeError::Storage("nothing stored".into()))?;
        if let Some((envelope, _)) = sealed {
            let replica = self.replica.clone();
            tokio::task::spawn_blocking(move || replica.publish(&[(id, envelope)]))
                .await
                .map_err(|e| KnowledgeError::Storage(format!("CRDT task failed: {e}")))??;
        }
        Ok(id)
    }

    /// Hot tier, then redb, then — for an incident retention evicted here — the cold tier
    /// ([`RedbKnowledge::set_block_source`]); `None` if this store never knew the incident
    /// or no source has a body matching its CID (a miss is remembered for 30 s, so repeated
    /// reads do not go back to the peers).
    async fn get(&self, id: &ContentId) -> Result<Option<Incident>, KnowledgeError> {
        let tiers = &self.shared.tiers;
        if let Some(hit) = tiers.get(id) {
            return Ok(Some(hit));
        }
        let id = *id;
        let (found, known) = self
            .blocking(move |db| {
                let found = Self::load(db, &[id])?.pop().flatten();
                let known = found.is_some() || Self::knows_in(db, &id)?;
                Ok((found, known))
            })
            .await?;
        if let Some(incident) = found {
            tiers.warm_hits.fetch_add(1, Ordering::Relaxed);
            tiers.put(id, &incident);
            return Ok(Some(incident));
        }
        if !known {
            return Ok(None);
        }
        if tiers.missed_recently(&id) {
            tiers.cold_missed.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let source = self
            .shared
            .cold
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(source) = source {
            for (cid, bytes) in source.fetch_blocks(vec![id]).await {
                if cid != id || ContentId::of_dag_cbor(&bytes) != id {
                    tiers.cold_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%id, "a cold-tier block does not match its CID: refused");
                    continue;
                }
                match from_dag_cbor::<Incident>(&bytes) {
                    Ok(incident) => {
                        tiers.cold_fetched.fetch_add(1, Ordering::Relaxed);
                        tiers.put(id, &incident);
                        return Ok(Some(incident));
                    }
                    Err(e) => {
                        tiers.cold_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%id, %e, "a cold-tier block is not an incident: refused");
                    }
                }
            }
        }
        tiers.cold_missed.fetch_add(1, Ordering::Relaxed);
        tiers.missed(id);
        Ok(None)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<(ContentId, Incident)>, KnowledgeError> {
        self.blocking(move |db| {
            let r = db.begin_read().map_err(storage("read"))?;
            let log = r.open_table(INCIDENT_LOG).map_err(storage("table"))?;
            let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
            let mut out = Vec::new();
            for entry in log.iter().map_err(storage("iter"))?.rev().take(limit) {
                let (_, cid) = entry.map_err(storage("iter"))?;
                let cid = cid.value().to_vec();
                if let Some(body) = blocks.get(cid.as_slice()).map_err(storage("get"))? {
                    let id = ContentId::from_bytes(&cid)
                        .map_err(|e| KnowledgeError::Invalid(e.to_string()))?;
                    out.push((id, from_dag_cbor(body.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Hybrid search; see [`RedbKnowledge::search_scored`], which also gives each hit's BM25
    /// and vector parts.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, KnowledgeError> {
        Ok(self
            .search_scored(query)
            .await?
            .into_iter()
            .map(|h| h.hit)
            .collect())
    }

    async fn templates(&self) -> Result<Vec<PlanTemplate>, KnowledgeError> {
        self.blocking(|db| {
            let r = db.begin_read().map_err(storage("read"))?;
            let t = r.open_table(TEMPLATES).map_err(storage("table"))?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(storage("iter"))? {
                let (_, v) = entry.map_err(storage("iter"))?;
                out.push(from_dag_cbor(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_template(&self, template: PlanTemplate) -> Result<(), KnowledgeError> {
        if template.name.trim().is_empty() {
            return Err(KnowledgeError::Invalid("template name is empty".into()));
        }
        let bytes = to_dag_cbor(&template)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage("begin"))?;
            txn.open_table(TEMPLATES)
                .map_err(storage("table"))?
                .insert(template.name.as_str(), bytes.as_slice())
                .map_err(storage("insert"))?;
            txn.commit().map_err(storage("commit"))
        })
        .await
    }

    /// Also, with a signer set ([`RedbKnowledge::set_signer`]), names the policy in the
    /// replicated policy register ([`RedbKnowledge::policy_register`]): its CID at its
    /// version, written by this node (a lower version than the register holds changes
    /// nothing). Peers fetch the body by CID over `/x0tta/block/1`.
    async fn record_policy(&self, policy: &Policy) -> Result<ContentId, KnowledgeError> {
        let bytes = to_dag_cbor(policy)?;
        let id = ContentId::of_dag_cbor(&bytes);
        self.blocking(move |db| {
            let key = id.to_bytes();
            let txn = db.begin_write().map_err(storage("begin"))?;
            {
                let mut blocks = txn.open_table(BLOCKS).map_err(storage("table"))?;
                if blocks
                    .get(key.as_slice())
                    .map_err(storage("get"))?
                    .is_some()
                {
                    return Ok(id); // this exact policy is already in the history
                }
                blocks
                    .insert(key.as_slice(), bytes.as_slice())
                    .map_err(storage("insert"))?;
                let mut meta = txn.open_table(META).map_err(storage("table"))?;
                let next = meta
                    .get(NEXT_POLICY)
                    .map_err(storage("get"))?
                    .map_or(0, |v| v.value());
                txn.open_table(POLICY_LOG)
                    .map_err(storage("table"))?
                    .insert(next, key.as_slice())
                    .map_err(storage("insert"))?;
                meta.insert(NEXT_POLICY, next + 1)
                    .map_err(storage("insert"))?;
            }
            txn.commit().map_err(storage("commit"))?;
            Ok(id)
        })
        .await?;
        if let Some(signer) = self.replica.signer() {
            let register = self.policy_register();
            let (version, writer) = (policy.version, signer.node_id().clone());
            let took = tokio::task::spawn_blocking(move || {
                register.set(&id.to_string(), version, &writer)
            })
            .await
            .map_err(|e| KnowledgeError::Storage(format!("CRDT task failed: {e}")))?
            .map_err(|e| KnowledgeError::Storage(format!("policy register: {e}")))?;
            if !took {
                let held = self.policy_register().stamp();
                tracing::warn!(
                    version,
                    ?held,
                    "the policy register holds a later stamp; version {version} not named there"
                );
            }
        }
        Ok(id)
    }

    async fn policy_history(&self) -> Result<Vec<Policy>, KnowledgeError> {
        self.blocking(|db| {
            let r = db.begin_read().map_err(storage("read"))?;
            let log = r.open_table(POLICY_LOG).map_err(storage("table"))?;
            let blocks = r.open_table(BLOCKS).map_err(storage("table"))?;
            let mut out = Vec::new();
            for entry in log.iter().map_err(storage("iter"))? {
                let (_, cid) = entry.map_err(storage("iter"))?;
                let cid = cid.value().to_vec();
                let body = blocks
                    .get(cid.as_slice())
                    .map_err(storage("get"))?
                    .ok_or_else(|| KnowledgeError::Storage("policy body missing".into()))?;
                out.push(from_dag_cbor(body.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// The incidents that keep their body, as one DAG-CBOR list (the yrs CRDT state replaces
    /// this in a later version).
    async fn export_state(&self) -> Result<Vec<u8>, KnowledgeError> {
        let all: Vec<Incident> = self
            .recent(usize::MAX)
            .await?
            .into_iter()
            .rev()
            .map(|(_, i)| i)
            .collect();
        Ok(to_dag_cbor(&all)?)
    }

    async fn merge_state(&self, state: &[u8]) -> Result<MergeOutcome, KnowledgeError> {
        let incoming: Vec<Incident> = from_dag_cbor(state)
            .map_err(|e| KnowledgeError::Invalid(format!("replication state: {e}")))?;
        let inserted = self.insert_incidents(incoming).await?;
        let added = self.index_inserted(&inserted);
        Ok(if added == 0 {
            MergeOutcome::NoChange
        } else {
            MergeOutcome::Merged { added }
        })
    }
}
