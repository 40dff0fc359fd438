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
}

impl Index {
    pub(crate) fn new() -> Self {
        Self {
            engine: SearchEngineBuilder::<u64, u32, Words>::with_avgdl(AVG_WORDS)
                .tokenizer(Words)
                .build(),
            docs: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, seq: u64, id: ContentId, kind: AnomalyKind, text: &str) {
        self.engine.upsert(bm25::Document::new(seq, text));
        self.docs.insert(seq, (id, kind));
    }

    pub(crate) fn remove(&mut self, seq: u64) {
        self.engine.remove(&seq);
        self.docs.remove(&seq);
    }

    /// Best hits first, at most `limit`, optionally of one kind.
    pub(crate) fn search(
        &self,
        text: &str,
        kind: Option<AnomalyKind>,
        limit: usize,
    ) -> Vec<(ContentId, f64)> {
        if limit == 0 {
            return Vec::new();
        }
        // Over-fetch so a kind filter still fills the page in the common case.
        let fetch = if kind.is_some() {
            limit.saturating_mul(4).saturating_add(16)
        } else {
            limit
        };
        self.engine
            .search(text, fetch)
            .into_iter()
            .filter_map(|r| {
                let (id, k) = self.docs.get(&r.document.id)?;
                kind.is_none_or(|want| want == *k)
                    .then_some((*id, f64::from(r.score)))
            })
            .take(limit)
            .collect()
    }
}
