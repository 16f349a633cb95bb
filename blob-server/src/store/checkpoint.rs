//! The checkpointer: a thread that writes a frozen overlay layer into redb and commits it
//! durably, together with the metadata log's next generation, while the committer goes on
//! answering writes from the log and the active layer. Its commit (some milliseconds for a
//! tenth of a second of changes) used to stall every writer when the committer did it.
//!
//! A failed commit (a full disk, an I/O error) is retried, after reopening the database, until
//! it succeeds; meanwhile everything stays readable in the frozen layer and durable in the log.
//! At shutdown a commit that keeps failing is given up: the log replays it at the next open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::meta::{self, Table};
use crate::store::metadb::MetaDb;
use crate::store::overlay::{Layer, Overlay};
use crate::store::{meta_err, Error, Result};

/// A frozen layer and the log generation that follows it.
struct Job {
    layer: Arc<Layer>,
    next_generation: u64,
}

pub(crate) struct Checkpointer {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<()>,
    running: bool,
    stopping: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread; a failed commit is retried every `retry`.
    pub fn start(db: Arc<MetaDb>, overlay: Arc<Overlay>, retry: Duration) -> Result<Self> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(1);
        let (done_tx, done) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let handle = std::thread::Builder::new()
            .name("blob-checkpoint".into())
            .spawn(move || {
                for job in rx {
                    loop {
                        match commit(&db, &job) {
                            Ok(()) => {
                                // Readers that see the layer gone must see the commit.
                                db.invalidate();
                                overlay.thaw();
                                break;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "metadata checkpoint failed");
                                if matches!(e, Error::Meta(_) | Error::Commit(_)) {
                                    if let Err(re) = db.reopen() {
                                        tracing::error!(error = %re, "cannot reopen the metadata store");
                                    }
                                }
                                if stop.load(Ordering::Relaxed) {
                                    tracing::warn!("shutting down with metadata changes in the log only; the next open replays them");
                                    break;
                                }
                                std::thread::sleep(retry);
                            }
                        }
                    }
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Checkpointer {
            jobs: Some(jobs),
            done,
            running: false,
            stopping,
            handle: Some(handle),
        })
    }

    /// Whether a checkpoint is still running.
    pub fn busy(&mut self) -> bool {
        if self.running && self.done.try_recv().is_ok() {
            self.running = false;
        }
        self.running
    }

    /// Waits up to `patience` for the running checkpoint; whether none runs now.
    pub fn wait(&mut self, patience: Duration) -> bool {
        if self.running {
            match self.done.recv_timeout(patience) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => self.running = false,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        !self.running
    }

    /// Starts committing `layer` (none may be running).
    pub fn begin(&mut self, layer: Arc<Layer>, next_generation: u64) {
        debug_assert!(!self.running);
        if let Some(jobs) = &self.jobs {
            if jobs
                .send(Job {
                    layer,
                    next_generation,
                })
                .is_ok()
            {
                self.running = true;
            }
        }
    }

    /// Lets a running checkpoint finish (or give up, if it keeps failing) and stops the thread.
    pub fn finish(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.running = false;
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Writes `job`'s layer and the next generation in one durable commit.
fn commit(db: &MetaDb, job: &Job) -> Result<()> {
    let txn = db.get()?.begin_write().map_err(meta_err)?;
    let rows = job.layer.iter().enumerate().flat_map(|(i, rows)| {
        let table = Table::from_u8(i as u8).expect("table index");
        rows.iter()
            .map(move |(k, v)| (table, k.as_slice(), v.as_deref()))
    });
    meta::write_rows(&txn, rows)?;
    txn.open_table(meta::STATE)
        .map_err(meta_err)?
        .insert("wal_gen", job.next_generation)
        .map_err(meta_err)?;
    txn.commit().map_err(meta_err)?;
    Ok(())
}
