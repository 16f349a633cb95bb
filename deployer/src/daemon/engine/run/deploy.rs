//! Deploy: check the bundle and the resources, provision the app's services, then hand the
//! version to the rollout.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use berth_common::tenants::AppName;

use super::{make_read_only, make_writable, one_line, short, st, Outcome, RemoveOnDrop, Rollout};
use crate::bundle;
use crate::daemon::engine::{say, Engine, Fail, Tx};
use crate::daemon::state::now_ms;
use crate::daemon::store::{Batch, ReleaseRecord, VersionRecord};
use crate::manifest::Manifest;

impl Engine {
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
    pub(super) fn note_outcome(
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
    pub(super) async fn deploy_locked(
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
    pub(super) async fn deploy_checked_version(
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

    pub(super) fn check_resources(&self, app: &str, m: &Manifest, scale: u32) -> Result<(), Fail> {
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
    pub(super) async fn provision(
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

    pub(super) async fn provision_db(
        &self,
        app: &str,
        db: &crate::daemon::DatabaseConfig,
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
}
