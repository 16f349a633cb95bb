//! Conditional writes and deletes (evaluated inside the commit), bucket listing, per-writer
//! size limits.

use super::*;

fn opts(condition: Condition) -> ObjectOptions {
    ObjectOptions {
        condition,
        ..Default::default()
    }
}

#[test]
fn create_only_and_update_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Update-only on a missing key fails, create-only succeeds once.
    let e = s
        .put_object("a", "b", "k", opts(Condition::Present), b"x")
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed));
    let v1 = s
        .put_object("a", "b", "k", opts(Condition::Absent), b"one")
        .unwrap();
    let e = s
        .put_object("a", "b", "k", opts(Condition::Absent), b"two")
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed));
    // If-Match with the current tag succeeds; with a stale one fails.
    let v2 = s
        .put_object("a", "b", "k", opts(Condition::Matches(vec![v1.id])), b"two")
        .unwrap();
    let e = s
        .put_object(
            "a",
            "b",
            "k",
            opts(Condition::Matches(vec![v1.id])),
            b"three",
        )
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed));
    let e = s
        .put_object("a", "b", "k", opts(Condition::NoneMatch(vec![v2.id])), b"3")
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed));
    assert_eq!(s.get_object("a", "b", "k").unwrap().id, v2.id);
    // A failed condition charged nothing.
    assert_eq!(s.usage("a").used, 3);
    assert_eq!(s.usage("a").reserved, 0);
    // Conditional delete.
    let e = s
        .delete_object_if("a", "b", "k", Condition::Matches(vec![v1.id]))
        .unwrap_err();
    assert!(matches!(e, Error::PreconditionFailed));
    s.delete_object_if("a", "b", "k", Condition::Matches(vec![v2.id]))
        .unwrap();
    assert_eq!(s.usage("a").used, 0);
    s.close();
}

#[test]
fn racing_create_only_writers_produce_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16u64)
            .map(|i| {
                let s = s.clone();
                scope.spawn(move || {
                    let data = content(i, 100 + i as usize * 200);
                    s.put_object("a", "b", "k", opts(Condition::Absent), &data)
                        .is_ok() as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
    let info = s.get_object("a", "b", "k").unwrap();
    assert_eq!(s.usage("a").used, info.size);
    s.close();
}

#[test]
fn buckets_are_listed_per_app_in_order_with_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for b in ["zeta", "alpha", "beta", "b", "bb"] {
        for k in 0..3 {
            s.put_object("a", b, &format!("k{k}"), ObjectOptions::default(), b"v")
                .unwrap();
        }
    }
    s.put_object("other", "secret", "k", ObjectOptions::default(), b"v")
        .unwrap();
    // Length-prefixed names sort by length first; the listing is stable either way.
    let all = s.list_buckets("a", None, 100).unwrap();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["alpha", "b", "bb", "beta", "zeta"]);
    let first = s.list_buckets("a", None, 2).unwrap();
    let rest = s.list_buckets("a", Some(&first[1]), 100).unwrap();
    assert_eq!([first, rest].concat(), all);
    assert_eq!(s.list_buckets("other", None, 10).unwrap(), vec!["secret"]);
    assert!(s.list_buckets("nobody", None, 10).unwrap().is_empty());
    // A bucket whose last key goes disappears.
    for k in 0..3 {
        s.delete_object("a", "bb", &format!("k{k}")).unwrap();
    }
    assert!(!s
        .list_buckets("a", None, 100)
        .unwrap()
        .contains(&"bb".to_string()));
    s.close();
}

#[test]
fn a_writer_limit_lowers_the_store_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut w = s.writer("a").unwrap();
    w.limit_size(10);
    w.write(&[1; 10]).unwrap();
    assert!(matches!(w.write(&[1]), Err(Error::TooLarge { limit: 10 })));
    drop(w);
    assert_eq!(s.usage("a").reserved, 0);
    s.close();
}
