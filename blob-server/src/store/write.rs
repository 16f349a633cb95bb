//! Streaming writes: bytes are hashed (SHA-256 by `ring`'s assembly: SHA-NI where the CPU has it,
//! AVX2 otherwise, three times `sha2`'s portable code on CPUs without SHA-NI) and charged to
//! the app's quota as they arrive. Small objects are buffered (at most `small_max` bytes) and
//! appended to a volume at the end; past that the writer spills to a chunked temp file, so
//! memory stays bounded by one chunk whatever the object's size. With a bucket as the
//! backend every object streams there instead (bounded by a few upload parts).

use std::sync::mpsc;
use std::sync::Arc;

use ring::digest::{Context, SHA256};

use crate::store::chunked::ChunkWriter;
use crate::store::commit::{Op, Reply, ReplyTo, Request, Staged, Target};
use crate::store::quota::Reservation;
use crate::store::{ContentId, Error, Inner, ObjectInfo, Result};

/// Content type and user metadata of a named object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    /// Echoed as `Content-Type` on reads.
    pub content_type: String,
    /// User metadata (`X-Riak-Meta-*`).
    pub user_meta: Vec<(String, String)>,
    /// What must be true of the current object for the write to happen, checked atomically
    /// with the commit.
    pub condition: Condition,
}

/// A precondition on the current version of a named object (HTTP `If-Match`,
/// `If-None-Match`), evaluated inside the commit so two racing writers cannot both pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// No condition.
    #[default]
    Always,
    /// Only if no object exists under the name (`If-None-Match: *`).
    Absent,
    /// Only if an object exists (`If-Match: *`).
    Present,
    /// Only if the current object's content is one of these (`If-Match: "etag"`).
    Matches(Vec<ContentId>),
    /// Only if there is no current object or its content is none of these
    /// (`If-None-Match: "etag"`).
    NoneMatch(Vec<ContentId>),
}

impl Condition {
    /// Whether the condition holds for the current object's content (`None`: no object).
    pub fn holds(&self, current: Option<&ContentId>) -> bool {
        match (self, current) {
            (Condition::Always, _) => true,
            (Condition::Absent, c) => c.is_none(),
            (Condition::Present, c) => c.is_some(),
            (Condition::Matches(ids), Some(c)) => ids.contains(c),
            (Condition::Matches(_), None) => false,
            (Condition::NoneMatch(ids), Some(c)) => !ids.contains(c),
            (Condition::NoneMatch(_), None) => true,
        }
    }
}

enum Body {
    Small(Vec<u8>),
    Large(ChunkWriter),
    #[cfg(feature = "s3")]
    Remote(crate::store::remote::RemoteWriter),
}

/// An object being written. Feed it with [`BlobWriter::write`], then commit it with
/// [`BlobWriter::finish_blob`] or [`BlobWriter::finish_object`]; dropping it instead discards
/// everything (temp file and quota reservation included). Blocking: use `spawn_blocking`
/// from async code, or the store's `*_from` helpers.
pub struct BlobWriter {
    inner: Arc<Inner>,
    app: String,
    hasher: Context,
    size: u64,
    reservation: Reservation,
    body: Body,
    limit: u64,
    /// The object outgrew a volume record: the next [`BlobWriter::flush`] moves it to a
    /// content file (creating the file and writing what was buffered waits for the disk).
    spill_due: bool,
}

impl BlobWriter {
    pub(crate) fn new(inner: Arc<Inner>, app: &str) -> Self {
        let reservation = inner.quotas.reservation(app);
        let limit = inner.config.max_object;
        BlobWriter {
            limit,
            inner,
            app: app.to_string(),
            hasher: Context::new(&SHA256),
            size: 0,
            reservation,
            body: Body::Small(Vec::new()),
            spill_due: false,
        }
    }

    /// Lowers the largest object this writer accepts (an app's own `max_object_bytes`).
    pub fn limit_size(&mut self, limit: u64) {
        self.limit = self.limit.min(limit);
    }

    /// The id of the bytes written so far (what committing now would store).
    pub fn content_id(&self) -> ContentId {
        ContentId::from_digest(self.hasher.clone().finish())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes. Fails with `TooLarge` or `QuotaExceeded` before storing anything more.
    /// Blocking (disk or, with a bucket, network I/O).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.take_all(data)?;
        #[cfg(feature = "s3")]
        if let Body::Remote(w) = &mut self.body {
            if w.part_ready() {
                crate::store::remote::block_on(w.ship())?;
            }
        }
        Ok(())
    }

    /// Whether this writer streams to a bucket (then [`BlobWriter::write_async`] serves
    /// async code better than `write`).
    pub fn is_remote(&self) -> bool {
        #[cfg(feature = "s3")]
        return self.inner.remote.is_some();
        #[cfg(not(feature = "s3"))]
        false
    }

    /// [`BlobWriter::write`] for async code: upload parts are awaited, not blocked on. Meant
    /// for a bucket; a local writer's disk writes still block here (async code uses
    /// [`BlobWriter::stage`] and runs [`BlobWriter::flush`] off its workers instead).
    pub async fn write_async(&mut self, data: &[u8]) -> Result<()> {
        self.take_all(data)?;
        #[cfg(feature = "s3")]
        if let Body::Remote(w) = &mut self.body {
            w.ship().await?;
        }
        Ok(())
    }

    /// Stages all of `data`, flushing in place whenever a flush is due (blocking).
    fn take_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = self.stage(data)?;
            data = &data[n..];
            if self.needs_flush() {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Takes bytes from the front of `data` without touching the disk: checks limits,
    /// charges the quota, hashes, and buffers or stages them, up to the end of a content
    /// file's current chunk. Answers how many bytes it took; when that is short of `data`,
    /// [`BlobWriter::needs_flush`] holds and [`BlobWriter::flush`] must run before more is
    /// taken. Fails with `TooLarge` or `QuotaExceeded` before taking bytes past a limit
    /// (what was taken before stays charged until the writer is dropped).
    pub fn stage(&mut self, data: &[u8]) -> Result<usize> {
        if self.size + data.len() as u64 > self.limit {
            return Err(Error::TooLarge { limit: self.limit });
        }
        // With a bucket, every byte goes there (no local volumes).
        #[cfg(feature = "s3")]
        if let (Some(remote), Body::Small(buf)) = (&self.inner.remote, &self.body) {
            let mut w = remote.writer(self.inner.config.chunk_size);
            w.push(buf);
            self.body = Body::Remote(w);
        }
        if matches!(self.body, Body::Small(_))
            && self.size + data.len() as u64 > self.inner.config.small_max
        {
            self.spill_due = true;
            return Ok(0);
        }
        let take = match &self.body {
            Body::Large(w) => w.room().min(data.len()),
            _ => data.len(),
        };
        let data = &data[..take];
        self.reservation.grow(take as u64)?;
        self.hasher.update(data);
        match &mut self.body {
            Body::Small(buf) => buf.extend_from_slice(data),
            Body::Large(w) => {
                w.stage(data);
            }
            #[cfg(feature = "s3")]
            Body::Remote(w) => w.push(data),
        }
        self.size += take as u64;
        Ok(take)
    }

    /// Whether [`BlobWriter::flush`] must run before more bytes are staged: the object
    /// outgrew a volume record, or a content file's chunk is full.
    pub fn needs_flush(&self) -> bool {
        self.spill_due || matches!(&self.body, Body::Large(w) if w.is_full())
    }

    /// Moves a grown object to a new content file, or writes out a full chunk of it.
    /// Blocking (waits for the disk).
    pub fn flush(&mut self) -> Result<()> {
        if self.spill_due {
            let Body::Small(buf) = &self.body else {
                unreachable!("a spill is due only from a buffered body")
            };
            let inner = &self.inner;
            let direct = inner.config.direct_io.then_some(&inner.staging);
            let mut w = ChunkWriter::create(inner.temp_path(), inner.config.chunk_size, direct)?;
            w.write(buf)?;
            self.body = Body::Large(w);
            self.spill_due = false;
        }
        match &mut self.body {
            Body::Large(w) if w.is_full() => w.flush(),
            _ => Ok(()),
        }
    }

    /// Commits the content for direct access by id; returns its id once durable.
    pub fn finish_blob(self) -> Result<ContentId> {
        match self.finish(Target::Blob)? {
            Reply::Id(id) => Ok(id),
            _ => unreachable!("a blob commit answers its id"),
        }
    }

    /// Commits the content as the named object `bucket/key` (replacing any previous one);
    /// returns its metadata once durable.
    pub fn finish_object(self, bucket: &str, key: &str, opts: ObjectOptions) -> Result<ObjectInfo> {
        match self.finish(object_target(bucket, key, opts)?)? {
            Reply::Object(info) => Ok(info),
            _ => unreachable!("an object commit answers its metadata"),
        }
    }

    /// Commits the content as the named object `bucket/key` from async code: the bytes are
    /// made ready in place (a volume append, or the temp file's fsync), then the task awaits
    /// the group commit without holding a thread.
    pub async fn commit_object(
        self,
        bucket: &str,
        key: &str,
        opts: ObjectOptions,
    ) -> Result<ObjectInfo> {
        match self.commit(object_target(bucket, key, opts)?).await? {
            Reply::Object(info) => Ok(info),
            _ => unreachable!("an object commit answers its metadata"),
        }
    }

    /// Commits the content for direct access by id from async code (see
    /// [`BlobWriter::commit_object`]).
    pub async fn commit_blob(self) -> Result<ContentId> {
        match self.commit(Target::Blob).await? {
            Reply::Id(id) => Ok(id),
            _ => unreachable!("a blob commit answers its id"),
        }
    }

    async fn commit(self, target: Target) -> Result<Reply> {
        let inner = self.inner.clone();
        #[cfg(feature = "s3")]
        let op = if self.is_remote() {
            let (w, staged) = self.stage_remote().await?;
            w.op(staged, target)
        } else {
            self.prepare_async(target).await?
        };
        #[cfg(not(feature = "s3"))]
        let op = self.prepare_async(target).await?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        inner.send(Request {
            op,
            reply: ReplyTo::Async(reply),
        })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// [`BlobWriter::prepare`] from async code: a small object's volume append (a write into
    /// the page cache) runs in place; a large object's fsync, which waits for the disk, runs
    /// on the blocking pool so it holds no async worker meanwhile.
    async fn prepare_async(self, target: Target) -> Result<Op> {
        if matches!(self.body, Body::Large(_)) {
            crate::store::blocking(move || self.prepare(target)).await
        } else {
            crate::store::quick(move || self.prepare(target)).await
        }
    }

    fn finish(self, target: Target) -> Result<Reply> {
        let inner = self.inner.clone();
        let op = self.prepare(target)?;
        inner.submit(op)
    }

    /// Finishes the bytes (hash, volume append or temp-file fsync, or the bucket upload)
    /// and builds the commit op. Blocking.
    fn prepare(mut self, target: Target) -> Result<Op> {
        #[cfg(feature = "s3")]
        if self.is_remote() {
            let (w, staged) = crate::store::remote::block_on(self.stage_remote())?;
            return Ok(w.op(staged, target));
        }
        let id = self.content_id();
        let staged = match std::mem::replace(&mut self.body, Body::Small(Vec::new())) {
            Body::Small(buf) => {
                let (number, offset) = self.inner.volumes.append(&id, &buf)?;
                Staged::Volume { number, offset }
            }
            Body::Large(w) => Staged::Temp(w.finish()?),
            #[cfg(feature = "s3")]
            Body::Remote(_) => unreachable!("remote writers are staged above"),
        };
        Ok(self.op(staged, target))
    }

    /// Completes the bucket upload (an empty object too: every content is in the bucket).
    #[cfg(feature = "s3")]
    async fn stage_remote(mut self) -> Result<(Self, Staged)> {
        let w = match std::mem::replace(&mut self.body, Body::Small(Vec::new())) {
            Body::Remote(w) => w,
            _ => match &self.inner.remote {
                Some(r) => r.writer(self.inner.config.chunk_size),
                None => return Err(Error::Config("no bucket configured".into())),
            },
        };
        let object = w.finish().await?;
        Ok((self, Staged::Remote(object)))
    }

    /// The commit op for the bytes written, staged as `staged`.
    fn op(self, staged: Staged, target: Target) -> Op {
        Op::Store {
            id: self.content_id(),
            app: self.app,
            size: self.size,
            staged,
            reservation: self.reservation,
            target,
        }
    }
}

/// What committing as the named object `bucket/key` means, once the names are checked.
fn object_target(bucket: &str, key: &str, opts: ObjectOptions) -> Result<Target> {
    crate::store::check_name("bucket", bucket)?;
    crate::store::check_name("key", key)?;
    Ok(Target::Object {
        bucket: bucket.to_string(),
        key: key.to_string(),
        content_type: opts.content_type,
        user_meta: opts.user_meta,
        condition: opts.condition,
    })
}

impl Inner {
    /// Hands an op to the committer and waits until it is durable (or failed).
    pub(crate) fn submit(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request {
            op,
            reply: ReplyTo::Blocking(reply),
        })?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Queues a request for the committer.
    pub(crate) fn send(&self, request: Request) -> Result<()> {
        let tx = self.tx.lock();
        let tx = tx.as_ref().ok_or(Error::Closed)?;
        tx.send(request).map_err(|_| Error::Closed)
    }

    /// Hands several ops to the committer at once (so they can share a commit) and waits for
    /// all of them; answers in order.
    pub(crate) fn submit_all(&self, ops: Vec<Op>) -> Result<Vec<Result<Reply>>> {
        let mut waits = Vec::with_capacity(ops.len());
        {
            let tx = self.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            for op in ops {
                let (reply, rx) = mpsc::sync_channel(1);
                let reply = ReplyTo::Blocking(reply);
                tx.send(Request { op, reply }).map_err(|_| Error::Closed)?;
                waits.push(rx);
            }
        }
        Ok(waits
            .into_iter()
            .map(|rx| rx.recv().map_err(|_| Error::Closed)?)
            .collect())
    }
}
