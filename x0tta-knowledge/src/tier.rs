//! The hot and cold tiers around the redb (warm) tier: a bounded in-memory cache of decoded
//! incidents, and a source of bodies that retention evicted here but peers may still hold.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hashlink::LruCache;
use x0tta_core::{ContentId, Incident};

/// Where a store fetches bodies it knows by CID but no longer holds (the cold tier): for
/// [`RedbKnowledge`](crate::RedbKnowledge), the peers of the mesh, asked over
/// `/x0tta/block/1` ([`Replicator`](crate::Replicator) installs one).
///
/// What a source returns is untrusted: the store keeps a block only if its bytes hash to the
/// CID it asked for.
///
/// # Example
/// ```
/// use async_trait::async_trait;
/// use x0tta_core::ContentId;
/// use x0tta_knowledge::BlockSource;
///
/// /// Blocks from an archive this node can read (here: one block in memory).
/// struct Archive(Vec<u8>);
///
/// #[async_trait]
/// impl BlockSource for Archive {
///     async fn fetch_blocks(&self, cids: Vec<ContentId>) -> Vec<(ContentId, Vec<u8>)> {
///         let mine = ContentId::of_dag_cbor(&self.0);
///         cids.into_iter()
///             .filter(|c| *c == mine)
///             .map(|c| (c, self.0.clone()))
///             .collect()
///     }
/// }
/// ```
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// The blocks among `cids` this source can find (any subset, any order).
    async fn fetch_blocks(&self, cids: Vec<ContentId>) -> Vec<(ContentId, Vec<u8>)>;
}

/// Where [`KnowledgeStore::get`](x0tta_core::KnowledgeStore::get) found what it returned,
/// counted since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Served from the in-memory cache.
    pub hot_hits: u64,
    /// Read from redb.
    pub warm_hits: u64,
    /// Evicted here, fetched from the [`BlockSource`] and verified against the CID.
    pub cold_fetched: u64,
    /// Evicted here and not obtainable (no source, no peer holds it, or a peer sent bytes
    /// that do not match the CID).
    pub cold_missed: u64,
    /// Blocks a source returned that did not match their CID (refused).
    pub cold_refused: u64,
}

/// After a cold read found nothing, the same CID is not asked for again for this long.
pub(crate) const COLD_RETRY: Duration = Duration::from_secs(30);
/// Recent cold misses remembered (least recent forgotten first).
const MISSES: usize = 1024;

/// The hot tier and the counters.
pub(crate) struct Tiers {
    hot: Option<Mutex<LruCache<ContentId, Incident>>>,
    misses: Mutex<LruCache<ContentId, Instant>>,
    pub(crate) hot_hits: AtomicU64,
    pub(crate) warm_hits: AtomicU64,
    pub(crate) cold_fetched: AtomicU64,
    pub(crate) cold_missed: AtomicU64,
    pub(crate) cold_refused: AtomicU64,
}

impl Tiers {
    /// A hot tier of at most `capacity` incidents (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            hot: (capacity > 0).then(|| Mutex::new(LruCache::new(capacity))),
            misses: Mutex::new(LruCache::new(MISSES)),
            hot_hits: AtomicU64::new(0),
            warm_hits: AtomicU64::new(0),
            cold_fetched: AtomicU64::new(0),
            cold_missed: AtomicU64::new(0),
            cold_refused: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, id: &ContentId) -> Option<Incident> {
        let hot = self.hot.as_ref()?;
        let hit = hot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if hit.is_some() {
            self.hot_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    pub(crate) fn put(&self, id: ContentId, incident: &Incident) {
        if let Some(hot) = &self.hot {
            hot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, incident.clone());
        }
    }

    /// Whether a cold read of `id` found nothing less than [`COLD_RETRY`] ago.
    pub(crate) fn missed_recently(&self, id: &ContentId) -> bool {
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .is_some_and(|at| at.elapsed() < COLD_RETRY)
    }

    pub(crate) fn missed(&self, id: ContentId) {
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    pub(crate) fn stats(&self) -> TierStats {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TierStats {
            hot_hits: n(&self.hot_hits),
            warm_hits: n(&self.warm_hits),
            cold_fetched: n(&self.cold_fetched),
            cold_missed: n(&self.cold_missed),
            cold_refused: n(&self.cold_refused),
        }
    }
}
