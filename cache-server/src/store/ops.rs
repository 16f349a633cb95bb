//! The item commands on one locked shard, with memcached's semantics (`do_store_item`,
//! `do_add_delta`, the meta get/delete paths): get, store, delete, incr/decr, touch, dump.

use super::item::{
    self, decimal, parse_counter, Layout, NewItem, ACCESSED, BINARY_KEY, FETCHED, STALE, WIN_SENT,
};
use super::segments::Segments;
use super::shard::{Ctx, Found, Gone, Shard};
use super::table::KeyHash;
use super::types::{
    ArithOpts, ArithOutcome, DeleteOpts, DeleteOutcome, GetFlags, GetOpts, ItemView, StoreMode,
    StoreOutcome, StoreReq,
};

/// Longest key the header can describe (the protocol limits keys to 250 bytes).
pub(super) const MAX_KEY_LEN: usize = 250;

fn view(segs: &Segments, layout: Layout, seg: u32, off: u32) -> ItemView<'_> {
    let item = segs.item(seg, off);
    let h = layout.read(item);
    ItemView {
        key: h.key(item),
        value: h.value(item),
        flags: h.flags,
        cas: h.cas,
        exptime: h.exptime,
        atime: h.atime,
        fetched: h.has(FETCHED),
        stale: h.has(STALE),
        win_sent: h.has(WIN_SENT),
        binary_key: h.has(BINARY_KEY),
    }
}

impl Shard {
    fn next_cas(&self, cx: &Ctx<'_>, explicit: Option<u64>) -> u64 {
        if !cx.layout().use_cas() {
            return 0;
        }
        explicit.unwrap_or_else(|| cx.ns.core.next_cas())
    }

    /// `-I` limits the value length (as the protocol layer does); the whole item must also
    /// fit in the namespace budget.
    fn too_large(&self, cx: &Ctx<'_>, vlen: usize, size: usize) -> bool {
        vlen > cx.ns.core.item_size_max || size as u64 > cx.ns.core.budget()
    }

    /// Set an item's exptime in place, keeping the segment's expiry lower bound right.
    fn set_exptime(&mut self, seg: u32, off: u32, exptime: u32) {
        item::set_exptime(self.segs.item_mut(seg, off), exptime);
        if exptime != 0 {
            let s = self.segs.get_mut(seg);
            s.min_exp = s.min_exp.min(exptime);
        }
    }

    /// Mark an item read or updated now: it earns a second chance at eviction.
    fn bump(&mut self, cx: &Ctx<'_>, f: &Found, extra: u8) {
        let buf = self.segs.item_mut(f.seg, f.off);
        item::set_bits(buf, item::bits(buf) | ACCESSED | extra);
        item::set_atime(buf, cx.now);
    }

    /// Write a brand-new item (reserve + write + index). `None` when out of memory.
    fn put(&mut self, cx: &Ctx<'_>, kh: KeyHash, new: &NewItem<'_>) -> Option<(u32, u32)> {
        let vlen = new.value.iter().map(|p| p.len()).sum();
        let size = cx.layout().item_size(new.key.len(), vlen, new.flags);
        let (seg, off) = self.reserve(cx, size)?;
        self.write_item(cx, seg, off, new);
        self.link(cx, new.key, kh, seg, off);
        self.stats.total_items += 1;
        Some((seg, off))
    }

    fn remove_key(&mut self, cx: &Ctx<'_>, key: &[u8], kh: KeyHash) {
        if let Some((slot, h)) = self.find(cx.layout(), key, kh) {
            self.unlink(cx, slot, &h, Gone::Deleted);
        }
    }

    pub(super) fn get<R>(
        &mut self,
        cx: &Ctx<'_>,
        key: &[u8],
        kh: KeyHash,
        opts: &GetOpts,
        f: impl FnOnce(Option<(ItemView<'_>, GetFlags)>) -> R,
    ) -> R {
        let Some(found) = self.lookup(cx, key, kh) else {
            let Some(ttl) = opts.vivify else {
                return f(None);
            };
            if key.len() > MAX_KEY_LEN {
                return f(None);
            }
            let bits = WIN_SENT | if opts.bump { FETCHED | ACCESSED } else { 0 };
            let new = NewItem {
                bits,
                exptime: ttl,
                atime: cx.now,
                cas: self.next_cas(cx, None),
                flags: 0,
                key,
                value: &[],
            };
            return match self.put(cx, kh, &new) {
                Some((seg, off)) => {
                    let flags = GetFlags {
                        won: true,
                        ..GetFlags::default()
                    };
                    f(Some((view(&self.segs, cx.layout(), seg, off), flags)))
                }
                None => f(None),
            };
        };
        let h = found.h;
        let mut flags = GetFlags {
            won: false,
            stale: h.has(STALE),
            win_sent: h.has(WIN_SENT),
            hit_before: h.has(FETCHED),
            last_access: cx.now.saturating_sub(h.atime),
        };
        let mut exptime = h.exptime;
        if let Some(t) = opts.touch {
            exptime = t;
            self.set_exptime(found.seg, found.off, t);
        }
        if let Some(below) = opts.recache_below {
            if !flags.win_sent && exptime != 0 && exptime < cx.now.saturating_add(below) {
                flags.won = true;
            }
        }
        if flags.stale && !flags.win_sent {
            flags.won = true;
        }
        let extra = if flags.won { WIN_SENT } else { 0 };
        if opts.bump {
            self.bump(cx, &found, FETCHED | extra);
        } else if extra != 0 {
            let buf = self.segs.item_mut(found.seg, found.off);
            item::set_bits(buf, item::bits(buf) | extra);
        }
        f(Some((
            view(&self.segs, cx.layout(), found.seg, found.off),
            flags,
        )))
    }

    pub(super) fn store(&mut self, cx: &Ctx<'_>, req: &StoreReq<'_>, kh: KeyHash) -> StoreOutcome {
        let layout = cx.layout();
        let size = layout.item_size(req.key.len(), req.value.len(), req.flags);
        if req.key.len() > MAX_KEY_LEN || self.too_large(cx, req.value.len(), size) {
            // Like memcached: a failed set must not leave the old value behind.
            if req.mode == StoreMode::Set {
                self.remove_key(cx, req.key, kh);
            }
            return StoreOutcome::TooLarge;
        }
        let existing = self.lookup(cx, req.key, kh);
        let mut bits = if req.binary_key { BINARY_KEY } else { 0 };
        let mut exptime = req.exptime;
        let mut flags = req.flags;
        let mut combined = false;
        let cas_mode =
            req.compare_cas.is_some() && matches!(req.mode, StoreMode::Set | StoreMode::Replace);
        if cas_mode {
            let Some(old) = existing else {
                return StoreOutcome::NotFound;
            };
            let want = req.compare_cas.unwrap_or(0);
            if want != 0 && want == old.h.cas {
                // match
            } else if req.invalidate && want != 0 && want < old.h.cas {
                // An older writer may still store, but the value is marked stale and keeps
                // the current TTL and win state.
                exptime = old.h.exptime;
                bits |= STALE | (old.h.bits & WIN_SENT);
            } else {
                return StoreOutcome::Exists;
            }
        } else {
            match (req.mode, existing) {
                (StoreMode::Add, Some(old)) => {
                    self.bump(cx, &old, 0);
                    return StoreOutcome::NotStored;
                }
                (StoreMode::Replace, None) => return StoreOutcome::NotStored,
                (StoreMode::Append | StoreMode::Prepend, None) => match req.vivify {
                    Some(ttl) => exptime = ttl,
                    None => return StoreOutcome::NotStored,
                },
                (StoreMode::Append | StoreMode::Prepend, Some(old)) => {
                    if let Some(want) = req.compare_cas {
                        if want != 0 && want != old.h.cas {
                            return StoreOutcome::Exists;
                        }
                    }
                    let vlen = old.h.vlen as usize + req.value.len();
                    let total = layout.item_size(req.key.len(), vlen, old.h.flags);
                    if self.too_large(cx, vlen, total) {
                        return StoreOutcome::NotStored;
                    }
                    flags = old.h.flags;
                    exptime = old.h.exptime;
                    let old_value = old.h.value(self.segs.item(old.seg, old.off));
                    let mut buf = std::mem::take(&mut self.scratch);
                    buf.clear();
                    if req.mode == StoreMode::Append {
                        buf.extend_from_slice(old_value);
                        buf.extend_from_slice(req.value);
                    } else {
                        buf.extend_from_slice(req.value);
                        buf.extend_from_slice(old_value);
                    }
                    self.scratch = buf;
                    combined = true;
                }
                _ => {}
            }
        }
        let cas = self.next_cas(cx, req.new_cas);
        if exptime != 0 && exptime <= cx.now {
            // Stored and immediately expired: nothing visible remains.
            self.remove_key(cx, req.key, kh);
            self.stats.total_items += 1;
            return StoreOutcome::Stored { cas };
        }
        let scratch = std::mem::take(&mut self.scratch);
        let value = if combined {
            scratch.as_slice()
        } else {
            req.value
        };
        let new = NewItem {
            bits,
            exptime,
            atime: cx.now,
            cas,
            flags,
            key: req.key,
            value: &[value],
        };
        let stored = self.put(cx, kh, &new);
        self.scratch = scratch;
        match stored {
            Some(_) => StoreOutcome::Stored { cas },
            None => {
                if req.mode == StoreMode::Set {
                    self.remove_key(cx, req.key, kh);
                }
                StoreOutcome::OutOfMemory
            }
        }
    }

    pub(super) fn delete(
        &mut self,
        cx: &Ctx<'_>,
        key: &[u8],
        kh: KeyHash,
        opts: &DeleteOpts,
    ) -> DeleteOutcome {
        let Some(mut found) = self.lookup(cx, key, kh) else {
            return DeleteOutcome::NotFound;
        };
        if let Some(want) = opts.compare_cas {
            if want != found.h.cas {
                return DeleteOutcome::Exists;
            }
        }
        if opts.drop_value {
            // memcached stores a fresh empty item with zero flags, keeping the cas unless a
            // new one is given.
            let exptime = opts.invalidate_ttl.unwrap_or(0);
            let cas = if cx.layout().use_cas() {
                opts.new_cas.unwrap_or(found.h.cas)
            } else {
                0
            };
            let new = NewItem {
                bits: 0,
                exptime,
                atime: cx.now,
                cas,
                flags: 0,
                key,
                value: &[],
            };
            if (exptime != 0 && exptime <= cx.now) || self.put(cx, kh, &new).is_none() {
                self.remove_key(cx, key, kh);
                return DeleteOutcome::Deleted;
            }
            if !opts.invalidate {
                return DeleteOutcome::Deleted;
            }
            match self.lookup(cx, key, kh) {
                Some(f) => found = f,
                None => return DeleteOutcome::Deleted,
            }
        }
        if opts.invalidate {
            // Keep the item but mark it stale with a new cas; clearing WIN_SENT lets the next
            // fetcher win the recache.
            let cas = self.next_cas(cx, opts.new_cas);
            if let Some(t) = opts.invalidate_ttl {
                self.set_exptime(found.seg, found.off, t);
            }
            let layout = cx.layout();
            let buf = self.segs.item_mut(found.seg, found.off);
            item::set_bits(buf, (item::bits(buf) | STALE) & !WIN_SENT);
            layout.set_cas(buf, cas);
            return DeleteOutcome::Deleted;
        }
        self.unlink(cx, found.slot, &found.h, Gone::Deleted);
        DeleteOutcome::Deleted
    }

    pub(super) fn arith(
        &mut self,
        cx: &Ctx<'_>,
        key: &[u8],
        kh: KeyHash,
        opts: &ArithOpts,
    ) -> ArithOutcome {
        let Some(found) = self.lookup(cx, key, kh) else {
            let Some((initial, ttl)) = opts.vivify else {
                return ArithOutcome::NotFound;
            };
            if key.len() > MAX_KEY_LEN {
                return ArithOutcome::NotFound;
            }
            let exptime = opts.touch.unwrap_or(ttl);
            let cas = self.next_cas(cx, opts.new_cas);
            let (digits, n) = decimal(initial);
            let new = NewItem {
                bits: 0,
                exptime,
                atime: cx.now,
                cas,
                flags: 0,
                key,
                value: &[&digits[..n]],
            };
            let expired = exptime != 0 && exptime <= cx.now;
            if !expired && self.put(cx, kh, &new).is_none() {
                return ArithOutcome::OutOfMemory;
            }
            return ArithOutcome::Value {
                value: initial,
                cas,
                exptime,
            };
        };
        if let Some(want) = opts.compare_cas {
            if want != 0 && want != found.h.cas {
                return ArithOutcome::Exists;
            }
        }
        let layout = cx.layout();
        let old_len = found.h.vlen as usize;
        let current = {
            let item = self.segs.item(found.seg, found.off);
            parse_counter(found.h.value(item))
        };
        let Some(current) = current else {
            return ArithOutcome::NonNumeric;
        };
        let value = if opts.incr {
            current.wrapping_add(opts.delta)
        } else {
            current.saturating_sub(opts.delta)
        };
        let (digits, n) = decimal(value);
        let cas = self.next_cas(cx, opts.new_cas);
        let exptime = opts.touch.unwrap_or(found.h.exptime);
        if n <= old_len {
            // memcached rewrites in place, padding with spaces: decr "10" by 1 gives "9 ".
            let item = self.segs.item_mut(found.seg, found.off);
            let at = found.h.body as usize + found.h.klen as usize;
            item[at..at + n].copy_from_slice(&digits[..n]);
            item[at + n..at + old_len].fill(b' ');
            layout.set_cas(item, cas);
            self.bump(cx, &found, 0);
            if opts.touch.is_some() {
                self.set_exptime(found.seg, found.off, exptime);
            }
        } else {
            let new = NewItem {
                bits: 0,
                exptime,
                atime: cx.now,
                cas,
                flags: found.h.flags,
                key,
                value: &[&digits[..n]],
            };
            if self.put(cx, kh, &new).is_none() {
                return ArithOutcome::OutOfMemory;
            }
        }
        ArithOutcome::Value {
            value,
            cas,
            exptime,
        }
    }

    pub(super) fn touch(&mut self, cx: &Ctx<'_>, key: &[u8], kh: KeyHash, exptime: u32) -> bool {
        let Some(found) = self.lookup(cx, key, kh) else {
            return false;
        };
        self.set_exptime(found.seg, found.off, exptime);
        self.bump(cx, &found, FETCHED);
        true
    }

    /// Call `f(key, value length, exptime)` for up to `limit` valid items, oldest first;
    /// returns how many were reported.
    pub(super) fn dump(
        &self,
        cx: &Ctx<'_>,
        limit: usize,
        f: &mut impl FnMut(&[u8], usize, u32),
    ) -> usize {
        let layout = cx.layout();
        let mut n = 0;
        for id in self.segs.ids() {
            let seg = self.segs.get(id);
            let mut off = 0;
            while off < seg.write as usize {
                let h = layout.read(&seg.data[off..]);
                if !h.has(item::DEAD) && h.liveness(cx.now, cx.flush_at) == item::Live::Yes {
                    if n == limit {
                        return n;
                    }
                    f(h.key(&seg.data[off..]), h.vlen as usize, h.exptime);
                    n += 1;
                }
                off += h.size();
            }
        }
        n
    }
}
