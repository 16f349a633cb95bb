//! Budget tests: eviction within budget, namespace isolation, -M, compaction, budget
//! reservations, concurrency, and the memory-per-item measurement.

use std::sync::Arc;

use super::tests::{get, set, store_ns, stored_cas, NOW};
use super::tests_model::check_invariants;
use super::*;

const MIB: u64 = 1 << 20;

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:08}").into_bytes()
}

#[test]
fn eviction_keeps_the_namespace_within_budget() {
    let (_s, ns) = store_ns(StoreConfig::default(), 2 * MIB);
    let value = [b'v'; 1000];
    let n = 20_000; // ~10x the budget
    for i in 0..n {
        stored_cas(set(&ns, &key(i), &value, 0, NOW));
        if i % 100 == 0 {
            let st = ns.stats();
            assert!(
                st.segments_bytes <= ns.budget(),
                "{} > budget at {i}",
                st.segments_bytes
            );
            assert_eq!(ns.memory_used(), st.segments_bytes);
        }
    }
    let st = ns.stats();
    assert!(st.evictions > (n as u64) / 2, "{st:?}");
    assert_eq!(st.evicted_unfetched, st.evictions);
    for i in n - 300..n {
        assert_eq!(
            get(&ns, &key(i), NOW).as_deref(),
            Some(&value[..]),
            "recent key {i}"
        );
    }
    assert_eq!(get(&ns, &key(0), NOW), None);
    assert!(
        st.curr_items > 1000,
        "a 2 MiB namespace holds well over 1000 1 KB items: {st:?}"
    );
    check_invariants(&ns);
}

#[test]
fn accessed_items_get_a_second_chance() {
    let cfg = StoreConfig {
        shards: 1,
        segment_size: 64 << 10,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, MIB);
    set(&ns, b"hot", b"keep me", 0, NOW);
    set(&ns, b"cold", b"forget me", 0, NOW);
    for i in 0..20_000 {
        set(&ns, &key(i), &[b'x'; 500], 0, NOW);
        if i % 50 == 0 {
            assert!(get(&ns, b"hot", NOW).is_some(), "hot item evicted at {i}");
        }
    }
    assert_eq!(get(&ns, b"cold", NOW), None);
    assert!(ns.stats().segments_bytes <= MIB);
    check_invariants(&ns);
}

#[test]
fn churning_one_namespace_never_evicts_another() {
    let store = Store::new(StoreConfig {
        max_bytes: 8 * MIB,
        ..StoreConfig::default()
    });
    let a = store.ensure_namespace("a", 4 * MIB).unwrap();
    let b = store.ensure_namespace("b", 4 * MIB).unwrap();
    for i in 0..1000 {
        stored_cas(set(&b, &key(i), b"precious", 0, NOW));
    }
    let value = [b'a'; 2000];
    for i in 0..20_000 {
        // 40 MB through a 4 MiB namespace
        stored_cas(set(&a, &key(i), &value, 0, NOW));
    }
    assert!(a.stats().evictions > 0);
    assert!(a.stats().segments_bytes <= 4 * MIB);
    assert_eq!(b.stats().evictions, 0);
    for i in 0..1000 {
        assert_eq!(get(&b, &key(i), NOW).as_deref(), Some(&b"precious"[..]));
    }
    assert!(store.memory_used() <= 8 * MIB);
    check_invariants(&a);
    check_invariants(&b);
}

#[test]
fn compaction_frees_expired_bytes() {
    let (_s, ns) = store_ns(StoreConfig::default(), 128 * MIB);
    let value = [b'e'; 2000];
    for i in 0..20_000 {
        let exptime = if i % 20 == 0 { 0 } else { NOW + 10 };
        set(&ns, &key(i), &value, exptime, NOW);
    }
    let before = ns.stats().segments_bytes;
    ns.maintain(NOW + 5);
    assert_eq!(ns.stats().segments_bytes, before, "nothing expired yet");
    ns.maintain(NOW + 11);
    ns.maintain(NOW + 12);
    let st = ns.stats();
    // What is left is one partly filled active segment per shard.
    assert!(
        st.segments_bytes <= 16 * MIB,
        "{} of {before}: {st:?}",
        st.segments_bytes
    );
    assert!(
        st.segments_bytes < before / 2,
        "{} of {before}: {st:?}",
        st.segments_bytes
    );
    assert!(st.compactions > 0 && st.reclaimed >= 19_000, "{st:?}");
    assert_eq!(st.curr_items, 1000);
    for i in (0..20_000).step_by(20) {
        assert_eq!(
            get(&ns, &key(i), NOW + 12).as_deref(),
            Some(&value[..]),
            "key {i}"
        );
    }
    check_invariants(&ns);
}

#[test]
fn compaction_frees_deleted_bytes() {
    let (_s, ns) = store_ns(StoreConfig::default(), 128 * MIB);
    let value = [b'd'; 1000];
    for i in 0..40_000 {
        set(&ns, &key(i), &value, 0, NOW);
    }
    for i in 0..40_000 {
        if i % 10 != 0 {
            ns.delete(&key(i), &DeleteOpts::default(), NOW);
        }
    }
    let before = ns.stats().segments_bytes;
    for _ in 0..4 {
        ns.maintain(NOW);
    }
    let st = ns.stats();
    assert!(
        st.segments_bytes < before / 2,
        "{} of {before}",
        st.segments_bytes
    );
    for i in (0..40_000).step_by(10) {
        assert_eq!(
            get(&ns, &key(i), NOW).as_deref(),
            Some(&value[..]),
            "key {i}"
        );
    }
    assert_eq!(st.curr_items, 4000);
    check_invariants(&ns);
}

#[test]
fn small_namespaces_still_work() {
    for budget in [200 << 10, MIB] {
        let (_s, ns) = store_ns(StoreConfig::default(), budget);
        for i in 0..10_000 {
            stored_cas(set(&ns, &key(i), &[b's'; 100], 0, NOW));
            assert!(ns.memory_used() <= budget);
        }
        for i in 10_000 - 20..10_000 {
            assert!(get(&ns, &key(i), NOW).is_some(), "budget {budget}: key {i}");
        }
        check_invariants(&ns);
    }
}

#[test]
fn budget_reservations() {
    let store = Store::new(StoreConfig {
        max_bytes: 10 * MIB,
        ..StoreConfig::default()
    });
    let a = store.ensure_namespace("a", 6 * MIB).unwrap();
    let err = store.ensure_namespace("b", 5 * MIB).unwrap_err();
    assert_eq!(
        err,
        BudgetError::Over {
            total: 11 * MIB,
            max: 10 * MIB,
            over: MIB
        }
    );
    assert_eq!(
        err.to_string(),
        "cache budgets add up to 11534336 bytes, 1048576 more than the server's memory limit \
         of 10485760 bytes"
    );
    assert!(store.namespace("b").is_none());
    // fill a, then shrink it: it evicts down to the new budget
    for i in 0..6000 {
        set(&a, &key(i), &[b'a'; 1000], 0, NOW);
    }
    assert!(a.memory_used() > 4 * MIB);
    let a2 = store.ensure_namespace("a", 2 * MIB).unwrap();
    assert!(Arc::ptr_eq(&a, &a2));
    assert!(a.memory_used() <= 2 * MIB && a.budget() == 2 * MIB);
    let b = store.ensure_namespace("b", 8 * MIB).unwrap();
    set(&b, b"k", b"v", 0, NOW);
    let dup = vec![("a".to_string(), MIB), ("a".to_string(), MIB)];
    assert!(matches!(
        store.check_budgets(&dup),
        Err(BudgetError::Duplicate { .. })
    ));
    let too_big = vec![("a".to_string(), 5 * MIB), ("c".to_string(), 6 * MIB)];
    assert!(
        matches!(store.check_budgets(&too_big), Err(BudgetError::Over { over, .. }) if over == MIB)
    );
    assert_eq!(
        store.apply_budgets(&too_big).unwrap_err(),
        store.check_budgets(&too_big).unwrap_err()
    );
    assert_eq!(
        store.namespaces().len(),
        2,
        "a failed apply changes nothing"
    );
    // apply: a resized, b dropped (and freed), c created
    let next = vec![("a".to_string(), 3 * MIB), ("c".to_string(), 7 * MIB)];
    store.check_budgets(&next).unwrap();
    store.apply_budgets(&next).unwrap();
    let names: Vec<String> = store
        .namespaces()
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(b.memory_used(), 0);
    assert_eq!(get(&b, b"k", NOW), None);
    assert_eq!(
        set(&b, b"k", b"v", 0, NOW),
        StoreOutcome::OutOfMemory,
        "dropped namespace"
    );
    assert!(store.memory_used() <= 10 * MIB);
    // cache_memlimit below the reserved budgets is refused
    assert!(matches!(
        store.set_max_bytes(9 * MIB),
        Err(BudgetError::Over { .. })
    ));
    store.set_max_bytes(20 * MIB).unwrap();
    assert_eq!(store.config().max_bytes, 20 * MIB);
}

#[test]
fn anonymous_namespace_follows_the_memory_limit_and_is_never_dropped() {
    let store = Store::new(StoreConfig {
        max_bytes: 10 * MIB,
        ..StoreConfig::default()
    });
    let anon = store.ensure_namespace("", 10 * MIB).unwrap();
    store.set_max_bytes(4 * MIB).unwrap();
    assert_eq!(anon.budget(), 4 * MIB);
    // "" is kept and counted when a budget list does not mention it
    let apps = vec![("x".to_string(), MIB)];
    assert!(store.check_budgets(&apps).is_err());
    let apps = vec![("".to_string(), 2 * MIB), ("x".to_string(), 2 * MIB)];
    store.apply_budgets(&apps).unwrap();
    store.apply_budgets(&[("y".to_string(), MIB)]).unwrap();
    let names: Vec<String> = store
        .namespaces()
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    assert_eq!(names, ["", "y"]);
}

#[test]
fn two_threads_share_a_namespace() {
    let (_s, ns) = store_ns(StoreConfig::default(), 4 * MIB);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let ns = Arc::clone(&ns);
            std::thread::spawn(move || {
                let mut x = 12345u64 + t;
                for _ in 0..100_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = key((x % 20_000) as usize);
                    match x % 4 {
                        0 => {
                            ns.delete(&k, &DeleteOpts::default(), NOW);
                        }
                        1 => {
                            let v = k.repeat(1 + (x % 30) as usize);
                            stored_cas(set(&ns, &k, &v, 0, NOW));
                        }
                        _ => {
                            if let Some(v) = get(&ns, &k, NOW) {
                                assert!(v.chunks(k.len()).all(|c| c == &k[..]), "torn value");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(ns.stats().segments_bytes <= 4 * MIB);
    check_invariants(&ns);
}

/// Memory per item for 1,000,000 items of 100-byte values and 12-byte keys: segments plus
/// hash tables, and the process RSS growth. Run with
/// `cargo test --release -p cache-server --lib store::tests_budget::memory_per_item -- --ignored --nocapture`.
#[test]
#[ignore]
fn memory_per_item() {
    fn rss() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }
    let n = 1_000_000;
    let rss0 = rss();
    let (_s, ns) = store_ns(StoreConfig::default(), 1 << 30);
    let value = [b'v'; 100];
    let t = std::time::Instant::now();
    for i in 0..n {
        stored_cas(set(&ns, &key(i), &value, 0, NOW));
    }
    let set_time = t.elapsed();
    let t = std::time::Instant::now();
    for i in 0..n {
        assert!(get(&ns, &key(i), NOW).is_some());
    }
    let get_time = t.elapsed();
    let st = ns.stats();
    assert_eq!(st.curr_items, n as u64);
    let per = |b: u64| b as f64 / n as f64;
    println!(
        "items {n}: live bytes/item {:.1}, segments/item {:.1}, hash/item {:.1}, \
         store total/item {:.1}, RSS growth/item {:.1}; set {:.0} ns/op, get {:.0} ns/op",
        per(st.bytes),
        per(st.segments_bytes),
        per(st.hash_bytes),
        per(st.segments_bytes + st.hash_bytes),
        per(rss().saturating_sub(rss0)),
        set_time.as_nanos() as f64 / n as f64,
        get_time.as_nanos() as f64 / n as f64,
    );
}

/// Store-level throughput with two threads (90% get, 10% set, 100-byte values, 100k keys).
/// Run with `cargo test --release -p cache-server --lib store::tests_budget::throughput_two_threads
/// -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_two_threads() {
    let (_s, ns) = store_ns(StoreConfig::default(), 64 * MIB);
    let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..100_000).map(key).collect());
    for k in keys.iter() {
        set(&ns, k, &[b'v'; 100], 0, NOW);
    }
    let ops = 2_000_000u64;
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (ns, keys) = (Arc::clone(&ns), Arc::clone(&keys));
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                let mut buf = [0u8; 128];
                for _ in 0..ops {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = &keys[(x % keys.len() as u64) as usize];
                    if x.is_multiple_of(10) {
                        set(&ns, k, &[b'w'; 100], 0, NOW);
                    } else {
                        ns.get(k, NOW, &GetOpts::default(), |hit| {
                            if let Some((v, _)) = hit {
                                buf[..v.value.len()].copy_from_slice(v.value);
                            }
                        });
                    }
                }
                buf[0]
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("2 threads: {:.2} M ops/s", (2 * ops) as f64 / secs / 1e6);
}
