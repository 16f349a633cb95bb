//! One segment file: creation (header written and synced, directory synced), recovery scan
//! (truncating a torn or corrupt tail), the sparse index, and block reads for queries.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{self, Decoded, SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN};

/// An index entry is added once this many bytes were written since the previous one.
pub const INDEX_EVERY: u64 = 64 << 10;

/// A sparse index entry: the record at `offset` has sequence `seq` and time `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Sequence number of the record.
    pub seq: u64,
    /// Receive time of the record.
    pub time: i64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
}

/// What the store knows of one segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The file's path.
    pub path: PathBuf,
    /// The open file, shared with readers (it stays readable after retention unlinks it).
    pub file: Arc<File>,
    /// Sparse index, by increasing offset (and so sequence and time).
    pub index: Vec<IndexEntry>,
    /// Bytes written (header included).
    pub written: u64,
    /// Bytes known durable (fsynced); readers never look past this.
    pub durable: u64,
    /// Sequence of the last record written, 0 if none.
    pub last_seq: u64,
    /// Sequence of the last durable record, 0 if none.
    pub durable_seq: u64,
    /// Receive time of the last record written.
    pub last_time: i64,
    /// Offset of the last index entry (to know when the next is due).
    pub last_indexed: u64,
}

impl Segment {
    /// The file name of the segment starting at `first_seq`.
    pub fn file_name(first_seq: u64) -> String {
        format!("{first_seq:020}.seg")
    }

    /// Creates a new empty segment: header written and synced, then the directory synced.
    pub fn create(dir: &Path, first_seq: u64) -> io::Result<Segment> {
        let path = dir.join(Self::file_name(first_seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            first_seq,
        }
        .encode();
        let res = file.write_all_at(&header, 0).and_then(|()| file.sync_all());
        if let Err(e) = res {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        sync_dir(dir)?;
        Ok(Segment {
            path,
            file: Arc::new(file),
            index: Vec::new(),
            written: SEGMENT_HEADER_LEN as u64,
            durable: SEGMENT_HEADER_LEN as u64,
            last_seq: 0,
            durable_seq: 0,
            last_time: i64::MIN,
            last_indexed: 0,
        })
    }

    /// Notes a record appended at `offset` (for the index).
    pub fn note_append(&mut self, seq: u64, time: i64, offset: u64, len: u64) {
        if self.index.is_empty() || offset >= self.last_indexed + INDEX_EVERY {
            self.index.push(IndexEntry { seq, time, offset });
            self.last_indexed = offset;
        }
        self.last_seq = seq;
        self.last_time = time;
        self.written = offset + len;
    }

    /// First sequence number stored in the segment, if any record is.
    pub fn first_seq(&self) -> Option<u64> {
        self.index.first().map(|e| e.seq)
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether the segment holds no record.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The durable byte range of index block `i` (from its entry to the next, or the end).
    pub fn block_range(&self, i: usize) -> (u64, u64) {
        let start = self.index[i].offset;
        let end = self
            .index
            .get(i + 1)
            .map_or(self.durable, |e| e.offset.min(self.durable));
        (start, end.max(start))
    }
}

/// What recovery did to a segment.
#[derive(Debug)]
pub enum Recovered {
    /// The segment is usable (possibly after truncating `truncated` bytes of torn tail).
    Ok {
        /// The segment.
        segment: Segment,
        /// Bytes cut off its end.
        truncated: u64,
    },
    /// The file is unusable as a segment and was set aside (renamed `*.corrupt`) or, when
    /// it held nothing but a partial header, removed.
    SetAside(String),
}

/// Opens an existing segment, checks every record, and truncates the file after the last
/// valid one whose sequence number follows `prev_seq`. Never fails on bad content: only
/// I/O errors are errors.
pub fn recover(path: &Path, prev_seq: u64) -> io::Result<Recovered> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    let n = read_at_most(&file, &mut head, 0)?;
    match SegmentHeader::decode(&head[..n]) {
        Ok(_) => {}
        Err(record::HeaderError::Truncated) if len < SEGMENT_HEADER_LEN as u64 => {
            drop(file);
            std::fs::remove_file(path)?;
            return Ok(Recovered::SetAside(format!(
                "{}: partial segment header ({len} bytes), removed",
                path.display()
            )));
        }
        Err(e) => {
            drop(file);
            let aside = path.with_extension("corrupt");
            std::fs::rename(path, &aside)?;
            return Ok(Recovered::SetAside(format!(
                "{}: {e}; renamed to {}",
                path.display(),
                aside.display()
            )));
        }
    }
    let mut seg = Segment {
        path: path.to_owned(),
        file: Arc::new(file),
        index: Vec::new(),
        written: SEGMENT_HEADER_LEN as u64,
        durable: SEGMENT_HEADER_LEN as u64,
        last_seq: 0,
        durable_seq: 0,
        last_time: i64::MIN,
        last_indexed: 0,
    };
    let file = seg.file.clone();
    let mut reader = io::BufReader::with_capacity(1 << 20, &*file);
    io::Seek::seek(&mut reader, io::SeekFrom::Start(SEGMENT_HEADER_LEN as u64))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut at = SEGMENT_HEADER_LEN as u64;
    let mut prev = prev_seq;
    let mut chunk = vec![0u8; 1 << 20];
    let mut eof = false;
    'scan: loop {
        let mut pos = 0;
        loop {
            match record::decode(&buf[pos..]) {
                Decoded::Record(r, n) if r.seq > prev && r.time >= seg.last_time => {
                    prev = r.seq;
                    seg.note_append(r.seq, r.time, at, n as u64);
                    at += n as u64;
                    pos += n;
                }
                Decoded::Record(..) | Decoded::Corrupt => break 'scan,
                Decoded::Incomplete if eof => break 'scan,
                Decoded::Incomplete => break,
            }
        }
        buf.drain(..pos);
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            eof = true;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    drop(reader);
    let truncated = len - at;
    if truncated > 0 {
        seg.file.set_len(at)?;
        seg.file.sync_all()?;
    }
    seg.durable = at;
    seg.durable_seq = seg.last_seq;
    Ok(Recovered::Ok {
        segment: seg,
        truncated,
    })
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads `[start, end)` of a segment file.
pub fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(end.saturating_sub(start)).unwrap_or(0)];
    let n = read_at_most(file, &mut buf, start)?;
    buf.truncate(n);
    Ok(buf)
}

/// fsyncs a directory, so a created, renamed or removed entry is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::Record;

    fn append(seg: &mut Segment, seq: u64, payload: &[u8]) {
        let mut out = Vec::new();
        record::encode(
            &Record {
                seq,
                time: seq as i64,
                level: 6,
                payload,
            },
            &mut out,
        );
        seg.file.write_all_at(&out, seg.written).unwrap();
        let at = seg.written;
        seg.note_append(seq, seq as i64, at, out.len() as u64);
    }

    #[test]
    fn torn_tail_is_truncated_to_the_last_valid_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        for seq in 1..=3 {
            append(&mut seg, seq, b"{\"message\":\"x\"}");
        }
        let good = seg.written;
        // Half a record.
        seg.file.write_all_at(&[9, 0, 0, 0, 1, 2], good).unwrap();
        let path = seg.path.clone();
        drop(seg);
        let Recovered::Ok { segment, truncated } = recover(&path, 0).unwrap() else {
            panic!("set aside")
        };
        assert_eq!(truncated, 6);
        assert_eq!(segment.last_seq, 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        // Garbage in the middle: cut there.
        let mid = segment.index[0].offset + 10;
        segment.file.write_all_at(b"garbage!", mid).unwrap();
        drop(segment);
        let Recovered::Ok { segment, .. } = recover(&path, 0).unwrap() else {
            panic!()
        };
        assert_eq!(segment.last_seq, 0);
        assert_eq!(segment.written, SEGMENT_HEADER_LEN as u64);
    }

    #[test]
    fn bad_headers_are_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(Segment::file_name(1));
        std::fs::write(&p, b"BERT").unwrap();
        assert!(matches!(recover(&p, 0).unwrap(), Recovered::SetAside(_)));
        assert!(!p.exists());
        std::fs::write(&p, [7u8; 100]).unwrap();
        assert!(matches!(recover(&p, 0).unwrap(), Recovered::SetAside(_)));
        assert!(p.with_extension("corrupt").exists());
    }
}
