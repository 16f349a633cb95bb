//! Round trips, ranges, dedup, per-app isolation, named objects and limits.

use super::*;

#[test]
fn small_and_large_round_trip_with_sha256_ids() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for (seed, len) in [
        (1, 0),
        (2, 1),
        (3, 1024),
        (4, 1025),
        (5, 4096 * 3),
        (6, 4096 * 3 + 7),
    ] {
        let data = content(seed, len);
        let id = s.write("a", &data).unwrap();
        assert_eq!(id, sha(&data), "len {len}");
        assert_eq!(s.stat("a", &id).unwrap(), len as u64);
        assert_eq!(read_all(&s, "a", &id).unwrap(), data, "len {len}");
        assert_eq!(read_to_end(s.read("a", &id).unwrap()).unwrap(), data);
    }
    // The three objects over small_max (1 KiB) got content files; the rest went to volumes.
    assert_eq!(count_files(&s.paths().objects), 3);
}

#[test]
fn range_reads_cross_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for len in [900usize, 4096 * 4 + 100] {
        let data = content(len as u64, len);
        let id = s.write("a", &data).unwrap();
        let n = len as u64;
        for (a, b) in [
            (0, 0),
            (0, 1),
            (10, 20),
            (0, n),
            (n - 1, n),
            (n, n),
            (4090.min(n - 10), 4100.min(n)),
            (100, n - 3),
        ] {
            let r = s.read_range("a", &id, a..b).unwrap();
            assert_eq!(r.size(), n);
            assert_eq!(r.remaining(), b - a);
            assert_eq!(
                read_to_end(r).unwrap(),
                &data[a as usize..b as usize],
                "{a}..{b}"
            );
        }
        assert!(matches!(
            s.read_range("a", &id, 0..n + 1),
            Err(Error::InvalidRange { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 5..4;
        assert!(matches!(
            s.read_range("a", &id, bad),
            Err(Error::InvalidRange { .. })
        ));
    }
}

#[test]
fn same_content_is_stored_once_and_charged_once_per_app() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let big = content(7, 20_000);
    let small = content(8, 500);
    let id1 = s.write("a", &big).unwrap();
    let id2 = s.write("a", &big).unwrap();
    assert_eq!(id1, id2);
    s.write("a", &small).unwrap();
    s.write("a", &small).unwrap();
    assert_eq!(s.usage("a").used, 20_500);
    assert_eq!(s.usage("a").reserved, 0);
    // Another app holding the same bytes is charged for them itself, sharing the one copy.
    s.write("b", &big).unwrap();
    assert_eq!(s.usage("b").used, 20_000);
    assert_eq!(count_files(&s.paths().objects), 1);
    assert_eq!(count_files(&s.paths().tmp), 0);
}

#[test]
fn apps_see_only_their_own_content_and_absence_looks_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = content(9, 5000);
    let id = s.write("a", &data).unwrap();
    let absent = sha(b"never stored");
    for (app, id) in [("b", &id), ("b", &absent), ("a", &absent)] {
        let e1 = s.read(app, id).err().unwrap();
        let e2 = s.stat(app, id).err().unwrap();
        assert!(matches!(e1, Error::NotFound) && matches!(e2, Error::NotFound));
        assert_eq!(e1.to_string(), "not found");
        assert!(matches!(s.delete_blob(app, id), Err(Error::NotFound)));
    }
    // Once b stores the same bytes itself it may read them; a's delete does not take them.
    assert_eq!(s.write("b", &data).unwrap(), id);
    s.delete_blob("a", &id).unwrap();
    assert!(matches!(s.read("a", &id), Err(Error::NotFound)));
    assert_eq!(read_all(&s, "b", &id).unwrap(), data);
    assert_eq!(s.usage("a").used, 0);
    s.delete_blob("b", &id).unwrap();
    assert_eq!(
        count_files(&s.paths().objects),
        0,
        "unreferenced content is collected"
    );
}

#[test]
fn named_objects_point_at_content() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let opts = ObjectOptions {
        content_type: "image/png".into(),
        user_meta: vec![("author".into(), "ann".into())],
        ..Default::default()
    };
    let v1 = content(10, 3000);
    let info = s
        .put_object("a", "pics", "cat.png", opts.clone(), &v1)
        .unwrap();
    assert_eq!(info.id, sha(&v1));
    assert_eq!(info.etag(), format!("\"{}\"", sha(&v1).hex()));
    assert!(info.last_modified_ms > 1_600_000_000_000);
    assert_eq!(s.get_object("a", "pics", "cat.png").unwrap(), info);
    let (got, r) = s.open_object("a", "pics", "cat.png", Some(1..11)).unwrap();
    assert_eq!(
        (got.content_type.as_str(), &got.user_meta),
        ("image/png", &opts.user_meta)
    );
    assert_eq!(read_to_end(r).unwrap(), &v1[1..11]);
    // A duplicate under another key costs nothing more; so does overwriting with equal bytes.
    s.put_object("a", "pics", "copy.png", opts.clone(), &v1)
        .unwrap();
    s.put_object("a", "pics", "cat.png", ObjectOptions::default(), &v1)
        .unwrap();
    assert_eq!(s.usage("a").used, 3000);
    assert_eq!(count_files(&s.paths().objects), 1);
    // Overwrite with new bytes: the old content is still held by copy.png.
    let v2 = content(11, 2000);
    s.put_object("a", "pics", "cat.png", opts.clone(), &v2)
        .unwrap();
    assert_eq!(s.usage("a").used, 5000);
    s.delete_object("a", "pics", "copy.png").unwrap();
    assert_eq!(s.usage("a").used, 2000);
    assert_eq!(count_files(&s.paths().objects), 1);
    assert!(matches!(
        s.delete_object("a", "pics", "copy.png"),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        s.get_object("b", "pics", "cat.png"),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        s.open_object("b", "pics", "cat.png", None),
        Err(Error::NotFound)
    ));
    // Reading by id needs a hold: the object gives one.
    assert_eq!(read_all(&s, "a", &sha(&v2)).unwrap(), v2);
    assert!(matches!(s.read("a", &sha(&v1)), Err(Error::NotFound)));
}

#[test]
fn direct_and_key_holds_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = content(12, 9000);
    let id = s.write("a", &data).unwrap();
    s.put_object("a", "b", "k", ObjectOptions::default(), &data)
        .unwrap();
    s.delete_blob("a", &id).unwrap();
    assert!(matches!(s.delete_blob("a", &id), Err(Error::NotFound)));
    assert_eq!(read_all(&s, "a", &id).unwrap(), data);
    assert_eq!(s.usage("a").used, 9000);
    s.delete_object("a", "b", "k").unwrap();
    assert!(matches!(s.read("a", &id), Err(Error::NotFound)));
    assert_eq!(s.usage("a").used, 0);
    assert_eq!(count_files(&s.paths().objects), 0);
}

#[test]
fn list_keys_paginates_within_one_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for k in ["b", "a", "c", "a0", "d"] {
        s.put_object("x", "bk", k, ObjectOptions::default(), k.as_bytes())
            .unwrap();
    }
    s.put_object("x", "bk2", "zz", ObjectOptions::default(), b"z")
        .unwrap();
    s.put_object("y", "bk", "other-app", ObjectOptions::default(), b"z")
        .unwrap();
    assert_eq!(
        s.list_keys("x", "bk", None, 100).unwrap(),
        ["a", "a0", "b", "c", "d"]
    );
    assert_eq!(s.list_keys("x", "bk", None, 2).unwrap(), ["a", "a0"]);
    assert_eq!(s.list_keys("x", "bk", Some("a0"), 2).unwrap(), ["b", "c"]);
    assert_eq!(
        s.list_keys("x", "bk", Some("d"), 2).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        s.list_keys("x", "b", None, 10).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn limits_and_names_are_enforced_before_storing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path(),
        StoreConfig {
            max_object: 10_000,
            ..cfg()
        },
    )
    .unwrap();
    let mut w = s.writer("a").unwrap();
    w.write(&[1; 9_000]).unwrap();
    assert!(matches!(
        w.write(&[1; 1_001]),
        Err(Error::TooLarge { limit: 10_000 })
    ));
    drop(w);
    assert_eq!(s.usage("a").reserved, 0);
    assert_eq!(
        count_files(&s.paths().tmp),
        0,
        "the temp file went with the writer"
    );
    assert!(matches!(s.writer(""), Err(Error::InvalidName("app"))));
    let long = "k".repeat(1025);
    let r = s.put_object("a", "b", &long, ObjectOptions::default(), b"x");
    assert!(matches!(r, Err(Error::InvalidName("key"))));
    assert!(matches!(
        "sha256:zz".parse::<ContentId>(),
        Err(Error::InvalidId)
    ));
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let small = content(13, 100);
    let big = content(14, 50_000);
    let a = s.write("a", &small).unwrap();
    let b = s.write("a", &big).unwrap();
    s.put_object("a", "bk", "k", ObjectOptions::default(), &small)
        .unwrap();
    s.close();
    let s = open(dir.path());
    assert_eq!(read_all(&s, "a", &a).unwrap(), small);
    assert_eq!(read_all(&s, "a", &b).unwrap(), big);
    assert_eq!(s.get_object("a", "bk", "k").unwrap().id, a);
    assert_eq!(s.usage("a").used, 50_100);
    s.delete_blob("a", &b).unwrap();
    s.close();
    let s = open(dir.path());
    assert_eq!(s.usage("a").used, 100);
    assert_eq!(count_files(&s.paths().objects), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_writes_stream_from_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = content(15, 100_000);
    let id = s.write_from("a", &data[..]).await.unwrap();
    assert_eq!(id, sha(&data));
    let opts = ObjectOptions {
        content_type: "text/plain".into(),
        user_meta: vec![],
        ..Default::default()
    };
    let info = s
        .put_object_from("a", "b", "k", opts, &data[..10])
        .await
        .unwrap();
    assert_eq!(info.size, 10);
    // A reader that yields a few bytes at a time.
    let (mut tx, rx) = tokio::io::duplex(64);
    let feed = data.clone();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for piece in feed.chunks(333) {
            tx.write_all(piece).await.unwrap();
        }
    });
    let s2 = s.clone();
    let id2 = s2.write_from("b", rx).await.unwrap();
    writer.await.unwrap();
    assert_eq!(id2, id);
    let s3 = s.clone();
    let back = tokio::task::spawn_blocking(move || read_all(&s3, "b", &id2))
        .await
        .unwrap();
    assert_eq!(back.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_larger_than_a_record_move_to_content_files_whatever_the_sizes() {
    // A volume record bigger than a chunk (the move to a content file writes whole chunks
    // at once), and the default shape; pieces of every size around both limits.
    for (small_max, chunk_size) in [(10_000u64, 4096u32), (1024, 4096)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            small_max,
            chunk_size,
            volume_max: 1 << 20,
            ..cfg()
        };
        let s = Store::open(dir.path(), cfg).unwrap();
        for (seed, len) in [(1u64, 9_999usize), (2, 10_000), (3, 10_001), (4, 50_000)] {
            let data = content(seed * 31 + small_max, len);
            for piece in [1usize, 4095, 4096, 10_001, 60_000] {
                let (tx, rx) = tokio::io::duplex(piece.max(64));
                let feed = data.clone();
                let writer = tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut tx = tx;
                    for p in feed.chunks(piece) {
                        tx.write_all(p).await.unwrap();
                    }
                });
                let id = s.write_from("a", rx).await.unwrap();
                writer.await.unwrap();
                assert_eq!(id, sha(&data), "len {len}, piece {piece}");
                let s2 = s.clone();
                let back = tokio::task::spawn_blocking(move || read_all(&s2, "a", &id))
                    .await
                    .unwrap();
                assert_eq!(back.unwrap(), data, "len {len}, piece {piece}");
            }
        }
        assert_eq!(s.usage("a").used, 9_999 + 10_000 + 10_001 + 50_000);
    }
}

#[test]
fn configs_the_format_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        StoreConfig {
            small_max: 32 << 20,
            ..cfg()
        },
        StoreConfig {
            chunk_size: 0,
            ..cfg()
        },
        StoreConfig {
            volume_max: 1000,
            ..cfg()
        },
    ] {
        assert!(matches!(
            Store::open(dir.path(), bad),
            Err(Error::Config(_))
        ));
    }
    StoreConfig::default().validate().unwrap();
    cfg().validate().unwrap();
}
