//! The committer: one thread applies every metadata change, in batches. For each batch it
//! fsyncs the volumes the batch's small records went to, renames large content files into
//! place (fsyncing their directories), decides the batch's row changes over the current
//! metadata, appends them to the metadata log and fdatasyncs it ([`crate::store::wal`]), shows
//! them to readers ([`crate::store::overlay`]), and only then answers each writer (group
//! commit). Every checkpoint interval it hands the overlay's active layer to the checkpointer
//! thread, which commits it to redb ([`crate::store::checkpoint`]). Serialising here also
//! makes dedup and garbage collection race-free: whether content exists is decided in the
//! same step that references it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::store::checkpoint::Checkpointer;
use crate::store::chunked::TempFile;
use crate::store::meta::{Change, ContentMeta, Hold, Location, ObjectInfo, ReadRows as _, Tx};
use crate::store::metadb::MetaDb;
use crate::store::overlay::Overlay;
use crate::store::quota::{Quotas, Reservation};
use crate::store::volume::Volumes;
use crate::store::wal::Wal;
use crate::store::write::Condition;
use crate::store::{sync_dir, ContentId, Error, Paths, Result};

/// Where a writer left new content before the commit.
pub(crate) enum Staged {
    /// A record already appended (not yet fsynced) to a volume.
    Volume { number: u32, offset: u64 },
    /// A complete, fsynced temp file.
    Temp(TempFile),
    /// A complete object in the bucket.
    #[cfg(feature = "s3")]
    Remote(crate::store::remote::RemoteObject),
}

/// What new content becomes: a blob the app holds directly, or a named object.
pub(crate) enum Target {
    Blob,
    Object {
        bucket: String,
        key: String,
        content_type: String,
        user_meta: Vec<(String, String)>,
        condition: Condition,
    },
}

/// One metadata change.
pub(crate) enum Op {
    Store {
        app: String,
        id: ContentId,
        size: u64,
        staged: Staged,
        reservation: Reservation,
        target: Target,
    },
    DeleteBlob {
        app: String,
        id: ContentId,
    },
    DeleteObject {
        app: String,
        bucket: String,
        key: String,
        condition: Condition,
    },
    /// Removes up to `limit` of `app`'s named objects and holds (objects first), as one step
    /// of a purge; the step that finds nothing left also clears its usage row.
    Purge {
        app: String,
        limit: usize,
    },
    /// A scrub found `id`'s stored bytes corrupt: reads of it fail until it is stored again.
    Quarantine {
        id: ContentId,
    },
    /// Compaction copied the record of `id` from `from` to `to` (appended, not yet fsynced):
    /// point the content there if it still lives at `from`.
    Relocate {
        id: ContentId,
        from: (u32, u64),
        to: (u32, u64),
    },
}

impl Op {
    fn app(&self) -> &str {
        match self {
            Op::Store { app, .. }
            | Op::DeleteBlob { app, .. }
            | Op::DeleteObject { app, .. }
            | Op::Purge { app, .. } => app,
            // Charge nobody (their usage delta is 0).
            Op::Relocate { .. } | Op::Quarantine { .. } => "",
        }
    }
}

/// The committed result of an [`Op`].
pub(crate) enum Reply {
    Id(ContentId),
    Object(ObjectInfo),
    Deleted,
    /// Whether a relocation took effect (false: the content was deleted or moved meanwhile).
    Relocated(bool),
    /// What one purge step removed.
    Purged(PurgeStep),
}

/// What one [`Op::Purge`] step removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PurgeStep {
    /// Named objects deleted.
    pub keys: u64,
    /// Content the app held by id (stored through the content-addressed API) let go.
    pub blobs: u64,
    /// Bytes taken off the app's usage.
    pub bytes: u64,
    /// Nothing of the app is left.
    pub done: bool,
}

/// Where an op's answer goes: a thread blocked on a channel, or an async task.
pub(crate) enum ReplyTo {
    Blocking(SyncSender<Result<Reply>>),
    Async(tokio::sync::oneshot::Sender<Result<Reply>>),
}

impl ReplyTo {
    /// Delivers the answer; a caller that went away is not an error.
    pub fn send(self, r: Result<Reply>) {
        match self {
            ReplyTo::Blocking(tx) => {
                let _ = tx.send(r);
            }
            ReplyTo::Async(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// An op and where to send its answer.
pub(crate) struct Request {
    pub op: Op,
    pub reply: ReplyTo,
}

pub(crate) struct Committer {
    pub db: Arc<MetaDb>,
    pub volumes: Arc<Volumes>,
    pub quotas: Arc<Quotas>,
    pub paths: Paths,
    pub max_batch: usize,
    /// Batches committed so far (each one fsync of the metadata).
    pub batches: Arc<AtomicU64>,
    /// The bucket new content goes to, if any.
    #[cfg(feature = "s3")]
    pub remote: Option<Arc<crate::store::remote::Remote>>,
    /// Changes made durable by the log but not yet by a database commit.
    pub overlay: Arc<Overlay>,
    pub wal: Wal,
    /// Writes frozen overlay layers into the database.
    pub checkpointer: Checkpointer,
    /// Time between checkpoints.
    pub checkpoint_every: Duration,
    /// When the last checkpoint began.
    pub checkpointed: Instant,
}

/// How long a writer waits for a running checkpoint when the metadata log is full before its
/// change fails.
const FULL_LOG_PATIENCE: Duration = Duration::from_secs(5);

/// Per-batch bookkeeping of effects that happen around the transaction.
#[derive(Default)]
struct Effects {
    /// Shard directories that got a new entry and need an fsync before the commit.
    dirs: BTreeSet<PathBuf>,
    /// Stored content whose last reference went (or that was replaced): removed after the
    /// commit.
    unlink: Vec<(ContentId, Location)>,
}

impl Effects {
    /// `id` was (re)installed as a content file: its path must stay.
    fn keep_file(&mut self, id: &ContentId) {
        self.unlink
            .retain(|(i, l)| !(i == id && *l == Location::File));
    }
}

struct Done {
    reply: ReplyTo,
    result: Result<Reply>,
    usage: Option<(String, i128)>,
    reservation: Option<Reservation>,
}

impl Done {
    /// A request answered with an error: nothing charged, nothing reserved.
    fn failed(reply: ReplyTo, error: Error) -> Done {
        Done {
            reply,
            result: Err(error),
            usage: None,
            reservation: None,
        }
    }
}

/// A batch whose volume records are durable (or whose volume fsync failed, per volume;
/// `true` when the failure was a full disk).
type Synced = (Vec<Request>, BTreeMap<u32, bool>);

/// Batches that may wait between the two stages; the syncer blocks past this.
const STAGE_QUEUE: usize = 4;

impl Committer {
    /// Runs until every sender is gone, as a two-stage pipeline: a syncer thread fsyncs the
    /// volumes of batch N+1 while this thread commits the metadata of batch N. Metadata is only
    /// ever committed for records already durable, so a crash between the stages loses nothing
    /// that was acknowledged and leaves no metadata pointing at unwritten bytes.
    pub fn run(mut self, rx: Receiver<Request>) {
        let (tx, synced) = mpsc::sync_channel::<Synced>(STAGE_QUEUE);
        let volumes = self.volumes.clone();
        let max_batch = self.max_batch;
        let syncer = std::thread::Builder::new()
            .name("blob-syncer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let failed = sync_volumes(&volumes, &batch);
                    if tx.send((batch, failed)).is_err() {
                        return;
                    }
                    // Between groups, off the writers' path: room for the next appends.
                    if let Err(e) = volumes.preallocate() {
                        tracing::warn!(error = %e, "could not write room ahead in the volume");
                    }
                }
            });
        let syncer = match syncer {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the volume syncer thread");
                return;
            }
        };
        loop {
            let (mut batch, mut failed) = match synced.recv_timeout(self.checkpoint_every) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    self.checkpoint();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Everything synced meanwhile goes into the same metadata transaction.
            while batch.len() < self.max_batch {
                match synced.try_recv() {
                    Ok((more, more_failed)) => {
                        batch.extend(more);
                        for (n, full) in more_failed {
                            *failed.entry(n).or_insert(full) |= full;
                        }
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch, failed);
            self.batches.fetch_add(1, Ordering::Relaxed);
            if self.checkpointed.elapsed() >= self.checkpoint_every {
                self.checkpoint();
            }
        }
        let _ = syncer.join();
        // Everything acknowledged goes into the database before the store closes.
        self.checkpointer.wait(Duration::MAX);
        self.checkpoint();
        self.checkpointer.finish();
    }

    /// Freezes the active layer and has the checkpointer commit it, unless a checkpoint is
    /// still running or nothing changed. The log moves on to the next generation.
    fn checkpoint(&mut self) {
        self.checkpointed = Instant::now();
        if self.checkpointer.busy() {
            return;
        }
        if let Some(layer) = self.overlay.freeze() {
            let next = self.wal.generation() + 1;
            self.wal.restart(next);
            self.checkpointer.begin(layer, next);
        }
    }

    /// Makes a batch's changes durable in the log, then visible.
    fn make_durable(&mut self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        if !self.wal.append(&changes)? {
            // This generation's file is full: move to the next one, which needs the running
            // checkpoint (of the generation before) to have finished.
            if !self.checkpointer.wait(FULL_LOG_PATIENCE) {
                return Err(Error::Commit(
                    "the metadata log is full and the database commit is not finishing".into(),
                ));
            }
            self.checkpoint();
            if !self.wal.append(&changes)? {
                return Err(Error::Commit(
                    "the metadata log cannot take a record".into(),
                ));
            }
        }
        self.overlay.publish(changes);
        Ok(())
    }

    fn commit_batch(&mut self, batch: Vec<Request>, failed_volumes: BTreeMap<u32, bool>) {
        let mut done = Vec::with_capacity(batch.len());
        let mut effects = Effects::default();
        let outcome = self
            .apply_all(batch, &failed_volumes, &mut effects, &mut done)
            .and_then(|changes| self.make_durable(changes));
        if let Err(e) = outcome {
            // Nothing of this batch was published or logged: it just fails.
            tracing::error!(error = %e, "metadata commit failed");
            for d in done {
                let result = match d.result {
                    Ok(_) => Err(Error::commit_failed(&e)),
                    Err(e) => Err(e),
                };
                d.reply.send(result);
            }
            return;
        }
        // Space is reclaimed before anyone is answered, so a returned delete has freed it
        // (a bucket's objects are deleted in the background).
        for (id, location) in effects.unlink {
            match location {
                Location::File => {
                    if let Err(e) = fs::remove_file(self.paths.content(&id)) {
                        tracing::warn!(%id, error = %e, "could not remove collected content file");
                    }
                }
                #[cfg(feature = "s3")]
                Location::Remote { nonce, .. } => {
                    if let Some(r) = &self.remote {
                        r.delete(nonce);
                    }
                }
                _ => {}
            }
        }
        for Done {
            reply,
            result,
            usage,
            reservation,
        } in done
        {
            match (&result, usage, reservation) {
                (Ok(_), Some((_, delta)), Some(res)) => res.settle(delta),
                (Ok(_), Some((app, delta)), None) => self.quotas.apply(&app, delta),
                // A failed write's reservation is released here.
                _ => {}
            }
            reply.send(result);
        }
    }

    /// Applies a batch over the current metadata; returns the row changes it made.
    fn apply_all(
        &self,
        batch: Vec<Request>,
        failed_volumes: &BTreeMap<u32, bool>,
        effects: &mut Effects,
        done: &mut Vec<Done>,
    ) -> Result<Vec<Change>> {
        let changes = {
            let view = self.overlay.view(&self.db);
            let mut tx = Tx::new(&view);
            let mut fatal = None;
            for Request { op, reply } in batch {
                if fatal.is_some() {
                    done.push(Done::failed(
                        reply,
                        Error::Commit("an earlier change in its batch failed".into()),
                    ));
                    continue;
                }
                let app = op.app().to_string();
                match self.apply(&mut tx, op, failed_volumes, effects) {
                    Ok((result, reservation)) => {
                        let (result, usage) = match result {
                            Ok((reply, delta)) => (Ok(reply), Some((app, delta))),
                            Err(e) => (Err(e), None),
                        };
                        done.push(Done {
                            reply,
                            result,
                            usage,
                            reservation,
                        });
                    }
                    Err(e) => {
                        done.push(Done::failed(reply, Error::commit_failed(&e)));
                        fatal = Some(e);
                    }
                }
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            // Content removed and re-installed as a file in this batch must stay.
            effects.unlink.retain(|(id, l)| {
                *l != Location::File
                    || !matches!(
                        tx.content(id),
                        Ok(Some(ContentMeta {
                            location: Location::File,
                            ..
                        }))
                    )
            });
            tx.into_changes()
        };
        for dir in &effects.dirs {
            sync_dir(dir)?;
        }
        Ok(changes)
    }

    /// Applies one op. The outer error aborts the whole batch (the transaction may hold part
    /// of this op); the inner one fails only this op and is returned before any change.
    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        tx: &mut Tx<'_>,
        op: Op,
        failed_volumes: &BTreeMap<u32, bool>,
        effects: &mut Effects,
    ) -> Result<(Result<(Reply, i128)>, Option<Reservation>)> {
        match op {
            Op::Store {
                app,
                id,
                size,
                staged,
                reservation,
                target,
            } => {
                if let Staged::Volume { number, .. } = staged {
                    if let Some(&disk_full) = failed_volumes.get(&number) {
                        let e = if disk_full {
                            Error::DiskFull
                        } else {
                            Error::Io(std::io::Error::other("volume fsync failed"))
                        };
                        return Ok((Err(e), Some(reservation)));
                    }
                }
                if let Target::Object {
                    bucket,
                    key,
                    condition,
                    ..
                } = &target
                {
                    if *condition != Condition::Always {
                        let current = tx.object(&app, bucket, key)?;
                        if !condition.holds(current.as_ref().map(|o| &o.id)) {
                            return Ok((Err(Error::PreconditionFailed), Some(reservation)));
                        }
                    }
                }
                let mut new = None;
                let existing = tx.content(&id)?;
                if let Some(old) = existing.filter(|_| tx.quarantined(&id).unwrap_or(false)) {
                    // Fresh bytes for quarantined content: they replace the rotten copy.
                    if let Err(e) = self.repair(tx, &id, old, staged, effects) {
                        return Ok((Err(e), Some(reservation)));
                    }
                } else if existing.is_none() {
                    let location = match staged {
                        Staged::Volume { number, offset } => Location::Volume { number, offset },
                        Staged::Temp(temp) => {
                            if let Err(e) = self.install(&id, temp, effects) {
                                return Ok((Err(e), Some(reservation)));
                            }
                            effects.keep_file(&id);
                            Location::File
                        }
                        #[cfg(feature = "s3")]
                        Staged::Remote(object) => {
                            let location = Location::Remote {
                                nonce: object.nonce(),
                                chunk_size: object.chunk_size(),
                            };
                            object.keep();
                            location
                        }
                    };
                    new = Some(ContentMeta {
                        size,
                        refcount: 0,
                        location,
                    });
                } else if let Staged::Temp(_) = &staged {
                    // The content exists (perhaps only for other apps): the temp file is
                    // removed instead of renamed. Its shard directory is still fsynced, so
                    // the write costs what a new one does and timing tells no app whether
                    // another holds the same bytes.
                    if let Some(dir) = self.paths.content(&id).parent() {
                        if dir.exists() {
                            effects.dirs.insert(dir.to_path_buf());
                        }
                    }
                }
                // Existing content: a volume record becomes dead space, a temp file is
                // removed by its guard when `staged` drops here (a bucket object's guard
                // deletes it in the background, so the answer comes no later than for new
                // content).
                let (reply, delta) = match target {
                    Target::Blob => {
                        let charged = tx.add_hold(&app, &id, Hold::Direct, new)?;
                        (Reply::Id(id), charged as i128)
                    }
                    Target::Object {
                        bucket,
                        key,
                        content_type,
                        user_meta,
                        condition: _,
                    } => {
                        let charged = tx.add_hold(&app, &id, Hold::Key, new)?;
                        let info = ObjectInfo {
                            id,
                            size,
                            content_type,
                            user_meta,
                            last_modified_ms: now_ms(),
                        };
                        let mut delta = charged as i128;
                        if let Some(old) = tx.put_object(&app, &bucket, &key, &info)? {
                            delta -= self.release(tx, &app, &old.id, Hold::Key, effects)? as i128;
                        }
                        (Reply::Object(info), delta)
                    }
                };
                Ok((Ok((reply, delta)), Some(reservation)))
            }
            Op::DeleteBlob { app, id } => match tx.release_hold(&app, &id, Hold::Direct) {
                Ok(rel) => {
                    self.collect(&id, rel.garbage, effects);
                    Ok((Ok((Reply::Deleted, -(rel.freed as i128))), None))
                }
                Err(Error::NotFound) => Ok((Err(Error::NotFound), None)),
                Err(e) => Err(e),
            },
            Op::DeleteObject {
                app,
                bucket,
                key,
                condition,
            } => {
                if condition != Condition::Always {
                    let current = tx.object(&app, &bucket, &key)?;
                    if !condition.holds(current.as_ref().map(|o| &o.id)) {
                        return Ok((Err(Error::PreconditionFailed), None));
                    }
                }
                self.delete_object(tx, &app, &bucket, &key, effects)
            }
            Op::Purge { app, limit } => {
                let step = self.purge_step(tx, &app, limit.max(1), effects)?;
                Ok((Ok((Reply::Purged(step), -(step.bytes as i128))), None))
            }
            Op::Quarantine { id } => {
                if tx.content(&id)?.is_some() {
                    tx.set_quarantine(&id, now_ms());
                }
                Ok((Ok((Reply::Deleted, 0)), None))
            }
            Op::Relocate { id, from, to } => {
                let from = Location::Volume {
                    number: from.0,
                    offset: from.1,
                };
                match tx.content(&id)? {
                    Some(mut cm) if cm.location == from => {
                        if failed_volumes.contains_key(&to.0) {
                            let e = Error::Io(std::io::Error::other("volume fsync failed"));
                            return Ok((Err(e), None));
                        }
                        cm.location = Location::Volume {
                            number: to.0,
                            offset: to.1,
                        };
                        tx.set_content(&id, &cm);
                        Ok((Ok((Reply::Relocated(true), 0)), None))
                    }
                    // Deleted (or moved) since compaction read it: the copy is dead space.
                    _ => Ok((Ok((Reply::Relocated(false), 0)), None)),
                }
            }
        }
    }

    /// One bounded step of a purge, inside the batch's transaction: every change keeps the
    /// metadata consistent (each object's hold is released with it), so a crash between
    /// steps leaves a partly purged app that the next purge finishes.
    fn purge_step(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        limit: usize,
        effects: &mut Effects,
    ) -> Result<PurgeStep> {
        let mut step = PurgeStep::default();
        let objects = tx.app_objects(app, limit)?;
        let budget = limit - objects.len();
        for (key, info) in objects {
            tx.remove_object_key(&key);
            step.bytes += self.release(tx, app, &info.id, Hold::Key, effects)?;
            step.keys += 1;
        }
        if budget == 0 {
            return Ok(step);
        }
        // No named object is left: what remains are holds by id.
        let refs = tx.app_refs(app, budget)?;
        let exhausted = refs.len() < budget;
        for (id, r) in refs {
            let rel = tx.drop_ref(app, &id)?;
            self.collect(&id, rel.garbage, effects);
            step.bytes += rel.freed;
            if r.direct {
                step.blobs += 1;
            }
        }
        if exhausted {
            step.bytes += tx.clear_usage(app)?;
            step.done = true;
        }
        Ok(step)
    }

    #[allow(clippy::type_complexity)]
    fn delete_object(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        bucket: &str,
        key: &str,
        effects: &mut Effects,
    ) -> Result<(Result<(Reply, i128)>, Option<Reservation>)> {
        match tx.delete_object(app, bucket, key)? {
            Some(old) => {
                let freed = self.release(tx, app, &old.id, Hold::Key, effects)?;
                Ok((Ok((Reply::Deleted, -(freed as i128))), None))
            }
            None => Ok((Err(Error::NotFound), None)),
        }
    }

    /// Points quarantined content at freshly stored bytes and lifts the quarantine; the old
    /// copy becomes dead space (a volume record) or is replaced in place (a content file, by
    /// the rename) or unlinked after the commit (a file replaced by a volume record).
    fn repair(
        &self,
        tx: &mut Tx<'_>,
        id: &ContentId,
        mut old: ContentMeta,
        staged: Staged,
        effects: &mut Effects,
    ) -> Result<()> {
        let previous = old.location;
        old.location = match staged {
            Staged::Volume { number, offset } => Location::Volume { number, offset },
            Staged::Temp(temp) => {
                self.install(id, temp, effects)?;
                Location::File
            }
            #[cfg(feature = "s3")]
            Staged::Remote(object) => {
                let location = Location::Remote {
                    nonce: object.nonce(),
                    chunk_size: object.chunk_size(),
                };
                object.keep();
                location
            }
        };
        // The rotten copy goes, unless the new one took its place (same content path).
        if !matches!(previous, Location::Volume { .. }) && previous != old.location {
            effects.unlink.push((*id, previous));
        }
        if old.location == Location::File {
            effects.keep_file(id);
        }
        tx.set_content(id, &old);
        tx.remove_quarantine(id)?;
        tracing::info!(%id, "quarantined content repaired by a new upload of the same bytes");
        Ok(())
    }

    fn release(
        &self,
        tx: &mut Tx<'_>,
        app: &str,
        id: &ContentId,
        hold: Hold,
        effects: &mut Effects,
    ) -> Result<u64> {
        let rel = tx.release_hold(app, id, hold).map_err(|e| match e {
            Error::NotFound => Error::Corrupt(format!("object points at {id} without a hold")),
            e => e,
        })?;
        self.collect(id, rel.garbage, effects);
        Ok(rel.freed)
    }

    fn collect(&self, id: &ContentId, garbage: Option<ContentMeta>, effects: &mut Effects) {
        match garbage.map(|g| g.location) {
            // A volume record just becomes dead space, given back by compaction.
            None | Some(Location::Volume { .. }) => {}
            Some(location) => effects.unlink.push((*id, location)),
        }
    }

    /// Renames a finished temp file to its content path; the directory is fsynced before the
    /// batch commits.
    fn install(&self, id: &ContentId, temp: TempFile, effects: &mut Effects) -> Result<()> {
        let path = self.paths.content(id);
        let dir = path
            .parent()
            .expect("content path has a parent")
            .to_path_buf();
        if !dir.exists() {
            fs::create_dir(&dir)?;
            effects.dirs.insert(self.paths.objects.clone());
        }
        fs::rename(temp.path(), &path)?;
        temp.keep();
        effects.dirs.insert(dir);
        Ok(())
    }
}

/// Makes a batch's volume records durable: one fsync per volume for all its writers. Returns
/// the volumes whose fsync failed (marked broken, so no more appends go to them).
fn sync_volumes(volumes: &Volumes, batch: &[Request]) -> BTreeMap<u32, bool> {
    let mut numbers = BTreeSet::new();
    for r in batch {
        match &r.op {
            Op::Store {
                staged: Staged::Volume { number, .. },
                ..
            } => {
                numbers.insert(*number);
            }
            Op::Relocate { to, .. } => {
                numbers.insert(to.0);
            }
            _ => {}
        }
    }
    let mut failed = BTreeMap::new();
    for n in numbers {
        if let Err(e) = volumes.sync(n) {
            tracing::error!(volume = n, error = %e, "volume fsync failed");
            volumes.mark_broken(n);
            failed.insert(n, Error::Io(e).is_disk_full());
        }
    }
    failed
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
