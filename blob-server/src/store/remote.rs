//! The S3-compatible content backend (cargo feature `s3`, through `object_store`): content
//! bytes live in a bucket, metadata stays in the local redb.
//!
//! Every upload goes to a key of its own, `<prefix>data/<nonce>`, in the content-file format
//! of [`crate::store::chunked`] (header, then each chunk behind its CRC-32), streamed as one
//! PUT or, past `part_size`, an S3 multipart upload while the writer hashes it. The commit
//! then records that key under the content's id; a duplicate's key is deleted instead. Keys
//! are never reused, so garbage collection (deleting the key of content whose last reference
//! went) cannot race a new upload of the same bytes, and no server-side copy is needed. A
//! write cut off before its commit leaves at most an unreferenced key, which the sweep at
//! open (and after each compaction pass) deletes; incomplete multipart uploads are aborted
//! when the writer is dropped, or by the bucket's lifecycle rule after a crash.
//!
//! Reads fetch windows of whole chunks (one ranged GET each, one window ahead) and verify
//! every chunk's CRC before handing it out, so a changed or truncated object gives an error,
//! never wrong bytes. All object-store I/O runs on a runtime of its own; callers await its tasks (async
//! code) or block on them ([`block_on`], blocking code such as the scrub).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as KeyPath;
use object_store::{GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::store::chunked::{self, CRC_LEN, HEADER_LEN};
use crate::store::{Error, Result};

/// Smallest part S3 accepts in a multipart upload (all but the last part).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Most parts S3 accepts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
/// Parts of one upload in flight at once (memory per upload: this many parts plus one).
const PARTS_IN_FLIGHT: usize = 2;
/// Bytes fetched per GET of a read (whole chunks); one window is fetched ahead.
const READ_WINDOW: u64 = 4 << 20;

/// How to reach the bucket. Secrets are held here only, never logged (`Debug` hides them).
#[derive(Clone, Default)]
pub struct S3Config {
    /// Bucket name (it must exist).
    pub bucket: String,
    /// Endpoint URL of an S3-compatible server; empty for AWS itself.
    pub endpoint: String,
    /// Region (signing); S3-compatible servers mostly accept any.
    pub region: String,
    /// Key prefix of everything this server stores ("" or ending in `/`).
    pub prefix: String,
    /// Access key id; empty: from the environment (`AWS_ACCESS_KEY_ID`, ...).
    pub access_key_id: String,
    /// Secret access key; empty: from the environment.
    pub secret_access_key: String,
    /// Allow `http://` endpoints (local testing).
    pub allow_http: bool,
    /// Virtual-hosted-style URLs (`bucket.host`) instead of path style (`host/bucket`).
    pub virtual_hosted_style: bool,
    /// Size of multipart upload parts, and the largest object sent as one PUT.
    pub part_size: u64,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// A tokio runtime that may be dropped anywhere (also inside another runtime).
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The bucket, as the store uses it.
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    part_size: usize,
    /// Owns the threads `handle` spawns on.
    _rt: OwnedRuntime,
    handle: tokio::runtime::Handle,
    /// Nonces of uploads not yet committed or abandoned: the periodic sweep leaves them alone.
    writing: Mutex<HashSet<u64>>,
    /// `s3://bucket/prefix` for logs.
    pub describe: String,
}

impl Remote {
    /// Builds the client and checks that the bucket answers (a listing of one key).
    pub fn connect(cfg: &S3Config) -> Result<Arc<Remote>> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_allow_http(cfg.allow_http)
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style);
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        if !cfg.region.is_empty() {
            b = b.with_region(&cfg.region);
        }
        if !cfg.access_key_id.is_empty() {
            b = b.with_access_key_id(&cfg.access_key_id);
        }
        if !cfg.secret_access_key.is_empty() {
            b = b.with_secret_access_key(&cfg.secret_access_key);
        }
        let store = b
            .build()
            .map_err(|e| Error::Config(format!("S3 backend: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("blob-s3")
            .enable_all()
            .build()?;
        let remote = Remote {
            store: Arc::new(store),
            prefix: cfg.prefix.clone(),
            part_size: cfg.part_size.max(MIN_PART_SIZE) as usize,
            handle: rt.handle().clone(),
            _rt: OwnedRuntime(Some(rt)),
            writing: Mutex::new(HashSet::new()),
            describe: format!("s3://{}/{}", cfg.bucket, cfg.prefix),
        };
        let (store, prefix) = (remote.store.clone(), remote.data_prefix());
        block_on(remote.spawn(async move {
            let mut list = store.list(Some(&prefix));
            list.next().await.transpose().map(|_| ())
        }))
        .map_err(|e| Error::Config(format!("cannot list {}: {e}", remote.describe)))?;
        Ok(Arc::new(remote))
    }

    fn spawn<T: Send + 'static>(
        &self,
        f: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Task<T> {
        Task(self.handle.spawn(f))
    }

    fn data_prefix(&self) -> KeyPath {
        KeyPath::from(format!("{}data", self.prefix))
    }

    /// The key of upload `nonce`.
    pub fn key(&self, nonce: u64) -> KeyPath {
        KeyPath::from(format!("{}data/{nonce:016x}", self.prefix))
    }

    /// Starts an upload in the content-file format with chunks of `chunk_size` bytes.
    pub fn writer(self: &Arc<Self>, chunk_size: u32) -> RemoteWriter {
        let nonce = loop {
            let n = rand::random::<u64>();
            // u64::MAX marks a finished writer.
            if n != u64::MAX && self.writing.lock().insert(n) {
                break n;
            }
        };
        let mut part = Vec::with_capacity(self.part_size.min(1 << 20));
        part.extend_from_slice(&chunked::header(chunk_size));
        RemoteWriter {
            remote: self.clone(),
            nonce,
            chunk_size: chunk_size as usize,
            chunk: Vec::with_capacity(chunk_size as usize),
            part,
            upload: None,
            parts: VecDeque::new(),
        }
    }

    /// A reader of the object of `nonce` holding `size` content bytes.
    pub fn open(self: &Arc<Self>, nonce: u64, chunk_size: u32, size: u64) -> RemoteFile {
        RemoteFile {
            remote: self.clone(),
            nonce,
            chunk_size,
            size,
            stream: None,
        }
    }

    /// Deletes the object of `nonce` in the background (a failure leaves it to the sweep).
    pub fn delete(&self, nonce: u64) {
        let (store, key) = (self.store.clone(), self.key(nonce));
        self.handle.spawn(async move {
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(%key, error = %e, "could not delete an S3 object; the sweep will");
            }
        });
    }

    /// Deletes every object under `data/` that `referenced` does not name, that no upload of
    /// this process is writing, and that is older than `grace` (uploads committing right now
    /// may be missing from a metadata snapshot taken before their commit). `referenced` is
    /// called after the listing, so it sees every commit of a key listed. Returns how many
    /// were deleted.
    pub fn sweep(
        &self,
        referenced: impl FnOnce() -> Result<HashSet<u64>>,
        grace: Duration,
    ) -> Result<u64> {
        let (store, prefix) = (self.store.clone(), self.data_prefix());
        let listed = block_on(self.spawn(async move {
            let mut out = Vec::new();
            let mut list = store.list(Some(&prefix));
            while let Some(meta) = list.next().await {
                out.push(meta?);
            }
            Ok(out)
        }))?;
        let writing = self.writing.lock().clone();
        let referenced = referenced()?;
        let cutoff = chrono_now_minus(grace);
        let mut deleted = 0;
        for meta in listed {
            let Some(nonce) = meta
                .location
                .filename()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            if referenced.contains(&nonce) || writing.contains(&nonce) {
                continue;
            }
            if meta.last_modified.timestamp_millis() > cutoff {
                continue;
            }
            let (store, key) = (self.store.clone(), meta.location.clone());
            block_on(self.spawn(async move { store.delete(&key).await }))?;
            tracing::info!(key = %meta.location, "removed an unreferenced S3 object");
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// Milliseconds since the epoch, `grace` ago.
fn chrono_now_minus(grace: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(grace).as_millis() as i64
}

/// A task on the backend's runtime; awaiting it maps its errors into the store's.
struct Task<T>(JoinHandle<object_store::Result<T>>);

impl<T> Future for Task<T> {
    type Output = Result<T>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| match r {
            Ok(r) => r.map_err(from_os),
            Err(e) => Err(Error::Backend(format!("S3 task failed: {e}"))),
        })
    }
}

fn from_os(e: object_store::Error) -> Error {
    Error::Backend(e.to_string())
}

/// Runs `fut` to completion on this thread, parked between polls. Only for futures that
/// wait on the backend's runtime (its tasks, channels), never on I/O of their own; usable
/// from blocking code whether or not a runtime is around.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// An upload in progress. Dropping it aborts the multipart upload (if one started).
pub(crate) struct RemoteWriter {
    remote: Arc<Remote>,
    nonce: u64,
    chunk_size: usize,
    chunk: Vec<u8>,
    /// Framed bytes not yet sent.
    part: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: VecDeque<Task<()>>,
}

impl RemoteWriter {
    /// Frames `data` into the pending part (no I/O).
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (self.chunk_size - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == self.chunk_size {
                self.seal_chunk();
            }
        }
    }

    fn seal_chunk(&mut self) {
        let crc = crc32fast::hash(&self.chunk);
        // The first part starts small (most objects are): past that, room for a whole part
        // and the chunk that overfills it at once, not by doubling (which left a 16 MiB
        // buffer for an 8 MiB part, and both halves alive while it grew).
        let need = self.part.len() + CRC_LEN as usize + self.chunk.len();
        if need > self.part.capacity() {
            self.part
                .reserve_exact(self.part_capacity().max(need) - self.part.len());
        }
        self.part.extend_from_slice(&crc.to_le_bytes());
        self.part.extend_from_slice(&self.chunk);
        self.chunk.clear();
    }

    /// Room for a whole part and the chunk that overfills it: a part buffer never regrows.
    fn part_capacity(&self) -> usize {
        self.remote.part_size + self.chunk_size + CRC_LEN as usize
    }

    /// Whether a full part waits to be sent ([`RemoteWriter::ship`]).
    pub fn part_ready(&self) -> bool {
        self.part.len() >= self.remote.part_size
    }

    /// Sends every full part pending, waiting while too many are in flight. All parts but
    /// the last have exactly `part_size` bytes (some S3-compatible stores require that).
    pub async fn ship(&mut self) -> Result<()> {
        let part_size = self.remote.part_size;
        while self.part_ready() {
            let mut next = Vec::with_capacity(self.part_capacity());
            next.extend_from_slice(&self.part[part_size..]);
            self.part.truncate(part_size);
            let full = std::mem::replace(&mut self.part, next);
            self.send_part(full).await?;
        }
        while self.parts.len() > PARTS_IN_FLIGHT {
            if let Some(t) = self.parts.pop_front() {
                t.await?;
            }
        }
        Ok(())
    }

    async fn send_part(&mut self, data: Vec<u8>) -> Result<()> {
        if self.upload.is_none() {
            let (store, key) = (self.remote.store.clone(), self.remote.key(self.nonce));
            let up = self
                .remote
                .spawn(async move { store.put_multipart(&key).await })
                .await?;
            self.upload = Some(up);
        }
        if let Some(up) = self.upload.as_mut() {
            let fut = up.put_part(PutPayload::from(data));
            self.parts.push_back(self.remote.spawn(fut));
        }
        Ok(())
    }

    /// Sends the rest and completes the object: one PUT if it never filled a part.
    pub async fn finish(mut self) -> Result<RemoteObject> {
        if !self.chunk.is_empty() {
            self.seal_chunk();
        }
        let remote = self.remote.clone();
        let key = remote.key(self.nonce);
        if self.upload.is_none() {
            let data = std::mem::take(&mut self.part);
            let store = remote.store.clone();
            remote
                .spawn(async move { store.put(&key, PutPayload::from(data)).await })
                .await?;
        } else {
            self.ship().await?;
            if !self.part.is_empty() {
                let last = std::mem::take(&mut self.part);
                self.send_part(last).await?;
            }
            while let Some(t) = self.parts.pop_front() {
                t.await?;
            }
            if let Some(mut up) = self.upload.take() {
                remote.spawn(async move { up.complete().await }).await?;
            }
        }
        // The registration in `writing` passes to the object.
        let nonce = std::mem::replace(&mut self.nonce, u64::MAX);
        Ok(RemoteObject {
            remote,
            nonce,
            chunk_size: self.chunk_size as u32,
            armed: true,
        })
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if self.nonce == u64::MAX {
            return; // finished
        }
        self.remote.writing.lock().remove(&self.nonce);
        if let Some(mut up) = self.upload.take() {
            let parts = std::mem::take(&mut self.parts);
            self.remote.handle.spawn(async move {
                for p in parts {
                    let _ = p.0.await;
                }
                if let Err(e) = up.abort().await {
                    tracing::warn!(error = %e, "could not abort an S3 multipart upload");
                }
            });
        }
    }
}

/// A complete, uncommitted object: deleted when dropped unless [`RemoteObject::keep`] was
/// called (the commit recorded it).
pub(crate) struct RemoteObject {
    remote: Arc<Remote>,
    nonce: u64,
    chunk_size: u32,
    armed: bool,
}

impl RemoteObject {
    pub fn nonce(&self) -> u64 {
        self.nonce
    }
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
    /// Disarms the guard: the metadata now points at this object.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for RemoteObject {
    fn drop(&mut self) {
        if self.armed {
            self.remote.delete(self.nonce);
        }
        self.remote.writing.lock().remove(&self.nonce);
    }
}

/// A stored object read chunk by chunk, in order.
pub(crate) struct RemoteFile {
    remote: Arc<Remote>,
    nonce: u64,
    chunk_size: u32,
    size: u64,
    stream: Option<ChunkStream>,
}

/// Windows of whole chunks fetched ahead by a task, each one ranged GET read whole: a GET
/// finishes in moments whatever the client's pace (so the object store's request timeout
/// never cuts a slow download), and a chunk never straddles two windows.
struct ChunkStream {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes>>,
    /// The window being read, and the position in it.
    window: Bytes,
    pos: usize,
    /// The chunk the stream is at.
    next: u64,
    /// The stream starts with the header (not yet checked).
    header: bool,
    task: JoinHandle<()>,
}

impl Drop for ChunkStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RemoteFile {
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Where chunk `index` (its CRC) starts in the object.
    fn chunk_pos(&self, index: u64) -> u64 {
        HEADER_LEN + index * (self.chunk_size as u64 + CRC_LEN)
    }

    /// Starts fetching the chunks from `index` to the one holding byte `end - 1`; from the
    /// header when `index` is 0, so a whole read checks it too.
    fn start(&mut self, index: u64, end: u64) {
        let cs = self.chunk_size as u64;
        let file_len = chunked::file_len(self.size, self.chunk_size);
        let last = end.div_ceil(cs).max(index + 1);
        let per_window = (READ_WINDOW / (cs + CRC_LEN)).max(1);
        let mut ranges = Vec::new();
        let mut first = index;
        while first < last {
            let upto = (first + per_window).min(last);
            let from = if first == 0 { 0 } else { self.chunk_pos(first) };
            ranges.push(from..self.chunk_pos(upto).min(file_len));
            first = upto;
        }
        let (store, key) = (self.remote.store.clone(), self.remote.key(self.nonce));
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = self.remote.handle.spawn(async move {
            for range in ranges {
                let window = fetch(&*store, &key, range, file_len).await;
                let failed = window.is_err();
                if tx.send(window).await.is_err() || failed {
                    return;
                }
            }
        });
        self.stream = Some(ChunkStream {
            rx,
            window: Bytes::new(),
            pos: 0,
            next: index,
            header: index == 0,
            task,
        });
    }

    /// Reads chunk `index` into `buf` and verifies its checksum; `end` is the end of the
    /// byte range the caller will read (so no more is fetched).
    pub async fn read_chunk(&mut self, index: u64, end: u64, buf: &mut Vec<u8>) -> Result<()> {
        if self.stream.as_ref().map(|s| s.next) != Some(index) {
            self.start(index, end);
        }
        let r = self.next_chunk(index, buf).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn next_chunk(&mut self, index: u64, buf: &mut Vec<u8>) -> Result<()> {
        let cs = self.chunk_size as u64;
        let len = (self.size - index * cs).min(cs) as usize;
        let expected_header = chunked::header(self.chunk_size);
        let s = self.stream.as_mut().expect("started by the caller");
        if s.pos == s.window.len() {
            s.window = match s.rx.recv().await {
                Some(w) => w?,
                None => return Err(Error::Corrupt("stored object is truncated".into())),
            };
            s.pos = 0;
        }
        let header = if s.header { HEADER_LEN as usize } else { 0 };
        let need = header + CRC_LEN as usize + len;
        let Some(piece) = s.window.get(s.pos..s.pos + need) else {
            return Err(Error::Corrupt("stored object is truncated".into()));
        };
        if piece[..header] != expected_header[..header] {
            return Err(Error::Corrupt("stored object has a bad header".into()));
        }
        let crc = u32::from_le_bytes(piece[header..header + 4].try_into().expect("4 bytes"));
        let data = &piece[header + 4..];
        if crc32fast::hash(data) != crc {
            return Err(Error::Corrupt(format!(
                "checksum mismatch in chunk {index}"
            )));
        }
        buf.clear();
        buf.extend_from_slice(data);
        s.pos += need;
        s.header = false;
        s.next = index + 1;
        Ok(())
    }
}

/// One window of `key`, whole; an object of another length than `file_len` is corrupt.
async fn fetch(
    store: &dyn ObjectStore,
    key: &KeyPath,
    range: std::ops::Range<u64>,
    file_len: u64,
) -> Result<Bytes> {
    let want = range.end - range.start;
    let opts = GetOptions {
        range: Some(GetRange::Bounded(range)),
        ..GetOptions::default()
    };
    let got = match store.get_opts(key, opts).await {
        Ok(r) if r.meta.size != file_len => {
            return Err(Error::Corrupt(format!(
                "{key}: {} bytes stored, expected {file_len}",
                r.meta.size
            )))
        }
        Ok(r) => r.bytes().await.map_err(from_os)?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::Corrupt(format!("{key} is missing from the bucket")))
        }
        Err(e) => return Err(from_os(e)),
    };
    if got.len() as u64 != want {
        return Err(Error::Corrupt(format!("{key}: a short read")));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_on_waits_for_another_runtime_and_inside_one() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let h = rt.spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            7
        });
        assert_eq!(block_on(h).unwrap(), 7);
        // From a worker of a runtime (where tokio's own block_on would panic).
        let inner = rt.handle().clone();
        let got = rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1);
            inner.spawn(async move { tx.send(5).await });
            tokio::task::spawn_blocking(move || block_on(rx.recv())).await
        });
        assert_eq!(got.unwrap(), Some(5));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = S3Config {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            bucket: "b".into(),
            ..S3Config::default()
        };
        let d = format!("{c:?}");
        assert!(
            d.contains("\"b\"") && !d.contains("AKIDEXAMPLE") && !d.contains("wJalr"),
            "{d}"
        );
    }
}
