//! The server: listeners, the per-app state every connection shares, tenants reloads and the
//! background maintenance of the store. One tokio task per connection ([`conn`]) parses
//! requests and executes them synchronously against the caller's namespace ([`classic`],
//! [`meta`]); [`stats`] renders `stats` replies and Prometheus metrics.

mod classic;
mod conn;
pub mod counters;
mod meta;
mod registry;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_common::admin::{self, AdminState};
use berth_common::listener::{self, ConnCounters, ServeOptions};
use berth_common::shutdown::{Shutdown, ShutdownSignal};
use berth_common::tenants::{OperatorTokens, Operators, TenantSet, TenantsHandle};
use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, UnixListener};

use crate::clock::Clock;
use crate::config::Config;
use crate::protocol::Limits;
use crate::store::{BudgetError, Namespace, NamespaceStats, Store, StoreConfig};
use counters::Counters;
pub use registry::ConnRegistry;

/// The reply memcached sends to a connection over the limit before closing it.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// One namespace as the server sees it: the store's namespace plus its counters.
#[derive(Debug)]
pub struct App {
    /// App name; empty for the anonymous namespace.
    pub name: String,
    /// The app's items.
    pub ns: Arc<Namespace>,
    /// Command counters (`stats`).
    pub counters: Counters,
    /// Open authenticated connections.
    pub conns: AtomicU64,
    /// Connections ever authenticated.
    pub total_conns: AtomicU64,
    /// Most simultaneous connections (the tenant's `max_connections`; unlimited if 0).
    pub max_conns: AtomicU64,
    /// The store's cumulative figures at the last `stats reset`.
    reset_base: Mutex<NamespaceStats>,
}

impl App {
    fn new(name: &str, ns: Arc<Namespace>, max_conns: u64) -> Arc<App> {
        Arc::new(App {
            name: name.to_string(),
            ns,
            counters: Counters::default(),
            conns: AtomicU64::new(0),
            total_conns: AtomicU64::new(0),
            max_conns: AtomicU64::new(max_conns),
            reset_base: Mutex::new(NamespaceStats::default()),
        })
    }

    /// The namespace's figures as `stats` shows them: cumulative ones count from the last
    /// `stats reset`, as memcached's do.
    pub fn stats(&self) -> NamespaceStats {
        let mut s = self.ns.stats();
        let base = self.reset_base.lock();
        s.total_items = s.total_items.saturating_sub(base.total_items);
        s.evictions = s.evictions.saturating_sub(base.evictions);
        s.evicted_unfetched = s.evicted_unfetched.saturating_sub(base.evicted_unfetched);
        s.expired_unfetched = s.expired_unfetched.saturating_sub(base.expired_unfetched);
        s.reclaimed = s.reclaimed.saturating_sub(base.reclaimed);
        s.expired = s.expired.saturating_sub(base.expired);
        s.flushed = s.flushed.saturating_sub(base.flushed);
        s.compactions = s.compactions.saturating_sub(base.compactions);
        s
    }

    /// `stats reset`: command counters to zero, cumulative store figures from now on.
    pub fn reset_stats(&self) {
        self.counters.reset();
        *self.reset_base.lock() = self.ns.stats();
    }
}

/// Per-prefix counters of `stats detail` (memcached `-D`), kept only while detail is on.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrefixStats {
    pub get: u64,
    pub hit: u64,
    pub set: u64,
    pub del: u64,
}

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub cfg: Config,
    pub store: Arc<Store>,
    pub clock: Clock,
    pub limits: Limits,
    /// None: anonymous mode, one namespace for every connection.
    pub tenants: Option<TenantsHandle>,
    pub operators: Arc<Operators>,
    apps: RwLock<HashMap<String, Arc<App>>>,
    /// The anonymous namespace (anonymous mode only).
    pub anonymous: Option<Arc<App>>,
    pub conn_counters: Arc<ConnCounters>,
    pub registry: ConnRegistry,
    pub verbosity: AtomicU32,
    pub shutdown: Shutdown,
    /// `stats detail on`: per-prefix counters.
    pub detail: Mutex<Option<HashMap<Vec<u8>, PrefixStats>>>,
    pub detail_on: AtomicBool,
    /// Counts of requests that were refused before any namespace was known.
    pub unauth: Counters,
    pub ready: Arc<AtomicBool>,
}

impl Shared {
    /// Build the shared state from a validated config and the tenants (None: anonymous).
    pub fn new(
        cfg: Config,
        tenants: Option<TenantSet>,
        shutdown: Shutdown,
    ) -> anyhow::Result<Arc<Shared>> {
        Self::with_clock(cfg, tenants, shutdown, Clock::new())
    }

    /// [`Shared::new`] with a given clock (tests freeze it).
    pub fn with_clock(
        cfg: Config,
        tenants: Option<TenantSet>,
        shutdown: Shutdown,
        clock: Clock,
    ) -> anyhow::Result<Arc<Shared>> {
        let store = Store::new(StoreConfig {
            max_bytes: cfg.memory_limit.0,
            item_size_max: cfg.item_size_max.0 as usize,
            evict: !cfg.disable_evictions,
            use_cas: !cfg.disable_cas,
            shards: cfg.store_shards,
            ..StoreConfig::default()
        });
        let limits = Limits {
            max_key_len: 250,
            item_size_max: cfg.item_size_max.0 as usize,
            max_line_len: cfg.max_line_len.0 as usize,
        };
        let configured = OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
            .context("operator_tokens must be SHA-256 hashes in hex")?;
        let handle = tenants
            .as_ref()
            .map(|_| TenantsHandle::new(TenantSet::empty()));
        // The configured operator tokens, and those that come with the tenants (berthd's).
        let operators = Arc::new(match &handle {
            Some(h) => Operators::following(configured, h.clone()),
            None => Operators::fixed(configured),
        });
        let anonymous = match &tenants {
            None => {
                let ns = store
                    .ensure_namespace("", cfg.memory_limit.0)
                    .context("creating the anonymous namespace")?;
                Some(App::new("", ns, 0))
            }
            Some(_) => None,
        };
        let shared = Arc::new(Shared {
            verbosity: AtomicU32::new(u32::from(cfg.verbosity)),
            store,
            clock,
            limits,
            tenants: handle,
            operators,
            apps: RwLock::new(HashMap::new()),
            anonymous,
            conn_counters: Arc::new(ConnCounters::default()),
            registry: ConnRegistry::default(),
            shutdown,
            detail: Mutex::new(None),
            detail_on: AtomicBool::new(false),
            unauth: Counters::default(),
            ready: Arc::new(AtomicBool::new(false)),
            cfg,
        });
        if let Some(set) = tenants {
            shared
                .apply_tenants(set)
                .map_err(|e| anyhow::anyhow!("tenants: {e}"))?;
        }
        Ok(shared)
    }

    /// The budgets a tenants set asks for.
    fn budgets(&self, set: &TenantSet) -> Vec<(String, u64)> {
        cache_budgets(set, self.store.config().max_bytes)
    }

    /// Check a tenants set against the memory limit without applying it.
    pub fn check_tenants(&self, set: &TenantSet) -> Result<(), BudgetError> {
        self.store.check_budgets(&self.budgets(set))
    }

    /// Make `set` current: resize or create namespaces, drop removed apps (their connections
    /// close when they notice their token is gone).
    pub fn apply_tenants(&self, set: TenantSet) -> Result<(), BudgetError> {
        let Some(handle) = &self.tenants else {
            return Ok(());
        };
        self.sync_apps(&set)?;
        handle.replace(set);
        Ok(())
    }

    /// The state of app `name`, if it is a current tenant.
    pub fn app(&self, name: &str) -> Option<Arc<App>> {
        self.apps.read().get(name).cloned()
    }

    /// Every namespace the server serves, anonymous included.
    pub fn all_apps(&self) -> Vec<Arc<App>> {
        let mut v: Vec<Arc<App>> = self.apps.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.extend(self.anonymous.iter().cloned());
        v
    }
}

/// Each app's cache budget: its `cache_bytes`, or for a memcached authfile (which carries no
/// limits) an even share of `max_bytes`, so `-Y` works with any number of users as it does in
/// memcached.
pub fn cache_budgets(set: &TenantSet, max_bytes: u64) -> Vec<(String, u64)> {
    let share = max_bytes / (set.len().max(1) as u64);
    set.iter()
        .map(|t| {
            let budget = if set.is_authfile() {
                share
            } else {
                t.cache_bytes.0
            };
            (t.name.as_str().to_string(), budget)
        })
        .collect()
}

/// The sockets a server was given, bound before privileges are dropped.
#[derive(Debug)]
pub struct Bound {
    pub tcp: Vec<TcpListener>,
    pub unix: Option<UnixListener>,
    pub admin: TcpListener,
}

impl Bound {
    /// Bind every listener of `cfg`.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let mut tcp = Vec::new();
        let mut unix = None;
        if let Some(path) = &cfg.unix_socket {
            unix = Some(bind_unix(path, &cfg.unix_mask)?);
        } else {
            for addr in &cfg.listen {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                tcp.push(l);
            }
        }
        let admin = TcpListener::bind(&cfg.admin_listen)
            .await
            .with_context(|| format!("cannot listen on admin address {}", cfg.admin_listen))?;
        Ok(Bound { tcp, unix, admin })
    }

    /// Bound TCP addresses of the memcached port.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }
}

fn bind_unix(path: &std::path::Path, mask: &str) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        // A stale socket from an earlier run; a live server would still hold it, but memcached
        // removes it unconditionally too.
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    let mode = u32::from_str_radix(mask.trim_start_matches("0o"), 8).unwrap_or(0o700);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mask} on {}", path.display()))?;
    Ok(l)
}

/// Serve until `shutdown` fires (SIGTERM, SIGINT or the `shutdown` command), then drain.
pub async fn run(bound: Bound, shared: Arc<Shared>) -> anyhow::Result<()> {
    let shutdown = shared.shutdown.signal();
    let opts = || ServeOptions {
        max_connections: shared.cfg.max_connections,
        drain_timeout: shared.cfg.drain_timeout.0,
        reject_message: Some(TOO_MANY_CONNECTIONS),
    };
    let mut tasks = tokio::task::JoinSet::new();
    // One permit pool across all listeners, as memcached's -c counts every connection.
    let permits = Arc::new(tokio::sync::Semaphore::new(shared.cfg.max_connections));
    for l in bound.tcp {
        let s = shared.clone();
        tasks.spawn(listener::serve_with_permits(
            l,
            opts(),
            permits.clone(),
            shared.conn_counters.clone(),
            shutdown.clone(),
            move |stream, peer, sd| conn::serve(s.clone(), stream, peer, sd),
        ));
    }
    if let Some(l) = bound.unix {
        let s = shared.clone();
        tasks.spawn(listener::serve_with_permits(
            l,
            opts(),
            permits.clone(),
            shared.conn_counters.clone(),
            shutdown.clone(),
            move |stream, peer, sd| conn::serve(s.clone(), stream, peer, sd),
        ));
    }
    let admin_state = AdminState {
        metrics: {
            let s = shared.clone();
            Arc::new(move |out: &mut String| stats::metrics(&s, out))
        },
        ready: shared.ready.clone(),
        operators: shared.operators.clone(),
    };
    tasks.spawn(async move {
        let sd = shutdown.clone();
        if let Err(e) = admin::serve(bound.admin, admin_state, sd).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    tasks.spawn(maintenance(shared.clone(), shared.shutdown.signal()));
    if let (Some(handle), Ok(Some(source))) = (&shared.tenants, shared.cfg.tenants_source()) {
        spawn_reload(&mut tasks, shared.clone(), handle.clone(), source);
    }
    shared.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        memory_limit = shared.cfg.memory_limit.0,
        tenants = shared.tenants.as_ref().map_or(0, |t| t.current().len()),
        "cache-server ready"
    );
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            if e.is_panic() {
                anyhow::bail!("a server task panicked: {e}");
            }
        }
    }
    Ok(())
}

fn spawn_reload(
    tasks: &mut tokio::task::JoinSet<()>,
    shared: Arc<Shared>,
    handle: TenantsHandle,
    source: berth_common::tenants::registry::TenantsSource,
) {
    // The common reloader validates and swaps the set; we then resize namespaces to match.
    let validator = {
        let s = shared.clone();
        move |set: &TenantSet| s.check_tenants(set).map_err(|e| e.to_string())
    };
    let mut rx = handle.subscribe();
    let reload = source.watch(handle.clone(), validator, shared.shutdown.signal());
    tasks.spawn(async move {
        let _ = reload.await;
    });
    let mut sd = shared.shutdown.signal();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = sd.recv() => return,
                changed = rx.changed() => {
                    if changed.is_err() { return; }
                    let set = handle.current();
                    if let Err(e) = shared.sync_apps(&set) {
                        tracing::error!(error = %e, "tenants reload could not be applied to the store");
                    }
                }
            }
        }
    });
}

impl Shared {
    /// Bring namespaces and app states in line with `set`.
    fn sync_apps(&self, set: &TenantSet) -> Result<(), BudgetError> {
        self.store.apply_budgets(&self.budgets(set))?;
        let mut apps = self.apps.write();
        apps.retain(|name, _| set.get(name).is_some());
        for t in set.iter() {
            let max = u64::from(t.max_connections);
            if let Some(app) = apps.get(t.name.as_str()) {
                app.max_conns.store(max, Ordering::Relaxed);
            } else if let Some(ns) = self.store.namespace(t.name.as_str()) {
                apps.insert(
                    t.name.as_str().to_string(),
                    App::new(t.name.as_str(), ns, max),
                );
            }
        }
        Ok(())
    }
}

/// Once a second: let the store free expired and dead segments.
async fn maintenance(shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {
                let store = shared.store.clone();
                let now = shared.clock.now();
                // Bounded work, but still off the async workers.
                let _ = tokio::task::spawn_blocking(move || store.maintain(now)).await;
            }
        }
    }
}
