//! Many writers at once: exact quotas, group commit, GC racing new writes of the same content.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::{Rng, SeedableRng};

use super::*;

#[test]
fn concurrent_writers_never_exceed_the_quota() {
    for size in [700usize, 30_000] {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let limit = 10 * size as u64 + size as u64 / 2;
        s.set_quota("q", Some(limit));
        let stop = AtomicBool::new(false);
        let (ok, over) = std::thread::scope(|sc| {
            let watcher = sc.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let u = s.usage("q");
                    assert!(u.used + u.reserved <= limit, "{u:?}");
                    assert!(u.used <= limit);
                }
            });
            let writers: Vec<_> = (0..16u64)
                .map(|t| {
                    let s = &s;
                    sc.spawn(move || {
                        let (mut ok, mut over) = (0, 0);
                        for j in 0..5 {
                            match s.write("q", &content(t * 100 + j, size)) {
                                Ok(_) => ok += 1,
                                Err(Error::QuotaExceeded { limit: l }) if l == limit => over += 1,
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (ok, over)
                    })
                })
                .collect();
            let r = writers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            stop.store(true, Ordering::Relaxed);
            watcher.join().unwrap();
            r
        });
        assert_eq!((ok, over), (10, 70), "size {size}");
        assert_eq!(s.usage("q").used, 10 * size as u64);
        assert_eq!(s.usage("q").reserved, 0);
        assert_eq!(count_files(&s.paths().tmp), 0);
        s.close();
        assert_eq!(open(dir.path()).usage("q").used, 10 * size as u64);
    }
}

#[test]
fn usage_matches_what_is_referenced_after_a_concurrent_mix() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let sizes: Vec<usize> = (0..10)
        .map(|i| [50, 900, 1500, 20_000][i % 4] + i)
        .collect();
    std::thread::scope(|sc| {
        for t in 0..8u64 {
            let (s, sizes) = (&s, &sizes);
            sc.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                for _ in 0..40 {
                    let key = format!("k{}", rng.gen_range(0..20));
                    if rng.gen_bool(0.25) {
                        match s.delete_object("m", "b", &key) {
                            Ok(()) | Err(Error::NotFound) => {}
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        let c = rng.gen_range(0..10);
                        let data = content(c as u64, sizes[c]);
                        s.put_object("m", "b", &key, ObjectOptions::default(), &data)
                            .unwrap();
                    }
                }
            });
        }
    });
    let expect = |s: &Store| {
        let keys = s.list_keys("m", "b", None, 100).unwrap();
        let mut ids = HashMap::new();
        for k in keys {
            let info = s.get_object("m", "b", &k).unwrap();
            ids.insert(info.id, info.size);
            assert_eq!(read_all(s, "m", &info.id).unwrap().len() as u64, info.size);
        }
        (ids.len(), ids.values().sum::<u64>())
    };
    let (n, bytes) = expect(&s);
    assert_eq!(s.usage("m").used, bytes);
    let files = count_files(&s.paths().objects);
    assert!(
        files <= n,
        "{files} content files for {n} distinct contents: garbage left"
    );
    s.close();
    let s = open(dir.path());
    assert_eq!(s.usage("m").used, bytes);
    assert_eq!(expect(&s), (n, bytes));
}

#[test]
fn collecting_content_never_races_a_new_write_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let large = content(1, 9_000);
    let small = content(2, 300);
    std::thread::scope(|sc| {
        for t in 0..6 {
            let (s, large, small) = (&s, &large, &small);
            sc.spawn(move || {
                let app = format!("g{t}");
                for i in 0..40 {
                    let data = if (i + t) % 2 == 0 { large } else { small };
                    let id = s.write(&app, data).unwrap();
                    assert_eq!(&read_all(s, &app, &id).unwrap(), data);
                    s.delete_blob(&app, &id).unwrap();
                }
            });
        }
    });
    assert_eq!(count_files(&s.paths().objects), 0);
    for t in 0..6 {
        assert_eq!(s.usage(&format!("g{t}")).used, 0);
    }
}

#[test]
fn concurrent_small_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let before = s.commit_batches();
    std::thread::scope(|sc| {
        for t in 0..32u64 {
            let s = &s;
            sc.spawn(move || {
                for j in 0..20 {
                    let data = content(t * 1000 + j, 512);
                    let id = s.write("a", &data).unwrap();
                    assert_eq!(read_all(s, "a", &id).unwrap(), data);
                }
            });
        }
    });
    let batches = s.commit_batches() - before;
    assert!(
        batches * 2 <= 640,
        "640 writes took {batches} commits: no grouping"
    );
    assert_eq!(s.usage("a").used, 640 * 512);
}

/// Readers share one database snapshot that the checkpointer replaces after each commit: a
/// read must never see a version older than one acknowledged before it began, across many
/// checkpoints (every 50 ms here) and the drop of each frozen layer.
#[test]
fn reads_never_go_back_across_checkpoints() {
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let acked: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    std::thread::scope(|sc| {
        for (k, slot) in acked.iter().enumerate() {
            let (s, done) = (&s, &done);
            sc.spawn(move || {
                let mut v = 1u64;
                while !done.load(Ordering::Relaxed) {
                    let data = v.to_le_bytes().repeat(1 + k * 40);
                    s.put_object("a", "b", &format!("k{k}"), ObjectOptions::default(), &data)
                        .unwrap();
                    slot.store(v, Ordering::SeqCst);
                    v += 1;
                }
            });
        }
        for _ in 0..3 {
            let (s, acked, done) = (&s, &acked, &done);
            sc.spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for (k, slot) in acked.iter().enumerate() {
                        let at_least = slot.load(Ordering::SeqCst);
                        if at_least == 0 {
                            continue;
                        }
                        let (info, r) = s.open_object("a", "b", &format!("k{k}"), None).unwrap();
                        let data = read_to_end(r).unwrap();
                        assert_eq!(info.size, data.len() as u64);
                        let seen = u64::from_le_bytes(data[..8].try_into().unwrap());
                        assert!(
                            seen >= at_least,
                            "k{k}: read {seen} after {at_least} was acknowledged"
                        );
                        reads += 1;
                    }
                }
                assert!(reads > 100, "only {reads} reads");
            });
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        done.store(true, Ordering::Relaxed);
    });
}
