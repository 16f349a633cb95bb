//! The changes themselves: deploy, rollout (start, check, switch), the watch window with
//! its automatic rollback, promote, rollback, scale, restart, config, status, re-adoption.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use berth_api::v1 as api;
use berth_common::tenants::AppName;

use super::instances::{health_key, shim_alive, shim_state};
use super::{probe, say, Engine, Fail, Health, Tx};
use crate::bundle;
use crate::daemon::state::now_ms;
use crate::daemon::store::{Batch, ConfigSnapshot, InstanceRecord, ReleaseRecord, VersionRecord};
use crate::manifest::Manifest;

/// How a change ended well.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A release went live.
    Released(ReleaseRecord),
    /// The same version with the same content and config is live already.
    Noop(ReleaseRecord),
    /// Checked but not promoted (`--no-promote`).
    Checked(Box<VersionRecord>),
    /// Done; nothing was released (e.g. config saved before the first deploy, a scale).
    Done(String),
}

/// Options of a rollout.
#[derive(Debug, Clone, Copy)]
struct Rollout {
    no_promote: bool,
    /// Keep the previous instances warm through the watch window (else: stop after drain).
    watch: bool,
    /// Use warm instances of the same version and config when there are some.
    reuse_warm: bool,
}

fn st<E: std::fmt::Display>(phase: &'static str) -> impl Fn(E) -> Fail {
    move |e| Fail::new(phase, e.to_string())
}

fn release_id(n: u64) -> String {
    format!("v{n}")
}

/// The message form of a release.
pub fn release_message(r: &ReleaseRecord) -> api::Release {
    api::Release {
        id: release_id(r.number),
        number: r.number,
        version: r.version.clone(),
        created_ms: r.created_ms,
        actor: r.actor.clone(),
        description: r.description.clone(),
        config_keys: r.config.plain.keys().cloned().collect(),
        secret_keys: r.config.secrets.keys().cloned().collect(),
        state: r.state.clone(),
        config_digest: r.config.digest(),
    }
}

impl Engine {
    fn live_release(&self, app: &str) -> Result<Option<ReleaseRecord>, Fail> {
        let run = self.state.run(app).map_err(st("state"))?;
        match run.live {
            Some(n) => self.state.release(app, n).map_err(st("state")),
            None => Ok(None),
        }
    }

    fn next_release_number(&self, app: &str) -> Result<u64, Fail> {
        Ok(self
            .state
            .releases(app)
            .map_err(st("state"))?
            .last()
            .map(|r| r.number + 1)
            .unwrap_or(1))
    }

    /// Runs `work` under the app's lock with its activity shown in `status`.
    async fn exclusive<T>(
        &self,
        app: &str,
        what: String,
        tx: &Tx,
        work: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, Fail> {
        let lock = self.lock_of(app);
        let guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                say(
                    tx,
                    "queue",
                    format!("waiting for {} to finish", self.activity(app)),
                );
                lock.lock().await
            }
        };
        self.set_activity(app, Some(what));
        let r = work.await;
        self.set_activity(app, None);
        drop(guard);
        r
    }

    // -- deploy ---------------------------------------------------------------------------

    /// `berth deploy`: every gate, provisioning, the release command, the rollout.
    #[allow(clippy::too_many_arguments)]
    pub async fn deploy(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        sha256: &str,
        no_promote: bool,
        allow_downgrade: bool,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        let what = format!("deploy of bundle {}", &sha256[..12.min(sha256.len())]);
        self.exclusive(app, what, tx, async {
            let seen = parking_lot::Mutex::new(None);
            let r = self
                .deploy_locked(
                    actor,
                    app,
                    sha256,
                    no_promote,
                    allow_downgrade,
                    reason,
                    tx,
                    &seen,
                )
                .await;
            let version = seen.into_inner().map(|(m, digest)| (m, digest, sha256));
            self.note_outcome(actor, app, version, &r);
            if let Err(f) = &r {
                self.state.audit(
                    actor,
                    app,
                    "deploy.fail",
                    format!("{}: {}", f.phase, one_line(&f.message)),
                );
            }
            r
        })
        .await
    }

    /// Keeps why a version's last deploy or promote failed (the dashboard and `berth
    /// versions` show it), and forgets it once the version goes live. A version that never
    /// passed its gates is kept as `failed` (its files are not: the same number may be
    /// deployed again with other content); one that passed them keeps its state and gets the
    /// error beside it.
    fn note_outcome(
        &self,
        actor: &str,
        app: &str,
        version: Option<(Manifest, String, &str)>,
        r: &Result<Outcome, Fail>,
    ) {
        let Some((manifest, digest, sha256)) = version else {
            return;
        };
        let known = self.state.version(app, &manifest.version).ok().flatten();
        let record = match (r, known) {
            (Ok(_), Some(mut v)) if !v.error.is_empty() => {
                v.error.clear();
                v
            }
            (Ok(_), _) => return,
            (Err(f), Some(mut v)) if v.state == "ok" => {
                if self.live_version(app).as_deref() == Some(v.version.as_str()) {
                    return;
                }
                v.error = format!("{}: {}", f.phase, one_line(&f.message));
                v
            }
            (Err(f), _) => VersionRecord {
                app: app.into(),
                version: manifest.version.clone(),
                digest,
                bundle_sha256: sha256.into(),
                manifest,
                created_ms: now_ms(),
                actor: actor.into(),
                state: "failed".into(),
                error: format!("{}: {}", f.phase, one_line(&f.message)),
            },
        };
        if let Err(e) = self.state.commit(Batch::new().version(&record)) {
            tracing::warn!(app, version = %record.version, error = %e, "cannot record the version's outcome");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn deploy_locked(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        sha256: &str,
        no_promote: bool,
        allow_downgrade: bool,
        reason: &str,
        tx: &Tx,
        seen: &parking_lot::Mutex<Option<(Manifest, String)>>,
    ) -> Result<Outcome, Fail> {
        let path = self.bundle_path(sha256);
        let archive = std::fs::read(&path).map_err(|_| {
            Fail::new(
                "validate",
                format!("berthd has no bundle {sha256}: upload it first (berth deploy does)"),
            )
        })?;
        say(
            tx,
            "validate",
            format!("checking the bundle ({} bytes)", archive.len()),
        );
        let incoming = self
            .cfg
            .data_dir
            .join("apps")
            .join(app)
            .join(format!("incoming-{}", rand::random::<u32>()));
        let _cleanup = RemoveOnDrop(incoming.clone());
        std::fs::create_dir_all(&incoming).map_err(st("validate"))?;
        let limits = bundle::Limits {
            max_total_bytes: self.cfg.apps.max_bundle_bytes.as_u64(),
            ..bundle::Limits::default()
        };
        crate::tarball::unpack(&archive, &incoming, &limits).map_err(st("validate"))?;
        let manifest = Manifest::load(&incoming).map_err(st("validate"))?;
        if manifest.name == app && manifest.semver().is_some() {
            *seen.lock() = Some((manifest.clone(), String::new()));
        }
        if manifest.name != app {
            return Err(Fail::new(
                "validate",
                format!(
                    "berth.toml names the app {:?}, but this deploy is for {app:?}: fix `name`",
                    manifest.name
                ),
            ));
        }
        let collected = bundle::collect(&incoming, &limits).map_err(|problems| {
            Fail::new(
                "validate",
                format!(
                    "the bundle has {} problem(s):\n  {}",
                    problems.len(),
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", p.path, p.message))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ),
            )
        })?;
        if !bundle::has_module(&collected, &manifest.entry) {
            return Err(Fail::new(
                "validate",
                format!(
                    "entry {:?}: the bundle has no module {:?}; fix `entry` in berth.toml",
                    manifest.entry,
                    manifest.entry.split(':').next().unwrap_or("")
                ),
            ));
        }
        let version = manifest
            .semver()
            .ok_or_else(|| Fail::new("validate", "version: not a semantic version"))?;
        if let Some((_, digest)) = seen.lock().as_mut() {
            digest.clone_from(&collected.digest);
        }
        let run = self.state.run(app).map_err(st("state"))?;
        let live = self.live_release(app)?;
        // A version that failed its gates is not kept: it may come again with other content.
        let known_before = self
            .state
            .version(app, &manifest.version)
            .map_err(st("state"))?
            .filter(|v| v.state != "failed");
        if let Some(existing) = &known_before {
            if existing.digest != collected.digest {
                return Err(Fail::new(
                    "validate",
                    format!(
                        "version {} was deployed before with different content ({} then, {} \
                         now): give this bundle a new version in berth.toml",
                        manifest.version,
                        short(&existing.digest),
                        short(&collected.digest)
                    ),
                ));
            }
            if let Some(l) = &live {
                if l.version == manifest.version && l.config == run.config {
                    say(tx, "done", format!("{app} {} is live already", l.version));
                    return Ok(Outcome::Noop(l.clone()));
                }
            }
        }
        if let Some(l) = &live {
            let live_v = semver::Version::parse(&l.version).map_err(st("validate"))?;
            if version < live_v && !allow_downgrade {
                return Err(Fail::new(
                    "validate",
                    format!(
                        "{version} is lower than the live {live_v}: the normal way back is \
                         `berth rollback {app}`; pass --allow-downgrade to deploy it anyway"
                    ),
                ));
            }
        }
        self.check_resources(app, &manifest, run.scale.max(1))?;
        if manifest.services.iter().any(|s| s == "db") && self.cfg.database.is_none() {
            return Err(Fail::new(
                "validate",
                "the app wants `db`, but this berthd has no [database] configured: ask an \
                 operator, or remove \"db\" from `services`",
            ));
        }
        // The version's files, read-only from now on.
        let dir = self.version_dir(app, &manifest.version);
        if !dir.exists() {
            std::fs::create_dir_all(dir.parent().expect("has a parent")).map_err(st("validate"))?;
            std::fs::rename(&incoming, &dir).map_err(st("validate"))?;
            make_read_only(&dir).map_err(st("validate"))?;
        }
        let r = self
            .deploy_checked_version(
                actor,
                app,
                sha256,
                &manifest,
                &collected.digest,
                &run,
                no_promote,
                reason,
                tx,
            )
            .await;
        if r.is_err() && known_before.is_none() {
            // A version that never passed every gate is not kept: the same number may be
            // deployed again with other content.
            let _ = self.state.forget_version(app, &manifest.version);
            make_writable(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    /// The rest of a deploy once the version's files are in place: provisioning, the import
    /// gate, the release command, the rollout.
    #[allow(clippy::too_many_arguments)]
    async fn deploy_checked_version(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        sha256: &str,
        manifest: &Manifest,
        digest: &str,
        run: &crate::daemon::store::AppRun,
        no_promote: bool,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        let record = VersionRecord {
            app: app.into(),
            version: manifest.version.clone(),
            digest: digest.to_string(),
            bundle_sha256: sha256.into(),
            manifest: manifest.clone(),
            created_ms: now_ms(),
            actor: actor.into(),
            state: "checking".into(),
            error: String::new(),
        };
        self.provision(actor, app, manifest, tx).await?;
        let candidate = ReleaseRecord {
            app: app.into(),
            number: self.next_release_number(app)?,
            version: record.version.clone(),
            config: run.config.clone(),
            created_ms: now_ms(),
            actor: actor.into(),
            description: String::new(),
            state: "candidate".into(),
        };
        say(
            tx,
            "validate",
            format!("importing {} in a sandbox", manifest.entry),
        );
        let import = self
            .run_once(
                &record,
                &candidate,
                vec![
                    self.cfg.apps.python.clone(),
                    "-m".into(),
                    "berth.runtime".into(),
                    "check".into(),
                    manifest.entry.clone(),
                ],
                manifest.health.start_timeout.as_duration(),
            )
            .await
            .map_err(st("validate"))?;
        if !import.ok {
            return Err(Fail::new(
                "validate",
                format!(
                    "the entry point {} did not import as a WSGI callable ({}):\n{}",
                    manifest.entry,
                    import.status,
                    import.output.trim_end()
                ),
            ));
        }
        let mut record = record;
        record.state = "ok".into();
        self.state
            .commit(Batch::new().version(&record).event(
                actor,
                app,
                "version.create",
                format!("{} ({})", record.version, short(&record.digest)),
            ))
            .map_err(st("state"))?;
        if let Some(cmd) = &manifest.release {
            say(tx, "release", format!("running the release command: {cmd}"));
            let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            let argv = if argv.first().map(String::as_str) == Some("python") {
                std::iter::once(self.cfg.apps.python.clone())
                    .chain(argv.into_iter().skip(1))
                    .collect()
            } else {
                argv
            };
            let out = self
                .run_once(&record, &candidate, argv, Duration::from_secs(600))
                .await
                .map_err(st("release"))?;
            if !out.ok {
                return Err(Fail::new(
                    "release",
                    format!(
                        "the release command `{cmd}` failed ({}); the live release is \
                         unchanged:\n{}",
                        out.status,
                        out.output.trim_end()
                    ),
                ));
            }
            say(tx, "release", "the release command succeeded");
        }
        let description = if reason.is_empty() {
            format!("deploy {}", record.version)
        } else {
            format!("deploy {}: {reason}", record.version)
        };
        self.rollout(
            actor,
            &record,
            run.config.clone(),
            description,
            tx,
            Rollout {
                no_promote,
                watch: true,
                reuse_warm: false,
            },
        )
        .await
    }

    fn check_resources(&self, app: &str, m: &Manifest, scale: u32) -> Result<(), Fail> {
        let caps = self.tenant_limits(app);
        let r = &m.resources;
        if let Some(max) = caps.max_processes {
            if r.processes.saturating_mul(scale) > max {
                return Err(Fail::new(
                    "validate",
                    format!(
                        "resources.processes = {} times {scale} instance(s) is more than the \
                         app's max_processes = {max}: lower it, or ask an operator \
                         (`berth quota {app} max_processes=…`)",
                        r.processes
                    ),
                ));
            }
        }
        if let Some(max) = caps.max_memory {
            if r.memory.as_u64() > max {
                return Err(Fail::new(
                    "validate",
                    format!(
                        "resources.memory = {} is more than the app's max_memory = {}: lower \
                         it, or ask an operator (`berth quota {app} max_memory=…`)",
                        r.memory,
                        berth_common::config::ByteSize(max)
                    ),
                ));
            }
        }
        if let Some(max) = caps.max_cpu {
            if r.cpu > max {
                return Err(Fail::new(
                    "validate",
                    format!(
                        "resources.cpu = {} is more than the app's max_cpu = {max}: lower it, \
                         or ask an operator (`berth quota {app} max_cpu=…`)",
                        r.cpu
                    ),
                ));
            }
        }
        Ok(())
    }

    /// First deploy: the app's user, network guard, runtime token and database.
    async fn provision(
        &self,
        actor: &str,
        app: &str,
        manifest: &Manifest,
        tx: &Tx,
    ) -> Result<(), Fail> {
        let mut run = self.state.run(app).map_err(st("state"))?;
        let mut done = Vec::new();
        if let Some(u) = self.app_user(app).map_err(st("provision"))? {
            self.secure_dirs(app, Some(&u)).map_err(st("provision"))?;
        }
        if run.runtime_token.is_none() {
            let (_, token) = self
                .state
                .create_token(actor, app, "runtime (berthd)")
                .await
                .map_err(st("provision"))?;
            run.runtime_token = Some(self.sealer.seal(app, &token));
            done.push("runtime token");
        }
        if manifest.services.iter().any(|s| s == "db") && run.db_provisioned {
            // Every deploy converges the database and its account again (idempotent): an
            // account whose password drifted (restored backend, another provisioning) heals.
            let db = self.cfg.database.as_ref().expect("checked by the caller");
            self.provision_db(app, db).await.map_err(st("provision"))?;
        }
        if manifest.services.iter().any(|s| s == "db") && !run.db_provisioned {
            let db = self.cfg.database.as_ref().expect("checked by the caller");
            say(
                tx,
                "provision",
                format!("creating the database app_{}", app.replace('-', "_")),
            );
            self.provision_db(app, db).await.map_err(st("provision"))?;
            run.db_provisioned = true;
            done.push("database");
        }
        if run.scale == 0 {
            run.scale = self.cfg.apps.default_scale.max(1);
        }
        if !done.is_empty() {
            say(tx, "provision", format!("provisioned {}", done.join(", ")));
            self.state
                .commit(
                    Batch::new()
                        .run(&run)
                        .event(actor, app, "app.provision", done.join(", ")),
                )
                .map_err(st("state"))?;
            // Give the services a moment to receive the registry's new state (the token).
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn provision_db(
        &self,
        app: &str,
        db: &super::super::DatabaseConfig,
    ) -> anyhow::Result<()> {
        let name = AppName::parse(app).map_err(|e| anyhow!("{e}"))?;
        let admin = query_proxy::provision::AdminAccess {
            addr: db.backend.clone(),
            user: db.admin_user.clone(),
            password: match &db.admin_password_file {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| anyhow!("{}: {e}", p.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => String::new(),
            },
            timeout: Duration::from_secs(10),
        };
        let secret_text = std::fs::read_to_string(&db.backend_secret_file).map_err(|e| {
            anyhow!(
                "database.backend_secret_file {}: {e}",
                db.backend_secret_file.display()
            )
        })?;
        let secret = query_proxy::secret::BackendSecret::new(secret_text.trim())
            .map_err(|e| anyhow!("database.backend_secret_file: {e}"))?;
        query_proxy::provision::provision(&admin, &secret, &name, &db.account_hosts)
            .await
            .map_err(|e| anyhow!("provisioning the database on {}: {e}", db.backend))
    }

    // -- rollout ---------------------------------------------------------------------------

    /// Starts (or reuses) instances of `version` with `config`, checks them, switches the
    /// router to them as a new release, and watches it.
    async fn rollout(
        self: &Arc<Self>,
        actor: &str,
        version: &VersionRecord,
        config: ConfigSnapshot,
        description: String,
        tx: &Tx,
        opts: Rollout,
    ) -> Result<Outcome, Fail> {
        let app = version.app.as_str();
        let m = &version.manifest;
        let run = self.state.run(app).map_err(st("state"))?;
        let number = self.next_release_number(app)?;
        let release = ReleaseRecord {
            app: app.into(),
            number,
            version: version.version.clone(),
            config: config.clone(),
            created_ms: now_ms(),
            actor: actor.into(),
            description,
            state: "live".into(),
        };
        let digest = config.digest();
        let all = self.state.instances(app).map_err(st("state"))?;
        let warm: Vec<InstanceRecord> = if opts.reuse_warm {
            all.iter()
                .filter(|i| {
                    i.role == "warm"
                        && i.version == version.version
                        && i.config_digest == digest
                        && shim_alive(i).is_some()
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let scale = run.scale.max(1);
        let (mut candidates, fresh) = if !warm.is_empty() {
            say(
                tx,
                "start",
                format!(
                    "{} warm instance(s) of {} are still running",
                    warm.len(),
                    version.version
                ),
            );
            (warm, false)
        } else {
            say(
                tx,
                "start",
                format!(
                    "starting {scale} instance(s) of {} {}",
                    app, version.version
                ),
            );
            (self.start_candidates(version, &release, scale).await?, true)
        };
        // Health.
        let checked = if fresh {
            self.wait_healthy(&candidates, m, tx).await
        } else {
            self.check_once(&candidates, m).await
        };
        if let Err(f) = checked {
            if fresh {
                self.stop_all(&candidates, Duration::from_secs(1)).await;
            }
            return Err(f);
        }
        // Smoke.
        if let Err(f) = self.smoke(&candidates[0], m, tx).await {
            if fresh {
                self.stop_all(&candidates, Duration::from_secs(1)).await;
            }
            return Err(f);
        }
        if opts.no_promote {
            say(tx, "done", format!("{} passed its checks; the live release is unchanged (promote it with `berth promote {app} {}`)", version.version, version.version));
            if fresh {
                self.stop_all(&candidates, Duration::from_secs(1)).await;
            }
            return Ok(Outcome::Checked(Box::new(version.clone())));
        }
        // Switch.
        self.cancel_watch(app);
        let backends: Vec<String> = candidates
            .iter()
            .map(|i| format!("127.0.0.1:{}", i.port))
            .collect();
        let table = self
            .route_table(Some((
                app,
                &backends,
                &version.version,
                &release_id(number),
            )))
            .map_err(st("switch"))?;
        if let Err(e) = self.push_routes(table).await {
            if fresh {
                self.stop_all(&candidates, Duration::from_secs(1)).await;
            }
            return Err(Fail::new("switch", format!("{e:#}")));
        }
        let previous = self.live_release(app)?;
        let mut batch = Batch::new().release(&release);
        if let Some(mut p) = previous.clone() {
            p.state = "previous".into();
            batch = batch.release(&p);
        }
        for old in self.state.releases(app).map_err(st("state"))? {
            if old.state == "previous" && Some(old.number) != previous.as_ref().map(|p| p.number) {
                let mut o = old;
                o.state = "kept".into();
                batch = batch.release(&o);
            }
        }
        let mut run = self.state.run(app).map_err(st("state"))?;
        run.live = Some(number);
        run.config = config;
        batch = batch.run(&run);
        let mut to_stop = Vec::new();
        let mut now_warm = Vec::new();
        for i in self.state.instances(app).map_err(st("state"))? {
            if candidates.iter().any(|c| c.id == i.id) {
                continue;
            }
            match i.role.as_str() {
                "live" if opts.watch => {
                    let mut w = i.clone();
                    w.role = "warm".into();
                    batch = batch.instance(&w);
                    now_warm.push(w);
                }
                "live" | "warm" => to_stop.push(i),
                _ => {}
            }
        }
        for c in &mut candidates {
            c.role = "live".into();
            batch = batch.instance(c);
        }
        batch = batch.event(
            actor,
            app,
            "release.create",
            format!(
                "{}: {} ({})",
                release_id(number),
                release.description,
                version.version
            ),
        );
        self.state.commit(batch).map_err(st("state"))?;
        say(
            tx,
            "switch",
            format!("{} is live: {app} {}", release_id(number), version.version),
        );
        // The previous ones: drained and stopped now, or kept warm through the window.
        let drain = m.drain.as_duration();
        if !to_stop.is_empty() {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                me.stop_all(&to_stop, drain).await;
            });
        }
        if opts.watch {
            self.start_watch(app, number, candidates.clone(), now_warm);
        }
        self.prune_versions(app);
        Ok(Outcome::Released(release))
    }

    /// Starts `count` candidate instances of `release`, each recorded as it starts; on a
    /// failure the ones already started are stopped.
    async fn start_candidates(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        count: u32,
    ) -> Result<Vec<InstanceRecord>, Fail> {
        let mut started = Vec::new();
        for _ in 0..count {
            let rec = match self.start_instance(version, release, "candidate").await {
                Ok(r) => r,
                Err(e) => {
                    self.stop_all(&started, Duration::from_secs(1)).await;
                    return Err(Fail::new("start", format!("{e:#}")));
                }
            };
            self.state
                .commit(Batch::new().instance(&rec))
                .map_err(st("state"))?;
            started.push(rec);
        }
        Ok(started)
    }

    /// [`Engine::start_candidates`], then waits for them to be healthy (stopping them if
    /// they do not become so).
    async fn start_healthy(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        count: u32,
        tx: &Tx,
    ) -> Result<Vec<InstanceRecord>, Fail> {
        let started = self.start_candidates(version, release, count).await?;
        if let Err(f) = self.wait_healthy(&started, &version.manifest, tx).await {
            self.stop_all(&started, Duration::from_secs(1)).await;
            return Err(f);
        }
        Ok(started)
    }

    /// Waits for every instance to pass `healthy_threshold` checks in a row within the
    /// start timeout; a crash or the timeout fails it, with the app's last output.
    async fn wait_healthy(
        &self,
        instances: &[InstanceRecord],
        m: &Manifest,
        tx: &Tx,
    ) -> Result<(), Fail> {
        let h = &m.health;
        let deadline = tokio::time::Instant::now() + h.start_timeout.as_duration();
        let mut passes = vec![0u32; instances.len()];
        let mut last = vec![String::from("not checked yet"); instances.len()];
        say(
            tx,
            "health",
            format!(
                "waiting for GET {} to answer {} ({} in a row)",
                h.path, h.status, h.healthy_threshold
            ),
        );
        loop {
            for (k, inst) in instances.iter().enumerate() {
                if passes[k] >= h.healthy_threshold {
                    continue;
                }
                if let Some(s) = shim_state(inst) {
                    if s.restarts > 0 || s.state == "backoff" || s.state == "stopped" {
                        let exit = s.last_exit.unwrap_or_else(|| "exited".into());
                        return Err(Fail::new(
                            "start",
                            format!(
                                "instance {} crashed at start ({exit}); its last output:\n{}",
                                inst.id,
                                log_tail(&inst.dir, 25)
                            ),
                        ));
                    }
                }
                match self.check(inst, m).await {
                    Ok(()) => passes[k] += 1,
                    Err(e) => {
                        passes[k] = 0;
                        last[k] = e;
                    }
                }
            }
            if passes.iter().all(|p| *p >= h.healthy_threshold) {
                say(
                    tx,
                    "health",
                    format!("{} instance(s) healthy", instances.len()),
                );
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let k = passes
                    .iter()
                    .position(|p| *p < h.healthy_threshold)
                    .unwrap_or(0);
                return Err(Fail::new(
                    "health",
                    format!(
                        "instance {} did not pass its health check within {} (GET {} must \
                         answer {}): {}; its last output:\n{}",
                        instances[k].id,
                        h.start_timeout,
                        h.path,
                        h.status,
                        last[k],
                        log_tail(&instances[k].dir, 25)
                    ),
                ));
            }
            tokio::time::sleep(h.interval.as_duration().min(Duration::from_millis(100))).await;
        }
    }

    async fn check_once(&self, instances: &[InstanceRecord], m: &Manifest) -> Result<(), Fail> {
        for inst in instances {
            self.check(inst, m)
                .await
                .map_err(|e| Fail::new("health", format!("instance {}: {e}", inst.id)))?;
        }
        Ok(())
    }

    /// One health check, remembered for `status`.
    async fn check(&self, inst: &InstanceRecord, m: &Manifest) -> Result<(), String> {
        let h = &m.health;
        let addr = format!("127.0.0.1:{}", inst.port);
        let host = format!("{}.localhost", inst.app);
        let r = match probe::request(&addr, &host, "GET", &h.path, h.timeout.as_duration()).await {
            Ok(a) if a.status == h.status => Ok(()),
            Ok(a) => Err(format!(
                "GET {} answered {}, not {}",
                h.path, a.status, h.status
            )),
            Err(e) => Err(e),
        };
        self.health.lock().insert(
            health_key(&inst.app, &inst.id),
            Health {
                healthy: Some(r.is_ok()),
                detail: r.clone().err().unwrap_or_default(),
            },
        );
        r
    }

    async fn smoke(&self, inst: &InstanceRecord, m: &Manifest, tx: &Tx) -> Result<(), Fail> {
        if m.smoke.is_empty() {
            return Ok(());
        }
        let addr = format!("127.0.0.1:{}", inst.port);
        let host = format!("{}.localhost", inst.app);
        for (k, s) in m.smoke.iter().enumerate() {
            say(
                tx,
                "smoke",
                format!("{} {} ({} of {})", s.method, s.path, k + 1, m.smoke.len()),
            );
            let a = probe::request(&addr, &host, &s.method, &s.path, Duration::from_secs(10))
                .await
                .map_err(|e| Fail::new("smoke", format!("{} {}: {e}", s.method, s.path)))?;
            if a.status != s.status {
                return Err(Fail::new(
                    "smoke",
                    format!(
                        "{} {} answered {}, not {}",
                        s.method, s.path, a.status, s.status
                    ),
                ));
            }
            if let Some(want) = &s.contains {
                if !String::from_utf8_lossy(&a.body).contains(want.as_str()) {
                    return Err(Fail::new(
                        "smoke",
                        format!(
                            "{} {}: the body does not contain {want:?}",
                            s.method, s.path
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn stop_all(&self, instances: &[InstanceRecord], grace: Duration) {
        let stops = instances.iter().map(|i| self.stop_instance(i, grace));
        futures_util::future::join_all(stops).await;
    }

    // -- the watch window -------------------------------------------------------------------

    /// Ends the app's watch window (a newer change replaces it). The watcher itself may be
    /// the caller (its automatic rollback): it is then only forgotten, not aborted.
    fn cancel_watch(&self, app: &str) {
        let mut w = self.watchers.lock();
        if let Some(h) = w.remove(app) {
            if Some(h.id()) != tokio::task::try_id() {
                h.abort();
            }
        }
    }

    fn start_watch(
        self: &Arc<Self>,
        app: &str,
        number: u64,
        live: Vec<InstanceRecord>,
        warm: Vec<InstanceRecord>,
    ) {
        let me = self.clone();
        let app_name = app.to_string();
        let task = tokio::spawn(async move {
            me.watch(&app_name, number, live, warm).await;
        });
        self.watchers.lock().insert(app.into(), task.abort_handle());
    }

    async fn watch(
        self: Arc<Self>,
        app: &str,
        number: u64,
        live: Vec<InstanceRecord>,
        warm: Vec<InstanceRecord>,
    ) {
        let Ok(Some(version)) = self.live_release(app) else {
            return;
        };
        let Ok(Some(vrec)) = self.state.version(app, &version.version) else {
            return;
        };
        let m = vrec.manifest.clone();
        let window = self.cfg.apps.watch_window.as_duration();
        let deadline = tokio::time::Instant::now() + window;
        let restarts0: Vec<u32> = live
            .iter()
            .map(|i| shim_state(i).map(|s| s.restarts).unwrap_or(0))
            .collect();
        let mut fails = 0u32;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(m.health.interval.as_duration()).await;
            let mut bad = None;
            for (k, inst) in live.iter().enumerate() {
                if let Some(s) = shim_state(inst) {
                    if s.restarts > restarts0[k] {
                        bad = Some(format!(
                            "instance {} crashed ({})",
                            inst.id,
                            s.last_exit.unwrap_or_else(|| "exited".into())
                        ));
                        // A crash counts at once.
                        fails = m.health.unhealthy_threshold;
                        break;
                    }
                }
                if let Err(e) = self.check(inst, &m).await {
                    bad = Some(format!("instance {}: {e}", inst.id));
                }
            }
            match bad {
                None => fails = 0,
                Some(why) => {
                    fails = fails.saturating_add(1).max(if why.contains("crashed") {
                        m.health.unhealthy_threshold
                    } else {
                        0
                    });
                    if fails >= m.health.unhealthy_threshold {
                        self.auto_rollback(app, number, &why).await;
                        return;
                    }
                }
            }
        }
        // The window passed: the previous release's instances stop.
        let lock = self.lock_of(app);
        let _g = lock.lock().await;
        let drain = m.drain.as_duration();
        let still: Vec<InstanceRecord> = self
            .state
            .instances(app)
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.role == "warm" && warm.iter().any(|w| w.id == i.id))
            .collect();
        self.stop_all(&still, drain).await;
        let mut w = self.watchers.lock();
        if w.get(app).map(|h| h.id()) == tokio::task::try_id() {
            w.remove(app);
        }
    }

    async fn auto_rollback(self: &Arc<Self>, app: &str, failed: u64, why: &str) {
        let lock = self.lock_of(app);
        let _g = lock.lock().await;
        self.set_activity(app, Some(format!("automatic rollback of v{failed}")));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let r = self.auto_rollback_locked(app, failed, why, &tx).await;
        self.set_activity(app, None);
        if let Err(f) = r {
            tracing::error!(app, "automatic rollback failed: {}: {}", f.phase, f.message);
            self.state.audit(
                "berthd",
                app,
                "release.rollback.fail",
                format!("automatic rollback of v{failed} failed: {}", f.message),
            );
        }
    }

    async fn auto_rollback_locked(
        self: &Arc<Self>,
        app: &str,
        failed: u64,
        why: &str,
        tx: &Tx,
    ) -> Result<(), Fail> {
        let run = self.state.run(app).map_err(st("state"))?;
        if run.live != Some(failed) {
            return Ok(());
        }
        let Some(target) = self
            .state
            .releases(app)
            .map_err(st("state"))?
            .into_iter()
            .rev()
            .find(|r| r.number < failed && r.state != "failed")
        else {
            tracing::warn!(
                app,
                "v{failed} is failing ({why}) and there is no release to roll back to"
            );
            self.state.audit(
                "berthd",
                app,
                "release.unhealthy",
                format!("v{failed}: {why}; nothing to roll back to"),
            );
            return Ok(());
        };
        tracing::warn!(
            app,
            "v{failed} failed in its watch window ({why}); rolling back to v{}",
            target.number
        );
        let vrec = self
            .state
            .version(app, &target.version)
            .map_err(st("state"))?
            .ok_or_else(|| Fail::new("rollback", "the version is gone"))?;
        let failing: Vec<InstanceRecord> = self
            .state
            .instances(app)
            .map_err(st("state"))?
            .into_iter()
            .filter(|i| i.release == failed && i.role == "live")
            .collect();
        let description = format!("automatic rollback to v{}: v{failed} {why}", target.number);
        let out = self
            .rollout(
                "berthd",
                &vrec,
                target.config.clone(),
                description,
                tx,
                Rollout {
                    no_promote: false,
                    watch: false,
                    reuse_warm: true,
                },
            )
            .await?;
        if let Some(mut f) = self.state.release(app, failed).map_err(st("state"))? {
            f.state = "failed".into();
            let _ = self.state.commit(Batch::new().release(&f).event(
                "berthd",
                app,
                "release.rollback.auto",
                format!("v{failed} failed in its watch window: {why}"),
            ));
        }
        drop(out);
        self.stop_all(&failing, Duration::from_secs(2)).await;
        Ok(())
    }

    // -- promote, rollback ---------------------------------------------------------------------

    /// `berth promote APP VERSION|RELEASE`.
    pub async fn promote(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        target: &str,
        allow_downgrade: bool,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        self.exclusive(app, format!("promote {target}"), tx, async {
            let run = self.state.run(app).map_err(st("state"))?;
            let (vrec, config, what) = if let Some(n) = parse_release(target) {
                let r = self
                    .state
                    .release(app, n)
                    .map_err(st("state"))?
                    .ok_or_else(|| Fail::new("validate", format!("{app} has no release {target}")))?;
                let v = self.kept_version(app, &r.version)?;
                (v, r.config, format!("promote {target} ({})", r.version))
            } else {
                let v = self.kept_version(app, target)?;
                (v, run.config.clone(), format!("promote {target}"))
            };
            if let Some(l) = self.live_release(app)? {
                if l.version == vrec.version && l.config == config {
                    say(tx, "done", format!("{} with this config is live already", l.version));
                    return Ok(Outcome::Noop(l));
                }
                let (new, live) = (
                    semver::Version::parse(&vrec.version).map_err(st("validate"))?,
                    semver::Version::parse(&l.version).map_err(st("validate"))?,
                );
                if new < live && !allow_downgrade && parse_release(target).is_none() {
                    return Err(Fail::new(
                        "validate",
                        format!("{new} is lower than the live {live}: use `berth rollback`, or pass --allow-downgrade"),
                    ));
                }
            }
            let description = with_reason(what, reason);
            let r = self.rollout(actor, &vrec, config, description, tx, Rollout { no_promote: false, watch: true, reuse_warm: true }).await;
            let version = (vrec.manifest.clone(), vrec.digest.clone(), vrec.bundle_sha256.as_str());
            self.note_outcome(actor, app, Some(version), &r);
            r
        })
        .await
    }

    /// `berth rollback APP [RELEASE]`: that release's code and config, as a new release.
    pub async fn rollback(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        release: &str,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        self.exclusive(app, "rollback".into(), tx, async {
            let live = self.live_release(app)?.ok_or_else(|| {
                Fail::new(
                    "validate",
                    format!("{app} has no live release to roll back from"),
                )
            })?;
            let releases = self.state.releases(app).map_err(st("state"))?;
            let target = if release.is_empty() {
                // The release live before the current one: the newest older one that was
                // live (not failed), skipping releases equal to the live one.
                releases
                    .iter()
                    .rev()
                    .filter(|r| r.number < live.number && r.state != "failed")
                    .find(|r| !(r.version == live.version && r.config == live.config))
                    .cloned()
                    .ok_or_else(|| {
                        Fail::new(
                            "validate",
                            format!("{app} has no earlier release to roll back to"),
                        )
                    })?
            } else {
                let n = parse_release(release).ok_or_else(|| {
                    Fail::new(
                        "validate",
                        format!(
                            "{release:?} is not a release (v1, v2, …; see `berth releases {app}`)"
                        ),
                    )
                })?;
                releases
                    .iter()
                    .find(|r| r.number == n)
                    .cloned()
                    .ok_or_else(|| {
                        Fail::new("validate", format!("{app} has no release {release}"))
                    })?
            };
            let vrec = self.kept_version(app, &target.version)?;
            let description = with_reason(format!("rollback to v{}", target.number), reason);
            self.rollout(
                actor,
                &vrec,
                target.config.clone(),
                description,
                tx,
                Rollout {
                    no_promote: false,
                    watch: true,
                    reuse_warm: true,
                },
            )
            .await
        })
        .await
    }

    /// Keeps the `keep_versions` newest versions (by semver), the versions of the
    /// `keep_versions` newest releases and every version an instance runs; removes the
    /// others' files, records and the bundles no kept version uses.
    fn prune_versions(&self, app: &str) {
        let keep = self.cfg.apps.keep_versions.max(1) as usize;
        let Ok(mut versions) = self.state.versions(app) else {
            return;
        };
        let running: std::collections::HashSet<String> = self
            .state
            .instances(app)
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.version)
            .collect();
        versions.sort_by(|a, b| {
            semver::Version::parse(&b.version)
                .ok()
                .cmp(&semver::Version::parse(&a.version).ok())
        });
        // Spared too: what runs, and the versions of the newest releases (rollback targets).
        let mut spared = running;
        let releases = self.state.releases(app).unwrap_or_default();
        for r in releases.iter().rev().take(keep) {
            spared.insert(r.version.clone());
        }
        let (kept, old) = versions.split_at(keep.min(versions.len()));
        let mut bundles_in_use: std::collections::HashSet<String> =
            kept.iter().map(|v| v.bundle_sha256.clone()).collect();
        for v in old.iter().filter(|v| spared.contains(&v.version)) {
            bundles_in_use.insert(v.bundle_sha256.clone());
        }
        for v in old.iter().filter(|v| !spared.contains(&v.version)) {
            let dir = self.version_dir(app, &v.version);
            make_writable(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            if self.state.forget_version(app, &v.version).is_ok() {
                tracing::info!(app, version = %v.version, "removed an old version (apps.keep_versions)");
            }
            if !bundles_in_use.contains(&v.bundle_sha256) {
                let _ = std::fs::remove_file(self.bundle_path(&v.bundle_sha256));
            }
        }
    }

    fn kept_version(&self, app: &str, version: &str) -> Result<VersionRecord, Fail> {
        let v = self
            .state
            .version(app, version)
            .map_err(st("state"))?
            .ok_or_else(|| {
                Fail::new(
                    "validate",
                    format!("{app} has no version {version} (see `berth versions {app}`)"),
                )
            })?;
        if v.state != "ok" {
            return Err(Fail::new(
                "validate",
                format!("version {version} failed its gates; it cannot go live"),
            ));
        }
        if !self.version_dir(app, version).exists() {
            return Err(Fail::new(
                "validate",
                format!("version {version}'s files are no longer kept; deploy it again"),
            ));
        }
        Ok(v)
    }

    // -- scale, restart, config ------------------------------------------------------------------

    /// `berth scale APP N`.
    pub async fn scale(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        n: u32,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        self.exclusive(app, format!("scale to {n}"), tx, async {
            if n == 0 {
                return Err(Fail::new(
                    "validate",
                    "scale to at least 1 instance (destroy the app to stop it)",
                ));
            }
            let mut run = self.state.run(app).map_err(st("state"))?;
            let Some(live) = self.live_release(app)? else {
                run.scale = n;
                self.state
                    .commit(Batch::new().run(&run).event(
                        actor,
                        app,
                        "app.scale",
                        format!("{n} instance(s)"),
                    ))
                    .map_err(st("state"))?;
                return Ok(Outcome::Done(format!(
                    "{app} will run {n} instance(s) once deployed"
                )));
            };
            let vrec = self.kept_version(app, &live.version)?;
            self.check_resources(app, &vrec.manifest, n)?;
            let current: Vec<InstanceRecord> = self
                .state
                .instances(app)
                .map_err(st("state"))?
                .into_iter()
                .filter(|i| i.role == "live")
                .collect();
            let have = current.len() as u32;
            if n > have {
                say(
                    tx,
                    "start",
                    format!("starting {} more instance(s)", n - have),
                );
                let mut started = self.start_healthy(&vrec, &live, n - have, tx).await?;
                let mut batch = Batch::new();
                for s in &mut started {
                    s.role = "live".into();
                    batch = batch.instance(s);
                }
                run.scale = n;
                batch = batch.run(&run).event(
                    actor,
                    app,
                    "app.scale",
                    format!("{have} -> {n} instance(s)"),
                );
                self.state.commit(batch).map_err(st("state"))?;
                self.push_routes(self.route_table(None).map_err(st("switch"))?)
                    .await
                    .map_err(|e| Fail::new("switch", format!("{e:#}")))?;
            } else if n < have {
                let (keep, drop_) = current.split_at(n as usize);
                let _ = keep;
                let mut batch = Batch::new();
                for d in drop_ {
                    let mut s = d.clone();
                    s.role = "stopping".into();
                    batch = batch.instance(&s);
                }
                run.scale = n;
                batch = batch.run(&run).event(
                    actor,
                    app,
                    "app.scale",
                    format!("{have} -> {n} instance(s)"),
                );
                self.state.commit(batch).map_err(st("state"))?;
                self.push_routes(self.route_table(None).map_err(st("switch"))?)
                    .await
                    .map_err(|e| Fail::new("switch", format!("{e:#}")))?;
                say(tx, "drain", format!("stopping {} instance(s)", have - n));
                self.stop_all(drop_, vrec.manifest.drain.as_duration())
                    .await;
            } else {
                run.scale = n;
                self.state
                    .commit(Batch::new().run(&run))
                    .map_err(st("state"))?;
            }
            say(tx, "done", format!("{app} runs {n} instance(s)"));
            Ok(Outcome::Done(format!("{app} runs {n} instance(s)")))
        })
        .await
    }

    /// `berth restart APP`: fresh instances of the live release, switched to without a
    /// failed request; no new release.
    pub async fn restart(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        self.exclusive(app, "restart".into(), tx, async {
            let live = self
                .live_release(app)?
                .ok_or_else(|| Fail::new("validate", format!("{app} has no live release")))?;
            let vrec = self.kept_version(app, &live.version)?;
            let run = self.state.run(app).map_err(st("state"))?;
            let old: Vec<InstanceRecord> = self
                .state
                .instances(app)
                .map_err(st("state"))?
                .into_iter()
                .filter(|i| i.role == "live")
                .collect();
            say(
                tx,
                "start",
                format!("starting {} fresh instance(s)", run.scale.max(1)),
            );
            let mut started = self
                .start_healthy(&vrec, &live, run.scale.max(1), tx)
                .await?;
            let mut batch = Batch::new();
            for s in &mut started {
                s.role = "live".into();
                batch = batch.instance(s);
            }
            for o in &old {
                let mut s = o.clone();
                s.role = "stopping".into();
                batch = batch.instance(&s);
            }
            batch = batch.event(
                actor,
                app,
                "app.restart",
                with_reason("restart".into(), reason),
            );
            self.state.commit(batch).map_err(st("state"))?;
            if let Err(e) = self
                .push_routes(self.route_table(None).map_err(st("switch"))?)
                .await
            {
                return Err(Fail::new("switch", format!("{e:#}")));
            }
            say(
                tx,
                "drain",
                format!("stopping {} old instance(s)", old.len()),
            );
            let me = self.clone();
            let drain = vrec.manifest.drain.as_duration();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                me.stop_all(&old, drain).await;
            });
            Ok(Outcome::Released(live))
        })
        .await
    }

    /// `berth config set/unset`: a new release with the changed config (when one is live).
    pub async fn set_config(
        self: &Arc<Self>,
        actor: &str,
        app: &str,
        set: Vec<(String, String, bool)>,
        unset: Vec<String>,
        reason: &str,
        tx: &Tx,
    ) -> Result<Outcome, Fail> {
        let mut keys: Vec<String> = set.iter().map(|(k, _, _)| k.clone()).collect();
        keys.extend(unset.iter().cloned());
        let what = if unset.is_empty() {
            format!("config set {}", keys.join(" "))
        } else if set.is_empty() {
            format!("config unset {}", keys.join(" "))
        } else {
            format!("config change {}", keys.join(" "))
        };
        self.exclusive(app, what.clone(), tx, async {
            let mut run = self.state.run(app).map_err(st("state"))?;
            let mut config = run.config.clone();
            for (k, v, secret) in &set {
                check_key(k, *secret).map_err(|m| Fail::new("validate", m))?;
                if *secret {
                    config.plain.remove(k);
                    config.secrets.insert(k.clone(), self.sealer.seal(app, v));
                } else {
                    config.secrets.remove(k);
                    config.plain.insert(k.clone(), v.clone());
                }
            }
            for k in &unset {
                if config.plain.remove(k).is_none() && config.secrets.remove(k).is_none() {
                    return Err(Fail::new(
                        "validate",
                        format!("{app} has no config value {k}"),
                    ));
                }
            }
            let description = with_reason(what.clone(), reason);
            match self.live_release(app)? {
                None => {
                    run.config = config;
                    self.state
                        .commit(Batch::new().run(&run).event(
                            actor,
                            app,
                            "config.change",
                            description,
                        ))
                        .map_err(st("state"))?;
                    say(tx, "done", "saved; the first deploy will use it");
                    Ok(Outcome::Done("saved; the first deploy will use it".into()))
                }
                Some(live) => {
                    let vrec = self.kept_version(app, &live.version)?;
                    self.state
                        .audit(actor, app, "config.change", description.clone());
                    self.rollout(
                        actor,
                        &vrec,
                        config,
                        description,
                        tx,
                        Rollout {
                            no_promote: false,
                            watch: true,
                            reuse_warm: false,
                        },
                    )
                    .await
                }
            }
        })
        .await
    }

    // -- status -------------------------------------------------------------------------------

    /// What runs for `app`.
    pub fn status(&self, app: &str) -> Result<api::AppStatus, Fail> {
        let run = self.state.run(app).map_err(st("state"))?;
        let live = self.live_release(app)?;
        let health = self.health.lock().clone();
        let mut instances = Vec::new();
        for i in self.state.instances(app).map_err(st("state"))? {
            let s = shim_state(&i);
            let alive = shim_alive(&i).is_some();
            let h = health.get(&health_key(app, &i.id));
            instances.push(api::Instance {
                id: i.id.clone(),
                version: i.version.clone(),
                state: match (&s, alive) {
                    (Some(s), true) => s.state.clone(),
                    (Some(_), false) => "gone".into(),
                    (None, _) => "starting".into(),
                },
                health: match h.and_then(|h| h.healthy) {
                    Some(true) => "healthy".into(),
                    Some(false) => {
                        format!("unhealthy: {}", h.map(|h| h.detail.as_str()).unwrap_or(""))
                    }
                    None => "unknown".into(),
                },
                addr: format!("127.0.0.1:{}", i.port),
                pid: s.as_ref().and_then(|s| s.child_pid).unwrap_or(0),
                memory_bytes: s.as_ref().and_then(crate::shim::memory_bytes).unwrap_or(0),
                restarts: s.as_ref().map(|s| s.restarts).unwrap_or(0),
                started_ms: s.as_ref().map(|s| s.started_ms).unwrap_or(i.created_ms),
                last_exit: s
                    .as_ref()
                    .and_then(|s| s.last_exit.clone())
                    .unwrap_or_default(),
                role: i.role.clone(),
            });
        }
        Ok(api::AppStatus {
            app: app.into(),
            live: live.as_ref().map(release_message),
            instances,
            scale: run.scale.max(1),
            activity: self.activity(app),
            urls: if live.is_some() {
                self.urls(app)
            } else {
                vec![]
            },
        })
    }

    // -- start-up and destroy -------------------------------------------------------------------

    /// At start: re-adopt running instances, restart dead live ones, stop leftovers of
    /// changes that berthd's end interrupted, and push the route table.
    pub async fn adopt(self: &Arc<Self>) -> anyhow::Result<()> {
        for i in self.state.all_instances().map_err(|e| anyhow!("{e}"))? {
            let alive = shim_alive(&i).is_some();
            match (i.role.as_str(), alive) {
                ("live", true) => tracing::info!(app = %i.app, instance = %i.id, "re-adopted"),
                ("live", false) => {
                    tracing::warn!(app = %i.app, instance = %i.id, "its shim is gone; starting it again");
                    // The user and its network guard first (after a reboot the guard's rules
                    // are gone).
                    if let Err(e) = self.app_user(&i.app) {
                        tracing::error!(app = %i.app, "{e:#}; not starting it");
                        continue;
                    }
                    if let Err(e) = self.spawn_shim(&i.dir) {
                        tracing::error!(app = %i.app, instance = %i.id, "restarting: {e:#}");
                    }
                }
                _ => {
                    tracing::info!(app = %i.app, instance = %i.id, role = %i.role, "stopping what an interrupted change left");
                    self.stop_instance(&i, Duration::from_secs(2)).await;
                }
            }
        }
        // A live release without instances (its records lost, or never started because
        // berthd stopped mid-way): start it again.
        for run in self.state.runs().map_err(|e| anyhow!("{e}"))? {
            let Some(n) = run.live else { continue };
            let live = self.state.instances(&run.app).map_err(|e| anyhow!("{e}"))?;
            if live.iter().any(|i| i.role == "live") {
                continue;
            }
            let Some(release) = self
                .state
                .release(&run.app, n)
                .map_err(|e| anyhow!("{e}"))?
            else {
                continue;
            };
            let Ok(version) = self.kept_version(&run.app, &release.version) else {
                tracing::error!(app = %run.app, "the live release's version is gone; deploy again");
                continue;
            };
            tracing::warn!(app = %run.app, release = n, "the live release has no instances; starting them");
            for _ in 0..run.scale.max(1) {
                match self.start_instance(&version, &release, "live").await {
                    Ok(rec) => {
                        let _ = self.state.commit(Batch::new().instance(&rec));
                    }
                    Err(e) => tracing::error!(app = %run.app, "starting an instance: {e:#}"),
                }
            }
        }
        if let Err(e) = self.push_routes(self.route_table(None)?).await {
            tracing::warn!("the router is not reachable now ({e:#}); it keeps its last table");
        }
        Ok(())
    }

    /// Runs forever: pushes the route table again while the router was unreachable, and
    /// checks live instances' health for `status` (the shims restart crashed processes
    /// themselves).
    pub async fn monitor(self: Arc<Self>) {
        let mut tick = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.repush_routes().await;
            tick += 1;
            if !tick.is_multiple_of(4) {
                continue;
            }
            let Ok(all) = self.state.all_instances() else {
                continue;
            };
            for i in all.iter().filter(|i| i.role == "live") {
                if let Ok(Some(v)) = self.state.version(&i.app, &i.version) {
                    let _ = self.check(i, &v.manifest).await;
                }
            }
        }
    }

    /// When an app is destroyed: its instances, routes, database, user, files and records.
    pub async fn destroy(self: &Arc<Self>, app: &str) -> anyhow::Result<()> {
        let lock = self.lock_of(app);
        let _g = lock.lock().await;
        self.cancel_watch(app);
        let instances = self.state.instances(app).map_err(|e| anyhow!("{e}"))?;
        let run = self.state.run(app).map_err(|e| anyhow!("{e}"))?;
        // No more requests, then no more processes, so nothing writes while its data goes.
        let mut table = self.route_table(None)?;
        table.apps.retain(|a| a.name != app);
        if let Err(e) = self.push_routes(table).await {
            tracing::warn!(app, "removing the app's routes: {e:#}");
        }
        self.stop_all(&instances, Duration::from_secs(2)).await;
        self.purge_service_data(app).await?;
        self.state.forget_app(app).map_err(|e| anyhow!("{e}"))?;
        if run.db_provisioned {
            if let Some(db) = &self.cfg.database {
                let name = AppName::parse(app).map_err(|e| anyhow!("{e}"))?;
                let admin = query_proxy::provision::AdminAccess {
                    addr: db.backend.clone(),
                    user: db.admin_user.clone(),
                    password: match &db.admin_password_file {
                        Some(p) => std::fs::read_to_string(p)?.trim_end().to_string(),
                        None => String::new(),
                    },
                    timeout: Duration::from_secs(10),
                };
                query_proxy::provision::deprovision(&admin, &name, &db.account_hosts)
                    .await
                    .map_err(|e| anyhow!("removing the database: {e}"))?;
            }
        }
        if let Some(u) = self.users.lock().remove(app).flatten() {
            let _ = crate::shim::netguard::unguard_app(u.uid);
        }
        if self.isolation_on() {
            if let Ok(u) = crate::shim::users::ensure_app_user(app, &self.cfg.apps.user_prefix) {
                let _ = crate::shim::netguard::unguard_app(u.uid);
            }
            let _ = crate::shim::users::remove_app_user(app, &self.cfg.apps.user_prefix);
        }
        remove_cgroups(app);
        make_writable(&self.cfg.data_dir.join("apps").join(app));
        let _ = std::fs::remove_dir_all(self.cfg.data_dir.join("apps").join(app));
        let _ = std::fs::remove_dir_all(self.cfg.data_dir.join("run").join(app));
        Ok(())
    }

    /// Asks the blob server and the log collector to delete the app's data. A failure stops
    /// the destroy (run it again), so no data outlives its app unnoticed.
    async fn purge_service_data(&self, app: &str) -> anyhow::Result<()> {
        let s = &self.cfg.services;
        let token = match &s.admin_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow!("services.admin_token_file {}: {e}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        for (what, url) in [
            ("blob server", &s.blob_admin_url),
            ("log collector", &s.logs_admin_url),
        ] {
            if url.is_empty() {
                tracing::warn!(
                    app,
                    "{what}: no admin URL configured; its data of the app stays"
                );
                continue;
            }
            let path = format!("/v1/apps/{app}/data");
            let (status, body) = super::routes::http(url, "DELETE", &path, token.as_deref(), b"")
                .await
                .map_err(|e| anyhow!("the {what} at {url} could not purge {app}'s data: {e:#}; run the destroy again"))?;
            if status != 200 {
                return Err(anyhow!(
                    "the {what} at {url} refused to purge {app}'s data ({status} {}); check \
                     services.admin_token_file, then run the destroy again",
                    body.trim()
                ));
            }
            tracing::info!(app, "{what}: purged: {}", body.trim());
        }
        Ok(())
    }

    /// Stops every instance (berthd's `stop_apps_on_exit`): live ones keep their records,
    /// so the next start of berthd brings them back; the rest are removed.
    pub async fn stop_everything(&self) {
        let all = self.state.all_instances().unwrap_or_default();
        let (live, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|i| i.role == "live");
        let halts = live
            .iter()
            .map(|i| self.halt_instance(i, Duration::from_secs(3)));
        futures_util::future::join_all(halts).await;
        self.stop_all(&rest, Duration::from_secs(3)).await;
    }

    // -- one-off commands --------------------------------------------------------------------------

    /// Runs `argv` once for `release` of `version`: as the app's user, in the bundle, with
    /// the runtime contract's environment; its exit and output.
    async fn run_once(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        argv: Vec<String>,
        timeout: Duration,
    ) -> anyhow::Result<OneOff> {
        let app = &version.app;
        let dir = self
            .cfg
            .data_dir
            .join("run")
            .join(app)
            .join(format!("once-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("scratch"))?;
        let _cleanup = RemoveOnDrop(dir.clone());
        let user = self.app_user(app)?;
        self.secure_dirs(app, user.as_ref())?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.join("scratch"), Some(u.uid), Some(u.gid))?;
        }
        self.write_secrets_file(app, release, &dir, user.as_ref())?;
        let env = self.instance_env(version, release, "once", &dir, None);
        let bundle = self.version_dir(app, &version.version);
        let spec = self.shim_spec(
            app,
            &version.version,
            "once",
            argv,
            env,
            &bundle,
            &dir,
            user,
            &version.manifest,
        )?;
        let mut cmd = one_off_command(&spec)?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow!("starting {}: {e}", spec.argv[0]))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).to_string();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = tail_lines(&text, 40);
                Ok(OneOff {
                    ok: out.status.success(),
                    status: describe_exit(&out.status),
                    output: text,
                })
            }
            Ok(Err(e)) => Err(anyhow!("running {}: {e}", spec.argv.join(" "))),
            Err(_) => Ok(OneOff {
                ok: false,
                status: format!("no end within {}s", timeout.as_secs()),
                output: String::new(),
            }),
        }
    }
}

/// The command of a one-off run: the shim's sandbox decision and privilege drop, without
/// the supervision (no restart; berthd waits for it).
fn one_off_command(spec: &crate::shim::Spec) -> anyhow::Result<tokio::process::Command> {
    use crate::shim::sandbox::{bwrap_argv, decide, Decision};
    let argv: Vec<std::ffi::OsString> = match decide(spec).map_err(|e| anyhow!("{e}"))? {
        Decision::Bwrap(bwrap) => bwrap_argv(&bwrap, spec),
        Decision::None(_) => spec.argv.iter().map(Into::into).collect(),
    };
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd);
    crate::shim::child::drop_privileges(&mut cmd, spec.user, spec.limits.nofile);
    Ok(tokio::process::Command::from(cmd))
}

struct OneOff {
    ok: bool,
    status: String,
    output: String,
}

fn describe_exit(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "ended".into(),
    }
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_read_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            make_read_only(&p)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555))?;
        } else {
            let exec = meta.permissions().mode() & 0o100 != 0;
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(if exec { 0o555 } else { 0o444 }),
            )?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// Removes the app's parent cgroups (`berth/<app>`, in every v1 hierarchy or in v2); the
/// shims removed their instances' groups.
fn remove_cgroups(app: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("berth").join(app)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            dirs.push(e.path().join("berth").join(app));
        }
    }
    for d in dirs {
        if d.is_dir() {
            if let Err(e) = std::fs::remove_dir(&d) {
                tracing::warn!(app, dir = %d.display(), "removing the app's cgroup: {e}");
            }
        }
    }
}

/// Undoes [`make_read_only`] so the tree can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn short(digest: &str) -> &str {
    let d = digest.strip_prefix("sha256:").unwrap_or(digest);
    &d[..12.min(d.len())]
}

/// A failure in one line: the first line, and the last one when there are more (a
/// traceback's last line names the exception).
fn one_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    match lines.next_back() {
        Some(last) => format!("{} {last}", first.trim_end_matches(':').to_string() + ":"),
        None => first.to_string(),
    }
}

fn with_reason(what: String, reason: &str) -> String {
    if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    }
}

/// "v3" -> 3.
pub fn parse_release(s: &str) -> Option<u64> {
    s.strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
}

/// Config keys: environment variable names for plain values (not BERTH_*), and the same or
/// lower-case identifiers for secrets.
pub fn check_key(k: &str, secret: bool) -> Result<(), String> {
    let ok_upper = !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let ok_lower = !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if k.starts_with("BERTH_") {
        return Err(format!("{k}: BERTH_* names belong to the platform"));
    }
    if secret {
        if ok_upper || ok_lower {
            return Ok(());
        }
        return Err(format!(
            "{k:?} is not a secret name: letters, digits and _, all lower or all upper case"
        ));
    }
    if ok_upper {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not an environment variable name: A-Z, 0-9 and _, not starting with a digit"
        ))
    }
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let text = std::fs::read(dir.join("shim.log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let t = tail_lines(&text, lines);
    if t.trim().is_empty() {
        "(nothing)".into()
    } else {
        t
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_failure_in_one_line_keeps_the_exception() {
        assert_eq!(
            one_line("health: 3 checks failed"),
            "health: 3 checks failed"
        );
        assert_eq!(
            one_line(
                "the entry point main:app did not import (exit 1):\nTraceback (most recent call last):\n  File \"main.py\"\nRuntimeError: boom\n\n"
            ),
            "the entry point main:app did not import (exit 1): RuntimeError: boom"
        );
    }
}
