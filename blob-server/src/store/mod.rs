//! The storage engine: content-addressed, deduplicated, per-app storage with named objects,
//! exact quotas and crash-safe durability. See docs/blob-store-design.md for the format.
//!
//! Layout of a data directory: `FORMAT` (version header), `meta.redb` (metadata, [`meta`]),
//! `meta-0.wal`, `meta-1.wal` (metadata changes not yet committed to `meta.redb`, [`wal`]),
//! `volumes/*.vol` (small objects, [`volume`]), `objects/<xx>/<hex>` (large objects,
//! [`chunked`]), `tmp/` (writes in progress). Writers stream on the caller's thread; every
//! metadata change goes through one committer thread ([`commit`]) that group-commits.
//!
//! Where content bytes live is the [`Backend`]: this directory (the default), or, with the
//! cargo feature `s3`, an S3-compatible bucket ([`remote`]) while metadata stays here.

mod cache;
mod checkpoint;
mod chunked;
mod codec;
mod commit;
mod compact;
mod direct;
mod error;
mod id;
mod meta;
mod metadb;
mod overlay;
mod purge;
mod quota;
mod read;
mod recover;
#[cfg(feature = "s3")]
mod remote;
mod scrub;
mod volume;
mod wal;
mod write;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use overlay::Overlay;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead};

pub use cache::CacheStats;
pub use compact::CompactReport;
pub use error::{Error, Result};
pub use id::ContentId;
pub use meta::ObjectInfo;
pub use purge::{PurgeReport, PURGE_STEP};
pub use quota::Usage;
pub use read::BlobReader;
#[cfg(feature = "s3")]
pub use remote::{S3Config, MAX_PARTS, MIN_PART_SIZE};
pub use scrub::ScrubReport;
pub use write::{BlobWriter, Condition, ObjectOptions};

pub(crate) use error::meta as meta_err;

use chunked::ChunkFile;
use commit::{Committer, Op, Reply};
use meta::{ContentMeta, Location, ReadRows as _};
use metadb::MetaDb;
use quota::Quotas;
use read::Source;
use volume::Volumes;

/// Contents of the `FORMAT` file: the data directory's version header.
pub const FORMAT: &str = "berth-blob-store 1\n";

/// Tunables of the storage engine.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Objects up to this size go to volume files (group commit); larger ones get a file.
    pub small_max: u64,
    /// Chunk size of content files: the unit of checksums, range reads and writer memory.
    pub chunk_size: u32,
    /// A volume file is closed for appends once it would pass this size.
    pub volume_max: u64,
    /// Zeroed room kept written ahead of the active volume's end, so group fsyncs overwrite
    /// instead of growing the file (0: none).
    pub volume_prealloc: u64,
    /// Largest object accepted.
    pub max_object: u64,
    /// Quota of an app without its own.
    pub default_quota: u64,
    /// Most changes committed in one metadata transaction.
    pub max_batch: usize,
    /// Time between commits of the metadata database; changes in between are durable in the
    /// metadata log and replayed from it after a crash.
    pub checkpoint: Duration,
    /// Size of each of the two metadata log files; when one fills before the checkpoint of
    /// the other has finished, writers wait for it.
    pub wal_bytes: u64,
    /// Write content files (large objects) with `O_DIRECT`, past the page cache, where the
    /// file system allows it.
    pub direct_io: bool,
    /// Bytes of verified chunks kept in memory for reads of hot objects (0: no cache).
    pub read_cache: u64,
    /// Objects larger than this bypass the read cache.
    pub read_cache_max_object: u64,
}

impl StoreConfig {
    /// Refuses values the on-disk format cannot honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.small_max > volume::MAX_RECORD {
            return bad(format!(
                "small_max must be at most {} bytes",
                volume::MAX_RECORD
            ));
        }
        if self.chunk_size == 0 {
            return bad("chunk_size must be positive".into());
        }
        if self.checkpoint.is_zero() {
            return bad("meta_checkpoint_interval must be positive".into());
        }
        if self.wal_bytes < 1 << 20 {
            return bad("meta_log_size must be at least 1MiB".into());
        }
        let min_volume = volume::VOLUME_HEADER_LEN + volume::RECORD_HEADER_LEN + self.small_max;
        if self.volume_max < min_volume {
            return bad(format!(
                "volume_max must be at least {min_volume} bytes (one record)"
            ));
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            small_max: 64 << 10,
            chunk_size: 256 << 10,
            volume_max: 1 << 30,
            volume_prealloc: 4 << 20,
            max_object: 5 << 30,
            default_quota: 100 << 30,
            max_batch: 1024,
            checkpoint: Duration::from_millis(100),
            wal_bytes: wal::DEFAULT_CAPACITY,
            direct_io: true,
            read_cache: 128 << 20,
            read_cache_max_object: 8 << 20,
        }
    }
}

/// Where the bytes of new content go. Metadata always stays in the data directory.
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// Volume files and content files in the data directory.
    #[default]
    Local,
    /// Objects in an S3-compatible bucket (content already stored locally is still read
    /// from the data directory).
    #[cfg(feature = "s3")]
    S3(S3Config),
}

/// How long an unreferenced bucket object is left alone by the periodic sweep: an upload
/// between its last byte and its commit looks unreferenced for a moment.
#[cfg(feature = "s3")]
const REMOTE_SWEEP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Paths inside the data directory.
#[derive(Clone)]
pub(crate) struct Paths {
    pub root: PathBuf,
    pub objects: PathBuf,
    pub volumes: PathBuf,
    pub tmp: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
            objects: root.join("objects"),
            volumes: root.join("volumes"),
            tmp: root.join("tmp"),
        }
    }

    /// Where the content file of `id` lives: sharded by the first byte, like git.
    pub fn content(&self, id: &ContentId) -> PathBuf {
        let hex = id.hex();
        self.objects.join(&hex[..2]).join(hex)
    }
}

/// Makes a directory's entries (renames, creations) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Names are opaque bytes to the store, but must be non-empty and bounded.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 1024 {
        return Err(Error::InvalidName(what));
    }
    Ok(())
}

pub(crate) struct Inner {
    config: StoreConfig,
    paths: Paths,
    db: Arc<MetaDb>,
    /// Metadata changes not yet in a database commit: every reader looks here first.
    overlay: Arc<Overlay>,
    volumes: Arc<Volumes>,
    quotas: Arc<Quotas>,
    tx: Mutex<Option<Sender<commit::Request>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    temp_counter: AtomicU64,
    /// Aligned buffers for direct writes of content files, reused across uploads.
    staging: direct::Pool,
    /// Verified chunks of hot objects, for apps' reads.
    cache: Option<Arc<cache::ReadCache>>,
    batches: Arc<AtomicU64>,
    #[cfg(feature = "s3")]
    remote: Option<Arc<remote::Remote>>,
}

impl Inner {
    fn temp_path(&self) -> PathBuf {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        self.paths
            .tmp
            .join(format!("{}-{n}.tmp", std::process::id()))
    }

    fn shutdown(&self) {
        drop(self.tx.lock().take());
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
        // Leave the volume as long as its records (reopening would drop the room anyway).
        self.volumes.trim();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A blob store on one data directory. Cheap to clone; methods block on disk I/O (run them
/// with `spawn_blocking` in async code, or use the `*_from` helpers).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovering from any crash: temp files are
    /// removed, torn volume tails truncated, content files nothing points at deleted.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        Store::open_with(dir, config, Backend::Local)
    }

    /// Opens (or creates) the store in `dir` with new content going to `backend`. With a
    /// bucket, objects of it that no metadata points at are deleted (uploads cut off before
    /// their commit).
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        backend: Backend,
    ) -> Result<Store> {
        config.validate()?;
        #[cfg(feature = "s3")]
        let remote = match &backend {
            Backend::Local => None,
            Backend::S3(cfg) => Some(remote::Remote::connect(cfg)?),
        };
        #[cfg(not(feature = "s3"))]
        let Backend::Local = backend;
        let paths = Paths::new(dir.as_ref());
        fs::create_dir_all(&paths.root)?;
        recover::check_format(&paths.root)?;
        for d in [&paths.objects, &paths.volumes, &paths.tmp] {
            if !d.exists() {
                fs::create_dir(d)?;
                sync_dir(&paths.root)?;
            }
        }
        // Opening the database takes its file lock first, so a second process on the same
        // directory fails here before touching anything.
        let db = MetaDb::open(paths.root.join("meta.redb"))?;
        for entry in fs::read_dir(&paths.tmp)? {
            fs::remove_file(entry?.path())?;
        }
        let txn = db.get()?.begin_write().map_err(meta_err)?;
        txn.open_table(meta::CONTENT).map_err(meta_err)?;
        txn.open_table(meta::REFS).map_err(meta_err)?;
        txn.open_table(meta::USAGE).map_err(meta_err)?;
        txn.open_table(meta::OBJECTS).map_err(meta_err)?;
        txn.open_table(meta::QUARANTINE).map_err(meta_err)?;
        txn.open_table(meta::STATE).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        // Changes acknowledged after the last database commit are in the log: replay them
        // before anything reads the metadata.
        let wal = wal::recover(&*db.get()?, &paths.root, config.wal_bytes)?;

        let (used, ends, files, remote_nonces) = recover::scan_metadata(&*db.get()?)?;
        #[cfg(feature = "s3")]
        let remote_in_use = remote.is_some();
        #[cfg(not(feature = "s3"))]
        let remote_in_use = false;
        if !remote_in_use && !remote_nonces.is_empty() {
            return Err(Error::Config(format!(
                "{} keeps content in an S3 bucket: configure [storage] backend = \"s3\" \
                 (in a blob-server built with the s3 feature)",
                paths.root.display()
            )));
        }
        #[cfg(feature = "s3")]
        if let Some(r) = &remote {
            let n = r.sweep(|| Ok(remote_nonces), std::time::Duration::ZERO)?;
            tracing::info!(bucket = %r.describe, removed = n, "S3 backend ready");
        }
        let volumes = Arc::new(Volumes::open(
            paths.volumes.clone(),
            config.volume_max,
            config.volume_prealloc,
            &ends,
        )?);
        recover::sweep_orphans(&paths, &files)?;
        let quotas = Quotas::new(config.default_quota, used);
        let db = Arc::new(db);
        let overlay = Arc::new(Overlay::default());
        let (tx, rx) = mpsc::channel();
        let batches = Arc::new(AtomicU64::new(0));
        let committer = Committer {
            db: db.clone(),
            volumes: volumes.clone(),
            quotas: quotas.clone(),
            paths: paths.clone(),
            max_batch: config.max_batch.max(1),
            batches: batches.clone(),
            #[cfg(feature = "s3")]
            remote: remote.clone(),
            overlay: overlay.clone(),
            wal,
            checkpointer: checkpoint::Checkpointer::start(
                db.clone(),
                overlay.clone(),
                config.checkpoint.max(Duration::from_millis(100)),
            )?,
            checkpoint_every: config.checkpoint,
            checkpointed: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name("blob-committer".into())
            .spawn(move || committer.run(rx))?;
        let cache =
            cache::ReadCache::new(config.read_cache, config.read_cache_max_object).map(Arc::new);
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                paths,
                db,
                overlay,
                volumes,
                quotas,
                tx: Mutex::new(Some(tx)),
                committer: Mutex::new(Some(handle)),
                temp_counter: AtomicU64::new(0),
                staging: direct::Pool::default(),
                cache,
                batches,
                #[cfg(feature = "s3")]
                remote,
            }),
        })
    }

    /// Stops the committer (after the changes already queued) and closes the store.
    pub fn close(self) {
        self.inner.shutdown();
    }

    /// Sets an app's quota in bytes (`None`: the default). Lowering it below the app's usage
    /// refuses further writes but deletes nothing.
    pub fn set_quota(&self, app: &str, bytes: Option<u64>) {
        self.inner.quotas.set_limit(app, bytes);
    }

    /// The app's committed usage, reservations in flight and quota.
    pub fn usage(&self, app: &str) -> Usage {
        self.inner.quotas.usage(app)
    }

    /// Metadata transactions committed since open: with many concurrent writers this grows
    /// much slower than the number of writes (group commit).
    pub fn commit_batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Starts a streaming write for `app`.
    pub fn writer(&self, app: &str) -> Result<BlobWriter> {
        check_name("app", app)?;
        Ok(BlobWriter::new(self.inner.clone(), app))
    }

    /// Stores `data` for `app`; returns its id once durable.
    pub fn write(&self, app: &str, data: &[u8]) -> Result<ContentId> {
        let mut w = self.writer(app)?;
        w.write(data)?;
        w.finish_blob()
    }

    /// Stores `data` as the named object `bucket/key` of `app`.
    pub fn put_object(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        opts: ObjectOptions,
        data: &[u8],
    ) -> Result<ObjectInfo> {
        let mut w = self.writer(app)?;
        w.write(data)?;
        w.finish_object(bucket, key, opts)
    }

    /// Streams `reader` into the store for `app` (blocking work off the async threads).
    pub async fn write_from<R: AsyncRead + Unpin>(
        &self,
        app: &str,
        reader: R,
    ) -> Result<ContentId> {
        let w = self.fill(app, reader).await?;
        blocking(move || w.finish_blob()).await
    }

    /// Streams `reader` into the named object `bucket/key` of `app`.
    pub async fn put_object_from<R: AsyncRead + Unpin>(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        opts: ObjectOptions,
        reader: R,
    ) -> Result<ObjectInfo> {
        let w = self.fill(app, reader).await?;
        let (bucket, key) = (bucket.to_string(), key.to_string());
        blocking(move || w.finish_object(&bucket, &key, opts)).await
    }

    async fn fill<R: AsyncRead + Unpin>(&self, app: &str, reader: R) -> Result<BlobWriter> {
        let w = self.writer(app)?;
        let chunk = self.inner.config.chunk_size as usize;
        self.fill_writer(w, tokio::io::BufReader::with_capacity(chunk, reader))
            .await
    }

    /// Streams `reader` into `w` until its end: bytes are hashed and staged in place as they
    /// arrive (no copy besides the one into the writer), and each full chunk of a content
    /// file is written out on the blocking pool, so no async worker waits for the disk.
    /// Commit the result with [`BlobWriter::finish_blob`] or [`BlobWriter::finish_object`]
    /// (blocking), or their async forms.
    pub async fn fill_writer<R: AsyncBufRead + Unpin>(
        &self,
        mut w: BlobWriter,
        mut reader: R,
    ) -> Result<BlobWriter> {
        loop {
            let data = reader.fill_buf().await?;
            if data.is_empty() {
                return Ok(w);
            }
            let taken = if w.is_remote() {
                w.write_async(data).await?;
                data.len()
            } else {
                w.stage(data)?
            };
            reader.consume(taken);
            if w.needs_flush() {
                w = blocking(move || w.flush().map(|()| w)).await?;
            }
        }
    }

    /// Size of `id` if `app` holds it (by id or under a key); `NotFound` otherwise (whether or
    /// not others hold it).
    pub fn stat(&self, app: &str, id: &ContentId) -> Result<u64> {
        Ok(self.lookup(app, id)?.size)
    }

    /// Streams the whole content `id`, if `app` holds it.
    pub fn read(&self, app: &str, id: &ContentId) -> Result<BlobReader> {
        let epoch = self.cache_epoch();
        let meta = self.lookup(app, id)?;
        self.open_reader(id, meta, 0..meta.size, Some((app, epoch)))
    }

    /// Streams bytes `range` of content `id`, if `app` holds it.
    pub fn read_range(&self, app: &str, id: &ContentId, range: Range<u64>) -> Result<BlobReader> {
        let epoch = self.cache_epoch();
        let meta = self.lookup(app, id)?;
        self.open_reader(id, meta, range, Some((app, epoch)))
    }

    /// Metadata of the named object.
    pub fn get_object(&self, app: &str, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.view().object(app, bucket, key)?.ok_or(Error::NotFound)
    }

    /// A consistent view of the metadata for point lookups.
    fn view(&self) -> overlay::View<'_> {
        self.inner.overlay.view(&self.inner.db)
    }

    /// The content table as of now, for long scans.
    pub(crate) fn content_scan(&self) -> Result<overlay::ContentScan> {
        self.inner.overlay.content_scan(&self.inner.db)
    }

    /// Metadata and a reader (of `range`, or everything) of the named object, from one
    /// consistent snapshot.
    pub fn open_object(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(ObjectInfo, BlobReader)> {
        let epoch = self.cache_epoch();
        let (info, cm) = {
            let v = self.view();
            let info = v.object(app, bucket, key)?.ok_or(Error::NotFound)?;
            if v.quarantined(&info.id)? {
                return Err(Error::Corrupt(format!(
                    "{} is quarantined by the scrub",
                    info.id
                )));
            }
            let cm = v
                .content(&info.id)?
                .ok_or_else(|| Error::Corrupt(format!("object points at missing {}", info.id)))?;
            (info, cm)
        };
        let range = range.unwrap_or(0..cm.size);
        let reader = self.open_reader(&info.id, cm, range, Some((app, epoch)))?;
        Ok((info, reader))
    }

    /// Up to `limit` keys of `bucket` in byte order, after `after` (for pagination).
    pub fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let v = self.view();
        meta::list_keys(&v, app, bucket, after, limit)
    }

    /// Up to `limit` of the app's buckets (those holding at least one key), after `after`.
    pub fn list_buckets(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let v = self.view();
        meta::list_buckets(&v, app, after, limit)
    }

    /// Marks contents a scrub found corrupt: reads of them fail (never wrong bytes) until the
    /// same bytes are stored again.
    pub fn quarantine(&self, ids: &[ContentId]) -> Result<()> {
        let ops = ids.iter().map(|id| Op::Quarantine { id: *id }).collect();
        let done = self.inner.submit_all(ops);
        // Whatever happened to the ops: cached copies of these may be the rot itself.
        if let Some(cache) = &self.inner.cache {
            cache.forget_all();
        }
        for r in done? {
            r?;
        }
        Ok(())
    }

    /// Largest object the store accepts.
    pub fn max_object(&self) -> u64 {
        self.inner.config.max_object
    }

    /// Drops `app`'s direct hold on `id` (named objects pointing at it keep it).
    pub fn delete_blob(&self, app: &str, id: &ContentId) -> Result<()> {
        let op = Op::DeleteBlob {
            app: app.to_string(),
            id: *id,
        };
        self.inner.submit(op).map(|_: Reply| ())
    }

    /// Deletes the named object.
    pub fn delete_object(&self, app: &str, bucket: &str, key: &str) -> Result<()> {
        self.delete_object_if(app, bucket, key, Condition::Always)
    }

    /// Deletes the named object if `condition` holds for it (`PreconditionFailed` otherwise).
    pub fn delete_object_if(
        &self,
        app: &str,
        bucket: &str,
        key: &str,
        condition: Condition,
    ) -> Result<()> {
        let op = Op::DeleteObject {
            app: app.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            condition,
        };
        self.inner.submit(op).map(|_: Reply| ())
    }

    fn lookup(&self, app: &str, id: &ContentId) -> Result<ContentMeta> {
        let v = self.view();
        // Readable by id: content the app holds itself, by id or under one of its keys.
        if v.app_ref(app, id)?.is_none() {
            return Err(Error::NotFound);
        }
        if v.quarantined(id)? {
            return Err(Error::Corrupt(format!("{id} is quarantined by the scrub")));
        }
        v.content(id)?
            .ok_or_else(|| Error::Corrupt(format!("{id} is referenced but not stored")))
    }

    /// The read cache's epoch (0 without a cache), taken before a lookup: see
    /// [`cache::ReadCache::epoch`].
    fn cache_epoch(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, |c| c.epoch())
    }

    /// A reader of `range` of content `id`. Reads for an app (`app`, with the cache epoch
    /// taken before its lookup) use the read cache; the scrub's (`None`) always read storage.
    fn open_reader(
        &self,
        id: &ContentId,
        meta: ContentMeta,
        range: Range<u64>,
        app: Option<(&str, u64)>,
    ) -> Result<BlobReader> {
        if range.start > range.end || range.end > meta.size {
            return Err(Error::InvalidRange {
                start: range.start,
                end: range.end,
                size: meta.size,
            });
        }
        let cached = match (&self.inner.cache, app) {
            (Some(cache), Some((app, epoch))) => {
                cache.slot(app, id, meta.size, epoch).map(|s| (cache, s))
            }
            _ => None,
        };
        let source = match meta.location {
            Location::Volume { number, offset } => {
                let read = || {
                    let data = self.inner.volumes.read(number, offset, id, meta.size)?;
                    Ok(Bytes::from(data))
                };
                Source::Small(match cached {
                    // The record's CRC covers its header too: the cache keeps the data's own.
                    Some((cache, slot)) => cache.fetch(slot, 0, || {
                        read().map(|data| {
                            let crc = crc32fast::hash(&data);
                            (data, crc)
                        })
                    })?,
                    None => read()?,
                })
            }
            Location::File => match ChunkFile::open(&self.inner.paths.content(id), meta.size) {
                Ok(f) => Source::File(f),
                // Collected between our snapshot and the open: the app deleted it meanwhile.
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound)
                }
                Err(e) => return Err(e),
            },
            #[cfg(feature = "s3")]
            Location::Remote { nonce, chunk_size } => match &self.inner.remote {
                Some(r) => Source::Remote(r.open(nonce, chunk_size, meta.size)),
                None => {
                    return Err(Error::Config(
                        "content is in S3 but no bucket is configured".into(),
                    ))
                }
            },
            #[cfg(not(feature = "s3"))]
            Location::Remote { .. } => {
                return Err(Error::Config(
                    "content is in S3 but this build has no S3 support".into(),
                ))
            }
        };
        let reader = BlobReader::new(source, meta.size, range.start, range.end)?;
        Ok(match cached {
            Some((cache, slot)) => reader.with_cache(cache.clone(), slot),
            None => reader,
        })
    }

    /// The read cache's counters (`None` when it is off).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// With a bucket: deletes its objects that no metadata points at and that are older than
    /// an hour (uploads cut off before their commit, deletes that failed). Returns how many.
    pub fn sweep_backend(&self) -> Result<u64> {
        #[cfg(feature = "s3")]
        if let Some(r) = &self.inner.remote {
            let referenced = || {
                let mut out = std::collections::HashSet::new();
                self.content_scan()?.each(None, |_, cm| {
                    if let Location::Remote { nonce, .. } = cm.location {
                        out.insert(nonce);
                    }
                    Ok(true)
                })?;
                Ok(out)
            };
            return r.sweep(referenced, REMOTE_SWEEP_GRACE);
        }
        Ok(0)
    }

    #[cfg(test)]
    pub(crate) fn location(&self, id: &ContentId) -> Option<Location> {
        self.view().content(id).ok()?.map(|m| m.location)
    }

    #[cfg(test)]
    pub(crate) fn paths(&self) -> &Paths {
        &self.inner.paths
    }

    #[cfg(test)]
    pub(crate) fn volume_path(&self, number: u32) -> PathBuf {
        self.inner.volumes.path(number)
    }
}

/// Runs short store work (a metadata lookup, a read that the page cache serves, hashing one
/// chunk) right here on the async worker. A profile of small GETs showed `block_in_place` and
/// blocking-pool hops costing more in thread wake-ups (futex, context switches: a fifth of
/// the CPU) than the work itself; a cold-cache read stalls this worker for one disk read,
/// which is the trade nginx makes too.
pub async fn quick<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    f()
}

/// Runs blocking store work on tokio's blocking pool; a panic there is re-raised here.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Io(std::io::Error::other(e))),
    }
}
