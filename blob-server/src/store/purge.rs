//! Purging an app: every named object and every hold by id of one app goes, in bounded steps
//! through the committer (each step one metadata transaction shared with whatever else is
//! queued, so the server keeps serving), until nothing of the app is left. Content no other
//! app holds becomes garbage the usual way: content files and bucket objects are deleted after
//! the commit, volume records become dead space for compaction.

use crate::store::commit::{Op, Reply};
use crate::store::{check_name, Error, Result, Store};

/// Objects and holds removed per purge step (one metadata transaction).
pub const PURGE_STEP: usize = 1000;

/// What [`Store::purge_app`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Named objects (bucket/key) deleted.
    pub keys: u64,
    /// Contents the app held by id (`/blobs`) let go.
    pub blobs: u64,
    /// Bytes of distinct content the app held (its quota usage before the purge).
    pub bytes: u64,
    /// Metadata transactions the purge took.
    pub steps: u64,
}

impl PurgeReport {
    /// Keys plus blobs: everything of the app that was readable.
    pub fn objects(&self) -> u64 {
        self.keys + self.blobs
    }
}

impl Store {
    /// Removes everything `app` stores: its named objects in every bucket, its holds by id,
    /// its usage. Idempotent (an app with nothing stored gets a zero report). Runs in steps of
    /// [`PURGE_STEP`] changes, each committed on its own; an interrupted purge (crash, error)
    /// leaves consistent metadata and is finished by calling this again. Writes of `app` that
    /// commit while the purge runs may or may not be removed: stop the app first.
    pub fn purge_app(&self, app: &str) -> Result<PurgeReport> {
        self.purge_app_in_steps(app, PURGE_STEP)
    }

    /// [`Store::purge_app`] with `step` changes per transaction.
    pub fn purge_app_in_steps(&self, app: &str, step: usize) -> Result<PurgeReport> {
        check_name("app", app)?;
        let mut report = PurgeReport::default();
        loop {
            let op = Op::Purge {
                app: app.to_string(),
                limit: step.max(1),
            };
            let s = match self.inner.submit(op)? {
                Reply::Purged(s) => s,
                _ => return Err(Error::Commit("unexpected reply to a purge step".into())),
            };
            report.keys += s.keys;
            report.blobs += s.blobs;
            report.bytes += s.bytes;
            report.steps += 1;
            if s.done {
                tracing::info!(
                    app,
                    keys = report.keys,
                    blobs = report.blobs,
                    bytes = report.bytes,
                    steps = report.steps,
                    "app purged"
                );
                return Ok(report);
            }
        }
    }
}
