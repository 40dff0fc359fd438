//! BM25 over incident text: an inverted index (a postings list per term, document lengths, the
//! live average length) answering top-k with a bounded heap. It owns only text statistics;
//! which slot is which incident, and whether a slot passes a filter, is the caller's business.
//!
//! Replaces the `bm25` crate's `SearchEngine`, which scores every document sharing a term and
//! sorts them all (1.2–1.9 ms a query at 10,000 short documents, far more at 100,000) and does
//! not refit the average document length (docs/PERFORMANCE.md has the side-by-side figures).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// BM25 term-frequency saturation (the well-known default).
pub(crate) const K1: f32 = 1.2;
/// BM25 length normalisation (the well-known default).
pub(crate) const B: f32 = 0.75;

/// Lower-cased words of letters, digits, `_` and `-`: anomaly kinds, subjects and metric names
/// stay whole.
pub(crate) fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

#[derive(Clone, Copy)]
struct Posting {
    slot: u32,
    tf: u32,
}

/// One scored candidate; ordered so that a `BinaryHeap` of them is a min-heap on score (ties:
/// the higher slot is "smaller", so lower slots win and results are deterministic).
#[derive(Clone, Copy, PartialEq)]
struct Scored {
    score: f32,
    slot: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.slot.cmp(&other.slot))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` of a stream of `(slot, score)` in a bounded min-heap; `into_sorted`
/// gives them best first (ties by slot).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096).saturating_add(1)),
        }
    }

    /// The score a candidate must beat to enter (None while the heap is not full).
    pub(crate) fn threshold(&self) -> Option<f32> {
        (self.heap.len() >= self.k)
            .then(|| self.heap.peek().map(|s| s.score))
            .flatten()
    }

    pub(crate) fn push(&mut self, slot: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let s = Scored { score, slot };
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if let Some(mut worst) = self.heap.peek_mut()
            && s < *worst
        {
            *worst = s;
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<(u32, f32)> {
        // `into_sorted_vec` is ascending in `Ord`, i.e. best first here.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|s| (s.slot, s.score))
            .collect()
    }
}

thread_local! {
    /// Per-thread BM25 accumulator, all zeros between searches (see [`TextIndex::search`]).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A document's (term id, frequency) pairs sorted by term id, and its length in words.
type DocTerms = (Box<[(u32, u32)]>, u32);

/// The inverted index. Slots are the caller's dense document numbers; a removed slot keeps its
/// postings until [`TextIndex::purge`] drops them, and may not be reused before.
#[derive(Default)]
pub(crate) struct TextIndex {
    terms: HashMap<Box<str>, u32>,
    /// By term id.
    postings: Vec<Vec<Posting>>,
    /// Live documents containing the term, by term id.
    df: Vec<u32>,
    /// Term ids free for reuse (their term has no live document and no postings left).
    free_terms: Vec<u32>,
    /// Per slot: its terms with their frequency (to undo an insert), and its length; `None`
    /// when the slot holds no live document.
    docs: Vec<Option<DocTerms>>,
    /// Length in words by slot, `u32::MAX` for no live document: the scoring loop's only
    /// per-posting read, kept dense for the cache.
    lens: Vec<u32>,
    live: u32,
    total_len: u64,
    /// Postings entries that point at removed documents.
    dead_postings: usize,
    live_postings: usize,
}

impl TextIndex {
    /// Indexes `text` under `slot` (which must hold no live document).
    pub(crate) fn insert(&mut self, slot: u32, text: &str) {
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut len = 0u32;
        for t in tokenize(text) {
            *counts.entry(t).or_default() += 1;
            len = len.saturating_add(1);
        }
        let mut forward = Vec::with_capacity(counts.len());
        for (term, tf) in counts {
            let id = match self.terms.get(term.as_str()) {
                Some(id) => *id,
                None => {
                    let id = match self.free_terms.pop() {
                        Some(id) => id,
                        None => {
                            self.postings.push(Vec::new());
                            self.df.push(0);
                            (self.postings.len() - 1) as u32
                        }
                    };
                    self.terms.insert(term.into_boxed_str(), id);
                    id
                }
            };
            let i = id as usize;
            self.postings[i].push(Posting { slot, tf });
            self.df[i] += 1;
            forward.push((id, tf));
        }
        self.live_postings += forward.len();
        forward.sort_unstable_by_key(|(id, _)| *id); // for the merge-join in `finish`
        let s = slot as usize;
        if self.docs.len() <= s {
            self.docs.resize_with(s + 1, || None);
            self.lens.resize(s + 1, u32::MAX);
        }
        self.docs[s] = Some((forward.into_boxed_slice(), len));
        self.lens[s] = len.min(u32::MAX - 1);
        self.live += 1;
        self.total_len += u64::from(len);
    }

    /// Removes the document in `slot`; its postings stay (skipped) until `purge`.
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some((forward, len)) = self.docs.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.lens[slot as usize] = u32::MAX;
        for (id, _) in forward.iter() {
            if let Some(df) = self.df.get_mut(*id as usize) {
                *df = df.saturating_sub(1);
            }
        }
        self.live_postings = self.live_postings.saturating_sub(forward.len());
        self.dead_postings += forward.len();
        self.live = self.live.saturating_sub(1);
        self.total_len = self.total_len.saturating_sub(u64::from(len));
    }

    /// Whether enough postings point at removed documents that a purge pays off.
    pub(crate) fn wants_purge(&self) -> bool {
        self.dead_postings > 4096 && self.dead_postings > self.live_postings / 2
    }

    /// Drops the postings of removed documents and forgets terms no live document has. After
    /// it, every removed slot may be reused.
    pub(crate) fn purge(&mut self) {
        let docs = &self.docs;
        for list in &mut self.postings {
            list.retain(|p| docs.get(p.slot as usize).is_some_and(Option::is_some));
        }
        let postings = &self.postings;
        let free = &mut self.free_terms;
        self.terms.retain(|_, id| {
            let keep = !postings[*id as usize].is_empty();
            if !keep {
                free.push(*id);
            }
            keep
        });
        for id in &self.free_terms {
            let i = *id as usize;
            self.postings[i] = Vec::new();
            self.df[i] = 0;
        }
        self.dead_postings = 0;
    }

    /// Live documents.
    pub(crate) fn len(&self) -> usize {
        self.live as usize
    }

    /// Best `k` live slots for `query` that `accept` lets through, best first, with their BM25
    /// score (Okapi BM25, k1 = 1.2, b = 0.75, idf = ln(1 + (N − df + 0.5)/(df + 0.5)), a query
    /// term counted once per occurrence). Documents sharing no term with the query score 0 and
    /// are not returned.
    pub(crate) fn search(
        &self,
        query: &str,
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        if k == 0 || self.live == 0 {
            return Vec::new();
        }
        let mut qterms: HashMap<u32, u32> = HashMap::new();
        for t in tokenize(query) {
            if let Some(id) = self.terms.get(t.as_str()) {
                *qterms.entry(*id).or_default() += 1;
            }
        }
        if qterms.is_empty() {
            return Vec::new();
        }
        let n = self.live as f32;
        let avgdl = (self.total_len as f32 / n).max(1.0);
        let (norm_a, norm_b) = (K1 * (1.0 - B), K1 * B / avgdl);
        // Per term: its weight idf·(k1+1)·qtf, which is also the most it can add to a score
        // (tf/(tf+norm) < 1). Rare (high-weight) terms first.
        let mut terms: Vec<(u32, f32)> = qterms
            .into_iter()
            .filter(|(id, _)| self.df[*id as usize] > 0)
            .map(|(id, qtf)| {
                let df = self.df[id as usize] as f32;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                (id, idf * (K1 + 1.0) * qtf as f32)
            })
            .collect();
        terms.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Term at a time into a dense accumulator (a score of 0 means "not touched": every
        // weight is > 0). Once the terms left could add less than the k-th best partial score
        // (MaxScore), no untouched document can make the top k: the remaining terms are only
        // looked up in the candidates' own term lists, skipping their long postings (the
        // near-zero-idf words every incident has, like its severity).
        // The accumulator is this thread's scratch buffer, all zeros between searches: only
        // the entries a search touched are cleared after it (a fresh 100,000-slot buffer per
        // query cost more than small queries themselves). Taken out while in use, so a
        // search that unwinds drops it instead of leaving it dirty.
        let mut acc = SCRATCH.take();
        acc.resize(self.docs.len(), 0.0);
        let mut touched = Vec::new();
        let top = self.accumulate(&mut acc, &mut touched, &terms, k, &accept, (norm_a, norm_b));
        for slot in touched {
            acc[slot as usize] = 0.0;
        }
        SCRATCH.set(acc);
        top
    }

    /// The scoring loop of [`TextIndex::search`] over `terms` (rare first), into `acc` (all
    /// zeros on entry); every entry it makes non-zero is listed in `touched`.
    fn accumulate(
        &self,
        acc: &mut [f32],
        touched: &mut Vec<u32>,
        terms: &[(u32, f32)],
        k: usize,
        accept: &impl Fn(u32) -> bool,
        norm: (f32, f32),
    ) -> Vec<(u32, f32)> {
        let (norm_a, norm_b) = norm;
        let mut rest: f32 = terms.iter().map(|t| t.1).sum();
        let mut best = 0.0f32;
        // The last k-th best partial score computed: θ only grows, so a new attempt is worth
        // its O(touched) cost once `rest` has fallen below it. At most a few attempts: when
        // thousands of identical lines tie at θ, finishing them is no cheaper than the walk.
        let mut theta = 0.0f32;
        let mut attempts = 0;
        for (j, (id, w)) in terms.iter().enumerate() {
            if attempts < 3 && rest < best && (theta == 0.0 || rest < theta) {
                attempts += 1;
                match self.finish(acc, touched, &terms[j..], rest, k, accept, norm) {
                    Finish::Done(top) => return top,
                    Finish::NotYet(t) => theta = t,
                }
            }
            for p in &self.postings[*id as usize] {
                let s = p.slot as usize;
                let len = self.lens[s];
                if len == u32::MAX {
                    continue; // removed, not yet purged
                }
                let tf = p.tf as f32;
                if acc[s] == 0.0 {
                    touched.push(p.slot);
                }
                acc[s] += w * tf / (tf + norm_a + norm_b * len as f32);
                best = best.max(acc[s]);
            }
            rest -= w;
        }
        let mut top = TopK::new(k);
        for slot in touched.iter().copied() {
            let score = acc[slot as usize];
            if top.threshold().is_some_and(|t| score < t) {
                continue;
            }
            if accept(slot) {
                top.push(slot, score);
            }
        }
        top.into_sorted()
    }

    /// MaxScore's second phase: if the k-th best accepted partial score θ exceeds `rest` (what
    /// the `remaining` terms could still add), the top k are among the touched documents with
    /// partial + rest ≥ θ; finish their scores from their own (sorted) term lists, when that is
    /// less work than walking the remaining postings.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        acc: &[f32],
        touched: &[u32],
        remaining: &[(u32, f32)],
        rest: f32,
        k: usize,
        accept: &impl Fn(u32) -> bool,
        (norm_a, norm_b): (f32, f32),
    ) -> Finish {
        let mut kth = TopK::new(k);
        for slot in touched {
            let score = acc[*slot as usize];
            if kth.threshold().is_none_or(|t| score >= t) && accept(*slot) {
                kth.push(*slot, score);
            }
        }
        let Some(theta) = kth.threshold() else {
            return Finish::NotYet(0.0);
        };
        if rest >= theta {
            return Finish::NotYet(theta);
        }
        let candidates: Vec<u32> = touched
            .iter()
            .copied()
            .filter(|s| acc[*s as usize] + rest >= theta && accept(*s))
            .collect();
        let postings_left: usize = remaining
            .iter()
            .map(|(id, _)| self.postings[*id as usize].len())
            .sum();
        let avg_terms = self.live_postings / (self.live as usize).max(1) + remaining.len();
        if candidates.len().saturating_mul(avg_terms) > postings_left {
            return Finish::NotYet(theta); // walking the postings is cheaper
        }
        let mut rem = remaining.to_vec();
        rem.sort_unstable_by_key(|(id, _)| *id);
        let mut top = TopK::new(k);
        for slot in candidates {
            let Some(Some((forward, len))) = self.docs.get(slot as usize) else {
                continue;
            };
            let mut score = acc[slot as usize];
            let (mut i, mut j) = (0, 0);
            while i < forward.len() && j < rem.len() {
                match forward[i].0.cmp(&rem[j].0) {
                    Ordering::Less => i += 1,
                    Ordering::Greater => j += 1,
                    Ordering::Equal => {
                        let tf = forward[i].1 as f32;
                        score += rem[j].1 * tf / (tf + norm_a + norm_b * *len as f32);
                        i += 1;
                        j += 1;
                    }
                }
            }
            top.push(slot, score);
        }
        Finish::Done(top.into_sorted())
    }
}

/// What [`TextIndex::finish`] concluded.
enum Finish {
    Done(Vec<(u32, f32)>),
    /// Not worth it yet; the θ it computed (0: fewer than k accepted documents so far).
    NotYet(f32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_bm25_and_respects_accept_and_removal() {
        let mut t = TextIndex::default();
        t.insert(0, "disk full on var");
        t.insert(1, "connection refused connection refused");
        t.insert(2, "connection timeout");
        let hits = t.search("connection refused", 10, |_| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2]);
        assert!(hits[0].1 > hits[1].1);
        assert_eq!(t.search("connection", 10, |s| s != 1).len(), 1);
        t.remove(1);
        assert_eq!(t.search("refused", 10, |_| true), []);
        assert_eq!(t.len(), 2);
        t.purge();
        t.insert(1, "zebra");
        assert_eq!(t.search("zebra refused", 10, |_| true)[0].0, 1);
    }

    #[test]
    fn matches_the_textbook_formula() {
        let mut t = TextIndex::default();
        t.insert(0, "a b c");
        t.insert(1, "a a d e f");
        let (n, df, avgdl) = (2.0f32, 2.0f32, 4.0f32);
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let want = idf * 2.0 * (K1 + 1.0) / (2.0 + K1 * (1.0 - B + B * 5.0 / avgdl));
        let got = t.search("a", 1, |_| true);
        assert_eq!(got[0].0, 1);
        assert!((got[0].1 - want).abs() < 1e-6, "{got:?} vs {want}");
    }

    #[test]
    fn pruned_search_returns_the_exact_top_k() {
        // Every document has the common words; few have the rare ones: MaxScore kicks in.
        let mut t = TextIndex::default();
        let mut docs = Vec::new();
        for i in 0..2000u32 {
            let mut words = vec!["high", "log", "service"];
            let rare = ["disk", "full", "heap", "limit", "timeout", "refused"];
            for (k, w) in rare.iter().enumerate() {
                if (i as usize * 7 + k * 13).is_multiple_of(5 + k * 3) {
                    words.push(w);
                }
            }
            let text = format!("{} n{}", words.join(" "), i % 37);
            t.insert(i, &text);
            docs.push(text);
        }
        for i in (0..2000).step_by(3) {
            t.remove(i);
        }
        let n = t.len() as f32;
        let avgdl = t.total_len as f32 / n;
        let df = |w: &str| {
            (0..2000)
                .filter(|i| i % 3 != 0 && tokenize(&docs[*i as usize]).any(|x| x == w))
                .count() as f32
        };
        for query in [
            "disk full high log",
            "heap limit service n3",
            "refused timeout log log",
        ] {
            let got = t.search(query, 10, |s| s % 2 == 1);
            let mut want: Vec<(u32, f32)> = (0..2000u32)
                .filter(|i| i % 3 != 0 && i % 2 == 1)
                .map(|i| {
                    let words: Vec<String> = tokenize(&docs[i as usize]).collect();
                    let len = words.len() as f32;
                    let score = tokenize(query)
                        .map(|q| {
                            let tf = words.iter().filter(|w| **w == q).count() as f32;
                            let df = df(&q);
                            if tf == 0.0 {
                                return 0.0;
                            }
                            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                            idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avgdl))
                        })
                        .sum::<f32>();
                    (i, score)
                })
                .filter(|(_, s)| *s > 0.0)
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            want.truncate(10);
            assert_eq!(got.len(), want.len(), "{query}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g.1 - w.1).abs() < 1e-4, "{query}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn top_k_keeps_the_best_and_breaks_ties_by_slot() {
        let mut top = TopK::new(2);
        for (slot, score) in [(5, 1.0), (3, 2.0), (4, 2.0), (1, 0.5)] {
            top.push(slot, score);
        }
        assert_eq!(top.into_sorted(), [(3, 2.0), (4, 2.0)]);
    }
}
