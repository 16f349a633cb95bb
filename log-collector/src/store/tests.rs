//! Store tests against a real temporary directory.

use std::time::Duration;

use super::read::{self, Filter, Order, Query};
use super::*;

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        dir: dir.to_owned(),
        segment_bytes: 64 << 10,
        segment_age: Duration::from_secs(3600),
        commit_interval: Duration::from_millis(5),
        max_buffer_bytes: 1 << 20,
    }
}

fn limits(bytes: u64) -> LimitsFn {
    Arc::new(move |_| Limits {
        bytes,
        retention: Duration::from_secs(3600),
    })
}

fn batch(from: u64, n: u64) -> EventBatch {
    let mut b = EventBatch::default();
    for i in from..from + n {
        let level = (i % 8) as u8;
        b.push(level, |out| {
            out.extend_from_slice(
                format!(
                    "{{\"logger\":\"app.l{}\",\"message\":\"event {i} {}\"}}",
                    i % 3,
                    "x".repeat(100)
                )
                .as_bytes(),
            )
        });
    }
    b
}

fn all(app: &AppShared, order: Order) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = read::query(
            app,
            &Query {
                filter: Filter::default(),
                order,
                cursor,
                limit: 37,
                max_scan_bytes: 1 << 20,
            },
        )
        .unwrap();
        out.extend(page.events.iter().map(|f| f.seq));
        if !page.more {
            return out;
        }
        cursor = page.cursor;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_events_are_readable_in_both_orders_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    let mut last = 0;
    for k in 0..20 {
        let r = store
            .submit("a1", batch(k * 100, 100), true)
            .await
            .unwrap()
            .unwrap();
        last = r.await.unwrap().unwrap().last_seq;
    }
    assert_eq!(last, 2000);
    let app = store.app("a1");
    assert!(app.segments.lock().len() > 3, "rotated by size");
    let asc = all(&app, Order::Asc);
    assert_eq!(asc, (1..=2000).collect::<Vec<_>>());
    let desc = all(&app, Order::Desc);
    assert_eq!(desc, (1..=2000).rev().collect::<Vec<_>>());
    store.close();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    let app = store.app("a1");
    assert_eq!(*app.durable.borrow(), 2000);
    assert_eq!(all(&app, Order::Asc).len(), 2000);
    let r = store
        .submit("a1", batch(0, 1), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.await.unwrap().unwrap().last_seq, 2001);
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    let r = store
        .submit("a1", batch(0, 300), true)
        .await
        .unwrap()
        .unwrap();
    r.await.unwrap().unwrap();
    let app = store.app("a1");
    let q = |filter: Filter, order| {
        read::query(
            &app,
            &Query {
                filter,
                order,
                cursor: None,
                limit: 1000,
                max_scan_bytes: 1 << 30,
            },
        )
        .unwrap()
        .events
    };
    let errors = q(
        Filter {
            max_severity: Some(3),
            ..Filter::default()
        },
        Order::Asc,
    );
    assert_eq!(errors.len(), 300 / 8 * 4 + 4);
    let l1 = q(
        Filter {
            logger: Some("app.l1".into()),
            ..Filter::default()
        },
        Order::Desc,
    );
    assert_eq!(l1.len(), 100);
    assert!(l1.windows(2).all(|w| w[0].seq > w[1].seq));
    let parent = q(
        Filter {
            logger: Some("app".into()),
            ..Filter::default()
        },
        Order::Asc,
    );
    assert_eq!(parent.len(), 300);
    let grep = q(
        Filter {
            grep: Some("EVENT 17 ".into()),
            ..Filter::default()
        },
        Order::Asc,
    );
    assert!(grep.is_empty(), "capitals make the match case-sensitive");
    let grep = q(
        Filter {
            grep: Some("event 17 ".into()),
            ..Filter::default()
        },
        Order::Asc,
    );
    assert_eq!(grep.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&grep[0].to_json()).unwrap();
    assert_eq!(v["seq"], 18);
    assert!(v["received"].as_str().unwrap().ends_with('Z'));
    let now = crate::protocol::time::now_nanos();
    assert!(q(
        Filter {
            since: Some(now + 1_000_000_000),
            ..Filter::default()
        },
        Order::Asc
    )
    .is_empty());
    assert_eq!(
        q(
            Filter {
                until: Some(now + 1_000_000_000),
                since: Some(now - 60_000_000_000),
                ..Filter::default()
            },
            Order::Desc
        )
        .len(),
        300
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(300 << 10)).unwrap();
    for k in 0..40 {
        let r = store
            .submit("a1", batch(k * 100, 100), true)
            .await
            .unwrap()
            .unwrap();
        r.await.unwrap().unwrap();
    }
    // Maintenance runs about once a second.
    let app = store.app("a1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.disk_bytes.load(Ordering::Relaxed) > 300 << 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asc = all(&app, Order::Asc);
    assert_eq!(*asc.last().unwrap(), 4000);
    assert!(asc.len() < 4000 && asc.len() > 1000, "{}", asc.len());
    assert!(
        asc.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps within what is kept"
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_cut_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    let r = store
        .submit("a1", batch(0, 50), true)
        .await
        .unwrap()
        .unwrap();
    r.await.unwrap().unwrap();
    store.close();
    let seg_dir = dir.path().join("apps/a1");
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Cut the last record in half.
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 40)
        .unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    assert!(
        store
            .counters
            .recovered_truncated_bytes
            .load(Ordering::Relaxed)
            > 0
    );
    let app = store.app("a1");
    assert_eq!(*app.durable.borrow(), 49);
    let r = store
        .submit("a1", batch(0, 1), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.await.unwrap().unwrap().last_seq, 50);
    assert_eq!(all(&app, Order::Asc), (1..=50).collect::<Vec<_>>());
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_one_apps_events_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    for k in 0..10 {
        for app in ["a", "b"] {
            let r = store
                .submit(app, batch(k * 100, 100), true)
                .await
                .unwrap()
                .unwrap();
            r.await.unwrap().unwrap();
        }
    }
    // A forwarding cursor of the app goes with it.
    let cursors = dir.path().join("forward").join("nats");
    std::fs::create_dir_all(&cursors).unwrap();
    std::fs::write(cursors.join("a"), "1000\n").unwrap();
    std::fs::write(cursors.join("b"), "1000\n").unwrap();
    let old = store.app("a");
    let mut rx = old.durable.subscribe();
    rx.borrow_and_update();
    assert!(old.segments.lock().len() > 1);

    let s2 = store.clone();
    let report = tokio::task::spawn_blocking(move || s2.purge("a"))
        .await
        .unwrap()
        .unwrap();
    assert!(report.segments > 1, "{report:?}");
    assert!(report.bytes > 100_000, "{report:?}");
    // Holders of the old state see it purged (tails end), and were woken.
    assert!(old.is_purged());
    assert!(rx.has_changed().unwrap());
    assert!(all(&old, Order::Asc).is_empty());
    // The app has no events; b keeps all of its own.
    assert!(all(&store.app("a"), Order::Asc).is_empty());
    assert_eq!(*store.app("a").durable.borrow(), 0);
    assert_eq!(all(&store.app("b"), Order::Asc).len(), 1000);
    assert!(!dir.path().join("apps").join("a").exists());
    assert!(!cursors.join("a").exists());
    assert!(cursors.join("b").exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("purging"))
            .unwrap()
            .count(),
        0
    );

    // Idempotent.
    let s2 = store.clone();
    let again = tokio::task::spawn_blocking(move || s2.purge("a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, PurgeReport::default());

    // The same name logs again: a new log from sequence 1.
    let r = store.submit("a", batch(0, 5), true).await.unwrap().unwrap();
    assert_eq!(r.await.unwrap().unwrap().last_seq, 5);
    assert_eq!(all(&store.app("a"), Order::Asc), vec![1, 2, 3, 4, 5]);
    store.close();

    // After a reopen: a has only its new events, b all of its own; a purge cut off by a crash
    // (its directory already under purging/) is finished at open.
    let leftover = dir.path().join("purging").join("x.1");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000001.seg"), b"junk").unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    assert_eq!(all(&store.app("a"), Order::Asc), vec![1, 2, 3, 4, 5]);
    assert_eq!(all(&store.app("b"), Order::Asc).len(), 1000);
    assert!(!leftover.exists());
    assert!(store.apps().iter().all(|(n, _)| n != "x"));
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_while_apps_keep_logging() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(cfg(dir.path()), limits(1 << 30)).unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for k in 0..200 {
                let r = store
                    .submit("busy", batch(k * 10, 10), true)
                    .await
                    .unwrap()
                    .unwrap();
                last = r.await.unwrap().unwrap().last_seq;
            }
            last
        })
    };
    for k in 0..5 {
        let r = store
            .submit("gone", batch(k * 100, 100), true)
            .await
            .unwrap()
            .unwrap();
        r.await.unwrap().unwrap();
        let s2 = store.clone();
        tokio::task::spawn_blocking(move || s2.purge("gone"))
            .await
            .unwrap()
            .unwrap();
        assert!(all(&store.app("gone"), Order::Asc).is_empty());
    }
    assert_eq!(writer.await.unwrap(), 2000);
    assert_eq!(all(&store.app("busy"), Order::Asc).len(), 2000);
    store.close();
}
