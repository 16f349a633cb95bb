//! Recovery at open (torn tails, temp files, orphans), corruption detection, format checks.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;
use crate::store::chunked::HEADER_LEN;
use crate::store::volume::{encode_record, RECORD_HEADER_LEN, VOLUME_HEADER_LEN};

#[test]
fn torn_volume_tail_is_truncated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let unacked = content(99, 700);
    let rec = encode_record(&sha(&unacked), &unacked);
    // Cut inside the header, right after it, and inside the data.
    for cut in [1, 20, RECORD_HEADER_LEN as usize, 300, rec.len() - 1] {
        let s = open(dir.path());
        let datas: Vec<_> = (0..5)
            .map(|i| content(cut as u64 * 10 + i, 100 + i as usize))
            .collect();
        let ids: Vec<_> = datas.iter().map(|d| s.write("a", d).unwrap()).collect();
        let vol = s.volume_path(1);
        s.close();
        let len = fs::metadata(&vol).unwrap().len();
        let f = OpenOptions::new().write(true).open(&vol).unwrap();
        f.write_all_at(&rec[..cut], len).unwrap();
        drop(f);

        let s = open(dir.path());
        assert_eq!(fs::metadata(&vol).unwrap().len(), len, "cut {cut}");
        for (id, d) in ids.iter().zip(&datas) {
            assert_eq!(&read_all(&s, "a", id).unwrap(), d);
        }
        let fresh = content(cut as u64, 50);
        let id = s.write("a", &fresh).unwrap();
        assert_eq!(read_all(&s, "a", &id).unwrap(), fresh);
        assert!(matches!(s.read("a", &sha(&unacked)), Err(Error::NotFound)));
        s.close();
    }
}

#[test]
fn leftovers_of_unacknowledged_writes_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let kept = content(1, 30_000);
    let kept_id = s.write("a", &kept).unwrap();
    // A writer dropped midway leaves nothing and frees its reservation.
    let mut w = s.writer("a").unwrap();
    w.write(&content(2, 50_000)).unwrap();
    assert_eq!(s.usage("a").reserved, 50_000);
    drop(w);
    assert_eq!(s.usage("a").reserved, 0);
    assert_eq!(count_files(&s.paths().tmp), 0);
    let paths = s.paths().clone();
    s.close();
    // What a crash could leave: a temp file, and a content file renamed in whose commit
    // never happened.
    fs::write(paths.tmp.join("123-0.tmp"), b"partial").unwrap();
    let orphan = sha(b"orphan");
    fs::create_dir_all(paths.content(&orphan).parent().unwrap()).unwrap();
    fs::write(paths.content(&orphan), b"orphan").unwrap();
    let s = open(dir.path());
    assert_eq!(count_files(&paths.tmp), 0);
    assert!(!paths.content(&orphan).exists());
    assert!(paths.content(&kept_id).exists());
    assert_eq!(read_all(&s, "a", &kept_id).unwrap(), kept);
    assert_eq!(s.usage("a").used, 30_000);
}

#[test]
fn a_flipped_byte_in_a_large_object_is_an_error_never_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let data = content(3, 4096 * 5);
    let id = s.write("a", &data).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(s.paths().content(&id))
        .unwrap();
    let pos = HEADER_LEN + 2 * (4096 + 4) + 4 + 10;
    f.write_all_at(&[data[2 * 4096 + 10] ^ 1], pos).unwrap();
    let mut r = s.read("a", &id).unwrap();
    assert_eq!(r.next_chunk().unwrap().unwrap(), &data[..4096]);
    assert_eq!(r.next_chunk().unwrap().unwrap(), &data[4096..8192]);
    assert!(matches!(r.next_chunk(), Err(Error::Corrupt(_))));
    let e = read_to_end(s.read("a", &id).unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    // Ranges that avoid the bad chunk still read; one that touches it fails.
    let tail = read_to_end(s.read_range("a", &id, 4096 * 3..4096 * 5).unwrap()).unwrap();
    assert_eq!(tail, &data[4096 * 3..]);
    assert!(read_to_end(s.read_range("a", &id, 8200..8300).unwrap()).is_err());
}

#[test]
fn a_flipped_byte_in_a_small_object_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = content(4, 300);
    let b = content(5, 300);
    let ida = s.write("a", &a).unwrap();
    let idb = s.write("a", &b).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(s.volume_path(1))
        .unwrap();
    f.write_all_at(&[a[5] ^ 0x80], VOLUME_HEADER_LEN + RECORD_HEADER_LEN + 5)
        .unwrap();
    assert!(matches!(s.read("a", &ida), Err(Error::Corrupt(_))));
    assert_eq!(read_all(&s, "a", &idb).unwrap(), b);
}

#[test]
fn a_truncated_content_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let id = s.write("a", &content(6, 10_000)).unwrap();
    let path = s.paths().content(&id);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    assert!(matches!(s.read("a", &id), Err(Error::Corrupt(_))));
}

#[test]
fn unknown_formats_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close();
    assert_eq!(
        fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        FORMAT
    );
    fs::write(dir.path().join("FORMAT"), "berth-blob-store 2\n").unwrap();
    assert!(matches!(
        Store::open(dir.path(), cfg()),
        Err(Error::Format(_))
    ));
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("somebody-elses-file"), b"x").unwrap();
    assert!(matches!(
        Store::open(other.path(), cfg()),
        Err(Error::Format(_))
    ));
}

#[test]
fn a_second_open_of_the_same_directory_fails_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut w = s.writer("a").unwrap();
    w.write(&content(7, 5000)).unwrap();
    assert_eq!(count_files(&s.paths().tmp), 1);
    assert!(matches!(
        Store::open(dir.path(), cfg()),
        Err(Error::Meta(_))
    ));
    assert_eq!(
        count_files(&s.paths().tmp),
        1,
        "the live writer's temp file is still there"
    );
    let id = w.finish_blob().unwrap();
    assert_eq!(read_all(&s, "a", &id).unwrap(), content(7, 5000));
}

#[test]
fn scrub_finds_rot_even_behind_a_matching_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..20u64 {
        ids.push(
            s.write("a", &content(100 + i, 50 + i as usize * 700))
                .unwrap(),
        );
    }
    let report = s.scrub(0, &|| false).unwrap();
    assert_eq!(report.checked, 20);
    assert!(report.corrupt.is_empty());
    // Rot in a large object, with its chunk's CRC rewritten to match: only the digest check
    // can tell.
    let big = content(7, 4096 * 3);
    let big_id = s.write("b", &big).unwrap();
    let path = s.paths().content(&big_id);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    let mut chunk = big[4096..8192].to_vec();
    chunk[7] ^= 1;
    let pos = HEADER_LEN + (4096 + 4);
    f.write_all_at(&crc32fast::hash(&chunk).to_le_bytes(), pos)
        .unwrap();
    f.write_all_at(&chunk, pos + 4).unwrap();
    // And a flipped byte in a small one.
    let small = content(8, 300);
    let small_id = s.write("b", &small).unwrap();
    let (number, offset) = match s.location(&small_id) {
        Some(crate::store::meta::Location::Volume { number, offset }) => (number, offset),
        other => panic!("small object not in a volume: {other:?}"),
    };
    let vf = OpenOptions::new()
        .write(true)
        .open(s.volume_path(number))
        .unwrap();
    vf.write_all_at(&[small[3] ^ 0x10], offset + RECORD_HEADER_LEN + 3)
        .unwrap();
    let report = s.scrub(0, &|| false).unwrap();
    assert_eq!(report.checked, 22);
    let mut want = vec![big_id, small_id];
    want.sort();
    let mut got = report.corrupt.clone();
    got.sort();
    assert_eq!(got, want);
    // Quarantined: reads fail (never the rotten bytes), by id and by key alike.
    assert!(matches!(s.read("b", &big_id), Err(Error::Corrupt(_))));
    assert!(matches!(s.read("b", &small_id), Err(Error::Corrupt(_))));
    // Storing the same bytes again repairs both: the new upload replaces the rotten copy.
    assert_eq!(s.write("b", &big).unwrap(), big_id);
    assert_eq!(s.write("b", &small).unwrap(), small_id);
    assert_eq!(read_all(&s, "b", &big_id).unwrap(), big);
    assert_eq!(read_all(&s, "b", &small_id).unwrap(), small);
    assert!(s.scrub(0, &|| false).unwrap().corrupt.is_empty());
    drop(s);
    let s = open(dir.path());
    assert_eq!(read_all(&s, "b", &big_id).unwrap(), big);
    // A stop request ends the pass early.
    let report = s.scrub(0, &|| true).unwrap();
    assert!(report.interrupted);
    assert_eq!(report.checked, 0);
}
