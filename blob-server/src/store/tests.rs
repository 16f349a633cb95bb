//! Tests of the whole engine through its public API: round trips, dedup, isolation, quotas
//! under concurrency, crash recovery and corruption detection.

mod basic;
mod cache;
mod compact;
mod concurrency;
mod conditions;
mod crash;
mod durability;
mod model;
mod purge;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;

/// Small sizes so tests exercise both paths and many chunks cheaply.
pub(super) fn cfg() -> StoreConfig {
    StoreConfig {
        small_max: 1024,
        chunk_size: 4096,
        volume_max: 64 << 10,
        // Room for a few records, so appends both fill it and grow past it.
        volume_prealloc: 8 << 10,
        max_object: 1 << 30,
        default_quota: 1 << 40,
        max_batch: 1024,
        // Frequent checkpoints and a small log, so tests cross both often: reads over the
        // overlay, replay after a kill, and a full log forcing a checkpoint.
        checkpoint: std::time::Duration::from_millis(50),
        wal_bytes: 1 << 20,
        direct_io: true,
        // On, so every read test also goes through it (tests of corruption read each object
        // for the first time after damaging it, or turn it off).
        read_cache: 1 << 20,
        read_cache_max_object: 64 << 10,
    }
}

pub(super) fn open(dir: &Path) -> Store {
    Store::open(dir, cfg()).unwrap()
}

/// Deterministic pseudo-random bytes: content `seed` of `len` bytes.
pub(super) fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(super) fn sha(data: &[u8]) -> ContentId {
    use sha2::Digest;
    ContentId(sha2::Sha256::digest(data).into())
}

pub(super) fn read_all(store: &Store, app: &str, id: &ContentId) -> Result<Vec<u8>> {
    let mut r = store.read(app, id)?;
    let mut out = Vec::new();
    while let Some(c) = r.next_chunk()? {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

/// Files under `dir` (recursively), for checking what is left on disk.
pub(super) fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

/// Re-runs this test binary as a child process running only test `name`, with `env` set:
/// the child does the work (and may be killed) while the parent observes.
pub(super) fn spawn_child(name: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads a reader to the end, mapping errors to strings (for `io::Read` checks).
pub(super) fn read_to_end(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}
