//! Tests that need a process of their own: SIGKILL in the middle of writes (acknowledged
//! writes must survive, cut-off ones leave no trace) and a 64 MiB object written and read
//! with bounded memory. Each test re-runs itself as the child when its env variable is set.
//! Also the ignored measurements (SHA-256 speed, group-commit write rate).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

const CRASH_DIR: &str = "BLOB_TEST_CRASH_DIR";
const CRASH_ROUND: &str = "BLOB_TEST_CRASH_ROUND";
const BIG_DIR: &str = "BLOB_TEST_BIG_DIR";

/// What write number `i` of a crash round stores: (seed, size, named or not).
fn crash_item(round: u64, i: u64) -> (u64, usize, bool) {
    let seed = round * 1_000_000 + i;
    let size = if i.is_multiple_of(3) {
        5_000 + (i % 7) as usize * 3_000
    } else {
        10 + (i % 900) as usize
    };
    (seed, size, i % 2 == 1)
}

/// The child: writes forever from 4 threads, printing `ACK <i> <id>` after each durable write.
/// In odd rounds the metadata database never commits after open, so every write the round
/// acknowledges is durable only in the metadata log and must come back by replaying it.
fn crash_child(dir: &str, round: u64) {
    let mut config = cfg();
    if round % 2 == 1 {
        config.checkpoint = Duration::from_secs(3600);
        config.wal_bytes = 64 << 20;
    }
    let s = Store::open(Path::new(dir), config).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let s = &s;
            sc.spawn(move || {
                for j in 0.. {
                    let i = j * 4 + t;
                    let (seed, size, named) = crash_item(round, i);
                    let data = content(seed, size);
                    let id = if named {
                        let key = format!("r{round}-{i}");
                        s.put_object("crash", "b", &key, ObjectOptions::default(), &data)
                            .unwrap()
                            .id
                    } else {
                        s.write("crash", &data).unwrap()
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {i} {id}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// Kills the child if the parent fails first, so no writer outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let (Ok(dir), Ok(round)) = (std::env::var(CRASH_DIR), std::env::var(CRASH_ROUND)) {
        return crash_child(&dir, round.parse().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let mut acked: Vec<(u64, u64, ContentId)> = Vec::new();
    for round in 0..3u64 {
        let round_s = round.to_string();
        let mut child = KillOnDrop(spawn_child(
            "store::tests::crash::acknowledged_writes_survive_sigkill",
            &[(CRASH_DIR, &dir_s), (CRASH_ROUND, &round_s)],
        ));
        let stdout = child.0.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let line = line.unwrap();
                    // libtest's "test NAME ... " may precede the first one on its line.
                    if let Some(rest) = line.split_once("ACK ").map(|(_, r)| r) {
                        let (i, id) = rest.split_once(' ').unwrap();
                        seen.lock()
                            .unwrap()
                            .push((i.parse::<u64>().unwrap(), id.parse().unwrap()));
                    }
                }
            })
        };
        let start = Instant::now();
        let want = 150 + round as usize * 50;
        while seen.lock().unwrap().len() < want {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "child made no progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        child.0.kill().unwrap(); // SIGKILL, mid-write
        child.0.wait().unwrap();
        reader.join().unwrap();
        let got = std::mem::take(&mut *seen.lock().unwrap());
        acked.extend(got.into_iter().map(|(i, id)| (round, i, id)));

        let s = open(dir.path());
        assert_eq!(count_files(&s.paths().tmp), 0);
        let mut distinct = HashMap::new();
        for &(r, i, id) in &acked {
            let (seed, size, named) = crash_item(r, i);
            let data = content(seed, size);
            assert_eq!(id, sha(&data));
            if named {
                let info = s.get_object("crash", "b", &format!("r{r}-{i}")).unwrap();
                assert_eq!(info.id, id);
            }
            assert_eq!(
                read_all(&s, "crash", &id).unwrap(),
                data,
                "round {r} write {i}"
            );
            distinct.insert(id, size as u64);
        }
        // Writes committed but killed before their ACK was printed may add to this.
        assert!(s.usage("crash").used >= distinct.values().sum::<u64>());
        s.close();
    }
}

fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const BIG: u64 = 64 << 20;

fn big_child(dir: &str) {
    let s = Store::open(dir, StoreConfig::default()).unwrap();
    let mut w = s.writer("big").unwrap();
    let mut piece = vec![0u8; 1 << 20];
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for i in 0..BIG / piece.len() as u64 {
        piece[..8].copy_from_slice(&i.to_le_bytes());
        piece[4096] = i as u8;
        sha2::Digest::update(&mut hasher, &piece);
        w.write(&piece).unwrap();
    }
    let id = w.finish_blob().unwrap();
    assert_eq!(id.0, <[u8; 32]>::from(sha2::Digest::finalize(hasher)));
    let mut r = s.read("big", &id).unwrap();
    let mut back = <sha2::Sha256 as sha2::Digest>::new();
    let mut n = 0;
    while let Some(c) = r.next_chunk().unwrap() {
        n += c.len() as u64;
        sha2::Digest::update(&mut back, &c);
    }
    assert_eq!(n, BIG);
    assert_eq!(id.0, <[u8; 32]>::from(sha2::Digest::finalize(back)));
    println!("HWM {}", vm_hwm_kib());
}

#[test]
fn a_64_mib_object_streams_in_and_out_with_bounded_memory() {
    if let Ok(dir) = std::env::var(BIG_DIR) {
        return big_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child(
        "store::tests::crash::a_64_mib_object_streams_in_and_out_with_bounded_memory",
        &[(BIG_DIR, dir.path().to_str().unwrap())],
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let hwm: u64 = stdout
        .lines()
        .find_map(|l| l.split_once("HWM ").map(|(_, r)| r))
        .expect("child reported its peak memory")
        .parse()
        .unwrap();
    // The object is 64 MiB; the whole process peaked far below it.
    assert!(hwm < 32 * 1024, "peak RSS {hwm} KiB");
}

/// `cargo test -p blob-server --release -- --ignored --nocapture measure_`
#[test]
#[ignore = "measurement; run by hand with --release"]
fn measure_sha256_and_crc32() {
    let buf = vec![0x5au8; 1 << 20];
    let total = 512u64 << 20;
    let t = Instant::now();
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for _ in 0..total / buf.len() as u64 {
        h.update(&buf);
    }
    std::hint::black_box(h.finish());
    let sha = total as f64 / t.elapsed().as_secs_f64() / 1e9;
    let t = Instant::now();
    let mut c = crc32fast::Hasher::new();
    for _ in 0..total / buf.len() as u64 {
        c.update(&buf);
    }
    std::hint::black_box(c.finalize());
    let crc = total as f64 / t.elapsed().as_secs_f64() / 1e9;
    println!("ring SHA-256 (as the store hashes): {sha:.2} GB/s; crc32fast: {crc:.2} GB/s");
}

/// `cargo test -p blob-server --release -- --ignored --nocapture measure_`
#[test]
#[ignore = "measurement; run by hand with --release"]
fn measure_small_write_rate() {
    let dir = tempfile::tempdir().unwrap();
    let f = fs::File::create(dir.path().join("fsync-probe")).unwrap();
    let t = Instant::now();
    for i in 0..200u64 {
        std::os::unix::fs::FileExt::write_all_at(&f, &[1u8; 4096], i * 4096).unwrap();
        f.sync_data().unwrap();
    }
    println!(
        "raw 4 KiB write+fdatasync: {:.0}/s",
        200.0 / t.elapsed().as_secs_f64()
    );
    let s = Store::open(dir.path().join("store"), StoreConfig::default()).unwrap();
    for writers in [1u64, 8, 64] {
        let per = if writers == 1 { 300 } else { 4000 / writers };
        let b0 = s.commit_batches();
        let t = Instant::now();
        std::thread::scope(|sc| {
            for w in 0..writers {
                let s = &s;
                sc.spawn(move || {
                    for j in 0..per {
                        s.write(
                            "bench",
                            &content(writers * 1_000_000 + w * 10_000 + j, 4096),
                        )
                        .unwrap();
                    }
                });
            }
        });
        let n = writers * per;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let batches = s.commit_batches() - b0;
        println!("{writers:>3} writers: {rate:.0} durable 4 KiB writes/s, {n} writes in {batches} commits");
    }
}
