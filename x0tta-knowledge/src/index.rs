//! The BM25 text index over the incidents that keep their bodies. In memory; rebuilt from the
//! store on open.

use std::collections::HashMap;

use bm25::{SearchEngine, SearchEngineBuilder, Tokenizer};
use x0tta_core::{AnomalyKind, ContentId};

/// Lower-cased words of letters, digits, `_` and `-`: anomaly kinds, subjects and metric names
/// stay whole.
#[derive(Default, Clone, Copy)]
pub(crate) struct Words;

impl Tokenizer for Words {
    fn tokenize(&self, text: &str) -> Vec<String> {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect()
    }
}

/// Typical incident text length in words (BM25's average document length; the `bm25` crate
/// does not refit it on insert).
const AVG_WORDS: f32 = 16.0;

pub(crate) struct Index {
    engine: SearchEngine<u64, u32, Words>,
    docs: HashMap<u64, (ContentId, AnomalyKind)>,
    /// Unit-length vectors by sequence, searched exactly (brute force).
    vectors: HashMap<u64, Vec<f32>>,
}

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

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            engine: SearchEngineBuilder::<u64, u32, Words>::with_avgdl(AVG_WORDS)
                .tokenizer(Words)
                .build(),
            docs: HashMap::new(),
            vectors: HashMap::new(),
        }
    }

    pub(crate) fn insert(
        &mut self,
        seq: u64,
        id: ContentId,
        kind: AnomalyKind,
        text: &str,
        vector: Option<Vec<f32>>,
    ) {
        self.engine.upsert(bm25::Document::new(seq, text));
        self.docs.insert(seq, (id, kind));
        if let Some(v) = vector {
            self.vectors.insert(seq, v);
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) {
        self.engine.remove(&seq);
        self.docs.remove(&seq);
        self.vectors.remove(&seq);
    }

    /// Sequences that have no vector yet.
    pub(crate) fn missing_vectors(&self) -> Vec<u64> {
        self.docs
            .keys()
            .filter(|s| !self.vectors.contains_key(s))
            .copied()
            .collect()
    }

    pub(crate) fn set_vector(&mut self, seq: u64, v: Vec<f32>) {
        if self.docs.contains_key(&seq) {
            self.vectors.insert(seq, v);
        }
    }

    /// Best `limit` by cosine similarity to `query`, optionally of one kind.
    fn nearest(&self, query: &[f32], kind: Option<AnomalyKind>, limit: usize) -> Vec<(u64, f64)> {
        let mut scored: Vec<(u64, f64)> = self
            .vectors
            .iter()
            .filter(|(seq, _)| {
                kind.is_none_or(|want| self.docs.get(seq).is_some_and(|(_, k)| *k == want))
            })
            .map(|(seq, v)| (*seq, cosine(query, v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }

    /// BM25 and (when a query vector is given) vector rankings fused by weighted reciprocal
    /// rank: `score = Σ wᵢ / (k + rankᵢ)`. Best first, at most `limit`.
    pub(crate) fn hybrid(
        &self,
        text: &str,
        vector: Option<&[f32]>,
        kind: Option<AnomalyKind>,
        limit: usize,
        fusion: &Fusion,
    ) -> Vec<(ContentId, f64)> {
        if limit == 0 {
            return Vec::new();
        }
        let fetch = limit.saturating_mul(4).saturating_add(16);
        let mut fused: HashMap<u64, f64> = HashMap::new();
        // A ranking with weight 0 is not consulted at all (it would only add zero scores).
        if fusion.bm25 > 0.0 {
            for (rank, (seq, _)) in self.bm25(text, kind, fetch).into_iter().enumerate() {
                *fused.entry(seq).or_default() += fusion.bm25 / (fusion.k + rank as f64 + 1.0);
            }
        }
        if let Some(q) = vector.filter(|_| fusion.vector > 0.0) {
            for (rank, (seq, _)) in self.nearest(q, kind, fetch).into_iter().enumerate() {
                *fused.entry(seq).or_default() += fusion.vector / (fusion.k + rank as f64 + 1.0);
            }
        }
        let mut out: Vec<(u64, f64)> = fused.into_iter().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.into_iter()
            .take(limit)
            .filter_map(|(seq, score)| self.docs.get(&seq).map(|(id, _)| (*id, score)))
            .collect()
    }

    /// BM25 hits, best first, at most `limit`, optionally of one kind.
    fn bm25(&self, text: &str, kind: Option<AnomalyKind>, limit: usize) -> Vec<(u64, f64)> {
        // Over-fetch so a kind filter still fills the page in the common case.
        let fetch = if kind.is_some() {
            limit.saturating_mul(4).saturating_add(16)
        } else {
            limit
        };
        self.engine
            .search(text, fetch)
            .into_iter()
            .filter(|r| {
                kind.is_none_or(|want| {
                    self.docs
                        .get(&r.document.id)
                        .is_some_and(|(_, k)| *k == want)
                })
            })
            .map(|r| (r.document.id, f64::from(r.score)))
            .take(limit)
            .collect()
    }
}
