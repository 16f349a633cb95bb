//! Model-based test: random op sequences against a plain HashMap model, with the store's
//! internal invariants checked after every step (index <-> segment consistency, live
//! accounting, budget charge).

use std::collections::HashMap;

use proptest::prelude::*;

use super::item::DEAD;
use super::table::{off_of, pack, seg_of, KeyHash};
use super::tests::{store_ns, NOW};
use super::*;

/// Walk every shard and check the invariants the store relies on.
pub(super) fn check_invariants(ns: &Namespace) {
    let layout = ns.core.layout;
    let mut charged = 0u64;
    for i in 0..ns.shard_count() {
        let s = ns.shard(i).lock();
        let mut live = 0usize;
        let mut capacity = 0u64;
        for id in s.segs.ids() {
            let seg = s.segs.get(id);
            let (mut items, mut bytes, mut off) = (0u32, 0u32, 0usize);
            while off < seg.write as usize {
                let h = layout.read(&seg.data[off..]);
                if !h.has(DEAD) {
                    items += 1;
                    bytes += h.size() as u32;
                    let kh = KeyHash::new(ns.core.hash(h.key(&seg.data[off..])));
                    let entry = pack(kh.tag, id, off as u32);
                    assert!(
                        s.table.find_entry(kh, entry).is_some(),
                        "live item without entry"
                    );
                    assert!(h.exptime == 0 || seg.min_exp <= h.exptime, "min_exp bound");
                    assert!(seg.min_atime <= h.atime, "min_atime bound");
                }
                off += h.size();
            }
            assert_eq!(off, seg.write as usize, "items tile the segment");
            assert_eq!(
                (seg.live_items, seg.live_bytes),
                (items, bytes),
                "live accounting"
            );
            live += items as usize;
            capacity += seg.capacity() as u64;
        }
        assert_eq!(s.table.len(), live, "one entry per live item");
        for e in s.table.entries() {
            let h = layout.read(s.segs.item(seg_of(e), off_of(e)));
            assert!(!h.has(DEAD), "entry points at a dead item");
        }
        assert_eq!(s.segs.bytes, capacity);
        assert_eq!(
            ns.core.shard_bytes[i].load(std::sync::atomic::Ordering::Relaxed),
            capacity
        );
        charged += capacity;
    }
    assert_eq!(ns.memory_used(), charged, "budget charge matches segments");
    assert!(charged <= ns.budget());
}

#[derive(Debug, Clone)]
enum Op {
    Store {
        mode: StoreMode,
        key: usize,
        value: Vec<u8>,
        flags: u32,
        ttl: u32,
    },
    Cas {
        key: usize,
        value: Vec<u8>,
        good: bool,
    },
    Delete {
        key: usize,
    },
    Arith {
        key: usize,
        incr: bool,
        delta: u64,
    },
    Touch {
        key: usize,
        ttl: u32,
    },
    Get {
        key: usize,
    },
    Advance {
        secs: u32,
    },
    Maintain,
}

const KEYS: [&[u8]; 5] = [b"a", b"bb", b"counter", b"key:0001", b"k"];

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"0".to_vec()),
        Just(b"12".to_vec()),
        Just(b"99".to_vec()),
        Just(b"  7".to_vec()),
        Just(b"abc".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        (1usize..700, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn mode() -> impl Strategy<Value = StoreMode> {
    prop_oneof![
        3 => Just(StoreMode::Set),
        1 => Just(StoreMode::Add),
        1 => Just(StoreMode::Replace),
        1 => Just(StoreMode::Append),
        1 => Just(StoreMode::Prepend),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        6 => (mode(), key.clone(), value(), any::<u32>(), 0u32..6)
            .prop_map(|(mode, key, value, flags, ttl)| Op::Store { mode, key, value, flags, ttl }),
        2 => (key.clone(), value(), any::<bool>()).prop_map(|(key, value, good)| Op::Cas { key, value, good }),
        2 => key.clone().prop_map(|key| Op::Delete { key }),
        3 => (key.clone(), any::<bool>(), prop_oneof![0u64..200, Just(u64::MAX)])
            .prop_map(|(key, incr, delta)| Op::Arith { key, incr, delta }),
        1 => (key.clone(), 0u32..6).prop_map(|(key, ttl)| Op::Touch { key, ttl }),
        4 => key.prop_map(|key| Op::Get { key }),
        2 => (0u32..4).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Maintain),
    ]
}

#[derive(Debug, Clone)]
struct MItem {
    value: Vec<u8>,
    flags: u32,
    exptime: u32,
    cas: u64,
}

/// Independent reading of the counter rules for the values the generator makes: like
/// memcached's strtoull check, digits must be followed by a space or the end, and whatever
/// comes after that space is ignored ("9 0" counts as 9).
fn model_counter(v: &[u8]) -> Option<u64> {
    let space = |b: &u8| b" \t\n\x0b\x0c\r".contains(b);
    let start = v.iter().position(|b| !space(b)).unwrap_or(v.len());
    let digits = v[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &v[start + digits..];
    if digits == 0 || rest.first().is_some_and(|b| !space(b)) {
        return None;
    }
    std::str::from_utf8(&v[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

struct Model {
    items: HashMap<usize, MItem>,
    now: u32,
}

impl Model {
    fn live(&mut self, key: usize) -> Option<&mut MItem> {
        let now = self.now;
        if self
            .items
            .get(&key)
            .is_some_and(|it| it.exptime != 0 && it.exptime <= now)
        {
            self.items.remove(&key);
        }
        self.items.get_mut(&key)
    }

    fn exptime(&self, ttl: u32) -> u32 {
        if ttl == 0 {
            0
        } else {
            self.now + ttl - 1 // ttl 1 means "already expired"
        }
    }
}

fn run(ops: &[Op]) {
    let cfg = StoreConfig {
        shards: 2,
        segment_size: 4096,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 64 << 20);
    let mut m = Model {
        items: HashMap::new(),
        now: NOW,
    };
    for op in ops {
        let now = m.now;
        match op.clone() {
            Op::Store {
                mode,
                key,
                value,
                flags,
                ttl,
            } => {
                let exptime = m.exptime(ttl);
                let req = StoreReq::new(mode, KEYS[key], &value, flags, exptime);
                let got = ns.store(&req, now);
                let present = m.live(key).cloned();
                let expect_stored = match mode {
                    StoreMode::Set => true,
                    StoreMode::Add => present.is_none(),
                    _ => present.is_some(),
                };
                if !expect_stored {
                    assert_eq!(got, StoreOutcome::NotStored, "{op:?}");
                    continue;
                }
                let StoreOutcome::Stored { cas } = got else {
                    panic!("{op:?}: {got:?}")
                };
                let item = match (mode, present) {
                    (StoreMode::Append, Some(old)) => MItem {
                        value: [old.value, value].concat(),
                        cas,
                        ..old
                    },
                    (StoreMode::Prepend, Some(old)) => MItem {
                        value: [value, old.value].concat(),
                        cas,
                        ..old
                    },
                    _ => MItem {
                        value,
                        flags,
                        exptime,
                        cas,
                    },
                };
                if item.exptime != 0 && item.exptime <= now {
                    m.items.remove(&key);
                } else {
                    m.items.insert(key, item);
                }
            }
            Op::Cas { key, value, good } => {
                let present = m.live(key).cloned();
                let compare =
                    present
                        .as_ref()
                        .map_or(12345, |it| if good { it.cas } else { it.cas + 1 });
                let mut req = StoreReq::new(StoreMode::Set, KEYS[key], &value, 3, 0);
                req.compare_cas = Some(compare);
                let got = ns.store(&req, now);
                match present {
                    None => assert_eq!(got, StoreOutcome::NotFound),
                    Some(_) if !good => assert_eq!(got, StoreOutcome::Exists),
                    Some(_) => {
                        let StoreOutcome::Stored { cas } = got else {
                            panic!("{got:?}")
                        };
                        m.items.insert(
                            key,
                            MItem {
                                value,
                                flags: 3,
                                exptime: 0,
                                cas,
                            },
                        );
                    }
                }
            }
            Op::Delete { key } => {
                let got = ns.delete(KEYS[key], &DeleteOpts::default(), now);
                let want = match m.live(key) {
                    Some(_) => DeleteOutcome::Deleted,
                    None => DeleteOutcome::NotFound,
                };
                assert_eq!(got, want);
                m.items.remove(&key);
            }
            Op::Arith { key, incr, delta } => {
                let got = ns.arith(KEYS[key], &ArithOpts::new(incr, delta), now);
                let Some(it) = m.live(key) else {
                    assert_eq!(got, ArithOutcome::NotFound);
                    continue;
                };
                let Some(cur) = model_counter(&it.value) else {
                    assert_eq!(
                        got,
                        ArithOutcome::NonNumeric,
                        "value of {} bytes",
                        it.value.len()
                    );
                    continue;
                };
                let next = if incr {
                    cur.wrapping_add(delta)
                } else {
                    cur.saturating_sub(delta)
                };
                let ArithOutcome::Value {
                    value,
                    cas,
                    exptime,
                } = got
                else {
                    panic!("{got:?}")
                };
                assert_eq!((value, exptime), (next, it.exptime));
                let mut text = next.to_string().into_bytes();
                if text.len() <= it.value.len() {
                    text.resize(it.value.len(), b' ');
                }
                it.value = text;
                it.cas = cas;
            }
            Op::Touch { key, ttl } => {
                let exptime = m.exptime(ttl);
                let got = ns.touch(KEYS[key], exptime, now);
                match m.live(key) {
                    Some(it) => {
                        assert!(got);
                        it.exptime = exptime;
                    }
                    None => assert!(!got),
                }
            }
            Op::Get { key } => {
                let got = super::tests::get_with(&ns, KEYS[key], now, &GetOpts::default());
                match (m.live(key), got) {
                    (None, None) => {}
                    (Some(it), Some(g)) => {
                        assert_eq!(
                            (&g.value, g.flags, g.cas, g.exptime),
                            (&it.value, it.flags, it.cas, it.exptime)
                        );
                    }
                    (want, got) => panic!("{op:?}: model {want:?}, store {got:?}"),
                }
            }
            Op::Advance { secs } => m.now += secs,
            Op::Maintain => ns.maintain(now),
        }
        check_invariants(&ns);
    }
    // Final sweep over every key.
    for (key, name) in KEYS.iter().enumerate() {
        let got = super::tests::get(&ns, name, m.now);
        assert_eq!(got, m.live(key).map(|it| it.value.clone()), "final {key}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_hashmap_model(ops in proptest::collection::vec(op(), 1..250)) {
        run(&ops);
    }
}

#[derive(Debug, Clone)]
enum EvictOp {
    Set { key: usize, len: usize },
    Append { key: usize, len: usize },
    Delete { key: usize },
    Get { key: usize },
    Touch { key: usize },
    Advance,
    Maintain,
}

fn evict_op() -> impl Strategy<Value = EvictOp> {
    let key = 0usize..40;
    prop_oneof![
        8 => (key.clone(), prop_oneof![4 => 0usize..200, 1 => 200usize..3000, 1 => 3000usize..20_000])
            .prop_map(|(key, len)| EvictOp::Set { key, len }),
        2 => (key.clone(), 0usize..300).prop_map(|(key, len)| EvictOp::Append { key, len }),
        2 => key.clone().prop_map(|key| EvictOp::Delete { key }),
        6 => key.clone().prop_map(|key| EvictOp::Get { key }),
        1 => key.prop_map(|key| EvictOp::Touch { key }),
        1 => Just(EvictOp::Advance),
        1 => Just(EvictOp::Maintain),
    ]
}

/// Under eviction pressure an item may vanish, but a read never returns anything other than
/// the last value written, and the budget and index invariants always hold.
fn run_evicting(ops: &[EvictOp], evict: bool) {
    let cfg = StoreConfig {
        shards: 2,
        segment_size: 4096,
        evict,
        ..StoreConfig::default()
    };
    let (_s, ns) = store_ns(cfg, 48 << 10);
    let mut model: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut now = NOW;
    let mut version = 0u8;
    let key_of = |k: usize| format!("key-{k}").into_bytes();
    for op in ops {
        match *op {
            EvictOp::Set { key, len } => {
                version = version.wrapping_add(1);
                let value = vec![version; len];
                match set_plain(&ns, &key_of(key), &value, now) {
                    StoreOutcome::Stored { .. } => {
                        model.insert(key, value);
                    }
                    StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
                        model.remove(&key);
                    }
                    other => panic!("{op:?}: {other:?}"),
                }
            }
            EvictOp::Append { key, len } => {
                let tail = vec![b'+'; len];
                let k = key_of(key);
                let req = StoreReq::new(StoreMode::Append, &k, &tail, 0, 0);
                match ns.store(&req, now) {
                    StoreOutcome::Stored { .. } => {
                        let v = model
                            .get_mut(&key)
                            .expect("append hit a key the model lacks");
                        v.extend_from_slice(&tail);
                    }
                    StoreOutcome::NotStored => {
                        model.remove(&key);
                    }
                    // A failed append leaves the old value in place.
                    StoreOutcome::OutOfMemory => {}
                    other => panic!("{op:?}: {other:?}"),
                }
            }
            EvictOp::Delete { key } => {
                let got = ns.delete(&key_of(key), &DeleteOpts::default(), now);
                if got == DeleteOutcome::Deleted {
                    assert!(model.contains_key(&key), "deleted a key the model lacks");
                }
                model.remove(&key);
            }
            EvictOp::Get { key } => match super::tests::get(&ns, &key_of(key), now) {
                Some(v) => assert_eq!(Some(&v), model.get(&key), "{op:?}"),
                None => {
                    model.remove(&key);
                }
            },
            EvictOp::Touch { key } => {
                if !ns.touch(&key_of(key), 0, now) {
                    model.remove(&key);
                }
            }
            EvictOp::Advance => now += 1,
            EvictOp::Maintain => ns.maintain(now),
        }
        check_invariants(&ns);
    }
    if !evict {
        assert_eq!(ns.stats().evictions, 0);
    }
}

fn set_plain(ns: &Namespace, key: &[u8], value: &[u8], now: u32) -> StoreOutcome {
    ns.store(&StoreReq::new(StoreMode::Set, key, value, 0, 0), now)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn eviction_never_returns_wrong_values(ops in proptest::collection::vec(evict_op(), 1..400)) {
        run_evicting(&ops, true);
    }

    #[test]
    fn no_eviction_mode_never_returns_wrong_values(
        ops in proptest::collection::vec(evict_op(), 1..300)
    ) {
        run_evicting(&ops, false);
    }
}
