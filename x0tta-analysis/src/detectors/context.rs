//! A contextual sequence memory: which coarse values follow which contexts, learnt online.
//!
//! The idea is Mikhail Smirnov's Contextual Anomaly Detector (CAD, 2016), the runner-up on
//! NAB's scoreboard: a value becomes a few binary "facts"; the memory learns *contexts*, pairs
//! of (facts seen one step earlier, facts seen now), and contexts that completed are fed back
//! as facts themselves, so longer sequences are remembered as chains of short ones. A point
//! is anomalous when the memory did not predict it and the contexts it expected failed while
//! new ones had to be learnt.

use rustc_hash::FxHashMap;

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
    /// The default with at most 5 active contexts instead of CAD's 15: fewer context facts
    /// per step, so fewer halves and contexts to visit, for about a third of the cost per
    /// point (under 2 µs in docs/PERFORMANCE.md) and a little more false alarms on NAB
    /// (standard / low-FP / low-FN 70.45 / 65.81 / 73.98 against the default's
    /// 70.62 / 66.63 / 74.09; both beat Numenta HTM's standard 70.10).
    ///
    /// ```
    /// use x0tta_analysis::detectors::ContextConfig;
    /// assert_eq!(ContextConfig::lean().max_active, 5);
    /// assert_eq!(ContextConfig { max_active: 15, ..ContextConfig::lean() }, ContextConfig::default());
    /// ```
    pub fn lean() -> Self {
        Self {
            max_active: 5,
            ..Self::default()
        }
    }

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

/// Value-bit facts there can be: two per bit, at most 8 bits.
const VALUE_FACTS: usize = 2 * 8;
/// Facts at or above this name a completed context (below: a value bit). Facts are dense,
/// so they index the per-fact tables directly.
const CONTEXT_FACT: u32 = VALUE_FACTS as u32;

/// A set of value-bit facts (bit `f` for fact `f`): what right halves and predictions hold.
type Bits = u16;

/// Bits set in each byte: the portable x86-64 target has no population-count instruction,
/// and this is the innermost loop.
const ONES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).count_ones() as u8;
        i += 1;
    }
    t
};

/// Facts in `b`.
fn ones(b: Bits) -> u32 {
    u32::from(ONES[usize::from(b & 0xff)]) + u32::from(ONES[usize::from(b >> 8)])
}

/// How often a context's prediction came true: `came_true` of `predicted` facts.
#[derive(Debug, Default, Clone, Copy)]
struct Weight {
    came_true: u32,
    predicted: u32,
}

impl Weight {
    /// The share that came true (0 before any prediction). Equal shares are equal floats:
    /// the quotient of two integers is correctly rounded.
    fn share(self) -> f64 {
        f64::from(self.came_true) / f64::from(self.predicted.max(1))
    }
}

/// The best share ([`Weight::share`]) among some contexts and the value bits those at it
/// predict. No context at all reads as a best of 0 predicting nothing, which changes no
/// other best.
#[derive(Debug, Default, Clone, Copy)]
struct Prediction {
    best: f64,
    bits: Bits,
}

impl Prediction {
    /// Takes in contexts of share `share` predicting `bits`.
    fn add(&mut self, share: f64, bits: Bits) {
        if share > self.best {
            *self = Self { best: share, bits };
        } else if share == self.best {
            self.bits |= bits;
        }
    }
}

#[derive(Debug, Default)]
struct Semi {
    /// Sorted.
    facts: Vec<u32>,
    /// The facts of the last crossing that this semi-context holds.
    matched: Vec<u32>,
    /// One of its contexts was learnt from two consecutive steps: it is indexed for
    /// crossings.
    zero_level: bool,
    /// The contexts built on this half (kept here, where the steps that
    /// hold the half scan them).
    contexts: Vec<Context>,
    /// What its contexts predict, kept current as they learn: a step that holds this half
    /// reads it without scanning them.
    prediction: Prediction,
    /// Steps that held it whole: a bound on its contexts' counts (which it keeps from
    /// overflowing).
    wholes: u32,
}

/// Once a half was held whole this often, it and its contexts' counts are halved (shares
/// stay; the counts stay far from overflowing, each step adding at most 8).
const HALVE_AT: u32 = 1 << 28;

/// The left halves of contexts, indexed to find those a step holds.
#[derive(Debug, Default)]
struct Side {
    semis: Vec<Semi>,
    by_facts: FxHashMap<Vec<u32>, u32>,
    /// Per fact, every semi-context holding it that has a zero-level context
    /// (only those combine into new contexts when partly held).
    by_fact: Vec<Vec<u32>>,
    /// Per fact, every semi-context filed under it: the fact with the fewest
    /// semi-contexts filed under it when the half was learnt, so the lists to search for the
    /// halves a set of facts holds whole stay short. Each entry carries the half's
    /// [`signature`], which rules most candidates out without reading their facts.
    by_key: Vec<Vec<Key>>,
    /// Per fact, the last [`within`](Self::within) call that held it: membership in O(1).
    mark: Vec<u32>,
    stamp: u32,
    /// Semi-contexts the last crossing touched.
    crossed: Vec<u32>,
}

/// `list[i]`, grown to hold it.
fn entry<T: Default>(list: &mut Vec<T>, i: usize) -> &mut T {
    if i >= list.len() {
        list.resize_with(i + 1, T::default);
    }
    &mut list[i]
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
        let by_key = &self.by_key;
        let rarest = facts
            .iter()
            .min_by_key(|f| by_key.get(**f as usize).map_or(0, Vec::len));
        if let Some(key) = rarest {
            let mut inline = [0u32; INLINE];
            let len = if facts.len() <= INLINE {
                inline[..facts.len()].copy_from_slice(facts);
                facts.len() as u8
            } else {
                u8::MAX
            };
            entry(&mut self.by_key, *key as usize).push(Key {
                id,
                signature: signature(facts),
                len,
                inline,
            });
        }
        id
    }

    /// Files semi-context `id` for crossings, once it has a zero-level context.
    fn zero_level(&mut self, id: u32) {
        let semi = &mut self.semis[id as usize];
        if !semi.zero_level {
            semi.zero_level = true;
            for f in &semi.facts {
                entry(&mut self.by_fact, *f as usize).push(id);
            }
        }
    }

    /// Records, for every semi-context with a zero-level context that shares a fact with
    /// `facts`, which of them it holds.
    fn cross(&mut self, facts: &[u32]) {
        for id in self.crossed.drain(..) {
            self.semis[id as usize].matched.clear();
        }
        for f in facts {
            for id in self.by_fact.get(*f as usize).into_iter().flatten() {
                let semi = &mut self.semis[*id as usize];
                if semi.matched.is_empty() {
                    self.crossed.push(*id);
                }
                semi.matched.push(*f);
            }
        }
    }

    /// Puts in `out` the semi-contexts whose every fact is in `facts` (sorted).
    fn within(&mut self, facts: &[u32], out: &mut Vec<u32>) {
        out.clear();
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.fill(0);
            self.stamp = 1;
        }
        for f in facts {
            *entry(&mut self.mark, *f as usize) = self.stamp;
        }
        let (mark, stamp) = (&self.mark, self.stamp);
        let held = |f: &u32| mark.get(*f as usize) == Some(&stamp);
        let outside = !signature(facts);
        for f in facts {
            for k in self.by_key.get(*f as usize).into_iter().flatten() {
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

/// A 64-bit summary of a set of facts: a set's signature has every bit of its subsets'.
fn signature(facts: &[u32]) -> u64 {
    facts
        .iter()
        .fold(0, |sig, f| sig | 1 << (f.wrapping_mul(0x9E37_79B9) >> 26))
}

#[derive(Debug, Clone, Copy)]
struct Context {
    id: u32,
    /// Its right half: value bits, and how many.
    right: Bits,
    of: u8,
    /// Learnt directly from two consecutive steps (not from a crossing of others).
    zero_level: bool,
    /// Facts the right half predicted, summed over the steps its left half completed, and
    /// of those, the facts that came true (halved with the half's [`Semi::wholes`]).
    weight: Weight,
    /// Steps on which the whole context came true.
    completed: u32,
}

/// What [`ContextMemory::learn`] did with a pair of halves.
enum Learnt {
    New(u32),
    Known(u32),
    /// The memory is full and holds no such context.
    Full,
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
    name: &'static str,
    cfg: ContextConfig,
    range: Option<(f64, f64)>,
    /// Finite points seen.
    seen: usize,
    /// The smallest and largest value seen (the spatial check, and the learnt range).
    min_seen: f64,
    max_seen: f64,
    left: Side,
    /// Where each context is: its left half and its place there.
    contexts: Vec<(u32, u32)>,
    by_halves: FxHashMap<(u32, Bits), u32>,
    /// Facts of the previous step: its value bits and the contexts it completed.
    previous: Vec<u32>,
    /// The value bits the memory expects next.
    predicted: Bits,
    /// The left halves `previous` holds whole.
    whole: Vec<u32>,
    /// Points scored since the last raw score at or above the threshold.
    since_alarm: usize,
    scratch: Scratch,
}

/// Buffers one step fills and the next reuses (a step allocates only when it learns).
#[derive(Debug, Default)]
struct Scratch {
    /// This step's facts, becoming `previous`.
    facts: Vec<u32>,
    /// Left halves the previous step held, and whether whole.
    lefts: Vec<(u32, bool)>,
    /// Contexts this step completed: times completed (high half) and id (low half).
    active: Vec<u64>,
    /// Contexts to learn from crossings: their left halves' facts (a span of
    /// `combined_facts`) and right halves.
    combined: Vec<(usize, usize, Bits)>,
    combined_facts: Vec<u32>,
    /// The contexts this step's candidates are, and candidates the full memory holds not.
    candidates: Vec<u32>,
    unheld: Vec<(usize, usize, Bits)>,
}

impl ContextMemory {
    /// A detector with `cfg` (`bits` clamped to 1..=8).
    pub fn new(mut cfg: ContextConfig) -> Self {
        cfg.bits = cfg.bits.clamp(1, 8);
        Self {
            name: "context",
            cfg,
            range: None,
            seen: 0,
            min_seen: f64::INFINITY,
            max_seen: f64::NEG_INFINITY,
            left: Side::default(),
            contexts: Vec::new(),
            by_halves: FxHashMap::default(),
            previous: Vec::new(),
            predicted: 0,
            whole: Vec::new(),
            // The first `rest` points are not reported: nothing is known yet.
            since_alarm: 0,
            scratch: Scratch::default(),
        }
    }

    /// A detector with [`ContextConfig::lean`], named `contextLean`.
    pub fn lean() -> Self {
        Self {
            name: "contextLean",
            ..Self::new(ContextConfig::lean())
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

    fn full(&self) -> bool {
        self.contexts.len() >= self.cfg.max_contexts
    }

    /// The left half `left`, added unless the memory is full.
    fn left_half(&mut self, left: &[u32]) -> Option<u32> {
        if self.full() {
            self.left.by_facts.get(left).copied()
        } else {
            Some(self.left.get_or_insert(left))
        }
    }

    /// Learns the context (left half `l`, right) unless it is known or the memory is full.
    fn learn(&mut self, l: Option<u32>, right: Bits, zero_level: bool) -> Learnt {
        let Some(l) = l else {
            return Learnt::Full;
        };
        let full = self.full();
        if let Some(id) = self.by_halves.get(&(l, right)) {
            if zero_level && !full {
                let (l, i) = self.contexts[*id as usize];
                self.left.semis[l as usize].contexts[i as usize].zero_level = true;
                self.left.zero_level(l);
            }
            return Learnt::Known(*id);
        }
        if full {
            return Learnt::Full;
        }
        let id = self.contexts.len() as u32;
        let semi = &mut self.left.semis[l as usize];
        self.contexts.push((l, semi.contexts.len() as u32));
        semi.contexts.push(Context {
            id,
            right,
            of: ones(right) as u8,
            zero_level,
            weight: Weight::default(),
            completed: 0,
        });
        semi.prediction.add(0.0, right);
        if zero_level {
            self.left.zero_level(l);
        }
        self.by_halves.insert((l, right), id);
        Learnt::New(id)
    }

    /// One step of the memory over the value bits `now` (sorted; `bits` as a set): learns,
    /// predicts the next step's facts, and returns the share of expected contexts that
    /// completed and the share of candidate contexts that were new.
    fn step(&mut self, now: &[u32], bits: Bits) -> (f64, f64) {
        let previous = std::mem::take(&mut self.previous);
        let mut s = std::mem::take(&mut self.scratch);
        let fresh = if previous.is_empty() {
            None
        } else {
            let l = self.left_half(&previous);
            match self.learn(l, bits, true) {
                Learnt::New(id) => Some(id),
                Learnt::Known(_) | Learnt::Full => None,
            }
        };

        // The contexts whose left half the previous step held whole: which the present
        // completes. They were found when that step predicted; since then only `fresh` may
        // have added a half, which holds nothing else. A step that learnt a new context
        // also combines partly held halves with zero-level contexts into more.
        s.lefts.clear();
        s.lefts.extend(self.whole.iter().map(|l| (*l, true)));
        if fresh.is_some() {
            self.left.cross(&previous);
            let semis = &self.left.semis;
            s.lefts.extend(
                self.left
                    .crossed
                    .iter()
                    .filter(|l| {
                        let semi = &semis[**l as usize];
                        semi.matched.len() < semi.facts.len()
                    })
                    .map(|l| (*l, false)),
            );
        }
        s.active.clear();
        s.combined.clear();
        s.combined_facts.clear();
        let mut expected = 0usize;
        let fresh_id = fresh.unwrap_or(u32::MAX);
        for &(l, whole) in &s.lefts {
            let Semi {
                facts,
                matched,
                contexts,
                prediction,
                wholes,
                ..
            } = &mut self.left.semis[l as usize];
            let matched = if whole { &*facts } else { &*matched };
            let combines = fresh.is_some() && matched.len() <= self.cfg.max_left;
            let mut span = None;
            let mut combine = |right: Bits| {
                let (start, len) = *span.get_or_insert_with(|| {
                    s.combined_facts.extend_from_slice(matched);
                    (s.combined_facts.len() - matched.len(), matched.len())
                });
                s.combined.push((start, len, right));
            };
            if !whole {
                // Partly held: only combinations, of zero-level contexts partly come true.
                if combines {
                    for ctx in contexts.iter() {
                        let held = ctx.right & bits;
                        if ctx.zero_level && held != 0 && ctx.id != fresh_id {
                            combine(held);
                        }
                    }
                }
                continue;
            }
            *wholes += 1;
            if *wholes >= HALVE_AT {
                *wholes /= 2;
                for ctx in contexts.iter_mut() {
                    ctx.weight.predicted /= 2;
                    ctx.weight.came_true /= 2;
                    ctx.completed /= 2;
                }
            }
            let mut best = Prediction::default();
            for ctx in contexts.iter_mut() {
                if ctx.id != fresh_id {
                    let held = ctx.right & bits;
                    let w = &mut ctx.weight;
                    w.predicted += u32::from(ctx.of);
                    w.came_true += ones(held);
                    expected += 1;
                    if held == ctx.right {
                        ctx.completed += 1;
                        s.active
                            .push(u64::from(ctx.completed) << 32 | u64::from(ctx.id));
                    } else if combines && ctx.zero_level && held != 0 {
                        combine(held);
                    }
                }
                best.add(ctx.weight.share(), ctx.right);
            }
            *prediction = best;
        }
        let completed_share = if expected > 0 {
            s.active.len() as f64 / expected as f64
        } else {
            0.0
        };

        // The most often completed contexts (the latest learnt among equals) become facts of
        // this step.
        let k = self.cfg.max_active;
        if s.active.len() > k {
            let cut = s.active.len() - k;
            if k > 0 {
                s.active.select_nth_unstable(cut);
            }
            s.active.drain(..cut);
        }
        s.facts.clear();
        s.facts.extend_from_slice(now);
        s.facts
            .extend(s.active.iter().map(|a| CONTEXT_FACT + *a as u32));
        s.facts.sort_unstable();

        // Learn the combinations, then predict from the contexts whose left half this step
        // holds whole: the right halves of the most reliable ones.
        s.candidates.clear();
        s.unheld.clear();
        s.candidates.extend(fresh);
        let mut added = usize::from(fresh.is_some());
        // Combinations come grouped by left half.
        let mut l = None;
        for (i, &(start, len, right)) in s.combined.iter().enumerate() {
            if i == 0 || s.combined[i - 1].0 != start {
                l = self.left_half(&s.combined_facts[start..start + len]);
            }
            match self.learn(l, right, false) {
                Learnt::New(id) => {
                    added += 1;
                    s.candidates.push(id);
                }
                Learnt::Known(id) => s.candidates.push(id),
                Learnt::Full => s.unheld.push((start, len, right)),
            }
        }
        s.candidates.sort_unstable();
        s.candidates.dedup();
        let facts = &s.combined_facts;
        let pair = |c: &(usize, usize, Bits)| (&facts[c.0..c.0 + c.1], c.2);
        s.unheld.sort_unstable_by(|a, b| pair(a).cmp(&pair(b)));
        s.unheld.dedup_by(|a, b| pair(a) == pair(b));
        let candidates = s.candidates.len() + s.unheld.len();

        self.left.within(&s.facts, &mut self.whole);
        let mut prediction = Prediction::default();
        for l in &self.whole {
            let p = self.left.semis[*l as usize].prediction;
            prediction.add(p.best, p.bits);
        }
        self.predicted = prediction.bits;
        self.previous = std::mem::replace(&mut s.facts, previous);
        self.scratch = s;

        let new_share = if fresh.is_some() && candidates > 0 {
            added as f64 / candidates as f64
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
        self.name
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
        let n = self.cfg.bits as usize;
        let mut now = [0u32; 8];
        let mut bits: Bits = 0;
        for (b, f) in now[..n].iter_mut().enumerate() {
            *f = 2 * b as u32 + ((level >> b) & 1);
            bits |= 1 << *f;
        }
        let surprised = bits & !self.predicted != 0;
        let (completed, new) = self.step(&now[..n], bits);
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
        let resting = self.since_alarm < self.cfg.rest.max(1);
        self.since_alarm = if raw >= self.cfg.threshold {
            0
        } else {
            self.since_alarm.saturating_add(1)
        };
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

    /// Every half's cached prediction is what scanning its contexts gives.
    fn check_predictions(d: &ContextMemory) {
        for semi in &d.left.semis {
            let mut p = Prediction::default();
            for ctx in &semi.contexts {
                assert_eq!(u32::from(ctx.of), ctx.right.count_ones());
                p.add(ctx.weight.share(), ctx.right);
            }
            assert_eq!(p.best, semi.prediction.best);
            assert_eq!(p.bits, semi.prediction.bits);
        }
    }

    #[test]
    fn cached_predictions_match_the_contexts() {
        let mut d = ContextMemory::default();
        d.expect_range(0.0, 1.0);
        for (i, x) in noise(5_000).enumerate() {
            // Noise on a cycle: contexts that come true in part.
            d.score(i as i64, 0.5 * x + 0.1 * (i % 5) as f64);
            if i % 500 == 0 {
                check_predictions(&d);
            }
        }
        check_predictions(&d);
        assert!(d.contexts() > 100);
    }

    #[test]
    fn counts_are_halved_before_they_overflow() {
        let mut d = ContextMemory::default();
        d.expect_range(0.0, 7.0);
        for i in 0..1_000 {
            d.score(i, (i % 8) as f64);
        }
        let shares = |d: &ContextMemory| -> Vec<f64> {
            d.left
                .semis
                .iter()
                .flat_map(|s| s.contexts.iter().map(|c| c.weight.share()))
                .collect()
        };
        let before = shares(&d);
        for semi in &mut d.left.semis {
            semi.wholes = HALVE_AT - 1;
        }
        for i in 1_000..1_016 {
            assert_eq!(d.score(i, (i % 8) as f64), 0.0, "still learnt");
        }
        assert!(d.left.semis.iter().all(|s| s.wholes < HALVE_AT));
        for (a, b) in before.iter().zip(&shares(&d)) {
            assert!((a - b).abs() < 0.05, "shares stay: {a} {b}");
        }
        check_predictions(&d);
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
            let mut got = Vec::new();
            side.within(q, &mut got);
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
    }
}
