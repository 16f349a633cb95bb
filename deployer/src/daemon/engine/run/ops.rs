//! Scale, restart, config changes and status.

use std::sync::Arc;
use std::time::Duration;

use berth_api::v1 as api;

use super::{check_key, release_message, st, with_reason, Outcome, Rollout};
use crate::daemon::engine::instances::{health_key, shim_alive, shim_state};
use crate::daemon::engine::{say, Engine, Fail, Tx};
use crate::daemon::store::{Batch, InstanceRecord};

impl Engine {
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
            let current = self.live_instances(app)?;
            let have = current.len() as u32;
            let mut batch = Batch::new();
            let mut draining: &[InstanceRecord] = &[];
            if n > have {
                say(
                    tx,
                    "start",
                    format!("starting {} more instance(s)", n - have),
                );
                let mut started = self.start_healthy(&vrec, &live, n - have, tx).await?;
                for s in &mut started {
                    s.role = "live".into();
                    batch = batch.instance(s);
                }
            } else if n < have {
                draining = &current[n as usize..];
                for d in draining {
                    let mut s = d.clone();
                    s.role = "stopping".into();
                    batch = batch.instance(&s);
                }
            }
            run.scale = n;
            if n == have {
                self.state
                    .commit(Batch::new().run(&run))
                    .map_err(st("state"))?;
            } else {
                let batch = batch.run(&run).event(
                    actor,
                    app,
                    "app.scale",
                    format!("{have} -> {n} instance(s)"),
                );
                self.commit_and_route(batch).await?;
            }
            if !draining.is_empty() {
                say(tx, "drain", format!("stopping {} instance(s)", have - n));
                self.stop_all(draining, vrec.manifest.drain.as_duration())
                    .await;
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
            let old = self.live_instances(app)?;
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
            self.commit_and_route(batch).await?;
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

    /// Commits `batch`, then sends the router the route table that follows from it.
    async fn commit_and_route(&self, batch: Batch) -> Result<(), Fail> {
        self.state.commit(batch).map_err(st("state"))?;
        let table = self.route_table(None).map_err(st("switch"))?;
        self.push_routes(table)
            .await
            .map_err(|e| Fail::new("switch", format!("{e:#}")))
    }

    /// The app's instances serving its live release.
    fn live_instances(&self, app: &str) -> Result<Vec<InstanceRecord>, Fail> {
        Ok(self
            .state
            .instances(app)
            .map_err(st("state"))?
            .into_iter()
            .filter(|i| i.role == "live")
            .collect())
    }
}
