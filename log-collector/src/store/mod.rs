//! Durable per-app storage: append-only segment files under `DIR/apps/<app>/`, one writer
//! thread with group commit, readers that only ever see fsynced records.
//!
//! Task model: connection tasks encode events into an [`EventBatch`], take byte permits from
//! a bounded budget (back-pressure: a full budget makes `submit` wait) and hand the batch to
//! the writer thread. The writer drains every batch waiting, assigns per-app sequence numbers,
//! appends, then fsyncs every touched file once and only then acknowledges the batches and
//! publishes the new durable sequence to tail readers. A commit follows at most
//! `commit_interval` after the first write it covers. Readers ([`read`]) use the sparse index
//! and positional reads on shared file handles.

pub mod read;
pub mod record;
pub mod segment;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

pub use segment::{IndexEntry, Segment};

/// Why the store could not take or keep events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No space left on the data directory's file system.
    #[error("disk full: the log collector has no space left to store events")]
    DiskFull,
    /// Any other I/O failure writing or syncing.
    #[error("storage error: the log collector could not write events durably")]
    Io,
    /// The store is shutting down.
    #[error("the log collector is shutting down")]
    Closed,
}

impl StoreError {
    fn from_io(e: &std::io::Error) -> StoreError {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            StoreError::DiskFull
        } else {
            StoreError::Io
        }
    }
}

/// How much one app may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of segments kept; the oldest segments go first.
    pub bytes: u64,
    /// Age after which events are deleted (a whole segment at a time).
    pub retention: Duration,
}

/// Looks up an app's limits (from its tenant entry, or defaults).
pub type LimitsFn = Arc<dyn Fn(&str) -> Limits + Send + Sync>;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Data directory; segments live in `DIR/apps/<app>/`.
    pub dir: PathBuf,
    /// Largest segment before rotation (also at most a quarter of the app's `log_bytes`).
    pub segment_bytes: u64,
    /// Oldest first record a segment may have before rotation.
    pub segment_age: Duration,
    /// Longest wait before written events are fsynced.
    pub commit_interval: Duration,
    /// Bytes of events accepted but not yet written, across all connections.
    pub max_buffer_bytes: usize,
}

/// Events of one app, encoded, waiting to be stored.
#[derive(Debug, Default, Clone)]
pub struct EventBatch {
    /// Payloads, back to back.
    pub data: Vec<u8>,
    /// (severity, end offset in `data`) per event.
    pub items: Vec<(u8, u32)>,
}

impl EventBatch {
    /// Appends an event whose payload `encode` writes into the buffer.
    pub fn push(&mut self, level: u8, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.data);
        self.items.push((level, self.data.len() as u32));
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Where a stored batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Sequence number of the batch's last event.
    pub last_seq: u64,
}

/// The answer a submitter gets once its batch is durable (or failed).
pub type Receipt = oneshot::Receiver<Result<Committed, StoreError>>;

/// What the writer thread is handed.
enum Msg {
    /// Events to store.
    Events(Job),
    /// Take the app out of service: its writer and shared state go, its directory is moved
    /// under `purging/`; the answer is where it went (`None`: the app had no directory).
    Purge {
        app: String,
        done: mpsc::SyncSender<std::io::Result<Option<PathBuf>>>,
    },
}

/// Where purged apps' directories wait for deletion (emptied at every open).
const PURGING_DIR: &str = "purging";

/// What [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Segment files deleted.
    pub segments: u64,
    /// Bytes of files deleted (segments, and any segment set aside as corrupt).
    pub bytes: u64,
}

struct Job {
    app: String,
    batch: EventBatch,
    _permit: OwnedSemaphorePermit,
    _app_permit: OwnedSemaphorePermit,
    done: Option<oneshot::Sender<Result<Committed, StoreError>>>,
}

/// One app's state shared between the writer and readers.
pub struct AppShared {
    /// Segments, oldest first; the last is the one written.
    pub segments: Mutex<Vec<Segment>>,
    /// Last durable sequence number (0: none); tail readers wait on it.
    pub durable: watch::Sender<u64>,
    /// Events stored since start.
    pub stored_events: AtomicU64,
    /// Events refused by the store (disk full, I/O errors).
    pub refused_events: AtomicU64,
    /// The app was purged: this state is dead (tails end; a new app of the same name gets a
    /// fresh one).
    purged: std::sync::atomic::AtomicBool,
    /// Bytes of segments on disk.
    pub disk_bytes: AtomicU64,
    /// This app's share of the write budget, so that one app's flood never makes another
    /// app's events wait behind it.
    budget: Arc<Semaphore>,
}

/// The share of the write budget one app may hold.
fn app_budget(max_buffer: usize) -> usize {
    (max_buffer / 4).max(1 << 16)
}

impl AppShared {
    fn new(segments: Vec<Segment>, durable: u64, max_buffer: usize) -> Arc<AppShared> {
        let bytes = segments.iter().map(Segment::len).sum();
        Arc::new(AppShared {
            budget: Arc::new(Semaphore::new(app_budget(max_buffer))),
            segments: Mutex::new(segments),
            durable: watch::Sender::new(durable),
            stored_events: AtomicU64::new(0),
            refused_events: AtomicU64::new(0),
            purged: std::sync::atomic::AtomicBool::new(false),
            disk_bytes: AtomicU64::new(bytes),
        })
    }

    /// Whether the app was purged since this state was taken: its events are gone and
    /// nothing more will come through it.
    pub fn is_purged(&self) -> bool {
        self.purged.load(Ordering::Acquire)
    }

    /// Empties this state for a purge and wakes its tails so they see it.
    fn mark_purged(&self) {
        self.segments.lock().clear();
        self.disk_bytes.store(0, Ordering::Relaxed);
        self.purged.store(true, Ordering::Release);
        self.durable.send_modify(|_| {});
    }
}

/// Store-wide counters.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Group commits (fsync rounds).
    pub commits: AtomicU64,
    /// Batches refused because the disk was full.
    pub disk_full: AtomicU64,
    /// Other write or sync errors.
    pub io_errors: AtomicU64,
    /// Bytes of torn or corrupt tail cut off at start.
    pub recovered_truncated_bytes: AtomicU64,
    /// Segment files set aside at start (unreadable header).
    pub recovered_set_aside: AtomicU64,
    /// Segments deleted by retention.
    pub retention_deleted: AtomicU64,
    /// Bytes waiting in the write budget.
    pub buffered_bytes: AtomicU64,
}

/// The store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    apps: Arc<RwLock<HashMap<String, Arc<AppShared>>>>,
    tx: Arc<Mutex<Option<mpsc::Sender<Msg>>>>,
    dir: PathBuf,
    budget: Arc<Semaphore>,
    max_buffer: usize,
    /// Counters.
    pub counters: Arc<StoreCounters>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Store {
    /// Opens (recovering every app's segments) and starts the writer thread.
    pub fn open(cfg: StoreConfig, limits: LimitsFn) -> std::io::Result<Store> {
        let apps_dir = cfg.dir.join("apps");
        std::fs::create_dir_all(&apps_dir)?;
        // Purges interrupted by a crash: their directories were already out of `apps/`.
        let purging = cfg.dir.join(PURGING_DIR);
        if purging.exists() {
            for e in std::fs::read_dir(&purging)? {
                let p = e?.path();
                tracing::info!(dir = %p.display(), "finishing an interrupted purge");
                if p.is_dir() {
                    std::fs::remove_dir_all(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
        }
        let counters = Arc::new(StoreCounters::default());
        let max_buffer = cfg.max_buffer_bytes.clamp(1 << 16, Semaphore::MAX_PERMITS);
        let mut apps = HashMap::new();
        let mut writers = HashMap::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&apps_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        names.sort();
        for dir in names {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let (segments, next_seq, last_time) = recover_app(&dir, &counters)?;
            let durable = next_seq - 1;
            let shared = AppShared::new(segments, durable, max_buffer);
            writers.insert(
                name.clone(),
                writer::AppWriter::recovered(dir, shared.clone(), next_seq, last_time),
            );
            apps.insert(name, shared);
        }
        let apps = Arc::new(RwLock::new(apps));
        let (tx, rx) = mpsc::channel();
        let dir = cfg.dir.clone();
        let w = writer::Writer::new(cfg, limits, apps.clone(), counters.clone(), writers);
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || w.run(rx))?;
        Ok(Store {
            apps,
            tx: Arc::new(Mutex::new(Some(tx))),
            dir,
            budget: Arc::new(Semaphore::new(max_buffer)),
            max_buffer,
            counters,
            writer: Arc::new(Mutex::new(Some(handle))),
        })
    }

    fn permits_for(&self, batch: &EventBatch, limit: usize) -> u32 {
        let n = batch.data.len() + batch.items.len() * record::RECORD_HEADER_LEN;
        u32::try_from(n.clamp(1, limit)).unwrap_or(u32::MAX)
    }

    fn send(
        &self,
        app: &str,
        batch: EventBatch,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
        want_receipt: bool,
    ) -> Result<Option<Receipt>, StoreError> {
        let (done, receipt) = if want_receipt {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            app: app.to_owned(),
            batch,
            _permit: permits.1,
            _app_permit: permits.0,
            done,
        };
        let guard = self.tx.lock();
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Msg::Events(job)).map_err(|_| StoreError::Closed)?;
        Ok(receipt)
    }

    /// Removes every stored event of `app` (blocking; run it off the async threads). The
    /// writer thread first commits what it holds, then drops the app's writer and shared
    /// state and moves its directory under `purging/` (one rename, then the parent
    /// directories are fsynced): from then on the app has no events, queries find nothing,
    /// tails of it end, and a later event of the same name starts a new log at sequence 1.
    /// The files are deleted here, off the writer thread, so other apps keep logging; a crash
    /// before that finishes the deletion at the next open. The app's forwarding cursors go
    /// too. Idempotent: an app with nothing stored gets a zero report.
    pub fn purge(&self, app: &str) -> std::io::Result<PurgeReport> {
        let (done, answer) = mpsc::sync_channel(1);
        {
            let guard = self.tx.lock();
            let tx = guard
                .as_ref()
                .ok_or_else(|| std::io::Error::other(StoreError::Closed))?;
            tx.send(Msg::Purge {
                app: app.to_owned(),
                done,
            })
            .map_err(|_| std::io::Error::other(StoreError::Closed))?;
        }
        let moved = answer
            .recv()
            .map_err(|_| std::io::Error::other(StoreError::Closed))??;
        for sink in ["nats", "loki"] {
            let cursor = self.dir.join("forward").join(sink).join(app);
            match std::fs::remove_file(&cursor) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut report = PurgeReport::default();
        if let Some(trash) = moved {
            for e in std::fs::read_dir(&trash)? {
                let e = e?;
                let meta = e.metadata()?;
                report.bytes += meta.len();
                if e.path().extension().is_some_and(|x| x == "seg") {
                    report.segments += 1;
                }
            }
            std::fs::remove_dir_all(&trash)?;
            let _ = segment::sync_dir(&self.dir.join(PURGING_DIR));
        }
        tracing::info!(
            app,
            segments = report.segments,
            bytes = report.bytes,
            "app's logs purged"
        );
        Ok(report)
    }

    /// Hands a batch to the writer, waiting for room in the write budget first
    /// (back-pressure). With `want_receipt`, the receipt resolves once the batch is durable.
    pub async fn submit(
        &self,
        app: &str,
        batch: EventBatch,
        want_receipt: bool,
    ) -> Result<Option<Receipt>, StoreError> {
        let shared = self.app(app);
        let n = self.permits_for(&batch, app_budget(self.max_buffer));
        let mine = shared
            .budget
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| StoreError::Closed)?;
        let all = self
            .budget
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| StoreError::Closed)?;
        self.send(app, batch, (mine, all), want_receipt)
    }

    /// Like [`Store::submit`] without waiting: `Err(None)` when the budget is full (the
    /// caller drops the batch and counts it, as UDP must).
    pub fn try_submit(&self, app: &str, batch: EventBatch) -> Result<(), Option<StoreError>> {
        let shared = self.app(app);
        let n = self.permits_for(&batch, app_budget(self.max_buffer));
        let mine = shared
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| None)?;
        let all = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| None)?;
        self.send(app, batch, (mine, all), false)
            .map(|_| ())
            .map_err(Some)
    }

    /// Bytes currently waiting to be written.
    pub fn buffered_bytes(&self) -> usize {
        self.max_buffer - self.budget.available_permits()
    }

    /// The shared state of `app`, created empty if the app has no events yet.
    pub fn app(&self, app: &str) -> Arc<AppShared> {
        if let Some(a) = self.apps.read().get(app) {
            return a.clone();
        }
        self.apps
            .write()
            .entry(app.to_owned())
            .or_insert_with(|| AppShared::new(Vec::new(), 0, self.max_buffer))
            .clone()
    }

    /// Every app the store knows, with its shared state.
    pub fn apps(&self) -> Vec<(String, Arc<AppShared>)> {
        let mut v: Vec<_> = self
            .apps
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stops taking batches, lets the writer store and sync what it has, and waits for it.
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

fn recover_app(dir: &Path, counters: &StoreCounters) -> std::io::Result<(Vec<Segment>, u64, i64)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    let mut segments = Vec::new();
    let mut last_seq = 0;
    let mut last_time = i64::MIN;
    for path in files {
        match segment::recover(&path, last_seq)? {
            segment::Recovered::Ok { segment, truncated } => {
                if truncated > 0 {
                    counters
                        .recovered_truncated_bytes
                        .fetch_add(truncated, Ordering::Relaxed);
                    tracing::warn!(
                        segment = %path.display(),
                        truncated_bytes = truncated,
                        "torn or corrupt tail truncated to the last valid record"
                    );
                }
                if segment.last_seq > 0 {
                    last_seq = segment.last_seq;
                    last_time = last_time.max(segment.last_time);
                }
                segments.push(segment);
            }
            segment::Recovered::SetAside(what) => {
                counters.recovered_set_aside.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{what}");
            }
        }
    }
    // An empty segment that is not the last one has no use.
    let n = segments.len();
    let mut kept = Vec::with_capacity(n);
    for (i, s) in segments.into_iter().enumerate() {
        if s.is_empty() && i + 1 < n {
            let _ = std::fs::remove_file(&s.path);
        } else {
            kept.push(s);
        }
    }
    Ok((kept, last_seq + 1, last_time))
}

#[cfg(test)]
mod tests;
