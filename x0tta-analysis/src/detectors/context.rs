//! A contextual sequence memory: which coarse values follow which contexts, learnt online.
//!
//! The idea is Mikhail Smirnov's Contextual Anomaly Detector (CAD, 2016), the runner-up on
//! NAB's scoreboard: a value becomes a few binary "facts"; the memory learns *contexts*, pairs
//! of (facts seen one step earlier, facts seen now), and contexts that completed are fed back
//! as facts themselves, so longer sequences are remembered as chains of short ones. A point
//! is anomalous when the memory did not predict it and the contexts it expected failed while
//! new ones had to be learnt.

use std::collections::{HashMap, VecDeque};

use super::StreamingDetector;

/// Tuning of [`ContextMemory`]; one configuration for every metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextConfig {
    /// Bits a value is quantised to (3: eight levels over the value range).
    pub bits: u32,
    /// A raw score at or above this starts a rest period.
    pub threshold: f64,
    /// Points after a raw score at or above `threshold` during which nothing is reported.
    pub rest: usize,
    /// Longest left half of a context that is combined into new contexts.
    pub max_left: usize,
    /// Completed contexts fed back as facts per step.
    pub max_active: usize,
    /// Contexts the memory holds at most; once full it stops learning new ones.
    pub max_contexts: usize,
    /// Points used to learn the value range before anything is scored.
    pub warmup: usize,
    /// Margin added to each side of the learnt range, as a fraction of its width.
    pub margin: f64,
    /// A value beyond every value seen so far by more than this fraction of their spread
    /// scores 1 (0: off).
    pub spatial: f64,
}

impl Default for ContextConfig {
    /// The configuration measured in docs/PERFORMANCE.md: CAD's published settings (3 bits,
    /// threshold 0.75, rest 30, left halves up to 7, 15 active contexts), a bound of 8,192
    /// contexts, and a spatial tolerance of 2% (chosen once for all 58 NAB series; the
    /// sensitivity to it is in docs/PERFORMANCE.md).
    fn default() -> Self {
        Self {
            bits: 3,
            threshold: 0.75,
            rest: 30,
            max_left: 7,
            max_active: 15,
            max_contexts: 8_192,
            warmup: 300,
            margin: 0.25,
            spatial: 0.02,
        }
    }
}

impl ContextConfig {
    /// Sets one field by name (`spatial=0.05`), for tuning runs.
    ///
    /// ```
    /// let mut c = x0tta_analysis::detectors::ContextConfig::default();
    /// c.set("rest", 40.0)?;
    /// assert_eq!(c.rest, 40);
    /// assert!(c.set("bits", 0.0).is_err());
    /// assert!(c.set("colour", 1.0).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{key}: {value} is not a non-negative number"));
        }
        match key {
            "bits" if (1.0..=8.0).contains(&value) => self.bits = value as u32,
            "bits" => return Err(format!("bits: {value} is not in 1..=8")),
            "threshold" => self.threshold = value.min(1.0),
            "rest" => self.rest = value as usize,
            "max_left" => self.max_left = value as usize,
            "max_active" => self.max_active = value as usize,
            "max_contexts" => self.max_contexts = (value as usize).min(1 << 24),
            "warmup" => self.warmup = value as usize,
            "margin" => self.margin = value,
            "spatial" => self.spatial = value,
            other => return Err(format!("unknown context parameter {other}")),
        }
        Ok(())
    }
}

/// Facts at or above this name a completed context (below: a value bit).
const CONTEXT_FACT: u32 = 1 << 16;
/// Value-bit facts there can be: two per bit, at most 8 bits.
const VALUE_FACTS: usize = 2 * 8;

#[derive(Debug, Default)]
struct Semi {
    /// Sorted.
    facts: Vec<u32>,
    /// The facts of the last crossing that this semi-context holds.
    matched: Vec<u32>,
    /// The contexts built on this half (kept here, where the steps that
    /// hold the half scan them).
    contexts: Vec<Context>,
}

/// The left halves of contexts, indexed to find those a step holds.
#[derive(Debug, Default)]
struct Side {
    semis: Vec<Semi>,
    by_facts: HashMap<Vec<u32>, u32>,
    /// Every semi-context holding a fact.
    by_fact: HashMap<u32, Vec<u32>>,
    /// Every semi-context under one of its facts, the one with the fewest semi-contexts under
    /// it when it was learnt: short lists to search for those a set of facts holds whole.
    /// Each entry carries the half's [`signature`], which rules most candidates out without
    /// reading their facts.
    by_key: HashMap<u32, Vec<Key>>,
    /// Per fact, the last [`within`](Self::within) call that held it: membership in O(1).
    mark: Vec<u32>,
    stamp: u32,
    /// Semi-contexts the last crossing touched.
    crossed: Vec<u32>,
}

impl Side {
    fn get_or_insert(&mut self, facts: &[u32]) -> u32 {
        if let Some(id) = self.by_facts.get(facts) {
            return *id;
        }
        let id = self.semis.len() as u32;
        self.semis.push(Semi {
            facts: facts.to_vec(),
            ..Semi::default()
        });
        self.by_facts.insert(facts.to_vec(), id);
        for f in facts {
            self.by_fact.entry(*f).or_default().push(id);
        }
        let rarest = facts
            .iter()
            .min_by_key(|f| self.by_key.get(*f).map_or(0, Vec::len));
        if let Some(key) = rarest {
            let mut inline = [0u32; INLINE];
            let len = if facts.len() <= INLINE {
                inline[..facts.len()].copy_from_slice(facts);
                facts.len() as u8
            } else {
                u8::MAX
            };
            self.by_key.entry(*key).or_default().push(Key {
                id,
                signature: signature(facts),
                len,
                inline,
            });
        }
        id
    }

    /// Records, for every semi-context sharing a fact with `facts`, which of them it holds.
    fn cross(&mut self, facts: &[u32]) {
        for id in std::mem::take(&mut self.crossed) {
            self.semis[id as usize].matched.clear();
        }
        for f in facts {
            if let Some(ids) = self.by_fact.get(f) {
                for id in ids {
                    let semi = &mut self.semis[*id as usize];
                    if semi.matched.is_empty() {
                        self.crossed.push(*id);
                    }
                    semi.matched.push(*f);
                }
            }
        }
    }

    /// The semi-contexts whose every fact is in `facts` (sorted).
    fn within(&mut self, facts: &[u32]) -> Vec<u32> {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.fill(0);
            self.stamp = 1;
        }
        for f in facts {
            let i = slot(*f);
            if i >= self.mark.len() {
                self.mark.resize(i + 1, 0);
            }
            self.mark[i] = self.stamp;
        }
        let (mark, stamp) = (&self.mark, self.stamp);
        let held = |f: &u32| mark.get(slot(*f)) == Some(&stamp);
        let outside = !signature(facts);
        let mut out = Vec::new();
        for f in facts {
            for k in self.by_key.get(f).into_iter().flatten() {
                if k.signature & outside != 0 {
                    continue;
                }
                let whole = if k.len == u8::MAX {
                    self.semis[k.id as usize].facts.iter().all(held)
                } else {
                    k.inline[..usize::from(k.len)].iter().all(held)
                };
                if whole {
                    out.push(k.id);
                }
            }
        }
        out
    }
}

/// Facts a [`Key`] holds in place (most halves are this small).
const INLINE: usize = 6;

/// A half under its key fact: its id, [`signature`], and its facts when there are few.
#[derive(Debug)]
struct Key {
    id: u32,
    signature: u64,
    /// Facts held in `inline`; `u8::MAX`: too many, read them from the half.
    len: u8,
    inline: [u32; INLINE],
}

/// A fact's place in the membership marks: value bits first, then contexts.
fn slot(f: u32) -> usize {
    if f >= CONTEXT_FACT {
        (f - CONTEXT_FACT) as usize + VALUE_FACTS
    } else {
        f as usize
    }
}

/// The right halves of contexts: sets of value bits, so few, and only ever looked up.
#[derive(Debug, Default)]
struct Rights {
    facts: Vec<Vec<u32>>,
    ids: HashMap<Vec<u32>, u32>,
}

impl Rights {
    fn get_or_insert(&mut self, facts: &[u32]) -> u32 {
        if let Some(id) = self.ids.get(facts) {
            return *id;
        }
        let id = self.facts.len() as u32;
        self.facts.push(facts.to_vec());
        self.ids.insert(facts.to_vec(), id);
        id
    }
}

/// A 64-bit summary of a set of facts: a set's signature has every bit of its subsets'.
fn signature(facts: &[u32]) -> u64 {
    facts
        .iter()
        .fold(0, |sig, f| sig | 1 << (f.wrapping_mul(0x9E37_79B9) >> 26))
}

/// The facts of sorted `a` that sorted `b` holds.
fn intersection(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter()
        .copied()
        .filter(|x| b.binary_search(x).is_ok())
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Context {
    id: u32,
    right: u32,
    /// Facts the right half predicted, summed over the steps its left half completed.
    predicted: u64,
    /// Of those, the facts that came true.
    came_true: u64,
    /// Steps on which the whole context came true.
    completed: u32,
    /// Learnt directly from two consecutive steps (not from a crossing of others).
    zero_level: bool,
}

/// Contextual sequence memory over one metric (see the module docs); scores in [0, 1].
///
/// Values are quantised to `2^bits` levels over the metric's range. Told the range
/// ([`StreamingDetector::expect_range`]: NAB hands every detector its file's minimum and
/// maximum; a node knows a percentage lies in 0..=100), it scores from the first point.
/// Otherwise it learns the range from the first `warmup` points, scoring them 0, widens it by
/// `margin` on each side and clamps later values to it; on NAB that costs about 20 points
/// (docs/PERFORMANCE.md).
///
/// A point scores when the memory did not predict it: half of (the share of expected contexts
/// that failed + the share of candidate contexts that were new). A value beyond every value
/// seen so far by more than `spatial` of their spread scores 1 (Numenta's "spatial anomaly").
/// After a score of `threshold` or more, the next `rest` points score 0: one alarm per
/// anomaly.
///
/// Memory is bounded: at most `max_contexts` contexts (a few MiB), after which it stops
/// learning new ones; time per point is bounded with it (docs/PERFORMANCE.md has the cost).
///
/// ```
/// use x0tta_analysis::detectors::{ContextMemory, StreamingDetector};
/// let mut d = ContextMemory::default();
/// d.expect_range(0.0, 7.0);
/// let mut late = 0.0f64; // the highest score once the cycle is learnt
/// for i in 0..2_000 {
///     let s = d.score(i, (i % 8) as f64);
///     if i > 500 {
///         late = late.max(s);
///     }
/// }
/// assert_eq!(late, 0.0, "a learnt cycle is never anomalous");
/// let broken: f64 = (0..8).map(|k| d.score(2_000 + k, 3.0)).fold(0.0, f64::max);
/// assert!(broken > 0.5, "a stuck value breaks the cycle");
/// ```
#[derive(Debug)]
pub struct ContextMemory {
    cfg: ContextConfig,
    range: Option<(f64, f64)>,
    /// Finite points seen.
    seen: usize,
    /// The smallest and largest value seen (the spatial check, and the learnt range).
    min_seen: f64,
    max_seen: f64,
    left: Side,
    right: Rights,
    /// Where each context is: its left half and its place there.
    contexts: Vec<(u32, u32)>,
    by_halves: HashMap<(u32, u32), u32>,
    /// Facts of the previous step: its value bits and the contexts it completed.
    previous: Vec<u32>,
    predicted: Vec<u32>,
    /// The left halves `previous` holds whole.
    whole: Vec<u32>,
    recent: VecDeque<f64>,
}

impl ContextMemory {
    /// A detector with `cfg` (`bits` clamped to 1..=8).
    pub fn new(mut cfg: ContextConfig) -> Self {
        cfg.bits = cfg.bits.clamp(1, 8);
        let mut recent = VecDeque::with_capacity(cfg.rest.max(1));
        recent.push_back(1.0);
        Self {
            cfg,
            range: None,
            seen: 0,
            min_seen: f64::INFINITY,
            max_seen: f64::NEG_INFINITY,
            left: Side::default(),
            right: Rights::default(),
            contexts: Vec::new(),
            by_halves: HashMap::new(),
            previous: Vec::new(),
            predicted: Vec::new(),
            whole: Vec::new(),
            recent,
        }
    }

    /// Contexts learnt so far.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    fn level(&self, (min, max): (f64, f64), x: f64) -> u32 {
        let top = (1u32 << self.cfg.bits) - 1;
        let width = max - min;
        let step = if width > 0.0 {
            width / f64::from(top)
        } else {
            1.0
        };
        let q = ((x - min) / step).floor();
        if q.is_nan() {
            0
        } else {
            q.clamp(0.0, f64::from(top)) as u32
        }
    }

    /// The context (left, right); `None` when it was already known or the memory is full.
    fn learn(&mut self, left: &[u32], right: &[u32], zero_level: bool) -> Option<u32> {
        if self.contexts.len() >= self.cfg.max_contexts {
            return None;
        }
        let l = self.left.get_or_insert(left);
        let r = self.right.get_or_insert(right);
        if let Some(id) = self.by_halves.get(&(l, r)) {
            if zero_level {
                let (l, i) = self.contexts[*id as usize];
                self.left.semis[l as usize].contexts[i as usize].zero_level = true;
            }
            return None;
        }
        let id = self.contexts.len() as u32;
        let held = &mut self.left.semis[l as usize].contexts;
        self.contexts.push((l, held.len() as u32));
        held.push(Context {
            id,
            right: r,
            predicted: 0,
            came_true: 0,
            completed: 0,
            zero_level,
        });
        self.by_halves.insert((l, r), id);
        Some(id)
    }

    /// One step of the memory over the value bits `now` (sorted): learns, predicts the next
    /// step's facts, and returns the share of expected contexts that completed and the share
    /// of candidate contexts that were new.
    fn step(&mut self, now: &[u32]) -> (f64, f64) {
        let previous = std::mem::take(&mut self.previous);
        let mut candidates: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        let fresh = if previous.is_empty() {
            None
        } else {
            self.learn(&previous, now, true)
        };
        if fresh.is_some() {
            candidates.push((previous.clone(), now.to_vec()));
        }

        // The contexts whose left half the previous step held: which the present completes.
        // Only a step that learnt a new context also combines partly held ones into more;
        // otherwise the halves held whole are all that matter, and they are few.
        let lefts: Vec<(u32, bool)> = if fresh.is_some() {
            self.left.cross(&previous);
            self.left
                .crossed
                .iter()
                .map(|l| {
                    let semi = &self.left.semis[*l as usize];
                    (*l, semi.matched.len() == semi.facts.len())
                })
                .collect()
        } else {
            // The halves `previous` holds whole were found when it predicted; nothing new
            // was learnt since (a known context adds no half).
            std::mem::take(&mut self.whole)
                .into_iter()
                .map(|l| (l, true))
                .collect()
        };
        // Facts of `now` each right half holds (right halves are sets of value bits: few).
        let held: Vec<(usize, usize)> = self
            .right
            .facts
            .iter()
            .map(|r| {
                let n = r.iter().filter(|f| now.binary_search(f).is_ok()).count();
                (n, r.len())
            })
            .collect();
        let mut active: Vec<(u32, u32)> = Vec::new();
        let mut expected = 0usize;
        let mut combined: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        for (l, whole) in lefts {
            let Semi {
                matched, contexts, ..
            } = &mut self.left.semis[l as usize];
            for ctx in contexts.iter_mut() {
                if Some(ctx.id) == fresh {
                    continue;
                }
                let (held, of) = held[ctx.right as usize];
                if whole {
                    expected += 1;
                    ctx.predicted += of as u64;
                    ctx.came_true += held as u64;
                    if held == of {
                        ctx.completed += 1;
                        active.push((ctx.completed, ctx.id));
                        continue;
                    }
                }
                if ctx.zero_level
                    && fresh.is_some()
                    && held > 0
                    && matched.len() <= self.cfg.max_left
                {
                    let right = &self.right.facts[ctx.right as usize];
                    combined.push((matched.clone(), intersection(right, now)));
                }
            }
        }
        let completed_share = if expected > 0 {
            active.len() as f64 / expected as f64
        } else {
            0.0
        };

        // The most often completed contexts become facts of this step.
        if active.len() > self.cfg.max_active {
            active.select_nth_unstable_by_key(self.cfg.max_active, |a| std::cmp::Reverse(*a));
            active.truncate(self.cfg.max_active);
        }
        let mut facts: Vec<u32> = now.to_vec();
        facts.extend(active.iter().map(|(_, c)| CONTEXT_FACT + c));
        facts.sort_unstable();
        facts.dedup();

        // Learn the combinations, then predict from the contexts whose left half this step
        // holds whole: the right halves of the most reliable ones.
        let mut added = usize::from(fresh.is_some());
        for (l, r) in &combined {
            added += usize::from(self.learn(l, r, false).is_some());
        }
        candidates.extend(combined);
        candidates.sort_unstable();
        candidates.dedup();
        let mut best = 0.0f64;
        let mut predicting: Vec<u32> = Vec::new();
        let whole = self.left.within(&facts);
        for &l in &whole {
            for ctx in &self.left.semis[l as usize].contexts {
                let weight = if ctx.predicted > 0 {
                    ctx.came_true as f64 / ctx.predicted as f64
                } else {
                    0.0
                };
                if weight > best {
                    best = weight;
                    predicting.clear();
                }
                if weight == best {
                    predicting.push(ctx.right);
                }
            }
        }
        let mut predicted: Vec<u32> = predicting
            .iter()
            .flat_map(|r| self.right.facts[*r as usize].iter().copied())
            .collect();
        predicted.sort_unstable();
        predicted.dedup();
        self.predicted = predicted;
        self.previous = facts;
        self.whole = whole;

        let new_share = if fresh.is_some() && !candidates.is_empty() {
            added as f64 / candidates.len() as f64
        } else {
            0.0
        };
        (completed_share, new_share)
    }
}

impl Default for ContextMemory {
    fn default() -> Self {
        Self::new(ContextConfig::default())
    }
}

impl StreamingDetector for ContextMemory {
    fn name(&self) -> &'static str {
        "context"
    }

    fn expect_range(&mut self, min: f64, max: f64) {
        if self.seen == 0 && min.is_finite() && max.is_finite() {
            self.range = Some((min.min(max), max.max(min)));
        }
    }

    fn score(&mut self, _timestamp: i64, x: f64) -> f64 {
        // A missing or broken reading says nothing about the sequence.
        if !x.is_finite() {
            return 0.0;
        }
        self.seen = self.seen.saturating_add(1);
        let range = match self.range {
            Some(r) => r,
            None if self.seen <= self.cfg.warmup => {
                self.min_seen = self.min_seen.min(x);
                self.max_seen = self.max_seen.max(x);
                return 0.0;
            }
            None => {
                let (lo, hi) = (self.min_seen.min(x), self.max_seen.max(x));
                let pad = (hi - lo) * self.cfg.margin;
                let r = (lo - pad, hi + pad);
                self.range = Some(r);
                r
            }
        };
        let level = self.level(range, x);
        let now: Vec<u32> = (0..self.cfg.bits)
            .map(|b| 2 * b + ((level >> b) & 1))
            .collect();
        let surprised = now.iter().any(|f| self.predicted.binary_search(f).is_err());
        let (completed, new) = self.step(&now);
        let mut raw = if surprised {
            (1.0 - completed + new) / 2.0
        } else {
            0.0
        };
        if self.cfg.spatial > 0.0 {
            let spread = self.max_seen - self.min_seen;
            if spread > 0.0 {
                let tol = spread * self.cfg.spatial;
                if x > self.max_seen + tol || x < self.min_seen - tol {
                    raw = 1.0;
                }
            }
            self.min_seen = self.min_seen.min(x);
            self.max_seen = self.max_seen.max(x);
        }
        let resting = self.recent.iter().any(|s| *s >= self.cfg.threshold);
        if self.recent.len() >= self.cfg.rest.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(raw);
        if resting { 0.0 } else { raw }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [0, 1).
    fn noise(n: usize) -> impl Iterator<Item = f64> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        })
    }

    #[test]
    fn memory_stays_within_its_bound_on_noise() {
        let cfg = ContextConfig {
            max_contexts: 500,
            ..ContextConfig::default()
        };
        let mut d = ContextMemory::new(cfg);
        d.expect_range(0.0, 1.0);
        for (i, x) in noise(20_000).enumerate() {
            let s = d.score(i as i64, x);
            assert!((0.0..=1.0).contains(&s));
        }
        assert_eq!(d.contexts(), 500);
    }

    #[test]
    fn a_value_beyond_all_seen_scores_one_then_rests() {
        let mut d = ContextMemory::default();
        d.expect_range(0.0, 100.0);
        let mut t = 0;
        for _ in 0..50 {
            for v in [10.0, 20.0, 30.0, 40.0] {
                d.score(t, v);
                t += 1;
            }
        }
        assert_eq!(d.score(t, 90.0), 1.0, "far beyond 10..=40");
        let rest = ContextConfig::default().rest as i64;
        for k in 1..=rest {
            assert_eq!(
                d.score(t + k, 5.0 * k as f64),
                0.0,
                "resting after the alarm"
            );
        }
    }

    #[test]
    fn broken_readings_and_late_ranges_are_ignored() {
        let mut d = ContextMemory::default();
        for (i, x) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            assert_eq!(d.score(i as i64, x), 0.0);
        }
        assert_eq!(d.seen, 0);
        d.expect_range(0.0, 10.0);
        assert_eq!(d.range, Some((0.0, 10.0)));
        d.score(3, 5.0);
        d.expect_range(-1e9, 1e9);
        assert_eq!(
            d.range,
            Some((0.0, 10.0)),
            "the range is fixed once scoring began"
        );
    }

    #[test]
    fn without_a_range_it_learns_one_from_the_warmup() {
        let cfg = ContextConfig::default();
        let mut d = ContextMemory::new(cfg);
        for i in 0..cfg.warmup {
            assert_eq!(d.score(i as i64, (i % 10) as f64), 0.0, "warming up");
        }
        assert_eq!(d.range, None);
        d.score(cfg.warmup as i64, 3.0);
        let pad = 9.0 * cfg.margin;
        assert_eq!(d.range, Some((-pad, 9.0 + pad)));
    }

    #[test]
    fn within_finds_exactly_the_halves_a_set_holds() {
        let c = |k: u32| CONTEXT_FACT + k;
        let halves: Vec<Vec<u32>> = vec![
            vec![1],
            vec![1, 3],
            vec![2, 3, c(0)],
            vec![1, 2, 3, c(0)],
            vec![0, 2, 4, c(1), c(2), c(3), c(4), c(5), c(6)], // more than INLINE facts
            vec![c(7)],
        ];
        let mut side = Side::default();
        for h in &halves {
            side.get_or_insert(h);
        }
        let queries: Vec<Vec<u32>> = vec![
            vec![],
            vec![1, 3],
            vec![1, 2, 3, c(0)],
            vec![0, 1, 2, 4, c(1), c(2), c(3), c(4), c(5), c(6), c(7)],
            vec![0, 2, 4, c(1), c(2), c(3), c(4), c(5)],
        ];
        for q in &queries {
            let mut got = side.within(q);
            got.sort_unstable();
            let want: Vec<u32> = halves
                .iter()
                .enumerate()
                .filter(|(_, h)| h.iter().all(|f| q.contains(f)))
                .map(|(i, _)| i as u32)
                .collect();
            assert_eq!(got, want, "{q:?}");
            for h in halves.iter().filter(|h| h.iter().all(|f| q.contains(f))) {
                assert_eq!(signature(h) & !signature(q), 0);
            }
        }
        assert_eq!(intersection(&[1, 2, 3], &[2, 3, 4]), vec![2, 3]);
    }
}
