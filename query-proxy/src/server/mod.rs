//! The `query-proxy` server: listeners, the state every connection shares (tenants, per-app
//! connection counts, database sizes), and the background tasks (SIGHUP reload, size checks).
//! [`conn`] logs each client in and relays its session; [`errors`] is the one place that maps
//! the proxy's decisions to MySQL error packets.

mod conn;
mod errors;
mod limits;
mod tls;
mod workers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_common::admin::{self, AdminState, MetricsWriter};
use berth_common::listener::{self, ConnCounters, ServeOptions};
use berth_common::shutdown::Shutdown;
use berth_common::tenants::{AppName, OperatorTokens, Operators, Tenant, TenantSet, TenantsHandle};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::provision::AdminAccess;
use crate::secret::BackendSecret;

pub use limits::AppSlot;

/// Server-wide counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub commands: AtomicU64,
    pub refusals: AtomicU64,
    pub results_aborted: AtomicU64,
    pub queries_killed: AtomicU64,
    pub backend_errors: AtomicU64,
}

/// What every connection shares.
pub struct Shared {
    pub cfg: Config,
    pub tenants: TenantsHandle,
    /// True when serving the development app (no tenants file).
    pub dev_mode: bool,
    pub secret: BackendSecret,
    pub admin: AdminAccess,
    pub server_version: String,
    pub counters: Counters,
    /// TLS for clients, when a certificate is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub conn_counters: Arc<ConnCounters>,
    next_conn_id: AtomicU32,
    /// Open sessions per app (database name).
    open: Mutex<HashMap<String, u32>>,
    /// Last measured size of each app database, in bytes.
    db_sizes: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("listen", &self.cfg.listen)
            .field("backend", &self.cfg.backend)
            .field("dev_mode", &self.dev_mode)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The tenant `name`, if it exists now.
    pub fn tenant(&self, name: &str) -> Option<Tenant> {
        self.tenants.current().get(name).cloned()
    }

    /// A fresh connection id for a client.
    pub fn next_connection_id(&self) -> u32 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the app's database is past its `db_bytes`: (used, limit) when it is.
    pub fn over_quota(&self, tenant: &Tenant) -> Option<(u64, u64)> {
        let used = *self
            .db_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tenant.name.mysql_ident())?;
        (used > tenant.db_bytes.0).then_some((used, tenant.db_bytes.0))
    }
}

/// The dev-mode tenant set: one app with the configured token.
pub fn dev_tenants(cfg: &Config) -> anyhow::Result<TenantSet> {
    let text = format!(
        "[[app]]\nname = {:?}\ntoken = {:?}\n",
        cfg.dev_app, cfg.dev_token
    );
    TenantSet::from_toml_str(&text).context("the development app (dev_app, dev_token)")
}

/// Sockets bound before anything else happens (so LISTEN lines can be printed).
pub struct Bound {
    pub mysql: TcpListener,
    pub admin: TcpListener,
}

impl Bound {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let mysql = TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let admin = TcpListener::bind(&cfg.admin_listen)
            .await
            .with_context(|| format!("binding the admin address {}", cfg.admin_listen))?;
        Ok(Bound { mysql, admin })
    }
}

/// Builds the shared state.
pub fn shared(
    cfg: Config,
    tenants: TenantSet,
    dev_mode: bool,
    secret: BackendSecret,
    server_version: String,
) -> anyhow::Result<Arc<Shared>> {
    let admin = AdminAccess {
        addr: cfg.backend.clone(),
        user: cfg.backend_admin_user.clone(),
        password: cfg.admin_password()?,
        timeout: cfg.backend_connect_timeout.0,
    };
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    Ok(Arc::new(Shared {
        tls,
        tenants: TenantsHandle::new(tenants),
        dev_mode,
        secret,
        admin,
        server_version,
        counters: Counters::default(),
        conn_counters: Arc::new(ConnCounters::default()),
        next_conn_id: AtomicU32::new(1),
        open: Mutex::new(HashMap::new()),
        db_sizes: Mutex::new(HashMap::new()),
        cfg,
    }))
}

/// Serves until `shutdown`.
pub async fn run(bound: Bound, shared: Arc<Shared>, shutdown: Shutdown) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(true));
    let configured = OperatorTokens::from_hex_hashes(&shared.cfg.operator_tokens)
        .context("operator_tokens must be SHA-256 hashes in hex")?;
    // The configured operator tokens, and those that come with the tenants (berthd's).
    let operators = Arc::new(Operators::following(configured, shared.tenants.clone()));
    let state = AdminState {
        metrics: {
            let s = shared.clone();
            Arc::new(move |out: &mut String| metrics(&s, out))
        },
        ready: ready.clone(),
        operators,
    };
    let admin_task = tokio::spawn(admin::serve(bound.admin, state, shutdown.signal()));
    let sizes = tokio::spawn(limits::measure_db_sizes(shared.clone(), shutdown.signal()));
    if let (Ok(Some(source)), false) = (shared.cfg.tenants_source(), shared.dev_mode) {
        source.watch(shared.tenants.clone(), |_| Ok(()), shutdown.signal());
    }
    let opts = ServeOptions {
        max_connections: shared.cfg.max_connections,
        drain_timeout: shared.cfg.drain_timeout.0,
        reject_message: None,
    };
    let workers = Arc::new(
        workers::Workers::start(shared.cfg.worker_threads())
            .context("starting the worker threads")?,
    );
    let s = shared.clone();
    listener::serve(
        bound.mysql,
        opts,
        shared.conn_counters.clone(),
        shutdown.signal(),
        move |stream, peer, sd| {
            let (s, workers) = (s.clone(), workers.clone());
            async move {
                workers
                    .run(stream, move |stream| conn::handle(stream, peer, s, sd))
                    .await;
            }
        },
    )
    .await;
    ready.store(false, Ordering::Relaxed);
    let _ = sizes.await;
    match admin_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("admin endpoint"),
        Err(e) => Err(e).context("admin task"),
    }
}

/// Provisions every app of the dev-mode set (so `mysql -udev -pdev` works out of the box).
pub async fn provision_dev(shared: &Shared) -> anyhow::Result<()> {
    for t in shared.tenants.current().iter() {
        crate::provision::provision(
            &shared.admin,
            &shared.secret,
            &t.name,
            &shared.cfg.backend_account_hosts,
        )
        .await
        .with_context(|| format!("provisioning the development app {}", t.name))?;
    }
    Ok(())
}

fn metrics(shared: &Shared, out: &mut String) {
    let mut w = MetricsWriter::new(out);
    shared.conn_counters.write_metrics(&mut w, "query_proxy");
    let c = &shared.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    w.counter(
        "query_proxy_logins_total",
        "Successful client logins.",
        load(&c.logins),
    );
    w.counter(
        "query_proxy_login_failures_total",
        "Refused client logins.",
        load(&c.login_failures),
    );
    w.counter(
        "query_proxy_commands_total",
        "Client commands handled.",
        load(&c.commands),
    );
    w.counter(
        "query_proxy_refusals_total",
        "Statements and commands refused by the policy or a limit.",
        load(&c.refusals),
    );
    w.counter(
        "query_proxy_results_aborted_total",
        "Results cut off at max_result_bytes.",
        load(&c.results_aborted),
    );
    w.counter(
        "query_proxy_queries_killed_total",
        "Queries killed past statement_timeout.",
        load(&c.queries_killed),
    );
    w.counter(
        "query_proxy_backend_errors_total",
        "Backend logins or sessions that failed.",
        load(&c.backend_errors),
    );
    let open = shared.open.lock().unwrap_or_else(|e| e.into_inner());
    w.family(
        "query_proxy_app_connections",
        "Open sessions per app.",
        berth_common::admin::MetricKind::Gauge,
    );
    for (db, n) in open.iter() {
        w.sample_u64(
            "query_proxy_app_connections",
            &[("database", db)],
            u64::from(*n),
        );
    }
    drop(open);
    let sizes = shared.db_sizes.lock().unwrap_or_else(|e| e.into_inner());
    w.family(
        "query_proxy_app_db_bytes",
        "Size of each app database (data and indexes), as last measured for db_bytes.",
        berth_common::admin::MetricKind::Gauge,
    );
    let mut sizes: Vec<(&String, &u64)> = sizes.iter().collect();
    sizes.sort();
    for (db, bytes) in sizes {
        w.sample_u64("query_proxy_app_db_bytes", &[("database", db)], *bytes);
    }
}

/// Parses an app name for the operator commands.
pub fn app_name(name: &str) -> anyhow::Result<AppName> {
    AppName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}
