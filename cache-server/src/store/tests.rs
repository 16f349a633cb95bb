//! Unit tests of every item operation and outcome, with explicit clocks.

use std::sync::Arc;

use super::*;

pub(super) const NOW: u32 = 1000;

/// An owned copy of what a get saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Got {
    pub value: Vec<u8>,
    pub flags: u32,
    pub cas: u64,
    pub exptime: u32,
    pub fetched: bool,
    pub stale: bool,
    pub win_sent: bool,
    pub gf: GetFlags,
}

pub(super) fn store_ns(cfg: StoreConfig, budget: u64) -> (Arc<Store>, Arc<Namespace>) {
    let store = Store::new(StoreConfig {
        max_bytes: cfg.max_bytes.max(budget),
        ..cfg
    });
    let ns = store.ensure_namespace("", budget).unwrap();
    (store, ns)
}

pub(super) fn ns() -> Arc<Namespace> {
    store_ns(StoreConfig::default(), 64 << 20).1
}

pub(super) fn set(
    ns: &Namespace,
    key: &[u8],
    value: &[u8],
    exptime: u32,
    now: u32,
) -> StoreOutcome {
    ns.store(&StoreReq::new(StoreMode::Set, key, value, 0, exptime), now)
}

pub(super) fn stored_cas(o: StoreOutcome) -> u64 {
    match o {
        StoreOutcome::Stored { cas } => cas,
        other => panic!("expected Stored, got {other:?}"),
    }
}

pub(super) fn get_with(ns: &Namespace, key: &[u8], now: u32, opts: &GetOpts) -> Option<Got> {
    ns.get(key, now, opts, |hit| {
        hit.map(|(v, gf)| {
            assert_eq!(v.key, key);
            Got {
                value: v.value.to_vec(),
                flags: v.flags,
                cas: v.cas,
                exptime: v.exptime,
                fetched: v.fetched,
                stale: v.stale,
                win_sent: v.win_sent,
                gf,
            }
        })
    })
}

pub(super) fn get(ns: &Namespace, key: &[u8], now: u32) -> Option<Vec<u8>> {
    get_with(ns, key, now, &GetOpts::default()).map(|g| g.value)
}

fn req<'a>(mode: StoreMode, key: &'a [u8], value: &'a [u8]) -> StoreReq<'a> {
    StoreReq::new(mode, key, value, 0, 0)
}

#[test]
fn set_get_overwrite_and_empty_values() {
    let ns = ns();
    assert_eq!(get(&ns, b"k", NOW), None);
    let c1 = stored_cas(ns.store(&StoreReq::new(StoreMode::Set, b"k", b"v1", 42, 0), NOW));
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert_eq!(
        (g.value.as_slice(), g.flags, g.cas, g.exptime),
        (&b"v1"[..], 42, c1, 0)
    );
    let c2 = stored_cas(set(&ns, b"k", b"second", 0, NOW));
    assert!(c2 > c1, "cas values increase");
    assert_eq!(get(&ns, b"k", NOW).unwrap(), b"second");
    stored_cas(set(&ns, b"empty", b"", 0, NOW));
    assert_eq!(get(&ns, b"empty", NOW).unwrap(), b"");
    let st = ns.stats();
    assert_eq!((st.curr_items, st.total_items), (2, 3));
    assert!(st.bytes > 0 && st.segments_bytes >= st.bytes);
}

#[test]
fn add_and_replace_conditions() {
    let ns = ns();
    assert_eq!(
        ns.store(&req(StoreMode::Replace, b"k", b"x"), NOW),
        StoreOutcome::NotStored
    );
    stored_cas(ns.store(&req(StoreMode::Add, b"k", b"a"), NOW));
    assert_eq!(
        ns.store(&req(StoreMode::Add, b"k", b"b"), NOW),
        StoreOutcome::NotStored
    );
    assert_eq!(get(&ns, b"k", NOW).unwrap(), b"a");
    stored_cas(ns.store(&req(StoreMode::Replace, b"k", b"r"), NOW));
    assert_eq!(get(&ns, b"k", NOW).unwrap(), b"r");
    // add on an expired item stores
    set(&ns, b"e", b"old", NOW + 1, NOW);
    stored_cas(ns.store(&req(StoreMode::Add, b"e", b"new"), NOW + 1));
    assert_eq!(get(&ns, b"e", NOW + 1).unwrap(), b"new");
}

#[test]
fn append_prepend_keep_flags_and_exptime() {
    let ns = ns();
    assert_eq!(
        ns.store(&req(StoreMode::Append, b"k", b"x"), NOW),
        StoreOutcome::NotStored
    );
    assert_eq!(
        ns.store(&req(StoreMode::Prepend, b"k", b"x"), NOW),
        StoreOutcome::NotStored
    );
    ns.store(
        &StoreReq::new(StoreMode::Set, b"k", b"mid", 7, NOW + 100),
        NOW,
    );
    stored_cas(ns.store(&StoreReq::new(StoreMode::Append, b"k", b">>", 9, 5), NOW));
    stored_cas(ns.store(&StoreReq::new(StoreMode::Prepend, b"k", b"<<", 9, 5), NOW));
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert_eq!(
        (g.value.as_slice(), g.flags, g.exptime),
        (&b"<<mid>>"[..], 7, NOW + 100)
    );
    // append with a mismatching cas
    let mut r = req(StoreMode::Append, b"k", b"!");
    r.compare_cas = Some(g.cas + 100);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::Exists);
    r.compare_cas = Some(g.cas);
    stored_cas(ns.store(&r, NOW));
    assert_eq!(get(&ns, b"k", NOW).unwrap(), b"<<mid>>!");
    // meta N: append on a miss creates the item with the vivify TTL
    let mut r = req(StoreMode::Append, b"v", b"first");
    r.vivify = Some(NOW + 30);
    stored_cas(ns.store(&r, NOW));
    let g = get_with(&ns, b"v", NOW, &GetOpts::default()).unwrap();
    assert_eq!((g.value.as_slice(), g.exptime), (&b"first"[..], NOW + 30));
}

#[test]
fn append_over_the_size_limit_is_not_stored() {
    let cfg = StoreConfig {
        item_size_max: 1000,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 1 << 20);
    set(&ns, b"k", &[b'a'; 600], 0, NOW);
    assert_eq!(
        ns.store(&req(StoreMode::Append, b"k", &[b'b'; 600]), NOW),
        StoreOutcome::NotStored
    );
    assert_eq!(get(&ns, b"k", NOW).unwrap().len(), 600);
}

#[test]
fn cas_outcomes() {
    let ns = ns();
    let mut r = req(StoreMode::Set, b"k", b"v");
    r.compare_cas = Some(5);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::NotFound);
    let cas = stored_cas(set(&ns, b"k", b"v0", 0, NOW));
    r.compare_cas = Some(cas + 1);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::Exists);
    r.compare_cas = Some(0);
    assert_eq!(
        ns.store(&r, NOW),
        StoreOutcome::Exists,
        "cas 0 never matches"
    );
    r.compare_cas = Some(cas);
    let new = stored_cas(ns.store(&r, NOW));
    assert!(new > cas);
    // the old cas no longer works; replace + cas behaves like cas
    let mut rr = req(StoreMode::Replace, b"k", b"v2");
    rr.compare_cas = Some(cas);
    assert_eq!(ns.store(&rr, NOW), StoreOutcome::Exists);
    rr.compare_cas = Some(new);
    stored_cas(ns.store(&rr, NOW));
    rr.key = b"missing";
    assert_eq!(ns.store(&rr, NOW), StoreOutcome::NotFound);
    // add with a cas is still add
    let mut ra = req(StoreMode::Add, b"k", b"x");
    ra.compare_cas = Some(1);
    assert_eq!(ns.store(&ra, NOW), StoreOutcome::NotStored);
    assert_eq!(get(&ns, b"k", NOW).unwrap(), b"v2");
}

#[test]
fn explicit_new_cas() {
    let ns = ns();
    let mut r = req(StoreMode::Set, b"k", b"v");
    r.new_cas = Some(777);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::Stored { cas: 777 });
    assert_eq!(
        get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap().cas,
        777
    );
}

#[test]
fn invalidating_set_with_older_cas_marks_stale() {
    let ns = ns();
    let c1 = stored_cas(set(&ns, b"k", b"v1", NOW + 50, NOW));
    let c2 = stored_cas(set(&ns, b"k", b"v2", NOW + 50, NOW));
    let mut r = StoreReq::new(StoreMode::Set, b"k", b"old-writer", 0, NOW + 999);
    r.compare_cas = Some(c1);
    assert_eq!(
        ns.store(&r, NOW),
        StoreOutcome::Exists,
        "without I an older cas fails"
    );
    r.invalidate = true;
    stored_cas(ns.store(&r, NOW));
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert_eq!(g.value, b"old-writer");
    assert_eq!(g.exptime, NOW + 50, "keeps the current TTL");
    assert!(g.stale && g.gf.stale && g.gf.won && !g.gf.win_sent);
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert!(g.gf.stale && !g.gf.won && g.gf.win_sent);
    // a newer cas than the item's is a plain mismatch
    r.compare_cas = Some(c2 + 1000);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::Exists);
}

#[test]
fn delete_outcomes() {
    let ns = ns();
    assert_eq!(
        ns.delete(b"k", &DeleteOpts::default(), NOW),
        DeleteOutcome::NotFound
    );
    let cas = stored_cas(set(&ns, b"k", b"v", 0, NOW));
    let wrong = DeleteOpts {
        compare_cas: Some(cas + 1),
        ..DeleteOpts::default()
    };
    assert_eq!(ns.delete(b"k", &wrong, NOW), DeleteOutcome::Exists);
    let right = DeleteOpts {
        compare_cas: Some(cas),
        ..DeleteOpts::default()
    };
    assert_eq!(ns.delete(b"k", &right, NOW), DeleteOutcome::Deleted);
    assert_eq!(get(&ns, b"k", NOW), None);
    assert_eq!(
        ns.delete(b"k", &DeleteOpts::default(), NOW),
        DeleteOutcome::NotFound
    );
    assert_eq!(ns.stats().curr_items, 0);
}

#[test]
fn delete_invalidate_keeps_a_stale_item() {
    let ns = ns();
    let cas = stored_cas(set(&ns, b"k", b"v", NOW + 5, NOW));
    // give the win token away first: invalidation must reset it
    let recache = GetOpts {
        recache_below: Some(10),
        ..GetOpts::default()
    };
    assert!(get_with(&ns, b"k", NOW, &recache).unwrap().gf.won);
    let opts = DeleteOpts {
        invalidate: true,
        invalidate_ttl: Some(NOW + 30),
        ..Default::default()
    };
    assert_eq!(ns.delete(b"k", &opts, NOW), DeleteOutcome::Deleted);
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert_eq!((g.value.as_slice(), g.exptime), (&b"v"[..], NOW + 30));
    assert!(g.cas > cas && g.gf.stale && g.gf.won && !g.gf.win_sent);
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert!(!g.gf.won && g.gf.win_sent);
    let opts = DeleteOpts {
        invalidate: true,
        new_cas: Some(5),
        ..Default::default()
    };
    ns.delete(b"k", &opts, NOW);
    assert_eq!(
        get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap().cas,
        5
    );
}

#[test]
fn delete_drop_value_empties_the_item() {
    let ns = ns();
    let cas = stored_cas(ns.store(&StoreReq::new(StoreMode::Set, b"k", b"value", 9, 0), NOW));
    let opts = DeleteOpts {
        drop_value: true,
        ..Default::default()
    };
    assert_eq!(ns.delete(b"k", &opts, NOW), DeleteOutcome::Deleted);
    let g = get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap();
    assert_eq!((g.value.as_slice(), g.flags, g.cas), (&b""[..], 0, cas));
    assert_eq!(ns.stats().curr_items, 1);
}

#[test]
fn touch_changes_expiry() {
    let ns = ns();
    assert!(!ns.touch(b"k", NOW + 5, NOW));
    set(&ns, b"k", b"v", NOW + 5, NOW);
    assert!(ns.touch(b"k", NOW + 100, NOW + 1));
    assert_eq!(get(&ns, b"k", NOW + 50).unwrap(), b"v");
    assert!(ns.touch(b"k", 0, NOW + 50));
    assert_eq!(get(&ns, b"k", NOW + 100_000).unwrap(), b"v");
    assert!(ns.touch(b"k", NOW + 100_001, NOW + 100_000));
    assert_eq!(get(&ns, b"k", NOW + 100_001), None);
    assert!(!ns.touch(b"k", 0, NOW + 100_001));
}

#[test]
fn expiry_is_relative_seconds() {
    let ns = ns();
    set(&ns, b"k", b"v", NOW + 10, NOW);
    assert_eq!(get(&ns, b"k", NOW + 9).unwrap(), b"v");
    assert_eq!(get(&ns, b"k", NOW + 10), None);
    let st = ns.stats();
    assert_eq!((st.expired, st.expired_unfetched, st.curr_items), (1, 0, 0));
    // expired items are absent for every operation
    set(&ns, b"e", b"1", NOW + 1, NOW);
    let later = NOW + 2;
    assert_eq!(
        ns.store(&req(StoreMode::Replace, b"e", b"x"), later),
        StoreOutcome::NotStored
    );
    assert_eq!(
        ns.delete(b"e", &DeleteOpts::default(), later),
        DeleteOutcome::NotFound
    );
    assert_eq!(
        ns.arith(b"e", &ArithOpts::new(true, 1), later),
        ArithOutcome::NotFound
    );
    assert!(!ns.touch(b"e", 0, later));
}

#[test]
fn set_with_past_exptime_leaves_nothing() {
    let ns = ns();
    set(&ns, b"k", b"old", 0, NOW);
    stored_cas(set(&ns, b"k", b"new", NOW - 1, NOW));
    assert_eq!(get(&ns, b"k", NOW), None);
    stored_cas(set(&ns, b"k", b"now", NOW, NOW));
    assert_eq!(get(&ns, b"k", NOW), None);
    assert_eq!(ns.stats().curr_items, 0);
}

#[test]
fn immediate_flush_frees_everything() {
    let ns = ns();
    for i in 0..1000 {
        set(&ns, format!("k{i}").as_bytes(), b"value", 0, NOW);
    }
    assert!(ns.stats().segments_bytes > 0);
    ns.flush(NOW, NOW);
    let st = ns.stats();
    assert_eq!((st.curr_items, st.segments_bytes, st.flushed), (0, 0, 1000));
    assert_eq!(ns.memory_used(), 0);
    assert_eq!(get(&ns, b"k1", NOW), None);
    // items stored after the flush (even in the same second) survive
    set(&ns, b"after", b"v", 0, NOW);
    assert_eq!(get(&ns, b"after", NOW).unwrap(), b"v");
}

#[test]
fn delayed_flush_hits_items_updated_before_it() {
    let ns = ns();
    set(&ns, b"old", b"v", 0, NOW);
    ns.flush(NOW + 10, NOW);
    set(&ns, b"before", b"v", 0, NOW + 5);
    assert_eq!(get(&ns, b"old", NOW + 9).unwrap(), b"v", "not yet");
    // reading (bumping) before the flush moment does not save an item
    assert_eq!(get(&ns, b"old", NOW + 10), None);
    assert_eq!(get(&ns, b"before", NOW + 10), None);
    set(&ns, b"after", b"v", 0, NOW + 11);
    assert_eq!(get(&ns, b"after", NOW + 20).unwrap(), b"v");
    // a later immediate flush cancels nothing it should not and resets the pending point
    ns.flush(NOW + 20, NOW + 20);
    set(&ns, b"fresh", b"v", 0, NOW + 20);
    assert_eq!(get(&ns, b"fresh", NOW + 21).unwrap(), b"v");
}

#[test]
fn delayed_flush_is_reclaimed_by_maintenance() {
    let ns = ns();
    for i in 0..5000 {
        set(&ns, format!("key-{i}").as_bytes(), &[b'x'; 200], 0, NOW);
    }
    let before = ns.stats().segments_bytes;
    ns.flush(NOW + 5, NOW);
    ns.maintain(NOW + 1);
    assert_eq!(ns.stats().segments_bytes, before, "not due yet");
    ns.maintain(NOW + 5);
    let st = ns.stats();
    assert_eq!(st.curr_items, 0);
    assert_eq!(st.flushed, 5000);
    assert!(
        st.segments_bytes < before / 4,
        "{} of {before}",
        st.segments_bytes
    );
}

#[test]
fn get_touch_bump_and_last_access() {
    let ns = ns();
    set(&ns, b"k", b"v", 0, NOW);
    let peek = GetOpts {
        bump: false,
        ..GetOpts::default()
    };
    let g = get_with(&ns, b"k", NOW + 7, &peek).unwrap();
    assert!(!g.fetched && !g.gf.hit_before);
    assert_eq!(g.gf.last_access, 7);
    let g = get_with(&ns, b"k", NOW + 8, &GetOpts::default()).unwrap();
    assert!(g.fetched && !g.gf.hit_before);
    assert_eq!(g.gf.last_access, 8);
    let touch = GetOpts {
        touch: Some(NOW + 20),
        ..GetOpts::default()
    };
    let g = get_with(&ns, b"k", NOW + 10, &touch).unwrap();
    assert!(g.gf.hit_before);
    assert_eq!((g.gf.last_access, g.exptime), (2, NOW + 20));
    assert_eq!(get(&ns, b"k", NOW + 20), None);
}

#[test]
fn vivify_on_miss_wins_once() {
    let ns = ns();
    let viv = GetOpts {
        vivify: Some(NOW + 30),
        ..GetOpts::default()
    };
    let g = get_with(&ns, b"k", NOW, &viv).unwrap();
    assert_eq!(g.value, b"");
    assert!(g.gf.won && !g.gf.win_sent && !g.gf.hit_before);
    assert_eq!(g.exptime, NOW + 30);
    let g = get_with(&ns, b"k", NOW, &viv).unwrap();
    assert!(!g.gf.won && g.gf.win_sent);
    // the winner fills it in; the new item has no token
    set(&ns, b"k", b"filled", 0, NOW);
    let g = get_with(&ns, b"k", NOW, &viv).unwrap();
    assert!(!g.gf.won && !g.gf.win_sent);
}

#[test]
fn recache_below_wins_when_ttl_is_low() {
    let ns = ns();
    set(&ns, b"k", b"v", NOW + 100, NOW);
    let r = GetOpts {
        recache_below: Some(30),
        ..GetOpts::default()
    };
    assert!(!get_with(&ns, b"k", NOW, &r).unwrap().gf.won, "100s left");
    let g = get_with(&ns, b"k", NOW + 80, &r).unwrap();
    assert!(g.gf.won && !g.gf.win_sent && g.win_sent);
    let g = get_with(&ns, b"k", NOW + 81, &r).unwrap();
    assert!(!g.gf.won && g.gf.win_sent);
    set(&ns, b"never", b"v", 0, NOW);
    assert!(
        !get_with(&ns, b"never", NOW, &r).unwrap().gf.won,
        "no TTL, no recache"
    );
}

fn arith(ns: &Namespace, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
    ns.arith(key, &ArithOpts::new(incr, delta), NOW)
}

fn value_of(o: ArithOutcome) -> u64 {
    match o {
        ArithOutcome::Value { value, .. } => value,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn incr_decr_basics_and_padding() {
    let ns = ns();
    assert_eq!(arith(&ns, b"n", true, 1), ArithOutcome::NotFound);
    ns.store(&StoreReq::new(StoreMode::Set, b"n", b"10", 5, 0), NOW);
    assert_eq!(value_of(arith(&ns, b"n", false, 1)), 9);
    assert_eq!(
        get(&ns, b"n", NOW).unwrap(),
        b"9 ",
        "memcached pads in place"
    );
    assert_eq!(value_of(arith(&ns, b"n", true, 91)), 100);
    let g = get_with(&ns, b"n", NOW, &GetOpts::default()).unwrap();
    assert_eq!(
        (g.value.as_slice(), g.flags),
        (&b"100"[..], 5),
        "grown value keeps flags"
    );
    assert_eq!(
        value_of(arith(&ns, b"n", false, 1000)),
        0,
        "decr floors at 0"
    );
    assert_eq!(get(&ns, b"n", NOW).unwrap(), b"0  ");
    set(&ns, b"n", b"18446744073709551615", 0, NOW);
    assert_eq!(value_of(arith(&ns, b"n", true, 2)), 1, "incr wraps");
    assert_eq!(get(&ns, b"n", NOW).unwrap(), b"1                   ");
    assert_eq!(
        value_of(arith(&ns, b"n", true, 1)),
        2,
        "padded values parse"
    );
}

#[test]
fn incr_cas_changes_and_non_numeric() {
    let ns = ns();
    for bad in [
        &b"abc"[..],
        b"",
        b"12x",
        b"-1",
        b"18446744073709551616",
        b"123456789012345678901",
    ] {
        set(&ns, b"n", bad, 0, NOW);
        assert_eq!(
            arith(&ns, b"n", true, 1),
            ArithOutcome::NonNumeric,
            "{bad:?}"
        );
    }
    let cas = stored_cas(set(&ns, b"n", b"  41", 0, NOW));
    let ArithOutcome::Value { value, cas: c2, .. } = arith(&ns, b"n", true, 1) else {
        panic!()
    };
    assert_eq!(value, 42);
    assert!(c2 > cas, "in-place update changes the cas");
    let mut o = ArithOpts::new(true, 1);
    o.compare_cas = Some(cas);
    assert_eq!(ns.arith(b"n", &o, NOW), ArithOutcome::Exists);
    o.compare_cas = Some(c2);
    o.new_cas = Some(9999);
    o.touch = Some(NOW + 60);
    assert_eq!(
        ns.arith(b"n", &o, NOW),
        ArithOutcome::Value {
            value: 43,
            cas: 9999,
            exptime: NOW + 60
        }
    );
    assert_eq!(get(&ns, b"n", NOW + 60), None);
}

#[test]
fn arith_vivify_creates_the_initial_value() {
    let ns = ns();
    let mut o = ArithOpts::new(true, 5);
    o.vivify = Some((100, NOW + 10));
    let ArithOutcome::Value { value, exptime, .. } = ns.arith(b"n", &o, NOW) else {
        panic!()
    };
    assert_eq!((value, exptime), (100, NOW + 10));
    assert_eq!(get(&ns, b"n", NOW).unwrap(), b"100");
    assert_eq!(value_of(ns.arith(b"n", &o, NOW)), 105);
}

#[test]
fn too_large_values() {
    let cfg = StoreConfig {
        item_size_max: 1024,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 1 << 20);
    set(&ns, b"k", b"small", 0, NOW);
    assert_eq!(set(&ns, b"k", &[0u8; 1025], 0, NOW), StoreOutcome::TooLarge);
    assert_eq!(
        get(&ns, b"k", NOW),
        None,
        "a failed set removes the old value"
    );
    stored_cas(set(&ns, b"k", &[0u8; 1024], 0, NOW));
    // larger than the namespace budget
    let cfg = StoreConfig {
        item_size_max: 8 << 20,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 1 << 20);
    assert_eq!(
        set(&ns, b"big", &vec![0u8; 2 << 20], 0, NOW),
        StoreOutcome::TooLarge
    );
    let long_key = [b'k'; 251];
    assert_eq!(set(&ns, &long_key, b"v", 0, NOW), StoreOutcome::TooLarge);
}

#[test]
fn cas_disabled_reports_zero() {
    let cfg = StoreConfig {
        use_cas: false,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 8 << 20);
    assert_eq!(
        set(&ns, b"k", b"v", 0, NOW),
        StoreOutcome::Stored { cas: 0 }
    );
    assert_eq!(
        get_with(&ns, b"k", NOW, &GetOpts::default()).unwrap().cas,
        0
    );
    let mut r = req(StoreMode::Set, b"k", b"w");
    r.compare_cas = Some(1);
    assert_eq!(ns.store(&r, NOW), StoreOutcome::Exists);
    assert!(matches!(
        arith(&ns, b"k", true, 1),
        ArithOutcome::NonNumeric
    ));
}

#[test]
fn jumbo_items_get_their_own_segment() {
    let cfg = StoreConfig {
        item_size_max: 4 << 20,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 16 << 20);
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    stored_cas(set(&ns, b"big", &big, 0, NOW));
    set(&ns, b"small", b"v", 0, NOW);
    assert_eq!(get(&ns, b"big", NOW).unwrap(), big);
    let st = ns.stats();
    assert!(st.segments_bytes >= 3 << 20 && st.segments_bytes <= ns.budget());
    // replacing it frees the jumbo segment right away
    set(&ns, b"big", b"tiny now", 0, NOW);
    assert!(ns.stats().segments_bytes < 2 << 20);
    // jumbo items evict older data when the budget is full
    for i in 0..20 {
        let key = format!("big{i}");
        stored_cas(set(&ns, key.as_bytes(), &big, 0, NOW));
        assert!(ns.stats().segments_bytes <= ns.budget());
        assert_eq!(get(&ns, key.as_bytes(), NOW).unwrap().len(), big.len());
    }
    assert!(ns.stats().evictions > 0);
    super::tests_model::check_invariants(&ns);
}

#[test]
fn no_eviction_mode_returns_out_of_memory() {
    let cfg = StoreConfig {
        evict: false,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 1 << 20);
    let value = [b'v'; 1000];
    let mut stored = 0;
    let mut oom = false;
    for i in 0..5000 {
        match set(&ns, format!("k{i}").as_bytes(), &value, 0, NOW) {
            StoreOutcome::Stored { .. } => stored += 1,
            StoreOutcome::OutOfMemory => {
                oom = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(oom && stored > 100, "stored {stored}");
    let st = ns.stats();
    assert!(st.segments_bytes <= ns.budget());
    assert_eq!((st.evictions, st.curr_items), (0, stored));
    for i in 0..stored {
        assert!(
            get(&ns, format!("k{i}").as_bytes(), NOW).is_some(),
            "k{i} kept"
        );
    }
    super::tests_model::check_invariants(&ns);
}

#[test]
fn dump_lists_live_items() {
    let ns = ns();
    set(&ns, b"a", b"1", 0, NOW);
    set(&ns, b"b", b"22", NOW + 5, NOW);
    set(&ns, b"c", b"333", NOW + 1, NOW);
    ns.delete(b"a", &DeleteOpts::default(), NOW);
    let mut seen = Vec::new();
    ns.dump(0, NOW + 1, |k, len, exp| seen.push((k.to_vec(), len, exp)));
    assert_eq!(seen, vec![(b"b".to_vec(), 2, NOW + 5)]);
    for i in 0..50 {
        set(&ns, format!("k{i}").as_bytes(), b"v", 0, NOW);
    }
    let mut n = 0;
    ns.dump(10, NOW, |_, _, _| n += 1);
    assert_eq!(n, 10);
}

#[test]
fn many_keys_survive_table_growth() {
    let ns = ns();
    for i in 0..50_000u32 {
        stored_cas(set(&ns, &i.to_le_bytes(), &i.to_be_bytes(), 0, NOW));
    }
    for i in 0..50_000u32 {
        assert_eq!(get(&ns, &i.to_le_bytes(), NOW).unwrap(), i.to_be_bytes());
    }
    assert_eq!(ns.stats().curr_items, 50_000);
    super::tests_model::check_invariants(&ns);
}
