//! Vector search: unit-length copies of every indexed vector in one arena by slot, a small
//! exact segment of the newest ones searched by brute force, and an HNSW graph (`hnsw_rs`,
//! incremental inserts) over the rest. The graph is keyed by incident sequence number, never
//! by slot, so a reused slot cannot be confused with the incident that had it before; points
//! of removed incidents stay in the graph as tombstones until a rebuild.
//!
//! This module owns the data structures and the persisted graph format; when to merge and
//! which slot is which incident is `index.rs`'s business. It never touches the redb file.
//!
//! `instant-distance` (the design card's crate) was measured against `hnsw_rs` on the same
//! vectors (`benches/search.rs`, docs/PERFORMANCE.md): the same recall@10 (1.000 at 10,000
//! loghub incidents, ef 256) and similar query latency, but no incremental insert (every new
//! incident would mean a full rebuild) and a build ~10x slower (52 s on two threads against
//! 5.2 s on one), so the graph is `hnsw_rs`.

use std::fs;
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::hnswio::HnswIo;
use sha2::{Digest, Sha256};

use crate::text::TopK;

/// How the vector index is built and searched.
///
/// ```
/// use x0tta_knowledge::{KnowledgeConfig, VectorIndexConfig};
/// let config = KnowledgeConfig {
///     vectors: VectorIndexConfig {
///         exact_segment: 512,
///         ..VectorIndexConfig::default()
///     },
///     ..KnowledgeConfig::with_retention(100_000)
/// };
/// assert_eq!(config.vectors.m, 32);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VectorIndexConfig {
    /// HNSW links per node and layer (`M`; the design card's 32). 2..=255.
    pub m: usize,
    /// Candidates considered while inserting into the graph (`efConstruction`).
    pub ef_construction: usize,
    /// Candidates considered while searching the graph (`ef`; the design card's 256). At
    /// least 1; a search never uses fewer than it returns.
    pub ef_search: usize,
    /// Vectors searched by brute force before the background task merges them into the
    /// graph (at least 1). Stores with fewer vectors than this never build a graph. A trigger,
    /// not a cap: while a merge runs, new vectors keep landing in the segment (at most
    /// `retention` in all) and searches scan them until the merge catches up (a bulk import of
    /// 100,000 incidents is searched at ~10 ms until the graph is built).
    pub exact_segment: usize,
    /// Keep the built graph in a directory next to the database file (`<file>.hnsw/`), so a
    /// reopen loads it instead of rebuilding it.
    pub persist: bool,
}

impl Default for VectorIndexConfig {
    fn default() -> Self {
        Self {
            m: 32,
            ef_construction: 200,
            ef_search: 256,
            exact_segment: 2048,
            persist: true,
        }
    }
}

impl VectorIndexConfig {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if !(2..=255).contains(&self.m) {
            return Err("vectors.m must be in 2..=255");
        }
        if self.ef_construction == 0 || self.ef_search == 0 {
            return Err("vectors.ef_construction and vectors.ef_search must be at least 1");
        }
        if self.exact_segment == 0 {
            return Err("vectors.exact_segment must be at least 1");
        }
        Ok(())
    }
}

/// Dot product in eight lanes, so the compiler vectorises it without `unsafe` or a fixed
/// target feature.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `v` scaled to unit length (a zero vector stays zero); `None` if any value is not finite.
pub(crate) fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = dot(v, v).sqrt();
    Some(if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        vec![0.0; v.len()]
    })
}

/// A unit vector as the graph holds it: each component rounded to 8 bits against the
/// vector's own largest one, followed by that scale (an `f32`, little-endian, in 4 bytes).
/// A quarter of the memory a graph walk reads; [`Vectors`] keeps the full vectors, and
/// searches re-rank the graph's candidates with them, so scores stay exact.
pub(crate) fn quantize(unit: &[f32]) -> Vec<i8> {
    let max = unit.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 && max.is_finite() {
        max / 127.0
    } else {
        0.0
    };
    let mut q = Vec::with_capacity(unit.len() + 4);
    q.extend(unit.iter().map(|x| {
        if scale > 0.0 {
            (x / scale).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        }
    }));
    q.extend(scale.to_le_bytes().map(|b| b as i8));
    q
}

/// The components and the scale of a [`quantize`]d vector.
fn unpack(q: &[i8]) -> (&[i8], f32) {
    let (v, s) = q.split_at(q.len().saturating_sub(4));
    let mut bytes = [0u8; 4];
    for (b, x) in bytes.iter_mut().zip(s) {
        *b = *x as u8;
    }
    (v, f32::from_le_bytes(bytes))
}

/// Dot product of 8-bit vectors in sixteen 32-bit lanes (vectorised by the compiler).
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(i16::from(x[i]) * i16::from(y[i]));
        }
    }
    let mut s = acc.iter().sum::<i32>();
    for (x, y) in ra.iter().zip(rb) {
        s += i32::from(*x) * i32::from(*y);
    }
    s
}

/// `1 − cosine` of two [`quantize`]d unit vectors, clamped at 0 (hnsw_rs requires
/// distances ≥ 0).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct UnitDotI8;

impl Distance<i8> for UnitDotI8 {
    fn eval(&self, a: &[i8], b: &[i8]) -> f32 {
        let ((va, sa), (vb, sb)) = (unpack(a), unpack(b));
        (1.0 - sa * sb * dot_i8(va, vb) as f32).max(0.0)
    }
}

/// The graph: hnsw_rs over [`quantize`]d unit vectors, keyed by sequence number.
pub(crate) struct Graph {
    hnsw: Hnsw<'static, i8, UnitDotI8>,
    dim: usize,
}

impl Graph {
    pub(crate) fn new(config: &VectorIndexConfig, dim: usize, capacity: usize) -> Self {
        Self {
            hnsw: Hnsw::new(
                config.m,
                capacity.max(1024),
                16,
                config.ef_construction,
                UnitDotI8,
            ),
            dim,
        }
    }

    /// Adds a unit vector (safe to call while other threads search).
    pub(crate) fn insert(&self, seq: u64, v: &[f32]) {
        self.hnsw.insert_slice((&quantize(v), seq as usize));
    }

    pub(crate) fn points(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Up to `k` nearest points to the unit vector `q`, nearest first, by their sequence
    /// number (the ranking is the quantized one: callers re-rank with the full vectors).
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<u64> {
        if self.points() == 0 || q.len() != self.dim {
            return Vec::new();
        }
        self.hnsw
            .search(&quantize(q), k, ef.max(k))
            .into_iter()
            .map(|n| n.d_id as u64)
            .collect()
    }

    /// Up to `k` nearest points that `accept` lets through, as [`Graph::search`] (hnsw_rs's
    /// filtered search: the walk goes on until it holds `ef` accepted points or runs out).
    pub(crate) fn search_filtered(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: &(dyn Fn(u64) -> bool + Sync),
    ) -> Vec<u64> {
        if self.points() == 0 || q.len() != self.dim {
            return Vec::new();
        }
        let filter = |id: &usize| accept(*id as u64);
        self.hnsw
            .search_filter(&quantize(q), k, ef.max(k), Some(&filter))
            .into_iter()
            .map(|n| n.d_id as u64)
            .collect()
    }

    /// Every point as (sequence, [`quantize`]d vector). Only while nothing inserts (hnsw_rs's
    /// point iterator re-takes a read lock, which a waiting writer would deadlock).
    pub(crate) fn for_each_point(&self, mut f: impl FnMut(u64, &[i8])) {
        if self.points() == 0 {
            return;
        }
        for p in self.hnsw.get_point_indexation() {
            f(p.get_origin_id() as u64, p.get_v());
        }
    }
}

/// Where a slot's vector lives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Place {
    None,
    Segment,
    Graph,
}

/// Counters shared with the store's `index_stats`.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) graph_inserts: AtomicU64,
    pub(crate) merges: AtomicU64,
    pub(crate) rebuilds: AtomicU64,
    pub(crate) saves: AtomicU64,
    pub(crate) loads: AtomicU64,
}

/// The vector side of the index, by slot.
#[derive(Default)]
pub(crate) struct Vectors {
    dim: usize,
    arena: Vec<f32>,
    place: Vec<Place>,
    /// Slots in the exact segment; `seg_pos[slot]` is the slot's position here.
    segment: Vec<u32>,
    seg_pos: Vec<u32>,
    graph: Option<Arc<Graph>>,
    /// Live slots whose vector is in the graph.
    in_graph: usize,
    /// Graph points whose incident is gone (or replaced).
    tombstones: usize,
    pub(crate) counters: Arc<Counters>,
}

impl Vectors {
    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    pub(crate) fn place(&self, slot: u32) -> Place {
        self.place
            .get(slot as usize)
            .copied()
            .unwrap_or(Place::None)
    }

    pub(crate) fn vector(&self, slot: u32) -> Option<&[f32]> {
        if self.place(slot) == Place::None || self.dim == 0 {
            return None;
        }
        let s = slot as usize * self.dim;
        self.arena.get(s..s + self.dim)
    }

    pub(crate) fn segment(&self) -> &[u32] {
        &self.segment
    }

    pub(crate) fn graph(&self) -> Option<&Arc<Graph>> {
        self.graph.as_ref()
    }

    pub(crate) fn in_graph(&self) -> usize {
        self.in_graph
    }

    pub(crate) fn tombstones(&self) -> usize {
        self.tombstones
    }

    fn ensure(&mut self, slot: u32) {
        let s = slot as usize;
        if self.place.len() <= s {
            self.place.resize(s + 1, Place::None);
            self.seg_pos.resize(s + 1, 0);
        }
        if self.dim > 0 && self.arena.len() < (s + 1) * self.dim {
            self.arena.resize((s + 1) * self.dim, 0.0);
        }
    }

    /// Puts a unit vector in `slot` (which holds none) into the exact segment. Refused
    /// (false) when its width differs from the index's.
    pub(crate) fn insert(&mut self, slot: u32, unit: &[f32]) -> bool {
        if self.dim == 0 {
            if unit.is_empty() {
                return false;
            }
            self.dim = unit.len();
        }
        if unit.len() != self.dim {
            return false;
        }
        self.ensure(slot);
        let s = slot as usize;
        if self.place[s] != Place::None {
            return false;
        }
        self.arena[s * self.dim..(s + 1) * self.dim].copy_from_slice(unit);
        self.place[s] = Place::Segment;
        self.seg_pos[s] = self.segment.len() as u32;
        self.segment.push(slot);
        true
    }

    fn leave_segment(&mut self, slot: u32) {
        let pos = self.seg_pos[slot as usize] as usize;
        self.segment.swap_remove(pos);
        if let Some(moved) = self.segment.get(pos) {
            self.seg_pos[*moved as usize] = pos as u32;
        }
    }

    /// Forgets the vector in `slot`.
    pub(crate) fn remove(&mut self, slot: u32) {
        match self.place(slot) {
            Place::None => return,
            Place::Segment => self.leave_segment(slot),
            Place::Graph => {
                self.in_graph -= 1;
                self.tombstones += 1;
            }
        }
        self.place[slot as usize] = Place::None;
    }

    /// Best `k` of `slots` by cosine to the unit vector `q`, best first.
    pub(crate) fn exact(&self, q: &[f32], slots: impl Iterator<Item = u32>, k: usize) -> TopK {
        let mut top = TopK::new(k);
        if q.len() != self.dim {
            return top;
        }
        for slot in slots {
            if let Some(v) = self.vector(slot) {
                let score = dot(q, v);
                if top.threshold().is_none_or(|t| score >= t) {
                    top.push(slot, score);
                }
            }
        }
        top
    }

    /// Whether the background task has work: a full exact segment, or a graph that is more
    /// than a quarter tombstones.
    pub(crate) fn needs_merge(&self, bound: usize) -> bool {
        self.segment.len() >= bound || self.wants_rebuild(bound)
    }

    pub(crate) fn wants_rebuild(&self, bound: usize) -> bool {
        self.tombstones >= bound && self.tombstones > self.in_graph / 4
    }

    /// Records that the vectors of `slots` are now in `graph` (the one in use, or a rebuilt one
    /// that replaces it when `rebuilt`); `gone` graph points belong to removed incidents.
    pub(crate) fn commit(&mut self, graph: Arc<Graph>, slots: &[u32], gone: usize, rebuilt: bool) {
        if rebuilt {
            self.tombstones = gone;
        } else {
            self.tombstones += gone;
        }
        for slot in slots {
            if self.place(*slot) == Place::Segment {
                self.leave_segment(*slot);
                self.place[*slot as usize] = Place::Graph;
                self.in_graph += 1;
            }
        }
        self.graph = Some(graph);
    }

    /// Adopts a graph loaded from disk that holds the vectors of `slots` (all in the exact
    /// segment now) and `gone` points of removed incidents.
    pub(crate) fn adopt(&mut self, graph: Arc<Graph>, slots: &[u32], gone: usize) {
        self.commit(graph, slots, gone, true);
    }
}

/// The persisted graph: `<db>.hnsw/` holds hnsw_rs's two dump files (`<name>.hnsw.graph`,
/// `<name>.hnsw.data`) and a `manifest` naming them with their length and SHA-256. The
/// manifest is written last and renamed into place, so a crash leaves the previous graph (or
/// none); files it does not name are deleted after a save. hnsw_rs's format is native-endian
/// and word-size dependent, which the manifest records too.
pub(crate) fn sidecar_dir(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(".hnsw");
    PathBuf::from(s)
}

const MANIFEST: &str = "manifest";
/// Version 2: points are [`quantize`]d (version 1 graphs held `f32` points and are rebuilt).
const FORMAT: &str = "x0tta-hnsw-2";

fn platform() -> String {
    format!(
        "{}-{}",
        if cfg!(target_endian = "little") {
            "le"
        } else {
            "be"
        },
        usize::BITS
    )
}

fn sha256_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((len, hex))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Writes `graph` to `dir` (created if missing) under a fresh name, then switches the
/// manifest to it and deletes older files. Callers must not insert into `graph` meanwhile.
pub(crate) fn save(graph: &Graph, dir: &Path, generation: u64) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let base = format!("g{generation}");
    // hnsw_rs panics when it cannot create its files; create them first so a read-only or
    // full disk is an error here, and catch whatever it still throws.
    for ext in ["hnsw.graph", "hnsw.data"] {
        fs::File::create(dir.join(format!("{base}.{ext}")))?;
    }
    let dumped = catch_unwind(AssertUnwindSafe(|| graph.hnsw.file_dump(dir, &base)))
        .map_err(|p| io::Error::other(format!("hnsw dump panicked: {}", panic_text(&*p))))?
        .map_err(|e| io::Error::other(format!("hnsw dump: {e}")))?;
    let files = [
        format!("{dumped}.hnsw.graph"),
        format!("{dumped}.hnsw.data"),
    ];
    let mut manifest = format!(
        "{FORMAT}\nplatform {}\ndim {}\npoints {}\n",
        platform(),
        graph.dim,
        graph.points()
    );
    for f in &files {
        let p = dir.join(f);
        fs::File::open(&p)?.sync_all()?;
        let (len, hex) = sha256_file(&p)?;
        manifest.push_str(&format!("file {f} {len} {hex}\n"));
    }
    let tmp = dir.join("manifest.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(manifest.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(MANIFEST))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all(); // directory fsync: best effort (not every platform allows it)
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name != MANIFEST && !files.contains(&name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Loads the graph the manifest in `dir` names, after checking platform, width, lengths and
/// hashes. `Ok(None)`: nothing persisted.
pub(crate) fn load(dir: &Path, dim: usize) -> Result<Option<Graph>, String> {
    let text = match fs::read_to_string(dir.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("manifest: {e}")),
    };
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return Err("unknown manifest format".into());
    }
    let mut files = Vec::new();
    let mut points = None;
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["platform", p] if *p == platform() => {}
            ["platform", p] => return Err(format!("written on platform {p}")),
            ["dim", d] if d.parse() == Ok(dim) => {}
            ["dim", d] => return Err(format!("graph of {d}-d vectors, the store has {dim}")),
            ["points", n] => points = n.parse::<usize>().ok(),
            ["file", name, len, hex] => files.push((*name, *len, *hex)),
            _ => return Err(format!("bad manifest line {line:?}")),
        }
    }
    let base = match files.as_slice() {
        [(g, ..), (d, ..)] => match (g.strip_suffix(".hnsw.graph"), d.strip_suffix(".hnsw.data")) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            _ => return Err("manifest names mismatched files".into()),
        },
        _ => return Err("manifest must name two files".into()),
    };
    for (name, len, hex) in &files {
        if name.contains('/') || name.contains('\\') {
            return Err(format!("bad file name {name:?}"));
        }
        let (got_len, got_hex) =
            sha256_file(&dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        if got_len.to_string() != *len || got_hex != *hex {
            return Err(format!("{name} does not match its manifest entry"));
        }
    }
    // hnsw_rs's reloaded graph borrows its loader for its whole life (for memory-mapped data,
    // which is off here); leaking the small loader once per open gives the graph a 'static
    // lifetime without unsafe code.
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &base)));
    let hnsw = catch_unwind(AssertUnwindSafe(move || {
        let io = io;
        io.load_hnsw::<i8, UnitDotI8>()
    }))
    .map_err(|p| format!("hnsw load panicked: {}", panic_text(&*p)))?
    .map_err(|e| format!("hnsw load: {e}"))?;
    let graph = Graph { hnsw, dim };
    if points.is_some_and(|n| n != graph.points()) {
        return Err("graph point count differs from its manifest".into());
    }
    Ok(Some(graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_naive_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.05).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
        assert_eq!(normalized(&[f32::NAN, 1.0]), None);
        assert_eq!(normalized(&[0.0, 0.0]), Some(vec![0.0, 0.0]));
        let u = normalized(&[3.0, 4.0]).unwrap_or_default();
        assert!((dot(&u, &u) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn quantized_cosine_is_close_to_the_exact_one() {
        let a = normalized(
            &(0..384)
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        let b = normalized(
            &(0..384)
                .map(|i| ((i * 5) % 11) as f32 - 4.5)
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        let (qa, qb) = (quantize(&a), quantize(&b));
        assert_eq!(qa.len(), 388);
        let approx = 1.0 - UnitDotI8.eval(&qa, &qb);
        assert!(
            (approx - dot(&a, &b)).abs() < 0.01,
            "{approx} vs {}",
            dot(&a, &b)
        );
        assert!(UnitDotI8.eval(&qa, &qa) < 0.01, "a point is next to itself");
        let zero = quantize(&[0.0; 8]);
        assert_eq!(
            UnitDotI8.eval(&zero, &zero),
            1.0,
            "zero vectors are unrelated"
        );
        let odd: Vec<i8> = (0..37).map(|i| (i % 5) as i8 - 2).collect();
        let naive: i32 = odd.iter().map(|x| i32::from(*x) * i32::from(*x)).sum();
        assert_eq!(dot_i8(&odd, &odd), naive);
    }

    #[test]
    fn segment_removal_keeps_positions_consistent() {
        let mut v = Vectors::default();
        for s in 0..5 {
            assert!(v.insert(s, &[1.0, 0.0]));
        }
        assert!(!v.insert(7, &[1.0, 0.0, 0.0]), "other width refused");
        v.remove(1);
        v.remove(4);
        let mut seg = v.segment().to_vec();
        seg.sort_unstable();
        assert_eq!(seg, [0, 2, 3]);
        v.remove(0);
        assert_eq!(v.segment().len(), 2);
        assert!(v.insert(1, &[0.0, 1.0]));
        let top = v.exact(&[0.0, 1.0], v.segment().to_vec().into_iter(), 1);
        assert_eq!(top.into_sorted()[0].0, 1);
    }
}
