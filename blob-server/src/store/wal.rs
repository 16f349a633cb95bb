//! The metadata log (`meta.wal`): what makes a group of metadata changes durable before the
//! metadata database commits them.
//!
//! A redb commit rewrites every B-tree page on the path to each changed row and fsyncs them
//! where they lie; profiled under small PUTs it was most of the committer's time (the fsync
//! alone a third of the server's CPU). So the committer applies each group of changes to one
//! redb write transaction that stays open, appends the group's row changes to this log as one
//! checksummed record, fdatasyncs it (a small sequential write into blocks allocated in
//! advance, so no inode or extent update rides along), and only then answers. Every
//! [`CHECKPOINT`](crate::store::StoreConfig::checkpoint) or so it commits the transaction,
//! durably, together with the next log generation in the `state` table; that commit makes all
//! older records obsolete and the log starts again at offset 0.
//!
//! Record: `len u32 | crc32 u32 | gen u64 | count u32 | count * change`, little-endian, where
//! `len` counts the bytes after the crc and the crc covers them; change: `table u8 | key
//! (u32 length + bytes) | present u8 | value (u32 length + bytes, if present)`. Opening the
//! store replays the records of the generation the database names, from offset 0 until the
//! first one that is short, fails its crc or has another generation (a torn write or the
//! remains of an older generation), commits them, and moves to the next generation.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use redb::{Database, ReadableTable};

use crate::store::codec::{Dec, Enc};
use crate::store::meta::{self, Change, Table, Tx};
use crate::store::{meta_err, sync_dir, Error, Result};

/// Size the log file is given in advance (and kept at): written with zeros once, so appends
/// overwrite allocated blocks.
pub(crate) const DEFAULT_CAPACITY: u64 = 64 << 20;

/// Bytes in front of a record's body: `len` and `crc`.
const HEAD: usize = 8;

pub(crate) struct Wal {
    file: File,
    generation: u64,
    offset: u64,
    capacity: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the log at `path`, writing generation `generation` from offset 0.
    pub fn open(path: &Path, generation: u64, capacity: u64) -> Result<Wal> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut wal = Wal {
            file,
            generation,
            offset: 0,
            capacity: 0,
            buf: Vec::new(),
        };
        wal.reserve(capacity)?;
        if !existed {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        Ok(wal)
    }

    /// Makes the file at least `capacity` bytes of written zeros (never sparse).
    fn reserve(&mut self, capacity: u64) -> Result<()> {
        let len = self.file.metadata()?.len();
        if len < capacity {
            let zeros = vec![0u8; 1 << 20];
            let mut at = len;
            while at < capacity {
                let n = (capacity - at).min(zeros.len() as u64) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            self.file.sync_all()?;
        }
        self.capacity = len.max(capacity);
        Ok(())
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts generation `generation` at offset 0 (after a commit made the records obsolete).
    pub fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.offset = 0;
    }

    /// Appends `changes` as one record and makes it durable. `Ok(false)`: the record does not
    /// fit behind the records already there, so nothing was written; commit and restart, then
    /// append again (a record larger than the whole file grows it).
    pub fn append(&mut self, changes: &[Change]) -> Result<bool> {
        self.buf.clear();
        encode(self.generation, changes, &mut self.buf);
        let len = self.buf.len() as u64;
        if self.offset + len > self.capacity {
            if self.offset > 0 {
                return Ok(false);
            }
            self.reserve(len)?;
        }
        self.file.write_all_at(&self.buf, self.offset)?;
        self.file.sync_data()?;
        self.offset += len;
        Ok(true)
    }
}

/// Encodes one record of `generation` into `out`.
fn encode(generation: u64, changes: &[Change], out: &mut Vec<u8>) {
    let mut e = Enc(std::mem::take(out))
        .raw(&[0; HEAD])
        .u64(generation)
        .u32(changes.len() as u32);
    for c in changes {
        e = e.u8(c.table as u8).bytes(&c.key);
        e = match &c.value {
            Some(v) => e.u8(1).bytes(v),
            None => e.u8(0),
        };
    }
    let mut rec = e.0;
    let body_len = (rec.len() - HEAD) as u32;
    let crc = crc32fast::hash(&rec[HEAD..]);
    rec[..4].copy_from_slice(&body_len.to_le_bytes());
    rec[4..HEAD].copy_from_slice(&crc.to_le_bytes());
    *out = rec;
}

/// Replays the records the database has not committed yet (those of the generation its
/// `state` table names) and commits them with the next generation; returns the log, ready to
/// write that generation.
pub(crate) fn recover(db: &Database, path: &Path, capacity: u64) -> Result<Wal> {
    let txn = db.begin_write().map_err(meta_err)?;
    let generation = txn
        .open_table(meta::STATE)
        .map_err(meta_err)?
        .get("wal_gen")
        .map_err(meta_err)?
        .map_or(1, |v| v.value());
    let records = read(path, generation)?;
    if !records.is_empty() {
        let mut tx = Tx::open(&txn)?;
        for c in records.iter().flatten() {
            tx.apply(c)?;
        }
    }
    txn.open_table(meta::STATE)
        .map_err(meta_err)?
        .insert("wal_gen", generation + 1)
        .map_err(meta_err)?;
    txn.commit().map_err(meta_err)?;
    if !records.is_empty() {
        tracing::info!(
            records = records.len(),
            "replayed metadata changes from the log"
        );
    }
    Wal::open(path, generation + 1, capacity)
}

/// The records of `generation` at the start of the log at `path`, in order (none if there
/// is no log).
pub(crate) fn read(path: &Path, generation: u64) -> Result<Vec<Vec<Change>>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut data)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    Ok(parse(&data, generation))
}

/// The valid records of `generation` at the start of `data`.
fn parse(data: &[u8], generation: u64) -> Vec<Vec<Change>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= HEAD {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4")) as usize;
        let crc = u32::from_le_bytes(data[at + 4..at + HEAD].try_into().expect("4"));
        let Some(body) = data.get(at + HEAD..at + HEAD + len) else {
            break;
        };
        if len == 0 || crc32fast::hash(body) != crc {
            break;
        }
        match decode(body) {
            Ok((g, changes)) if g == generation => out.push(changes),
            // Another generation's record: the end of this one.
            Ok(_) => break,
            Err(e) => {
                // A record whose crc matches but does not decode was written by another
                // version of this program: stop rather than guess.
                tracing::error!(error = %e, offset = at, "metadata log record does not decode; replay stops there");
                break;
            }
        }
        at += HEAD + len;
    }
    out
}

fn decode(body: &[u8]) -> Result<(u64, Vec<Change>)> {
    let mut d = Dec(body);
    let generation = d.u64()?;
    let n = d.u32()?;
    let mut changes = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let table = Table::from_u8(d.u8()?)
            .ok_or_else(|| Error::Corrupt("unknown table in the metadata log".into()))?;
        let key = d.bytes()?.to_vec();
        let value = match d.u8()? {
            0 => None,
            1 => Some(d.bytes()?.to_vec()),
            t => return Err(Error::Corrupt(format!("metadata log value tag {t}"))),
        };
        changes.push(Change { table, key, value });
    }
    if !d.0.is_empty() {
        return Err(Error::Corrupt(
            "trailing bytes in a metadata log record".into(),
        ));
    }
    Ok((generation, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u8) -> Vec<Change> {
        vec![
            Change {
                table: Table::Objects,
                key: vec![i; 5],
                value: Some(vec![i, 1, 2]),
            },
            Change {
                table: Table::Usage,
                key: b"app".to_vec(),
                value: None,
            },
        ]
    }

    #[test]
    fn records_round_trip_and_stop_at_a_torn_or_foreign_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.wal");
        let mut wal = Wal::open(&path, 7, 4096).unwrap();
        assert!(wal.append(&sample(1)).unwrap());
        assert!(wal.append(&sample(2)).unwrap());
        assert_eq!(read(&path, 7).unwrap(), vec![sample(1), sample(2)]);
        // Another generation finds nothing (its records would start at offset 0).
        assert!(read(&path, 8).unwrap().is_empty());
        // The next generation overwrites from the start; the older tail is not replayed.
        wal.restart(8);
        assert!(wal.append(&sample(3)).unwrap());
        assert_eq!(read(&path, 8).unwrap(), vec![sample(3)]);
        // A flipped byte in the second record ends the log before it.
        assert!(wal.append(&sample(4)).unwrap());
        let mut data = std::fs::read(&path).unwrap();
        let first = HEAD + u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        data[first + HEAD + 3] ^= 1;
        assert_eq!(parse(&data, 8), vec![sample(3)]);
    }

    #[test]
    fn a_full_log_asks_for_a_restart_and_a_huge_record_grows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.wal");
        let mut wal = Wal::open(&path, 1, 256).unwrap();
        let mut appended = 0;
        while wal.append(&sample(appended)).unwrap() {
            appended += 1;
        }
        assert!(appended > 1);
        assert_eq!(read(&path, 1).unwrap().len(), appended as usize);
        wal.restart(2);
        let huge = vec![Change {
            table: Table::Content,
            key: vec![9; 32],
            value: Some(vec![0; 10_000]),
        }];
        assert!(wal.append(&huge).unwrap());
        assert_eq!(read(&path, 2).unwrap(), vec![huge]);
        assert!(std::fs::metadata(&path).unwrap().len() >= 10_000);
    }
}
