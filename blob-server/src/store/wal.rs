//! The metadata log (`meta-0.wal`, `meta-1.wal`): what makes a group of metadata changes
//! durable before the metadata database commits them.
//!
//! A redb commit rewrites every B-tree page on the path to each changed row and fsyncs them
//! where they lie; profiled under small PUTs it was most of the committer's time (the fsync
//! alone a third of the server's CPU). So the committer appends each group's row changes to
//! this log as one checksummed record and fdatasyncs it (a small sequential write into blocks
//! allocated in advance, so no inode or extent update rides along), then publishes them to the
//! overlay ([`crate::store::overlay`]) and answers. Every checkpoint interval the overlay's
//! active layer is frozen and the log switches to its other file with the next generation,
//! while the checkpointer thread writes the frozen layer into redb and commits it durably
//! together with that next generation in the `state` table ([`crate::store::checkpoint`]);
//! that commit makes the first file's records obsolete. Generation `g` lives in file `g % 2`.
//!
//! Record: `len u32 | crc32 u32 | gen u64 | count u32 | count * change`, little-endian, where
//! `len` counts the bytes after the crc and the crc covers them; change: `table u8 | key
//! (u32 length + bytes) | present u8 | value (u32 length + bytes, if present)`. Opening the
//! store replays the records of the generation the database names and then of the next one
//! (a checkpoint cut off by a crash), each from its file's offset 0 until the first record
//! that is short, fails its crc or has another generation (a torn write or the remains of an
//! older generation), commits them, and starts two generations on.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable};

use crate::store::codec::{Dec, Enc};
use crate::store::meta::{self, Change, Table};
use crate::store::{meta_err, sync_dir, Error, Result};

/// Size the log file is given in advance (and kept at): written with zeros once, so appends
/// overwrite allocated blocks.
pub(crate) const DEFAULT_CAPACITY: u64 = 64 << 20;

/// Bytes in front of a record's body: `len` and `crc`.
const HEAD: usize = 8;

pub(crate) struct Wal {
    files: [File; 2],
    generation: u64,
    offset: u64,
    capacity: u64,
    buf: Vec<u8>,
}

impl Wal {
    /// Opens (or creates) the log's two files in `dir`, writing generation `generation`
    /// from offset 0.
    pub fn open(dir: &Path, generation: u64, capacity: u64) -> Result<Wal> {
        let mut created = false;
        let mut open = |n: u64| -> Result<File> {
            let path = file_path(dir, n);
            created |= !path.exists();
            Ok(OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?)
        };
        let files = [open(0)?, open(1)?];
        let mut wal = Wal {
            files,
            generation,
            offset: 0,
            capacity: 0,
            buf: Vec::new(),
        };
        for f in &wal.files {
            reserve(f, capacity)?;
        }
        wal.capacity = capacity;
        if created {
            sync_dir(dir)?;
        }
        Ok(wal)
    }

    fn file(&self) -> &File {
        &self.files[(self.generation % 2) as usize]
    }

    /// The generation being written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts generation `generation` at offset 0 of its file (whose records a commit made
    /// obsolete).
    pub fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.offset = 0;
    }

    /// Appends `changes` as one record and makes it durable. `Ok(false)`: the record does not
    /// fit behind the records already there, so nothing was written; move to the next
    /// generation, then append again (a record larger than the whole file grows it).
    pub fn append(&mut self, changes: &[Change]) -> Result<bool> {
        self.buf.clear();
        encode(self.generation, changes, &mut self.buf);
        let len = self.buf.len() as u64;
        if self.offset + len > self.capacity {
            if self.offset > 0 {
                return Ok(false);
            }
            reserve(self.file(), len)?;
        }
        let file = self.file();
        file.write_all_at(&self.buf, self.offset)?;
        file.sync_data()?;
        self.offset += len;
        Ok(true)
    }
}

/// Where generation `generation` is written: `meta-0.wal` or `meta-1.wal` in `dir`.
fn file_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("meta-{}.wal", generation % 2))
}

/// Makes `file` at least `capacity` bytes of written zeros (never sparse).
fn reserve(file: &File, capacity: u64) -> Result<()> {
    let len = file.metadata()?.len();
    if len < capacity {
        let zeros = vec![0u8; 1 << 20];
        let mut at = len;
        while at < capacity {
            let n = (capacity - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
    }
    Ok(())
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
/// `state` table names, then of the next one) and commits them; returns the log, ready to
/// write the generation after those two.
pub(crate) fn recover(db: &Database, dir: &Path, capacity: u64) -> Result<Wal> {
    let txn = db.begin_write().map_err(meta_err)?;
    let generation = txn
        .open_table(meta::STATE)
        .map_err(meta_err)?
        .get("wal_gen")
        .map_err(meta_err)?
        .map_or(1, |v| v.value());
    let mut records = read(dir, generation)?;
    // A checkpoint of `generation` may have been cut off after the next one began.
    records.extend(read(dir, generation + 1)?);
    let rows = records
        .iter()
        .flatten()
        .map(|c| (c.table, c.key.as_slice(), c.value.as_deref()));
    meta::write_rows(&txn, rows)?;
    txn.open_table(meta::STATE)
        .map_err(meta_err)?
        .insert("wal_gen", generation + 2)
        .map_err(meta_err)?;
    txn.commit().map_err(meta_err)?;
    if !records.is_empty() {
        tracing::info!(
            records = records.len(),
            "replayed metadata changes from the log"
        );
    }
    Wal::open(dir, generation + 2, capacity)
}

/// The records of `generation` at the start of its file in `dir`, in order (none if there is
/// no such file).
pub(crate) fn read(dir: &Path, generation: u64) -> Result<Vec<Vec<Change>>> {
    let mut data = Vec::new();
    match File::open(file_path(dir, generation)) {
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
        let d = dir.path();
        let mut wal = Wal::open(d, 7, 4096).unwrap();
        assert!(wal.append(&sample(1)).unwrap());
        assert!(wal.append(&sample(2)).unwrap());
        assert_eq!(read(d, 7).unwrap(), vec![sample(1), sample(2)]);
        // The next generation lives in the other file, empty so far.
        assert!(read(d, 8).unwrap().is_empty());
        wal.restart(8);
        assert!(wal.append(&sample(3)).unwrap());
        assert_eq!(read(d, 8).unwrap(), vec![sample(3)]);
        assert_eq!(read(d, 7).unwrap(), vec![sample(1), sample(2)]);
        // Generation 9 overwrites 7's file from the start; 7's tail is not replayed as 9.
        wal.restart(9);
        assert!(wal.append(&sample(4)).unwrap());
        assert_eq!(read(d, 9).unwrap(), vec![sample(4)]);
        assert!(read(d, 7).unwrap().is_empty());
        // A flipped byte in the second record ends the log before it.
        assert!(wal.append(&sample(5)).unwrap());
        let mut data = std::fs::read(file_path(d, 9)).unwrap();
        let first = HEAD + u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        assert_eq!(parse(&data, 9), vec![sample(4), sample(5)]);
        data[first + HEAD + 3] ^= 1;
        assert_eq!(parse(&data, 9), vec![sample(4)]);
    }

    #[test]
    fn a_full_log_asks_for_a_restart_and_a_huge_record_grows_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut wal = Wal::open(d, 1, 256).unwrap();
        let mut appended = 0;
        while wal.append(&sample(appended)).unwrap() {
            appended += 1;
        }
        assert!(appended > 1);
        assert_eq!(read(d, 1).unwrap().len(), appended as usize);
        wal.restart(2);
        let huge = vec![Change {
            table: Table::Content,
            key: vec![9; 32],
            value: Some(vec![0; 10_000]),
        }];
        assert!(wal.append(&huge).unwrap());
        assert_eq!(read(d, 2).unwrap(), vec![huge]);
        assert!(std::fs::metadata(file_path(d, 2)).unwrap().len() >= 10_000);
    }

    #[test]
    fn recovery_replays_a_generation_whose_checkpoint_was_cut_off_and_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let db = Database::create(d.join("meta.redb")).unwrap();
        // A fresh database names generation 1: nothing to replay yet.
        let mut wal = recover(&db, d, 4096).unwrap();
        assert_eq!(wal.generation(), 3);
        let row = |k: &str, v: Option<&str>| Change {
            table: Table::Objects,
            key: k.as_bytes().to_vec(),
            value: v.map(|v| v.as_bytes().to_vec()),
        };
        // Generation 3 froze and its checkpoint never committed; 4 took writes meanwhile.
        assert!(wal
            .append(&[row("a", Some("1")), row("b", Some("1"))])
            .unwrap());
        wal.restart(4);
        assert!(wal.append(&[row("b", None), row("c", Some("4"))]).unwrap());
        drop(wal);
        let wal = recover(&db, d, 4096).unwrap();
        assert_eq!(wal.generation(), 5);
        let r = db.begin_read().unwrap();
        let t = r.open_table(meta::OBJECTS).unwrap();
        let get = |k: &str| t.get(k.as_bytes()).unwrap().map(|v| v.value().to_vec());
        assert_eq!(get("a"), Some(b"1".to_vec()));
        assert_eq!(get("b"), None);
        assert_eq!(get("c"), Some(b"4".to_vec()));
        let state = r.open_table(meta::STATE).unwrap();
        assert_eq!(state.get("wal_gen").unwrap().unwrap().value(), 5);
        // Generations 3 and 4 are obsolete now: a third open replays nothing of them.
        drop((t, state, r));
        drop(recover(&db, d, 4096).unwrap());
        assert_eq!(
            db.begin_read()
                .unwrap()
                .open_table(meta::STATE)
                .unwrap()
                .get("wal_gen")
                .unwrap()
                .unwrap()
                .value(),
            7
        );
    }
}
