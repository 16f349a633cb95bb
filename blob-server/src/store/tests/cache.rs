//! The read cache: hits and misses, per-app entries, the size bounds, a damaged entry, and
//! quarantine retiring cached rot.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::*;
use crate::store::cache::ReadCache;
use crate::store::chunked::HEADER_LEN;

fn stats(s: &Store) -> CacheStats {
    let cache = s
        .inner
        .cache
        .as_ref()
        .expect("the tests' config has a cache");
    cache.stats()
}

#[test]
fn a_second_read_comes_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let big = content(1, 4096 * 5);
    let small = content(2, 300);
    let big_id = s.write("a", &big).unwrap();
    let small_id = s.write("a", &small).unwrap();
    assert_eq!(read_all(&s, "a", &big_id).unwrap(), big);
    assert_eq!(read_all(&s, "a", &small_id).unwrap(), small);
    let first = stats(&s);
    assert_eq!((first.hits, first.misses, first.entries), (0, 6, 6));
    // Damage both on disk: the cached copies, verified when they were read, still serve.
    let f = OpenOptions::new()
        .write(true)
        .open(s.paths().content(&big_id))
        .unwrap();
    f.write_all_at(&[0xff; 8], HEADER_LEN + 4 + 100).unwrap();
    assert_eq!(read_all(&s, "a", &big_id).unwrap(), big);
    assert_eq!(read_all(&s, "a", &small_id).unwrap(), small);
    // Ranges are cut from cached chunks.
    let r = read_to_end(s.read_range("a", &big_id, 4000..9000).unwrap()).unwrap();
    assert_eq!(r, &big[4000..9000]);
    let second = stats(&s);
    assert_eq!((second.hits, second.misses), (6 + 3, 6));
    // Reading by key goes through the same entries.
    s.put_object("a", "b", "k", ObjectOptions::default(), &small)
        .unwrap();
    let (_, r) = s.open_object("a", "b", "k", None).unwrap();
    assert_eq!(read_to_end(r).unwrap(), small);
    assert_eq!(stats(&s).hits, 10);
}

#[test]
fn apps_never_share_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = content(3, 4096 * 2);
    let id = s.write("a", &data).unwrap();
    assert_eq!(s.write("b", &data).unwrap(), id);
    assert_eq!(read_all(&s, "a", &id).unwrap(), data);
    // b's first read of the same content misses: its timing cannot tell that a read it.
    assert_eq!(read_all(&s, "b", &id).unwrap(), data);
    let st = stats(&s);
    assert_eq!((st.hits, st.misses, st.entries), (0, 4, 4));
    assert_eq!(read_all(&s, "b", &id).unwrap(), data);
    assert_eq!(stats(&s).hits, 2);
}

#[test]
fn big_objects_bypass_it_and_it_keeps_to_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Larger than read_cache_max_object (64 KiB in the tests' config): never cached.
    let big = content(4, 100_000);
    let id = s.write("a", &big).unwrap();
    assert_eq!(read_all(&s, "a", &id).unwrap(), big);
    assert_eq!(read_all(&s, "a", &id).unwrap(), big);
    let st = stats(&s);
    assert_eq!((st.hits, st.misses, st.entries), (0, 0, 0));
    // 3 MiB of objects read through a 1 MiB cache, twice.
    let ids: Vec<_> = (0..48u64)
        .map(|i| s.write("a", &content(10 + i, 64 << 10)).unwrap())
        .collect();
    for _ in 0..2 {
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                read_all(&s, "a", id).unwrap(),
                content(10 + i as u64, 64 << 10)
            );
        }
    }
    let st = stats(&s);
    assert!(st.bytes <= 1 << 20, "{st:?}");
    assert!(st.entries > 0, "{st:?}");
}

#[test]
fn a_damaged_entry_is_dropped_never_served() {
    let cache = ReadCache::new(1 << 20, 1 << 20).unwrap();
    let id = sha(b"x");
    let slot = cache.slot("a", &id, 5, cache.epoch()).unwrap();
    let good = Bytes::from_static(b"hello");
    // Stored with the CRC of other bytes, as if a bit flipped in memory after the check.
    cache.insert(slot, 0, good.clone(), crc32fast::hash(b"hellp"));
    assert_eq!(cache.get(slot, 0), None);
    assert_eq!(cache.stats().damaged, 1);
    // Gone: the next read goes to storage and caches the right bytes.
    assert_eq!(cache.get(slot, 0), None);
    cache.insert(slot, 0, good.clone(), crc32fast::hash(&good));
    assert_eq!(cache.get(slot, 0), Some(good));
    // Off with a zero size.
    assert!(ReadCache::new(0, 1 << 20).is_none());
}

#[test]
fn an_entry_as_large_as_max_object_is_kept() {
    // The cache is split in shards that each hold a part of it: every part must have room
    // for the largest entry, whatever the ratio of the two sizes.
    for (capacity, max_object) in [
        (1 << 20, 256 << 10),
        (1 << 20, 300 << 10),
        (64 << 20, 1 << 20),
    ] {
        let cache = ReadCache::new(capacity, max_object).unwrap();
        let data = Bytes::from(content(9, max_object as usize));
        let id = sha(&data);
        let slot = cache.slot("a", &id, max_object, cache.epoch()).unwrap();
        cache.insert(slot, 0, data.clone(), crc32fast::hash(&data));
        assert_eq!(cache.get(slot, 0), Some(data), "{capacity} / {max_object}");
        assert!(cache
            .slot("a", &id, max_object + 1, cache.epoch())
            .is_none());
    }
}

#[test]
fn quarantine_retires_cached_rot() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let big = content(5, 4096 * 3);
    let id = s.write("a", &big).unwrap();
    // Rot with the chunk's CRC rewritten to match: a read cannot tell, so it serves (and
    // caches) the rotten chunk until the scrub's SHA-256 check finds it.
    let mut chunk = big[4096..8192].to_vec();
    chunk[7] ^= 1;
    let f = OpenOptions::new()
        .write(true)
        .open(s.paths().content(&id))
        .unwrap();
    let pos = HEADER_LEN + (4096 + 4);
    f.write_all_at(&crc32fast::hash(&chunk).to_le_bytes(), pos)
        .unwrap();
    f.write_all_at(&chunk, pos + 4).unwrap();
    let rotten = read_all(&s, "a", &id).unwrap();
    assert_ne!(rotten, big);
    // A reader that took its slot before the quarantine.
    let early = s.read("a", &id).unwrap();
    // The scrub reads storage, not the cache, and finds it.
    let report = s.scrub(0, &|| false).unwrap();
    assert_eq!(report.corrupt, vec![id]);
    assert!(matches!(s.read("a", &id), Err(Error::Corrupt(_))));
    // The early reader still streams what storage holds, and caches it in a retired epoch.
    assert_eq!(read_to_end(early).unwrap(), rotten);
    // The repair: the same bytes stored again. Reads serve them, not the cached rot.
    assert_eq!(s.write("a", &big).unwrap(), id);
    assert_eq!(read_all(&s, "a", &id).unwrap(), big);
    assert_eq!(read_all(&s, "a", &id).unwrap(), big);
}
