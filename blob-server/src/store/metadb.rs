//! The metadata database handle. redb refuses every write after a failed commit I/O ("close
//! and re-open the database"), which a full disk causes; the committer then reopens it here,
//! so the server recovers as soon as space is freed instead of needing a restart.
//!
//! Readers share one snapshot ([`MetaDb::snapshot`]) with its tables open, replaced after
//! each checkpoint: a small GET used to begin a read transaction and open two or three tables
//! for its lookups, 5–7% of its CPU.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::{Database, ReadOnlyTable, ReadTransaction};

use crate::store::meta;
use crate::store::{meta_err, Error, Result};

/// How long a reopen waits for read transactions of the old handle to end.
const REOPEN_PATIENCE: Duration = Duration::from_secs(10);

pub(crate) struct MetaDb {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    /// The shared snapshot and the generation it was taken in; [`MetaDb::invalidate`] bumps
    /// the generation, so a snapshot begun before it is never cached after it.
    snapshot: RwLock<(u64, Option<Arc<Snapshot>>)>,
}

/// A read transaction with every table a lookup needs already open.
pub(crate) struct Snapshot {
    pub content: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub refs: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub objects: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub usage: ReadOnlyTable<&'static str, u64>,
    pub quarantine: ReadOnlyTable<&'static [u8], u64>,
}

impl Snapshot {
    fn take(txn: &ReadTransaction) -> Result<Self> {
        Ok(Snapshot {
            content: txn.open_table(meta::CONTENT).map_err(meta_err)?,
            refs: txn.open_table(meta::REFS).map_err(meta_err)?,
            objects: txn.open_table(meta::OBJECTS).map_err(meta_err)?,
            usage: txn.open_table(meta::USAGE).map_err(meta_err)?,
            quarantine: txn.open_table(meta::QUARANTINE).map_err(meta_err)?,
        })
    }
}

impl MetaDb {
    /// Opens (or creates) the database; takes its file lock, so a second process fails here.
    pub fn open(path: PathBuf) -> Result<Self> {
        let db = Database::create(&path).map_err(meta_err)?;
        Ok(MetaDb {
            path,
            db: RwLock::new(Some(Arc::new(db))),
            snapshot: RwLock::new((0, None)),
        })
    }

    /// The shared snapshot of the last commit. A caller that also reads the overlay must
    /// take this after the overlay's read lock: the checkpointer invalidates the snapshot
    /// after a commit and only then drops the layer that commit wrote, under that lock.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let generation = {
            let cached = self.snapshot.read();
            if let Some(s) = &cached.1 {
                return Ok(s.clone());
            }
            cached.0
        };
        let fresh = Arc::new(Snapshot::take(&self.begin_read()?)?);
        let mut cached = self.snapshot.write();
        if cached.0 == generation && cached.1.is_none() {
            cached.1 = Some(fresh.clone());
        }
        Ok(fresh)
    }

    /// Drops the shared snapshot (after a commit, or before a reopen): the next reader takes
    /// a new one.
    pub fn invalidate(&self) {
        let mut cached = self.snapshot.write();
        cached.0 += 1;
        cached.1 = None;
    }

    /// The current handle.
    pub fn get(&self) -> Result<Arc<Database>> {
        self.db.read().clone().ok_or_else(|| {
            Error::Commit("the metadata store is being reopened after an I/O error".into())
        })
    }

    /// A read transaction on the current handle.
    pub fn begin_read(&self) -> Result<ReadTransaction> {
        self.get()?.begin_read().map_err(meta_err)
    }

    /// Closes and reopens the database after a failed commit. Readers wait meanwhile; read
    /// transactions still open on the old handle are waited for (they keep its file lock).
    pub fn reopen(&self) -> Result<()> {
        let mut slot = self.db.write();
        // The shared snapshot holds the old handle open. Dropped under the handle's write
        // lock, so no reader can take a new snapshot of the old handle meanwhile (readers
        // wait for the new one in `begin_read`).
        self.invalidate();
        drop(slot.take());
        let deadline = Instant::now() + REOPEN_PATIENCE;
        loop {
            match Database::create(&self.path) {
                Ok(db) => {
                    *slot = Some(Arc::new(db));
                    tracing::warn!("metadata store reopened after an I/O error");
                    return Ok(());
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(meta_err(e)),
            }
        }
    }
}
