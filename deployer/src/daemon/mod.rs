//! `berthd`: the control plane. Today it keeps the apps, their tokens and limits and the
//! audit history, serves them over the gRPC control API (deployer/api/proto), and streams
//! the tenants to every service (`Registry.Watch`). Deploys, the supervisor and the router
//! feed come next (issue 7).

pub mod dashboard;
pub mod deploys;
pub mod engine;
pub mod secrets;
pub mod service;
pub mod state;
pub mod store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use berth_api::v1 as api;
use berth_common::admin::{AdminState, MetricsWriter};
use berth_common::config::{ByteSize, HumanDuration};
use berth_common::shutdown::Shutdown;
use berth_common::tenants::{generate_token, OperatorTokens, Operators};
use clap::{ArgAction, Parser};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// How long calls in flight get to finish after SIGTERM.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// berthd's configuration (TOML; flags override it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The gRPC control API.
    pub listen: String,
    /// The admin endpoint (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: String,
    /// State and bundles.
    pub data_dir: PathBuf,
    /// SHA-256 (hex) of the operator tokens. Empty: berthd makes one at first start and
    /// writes it to `<data_dir>/operator-token` (mode 0600).
    pub operator_tokens: Vec<String>,
    /// SHA-256 (hex) of the tokens Berth services use to read the registry.
    pub service_tokens: Vec<String>,
    /// Log verbosity (0 warnings, 1 info, 2 debug, 3 trace).
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
    /// TLS for the control API: a PEM certificate chain and its private key. Both or
    /// neither; without them the API is plain HTTP/2 (keep it on loopback then).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The key that seals secrets at rest (64 hex digits). Default
    /// `<data_dir>/secrets.key`, made at first start.
    pub secrets_key_file: Option<PathBuf>,
    /// Stop every app instance when berthd stops (the run command). Off by default: apps
    /// keep serving while berthd restarts, and berthd re-adopts them.
    pub stop_apps_on_exit: bool,
    /// How apps run.
    pub apps: AppsConfig,
    /// Where the Berth services are, as apps reach them.
    pub services: ServicesConfig,
    /// The router berthd feeds.
    pub router: RouterConfig,
    /// The database backend berthd provisions apps' databases on (through the query
    /// proxy's provisioning code). Without it, apps that want `db` cannot deploy.
    pub database: Option<DatabaseConfig>,
    /// The web dashboard.
    pub dashboard: dashboard::DashboardConfig,
}

/// `[apps]`: how app instances run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// The Python (with the `berth` package installed) that runs apps; app users must be
    /// able to execute it.
    pub python: String,
    /// The `berth-shim` binary; default: next to berthd.
    pub shim: Option<PathBuf>,
    /// Ports for instances, `FIRST-LAST` on 127.0.0.1.
    pub ports: String,
    /// Apps run as the system user `<prefix><app>` (made on first deploy).
    pub user_prefix: String,
    /// `auto`: own users, cgroups and the network guard when berthd runs as root, else
    /// apps run as berthd's user (said in berthd's log at start); `required`:
    /// refuse to run apps without them; `none`: never.
    pub isolation: String,
    /// Bubblewrap: `auto` (when present and working), `always`, `never`.
    pub sandbox: crate::shim::SandboxMode,
    /// How long a new live release is watched (and the previous one kept warm) before the
    /// previous one stops; failing health checks in it roll back by themselves.
    pub watch_window: HumanDuration,
    /// Instances per release unless `berth scale` says otherwise.
    pub default_scale: u32,
    /// Versions kept per app: the newest by semver, the versions of as many newest
    /// releases, and what runs; older versions' files are removed.
    pub keep_versions: u32,
    /// Largest bundle accepted.
    pub max_bundle_bytes: ByteSize,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            python: "python3".into(),
            shim: None,
            ports: "9300-9799".into(),
            user_prefix: "app-".into(),
            isolation: "auto".into(),
            sandbox: crate::shim::SandboxMode::Auto,
            watch_window: HumanDuration(std::time::Duration::from_secs(60)),
            default_scale: 1,
            keep_versions: 20,
            max_bundle_bytes: ByteSize::mib(256),
        }
    }
}

/// `[services]`: the addresses apps get in their environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// `BERTH_CACHE_SERVERS`.
    pub cache: String,
    /// `BERTH_BLOB_URL`.
    pub blob_url: String,
    /// `BERTH_DB_HOST` / `BERTH_DB_PORT` (the query proxy).
    pub db_host: String,
    pub db_port: u16,
    /// `BERTH_LOG_ADDR` (JSON lines); also where instances' stdout/stderr go.
    pub log_addr: String,
    /// More ports apps may reach on 127.0.0.1 (the network guard allows the ports above
    /// and these: e.g. the collector's syslog 5140 and OTLP 4317).
    pub extra_ports: Vec<u16>,
    /// Admin endpoints of the services that keep an app's data: `berth apps destroy` asks
    /// each to purge it (`DELETE /v1/apps/{app}/data`). Empty: not purged there.
    pub blob_admin_url: String,
    pub logs_admin_url: String,
    /// A file holding a token among those services' `operator_tokens`, for the purge.
    pub admin_token_file: Option<PathBuf>,
    /// The memory of each cache server (its `-m`): every app's `cache_bytes` is a reservation
    /// out of it, so `apps create` and `quota` are refused when the apps' budgets would add
    /// up to more (a cache server refuses such a tenant set as a whole). `0`: not checked.
    pub cache_memory: ByteSize,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            cache: "127.0.0.1:11211".into(),
            blob_url: "http://127.0.0.1:8098".into(),
            db_host: "127.0.0.1".into(),
            db_port: 6033,
            log_addr: "127.0.0.1:5170".into(),
            extra_ports: vec![5140, 4317],
            blob_admin_url: "http://127.0.0.1:9298".into(),
            logs_admin_url: "http://127.0.0.1:9299".into(),
            admin_token_file: None,
            cache_memory: ByteSize(0),
        }
    }
}

/// `[router]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// berth-router's admin API; empty: no router is fed.
    pub admin_url: Option<String>,
    /// A file holding a token among the router's `control_tokens`.
    pub token_file: Option<PathBuf>,
    /// How users reach an app, `{app}` replaced by its name (shown by deploy and status).
    pub public_urls: Vec<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            admin_url: Some("http://127.0.0.1:9280".into()),
            token_file: None,
            public_urls: vec![
                "http://{app}.localhost:8080/".into(),
                "http://127.0.0.1:8080/{app}/".into(),
            ],
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The MariaDB/MySQL backend behind the query proxy.
    pub backend: String,
    /// Its administrator account.
    pub admin_user: String,
    /// A file holding its password (empty file or none: no password).
    pub admin_password_file: Option<PathBuf>,
    /// The query proxy's backend secret (the same file the proxy reads).
    pub backend_secret_file: PathBuf,
    /// Host patterns of the apps' backend accounts (as the proxy's
    /// `backend_account_hosts`).
    pub account_hosts: Vec<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            backend: "127.0.0.1:3306".into(),
            admin_user: "root".into(),
            admin_password_file: None,
            backend_secret_file: PathBuf::from("/var/lib/berth/query-proxy/backend-secret"),
            account_hosts: vec!["%".into(), "localhost".into()],
        }
    }
}

impl Config {
    /// The instance port range.
    pub fn port_range(&self) -> anyhow::Result<(u16, u16)> {
        let (a, b) = self
            .apps
            .ports
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("apps.ports: write FIRST-LAST, e.g. 9300-9799"))?;
        let (a, b): (u16, u16) = (
            a.trim().parse().context("apps.ports")?,
            b.trim().parse().context("apps.ports")?,
        );
        if a == 0 || a > b {
            anyhow::bail!("apps.ports: {a}-{b} is not a range of ports");
        }
        Ok((a, b))
    }

    /// The `berth-shim` to run.
    pub fn shim_path(&self) -> PathBuf {
        if let Some(p) = &self.apps.shim {
            return p.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
            .unwrap_or_else(|| PathBuf::from("berth-shim"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7100".into(),
            admin_listen: "127.0.0.1:9271".into(),
            data_dir: PathBuf::from("/var/lib/berthd"),
            operator_tokens: vec![],
            service_tokens: vec![],
            verbosity: 0,
            log_json: false,
            tls_cert_file: None,
            tls_key_file: None,
            secrets_key_file: None,
            stop_apps_on_exit: false,
            apps: AppsConfig::default(),
            services: ServicesConfig::default(),
            router: RouterConfig::default(),
            database: None,
            dashboard: dashboard::DashboardConfig::default(),
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "Berth's control plane: apps, tokens and limits, deploys and releases, the registry \
every service follows. See docs/ops/berthd.md and docs/deploy/control-api.md."
)]
pub struct Cli {
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC control API address (`listen`, default 127.0.0.1:7100).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin endpoint address: /metrics, /healthz, /readyz (`admin_listen`, default
    /// 127.0.0.1:9271).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// The web dashboard's address (`[dashboard] listen`, default 127.0.0.1:7180; an empty
    /// value: no dashboard).
    #[arg(long, value_name = "ADDR")]
    pub dashboard_listen: Option<String>,
    /// Data directory: state, bundles, apps' files, the operator token (`data_dir`, default
    /// /var/lib/berthd).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Stop every app instance when berthd stops (`stop_apps_on_exit`; scripts/run does this);
    /// without it apps keep serving and a restarted berthd re-adopts them.
    #[arg(long)]
    pub stop_apps_on_exit: bool,
    /// More logging: -v info, -vv debug, -vvv trace (default: warnings; RUST_LOG overrides).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The configuration: the file's, then the flags.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut cfg: Config = berth_common::config::load_toml(self.config.as_deref())?;
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.admin_listen {
            cfg.admin_listen = v;
        }
        if let Some(v) = self.dashboard_listen {
            cfg.dashboard.listen = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        cfg.verbosity = cfg.verbosity.max(self.verbose);
        cfg.stop_apps_on_exit |= self.stop_apps_on_exit;
        OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
            .map_err(|e| anyhow::anyhow!("operator_tokens: {e}"))?;
        OperatorTokens::from_hex_hashes(&cfg.service_tokens)
            .map_err(|e| anyhow::anyhow!("service_tokens: {e}"))?;
        Ok(cfg)
    }
}

/// The operator tokens: the configured hashes, or the bootstrap token in the data dir
/// (made on first start).
fn operator_tokens(cfg: &Config) -> anyhow::Result<OperatorTokens> {
    if !cfg.operator_tokens.is_empty() {
        return OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
            .map_err(|e| anyhow::anyhow!("operator_tokens: {e}"));
    }
    let path = cfg.data_dir.join("operator-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_secret(&path, &token)?;
            tracing::warn!(
                path = %path.display(),
                "no operator_tokens configured: made an operator token; keep it safe"
            );
            token
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(OperatorTokens::from_tokens(&[token]))
}

pub(crate) fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(format!("{secret}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Binds, prints the `LISTEN` lines, serves until SIGTERM/SIGINT.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let mut cfg = cfg;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    // Absolute: instances' specs, sandboxes and secrets files name paths under it.
    cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)
        .with_context(|| format!("resolving {}", cfg.data_dir.display()))?;
    let state = state::State::open(&cfg.data_dir.join("state.redb"))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening {}", cfg.data_dir.join("state.redb").display()))?;
    state.set_cache_memory(cfg.services.cache_memory.0);
    let operators = operator_tokens(&cfg)?;
    state
        .set_operators(operators.hex_hashes())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("publishing the operator tokens to the registry")?;
    let services = OperatorTokens::from_hex_hashes(&cfg.service_tokens)
        .map_err(|e| anyhow::anyhow!("service_tokens: {e}"))?;
    let grpc = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding the control API on {}", cfg.listen))?;
    let admin = TcpListener::bind(&cfg.admin_listen)
        .await
        .with_context(|| format!("binding the admin endpoint on {}", cfg.admin_listen))?;
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTEN grpc {}", grpc.local_addr()?)?;
        writeln!(out, "LISTEN admin {}", admin.local_addr()?)?;
        out.flush()?;
    }
    let cfg = Arc::new(cfg);
    let engine = engine::Engine::new(cfg.clone(), state.clone())?;
    engine.adopt().await?;
    let monitor = tokio::spawn(engine.clone().monitor());
    let control = service::Control::new(
        state.clone(),
        engine.clone(),
        operators,
        services,
        shutdown.signal(),
    );
    let dashboard = dashboard::start(cfg.clone(), control.clone(), shutdown.signal()).await?;
    let metrics_state = state.clone();
    let admin_state = AdminState {
        metrics: Arc::new(move |out: &mut String| {
            let mut w = MetricsWriter::new(out);
            let apps = metrics_state.apps().map(|a| a.len()).unwrap_or(0);
            w.gauge("berthd_apps", "Apps registered.", apps as f64);
            w.gauge(
                "berthd_registry_generation",
                "Generation of the tenants state streamed to services.",
                metrics_state.registry().borrow().generation as f64,
            );
        }),
        ready: Arc::new(AtomicBool::new(true)),
        operators: Arc::new(Operators::default()),
    };
    let admin_task = tokio::spawn(berth_common::admin::serve(
        admin,
        admin_state,
        shutdown.signal(),
    ));
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "berthd ready");
    let mut stop = shutdown.signal();
    let mut builder = tonic::transport::Server::builder();
    match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .context("tls_cert_file / tls_key_file")?;
        }
        (None, None) => {}
        _ => anyhow::bail!("tls_cert_file and tls_key_file go together: set both or neither"),
    }
    let server = builder
        .add_service(api::apps_server::AppsServer::new(control.clone()))
        .add_service(api::tokens_server::TokensServer::new(control.clone()))
        .add_service(api::registry_server::RegistryServer::new(control.clone()))
        .add_service(api::events_server::EventsServer::new(control.clone()))
        .add_service(api::deploys_server::DeploysServer::new(control.clone()))
        .add_service(api::config_server::ConfigServer::new(control))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            async move { stop.recv().await },
        );
    // Calls in flight get DRAIN to finish; idle client connections that a client keeps
    // open must not hold the shutdown up.
    let mut deadline = shutdown.signal();
    tokio::select! {
        res = server => res.context("serving the control API")?,
        _ = async { deadline.recv().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("control API connections still open after {DRAIN:?}; closing them");
        }
    }
    let _ = admin_task.await;
    if let Some(d) = dashboard {
        let _ = d.await;
    }
    monitor.abort();
    if cfg.stop_apps_on_exit {
        tracing::info!("stopping every app instance (stop_apps_on_exit)");
        engine.stop_everything().await;
    } else {
        tracing::info!("app instances keep running; berthd re-adopts them when it starts");
    }
    tracing::info!("berthd stopped");
    Ok(())
}
