//! Re-adoption at start, the monitor, destroying an app and stopping everything.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use berth_common::tenants::AppName;

use super::{make_writable, remove_cgroups};
use crate::daemon::engine::instances::shim_alive;
use crate::daemon::engine::Engine;
use crate::daemon::store::Batch;

impl Engine {
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
    pub(super) async fn purge_service_data(&self, app: &str) -> anyhow::Result<()> {
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
            let (status, body) = crate::daemon::engine::routes::http(url, "DELETE", &path, token.as_deref(), b"")
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
}
