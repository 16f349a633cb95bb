//! One shard of a namespace: its hash table and segments behind one mutex. This file holds
//! the invariants (every non-dead item has exactly one hash entry and vice versa), lookup,
//! space reservation and eviction; `ops.rs` builds the commands on top.

use super::item::{self, Header, Layout, Live, ACCESSED, DEAD, FETCHED};
use super::namespace::Namespace;
use super::segments::{Segments, NIL};
use super::table::{off_of, pack, seg_of, KeyHash, Slot, Table};

/// Items bigger than a segment's size divided by this get their own exactly-sized segment, so
/// the unusable tail of a regular segment stays under 1/8 of it.
const JUMBO_FRACTION: usize = 8;
/// Upper bound on reserve/evict rounds for one allocation (each round frees or allocates).
const MAX_ROUNDS: usize = 100_000;
/// Attempts to take memory from other (locked) shards before a shard with nothing of its
/// own to evict gives up.
const STEAL_RETRIES: usize = 64;

/// Per-shard counters, summed into `NamespaceStats`.
#[derive(Default, Clone, Copy)]
pub(super) struct Counters {
    pub total_items: u64,
    pub evictions: u64,
    pub evicted_unfetched: u64,
    pub expired_unfetched: u64,
    pub reclaimed: u64,
    pub expired: u64,
    pub flushed: u64,
    pub compactions: u64,
}

/// Why an item left the index (for the counters).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Gone {
    Deleted,
    Evicted,
    Invalid(Live),
}

/// What an operation needs besides the shard: the namespace, the shard's index and the clock.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub ns: &'a Namespace,
    pub me: usize,
    pub now: u32,
    pub flush_at: u32,
}

impl Ctx<'_> {
    pub(super) fn layout(&self) -> Layout {
        self.ns.core.layout
    }

    pub(super) fn hash(&self, key: &[u8]) -> KeyHash {
        KeyHash::new(self.ns.core.hash(key))
    }
}

/// A valid item found by key.
#[derive(Clone, Copy)]
pub(super) struct Found {
    pub slot: Slot,
    pub seg: u32,
    pub off: u32,
    pub h: Header,
}

pub(super) struct Shard {
    pub table: Table,
    pub segs: Segments,
    pub stats: Counters,
    /// Reused buffer for append/prepend values and compaction.
    pub scratch: Vec<u8>,
}

impl Shard {
    pub(super) fn new() -> Self {
        Shard {
            table: Table::new(),
            segs: Segments::new(),
            stats: Counters::default(),
            scratch: Vec::new(),
        }
    }

    /// The index entry of `key`, valid or not.
    pub(super) fn find(&self, layout: Layout, key: &[u8], kh: KeyHash) -> Option<(Slot, Header)> {
        let segs = &self.segs;
        let mut header = None;
        let slot = self.table.find(kh, |e| {
            let item = segs.item(seg_of(e), off_of(e));
            if usize::from(item[1]) != key.len() {
                return false;
            }
            let h = layout.read(item);
            let hit = h.key(item) == key;
            if hit {
                header = Some(h);
            }
            hit
        })?;
        Some((slot, header.expect("header of matched entry")))
    }

    /// The valid item stored under `key`; an expired or flushed one is removed on the way.
    pub(super) fn lookup(&mut self, cx: &Ctx<'_>, key: &[u8], kh: KeyHash) -> Option<Found> {
        let (slot, h) = self.find(cx.layout(), key, kh)?;
        let e = self.table.get(slot);
        let (seg, off) = (seg_of(e), off_of(e));
        match h.liveness(cx.now, cx.flush_at) {
            Live::Yes => Some(Found { slot, seg, off, h }),
            why => {
                self.unlink(cx, slot, &h, Gone::Invalid(why));
                None
            }
        }
    }

    /// Remove the entry at `slot` and mark its item dead; frees the segment if that was its
    /// last live item.
    pub(super) fn unlink(&mut self, cx: &Ctx<'_>, slot: Slot, h: &Header, why: Gone) {
        let e = self.table.get(slot);
        self.table.remove(slot);
        self.bury(cx, seg_of(e), off_of(e), h, why);
    }

    /// Mark the item dead in its segment (its entry is already gone or being replaced).
    fn bury(&mut self, cx: &Ctx<'_>, seg: u32, off: u32, h: &Header, why: Gone) {
        item::set_bits(self.segs.item_mut(seg, off), h.bits | DEAD);
        let s = self.segs.get_mut(seg);
        s.sub_live(h.size());
        let empty = s.live_items == 0;
        self.count(why, h.bits);
        if empty && seg != self.segs.active {
            self.release_segment(cx, seg);
        }
    }

    pub(super) fn count(&mut self, why: Gone, bits: u8) {
        let unfetched = bits & FETCHED == 0;
        let c = &mut self.stats;
        match why {
            Gone::Deleted => {}
            Gone::Evicted => {
                c.evictions += 1;
                c.evicted_unfetched += u64::from(unfetched);
            }
            Gone::Invalid(Live::Expired) => {
                c.expired += 1;
                c.expired_unfetched += u64::from(unfetched);
            }
            Gone::Invalid(_) => c.flushed += 1,
        }
    }

    /// Point `key`'s index entry at the freshly written item at (`seg`, `off`), burying the
    /// copy it replaces, if any. Called after `reserve`, which may have moved or evicted it.
    pub(super) fn link(&mut self, cx: &Ctx<'_>, key: &[u8], kh: KeyHash, seg: u32, off: u32) {
        let entry = pack(kh.tag, seg, off);
        match self.find(cx.layout(), key, kh) {
            Some((slot, old)) => {
                let e = self.table.get(slot);
                self.table.set(slot, entry);
                self.bury(cx, seg_of(e), off_of(e), &old, Gone::Deleted);
            }
            None => {
                let (segs, layout, ns) = (&self.segs, cx.layout(), cx.ns);
                self.table.insert(kh, entry, |e| {
                    let item = segs.item(seg_of(e), off_of(e));
                    KeyHash::new(ns.core.hash(layout.read(item).key(item)))
                });
            }
        }
    }

    /// Write a new item into reserved space and account it as live.
    pub(super) fn write_item(&mut self, cx: &Ctx<'_>, seg: u32, off: u32, new: &item::NewItem<'_>) {
        let layout = cx.layout();
        let vlen = new.value.iter().map(|p| p.len()).sum();
        let size = layout.item_size(new.key.len(), vlen, new.flags);
        layout.write(&mut self.segs.item_mut(seg, off)[..size], new);
        self.segs
            .get_mut(seg)
            .add_live(size, new.exptime, new.atime);
    }

    /// Reserve `size` bytes for a new item, evicting if the budget is used up. Returns the
    /// (segment, offset) to write at, or `None` when out of memory.
    pub(super) fn reserve(&mut self, cx: &Ctx<'_>, size: usize) -> Option<(u32, u32)> {
        let seg_size = cx.ns.core.seg_size();
        if size > seg_size / JUMBO_FRACTION {
            return self.reserve_jumbo(cx, size);
        }
        for _ in 0..MAX_ROUNDS {
            let a = self.segs.active;
            if a != NIL && self.segs.get(a).room() >= size {
                let s = self.segs.get_mut(a);
                let off = s.write;
                s.write += size as u32;
                return Some((a, off));
            }
            if cx.ns.core.try_charge(seg_size) {
                let id = self.new_segment(cx, seg_size, false)?;
                self.segs.active = id;
                continue;
            }
            if !self.make_room(cx, Some(size)) {
                return None;
            }
        }
        None
    }

    fn reserve_jumbo(&mut self, cx: &Ctx<'_>, size: usize) -> Option<(u32, u32)> {
        for _ in 0..MAX_ROUNDS {
            if cx.ns.core.try_charge(size) {
                let id = self.new_segment(cx, size, true)?;
                self.segs.get_mut(id).write = size as u32;
                return Some((id, 0));
            }
            if !self.make_room(cx, None) {
                return None;
            }
        }
        None
    }

    /// Add a segment whose bytes are already charged to the budget.
    fn new_segment(&mut self, cx: &Ctx<'_>, size: usize, jumbo: bool) -> Option<u32> {
        match self.segs.push_new(size, jumbo, cx.now) {
            Some(id) => {
                self.publish_bytes(cx);
                Some(id)
            }
            None => {
                cx.ns.core.release(size as u64);
                None
            }
        }
    }

    /// Free budget (or, for a regular item of `regular` bytes, turn the oldest segment into an
    /// active one with that much room). False when nothing can be evicted.
    fn make_room(&mut self, cx: &Ctx<'_>, regular: Option<usize>) -> bool {
        if !cx.ns.core.evict {
            return false;
        }
        // A shard far below its fair share takes memory from the biggest shard instead of
        // thrashing its own few segments.
        let fair = cx.ns.core.budget() / cx.ns.shard_count() as u64;
        if (self.segs.head == NIL || self.segs.bytes < fair / 2) && self.steal(cx) {
            return true;
        }
        let head = self.segs.head;
        if head == NIL {
            if cx.ns.core.used() == 0 {
                return false;
            }
            // Nothing of our own to evict: the memory sits in shards that are busy right now.
            // Their locks are held only briefly, so retry a little instead of failing.
            for _ in 0..STEAL_RETRIES {
                std::thread::yield_now();
                if self.steal(cx) {
                    return true;
                }
            }
            return false;
        }
        let s = self.segs.get(head);
        match regular {
            Some(need) if !s.jumbo && s.capacity() >= need => self.merge_evict(cx, head, need),
            _ => self.evict_segment(cx, head),
        }
        true
    }

    /// Evict the oldest segment of the shard holding the most memory (never blocks: we hold
    /// our own shard lock).
    fn steal(&mut self, cx: &Ctx<'_>) -> bool {
        let sizes = &cx.ns.core.shard_bytes;
        let mut order: Vec<usize> = (0..sizes.len()).filter(|&j| j != cx.me).collect();
        order.sort_by_key(|&j| {
            std::cmp::Reverse(sizes[j].load(std::sync::atomic::Ordering::Relaxed))
        });
        for &j in &order {
            if sizes[j].load(std::sync::atomic::Ordering::Relaxed) == 0 {
                break;
            }
            if let Some(mut other) = cx.ns.shard(j).try_lock() {
                let head = other.segs.head;
                if head != NIL {
                    other.evict_segment(&Ctx { me: j, ..*cx }, head);
                    return true;
                }
            }
        }
        false
    }

    /// Evict the oldest segment for budget shrinking; false if the shard has none.
    pub(super) fn evict_oldest(&mut self, cx: &Ctx<'_>) -> bool {
        let head = self.segs.head;
        if head == NIL {
            return false;
        }
        self.evict_segment(cx, head);
        true
    }

    /// Drop a whole segment, removing the index entries of its remaining items.
    pub(super) fn evict_segment(&mut self, cx: &Ctx<'_>, id: u32) {
        let layout = cx.layout();
        let write = self.segs.get(id).write as usize;
        let mut off = 0;
        while off < write {
            let h = layout.read(&self.segs.get(id).data[off..]);
            if !h.has(DEAD) {
                let why = match h.liveness(cx.now, cx.flush_at) {
                    Live::Yes => Gone::Evicted,
                    other => Gone::Invalid(other),
                };
                self.drop_entry(cx, id, off as u32, &h);
                self.count(why, h.bits);
            }
            off += h.size();
        }
        self.release_segment(cx, id);
    }

    /// Remove the index entry of the live item at (`id`, `off`) without touching the segment.
    pub(super) fn drop_entry(&mut self, cx: &Ctx<'_>, id: u32, off: u32, h: &Header) {
        let item = self.segs.item(id, off);
        let kh = cx.hash(h.key(item));
        let slot = self.table.find_entry(kh, pack(kh.tag, id, off));
        debug_assert!(slot.is_some(), "live item without an index entry");
        if let Some(slot) = slot {
            self.table.remove(slot);
        }
    }

    /// Segcache-style merge eviction: compact the oldest segment in place, keeping recently
    /// accessed items (clearing their accessed bit: one second chance) up to half the segment,
    /// evicting the rest, and make it the active segment with at least `need` bytes of room.
    fn merge_evict(&mut self, cx: &Ctx<'_>, id: u32, need: usize) {
        let layout = cx.layout();
        let (cap, write) = {
            let s = self.segs.get_mut(id);
            let r = (s.capacity(), s.write as usize);
            s.live_items = 0;
            s.live_bytes = 0;
            s.min_exp = u32::MAX;
            s.min_atime = cx.now;
            r
        };
        let keep_max = (cap / 2).min(cap - need);
        let (mut src, mut dst) = (0usize, 0usize);
        while src < write {
            let h = layout.read(&self.segs.get(id).data[src..]);
            let size = h.size();
            if !h.has(DEAD) {
                let live = h.liveness(cx.now, cx.flush_at);
                let kh = cx.hash(h.key(self.segs.item(id, src as u32)));
                let slot = self.table.find_entry(kh, pack(kh.tag, id, src as u32));
                debug_assert!(slot.is_some(), "live item without an index entry");
                if live == Live::Yes && h.has(ACCESSED) && dst + size <= keep_max {
                    let s = self.segs.get_mut(id);
                    s.data.copy_within(src..src + size, dst);
                    item::set_bits(&mut s.data[dst..], h.bits & !ACCESSED);
                    s.add_live(size, h.exptime, h.atime);
                    if let Some(slot) = slot {
                        self.table.set(slot, pack(kh.tag, id, dst as u32));
                    }
                    dst += size;
                } else {
                    if let Some(slot) = slot {
                        self.table.remove(slot);
                    }
                    let why = if live == Live::Yes {
                        Gone::Evicted
                    } else {
                        Gone::Invalid(live)
                    };
                    self.count(why, h.bits);
                }
            }
            src += size;
        }
        self.segs.get_mut(id).write = dst as u32;
        self.segs.move_to_back(id);
        self.segs.active = id;
    }

    /// Free a segment and return its bytes to the namespace budget.
    pub(super) fn release_segment(&mut self, cx: &Ctx<'_>, id: u32) {
        let cap = self.segs.free(id);
        cx.ns.core.release(cap as u64);
        self.publish_bytes(cx);
    }

    /// Drop everything (flush, namespace removal); returns the number of items dropped.
    pub(super) fn clear(&mut self, cx: &Ctx<'_>) -> u64 {
        let items = self.table.len() as u64;
        self.table.clear();
        let bytes = self.segs.clear();
        cx.ns.core.release(bytes);
        self.publish_bytes(cx);
        items
    }

    fn publish_bytes(&self, cx: &Ctx<'_>) {
        cx.ns.core.shard_bytes[cx.me].store(self.segs.bytes, std::sync::atomic::Ordering::Relaxed);
    }
}
