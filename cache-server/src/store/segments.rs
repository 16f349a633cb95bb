//! The segments of one shard: fixed-size append-only byte buffers (plus exactly-sized "jumbo"
//! ones for big items) kept in a FIFO by age, with per-segment live accounting so dead space
//! can be found without scanning.

use super::table::MAX_SEGMENTS;

/// No segment (list ends, no active segment).
pub(super) const NIL: u32 = u32::MAX;

pub(super) struct Segment {
    pub data: Box<[u8]>,
    /// Bytes written so far; items are parsed sequentially from 0 to here.
    pub write: u32,
    pub live_items: u32,
    pub live_bytes: u32,
    prev: u32,
    next: u32,
    /// Lower bound of the non-zero exptimes of live items (`u32::MAX`: none expire).
    pub min_exp: u32,
    /// Lower bound of the last-access times of live items (for delayed flushes).
    pub min_atime: u32,
    /// Holds one big item and is sized to it.
    pub jumbo: bool,
}

impl Segment {
    pub(super) fn capacity(&self) -> usize {
        self.data.len()
    }

    pub(super) fn room(&self) -> usize {
        self.data.len() - self.write as usize
    }

    /// Account a newly written or moved live item.
    pub(super) fn add_live(&mut self, size: usize, exptime: u32, atime: u32) {
        self.live_items += 1;
        self.live_bytes += size as u32;
        if exptime != 0 {
            self.min_exp = self.min_exp.min(exptime);
        }
        self.min_atime = self.min_atime.min(atime);
    }

    pub(super) fn sub_live(&mut self, size: usize) {
        self.live_items -= 1;
        self.live_bytes -= size as u32;
    }
}

/// All segments of a shard, indexed by id, linked oldest (head) to newest (tail).
pub(super) struct Segments {
    slots: Vec<Option<Segment>>,
    free_ids: Vec<u32>,
    pub head: u32,
    pub tail: u32,
    /// The regular segment new items are appended to.
    pub active: u32,
    pub count: u32,
    /// Sum of capacities: what this shard has charged to the namespace budget.
    pub bytes: u64,
}

impl Segments {
    pub(super) fn new() -> Self {
        Segments {
            slots: Vec::new(),
            free_ids: Vec::new(),
            head: NIL,
            tail: NIL,
            active: NIL,
            count: 0,
            bytes: 0,
        }
    }

    pub(super) fn exists(&self, id: u32) -> bool {
        self.slots.get(id as usize).is_some_and(|s| s.is_some())
    }

    pub(super) fn get(&self, id: u32) -> &Segment {
        self.slots[id as usize].as_ref().expect("live segment id")
    }

    pub(super) fn get_mut(&mut self, id: u32) -> &mut Segment {
        self.slots[id as usize].as_mut().expect("live segment id")
    }

    /// The bytes of the item at (`id`, `off`) to the end of its segment.
    pub(super) fn item(&self, id: u32, off: u32) -> &[u8] {
        &self.get(id).data[off as usize..]
    }

    pub(super) fn item_mut(&mut self, id: u32, off: u32) -> &mut [u8] {
        &mut self.get_mut(id).data[off as usize..]
    }

    pub(super) fn next_of(&self, id: u32) -> u32 {
        self.get(id).next
    }

    /// Add a zeroed segment of `capacity` bytes at the tail; `None` if the id space is used up.
    pub(super) fn push_new(&mut self, capacity: usize, jumbo: bool, now: u32) -> Option<u32> {
        let id = match self.free_ids.pop() {
            Some(id) => id,
            None if (self.slots.len() as u32) < MAX_SEGMENTS => {
                self.slots.push(None);
                self.slots.len() as u32 - 1
            }
            None => return None,
        };
        // calloc-backed zeroed memory: pages a segment never writes stay out of RSS.
        let data = vec![0u8; capacity].into_boxed_slice();
        self.slots[id as usize] = Some(Segment {
            data,
            write: 0,
            live_items: 0,
            live_bytes: 0,
            prev: NIL,
            next: NIL,
            min_exp: u32::MAX,
            min_atime: now,
            jumbo,
        });
        self.link_back(id);
        self.count += 1;
        self.bytes += capacity as u64;
        Some(id)
    }

    fn link_back(&mut self, id: u32) {
        let tail = self.tail;
        {
            let s = self.get_mut(id);
            s.prev = tail;
            s.next = NIL;
        }
        if tail == NIL {
            self.head = id;
        } else {
            self.get_mut(tail).next = id;
        }
        self.tail = id;
    }

    fn unlink(&mut self, id: u32) {
        let (prev, next) = {
            let s = self.get(id);
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.get_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.get_mut(next).prev = prev;
        }
    }

    /// Make `id` the newest segment (after an in-place merge its survivors are young again).
    pub(super) fn move_to_back(&mut self, id: u32) {
        if self.tail != id {
            self.unlink(id);
            self.link_back(id);
        }
    }

    /// Drop segment `id` (no hash entry may point into it any more); returns its capacity.
    pub(super) fn free(&mut self, id: u32) -> usize {
        self.unlink(id);
        let seg = self.slots[id as usize].take().expect("live segment id");
        self.free_ids.push(id);
        if self.active == id {
            self.active = NIL;
        }
        self.count -= 1;
        self.bytes -= seg.capacity() as u64;
        seg.capacity()
    }

    /// Ids oldest first.
    pub(super) fn ids(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut id = self.head;
        while id != NIL {
            out.push(id);
            id = self.next_of(id);
        }
        out
    }

    /// Drop every segment; returns the bytes released.
    pub(super) fn clear(&mut self) -> u64 {
        let bytes = self.bytes;
        *self = Segments::new();
        bytes
    }

    pub(super) fn live_bytes(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .map(|s| u64::from(s.live_bytes))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_links_and_reuses_ids() {
        let mut s = Segments::new();
        let a = s.push_new(100, false, 0).unwrap();
        let b = s.push_new(200, false, 0).unwrap();
        let c = s.push_new(50, true, 0).unwrap();
        assert_eq!(s.ids(), vec![a, b, c]);
        assert_eq!(s.bytes, 350);
        s.move_to_back(a);
        assert_eq!(s.ids(), vec![b, c, a]);
        assert_eq!(s.free(c), 50);
        assert_eq!(s.ids(), vec![b, a]);
        let d = s.push_new(10, false, 0).unwrap();
        assert_eq!(d, c, "freed id reused");
        assert_eq!(s.ids(), vec![b, a, d]);
        s.free(b);
        s.free(d);
        assert_eq!((s.head, s.tail), (a, a));
        s.free(a);
        assert_eq!((s.head, s.tail, s.count, s.bytes), (NIL, NIL, 0, 0));
    }
}
