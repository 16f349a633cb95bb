//! Volume files: small objects appended as checksummed records (Haystack "needles"), so many
//! small writes share one fsync. Appends only write; the committer fsyncs a volume once per
//! group of writers before it commits their metadata. Recovery at open truncates a torn tail.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::store::{sync_dir, ContentId, Error, Result};

/// Magic at the start of every volume file.
pub(crate) const VOLUME_MAGIC: &[u8; 8] = b"BERTHVOL";
/// Format version of volume files.
pub(crate) const VOLUME_VERSION: u32 = 1;
/// Volume header: magic, version, volume number.
pub(crate) const VOLUME_HEADER_LEN: u64 = 16;
/// Magic at the start of every record.
pub(crate) const RECORD_MAGIC: u32 = 0x4345_5242; // "BREC" little-endian
/// Record header: magic, length, sha256, crc32.
pub(crate) const RECORD_HEADER_LEN: u64 = 4 + 4 + 32 + 4;
/// Records larger than this are never written, so a bigger length marks garbage.
pub(crate) const MAX_RECORD: u64 = 16 << 20;

/// Encodes one record: header then data. The CRC covers length, digest and data.
pub(crate) fn encode_record(id: &ContentId, data: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_HEADER_LEN as usize + data.len());
    rec.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    rec.extend_from_slice(&(data.len() as u32).to_le_bytes());
    rec.extend_from_slice(&id.0);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rec[4..]);
    crc.update(data);
    rec.extend_from_slice(&crc.finalize().to_le_bytes());
    rec.extend_from_slice(data);
    rec
}

/// Checks a whole record read from disk; returns its data. `expect` pins length and digest.
pub(crate) fn decode_record<'a>(
    rec: &'a [u8],
    expect: Option<(&ContentId, u64)>,
) -> Result<&'a [u8]> {
    let bad = |why: &str| Err(Error::Corrupt(format!("volume record: {why}")));
    if (rec.len() as u64) < RECORD_HEADER_LEN {
        return bad("truncated header");
    }
    if u32::from_le_bytes(rec[0..4].try_into().expect("4")) != RECORD_MAGIC {
        return bad("bad magic");
    }
    let len = u32::from_le_bytes(rec[4..8].try_into().expect("4")) as u64;
    if rec.len() as u64 != RECORD_HEADER_LEN + len {
        return bad("length mismatch");
    }
    let data = &rec[RECORD_HEADER_LEN as usize..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rec[4..40]);
    crc.update(data);
    if crc.finalize() != u32::from_le_bytes(rec[40..44].try_into().expect("4")) {
        return bad("checksum mismatch");
    }
    if let Some((id, size)) = expect {
        if rec[8..40] != id.0 || len != size {
            return bad("record belongs to other content");
        }
        // The CRC covers the stored digest and the data; comparing the data's SHA-256 with
        // the id is the scrub's job (a profile of small GETs showed it at 8% of their CPU).
    }
    Ok(data)
}

struct Active {
    number: u32,
    file: Arc<File>,
    len: u64,
    /// Set after a failed fsync: the kernel may have dropped dirty pages, so start a new file.
    broken: bool,
}

/// The set of volume files and the one being appended to.
pub(crate) struct Volumes {
    dir: PathBuf,
    max_len: u64,
    files: RwLock<HashMap<u32, Arc<File>>>,
    active: Mutex<Option<Active>>,
    /// Volumes emptied by compaction and unlinked, kept open for readers that looked their
    /// location up just before the move; dropped after a grace period.
    retired: Mutex<Vec<(u32, Instant)>>,
}

fn volume_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:08}.vol"))
}

impl Volumes {
    /// Opens every volume in `dir`, truncating torn tails. `referenced_end[v]` is the end of the
    /// last record of volume `v` the metadata points at: those bytes are acknowledged and kept;
    /// scanning starts there.
    pub fn open(dir: PathBuf, max_len: u64, referenced_end: &HashMap<u32, u64>) -> Result<Self> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".vol")
                .and_then(|n| n.parse::<u32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        // A volume nothing points at holds only dead records (its objects were deleted, or
        // compaction moved them and crashed before unlinking it): reclaim it. The newest one
        // stays, as the volume to append to.
        if let Some((&newest, older)) = numbers.split_last() {
            let mut removed = false;
            for &n in older {
                if !referenced_end.contains_key(&n) {
                    fs::remove_file(volume_path(&dir, n))?;
                    removed = true;
                }
            }
            if removed {
                sync_dir(&dir)?;
            }
            numbers.retain(|n| *n == newest || referenced_end.contains_key(n));
        }
        let mut files = HashMap::new();
        let mut last = None;
        for &n in &numbers {
            let path = volume_path(&dir, n);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let start = referenced_end.get(&n).copied().unwrap_or(VOLUME_HEADER_LEN);
            let len = recover(&file, n, start)?;
            let file = Arc::new(file);
            files.insert(n, file.clone());
            last = Some(Active {
                number: n,
                file,
                len,
                broken: false,
            });
        }
        Ok(Volumes {
            dir,
            max_len,
            files: RwLock::new(files),
            active: Mutex::new(last),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The volumes not being appended to, with their lengths: compaction candidates.
    pub fn sealed(&self) -> Result<Vec<(u32, u64)>> {
        let active = self.active.lock().as_ref().map(|a| a.number);
        let retired: Vec<u32> = self.retired.lock().iter().map(|(n, _)| *n).collect();
        let files: Vec<(u32, Arc<File>)> = self
            .files
            .read()
            .iter()
            .map(|(n, f)| (*n, f.clone()))
            .collect();
        let mut out = Vec::new();
        for (n, f) in files {
            if Some(n) != active && !retired.contains(&n) {
                out.push((n, f.metadata()?.len()));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Unlinks volume `number` (nothing points into it any more); open handles keep working
    /// for readers until [`Self::drop_retired`] lets them go.
    pub fn retire(&self, number: u32) -> Result<()> {
        fs::remove_file(volume_path(&self.dir, number))?;
        sync_dir(&self.dir)?;
        self.retired.lock().push((number, Instant::now()));
        Ok(())
    }

    /// Closes volumes retired more than `grace` ago.
    pub fn drop_retired(&self, grace: Duration) {
        let mut retired = self.retired.lock();
        let mut files = self.files.write();
        retired.retain(|(n, at)| {
            if at.elapsed() >= grace {
                files.remove(n);
                false
            } else {
                true
            }
        });
    }

    /// Appends a record for `id`; returns (volume, offset). Not durable until [`Self::sync`].
    pub fn append(&self, id: &ContentId, data: &[u8]) -> Result<(u32, u64)> {
        let rec = encode_record(id, data);
        let mut guard = self.active.lock();
        let need_new = match &*guard {
            None => true,
            Some(a) => a.broken || a.len + rec.len() as u64 > self.max_len,
        };
        if need_new {
            let next = guard.as_ref().map_or(1, |a| a.number + 1);
            *guard = Some(self.create(next)?);
        }
        let active = guard.as_mut().expect("active volume");
        let offset = active.len;
        if let Err(e) = active.file.write_all_at(&rec, offset) {
            // Leave no partial record behind the ones still to come; if even that fails,
            // recovery truncates it and new appends go to a fresh volume.
            if active.file.set_len(offset).is_err() {
                active.broken = true;
            }
            return Err(e.into());
        }
        active.len += rec.len() as u64;
        Ok((active.number, offset))
    }

    fn create(&self, number: u32) -> Result<Active> {
        let path = volume_path(&self.dir, number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(&volume_header(number), 0)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        let file = Arc::new(file);
        self.files.write().insert(number, file.clone());
        Ok(Active {
            number,
            file,
            len: VOLUME_HEADER_LEN,
            broken: false,
        })
    }

    /// Makes everything appended to volume `number` so far durable.
    pub fn sync(&self, number: u32) -> io::Result<()> {
        let file = self.files.read().get(&number).cloned();
        match file {
            Some(f) => f.sync_data(),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "no such volume")),
        }
    }

    /// Stops appending to `number` after a failed fsync.
    pub fn mark_broken(&self, number: u32) {
        if let Some(a) = self.active.lock().as_mut() {
            if a.number == number {
                a.broken = true;
            }
        }
    }

    /// Reads and verifies the record of `id` at (`number`, `offset`).
    pub fn read(&self, number: u32, offset: u64, id: &ContentId, size: u64) -> Result<Vec<u8>> {
        let file = self.files.read().get(&number).cloned();
        let file = file.ok_or_else(|| Error::Corrupt(format!("volume {number} is missing")))?;
        let mut rec = vec![0u8; (RECORD_HEADER_LEN + size) as usize];
        file.read_exact_at(&mut rec, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Corrupt(format!("volume {number} is truncated"))
            } else {
                Error::Io(e)
            }
        })?;
        decode_record(&rec, Some((id, size)))?;
        rec.drain(..RECORD_HEADER_LEN as usize);
        Ok(rec)
    }

    /// Path of volume `number` (for tests).
    #[cfg(test)]
    pub fn path(&self, number: u32) -> PathBuf {
        volume_path(&self.dir, number)
    }
}

/// Checks the header, then walks records from `start`; truncates at the first one that is
/// incomplete or fails its checksum. Returns the new length.
fn recover(file: &File, number: u32, start: u64) -> Result<u64> {
    let len = file.metadata()?.len();
    let mut header = [0u8; VOLUME_HEADER_LEN as usize];
    if len < VOLUME_HEADER_LEN {
        // A crash while creating the file: nothing in it was ever acknowledged.
        file.set_len(0)?;
        file.write_all_at(&volume_header(number), 0)?;
        file.sync_all()?;
        return Ok(VOLUME_HEADER_LEN);
    }
    file.read_exact_at(&mut header, 0)?;
    if &header[..8] != VOLUME_MAGIC {
        return Err(Error::Format(format!("volume {number}: bad magic")));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4"));
    if version != VOLUME_VERSION {
        return Err(Error::Format(format!("volume {number}: version {version}")));
    }
    if start > len {
        return Err(Error::Corrupt(format!(
            "volume {number} is {len} bytes but metadata points to {start}"
        )));
    }
    let mut pos = start;
    let mut head = [0u8; RECORD_HEADER_LEN as usize];
    let mut buf = Vec::new();
    while pos + RECORD_HEADER_LEN <= len {
        file.read_exact_at(&mut head, pos)?;
        let data_len = u32::from_le_bytes(head[4..8].try_into().expect("4")) as u64;
        if data_len > MAX_RECORD || pos + RECORD_HEADER_LEN + data_len > len {
            break;
        }
        buf.resize((RECORD_HEADER_LEN + data_len) as usize, 0);
        file.read_exact_at(&mut buf, pos)?;
        if decode_record(&buf, None).is_err() {
            break;
        }
        pos += RECORD_HEADER_LEN + data_len;
    }
    if pos != len {
        tracing::warn!(
            volume = number,
            from = len,
            to = pos,
            "truncating torn volume tail"
        );
        file.set_len(pos)?;
        file.sync_all()?;
    }
    Ok(pos)
}

fn volume_header(number: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(VOLUME_HEADER_LEN as usize);
    h.extend_from_slice(VOLUME_MAGIC);
    h.extend_from_slice(&VOLUME_VERSION.to_le_bytes());
    h.extend_from_slice(&number.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn id_of(data: &[u8]) -> ContentId {
        ContentId(Sha256::digest(data).into())
    }

    #[test]
    fn records_round_trip_and_reject_damage() {
        let data = b"hello volume";
        let id = id_of(data);
        let rec = encode_record(&id, data);
        assert_eq!(
            decode_record(&rec, Some((&id, data.len() as u64))).unwrap(),
            data
        );
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_record(&bad, Some((&id, data.len() as u64))).is_err(),
                "byte {i}"
            );
        }
        let other = id_of(b"other");
        assert!(decode_record(&rec, Some((&other, data.len() as u64))).is_err());
    }

    #[test]
    fn append_read_rotate_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volumes::open(dir.path().into(), 200, &HashMap::new()).unwrap();
        let mut placed = Vec::new();
        for i in 0..10u8 {
            let data = vec![i; 50];
            let id = id_of(&data);
            let (n, off) = v.append(&id, &data).unwrap();
            v.sync(n).unwrap();
            placed.push((id, n, off, data));
        }
        // 94-byte records, 200-byte volumes: rotation happened.
        assert!(placed.last().unwrap().1 > 1);
        for (id, n, off, data) in &placed {
            assert_eq!(&v.read(*n, *off, id, 50).unwrap(), data);
        }
        let last = placed.last().unwrap().1;
        let path = v.path(last);
        drop(v);
        // A torn append: half a record at the tail of the last volume.
        let len = fs::metadata(&path).unwrap().len();
        let half = &encode_record(&id_of(b"x"), &[9u8; 50])[..60];
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(half, len).unwrap();
        drop(f);
        // Every volume holds referenced records: none is reclaimed at open.
        let mut ends = HashMap::new();
        for (_, n, off, _) in &placed {
            let e = ends.entry(*n).or_insert(0);
            *e = (*e).max(off + RECORD_HEADER_LEN + 50);
        }
        let v = Volumes::open(dir.path().into(), 200, &ends).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        for (id, n, off, data) in &placed {
            assert_eq!(&v.read(*n, *off, id, 50).unwrap(), data);
        }
        let data = vec![42u8; 10];
        let (n, off) = v.append(&id_of(&data), &data).unwrap();
        assert_eq!(v.read(n, off, &id_of(&data), 10).unwrap(), data);
    }

    #[test]
    fn unreferenced_old_volumes_are_reclaimed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let v = Volumes::open(dir.path().into(), 200, &HashMap::new()).unwrap();
        let mut last = (0, 0);
        for i in 0..6u8 {
            let data = vec![i; 50];
            last = v.append(&id_of(&data), &data).unwrap();
            v.sync(last.0).unwrap();
        }
        drop(v);
        assert!(last.0 >= 3);
        // Only volume 2 is still referenced: 1 and every other old one go, the newest stays.
        let ends = HashMap::from([(2u32, VOLUME_HEADER_LEN + RECORD_HEADER_LEN + 50)]);
        let v = Volumes::open(dir.path().into(), 200, &ends).unwrap();
        let mut left: Vec<u32> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.trim_end_matches(".vol").parse().unwrap()
            })
            .collect();
        left.sort_unstable();
        assert_eq!(left, vec![2, last.0]);
        assert_eq!(
            v.sealed()
                .unwrap()
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("00000001.vol"), b"NOTAVOLUMEFILE!!!!!!").unwrap();
        let r = Volumes::open(dir.path().into(), 1 << 20, &HashMap::new());
        assert!(matches!(r, Err(Error::Format(_))));
    }
}
