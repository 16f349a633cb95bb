//! The read cache: verified chunks of recently read objects, kept in memory so a hot object
//! is sent without reading it from the file system again.
//!
//! Why it exists: every read verifies each chunk's checksum before sending it, so the server
//! cannot hand files to the socket with `sendfile` as a static file server does; a read from
//! the page cache costs a copy into our memory and a few system calls per chunk. Keeping the
//! verified chunk here saves both for the hot set. The checksum is still checked again each
//! time a cached chunk is sent (a CRC pass, a few percent of the send), so a chunk damaged in
//! memory gives an error, never wrong bytes.
//!
//! Entries are keyed by app as well as content: two apps reading the same stored bytes cache
//! them separately, so how fast a read is never tells an app that another one holds or reads
//! that content. Content ids name immutable bytes, so an entry is never stale: one whose
//! content was deleted simply stops being asked for and ages out. The one exception is rot
//! that kept a chunk's CRC valid, which only the scrub's SHA-256 check finds: quarantining
//! content starts a new epoch ([`ReadCache::forget_all`]), and entries of an older one are
//! never served again, even if a read that began before still inserts them. Objects larger than
//! `max_object` bypass the cache, so one big download cannot flush the hot set (and memory
//! stays bounded by `capacity` whatever is read).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::store::ContentId;

/// Bookkeeping per entry on top of its bytes (key, node, counters), for the memory budget.
const ENTRY_OVERHEAD: u64 = 128;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    app: u64,
    id: [u8; 32],
    chunk: u64,
    epoch: u64,
}

#[derive(Clone)]
struct Entry {
    data: Bytes,
    crc: u32,
}

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<Key, Entry> for Weigh {
    fn weight(&self, _: &Key, e: &Entry) -> u64 {
        e.data.len() as u64 + ENTRY_OVERHEAD
    }
}

type Entries = quick_cache::sync::Cache<
    Key,
    Entry,
    Weigh,
    foldhash::fast::RandomState,
    quick_cache::sync::DefaultLifecycle<Key, Entry>,
>;

/// Verified chunks of recently read objects, bounded in bytes.
pub(crate) struct ReadCache {
    entries: Entries,
    max_object: u64,
    apps: foldhash::quality::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
    damaged: AtomicU64,
    epoch: AtomicU64,
}

/// Where one object's chunks go in the cache: the reading app and the content.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    app: u64,
    id: [u8; 32],
    epoch: u64,
}

impl ReadCache {
    /// A cache of at most `capacity` bytes (with per-entry overhead) holding chunks of objects
    /// up to `max_object` bytes; `None` when `capacity` is 0.
    pub fn new(capacity: u64, max_object: u64) -> Option<Self> {
        if capacity == 0 || max_object == 0 {
            return None;
        }
        // Each shard holds an equal part of the capacity and drops entries heavier than 97%
        // of its part (quick_cache's "hot" share), so every shard gets room for two of the
        // largest entries (a chunk of an object of `max_object` bytes at most): at most 16
        // shards (locks), fewer for a small cache. quick_cache rounds the count up to a
        // power of two (and halves it while shards would hold under 32 items): round down.
        let largest = max_object.saturating_add(ENTRY_OVERHEAD);
        let fit = usize::try_from(capacity / largest.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .clamp(1, 16);
        let shards = 1 << fit.ilog2();
        // The item estimate sizes the tables up front: chunks average well above 16 KiB.
        let items = usize::try_from(capacity / (16 << 10))
            .unwrap_or(usize::MAX)
            .max(64);
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(capacity)
            .build()
            .ok()?;
        let entries = Entries::with_options(
            options,
            Weigh,
            foldhash::fast::RandomState::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Some(ReadCache {
            entries,
            max_object,
            apps: foldhash::quality::RandomState::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            damaged: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    /// The current epoch. Take it before looking the content up, so a quarantine that lands
    /// in between retires the slot.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The slot for `app` reading `id` of `size` bytes as of `epoch`, or `None` if objects
    /// of that size bypass the cache.
    pub fn slot(&self, app: &str, id: &ContentId, size: u64, epoch: u64) -> Option<Slot> {
        if size > self.max_object || size == 0 {
            return None;
        }
        Some(Slot {
            app: self.apps.hash_one(app),
            id: id.0,
            epoch,
        })
    }

    /// Chunk `chunk` of the slot's object, checked against the CRC it had when it was read
    /// from storage. An entry that fails the check is dropped (and counted): the caller reads
    /// the chunk from storage again, as on a miss.
    pub fn get(&self, slot: Slot, chunk: u64) -> Option<Bytes> {
        let k = key(slot, chunk);
        let Some(e) = self.entries.get(&k) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if crc32fast::hash(&e.data) != e.crc {
            self.entries.remove(&k);
            self.damaged.fetch_add(1, Ordering::Relaxed);
            self.misses.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                chunk,
                "a cached chunk failed its checksum; reading it again"
            );
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.data)
    }

    /// Keeps `data` (verified, with CRC-32 `crc`) as chunk `chunk` of the slot's object.
    pub fn insert(&self, slot: Slot, chunk: u64, data: Bytes, crc: u32) {
        self.entries.insert(key(slot, chunk), Entry { data, crc });
    }

    /// Chunk `chunk` of the slot's object from the cache, or else from `read` (which reads
    /// and verifies it, answering its bytes and their CRC-32), then kept.
    pub fn fetch(
        &self,
        slot: Slot,
        chunk: u64,
        read: impl FnOnce() -> crate::store::Result<(Bytes, u32)>,
    ) -> crate::store::Result<Bytes> {
        if let Some(data) = self.get(slot, chunk) {
            return Ok(data);
        }
        let (data, crc) = read()?;
        self.insert(slot, chunk, data.clone(), crc);
        Ok(data)
    }

    /// Drops every entry and starts a new epoch: slots taken before are never served again
    /// (called when content is quarantined, whose cached bytes may be the rot).
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// What the cache holds and how it served, for `/stats` and metrics.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            bytes: self.entries.weight(),
            entries: self.entries.len() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            damaged: self.damaged.load(Ordering::Relaxed),
        }
    }
}

/// Counters of the read cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes held, with per-entry overhead.
    pub bytes: u64,
    /// Chunks held.
    pub entries: u64,
    /// Chunks served from the cache.
    pub hits: u64,
    /// Chunks read from storage because the cache did not hold them.
    pub misses: u64,
    /// Cached chunks that failed their checksum and were read from storage again.
    pub damaged: u64,
}

fn key(slot: Slot, chunk: u64) -> Key {
    Key {
        app: slot.app,
        id: slot.id,
        chunk,
        epoch: slot.epoch,
    }
}
