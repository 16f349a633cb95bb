//! The deploy engine: what `berth deploy`, `promote`, `rollback`, `scale`, `restart` and
//! `config set` do inside berthd.
//!
//! One change runs per app at a time (a per-app lock); each reports its phases on a
//! channel the gRPC stream mirrors, and runs to its end even when the caller goes away.
//! A change that fails at any point leaves the live release serving, unchanged.

pub mod instances;
pub mod probe;
pub mod routes;
mod run;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::anyhow;
use berth_api::v1 as api;
use berth_common::tenants::TenantSet;
use parking_lot::Mutex;

use super::secrets::Sealer;
use super::state::State;
use super::Config;
use crate::shim;

pub use run::{check_key as check_config_key, release_message as run_release_message, Outcome};

/// Where a change reports its progress.
pub type Tx = tokio::sync::mpsc::UnboundedSender<api::Progress>;

/// A change that failed: in which phase, and what to do about it.
#[derive(Debug, Clone)]
pub struct Fail {
    pub phase: &'static str,
    pub message: String,
}

impl Fail {
    pub fn new(phase: &'static str, message: impl Into<String>) -> Fail {
        Fail {
            phase,
            message: message.into(),
        }
    }
}

/// Reports one step.
pub fn say(tx: &Tx, phase: &str, message: impl Into<String>) {
    let message = message.into();
    tracing::info!(phase, "{message}");
    let _ = tx.send(api::Progress {
        phase: phase.into(),
        message,
        ..Default::default()
    });
}

/// Health of one instance as last checked.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub healthy: Option<bool>,
    pub detail: String,
}

/// Caps from the app's tenant entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantCaps {
    pub max_processes: Option<u32>,
    pub max_memory: Option<u64>,
    pub max_cpu: Option<f64>,
}

/// The engine's shared state.
pub struct Engine {
    pub(crate) cfg: Arc<Config>,
    pub(crate) state: Arc<State>,
    pub(crate) sealer: Sealer,
    router_token: Option<String>,
    route_push: tokio::sync::Mutex<()>,
    router_floor: AtomicU64,
    /// The last push failed: the monitor pushes again until one succeeds.
    routes_dirty: std::sync::atomic::AtomicBool,
    reserved_ports: Mutex<HashSet<u16>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    activity: Mutex<HashMap<String, String>>,
    pub(crate) health: Mutex<HashMap<String, Health>>,
    watchers: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    users: Mutex<HashMap<String, Option<shim::UserSpec>>>,
    isolation: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Whether berthd runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Engine {
    /// The engine over `state` with `cfg`.
    pub fn new(cfg: Arc<Config>, state: Arc<State>) -> anyhow::Result<Arc<Engine>> {
        let key = cfg
            .secrets_key_file
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("secrets.key"));
        let sealer = Sealer::load_or_create(&key)?;
        let router_token = match &cfg.router.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow!("router.token_file {}: {e}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        cfg.port_range()?;
        let isolation = match cfg.apps.isolation.as_str() {
            "none" => false,
            "auto" => {
                if !is_root() {
                    tracing::warn!(
                        "berthd is not root: apps run as berthd's own user, without cgroups or \
                         the network guard (apps.isolation = \"auto\")"
                    );
                }
                is_root()
            }
            "required" => {
                if !is_root() {
                    anyhow::bail!(
                        "apps.isolation = \"required\" needs berthd to run as root (own users, \
                         cgroups, the network guard)"
                    );
                }
                true
            }
            other => anyhow::bail!("apps.isolation: {other:?} is not auto, required or none"),
        };
        for d in ["bundles", "apps", "run"] {
            std::fs::create_dir_all(cfg.data_dir.join(d))?;
        }
        if isolation {
            use std::os::unix::fs::PermissionsExt;
            // App users traverse these to their own files, and list nothing.
            for d in [
                cfg.data_dir.clone(),
                cfg.data_dir.join("apps"),
                cfg.data_dir.join("run"),
            ] {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))?;
            }
        }
        Ok(Arc::new(Engine {
            cfg,
            state,
            sealer,
            router_token,
            route_push: tokio::sync::Mutex::new(()),
            router_floor: AtomicU64::new(0),
            routes_dirty: std::sync::atomic::AtomicBool::new(false),
            reserved_ports: Mutex::new(HashSet::new()),
            locks: Mutex::new(HashMap::new()),
            activity: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            isolation,
        }))
    }

    /// Whether apps get own users, cgroups and the network guard.
    pub fn isolation_on(&self) -> bool {
        self.isolation
    }

    /// The per-app lock: one change at a time.
    pub(crate) fn lock_of(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .entry(app.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    }

    pub(crate) fn set_activity(&self, app: &str, what: Option<String>) {
        let mut a = self.activity.lock();
        match what {
            Some(w) => {
                a.insert(app.into(), w);
            }
            None => {
                a.remove(app);
            }
        }
    }

    pub(crate) fn activity(&self, app: &str) -> String {
        self.activity.lock().get(app).cloned().unwrap_or_default()
    }

    /// Where an uploaded bundle is kept.
    pub fn bundle_path(&self, sha256: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join("bundles")
            .join(format!("{sha256}.tar"))
    }

    /// The unpacked, read-only files of a version.
    pub fn version_dir(&self, app: &str, version: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join("apps")
            .join(app)
            .join("versions")
            .join(version)
    }

    /// The app's caps from its tenant entry.
    pub fn tenant_limits(&self, app: &str) -> TenantCaps {
        let reg = self.state.registry().borrow().clone();
        let Ok(set) = TenantSet::from_toml_str(&reg.tenants_toml) else {
            return TenantCaps::default();
        };
        match set.get(app) {
            Some(t) => TenantCaps {
                max_processes: Some(t.max_processes),
                max_memory: Some(t.max_memory.as_u64()),
                max_cpu: Some(t.max_cpu),
            },
            None => TenantCaps::default(),
        }
    }

    /// Where the app's stdout/stderr go: the collector, with the app's runtime token.
    pub fn log_target(&self, app: &str) -> Option<shim::LogTarget> {
        if self.cfg.services.log_addr.is_empty() {
            return None;
        }
        let run = self.state.run(app).ok()?;
        let token = self.sealer.open(app, run.runtime_token.as_ref()?).ok()?;
        Some(shim::LogTarget {
            addr: self.cfg.services.log_addr.clone(),
            token,
        })
    }

    /// The app's own user (made when missing, its network guard in place), or None when
    /// isolation is off.
    pub fn app_user(&self, app: &str) -> anyhow::Result<Option<shim::UserSpec>> {
        if !self.isolation {
            return Ok(None);
        }
        if let Some(u) = self.users.lock().get(app) {
            return Ok(*u);
        }
        let u = shim::users::ensure_app_user(app, &self.cfg.apps.user_prefix)
            .map_err(|e| anyhow!("making the system user of {app}: {e}"))?;
        // The guard's rules live in the kernel only (gone after a reboot): set them up
        // whenever this berthd first uses the user.
        let (tcp, udp) = self.service_ports();
        let on_loopback = |ports: &[u16]| -> Vec<std::net::SocketAddr> {
            ports
                .iter()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect()
        };
        shim::netguard::guard_app(u.uid, &on_loopback(&tcp), &on_loopback(&udp))
            .map_err(|e| anyhow!("the network guard of {app}: {e}"))?;
        self.users.lock().insert(app.into(), Some(u));
        Ok(Some(u))
    }

    /// Directory modes: the app's directories belong to root and the app's group, 0750,
    /// so other apps cannot even look in.
    pub(crate) fn secure_dirs(
        &self,
        app: &str,
        user: Option<&shim::UserSpec>,
    ) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Some(u) = user else { return Ok(()) };
        for d in [
            self.cfg.data_dir.join("apps").join(app),
            self.cfg.data_dir.join("run").join(app),
        ] {
            std::fs::create_dir_all(&d)?;
            std::os::unix::fs::chown(&d, Some(0), Some(u.gid))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750))?;
        }
        Ok(())
    }

    /// The ports apps may reach (the network guard's allow list).
    pub fn service_ports(&self) -> (Vec<u16>, Vec<u16>) {
        let s = &self.cfg.services;
        let port_of = |addr: &str| {
            addr.trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
        };
        let mut tcp: Vec<u16> = s
            .cache
            .split(',')
            .filter_map(|a| port_of(a.trim()))
            .collect();
        tcp.extend(port_of(&s.blob_url));
        tcp.push(s.db_port);
        tcp.extend(port_of(&s.log_addr));
        tcp.extend(s.extra_ports.iter().copied());
        tcp.sort_unstable();
        tcp.dedup();
        let udp = s.extra_ports.clone();
        (tcp, udp)
    }

    /// The live release's version.
    pub fn live_version(&self, app: &str) -> Option<String> {
        let run = self.state.run(app).ok()?;
        self.state.release(app, run.live?).ok()?.map(|r| r.version)
    }

    /// The URLs of an app.
    pub fn urls(&self, app: &str) -> Vec<String> {
        self.cfg
            .router
            .public_urls
            .iter()
            .map(|u| u.replace("{app}", app))
            .collect()
    }
}
