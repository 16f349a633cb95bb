//! The deploy side of berthd's state, in the same redb database as the apps and tokens:
//! versions, releases, each app's run record (live release, scale, config) and the instances
//! berthd started (so it re-adopts them after a restart).
//!
//! Records are JSON values under `app/…` keys; every change commits durably before berthd
//! acts on it or answers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::{now_ms, EventRecord, State, StateError};
use crate::manifest::Manifest;

const VERSIONS: TableDefinition<&str, &str> = TableDefinition::new("versions");
const RELEASES: TableDefinition<&str, &str> = TableDefinition::new("releases");
const RUNS: TableDefinition<&str, &str> = TableDefinition::new("runs");
const INSTANCES: TableDefinition<&str, &str> = TableDefinition::new("instances");
const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn storage<E: std::fmt::Display>(e: E) -> StateError {
    StateError::Storage(e.to_string())
}

/// A deployed version: immutable once stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    pub app: String,
    pub version: String,
    /// The bundle's content digest (`sha256:…` over names, modes, contents).
    pub digest: String,
    /// The tar's SHA-256 (where the bundle is stored).
    pub bundle_sha256: String,
    pub manifest: Manifest,
    pub created_ms: i64,
    pub actor: String,
    /// "ok" once it passed its gates, "failed" when it did not.
    pub state: String,
    /// Why it failed.
    #[serde(default)]
    pub error: String,
}

/// An app's configuration: plain values and sealed secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshot {
    pub plain: BTreeMap<String, String>,
    /// Name -> sealed value (see `secrets::Sealer`).
    pub secrets: BTreeMap<String, String>,
}

impl ConfigSnapshot {
    /// A digest that tells configs apart (secrets by their sealed form's plaintext hash is
    /// not available here, so by name and sealed value).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, v) in &self.plain {
            h.update(format!("p:{k}={v}\n"));
        }
        for (k, v) in &self.secrets {
            h.update(format!("s:{k}={v}\n"));
        }
        hex::encode(&h.finalize()[..6])
    }
}

/// A release: a version plus its config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub app: String,
    pub number: u64,
    pub version: String,
    pub config: ConfigSnapshot,
    pub created_ms: i64,
    pub actor: String,
    pub description: String,
    /// "live", "previous", "failed", "kept".
    pub state: String,
}

/// What berthd runs for an app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppRun {
    pub app: String,
    /// The live release's number.
    pub live: Option<u64>,
    /// Instances wanted for the live release.
    pub scale: u32,
    /// The current config (the next release's).
    pub config: ConfigSnapshot,
    /// The token berthd gives the app's processes, sealed.
    pub runtime_token: Option<String>,
    /// The database was provisioned.
    pub db_provisioned: bool,
    /// Instance numbers grow per app.
    pub next_instance: u64,
}

/// One instance (a supervised WSGI server) berthd started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// "<version>-<n>".
    pub id: String,
    pub app: String,
    pub version: String,
    pub release: u64,
    /// The config digest of the release it was started for.
    #[serde(default)]
    pub config_digest: String,
    pub port: u16,
    /// Its run directory (spec, state, secrets, scratch).
    pub dir: PathBuf,
    /// "candidate", "live", "warm", "stopping".
    pub role: String,
    pub created_ms: i64,
}

fn key(app: &str, rest: &str) -> String {
    format!("{app}/{rest}")
}

/// Release keys sort by number.
pub fn release_key(app: &str, number: u64) -> String {
    key(app, &format!("{number:012}"))
}

fn get<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static str>,
    k: &str,
) -> Result<Option<T>, StateError> {
    match table.get(k).map_err(storage)? {
        Some(v) => Ok(Some(serde_json::from_str(v.value()).map_err(storage)?)),
        None => Ok(None),
    }
}

fn list<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static str>,
    app: &str,
) -> Result<Vec<T>, StateError> {
    let lo = format!("{app}/");
    let hi = format!("{app}0"); // '0' follows '/'
    let mut out = Vec::new();
    for row in table.range(lo.as_str()..hi.as_str()).map_err(storage)? {
        let (_, v) = row.map_err(storage)?;
        out.push(serde_json::from_str(v.value()).map_err(storage)?);
    }
    Ok(out)
}

/// A batch of changes to the deploy tables, committed together with an audit event.
#[derive(Debug, Default)]
pub struct Batch {
    versions: Vec<(String, Option<String>)>,
    releases: Vec<(String, Option<String>)>,
    runs: Vec<(String, Option<String>)>,
    instances: Vec<(String, Option<String>)>,
    event: Option<(String, String, String, String)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn version(mut self, v: &VersionRecord) -> Self {
        let k = key(&v.app, &v.version);
        self.versions
            .push((k, Some(serde_json::to_string(v).expect("serialisable"))));
        self
    }
    pub fn release(mut self, r: &ReleaseRecord) -> Self {
        self.releases.push((
            release_key(&r.app, r.number),
            Some(serde_json::to_string(r).expect("serialisable")),
        ));
        self
    }
    pub fn run(mut self, r: &AppRun) -> Self {
        self.runs.push((
            r.app.clone(),
            Some(serde_json::to_string(r).expect("serialisable")),
        ));
        self
    }
    pub fn instance(mut self, i: &InstanceRecord) -> Self {
        self.instances.push((
            key(&i.app, &i.id),
            Some(serde_json::to_string(i).expect("serialisable")),
        ));
        self
    }
    pub fn remove_instance(mut self, app: &str, id: &str) -> Self {
        self.instances.push((key(app, id), None));
        self
    }
    pub fn event(
        mut self,
        actor: &str,
        app: &str,
        action: &str,
        detail: impl Into<String>,
    ) -> Self {
        self.event = Some((actor.into(), app.into(), action.into(), detail.into()));
        self
    }
}

impl State {
    /// Commits `batch` durably.
    pub fn commit(&self, batch: Batch) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            for (def, rows) in [
                (VERSIONS, &batch.versions),
                (RELEASES, &batch.releases),
                (RUNS, &batch.runs),
                (INSTANCES, &batch.instances),
            ] {
                if rows.is_empty() {
                    continue;
                }
                let mut t = tx.open_table(def).map_err(storage)?;
                for (k, v) in rows {
                    match v {
                        Some(v) => {
                            t.insert(k.as_str(), v.as_str()).map_err(storage)?;
                        }
                        None => {
                            t.remove(k.as_str()).map_err(storage)?;
                        }
                    }
                }
            }
            if let Some((actor, app, action, detail)) = batch.event {
                let mut t = tx.open_table(EVENTS).map_err(storage)?;
                let seq = t
                    .last()
                    .map_err(storage)?
                    .map(|(k, _)| k.value())
                    .unwrap_or(0)
                    + 1;
                let record = EventRecord {
                    seq,
                    at_ms: now_ms(),
                    actor,
                    app,
                    action,
                    detail,
                };
                let v = serde_json::to_string(&record).map_err(storage)?;
                t.insert(seq, v.as_str()).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)?;
        Ok(())
    }

    fn read<R>(
        &self,
        def: TableDefinition<&'static str, &'static str>,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static str>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let tx = self.db.begin_read().map_err(storage)?;
        match tx.open_table(def) {
            Ok(t) => f(&t),
            Err(redb::TableError::TableDoesNotExist(_)) => {
                // Not written yet: read from an empty table.
                drop(tx);
                let w = self.db.begin_write().map_err(storage)?;
                w.open_table(def).map_err(storage)?;
                w.commit().map_err(storage)?;
                let tx = self.db.begin_read().map_err(storage)?;
                f(&tx.open_table(def).map_err(storage)?)
            }
            Err(e) => Err(storage(e)),
        }
    }

    pub fn version(&self, app: &str, version: &str) -> Result<Option<VersionRecord>, StateError> {
        self.read(VERSIONS, |t| get(t, &key(app, version)))
    }
    pub fn versions(&self, app: &str) -> Result<Vec<VersionRecord>, StateError> {
        self.read(VERSIONS, |t| list(t, app))
    }
    pub fn release(&self, app: &str, number: u64) -> Result<Option<ReleaseRecord>, StateError> {
        self.read(RELEASES, |t| get(t, &release_key(app, number)))
    }
    /// Oldest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, StateError> {
        self.read(RELEASES, |t| list(t, app))
    }
    pub fn run(&self, app: &str) -> Result<AppRun, StateError> {
        Ok(self
            .read(RUNS, |t| get::<AppRun>(t, app))?
            .unwrap_or_else(|| AppRun {
                app: app.into(),
                scale: 1,
                next_instance: 1,
                ..AppRun::default()
            }))
    }
    pub fn instances(&self, app: &str) -> Result<Vec<InstanceRecord>, StateError> {
        self.read(INSTANCES, |t| list(t, app))
    }
    pub fn all_instances(&self) -> Result<Vec<InstanceRecord>, StateError> {
        self.read(INSTANCES, |t| {
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                out.push(serde_json::from_str(v.value()).map_err(storage)?);
            }
            Ok(out)
        })
    }
    /// Every app with a run record.
    pub fn runs(&self) -> Result<Vec<AppRun>, StateError> {
        self.read(RUNS, |t| {
            let mut out = Vec::new();
            for row in t.iter().map_err(storage)? {
                let (_, v) = row.map_err(storage)?;
                out.push(serde_json::from_str(v.value()).map_err(storage)?);
            }
            Ok(out)
        })
    }

    /// Removes a version's record.
    pub fn forget_version(&self, app: &str, version: &str) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut t = tx.open_table(VERSIONS).map_err(storage)?;
            t.remove(key(app, version).as_str()).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(())
    }

    /// Removes every deploy record of `app` (after destroy).
    pub fn forget_app(&self, app: &str) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(storage)?;
        {
            for def in [VERSIONS, RELEASES, INSTANCES] {
                let mut t = tx.open_table(def).map_err(storage)?;
                let lo = format!("{app}/");
                let hi = format!("{app}0");
                let keys: Vec<String> = t
                    .range(lo.as_str()..hi.as_str())
                    .map_err(storage)?
                    .map(|r| r.map(|(k, _)| k.value().to_string()))
                    .collect::<Result<_, _>>()
                    .map_err(storage)?;
                for k in keys {
                    t.remove(k.as_str()).map_err(storage)?;
                }
            }
            let mut t = tx.open_table(RUNS).map_err(storage)?;
            t.remove(app).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(())
    }

    /// The next value of a counter kept across restarts (e.g. the route table generation).
    pub fn next_counter(&self, name: &str, at_least: u64) -> Result<u64, StateError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let next;
        {
            let mut t = tx.open_table(META).map_err(storage)?;
            let cur = t
                .get(name)
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0);
            next = (cur + 1).max(at_least);
            t.insert(name, next).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(next)
    }

    /// Records an audit event alone.
    pub fn audit(&self, actor: &str, app: &str, action: &str, detail: impl Into<String>) {
        if let Err(e) = self.commit(Batch::new().event(actor, app, action, detail)) {
            tracing::error!("recording an event: {e}");
        }
    }
}
