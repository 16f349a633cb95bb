//! Feeding `berth-router`: the whole route table, built from every app's live instances,
//! pushed with `PUT /v1/routes` and a generation that only grows (kept in berthd's state).

use std::time::Duration;

use anyhow::{anyhow, Context};
use berth_common::tenants::TenantSet;
use berth_router::table::{AppLimits, AppRoute, LogTarget, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Engine;

impl Engine {
    /// The table that serves every live app now, with `app`'s backends replaced by
    /// `override_backends` when given (the table of a switch about to happen).
    pub(super) fn route_table(
        &self,
        override_app: Option<(&str, &[String], &str, &str)>,
    ) -> anyhow::Result<RouteTable> {
        let mut apps = Vec::new();
        let registry = self.state.registry().borrow().clone();
        let tenants = TenantSet::from_toml_str(&registry.tenants_toml).ok();
        for run in self.state.runs().map_err(|e| anyhow!("{e}"))? {
            let (backends, version, release) = match override_app {
                Some((name, backends, version, release)) if name == run.app => {
                    (backends.to_vec(), version.to_string(), release.to_string())
                }
                _ => {
                    let Some(live) = run.live else { continue };
                    let instances = self.state.instances(&run.app).map_err(|e| anyhow!("{e}"))?;
                    let backends: Vec<String> = instances
                        .iter()
                        .filter(|i| i.role == "live")
                        .map(|i| format!("127.0.0.1:{}", i.port))
                        .collect();
                    let version = instances
                        .iter()
                        .find(|i| i.role == "live")
                        .map(|i| i.version.clone())
                        .unwrap_or_default();
                    (backends, version, format!("v{live}"))
                }
            };
            let logs = self.log_target(&run.app).map(|t| LogTarget {
                addr: t.addr,
                token: t.token,
                token_sha256: None,
            });
            // The tenant's router limits (set with `berth quota`).
            let limits = tenants
                .as_ref()
                .and_then(|t| t.get(&run.app))
                .map(|t| AppLimits {
                    max_body_bytes: Some(t.max_body_bytes),
                    request_timeout: Some(t.request_timeout),
                    max_concurrent_requests: Some(t.max_concurrent_requests),
                })
                .unwrap_or_default();
            apps.push(AppRoute {
                name: run.app.clone(),
                prefix: Some(format!("/{}", run.app)),
                backends,
                version: Some(version),
                release: Some(release),
                logs,
                limits,
                ..AppRoute::default()
            });
        }
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(RouteTable {
            generation: 0,
            apps,
        })
    }

    /// Pushes `table` to the router with the next generation; a failure marks the routes
    /// dirty, and [`Engine::repush_routes`] tries again.
    pub(super) async fn push_routes(&self, table: RouteTable) -> anyhow::Result<()> {
        let r = self.push_routes_once(table).await;
        self.routes_dirty
            .store(r.is_err(), std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Makes the monitor push the table again soon (e.g. an app's router limits changed).
    pub fn routes_changed(&self) {
        self.routes_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pushes the current table again if the last push failed (the router was down).
    pub(super) async fn repush_routes(&self) {
        if !self.routes_dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match self.route_table(None) {
            Ok(t) => match self.push_routes(t).await {
                Ok(()) => tracing::info!("berth-router has the route table again"),
                Err(e) => tracing::debug!("the router is still unreachable: {e:#}"),
            },
            Err(e) => tracing::error!("building the route table: {e:#}"),
        }
    }

    async fn push_routes_once(&self, mut table: RouteTable) -> anyhow::Result<()> {
        let Some(admin) = self.cfg.router.admin_url.clone().filter(|u| !u.is_empty()) else {
            return Ok(());
        };
        let _one_at_a_time = self.route_push.lock().await;
        let mut floor = self.router_floor.load(std::sync::atomic::Ordering::Relaxed);
        // At most twice: a 409 means the router has a newer table (berthd's state was
        // restored from a backup, or another berthd fed it): jump past its generation.
        for attempt in 0..2 {
            table.generation = self
                .state
                .next_counter("route_generation", floor + 1)
                .map_err(|e| anyhow!("{e}"))?;
            let body = serde_json::to_vec(&table)?;
            let (status, text) = http(
                &admin,
                "PUT",
                "/v1/routes",
                self.router_token.as_deref(),
                &body,
            )
            .await
            .with_context(|| format!("pushing routes to berth-router at {admin}"))?;
            match status {
                200 => return Ok(()),
                409 if attempt == 0 => {
                    floor = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["generation"].as_u64())
                        .unwrap_or(0);
                    self.router_floor
                        .store(floor, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {
                    return Err(anyhow!(
                        "berth-router refused the route table: {status} {text}"
                    ))
                }
            }
        }
        Err(anyhow!(
            "berth-router kept refusing the route table's generation"
        ))
    }
}

/// One HTTP/1.1 request to `base` (`http://host:port`); the status and body.
pub async fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{base}: only http:// is supported for the router's admin API"))?
        .trim_end_matches('/');
    let work = async {
        let mut s = tokio::net::TcpStream::connect(hostport).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        s.write_all(body).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .map_err(|_| anyhow!("no answer within 5s"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
