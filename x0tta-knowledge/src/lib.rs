//! # x0tta-knowledge
//!
//! The durable [`KnowledgeStore`](x0tta_core::KnowledgeStore) of x0tta6bl4 nodes (DESIGN §7):
//! [`RedbKnowledge`] keeps incidents, plan templates and policy versions in a redb file.
//!
//! - **Durable**: `record` returns only after the write transaction is committed with
//!   immediate durability, so an acknowledged incident survives a crash (`tests/crash.rs` kills
//!   a writer with SIGKILL mid-stream and checks every acknowledged record).
//! - **Content-addressed**: bodies are stored by their CIDv1 (DAG-CBOR, sha2-256, computed by
//!   [`x0tta_core::ContentId`]), so the same incident has the same id on every node and is
//!   stored once.
//! - **Tiers**: hot — a bounded LRU of decoded incidents ([`KnowledgeConfig::hot_cache`]);
//!   warm — redb; cold — the newest `retention` incidents keep their bodies (seed: 1,000),
//!   older ones keep only their CID and sequence number, and `get` fetches an evicted body on
//!   demand from a [`BlockSource`] (the mesh peers, through [`Replicator`]), keeping it only if
//!   it hashes to the CID. Retention also drops the evicted incidents' envelope blocks.
//!   [`RedbKnowledge::tier_stats`] counts where reads were served.
//! - **Search**: BM25 over the incidents' text (an inverted index, k1 = 1.2, b = 0.75) and,
//!   with an embedder set ([`RedbKnowledge::with_embedder`]), cosine similarity over persisted
//!   vectors, fused by weighted reciprocal rank ([`Fusion`]); filters by anomaly kind, time
//!   range, node and outcome inside both rankings; hits carry both parts of their score
//!   ([`RedbKnowledge::search_scored`]). New vectors land in a small exact segment searched
//!   by brute force; a background thread merges it into an HNSW graph (`hnsw_rs`, M = 32,
//!   ef = 256; [`VectorIndexConfig`]) that is saved next to the file and loaded on reopen.
//!   The graph holds 8-bit copies of the vectors (a quarter of the memory a walk reads); its
//!   candidates are re-ranked with the full vectors, so scores are exact cosines.
//!   [`LexicalEmbedder`] is the fallback embedder (hashed words and trigrams; not semantic).
//!
//! - **CAR**: [`RedbKnowledge::export_car`] writes a CARv1 whose root manifest links every
//!   incident; [`RedbKnowledge::import_car`] stores only blocks whose bytes match their CID.
//!
//! - **Replicated document** ([`CrdtDoc`], on yrs): a root map [`INCIDENTS_MAP`] (incident
//!   CID → CID of the signed envelope that carries it), the policy register
//!   [`POLICY_REGISTER`], counters and sets. Every local change is appended to a CRDT log in
//!   redb before the write returns (compacted past 512 entries) and published as a yrs v1
//!   update; remote updates are logged before they are acknowledged. The state loads in Yjs
//!   (`tests/yjs.rs` runs the real Yjs). With a signer set ([`RedbKnowledge::set_signer`]) a
//!   node's own incidents are signed (ML-DSA-65) into envelope blocks named by the map.
//! - **Typed CRDTs** over the document: [`LwwRegister`] (last writer wins by version, then
//!   writer), [`OrSet`], [`PnCounter`] — merges commutative, associative and idempotent
//!   (checked by proptest over three replicas).
//! - **Replication** ([`Replicator`]): CRDT gossip, anti-entropy over `/x0tta/sync/1` (state
//!   vectors, then only the missing updates, in SHA-256-checked chunks), envelopes fetched
//!   over `/x0tta/block/1` and stored only if they hash to the named CID, verify, and were
//!   signed by the incident's own node: a Byzantine peer can write into the document but
//!   cannot make a node store an incident another node did not sign.
//!
//! - **MiniLM** (feature `minilm`, off by default): `MiniLmEmbedder` runs all-MiniLM-L6-v2
//!   (384-d) locally from model files on disk with candle, for semantic search; see its docs
//!   for where the model comes from. Without it, [`LexicalEmbedder`] is the fallback.
//!
//! # Example
//! ```
//! use x0tta_core::KnowledgeStore;
//! use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?.block_on(async {
//! # let dir = std::env::temp_dir().join(format!("x0tta-knowledge-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let store = RedbKnowledge::open(dir.join("knowledge.redb"), KnowledgeConfig::default())?;
//! assert!(store.recent(10).await?.is_empty());
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(()) })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod car;
mod embed;
mod index;
#[cfg(feature = "minilm")]
mod minilm;
mod replica;
mod replicate;
mod store;
mod text;
mod tier;
mod vector;
mod ydoc;

pub use car::{CarError, ExportReport, ImportReport, MANIFEST_KIND, RefusedBlock};
pub use embed::{LEXICAL_DIMENSIONS, LexicalEmbedder};
#[doc(hidden)]
pub use index::{BenchIndex, exact_top_k};
pub use index::{Fusion, IndexStats, PartScore, ScoredHit};
#[cfg(feature = "minilm")]
pub use minilm::{
    MINILM_DIMENSIONS, MINILM_DIR_ENV, MiniLmConfig, MiniLmEmbedder, MiniLmLoadError,
};
pub use replica::{INCIDENTS_MAP, MAX_REFUSED, POLICY_REGISTER, Refusal, Wanted};
pub use replicate::{
    BLOCK_PROTOCOL, MAX_BLOCKS_PER_REQUEST, MAX_SYNC_TOTAL, MAX_WANTED_PER_SYNC, ReplicationError,
    Replicator, SYNC_CHUNK, SYNC_PROTOCOL, SyncReport,
};
pub use store::{KnowledgeConfig, OpenError, RedbKnowledge};
pub use tier::{BlockSource, TierStats};
pub use vector::VectorIndexConfig;
pub use ydoc::{
    CrdtDoc, CrdtError, LwwRegister, MAX_SAFE_INTEGER, OrSet, PnCounter, Stamped, UpdateSink,
};
