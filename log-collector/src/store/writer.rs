//! The writer thread: drains submitted batches, appends them per app, group-commits
//! (one fsync per touched file per round), then acknowledges and publishes. Also runs
//! rotation and retention.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::record::{self, Record};
use super::segment::{self, Segment};
use super::{
    AppShared, Committed, Job, Limits, LimitsFn, Msg, StoreConfig, StoreCounters, StoreError,
    PURGING_DIR,
};
use crate::protocol::time::now_nanos;

/// Most bytes gathered into one write round before it is committed.
const ROUND_BYTES: usize = 1 << 20;
/// How often retention and age-based rotation run.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(1);
/// Smallest segment, whatever the app's byte limit.
const MIN_SEGMENT: u64 = 64 << 10;

type Done = oneshot::Sender<Result<Committed, StoreError>>;

/// Per-app writing state, owned by the writer thread.
pub(super) struct AppWriter {
    dir: PathBuf,
    shared: Arc<AppShared>,
    next_seq: u64,
    last_time: i64,
    /// Encoded records not yet written, for the active segment.
    buf: Vec<u8>,
    /// (seq, time, offset in buf, len) of each record in `buf`.
    pending: Vec<(u64, i64, usize, usize)>,
    /// Batches written (or in `buf`) this round, waiting for the commit.
    waiting: Vec<(Done, u64)>,
    /// Events in `buf` and `waiting` this round.
    round_events: u64,
    /// Segments (files) written this round that need a sync.
    dirty: Vec<Arc<std::fs::File>>,
    failed: Option<StoreError>,
}

impl AppWriter {
    pub(super) fn recovered(
        dir: PathBuf,
        shared: Arc<AppShared>,
        next_seq: u64,
        last_time: i64,
    ) -> AppWriter {
        AppWriter {
            dir,
            shared,
            next_seq,
            last_time,
            buf: Vec::new(),
            pending: Vec::new(),
            waiting: Vec::new(),
            round_events: 0,
            dirty: Vec::new(),
            failed: None,
        }
    }

    fn active_len(&self) -> Option<(u64, bool)> {
        let segs = self.shared.segments.lock();
        segs.last().map(|s| (s.len(), s.is_empty()))
    }

    /// Writes `buf` to the active segment; on failure cuts the file back and forgets the
    /// unwritten records (their sequence numbers are reused).
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut segs = self.shared.segments.lock();
        let Some(seg) = segs.last_mut() else {
            return Err(StoreError::Io);
        };
        let base = seg.written;
        if let Err(e) = seg.file.write_all_at(&self.buf, base) {
            let _ = seg.file.set_len(base);
            let first = self.pending.first().map_or(self.next_seq, |p| p.0);
            self.next_seq = first;
            self.buf.clear();
            self.pending.clear();
            return Err(StoreError::from_io(&e));
        }
        for &(seq, time, off, len) in &self.pending {
            seg.note_append(seq, time, base + off as u64, len as u64);
        }
        self.shared
            .disk_bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
            self.dirty.push(seg.file.clone());
        }
        self.buf.clear();
        self.pending.clear();
        Ok(())
    }

    /// Starts a new segment at `next_seq` (after flushing the current one).
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        std::fs::create_dir_all(&self.dir).map_err(|e| StoreError::from_io(&e))?;
        let seg = Segment::create(&self.dir, self.next_seq).map_err(|e| StoreError::from_io(&e))?;
        self.shared
            .disk_bytes
            .fetch_add(seg.len(), Ordering::Relaxed);
        self.shared.segments.lock().push(seg);
        Ok(())
    }

    fn append(&mut self, job: Job, segment_limit: u64) {
        if let Some(e) = self.failed {
            self.shared
                .refused_events
                .fetch_add(job.batch.len() as u64, Ordering::Relaxed);
            if let Some(d) = job.done {
                let _ = d.send(Err(e));
            }
            return;
        }
        let mut start = 0usize;
        let mut active = self.active_len();
        let now = now_nanos();
        for &(level, end) in &job.batch.items {
            let end = end as usize;
            let payload = &job.batch.data[start..end];
            start = end;
            let need_rotate = match active {
                None => true,
                Some((len, empty)) => !empty && len + self.buf.len() as u64 >= segment_limit,
            };
            if need_rotate {
                if let Err(e) = self.rotate() {
                    self.fail(e, job.batch.len() as u64);
                    if let Some(d) = job.done {
                        let _ = d.send(Err(e));
                    }
                    return;
                }
                active = self.active_len();
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let time = now.max(self.last_time);
            self.last_time = time;
            let off = self.buf.len();
            record::encode(
                &Record {
                    seq,
                    time,
                    level,
                    payload,
                },
                &mut self.buf,
            );
            self.pending.push((seq, time, off, self.buf.len() - off));
            if let Some((_, empty)) = &mut active {
                *empty = false;
            }
        }
        self.round_events += job.batch.len() as u64;
        if let Some(d) = job.done {
            self.waiting.push((d, self.next_seq - 1));
        }
    }

    /// Fails the whole round of this app.
    fn fail(&mut self, e: StoreError, extra_events: u64) {
        self.shared
            .refused_events
            .fetch_add(self.round_events + extra_events, Ordering::Relaxed);
        self.round_events = 0;
        for (d, _) in self.waiting.drain(..) {
            let _ = d.send(Err(e));
        }
        self.failed = Some(e);
    }

    /// Ends a round: writes what is buffered and hands the fsync, the acknowledgements and
    /// the publication to the sync thread. Returns the job (if anything was written) and the
    /// round's failure, if any.
    fn prepare_commit(&mut self) -> (Option<SyncJob>, Option<StoreError>) {
        if let Err(e) = self.flush() {
            self.fail(e, 0);
        }
        let failed = self.failed.take();
        if self.dirty.is_empty() && self.waiting.is_empty() {
            return (None, failed);
        }
        let marks = {
            let segs = self.shared.segments.lock();
            segs.iter()
                .filter(|s| s.written > s.durable)
                .map(|s| (s.file.clone(), s.written, s.last_seq))
                .collect()
        };
        let job = SyncJob {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
            files: std::mem::take(&mut self.dirty),
            marks,
            waiting: std::mem::take(&mut self.waiting),
            events: std::mem::take(&mut self.round_events),
        };
        (Some(job), failed)
    }

    fn maintain(&mut self, limits: Limits, segment_age: Duration, counters: &StoreCounters) {
        let now = now_nanos();
        let retention = i64::try_from(limits.retention.as_nanos()).unwrap_or(i64::MAX);
        let age = i64::try_from(segment_age.as_nanos()).unwrap_or(i64::MAX);
        let rotate = {
            let segs = self.shared.segments.lock();
            segs.last().is_some_and(|s| {
                !s.is_empty()
                    && (now.saturating_sub(s.index[0].time) > age
                        || now.saturating_sub(s.last_time) > retention)
            })
        };
        if rotate {
            if let Err(e) = self.rotate() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot rotate segment");
            }
        }
        let mut removed = Vec::new();
        {
            let mut segs = self.shared.segments.lock();
            let mut total: u64 = segs.iter().map(Segment::len).sum();
            while segs.len() > 1 {
                let oldest = &segs[0];
                let expired =
                    !oldest.is_empty() && now.saturating_sub(oldest.last_time) > retention;
                if total <= limits.bytes && !expired && !oldest.is_empty() {
                    break;
                }
                total -= oldest.len();
                removed.push(segs.remove(0));
            }
        }
        for seg in &removed {
            self.shared
                .disk_bytes
                .fetch_sub(seg.len(), Ordering::Relaxed);
            counters.retention_deleted.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(segment = %seg.path.display(), error = %e, "cannot delete segment");
            }
        }
        if !removed.is_empty() {
            let _ = segment::sync_dir(&self.dir);
        }
    }
}

/// The writer thread's state.
pub(super) struct Writer {
    cfg: StoreConfig,
    limits: LimitsFn,
    apps: Arc<RwLock<HashMap<String, Arc<AppShared>>>>,
    counters: Arc<StoreCounters>,
    writers: HashMap<String, AppWriter>,
    sync_tx: Option<mpsc::SyncSender<Vec<SyncJob>>>,
}

impl Writer {
    pub(super) fn new(
        cfg: StoreConfig,
        limits: LimitsFn,
        apps: Arc<RwLock<HashMap<String, Arc<AppShared>>>>,
        counters: Arc<StoreCounters>,
        writers: HashMap<String, AppWriter>,
    ) -> Writer {
        Writer {
            cfg,
            limits,
            apps,
            counters,
            writers,
            sync_tx: None,
        }
    }

    fn segment_limit(&self, app: &str) -> u64 {
        let l = (self.limits)(app);
        self.cfg.segment_bytes.min(l.bytes / 4).max(MIN_SEGMENT)
    }

    fn writer_for(&mut self, app: &str) -> &mut AppWriter {
        if !self.writers.contains_key(app) {
            let shared = self
                .apps
                .write()
                .entry(app.to_owned())
                .or_insert_with(|| {
                    AppShared::new(Vec::new(), 0, self.cfg.max_buffer_bytes.max(1 << 16))
                })
                .clone();
            let next = *shared.durable.borrow() + 1;
            let dir = self.cfg.dir.join("apps").join(app);
            self.writers.insert(
                app.to_owned(),
                AppWriter::recovered(dir, shared, next, i64::MIN),
            );
        }
        self.writers.get_mut(app).expect("inserted above")
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // The sync thread fsyncs round N while this thread writes round N+1; the channel holds
        // one more round, so the writer is never more than two rounds ahead of the disk.
        let (sync_tx, sync_rx) = mpsc::sync_channel::<Vec<SyncJob>>(1);
        let counters = self.counters.clone();
        let syncer = std::thread::Builder::new()
            .name("log-sync".into())
            .spawn(move || {
                for jobs in sync_rx {
                    sync_round(jobs, &counters);
                }
            });
        let syncer = match syncer {
            Ok(h) => {
                self.sync_tx = Some(sync_tx);
                Some(h)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no sync thread; syncing inline");
                None
            }
        };
        let mut last_maintenance = Instant::now();
        let mut open = true;
        while open {
            let first = match rx.recv_timeout(MAINTENANCE_EVERY) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            };
            if let Some(msg) = first {
                let started = Instant::now();
                let mut bytes = self.handle(msg);
                // Gather what is already waiting, up to a round's size or the commit
                // interval, then commit once for all of it.
                while bytes < ROUND_BYTES && started.elapsed() < self.cfg.commit_interval {
                    match rx.try_recv() {
                        Ok(msg) => bytes += self.handle(msg),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
                self.commit_all();
            }
            if last_maintenance.elapsed() >= MAINTENANCE_EVERY || !open {
                last_maintenance = Instant::now();
                self.maintain();
            }
        }
        self.commit_all();
        drop(self.sync_tx.take());
        // Everything handed over is synced and acknowledged before the store reports closed.
        if let Some(h) = syncer {
            let _ = h.join();
        }
    }

    /// Takes one message; returns the bytes of events it added to the round.
    fn handle(&mut self, msg: Msg) -> usize {
        match msg {
            Msg::Events(job) => {
                let n = job.batch.data.len();
                self.take(job);
                n
            }
            Msg::Purge { app, done } => {
                let _ = done.send(self.purge(&app));
                0
            }
        }
    }

    /// Takes `app` out of service (see `Store::purge`): what is buffered is committed
    /// first (so every receipt is answered), then its writer and shared state are dropped
    /// and its directory is renamed under `purging/`. Returns the new path, if it existed.
    fn purge(&mut self, app: &str) -> std::io::Result<Option<PathBuf>> {
        self.commit_all();
        self.writers.remove(app);
        if let Some(old) = self.apps.write().remove(app) {
            old.mark_purged();
        }
        let apps_dir = self.cfg.dir.join("apps");
        let dir = apps_dir.join(app);
        if !dir.exists() {
            return Ok(None);
        }
        let trash_root = self.cfg.dir.join(PURGING_DIR);
        std::fs::create_dir_all(&trash_root)?;
        let trash = trash_root.join(format!("{app}.{}", crate::protocol::time::now_nanos()));
        std::fs::rename(&dir, &trash)?;
        segment::sync_dir(&apps_dir)?;
        segment::sync_dir(&trash_root)?;
        Ok(Some(trash))
    }

    fn take(&mut self, job: Job) {
        let limit = self.segment_limit(&job.app);
        let app = job.app.clone();
        let w = self.writer_for(&app);
        w.append(job, limit);
        // Keep memory bounded within a round: write out big buffers early.
        if w.buf.len() >= 1 << 20 {
            if let Err(e) = w.flush() {
                w.fail(e, 0);
            }
        }
    }

    fn commit_all(&mut self) {
        let mut jobs = Vec::new();
        for w in self.writers.values_mut() {
            if w.buf.is_empty() && w.waiting.is_empty() && w.dirty.is_empty() && w.failed.is_none()
            {
                continue;
            }
            let (job, failed) = w.prepare_commit();
            jobs.extend(job);
            if let Some(e) = failed {
                count_error(&self.counters, e);
                tracing::error!(dir = %w.dir.display(), error = %e, "events refused");
            }
        }
        if jobs.is_empty() {
            return;
        }
        if let Some(tx) = &self.sync_tx {
            if let Err(mpsc::SendError(jobs)) = tx.send(jobs) {
                // The sync thread is gone (it never exits before us): sync here instead.
                sync_round(jobs, &self.counters);
            }
        }
    }

    fn maintain(&mut self) {
        let age = self.cfg.segment_age;
        for (name, w) in &mut self.writers {
            let limits = (self.limits)(name);
            w.maintain(limits, age, &self.counters);
        }
    }
}

/// One app's share of a commit round, handed to the sync thread.
pub(super) struct SyncJob {
    shared: Arc<AppShared>,
    dir: PathBuf,
    /// Files written this round.
    files: Vec<Arc<std::fs::File>>,
    /// (file, bytes written, last sequence) per segment with undurable bytes, as of the end
    /// of the round: what becomes durable once `files` are synced.
    marks: Vec<(Arc<std::fs::File>, u64, u64)>,
    waiting: Vec<(Done, u64)>,
    events: u64,
}

fn count_error(counters: &StoreCounters, e: StoreError) {
    match e {
        StoreError::DiskFull => counters.disk_full.fetch_add(1, Ordering::Relaxed),
        _ => counters.io_errors.fetch_add(1, Ordering::Relaxed),
    };
}

/// fsyncs a round's files, then marks the data durable, acknowledges and publishes.
fn sync_round(jobs: Vec<SyncJob>, counters: &StoreCounters) {
    for job in jobs {
        let res = job
            .files
            .iter()
            .try_for_each(|f| f.sync_data())
            .map_err(|e| StoreError::from_io(&e));
        if let Err(e) = res {
            count_error(counters, e);
            tracing::error!(dir = %job.dir.display(), error = %e, "fsync failed; events refused");
            job.shared
                .refused_events
                .fetch_add(job.events, Ordering::Relaxed);
            for (d, _) in job.waiting {
                let _ = d.send(Err(e));
            }
            continue;
        }
        let mut last = 0;
        {
            let mut segs = job.shared.segments.lock();
            for (file, written, last_seq) in &job.marks {
                if let Some(s) = segs.iter_mut().find(|s| Arc::ptr_eq(&s.file, file)) {
                    s.durable = s.durable.max(*written);
                    s.durable_seq = s.durable_seq.max(*last_seq);
                }
                last = last.max(*last_seq);
            }
        }
        job.shared
            .stored_events
            .fetch_add(job.events, Ordering::Relaxed);
        for (d, seq) in job.waiting {
            let _ = d.send(Ok(Committed { last_seq: seq }));
        }
        if last > *job.shared.durable.borrow() {
            job.shared.durable.send_replace(last);
        }
    }
    counters.commits.fetch_add(1, Ordering::Relaxed);
}
