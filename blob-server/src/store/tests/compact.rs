//! Volume compaction: dead records give their disk space back, live ones keep their bytes,
//! through restarts and while other requests run.

use super::*;

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// 400 small blobs of 500 bytes (several 64 KiB volumes); returns (id, data) of each.
fn fill(s: &Store) -> Vec<(ContentId, Vec<u8>)> {
    (0..400u64)
        .map(|i| {
            let data = content(1000 + i, 500);
            (s.write("a", &data).unwrap(), data)
        })
        .collect()
}

#[test]
fn compaction_reclaims_dead_volumes_and_keeps_live_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let all = fill(&s);
    // Named objects share content with blobs: one of them keeps its content alive.
    s.put_object("a", "b", "k", ObjectOptions::default(), &all[3].1)
        .unwrap();
    let before = dir_bytes(&s.paths().volumes);
    let (keep, gone): (Vec<_>, Vec<_>) = all.iter().enumerate().partition(|(i, _)| i % 5 == 0);
    for (_, (id, _)) in &gone {
        s.delete_blob("a", id).unwrap();
    }
    let used = s.usage("a").used;
    // Nothing dead enough at 100%: no volume is wholly dead while any record lives.
    let report = s.compact(0.5, &|| false).unwrap();
    assert!(report.volumes >= 2, "{report:?}");
    assert!(report.moved > 0);
    assert!(!report.interrupted);
    let after = dir_bytes(&s.paths().volumes);
    assert!(
        after < before / 2,
        "volumes took {before} bytes before and {after} after"
    );
    for (_, (id, data)) in &keep {
        assert_eq!(&read_all(&s, "a", id).unwrap(), data);
    }
    let obj = s.open_object("a", "b", "k", None).unwrap().0;
    assert_eq!(obj.id, all[3].0);
    for (_, (id, _)) in &gone {
        if *id != all[3].0 {
            assert!(matches!(s.read("a", id), Err(Error::NotFound)));
        }
    }
    assert_eq!(s.usage("a").used, used);
    // A second pass finds nothing more to do; a restart keeps everything.
    assert_eq!(s.compact(0.5, &|| false).unwrap().volumes, 0);
    s.close();
    let s = open(dir.path());
    for (_, (id, data)) in &keep {
        assert_eq!(&read_all(&s, "a", id).unwrap(), data);
    }
    assert_eq!(s.usage("a").used, used);
    // New writes still work after the moves.
    let fresh = content(99_999, 700);
    let id = s.write("a", &fresh).unwrap();
    assert_eq!(read_all(&s, "a", &id).unwrap(), fresh);
    s.close();
}

#[test]
fn compaction_races_writes_deletes_and_reads_safely() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let all = fill(&s);
    for (id, _) in all.iter().skip(1).step_by(2) {
        s.delete_blob("a", id).unwrap();
    }
    let survivors: Vec<_> = all.iter().step_by(2).cloned().collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Readers check bytes all along; a writer/deleter churns.
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (id, data) in survivors.iter().step_by(7) {
                    assert_eq!(&read_all(&s, "a", id).unwrap(), data);
                    reads += 1;
                }
            }
            reads
        });
        let churn = scope.spawn(|| {
            for i in 0..200u64 {
                let data = content(50_000 + i, 300);
                let id = s.write("c", &data).unwrap();
                if i % 2 == 0 {
                    s.delete_blob("c", &id).unwrap();
                }
            }
        });
        for _ in 0..3 {
            s.compact(0.3, &|| false).unwrap();
        }
        churn.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    for (id, data) in &survivors {
        assert_eq!(&read_all(&s, "a", id).unwrap(), data);
    }
    s.close();
    let s = open(dir.path());
    for (id, data) in &survivors {
        assert_eq!(&read_all(&s, "a", id).unwrap(), data);
    }
    s.close();
}

#[test]
fn a_stop_request_interrupts_compaction_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let all = fill(&s);
    for (id, _) in all.iter().skip(1) {
        s.delete_blob("a", id).unwrap();
    }
    let report = s.compact(0.1, &|| true).unwrap();
    assert!(report.interrupted);
    assert_eq!(read_all(&s, "a", &all[0].0).unwrap(), all[0].1);
    s.close();
}
