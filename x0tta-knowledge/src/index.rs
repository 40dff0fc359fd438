//! The in-memory search index over the incidents that keep their body: BM25 over their text
//! ([`crate::text`]), their vectors ([`crate::vector`]: exact segment + HNSW graph), and the
//! fields the filters need, fused by weighted reciprocal rank. Rebuilt from the store on open
//! (the graph is loaded from disk when persisted). It does no I/O of its own: the store's
//! merge task calls [`merge_step`] and saves the graph.
//!
//! Each incident has a dense slot; the text postings, the vector arena and the filter fields
//! are arrays by slot, so a filter costs an array read per candidate. A removed incident's
//! slot is reused only after the text index has purged its postings.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use x0tta_core::{
    AnomalyKind, ContentId, Incident, NodeId, RecoveryPlan, Resolution, SearchHit, SearchQuery,
};

use crate::text::{TextIndex, TopK};
use crate::vector::{self, Graph, Place, VectorIndexConfig, Vectors};

/// From this many indexed incidents up, the two rankings of a hybrid query run in parallel.
const PARALLEL_FROM: usize = 20_000;

/// How BM25 and vector rankings are fused (reciprocal rank fusion).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    /// RRF's rank offset `k` (60 in the original paper).
    pub k: f64,
    /// Weight of the BM25 ranking.
    pub bm25: f64,
    /// Weight of the vector ranking.
    pub vector: f64,
}

impl Default for Fusion {
    fn default() -> Self {
        Self {
            k: 60.0,
            bm25: 1.0,
            vector: 1.0,
        }
    }
}

/// One ranking's part of a hit's score (see [`ScoredHit`] for an example).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartScore {
    /// BM25 score, or cosine similarity for the vector ranking.
    pub score: f64,
    /// 1-based position in that ranking.
    pub rank: usize,
}

/// A search hit with the parts of its fused score ([`RedbKnowledge::search_scored`]).
///
/// [`RedbKnowledge::search_scored`]: crate::RedbKnowledge::search_scored
///
/// ```
/// use x0tta_core::{KnowledgeStore, SearchQuery};
/// use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};
/// # tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?.block_on(async {
/// # let dir = std::env::temp_dir().join(format!("x0tta-scored-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = RedbKnowledge::open(dir.join("k.redb"), KnowledgeConfig::default())?;
/// for hit in store.search_scored(&SearchQuery::text("disk full")).await? {
///     let bm25 = hit.bm25.map(|p| p.score);
///     println!("{} fused {:.4} bm25 {bm25:?} worked {:?}", hit.hit.id, hit.hit.score,
///              hit.plan_that_worked().map(|p| &p.template));
/// }
/// # drop(store);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScoredHit {
    /// The hit; its `score` is the fused one.
    pub hit: SearchHit,
    /// Its place in the BM25 ranking, if it made the candidates.
    pub bm25: Option<PartScore>,
    /// Its place in the vector ranking, if it made the candidates.
    pub vector: Option<PartScore>,
}

impl ScoredHit {
    /// The plan this incident ran, if it healed the anomaly.
    pub fn plan_that_worked(&self) -> Option<&RecoveryPlan> {
        let i = &self.hit.incident;
        i.plan.as_ref().filter(|_| i.healed())
    }
}

/// What the filters look at.
#[derive(Clone)]
pub(crate) struct DocMeta {
    kind: AnomalyKind,
    resolution: Resolution,
    node: NodeId,
    at: u64,
}

impl DocMeta {
    pub(crate) fn of(incident: &Incident) -> Self {
        Self {
            kind: incident.anomaly.kind,
            resolution: incident.resolution,
            node: incident.node.clone(),
            at: incident.detected_at.as_millis(),
        }
    }
}

/// The restrictions of a [`SearchQuery`] (kind, time range, node, outcome).
pub(crate) struct Filter<'a> {
    query: &'a SearchQuery,
}

impl<'a> Filter<'a> {
    pub(crate) fn of(query: &'a SearchQuery) -> Self {
        Self { query }
    }

    fn is_empty(&self) -> bool {
        self.query.kind.is_none() && self.query.filter.is_empty()
    }

    fn accepts(&self, m: &DocMeta) -> bool {
        let f = &self.query.filter;
        self.query.kind.is_none_or(|k| m.kind == k)
            && f.since.is_none_or(|t| m.at >= t.as_millis())
            && f.until.is_none_or(|t| m.at < t.as_millis())
            && f.node.as_ref().is_none_or(|n| &m.node == n)
            && f.resolution.is_none_or(|r| m.resolution == r)
    }
}

/// One fused result.
pub(crate) struct Ranked {
    pub(crate) seq: u64,
    pub(crate) id: ContentId,
    pub(crate) fused: f64,
    pub(crate) bm25: Option<PartScore>,
    pub(crate) vector: Option<PartScore>,
}

struct Doc {
    seq: u64,
    id: ContentId,
    meta: DocMeta,
}

/// A filtered vector query over at most this many matching vectors is answered exactly (a
/// brute-force scan of ~2 ms) instead of by a filtered graph walk, which slows down and loses
/// recall as the filter gets more selective.
const EXACT_FILTERED: usize = 8192;

pub(crate) struct Index {
    slots: HashMap<u64, u32>,
    docs: Vec<Option<Doc>>,
    /// Removed slots whose postings are not purged yet.
    dead: Vec<u32>,
    free: Vec<u32>,
    text: TextIndex,
    vectors: Vectors,
    config: VectorIndexConfig,
    /// [`EXACT_FILTERED`], lowered by tests to reach the filtered graph walk.
    exact_filtered: usize,
}

impl Index {
    pub(crate) fn new(config: VectorIndexConfig) -> Self {
        Self {
            slots: HashMap::new(),
            docs: Vec::new(),
            dead: Vec::new(),
            free: Vec::new(),
            text: TextIndex::default(),
            vectors: Vectors::default(),
            config,
            exact_filtered: EXACT_FILTERED,
        }
    }

    fn doc(&self, slot: u32) -> Option<&Doc> {
        self.docs.get(slot as usize).and_then(Option::as_ref)
    }

    /// Indexes an incident (a sequence already indexed is left as it is).
    pub(crate) fn insert(
        &mut self,
        seq: u64,
        id: ContentId,
        meta: DocMeta,
        text: &str,
        vector: Option<&[f32]>,
    ) {
        if self.slots.contains_key(&seq) {
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.docs.push(None);
                (self.docs.len() - 1) as u32
            }
        };
        self.docs[slot as usize] = Some(Doc { seq, id, meta });
        self.slots.insert(seq, slot);
        self.text.insert(slot, text);
        if let Some(v) = vector {
            self.put_vector(slot, seq, v);
        }
    }

    fn put_vector(&mut self, slot: u32, seq: u64, v: &[f32]) {
        match vector::normalized(v) {
            Some(unit) if self.vectors.insert(slot, &unit) => {}
            Some(_) => tracing::warn!(
                seq,
                width = v.len(),
                index = self.vectors.dim(),
                "vector of another width not indexed"
            ),
            None => tracing::warn!(seq, "vector with a non-finite value not indexed"),
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) {
        let Some(slot) = self.slots.remove(&seq) else {
            return;
        };
        self.docs[slot as usize] = None;
        self.text.remove(slot);
        self.vectors.remove(slot);
        self.dead.push(slot);
        if self.text.wants_purge() {
            self.text.purge();
            self.free.append(&mut self.dead);
        }
    }

    /// Sequences that have no vector yet.
    pub(crate) fn missing_vectors(&self) -> Vec<u64> {
        self.docs
            .iter()
            .enumerate()
            .filter_map(|(slot, d)| {
                d.as_ref()
                    .filter(|_| self.vectors.place(slot as u32) == Place::None)
                    .map(|d| d.seq)
            })
            .collect()
    }

    pub(crate) fn set_vector(&mut self, seq: u64, v: &[f32]) {
        if let Some(slot) = self.slots.get(&seq).copied()
            && self.vectors.place(slot) == Place::None
        {
            self.put_vector(slot, seq, v);
        }
    }

    /// Width of the indexed vectors (0 before the first).
    pub(crate) fn dimensions(&self) -> usize {
        self.vectors.dim()
    }

    pub(crate) fn needs_merge(&self) -> bool {
        self.vectors.needs_merge(self.config.exact_segment)
    }

    pub(crate) fn stats(&self) -> IndexStats {
        let c = &self.vectors.counters;
        IndexStats {
            incidents: self.text.len(),
            exact_segment: self.vectors.segment().len(),
            graph_vectors: self.vectors.in_graph(),
            tombstones: self.vectors.tombstones(),
            graph_loaded: c.loads.load(Ordering::Relaxed) > 0,
            graph_inserts: c.graph_inserts.load(Ordering::Relaxed),
            merges: c.merges.load(Ordering::Relaxed),
            rebuilds: c.rebuilds.load(Ordering::Relaxed),
            saves: c.saves.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn counters(&self) -> Arc<vector::Counters> {
        self.vectors.counters.clone()
    }

    pub(crate) fn graph(&self) -> Option<Arc<Graph>> {
        self.vectors.graph().cloned()
    }

    /// Takes over a graph loaded from disk. Its points must be exactly the vectors this index
    /// holds for the same sequence numbers (else it belongs to other data and is refused);
    /// points of incidents no longer here become tombstones, vectors it lacks stay in the
    /// exact segment.
    pub(crate) fn adopt(&mut self, graph: Graph) -> Result<(), String> {
        if graph.dim() != self.vectors.dim() {
            return Err("graph width differs from the stored vectors".into());
        }
        let mut placed = Vec::new();
        let mut gone = 0usize;
        let mut mismatch = None;
        graph.for_each_point(|seq, v| {
            match self.slots.get(&seq).copied() {
                Some(slot) => match self.vectors.vector(slot) {
                    Some(have) if vector::quantize(have) == v => placed.push(slot),
                    Some(_) => mismatch = Some(seq),
                    None => gone += 1, // its vector was not kept: never searched
                },
                None => gone += 1,
            }
        });
        if let Some(seq) = mismatch {
            return Err(format!(
                "graph vector of incident {seq} differs from the stored one"
            ));
        }
        self.vectors.adopt(Arc::new(graph), &placed, gone);
        self.vectors.counters.loads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Best `k` by cosine to the unit vector `q` among the vectors `filter` accepts, best
    /// first.
    fn nearest(&self, q: &[f32], filter: &Filter<'_>, k: usize) -> Vec<(u32, f32)> {
        let accept = |slot: u32| self.doc(slot).is_some_and(|d| filter.accepts(&d.meta));
        if !filter.is_empty() {
            // A selective filter: scan the few vectors it lets through.
            let mut matching = Vec::new();
            let mut small = true;
            for slot in 0..self.docs.len() as u32 {
                if self.vectors.place(slot) != Place::None && accept(slot) {
                    if matching.len() >= self.exact_filtered {
                        small = false;
                        break;
                    }
                    matching.push(slot);
                }
            }
            if small {
                return self.vectors.exact(q, matching.into_iter(), k).into_sorted();
            }
        }
        let seg = self
            .vectors
            .segment()
            .iter()
            .copied()
            .filter(|s| accept(*s));
        let mut top = self.vectors.exact(q, seg, k);
        if let Some(graph) = self.vectors.graph() {
            let ef = self.config.ef_search.max(k);
            // The graph may hold removed incidents and, mid-merge, vectors still counted in
            // the segment: take only live points whose vector is counted in the graph.
            let in_graph = |seq: u64| {
                self.slots
                    .get(&seq)
                    .copied()
                    .filter(|s| self.vectors.place(*s) == Place::Graph)
            };
            // The graph ranks by quantized vectors; its `ef` candidates are re-ranked here
            // with the full ones.
            let found = if filter.is_empty() {
                graph.search(q, ef, ef)
            } else {
                graph.search_filtered(q, ef, ef, &|seq| in_graph(seq).is_some_and(accept))
            };
            for seq in found {
                if let Some(slot) = in_graph(seq).filter(|s| accept(*s))
                    && let Some(v) = self.vectors.vector(slot)
                {
                    top.push(slot, vector::dot(q, v));
                }
            }
        }
        top.into_sorted()
    }

    /// BM25 and (when a query vector is given) vector rankings of the incidents the query's
    /// filters accept, fused by weighted reciprocal rank: `score = Σ wᵢ / (k + rankᵢ)`. Best
    /// first, at most `query.limit`. `vector` must already be checked for width.
    pub(crate) fn hybrid(
        &self,
        query: &SearchQuery,
        vector: Option<&[f32]>,
        fusion: &Fusion,
    ) -> Vec<Ranked> {
        let limit = query.limit;
        if limit == 0 {
            return Vec::new();
        }
        let filter = Filter::of(query);
        let fetch = limit.saturating_mul(4).saturating_add(16);
        // A ranking with weight 0 is not consulted at all (it would only add zero scores).
        let text = || {
            if fusion.bm25 <= 0.0 {
                return Vec::new();
            }
            let accept = |slot: u32| self.doc(slot).is_some_and(|d| filter.accepts(&d.meta));
            self.text.search(&query.text, fetch, accept)
        };
        let nearest = || match vector.and_then(vector::normalized) {
            Some(q) if fusion.vector > 0.0 && q.len() == self.vectors.dim() => {
                self.nearest(&q, &filter, fetch)
            }
            _ => Vec::new(),
        };
        // Large stores rank on two cores at once (rayon's pool) when both rankings are asked
        // for; small stores and one-sided queries are faster on the caller's thread than
        // waking the pool (benches/search.rs).
        let both = fusion.bm25 > 0.0 && fusion.vector > 0.0 && vector.is_some();
        let (by_text, by_vector) = if both && self.docs.len() >= PARALLEL_FROM {
            rayon::join(text, nearest)
        } else {
            (text(), nearest())
        };
        let mut parts: HashMap<u32, (Option<PartScore>, Option<PartScore>)> = HashMap::new();
        for (slot, part) in ranks(by_text) {
            parts.entry(slot).or_default().0 = Some(part);
        }
        for (slot, part) in ranks(by_vector) {
            parts.entry(slot).or_default().1 = Some(part);
        }
        let rrf = |w: f64, p: &Option<PartScore>| p.map_or(0.0, |p| w / (fusion.k + p.rank as f64));
        let mut out: Vec<Ranked> = parts
            .into_iter()
            .filter_map(|(slot, (bm25, vec))| {
                let d = self.doc(slot)?;
                Some(Ranked {
                    seq: d.seq,
                    id: d.id,
                    fused: rrf(fusion.bm25, &bm25) + rrf(fusion.vector, &vec),
                    bm25,
                    vector: vec,
                })
            })
            .collect();
        out.sort_by(|a, b| b.fused.total_cmp(&a.fused).then(a.seq.cmp(&b.seq)));
        out.truncate(limit);
        out
    }
}

/// The state of a store's search index ([`RedbKnowledge::index_stats`]).
///
/// [`RedbKnowledge::index_stats`]: crate::RedbKnowledge::index_stats
///
/// ```
/// use x0tta_knowledge::{KnowledgeConfig, RedbKnowledge};
/// # let dir = std::env::temp_dir().join(format!("x0tta-stats-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let store = RedbKnowledge::open(dir.join("k.redb"), KnowledgeConfig::default())?;
/// let stats = store.index_stats();
/// assert_eq!((stats.incidents, stats.graph_vectors, stats.graph_inserts), (0, 0, 0));
/// # drop(store);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexStats {
    /// Incidents indexed (those that keep their body).
    pub incidents: usize,
    /// Vectors in the exact segment (searched by brute force).
    pub exact_segment: usize,
    /// Vectors of live incidents in the HNSW graph.
    pub graph_vectors: usize,
    /// Graph points of removed incidents, skipped until a rebuild.
    pub tombstones: usize,
    /// Whether this open loaded a persisted graph.
    pub graph_loaded: bool,
    /// Vectors inserted into a graph since open (0 after a reopen that loaded the graph and
    /// had nothing new to merge).
    pub graph_inserts: u64,
    /// Merges of the exact segment into the graph since open.
    pub merges: u64,
    /// Full graph rebuilds (to shed tombstones) since open.
    pub rebuilds: u64,
    /// Graph saves since open.
    pub saves: u64,
}

/// 1-based ranks of a best-first list; equal scores share a rank ("1224"), so a ranking that
/// cannot tell documents apart (identical log lines, say) leaves the choice to the other one
/// instead of to slot order.
fn ranks(list: Vec<(u32, f32)>) -> impl Iterator<Item = (u32, PartScore)> {
    let mut prev: Option<(f32, usize)> = None;
    list.into_iter().enumerate().map(move |(i, (slot, score))| {
        let rank = match prev {
            Some((s, r)) if s == score => r,
            _ => i + 1,
        };
        prev = Some((score, rank));
        (
            slot,
            PartScore {
                score: f64::from(score),
                rank,
            },
        )
    })
}

/// What one [`merge_step`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MergeStep {
    /// Nothing to do.
    Idle,
    /// The exact segment's vectors went into the graph.
    Merged,
    /// A new graph replaced one with too many tombstones.
    Rebuilt,
}

/// Vectors copied out under one short read lock.
const MERGE_CHUNK: usize = 256;

fn read(index: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

fn write(index: &RwLock<Index>) -> std::sync::RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

/// Moves the exact segment into the graph (`force`: however small it is), or rebuilds a
/// graph that is more than a quarter tombstones. The graph work runs without the index lock
/// (hnsw_rs inserts alongside searches); only copying vectors out and the final bookkeeping
/// take it. One merge at a time: callers serialise.
pub(crate) fn merge_step(index: &RwLock<Index>, force: bool) -> MergeStep {
    let (seqs, graph, rebuild, counters) = {
        let ix = read(index);
        let bound = ix.config.exact_segment;
        let dim = ix.vectors.dim();
        let seq_of = |slot: &u32| ix.doc(*slot).map(|d| d.seq);
        if ix.vectors.wants_rebuild(bound) {
            let seqs: Vec<u64> = (0..ix.docs.len() as u32)
                .filter(|s| ix.vectors.place(*s) != Place::None)
                .filter_map(|s| seq_of(&s))
                .collect();
            let g = Arc::new(Graph::new(&ix.config, dim, seqs.len()));
            (seqs, g, true, ix.counters())
        } else if ix.vectors.segment().len() >= if force { 1 } else { bound } {
            let seqs: Vec<u64> = ix.vectors.segment().iter().filter_map(seq_of).collect();
            let g = ix
                .graph()
                .unwrap_or_else(|| Arc::new(Graph::new(&ix.config, dim, ix.docs.len())));
            (seqs, g, false, ix.counters())
        } else {
            return MergeStep::Idle;
        }
    };
    let mut inserted = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(MERGE_CHUNK) {
        let batch: Vec<(u64, Vec<f32>)> = {
            let ix = read(index);
            chunk
                .iter()
                .filter_map(|seq| {
                    let slot = ix.slots.get(seq)?;
                    Some((*seq, ix.vectors.vector(*slot)?.to_vec()))
                })
                .collect()
        };
        for (seq, v) in &batch {
            graph.insert(*seq, v);
        }
        counters
            .graph_inserts
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        inserted.extend(batch.into_iter().map(|(seq, _)| seq));
    }
    let mut ix = write(index);
    let slots: Vec<u32> = inserted
        .iter()
        .filter_map(|seq| ix.slots.get(seq).copied())
        .collect();
    let gone = inserted.len() - slots.len();
    ix.vectors.commit(graph, &slots, gone, rebuild);
    let (counter, step) = if rebuild {
        (&counters.rebuilds, MergeStep::Rebuilt)
    } else {
        (&counters.merges, MergeStep::Merged)
    };
    counter.fetch_add(1, Ordering::Relaxed);
    step
}

/// The index without a store, for the crate's benchmarks (`benches/search.rs`): same code
/// path as [`RedbKnowledge`](crate::RedbKnowledge)'s search, minus redb. Not a stable API.
#[doc(hidden)]
pub struct BenchIndex {
    index: RwLock<Index>,
}

#[doc(hidden)]
impl BenchIndex {
    /// An empty index.
    pub fn new(config: VectorIndexConfig) -> Self {
        Self {
            index: RwLock::new(Index::new(config)),
        }
    }

    /// Indexes an incident with its id and (already computed) vector.
    pub fn insert(&self, seq: u64, id: ContentId, incident: &Incident, vector: Option<&[f32]>) {
        write(&self.index).insert(seq, id, DocMeta::of(incident), &incident.to_text(), vector);
    }

    /// Removes an incident.
    pub fn remove(&self, seq: u64) {
        write(&self.index).remove(seq);
    }

    /// Merges the exact segment into the graph now.
    pub fn merge_now(&self) {
        while merge_step(&self.index, true) != MergeStep::Idle {}
    }

    /// Fused hits as (sequence, fused score).
    pub fn search(&self, query: &SearchQuery, fusion: &Fusion) -> Vec<(u64, f64)> {
        read(&self.index)
            .hybrid(query, query.vector.as_deref(), fusion)
            .into_iter()
            .map(|r| (r.seq, r.fused))
            .collect()
    }

    /// Changes the graph search width (`ef`).
    pub fn set_ef_search(&self, ef: usize) {
        write(&self.index).config.ef_search = ef.max(1);
    }

    /// The index's state.
    pub fn stats(&self) -> IndexStats {
        read(&self.index).stats()
    }
}

/// Exact top-`k` by cosine over `vectors` (unit length), best first: the baseline the graph
/// is measured against.
#[doc(hidden)]
pub fn exact_top_k(vectors: &[Vec<f32>], q: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut top = TopK::new(k);
    for (i, v) in vectors.iter().enumerate() {
        let s = vector::dot(q, v);
        if top.threshold().is_none_or(|t| s >= t) {
            top.push(i as u32, s);
        }
    }
    top.into_sorted()
        .into_iter()
        .map(|(i, s)| (i as usize, s))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use x0tta_core::{Anomaly, Severity, Subject, Timestamp};

    fn incident(i: u64) -> Incident {
        Incident {
            node: NodeId::new("n").unwrap(),
            detected_at: Timestamp::from_millis(i),
            observation: ContentId::of_dag_cbor(&i.to_be_bytes()),
            anomaly: Anomaly::new(
                AnomalyKind::ALL[(i % 4) as usize],
                Severity::High,
                0.9,
                Subject::Host,
                "t",
            ),
            root_cause: None,
            plan: None,
            report: None,
            resolution: Resolution::Failed,
        }
    }

    fn vector(i: u64) -> Vec<f32> {
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..32)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn index(exact_filtered: usize) -> RwLock<Index> {
        let mut ix = Index::new(VectorIndexConfig {
            exact_segment: 16,
            ..VectorIndexConfig::default()
        });
        ix.exact_filtered = exact_filtered;
        for i in 0..400 {
            let inc = incident(i);
            let id = ContentId::of_dag_cbor(&i.to_le_bytes());
            let text: Vec<String> = (0..20).map(|k| format!("t{}", (i + k) % 50)).collect();
            ix.insert(i, id, DocMeta::of(&inc), &text.join(" "), Some(&vector(i)));
        }
        let ix = RwLock::new(ix);
        while merge_step(&ix, true) != MergeStep::Idle {}
        ix
    }

    #[test]
    fn the_filtered_graph_walk_agrees_with_the_exact_scan() {
        let (walk, scan) = (index(0), index(usize::MAX));
        assert_eq!(read(&walk).stats().graph_vectors, 400);
        let vector_only = Fusion {
            bm25: 0.0,
            ..Fusion::default()
        };
        let (mut same, mut total) = (0, 0);
        for i in 1000..1020 {
            let mut q = SearchQuery::text("");
            q.kind = Some(AnomalyKind::CpuOverload);
            q.limit = 10;
            let v = vector(i);
            let seqs = |ix: &RwLock<Index>| -> Vec<u64> {
                read(ix)
                    .hybrid(&q, Some(&v), &vector_only)
                    .iter()
                    .map(|r| r.seq)
                    .collect()
            };
            let (a, b) = (seqs(&walk), seqs(&scan));
            assert!(a.iter().all(|s| s % 4 == 2), "only CPU_OVERLOAD incidents");
            assert_eq!(a.len(), 10);
            same += a.iter().filter(|s| b.contains(s)).count();
            total += b.len();
        }
        assert!(same * 10 >= total * 9, "recall {same}/{total}");
    }

    #[test]
    fn removal_after_merge_leaves_a_tombstone_and_the_slot_is_reused_after_purge() {
        let ix = index(EXACT_FILTERED);
        let mut w = write(&ix);
        for i in 0..300 {
            w.remove(i);
        }
        assert_eq!(w.stats().tombstones, 300);
        assert!(w.vectors.wants_rebuild(16));
        drop(w);
        assert_eq!(merge_step(&ix, false), MergeStep::Rebuilt);
        let s = read(&ix).stats();
        assert_eq!((s.graph_vectors, s.tombstones, s.incidents), (100, 0, 100));
        let mut w = write(&ix);
        let inc = incident(500);
        w.insert(
            500,
            ContentId::of_dag_cbor(b"x"),
            DocMeta::of(&inc),
            "new",
            Some(&vector(500)),
        );
        assert_eq!(w.docs.len(), 400, "a purged slot was reused");
    }
}
