//! Purging an app: everything of it goes (keys, holds by id, usage, unshared content files),
//! other apps keep theirs, purges are idempotent and survive a reopen, and the store keeps
//! serving other apps while a large purge runs.

use std::collections::HashSet;

use super::*;

fn put(s: &Store, app: &str, bucket: &str, key: &str, data: &[u8]) -> ObjectInfo {
    s.put_object(app, bucket, key, ObjectOptions::default(), data)
        .unwrap()
}

#[test]
fn purge_removes_everything_of_one_app_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let small = content(1, 100);
    let large = content(2, 4096 * 3);
    let shared = content(3, 5000);
    let blob_only = content(4, 300);
    put(&s, "a", "b1", "small", &small);
    put(&s, "a", "b1", "large", &large);
    put(&s, "a", "b2", "shared", &shared);
    put(&s, "a", "b2", "again", &small); // a second key on the same content
    let blob = s.write("a", &blob_only).unwrap();
    let large_id = s.write("a", &large).unwrap(); // held by key and by id
                                                  // b holds the shared content too, and has its own data.
    put(&s, "b", "x", "shared", &shared);
    let b_own = content(5, 2000);
    put(&s, "b", "x", "own", &b_own);
    let b_blob = s.write("b", &blob_only).unwrap();
    let a_used = s.usage("a").used;
    let b_used = s.usage("b").used;
    assert_eq!(
        a_used,
        (small.len() + large.len() + shared.len() + blob_only.len()) as u64
    );

    // Small steps, so the purge takes several transactions.
    let r = s.purge_app_in_steps("a", 2).unwrap();
    assert_eq!((r.keys, r.blobs, r.bytes), (4, 2, a_used));
    assert_eq!(r.objects(), 6);
    assert!(r.steps > 2, "{r:?}");

    assert!(s.list_buckets("a", None, 100).unwrap().is_empty());
    assert!(matches!(
        s.get_object("a", "b1", "small"),
        Err(Error::NotFound)
    ));
    for id in [blob, large_id, sha(&shared), sha(&small)] {
        assert!(matches!(s.stat("a", &id), Err(Error::NotFound)), "{id}");
    }
    assert_eq!(s.usage("a").used, 0);
    // The large content only a held is collected; the shared one stays for b.
    assert!(!s.paths().content(&large_id).exists());
    assert!(s.paths().content(&sha(&shared)).exists());

    // b is untouched, including content it shares with a.
    assert_eq!(s.usage("b").used, b_used);
    assert_eq!(read_all(&s, "b", &sha(&shared)).unwrap(), shared);
    assert_eq!(read_all(&s, "b", &b_blob).unwrap(), blob_only);
    assert_eq!(read_all(&s, "b", &sha(&b_own)).unwrap(), b_own);
    assert_eq!(s.list_keys("b", "x", None, 10).unwrap(), ["own", "shared"]);

    // Idempotent.
    let again = s.purge_app("a").unwrap();
    assert_eq!((again.objects(), again.bytes, again.steps), (0, 0, 1));

    // A new app of the same name starts with nothing and is charged from zero.
    put(&s, "a", "b1", "small", &small);
    assert_eq!(s.usage("a").used, small.len() as u64);
    assert!(matches!(s.stat("a", &blob), Err(Error::NotFound)));
    s.purge_app("a").unwrap();

    // The purge is durable: after a reopen a holds nothing and b everything.
    s.close();
    let s = open(dir.path());
    assert_eq!(s.usage("a").used, 0);
    assert_eq!(s.usage("b").used, b_used);
    assert!(s.list_buckets("a", None, 100).unwrap().is_empty());
    assert_eq!(read_all(&s, "b", &sha(&shared)).unwrap(), shared);
}

#[test]
fn purged_small_objects_become_dead_space_for_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Fill more than one volume (64 KiB each in tests) with a's small objects.
    for i in 0..200u64 {
        put(&s, "a", "logs", &format!("k{i}"), &content(100 + i, 900));
    }
    put(&s, "b", "keep", "one", &content(7, 900));
    let volumes_before = std::fs::read_dir(&s.paths().volumes).unwrap().count();
    assert!(volumes_before > 1);
    let r = s.purge_app("a").unwrap();
    assert_eq!(r.keys, 200);
    let report = s.compact(0.5, &|| false).unwrap();
    assert!(report.volumes >= 1, "{report:?}");
    assert_eq!(
        read_all(&s, "b", &sha(&content(7, 900))).unwrap(),
        content(7, 900)
    );
}

#[test]
fn other_apps_keep_working_during_a_large_purge() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let n = 3000u64;
    let ops: Vec<_> = (0..n).map(|i| i.to_be_bytes()).collect();
    std::thread::scope(|sc| {
        for chunk in ops.chunks(500) {
            let s = s.clone();
            sc.spawn(move || {
                for i in chunk {
                    s.put_object("a", "bulk", &hex::encode(i), ObjectOptions::default(), i)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.list_keys("a", "bulk", None, 10_000).unwrap().len(),
        n as usize
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (report, written) = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let data = content(10_000 + written, 64);
                let info = put(&s, "b", "live", &format!("k{written}"), &data);
                assert_eq!(read_all(&s, "b", &info.id).unwrap(), data);
                written += 1;
            }
            written
        });
        let report = s.purge_app_in_steps("a", 100).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (report, writer.join().unwrap())
    });
    assert_eq!(report.keys, n);
    assert!(report.steps >= 30, "{report:?}");
    assert!(written > 0);
    assert!(s.list_keys("a", "bulk", None, 10).unwrap().is_empty());
    assert_eq!(s.usage("a").used, 0);
    assert_eq!(
        s.list_keys("b", "live", None, 100_000).unwrap().len(),
        written as usize
    );
}

const PURGE_DIR: &str = "BLOB_TEST_PURGE_DIR";

/// What key `i` of the crash test's app `a` stores: small ones in volumes, every fifth one
/// large (a content file); every seventh is shared with app `b`.
fn purge_item(i: u64) -> Vec<u8> {
    let seed = if i.is_multiple_of(7) { 7 } else { 1000 + i };
    content(seed, if i.is_multiple_of(5) { 3000 } else { 200 })
}

#[test]
fn a_purge_cut_by_sigkill_leaves_consistent_metadata_and_finishes_on_retry() {
    if let Ok(dir) = std::env::var(PURGE_DIR) {
        // The child: purge in small steps until killed.
        let s = open(Path::new(&dir));
        println!("START");
        s.purge_app_in_steps("a", 10).unwrap();
        println!("DONE");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = 2000u64;
    {
        let s = open(dir.path());
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let s = &s;
                sc.spawn(move || {
                    for i in (t..n).step_by(4) {
                        put(
                            s,
                            "a",
                            &format!("b{}", i % 3),
                            &format!("k{i}"),
                            &purge_item(i),
                        );
                    }
                });
            }
        });
        s.write("a", &content(99, 5000)).unwrap();
        put(&s, "b", "x", "shared", &content(7, 200));
        put(&s, "b", "x", "own", &content(8, 4000));
        s.close();
    }
    let dir_s = dir.path().to_str().unwrap().to_string();
    let mut child = spawn_child(
        "store::tests::purge::a_purge_cut_by_sigkill_leaves_consistent_metadata_and_finishes_on_retry",
        &[(PURGE_DIR, &dir_s)],
    );
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let got = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(got > 0, "the child ended before starting its purge");
        if line.contains("START") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(40));
    let _ = child.kill();
    let _ = child.wait();

    let s = open(dir.path());
    // Whatever is left of a is whole: every remaining key reads back, and a's usage is
    // exactly the distinct content it still holds.
    let mut left = 0u64;
    let mut held = HashSet::new();
    for b in s.list_buckets("a", None, 100).unwrap() {
        for k in s.list_keys("a", &b, None, 10_000).unwrap() {
            let i: u64 = k[1..].parse().unwrap();
            let data = purge_item(i);
            assert_eq!(read_all(&s, "a", &sha(&data)).unwrap(), data);
            if held.insert(sha(&data)) {
                assert!(s.stat("a", &sha(&data)).is_ok());
            }
            left += 1;
        }
    }
    let direct = sha(&content(99, 5000));
    let mut expected: u64 = held.iter().map(|id| s.stat("a", id).unwrap()).sum();
    if s.stat("a", &direct).is_ok() {
        expected += 5000;
    }
    assert_eq!(s.usage("a").used, expected, "{left} keys left");
    eprintln!("after SIGKILL: {left} of {n} keys of a left");
    // b is untouched.
    assert_eq!(
        read_all(&s, "b", &sha(&content(7, 200))).unwrap(),
        content(7, 200)
    );
    assert_eq!(
        read_all(&s, "b", &sha(&content(8, 4000))).unwrap(),
        content(8, 4000)
    );
    // Purging again finishes the job.
    let r = s.purge_app("a").unwrap();
    assert_eq!(r.keys, left);
    assert_eq!(s.usage("a").used, 0);
    assert!(s.list_buckets("a", None, 100).unwrap().is_empty());
    assert!(matches!(s.stat("a", &direct), Err(Error::NotFound)));
    // Only b's large content file is left on disk.
    assert_eq!(count_files(&s.paths().objects), 1);
    s.close();
    // And after yet another reopen (its recovery sweeps unreferenced content files).
    let s = open(dir.path());
    assert_eq!(s.usage("a").used, 0);
    assert_eq!(
        read_all(&s, "b", &sha(&content(7, 200))).unwrap(),
        content(7, 200)
    );
}
