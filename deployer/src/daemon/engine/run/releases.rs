//! Promote a kept version and roll back to an earlier release; pruning old versions.

use std::sync::Arc;

use super::{make_writable, parse_release, st, with_reason, Outcome, Rollout};
use crate::daemon::engine::{say, Engine, Fail, Tx};
use crate::daemon::store::VersionRecord;

impl Engine {
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
    pub(super) fn prune_versions(&self, app: &str) {
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

    pub(super) fn kept_version(&self, app: &str, version: &str) -> Result<VersionRecord, Fail> {
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
}
