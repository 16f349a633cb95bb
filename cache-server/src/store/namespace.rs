//! One app's slice of the cache: its own byte budget, hash seed and shards. Keeps the budget
//! accounting (segments are charged here) and routes each key to its shard.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use super::item::Layout;
use super::shard::{Ctx, Shard};
use super::table::KeyHash;
use super::types::{
    ArithOpts, ArithOutcome, DeleteOpts, DeleteOutcome, GetFlags, GetOpts, ItemView,
    NamespaceStats, StoreOutcome, StoreReq,
};

/// Smallest regular segment for a namespace whose budget allows it.
const MIN_SEGMENT: usize = 4 << 10;
/// A namespace gets one shard per this much budget (up to the configured count), so a tiny
/// namespace is not spread over shards that each hold one or two segments.
const BUDGET_PER_SHARD: u64 = 256 << 10;
/// Aim for at least this many segments per shard so eviction is not all-or-nothing.
const SEGMENTS_PER_SHARD: u64 = 8;

/// Store-wide settings a namespace is built with.
pub(super) struct Params {
    pub shards: usize,
    pub max_segment: usize,
    pub use_cas: bool,
    pub evict: bool,
    pub item_size_max: usize,
    pub cas: Arc<AtomicU64>,
}

/// Shared state the shards of one namespace use: budget accounting, hashing, settings.
pub(super) struct Core {
    budget: AtomicU64,
    used: AtomicU64,
    seg_size: AtomicUsize,
    max_segment: usize,
    /// Segment bytes per shard, so a starving shard knows whom to take memory from.
    pub shard_bytes: Box<[AtomicU64]>,
    pub layout: Layout,
    hasher: foldhash::quality::RandomState,
    pub evict: bool,
    pub item_size_max: usize,
    cas: Arc<AtomicU64>,
    /// Pending or past delayed flush point (relative seconds), 0 = none.
    pub flush_at: AtomicU32,
    dropped: AtomicBool,
}

impl Core {
    pub(super) fn budget(&self) -> u64 {
        self.budget.load(Relaxed)
    }

    pub(super) fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    pub(super) fn seg_size(&self) -> usize {
        self.seg_size.load(Relaxed)
    }

    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(super) fn next_cas(&self) -> u64 {
        self.cas.fetch_add(1, Relaxed) + 1
    }

    /// Charge `bytes` to the budget if they fit.
    pub(super) fn try_charge(&self, bytes: usize) -> bool {
        if self.dropped.load(Relaxed) {
            return false;
        }
        let budget = self.budget();
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                let next = used.checked_add(bytes as u64)?;
                (next <= budget).then_some(next)
            })
            .is_ok()
    }

    pub(super) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Relaxed);
    }
}

fn segment_size(budget: u64, shards: usize, max_segment: usize) -> usize {
    let per = budget / (shards as u64 * SEGMENTS_PER_SHARD);
    let max = max_segment as u64;
    let size = per
        .clamp((MIN_SEGMENT as u64).min(max), max)
        .min(budget)
        .max(1);
    size as usize
}

/// A namespace: one app's items, budget and counters. Cheap to share (`Arc`).
pub struct Namespace {
    name: String,
    pub(super) core: Core,
    shards: Box<[Mutex<Shard>]>,
}

impl Namespace {
    pub(super) fn new(name: &str, budget: u64, p: &Params) -> Self {
        let by_budget = (budget / BUDGET_PER_SHARD).clamp(1, p.shards.max(1) as u64);
        let shards = by_budget as usize;
        Namespace {
            name: name.to_owned(),
            core: Core {
                budget: AtomicU64::new(budget),
                used: AtomicU64::new(0),
                seg_size: AtomicUsize::new(segment_size(budget, shards, p.max_segment)),
                max_segment: p.max_segment,
                shard_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
                layout: Layout::new(p.use_cas),
                hasher: foldhash::quality::RandomState::default(),
                evict: p.evict,
                item_size_max: p.item_size_max,
                cas: Arc::clone(&p.cas),
                flush_at: AtomicU32::new(0),
                dropped: AtomicBool::new(false),
            },
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
        }
    }

    /// The namespace's name ("" in anonymous mode).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its byte budget.
    pub fn budget(&self) -> u64 {
        self.core.budget()
    }

    /// Bytes of segments currently charged to the budget.
    pub fn memory_used(&self) -> u64 {
        self.core.used()
    }

    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub(super) fn shard(&self, i: usize) -> &Mutex<Shard> {
        &self.shards[i]
    }

    fn ctx(&self, me: usize, now: u32) -> Ctx<'_> {
        Ctx {
            ns: self,
            me,
            now,
            flush_at: self.core.flush_at.load(Relaxed),
        }
    }

    fn locate(&self, key: &[u8]) -> (KeyHash, usize) {
        let h = self.core.hash(key);
        let bits = KeyHash::shard_bits(h) as usize;
        (KeyHash::new(h), (bits * self.shards.len()) >> 10)
    }

    /// Look up `key`; `f` sees the item (after any touch/vivify) while the shard lock is held,
    /// so it must only copy bytes out. See [`GetOpts`] for touch, bump, vivify and recache.
    pub fn get<R>(
        &self,
        key: &[u8],
        now: u32,
        opts: &GetOpts,
        f: impl FnOnce(Option<(ItemView<'_>, GetFlags)>) -> R,
    ) -> R {
        let (kh, i) = self.locate(key);
        let cx = self.ctx(i, now);
        self.shards[i].lock().get(&cx, key, kh, opts, f)
    }

    /// Store an item (set/add/replace/append/prepend/cas and the meta variants).
    pub fn store(&self, req: &StoreReq<'_>, now: u32) -> StoreOutcome {
        let (kh, i) = self.locate(req.key);
        let cx = self.ctx(i, now);
        self.shards[i].lock().store(&cx, req, kh)
    }

    /// Delete, invalidate (mark stale) or empty an item.
    pub fn delete(&self, key: &[u8], opts: &DeleteOpts, now: u32) -> DeleteOutcome {
        let (kh, i) = self.locate(key);
        let cx = self.ctx(i, now);
        self.shards[i].lock().delete(&cx, key, kh, opts)
    }

    /// Increment or decrement a decimal value.
    pub fn arith(&self, key: &[u8], opts: &ArithOpts, now: u32) -> ArithOutcome {
        let (kh, i) = self.locate(key);
        let cx = self.ctx(i, now);
        self.shards[i].lock().arith(&cx, key, kh, opts)
    }

    /// Set a new exptime; false if the item does not exist.
    pub fn touch(&self, key: &[u8], exptime: u32, now: u32) -> bool {
        let (kh, i) = self.locate(key);
        let cx = self.ctx(i, now);
        self.shards[i].lock().touch(&cx, key, kh, exptime)
    }

    /// Invalidate every item last updated at or before `at` once `now >= at` (memcached's
    /// `flush_all [delay]`). An immediate flush (`at <= now`) frees all segments at once.
    pub fn flush(&self, at: u32, now: u32) {
        if at > now {
            self.core.flush_at.store(at, Relaxed);
            return;
        }
        self.core.flush_at.store(0, Relaxed);
        for i in 0..self.shards.len() {
            let cx = self.ctx(i, now);
            let mut shard = self.shards[i].lock();
            let dropped = shard.clear(&cx);
            shard.stats.flushed += dropped;
        }
    }

    /// Up to `limit` live items (0 = no limit) for `stats cachedump`: key, value length,
    /// exptime. `f` runs under a shard lock.
    pub fn dump(&self, limit: usize, now: u32, mut f: impl FnMut(&[u8], usize, u32)) {
        let mut left = if limit == 0 { usize::MAX } else { limit };
        for i in 0..self.shards.len() {
            if left == 0 {
                return;
            }
            let cx = self.ctx(i, now);
            left -= self.shards[i].lock().dump(&cx, left, &mut f);
        }
    }

    /// Counters and sizes, summed over shards.
    pub fn stats(&self) -> NamespaceStats {
        let mut st = NamespaceStats {
            budget: self.budget(),
            ..NamespaceStats::default()
        };
        for shard in self.shards.iter() {
            let s = shard.lock();
            let c = s.stats;
            st.curr_items += s.table.len() as u64;
            st.total_items += c.total_items;
            st.bytes += s.segs.live_bytes();
            st.segments_bytes += s.segs.bytes;
            st.evictions += c.evictions;
            st.evicted_unfetched += c.evicted_unfetched;
            st.expired_unfetched += c.expired_unfetched;
            st.reclaimed += c.reclaimed;
            st.expired += c.expired;
            st.flushed += c.flushed;
            st.segment_count += u64::from(s.segs.count);
            st.compactions += c.compactions;
            st.hash_bytes += s.table.memory() as u64;
        }
        st
    }

    /// Bounded upkeep: reclaim expired/flushed items, free dead segments, compact sparse ones.
    pub fn maintain(&self, now: u32) {
        for i in 0..self.shards.len() {
            let cx = self.ctx(i, now);
            self.shards[i].lock().maintain(&cx);
        }
    }

    /// Change the budget, evicting oldest segments until the namespace fits.
    pub(super) fn set_budget(&self, budget: u64, now: u32) {
        self.core.budget.store(budget, Relaxed);
        let seg = segment_size(budget, self.shards.len(), self.core.max_segment);
        self.core.seg_size.store(seg, Relaxed);
        while self.core.used() > budget {
            let mut progress = false;
            for i in 0..self.shards.len() {
                if self.core.used() <= budget {
                    break;
                }
                let cx = self.ctx(i, now);
                progress |= self.shards[i].lock().evict_oldest(&cx);
            }
            if !progress {
                break;
            }
        }
    }

    /// Free everything and refuse new items (the namespace was removed from the config).
    pub(super) fn close(&self) {
        self.core.dropped.store(true, Relaxed);
        for i in 0..self.shards.len() {
            let cx = self.ctx(i, 0);
            self.shards[i].lock().clear(&cx);
        }
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("budget", &self.budget())
            .field("used", &self.core.used())
            .finish()
    }
}
