//! Per-app limits that need shared state: open sessions (`max_connections`), the database
//! size (`db_bytes`, measured periodically), and killing a runaway query on the backend.

use std::sync::Arc;

use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::Tenant;

use super::Shared;
use crate::backend::BackendConn;

/// One open session of an app; frees its place when dropped.
#[derive(Debug)]
pub struct AppSlot {
    shared: Arc<Shared>,
    database: String,
}

impl AppSlot {
    /// Takes a place among the app's `max_connections` (0: unlimited), or `None` when full.
    pub fn acquire(shared: &Arc<Shared>, tenant: &Tenant) -> Option<AppSlot> {
        let database = tenant.name.mysql_ident();
        let mut open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(database.clone()).or_insert(0);
        if tenant.max_connections != 0 && *n >= tenant.max_connections {
            return None;
        }
        *n += 1;
        Some(AppSlot {
            shared: shared.clone(),
            database,
        })
    }
}

impl Drop for AppSlot {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.database) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.database);
            }
        }
    }
}

/// Kills the statement running on backend thread `id` (`KILL QUERY`) through the admin account.
pub async fn kill_query(shared: &Shared, id: u32) {
    shared
        .counters
        .queries_killed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match shared.admin.connect().await {
        Ok(mut admin) => {
            if let Err(e) = admin.exec(&format!("KILL QUERY {id}")).await {
                tracing::warn!(backend_thread = id, error = %e, "KILL QUERY failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot log in as the backend admin to kill a query"),
    }
}

/// Measures every app database's size (data + indexes, from information_schema) every
/// `db_size_interval` until shutdown.
pub async fn measure_db_sizes(shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let mut admin: Option<BackendConn> = None;
    let mut warned = false;
    loop {
        if admin.is_none() {
            match shared.admin.connect().await {
                Ok(c) => {
                    admin = Some(c);
                    warned = false;
                }
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "cannot log in as the backend admin; db_bytes is not measured until it works");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        if let Some(conn) = admin.as_mut() {
            let sql = "SELECT TABLE_SCHEMA, SUM(DATA_LENGTH + INDEX_LENGTH) \
                       FROM information_schema.TABLES WHERE TABLE_SCHEMA LIKE 'app\\_%' \
                       GROUP BY TABLE_SCHEMA";
            match conn.query(sql).await {
                Ok(rows) => {
                    let sizes = rows
                        .into_iter()
                        .filter_map(|r| {
                            let mut it = r.into_iter();
                            let db = it.next()??;
                            let bytes = it.next()??.parse::<u64>().ok()?;
                            Some((db, bytes))
                        })
                        .collect();
                    *shared.db_sizes.lock().unwrap_or_else(|e| e.into_inner()) = sizes;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "measuring database sizes failed");
                    admin = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.cfg.db_size_interval.0) => {}
            _ = shutdown.recv() => return,
        }
    }
}
