//! Compact key index of one shard: a bucketed cuckoo hash table of 8-byte entries
//! (tag | segment id | offset). Each key has two candidate 64-byte buckets of 8 slots, so a
//! lookup touches at most two cache lines even at the ~97% load the table runs at.

const TAG_BITS: u32 = 22;
const SEG_BITS: u32 = 22;
const OFF_BITS: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const SEG_MASK: u64 = (1 << SEG_BITS) - 1;
const OFF_MASK: u64 = (1 << OFF_BITS) - 1;

/// Segment ids must stay below this (per shard).
pub(super) const MAX_SEGMENTS: u32 = 1 << SEG_BITS;
/// Offsets inside a segment must stay below this, which caps regular segments at 1 MiB.
pub(super) const MAX_OFFSET: usize = 1 << OFF_BITS;

const SLOTS: usize = 8;
const INITIAL_BUCKETS: usize = 4;
/// Grow once the table would pass this load (per mille); 8-way cuckoo buckets fill to ~99%.
const MAX_LOAD_PERMILLE: usize = 970;
/// Displacements tried before an insert gives up and grows the table.
const MAX_KICKS: usize = 500;

/// The parts of a key's hash the table uses: a non-zero tag stored in the entry and the bits
/// that pick the primary bucket.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyHash {
    pub tag: u32,
    pub idx: u32,
}

impl KeyHash {
    /// Split a 64-bit hash: low 22 bits tag, bits 22..32 for the shard, high 32 for the bucket.
    pub(super) fn new(h: u64) -> Self {
        let tag = (h & TAG_MASK) as u32;
        KeyHash {
            tag: tag.max(1),
            idx: (h >> 32) as u32,
        }
    }

    /// Bits that pick the shard (independent of tag and bucket bits).
    pub(super) fn shard_bits(h: u64) -> u32 {
        ((h >> TAG_BITS) & 0x3ff) as u32
    }
}

/// Pack an entry; the tag is never zero, so a zero word means an empty slot.
pub(super) fn pack(tag: u32, seg: u32, off: u32) -> u64 {
    debug_assert!(tag != 0 && u64::from(tag) <= TAG_MASK);
    debug_assert!(seg < MAX_SEGMENTS && (off as usize) < MAX_OFFSET);
    (u64::from(tag) << (SEG_BITS + OFF_BITS)) | (u64::from(seg) << OFF_BITS) | u64::from(off)
}

pub(super) fn tag_of(e: u64) -> u32 {
    (e >> (SEG_BITS + OFF_BITS)) as u32
}

pub(super) fn seg_of(e: u64) -> u32 {
    ((e >> OFF_BITS) & SEG_MASK) as u32
}

pub(super) fn off_of(e: u64) -> u32 {
    (e & OFF_MASK) as u32
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket([u64; SLOTS]);

const EMPTY: Bucket = Bucket([0; SLOTS]);

/// A position in the table, valid until the next insert.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    bucket: u32,
    slot: u8,
}

pub(super) struct Table {
    buckets: Vec<Bucket>,
    len: usize,
    rng: u64,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            buckets: vec![EMPTY; INITIAL_BUCKETS],
            len: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of heap the table uses.
    pub(super) fn memory(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    pub(super) fn clear(&mut self) {
        *self = Table {
            rng: self.rng,
            ..Table::new()
        };
    }

    fn n(&self) -> usize {
        self.buckets.len()
    }

    fn primary(&self, idx: u32) -> usize {
        ((u64::from(idx) * self.n() as u64) >> 32) as usize
    }

    /// The other bucket of an entry with `tag` sitting in bucket `b`: `g - b mod n` is its own
    /// inverse, so it works from either side and for any table size.
    fn alt(&self, b: usize, tag: u32) -> usize {
        let mixed = (u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32;
        let g = ((u64::from(mixed) * self.n() as u64) >> 32) as usize;
        if g >= b {
            g - b
        } else {
            g + self.n() - b
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: only spreads displacement choices, quality barely matters.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Find the entry with this key: `eq` is called on every tag match to compare full keys.
    pub(super) fn find(&self, kh: KeyHash, mut eq: impl FnMut(u64) -> bool) -> Option<Slot> {
        let b1 = self.primary(kh.idx);
        let b2 = self.alt(b1, kh.tag);
        for b in [b1, b2] {
            for (s, &e) in self.buckets[b].0.iter().enumerate() {
                if e != 0 && tag_of(e) == kh.tag && eq(e) {
                    return Some(Slot {
                        bucket: b as u32,
                        slot: s as u8,
                    });
                }
            }
            if b1 == b2 {
                break;
            }
        }
        None
    }

    /// Find the slot holding exactly `entry`.
    pub(super) fn find_entry(&self, kh: KeyHash, entry: u64) -> Option<Slot> {
        self.find(kh, |e| e == entry)
    }

    pub(super) fn get(&self, slot: Slot) -> u64 {
        self.buckets[slot.bucket as usize].0[slot.slot as usize]
    }

    /// Overwrite a slot with another entry of the same key (same tag, same buckets).
    pub(super) fn set(&mut self, slot: Slot, entry: u64) {
        debug_assert_eq!(tag_of(entry), tag_of(self.get(slot)));
        self.buckets[slot.bucket as usize].0[slot.slot as usize] = entry;
    }

    pub(super) fn remove(&mut self, slot: Slot) {
        let e = &mut self.buckets[slot.bucket as usize].0[slot.slot as usize];
        debug_assert!(*e != 0);
        *e = 0;
        self.len -= 1;
    }

    /// Every entry, in table order.
    pub(super) fn entries(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.0.iter().copied())
            .filter(|&e| e != 0)
    }

    /// Insert a new entry (the key must not be present). `rehash` recomputes the hash of an
    /// existing entry from its key, needed when the table grows.
    pub(super) fn insert(
        &mut self,
        kh: KeyHash,
        entry: u64,
        mut rehash: impl FnMut(u64) -> KeyHash,
    ) {
        if (self.len + 1) * 1000 > self.n() * SLOTS * MAX_LOAD_PERMILLE {
            self.grow(&mut rehash, None);
        }
        match self.place(kh, entry) {
            Ok(()) => self.len += 1,
            Err(homeless) => self.grow(&mut rehash, Some(homeless)),
        }
    }

    fn put_empty(&mut self, b: usize, entry: u64) -> bool {
        for e in self.buckets[b].0.iter_mut() {
            if *e == 0 {
                *e = entry;
                return true;
            }
        }
        false
    }

    /// Place `entry`, displacing others along a random walk; on failure the table still holds
    /// everything except the returned (possibly different) entry.
    fn place(&mut self, kh: KeyHash, entry: u64) -> Result<(), u64> {
        let b1 = self.primary(kh.idx);
        let b2 = self.alt(b1, kh.tag);
        if self.put_empty(b1, entry) || self.put_empty(b2, entry) {
            return Ok(());
        }
        let mut cur = entry;
        let mut b = if self.next_rand() & 1 == 0 { b1 } else { b2 };
        for _ in 0..MAX_KICKS {
            let s = (self.next_rand() % SLOTS as u64) as usize;
            std::mem::swap(&mut cur, &mut self.buckets[b].0[s]);
            b = self.alt(b, tag_of(cur));
            if self.put_empty(b, cur) {
                return Ok(());
            }
        }
        Err(cur)
    }

    /// Double the bucket count and re-place every entry (plus `extra`, which is not counted
    /// in `len` yet).
    fn grow(&mut self, rehash: &mut impl FnMut(u64) -> KeyHash, extra: Option<u64>) {
        let mut n = self.n() * 2;
        'retry: loop {
            let mut next = Table {
                buckets: vec![EMPTY; n],
                len: 0,
                rng: self.rng,
            };
            for e in self.entries().chain(extra) {
                if next.place(rehash(e), e).is_err() {
                    n *= 2;
                    continue 'retry;
                }
                next.len += 1;
            }
            *self = next;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mix(k: u64) -> u64 {
        let mut x = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    #[test]
    fn entry_packing_round_trips() {
        let e = pack(0x3f_ffff, MAX_SEGMENTS - 1, (MAX_OFFSET - 1) as u32);
        assert_eq!(tag_of(e), 0x3f_ffff);
        assert_eq!(seg_of(e), MAX_SEGMENTS - 1);
        assert_eq!(off_of(e) as usize, MAX_OFFSET - 1);
        assert_eq!(KeyHash::new(1 << 40).tag, 1, "a zero tag is bumped to 1");
    }

    #[test]
    fn alt_is_an_involution_for_odd_sizes() {
        let mut t = Table::new();
        t.buckets = vec![EMPTY; 37];
        for b in 0..37 {
            for tag in [1u32, 5, 77, 0x3f_ffff] {
                assert_eq!(t.alt(t.alt(b, tag), tag), b);
            }
        }
    }

    #[test]
    fn insert_find_remove_many_at_high_load() {
        // Key k is stored as entry (tag, seg = k / 2^20, off = k % 2^20).
        let mut t = Table::new();
        let hash_of = |k: u64| KeyHash::new(mix(k));
        let entry_of = |k: u64| pack(hash_of(k).tag, (k >> 20) as u32, (k & 0xf_ffff) as u32);
        let key_of = |e: u64| (u64::from(seg_of(e)) << 20) | u64::from(off_of(e));
        let n = 200_000u64;
        for k in 0..n {
            t.insert(hash_of(k), entry_of(k), |e| hash_of(key_of(e)));
        }
        assert_eq!(t.len(), n as usize);
        let load = t.len() as f64 / (t.n() * SLOTS) as f64;
        assert!(load > 0.45, "load {load}");
        for k in 0..n {
            let s = t.find(hash_of(k), |e| key_of(e) == k).expect("present");
            assert_eq!(t.get(s), entry_of(k));
        }
        assert!(t.find(hash_of(n + 1), |e| key_of(e) == n + 1).is_none());
        for k in (0..n).step_by(2) {
            let s = t.find_entry(hash_of(k), entry_of(k)).unwrap();
            t.remove(s);
        }
        assert_eq!(t.len(), (n / 2) as usize);
        let mut seen = HashMap::new();
        for e in t.entries() {
            *seen.entry(key_of(e)).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), (n / 2) as usize);
        assert!(seen.iter().all(|(k, c)| k % 2 == 1 && *c == 1));
    }

    #[test]
    fn fills_to_the_max_load_before_growing() {
        let mut t = Table::new();
        let hash_of = |k: u64| KeyHash::new(mix(k));
        let key_of = |e: u64| (u64::from(seg_of(e)) << 20) | u64::from(off_of(e));
        let mut best = 0.0f64;
        for k in 0..100_000u64 {
            let before = t.n();
            t.insert(hash_of(k), pack(hash_of(k).tag, 0, k as u32), |e| {
                hash_of(key_of(e))
            });
            if t.n() != before {
                best = best.max(k as f64 / (before * SLOTS) as f64);
            }
        }
        assert!(best > 0.95, "grew at load {best}");
    }
}
