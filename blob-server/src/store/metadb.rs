//! The metadata database handle. redb refuses every write after a failed commit I/O ("close
//! and re-open the database"), which a full disk causes; the committer then reopens it here,
//! so the server recovers as soon as space is freed instead of needing a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use redb::{Database, ReadTransaction};

use crate::store::{meta_err, Error, Result};

/// How long a reopen waits for read transactions of the old handle to end.
const REOPEN_PATIENCE: Duration = Duration::from_secs(10);

pub(crate) struct MetaDb {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl MetaDb {
    /// Opens (or creates) the database; takes its file lock, so a second process fails here.
    pub fn open(path: PathBuf) -> Result<Self> {
        let db = Database::create(&path).map_err(meta_err)?;
        Ok(MetaDb {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        })
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
