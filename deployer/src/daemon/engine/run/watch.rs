//! The watch window after a rollout, and its automatic rollback.

use std::sync::Arc;
use std::time::Duration;

use super::{st, Rollout};
use crate::daemon::engine::instances::shim_state;
use crate::daemon::engine::{Engine, Fail, Tx};
use crate::daemon::store::{Batch, InstanceRecord};

impl Engine {
    /// Ends the app's watch window (a newer change replaces it). The watcher itself may be
    /// the caller (its automatic rollback): it is then only forgotten, not aborted.
    pub(super) fn cancel_watch(&self, app: &str) {
        let mut w = self.watchers.lock();
        if let Some(h) = w.remove(app) {
            if Some(h.id()) != tokio::task::try_id() {
                h.abort();
            }
        }
    }

    pub(super) fn start_watch(
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

    pub(super) async fn watch(
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

    pub(super) async fn auto_rollback(self: &Arc<Self>, app: &str, failed: u64, why: &str) {
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

    pub(super) async fn auto_rollback_locked(
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
}
