//! Streaming reads: a [`BlobReader`] hands out an object (or a byte range of it) chunk by
//! chunk, each verified against its checksum before it is returned. Reads for apps go through
//! the [`ReadCache`] when one is configured; the scrub's never do.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::store::cache::{ReadCache, Slot};
use crate::store::chunked::ChunkFile;
use crate::store::{Error, Result};

pub(crate) enum Source {
    /// A small object, already verified as a whole (its record's CRC).
    Small(Bytes),
    /// A content file read one chunk at a time.
    File(ChunkFile),
    /// An object in the bucket, streamed and checked one chunk at a time.
    #[cfg(feature = "s3")]
    Remote(crate::store::remote::RemoteFile),
}

/// Reads verified bytes of one object in `start..end`. Also implements [`io::Read`]
/// (corruption then surfaces as an `InvalidData` I/O error).
pub struct BlobReader {
    source: Source,
    size: u64,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    pending: Bytes,
    /// Where this object's chunks are cached, if they are.
    cache: Option<(Arc<ReadCache>, Slot)>,
}

impl BlobReader {
    pub(crate) fn new(source: Source, size: u64, start: u64, end: u64) -> Result<Self> {
        if start > end || end > size {
            return Err(Error::InvalidRange { start, end, size });
        }
        Ok(BlobReader {
            source,
            size,
            pos: start,
            end,
            buf: Vec::new(),
            pending: Bytes::new(),
            cache: None,
        })
    }

    /// Serves chunks of a content file from `cache` (in `slot`) and keeps those it reads
    /// (other sources do not read chunks, and ignore it).
    pub(crate) fn with_cache(mut self, cache: Arc<ReadCache>, slot: Slot) -> Self {
        self.cache = Some((cache, slot));
        self
    }

    /// Size of the whole object.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Narrows the reader to `range` of the object (before anything was read).
    pub fn restrict(&mut self, range: std::ops::Range<u64>) -> Result<()> {
        if range.start > range.end || range.end > self.size {
            return Err(Error::InvalidRange {
                start: range.start,
                end: range.end,
                size: self.size,
            });
        }
        self.pos = range.start;
        self.end = range.end;
        Ok(())
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next verified piece (at most one chunk), or `None` at the end of the range.
    /// Blocking: with a bucket this waits for the network (use [`BlobReader::next_piece`]
    /// in async code).
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        #[cfg(feature = "s3")]
        if let Source::Remote(_) = self.source {
            return crate::store::remote::block_on(self.next_piece());
        }
        self.next_local()
    }

    /// [`BlobReader::next_chunk`] for async code: local content is read in place (see
    /// [`crate::store::quick`]), a bucket's is awaited.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        #[cfg(feature = "s3")]
        if let Source::Remote(file) = &mut self.source {
            if self.pos >= self.end {
                return Ok(None);
            }
            let cs = file.chunk_size() as u64;
            let index = self.pos / cs;
            file.read_chunk(index, self.end, &mut self.buf).await?;
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            let out = self.piece(chunk, index * cs);
            self.pos += out.len() as u64;
            return Ok(Some(out));
        }
        self.next_local()
    }

    /// The part of `chunk` (starting at byte `chunk_start` of the object) that lies in the
    /// range ahead.
    fn piece(&self, chunk: Bytes, chunk_start: u64) -> Bytes {
        let from = (self.pos - chunk_start) as usize;
        let to = ((self.end - chunk_start).min(chunk.len() as u64)) as usize;
        if from == 0 && to == chunk.len() {
            chunk
        } else {
            chunk.slice(from..to)
        }
    }

    /// Chunk `index` of a content file: from the cache, or read, verified and then cached.
    fn file_chunk(&mut self, index: u64) -> Result<Bytes> {
        let Source::File(file) = &self.source else {
            unreachable!("only called for content files")
        };
        let buf = &mut self.buf;
        let mut read = || {
            let crc = file.read_chunk(index, buf)?;
            Ok((Bytes::from(std::mem::take(buf)), crc))
        };
        match &self.cache {
            Some((cache, slot)) => cache.fetch(*slot, index, read),
            None => read().map(|(data, _)| data),
        }
    }

    fn next_local(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let out = match &self.source {
            Source::Small(data) if self.pos == 0 && self.end as usize == data.len() => {
                // A small object read whole: hand it over.
                match std::mem::replace(&mut self.source, Source::Small(Bytes::new())) {
                    Source::Small(data) => data,
                    _ => unreachable!("matched Small above"),
                }
            }
            Source::Small(data) => data.slice(self.pos as usize..self.end as usize),
            Source::File(file) => {
                let cs = file.chunk_size() as u64;
                let index = self.pos / cs;
                let chunk = self.file_chunk(index)?;
                self.piece(chunk, index * cs)
            }
            #[cfg(feature = "s3")]
            Source::Remote(_) => unreachable!("bucket reads go through next_piece"),
        };
        self.pos += out.len() as u64;
        Ok(Some(out))
    }
}

impl io::Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            match self.next_chunk() {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(Error::Io(e)) => return Err(e),
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}
