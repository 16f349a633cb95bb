//! Background upkeep of one shard, in bounded steps: reclaim expired and flushed items from
//! segments that may hold some (per-segment lower bounds tell which), free segments with no
//! live item left, and compact mostly-dead segments so dead bytes stop counting against the
//! budget.

use super::item::{Live, DEAD};
use super::segments::NIL;
use super::shard::{Ctx, Gone, Shard};
use super::table::pack;

/// Segment bytes one maintenance call may scan per shard.
const SCAN_BYTES: usize = 8 << 20;
/// Compactions one maintenance call may do per shard.
const COMPACTIONS: usize = 4;
/// A regular segment whose live bytes are below 1/COMPACT_BELOW of it gets compacted.
const COMPACT_BELOW: usize = 2;

impl Shard {
    pub(super) fn maintain(&mut self, cx: &Ctx<'_>) {
        let flush_due = cx.flush_at != 0 && cx.flush_at <= cx.now;
        let mut scanned = 0;
        let mut compactions = 0;
        for id in self.segs.ids() {
            if !self.segs.exists(id) {
                continue;
            }
            let s = self.segs.get(id);
            let needs_scan = s.min_exp <= cx.now || (flush_due && s.min_atime <= cx.flush_at);
            if needs_scan && scanned < SCAN_BYTES {
                scanned += s.write as usize;
                self.reclaim(cx, id);
                if !self.segs.exists(id) {
                    continue;
                }
            }
            let s = self.segs.get(id);
            if s.live_items == 0 {
                // Including an emptied active segment: an idle shard should hold no memory.
                self.release_segment(cx, id);
                continue;
            }
            let mostly_dead = (s.live_bytes as usize) * COMPACT_BELOW < s.capacity();
            if id == self.segs.active || !mostly_dead {
                continue;
            }
            if !s.jumbo && compactions < COMPACTIONS {
                compactions += 1;
                self.compact(cx, id);
            }
        }
    }

    /// Remove the expired and flushed items of one segment; frees it if nothing is left.
    fn reclaim(&mut self, cx: &Ctx<'_>, id: u32) {
        let layout = cx.layout();
        let write = self.segs.get(id).write as usize;
        let (mut min_exp, mut min_atime) = (u32::MAX, cx.now);
        let mut off = 0;
        while off < write {
            let h = layout.read(&self.segs.get(id).data[off..]);
            if !h.has(DEAD) {
                match h.liveness(cx.now, cx.flush_at) {
                    Live::Yes => {
                        if h.exptime != 0 {
                            min_exp = min_exp.min(h.exptime);
                        }
                        min_atime = min_atime.min(h.atime);
                    }
                    why => {
                        self.drop_entry(cx, id, off as u32, &h);
                        let s = self.segs.get_mut(id);
                        s.sub_live(h.size());
                        super::item::set_bits(&mut s.data[off..], h.bits | DEAD);
                        self.count(Gone::Invalid(why), h.bits);
                        self.stats.reclaimed += 1;
                    }
                }
            }
            off += h.size();
        }
        let s = self.segs.get_mut(id);
        s.min_exp = min_exp;
        s.min_atime = min_atime;
        if s.live_items == 0 {
            self.release_segment(cx, id);
        }
    }

    /// Move the live items of a mostly-dead segment to the active segment and free it.
    fn compact(&mut self, cx: &Ctx<'_>, id: u32) {
        let layout = cx.layout();
        let mut moved = std::mem::take(&mut self.scratch);
        moved.clear();
        let write = self.segs.get(id).write as usize;
        let mut off = 0;
        while off < write {
            let h = layout.read(&self.segs.get(id).data[off..]);
            let size = h.size();
            if !h.has(DEAD) {
                self.drop_entry(cx, id, off as u32, &h);
                match h.liveness(cx.now, cx.flush_at) {
                    Live::Yes => moved.extend_from_slice(&self.segs.get(id).data[off..off + size]),
                    why => {
                        self.count(Gone::Invalid(why), h.bits);
                        self.stats.reclaimed += 1;
                    }
                }
            }
            off += size;
        }
        // Free first so the copies can use the released budget.
        self.release_segment(cx, id);
        self.stats.compactions += 1;
        let mut at = 0;
        while at < moved.len() {
            let h = layout.read(&moved[at..]);
            let size = h.size();
            let bytes = &moved[at..at + size];
            match self.reserve(cx, size) {
                Some((seg, off)) => {
                    self.segs.item_mut(seg, off)[..size].copy_from_slice(bytes);
                    self.segs.get_mut(seg).add_live(size, h.exptime, h.atime);
                    let kh = cx.hash(h.key(bytes));
                    let (segs, ns) = (&self.segs, cx.ns);
                    self.table.insert(kh, pack(kh.tag, seg, off), |e| {
                        let item = segs.item(super::table::seg_of(e), super::table::off_of(e));
                        super::table::KeyHash::new(ns.core.hash(layout.read(item).key(item)))
                    });
                }
                None => self.count(Gone::Evicted, h.bits),
            }
            at += size;
        }
        self.scratch = moved;
        debug_assert!(self.segs.active == NIL || self.segs.exists(self.segs.active));
    }
}
