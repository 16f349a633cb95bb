//! Rollout: start the new instances, check their health and smoke test, switch the routes.

use std::sync::Arc;
use std::time::Duration;

use super::{log_tail, release_id, st, Outcome, Rollout};
use crate::daemon::engine::instances::{health_key, shim_alive, shim_state};
use crate::daemon::engine::{probe, say, Engine, Fail, Health, Tx};
use crate::daemon::state::now_ms;
use crate::daemon::store::{Batch, ConfigSnapshot, InstanceRecord, ReleaseRecord, VersionRecord};
use crate::manifest::Manifest;

impl Engine {
    /// Starts (or reuses) instances of `version` with `config`, checks them, switches the
    /// router to them as a new release, and watches it.
    pub(super) async fn rollout(
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
    pub(super) async fn start_candidates(
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
    pub(super) async fn start_healthy(
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
    pub(super) async fn wait_healthy(
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

    pub(super) async fn check_once(
        &self,
        instances: &[InstanceRecord],
        m: &Manifest,
    ) -> Result<(), Fail> {
        for inst in instances {
            self.check(inst, m)
                .await
                .map_err(|e| Fail::new("health", format!("instance {}: {e}", inst.id)))?;
        }
        Ok(())
    }

    /// One health check, remembered for `status`.
    pub(super) async fn check(&self, inst: &InstanceRecord, m: &Manifest) -> Result<(), String> {
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

    pub(super) async fn smoke(
        &self,
        inst: &InstanceRecord,
        m: &Manifest,
        tx: &Tx,
    ) -> Result<(), Fail> {
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
}
