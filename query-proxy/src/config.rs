//! Configuration: a TOML file (`--config`) overlaid with command-line flags. Secrets (the
//! backend secret, the admin password) come from files or the environment, never flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::config::{ByteSize, HumanDuration};
use clap::{ArgAction, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::secret::BackendSecret;

/// Environment variable holding the backend secret (wins over `backend_secret_file`).
pub const SECRET_ENV: &str = "BERTH_QUERY_BACKEND_SECRET";
/// Environment variable holding the backend admin password (wins over the file).
pub const ADMIN_PASSWORD_ENV: &str = "BERTH_QUERY_ADMIN_PASSWORD";

/// Everything `query-proxy` can be told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address apps connect to (MySQL protocol).
    pub listen: String,
    /// Admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: String,
    /// The MariaDB/MySQL backend: `host:port`, or the path of its Unix socket (for example
    /// `/run/mysqld/mysqld.sock`; cheaper per query than loopback TCP on the same host).
    pub backend: String,
    /// Backend account that provisions databases, kills runaway queries and measures
    /// database sizes.
    pub backend_admin_user: String,
    /// File holding that account's password (or set BERTH_QUERY_ADMIN_PASSWORD); none: empty.
    pub backend_admin_password_file: Option<PathBuf>,
    /// File holding the backend secret that app passwords are derived from (or set
    /// BERTH_QUERY_BACKEND_SECRET). Without either, `<data_dir>/backend-secret` is used and
    /// created on first start.
    pub backend_secret_file: Option<PathBuf>,
    /// Hosts each app account is created for.
    pub backend_account_hosts: Vec<String>,
    /// Tenants file (TOML, see ARCHITECTURE.md); reloaded on SIGHUP. Without one, the proxy
    /// serves the single development app `dev_app`.
    pub tenants: Option<PathBuf>,
    /// berthd's control API to follow for tenants instead of a file; the last state is kept
    /// in the data directory (`registry-tenants.toml`).
    pub registry: Option<String>,
    /// File holding the berthd service token for `registry`.
    pub registry_token_file: Option<PathBuf>,
    /// State directory (the generated backend secret lives here).
    pub data_dir: Option<PathBuf>,
    /// Development app served when no tenants file is given (provisioned at startup).
    pub dev_app: String,
    /// Its token (development only).
    pub dev_token: String,
    /// SHA-256 hashes (hex) of operator tokens accepted by `/metrics`.
    pub operator_tokens: Vec<String>,
    /// TLS certificate chain (PEM) for clients that ask for TLS; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse logins without TLS.
    pub require_tls: bool,
    /// Client connections at once, all apps together (each app also has `max_connections`).
    pub max_connections: usize,
    /// Largest command packet accepted from a client (a statement and its data).
    pub max_packet: ByteSize,
    /// Longest a client may take to log in.
    pub login_timeout: HumanDuration,
    /// Longest a backend login may take.
    pub backend_connect_timeout: HumanDuration,
    /// How often each app's database size is measured (for `db_bytes`).
    pub db_size_interval: HumanDuration,
    /// Extra time past `statement_timeout` before the proxy kills a query itself.
    pub kill_grace: HumanDuration,
    /// Version string shown to clients; empty: the backend's, probed at startup.
    pub server_version: String,
    /// How long connections get to finish after SIGTERM.
    pub drain_timeout: HumanDuration,
    /// Worker threads, each serving its share of the connections on a single-threaded
    /// runtime; 0: one per two CPUs (at least one).
    pub threads: usize,
    /// Log verbosity (0 info, 1 debug, 2 trace).
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6033".into(),
            admin_listen: "127.0.0.1:9233".into(),
            backend: "127.0.0.1:3306".into(),
            backend_admin_user: "root".into(),
            backend_admin_password_file: None,
            backend_secret_file: None,
            backend_account_hosts: vec!["%".into(), "localhost".into()],
            tenants: None,
            registry: None,
            registry_token_file: None,
            data_dir: None,
            dev_app: "dev".into(),
            dev_token: "dev".into(),
            operator_tokens: Vec::new(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_connections: 4096,
            max_packet: ByteSize(64 << 20),
            login_timeout: HumanDuration(Duration::from_secs(10)),
            backend_connect_timeout: HumanDuration(Duration::from_secs(10)),
            db_size_interval: HumanDuration(Duration::from_secs(10)),
            kill_grace: HumanDuration(Duration::from_secs(1)),
            server_version: String::new(),
            drain_timeout: HumanDuration(Duration::from_secs(10)),
            threads: 0,
            verbosity: 0,
            log_json: false,
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "query-proxy",
    version,
    about = "Berth's permission-filtering MySQL proxy",
    long_about = "Berth's permission-filtering MySQL proxy. Apps log in with their name and \
token; the proxy logs in to MariaDB as the app's own account and forwards only statements the \
policy allows. See docs/protocols/query.md and docs/ops/query-proxy.md."
)]
pub struct Cli {
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check the configuration (and tenants file) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// MySQL protocol address (default 127.0.0.1:6033; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin HTTP address (default 127.0.0.1:9233).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Backend `host:port` or Unix socket path (default 127.0.0.1:3306).
    #[arg(long, value_name = "ADDR", global = true)]
    pub backend: Option<String>,
    /// Tenants file (TOML); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Follow berthd's registry for tenants (e.g. http://127.0.0.1:7100) instead of a file.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// File holding the berthd service token for --registry.
    #[arg(long = "registry-token", value_name = "FILE")]
    pub registry_token_file: Option<PathBuf>,
    /// State directory.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// More logging (-v debug, -vv trace).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Option<Action>,
}

/// Operator commands besides serving.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create (or repair) APP's database and backend account; idempotent.
    Provision {
        /// The app's name.
        app: String,
    },
    /// Remove APP's backend account and database (its data included); idempotent.
    Deprovision {
        /// The app's name.
        app: String,
    },
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] berth_common::config::ConfigError),
    #[error("{0}")]
    Invalid(String),
}

impl Cli {
    /// The file's config with the flags applied.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut cfg: Config = berth_common::config::load_toml(self.config.as_deref())?;
        if let Some(v) = &self.listen {
            cfg.listen = v.clone();
        }
        if let Some(v) = &self.admin_listen {
            cfg.admin_listen = v.clone();
        }
        if let Some(v) = &self.backend {
            cfg.backend = v.clone();
        }
        if let Some(v) = &self.tenants {
            cfg.tenants = Some(v.clone());
        }
        if let Some(v) = &self.registry {
            cfg.registry = Some(v.clone());
        }
        if let Some(v) = &self.registry_token_file {
            cfg.registry_token_file = Some(v.clone());
        }
        if let Some(v) = &self.data_dir {
            cfg.data_dir = Some(v.clone());
        }
        cfg.verbosity = cfg.verbosity.max(self.verbose);
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// The worker threads to run: `threads`, or for 0 one per two CPUs (at least one).
    ///
    /// Half, not all, as for berth-router: the proxy shares its host with the backend and the
    /// apps, and a second worker on a busy two-CPU host mostly adds sleeps and wake-ups. On
    /// the query benchmark (2 CPUs, sysbench and MariaDB on the same host) one worker cost
    /// about 46 us of CPU per point select against 52 us for two, at the same throughput.
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cpus / 2).max(1)
    }

    /// Where tenants come from: the tenants file, berthd's registry, or none (the
    /// development app). The registry's last state is kept in the data directory.
    pub fn tenants_source(
        &self,
    ) -> Result<Option<berth_common::tenants::registry::TenantsSource>, String> {
        berth_common::tenants::registry::TenantsSource::from_flags(
            self.tenants.as_deref(),
            self.registry.as_deref(),
            self.registry_token_file.as_deref(),
            self.data_dir
                .as_ref()
                .map(|d| d.join("registry-tenants.toml")),
        )
    }

    /// Refuses values the proxy cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_packet.0 < 1024 || self.max_packet.0 > 1 << 30 {
            return Err(ConfigError::Invalid(
                "max_packet must be between 1KiB and 1GiB".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        if self.require_tls && self.tls_cert.is_none() {
            return Err(ConfigError::Invalid(
                "require_tls needs tls_cert and tls_key".into(),
            ));
        }
        let socket = crate::backend::socket_path(&self.backend);
        let well_formed = match socket {
            Some(path) => path.starts_with('/'),
            None => self.backend.contains(':'),
        };
        if !well_formed {
            return Err(ConfigError::Invalid(format!(
                "backend: {:?} is neither host:port nor an absolute socket path",
                self.backend
            )));
        }
        // The backend sees socket logins as coming from `localhost`.
        if socket.is_some() && !self.backend_account_hosts.iter().any(|h| h == "localhost") {
            return Err(ConfigError::Invalid(
                "a socket backend needs \"localhost\" in backend_account_hosts".into(),
            ));
        }
        if self.backend_account_hosts.is_empty() {
            return Err(ConfigError::Invalid(
                "backend_account_hosts must name at least one host".into(),
            ));
        }
        for h in &self.backend_account_hosts {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_%:".contains(&b))
            {
                return Err(ConfigError::Invalid(format!(
                    "backend_account_hosts: {h:?} is not a host pattern"
                )));
            }
        }
        if self.tenants.is_none() && self.registry.is_none() {
            berth_common::tenants::AppName::parse(&self.dev_app)
                .map_err(|e| ConfigError::Invalid(format!("dev_app: {e}")))?;
        }
        Ok(())
    }

    /// The backend admin password: BERTH_QUERY_ADMIN_PASSWORD, the file, systemd's
    /// `admin-password` credential, or empty.
    pub fn admin_password(&self) -> Result<String, ConfigError> {
        if let Ok(v) = std::env::var(ADMIN_PASSWORD_ENV) {
            return Ok(v);
        }
        match self
            .backend_admin_password_file
            .clone()
            .or_else(|| credential("admin-password"))
        {
            Some(p) => read_secret_file(&p).map(|s| s.trim_end_matches(['\r', '\n']).to_owned()),
            None => Ok(String::new()),
        }
    }

    /// The backend secret: BERTH_QUERY_BACKEND_SECRET, `backend_secret_file`, systemd's
    /// `backend-secret` credential, or `<data_dir>/backend-secret` (created, mode 0600, with
    /// 256 random bits if missing).
    pub fn backend_secret(&self) -> Result<BackendSecret, ConfigError> {
        let text = if let Ok(v) = std::env::var(SECRET_ENV) {
            v
        } else if let Some(p) = self
            .backend_secret_file
            .clone()
            .or_else(|| credential("backend-secret"))
        {
            read_secret_file(&p)?
        } else if let Some(dir) = &self.data_dir {
            let path = dir.join("backend-secret");
            if !path.exists() {
                create_secret_file(&path)?;
            }
            read_secret_file(&path)?
        } else {
            return Err(ConfigError::Invalid(format!(
                "no backend secret: set {SECRET_ENV}, backend_secret_file, or --data-dir"
            )));
        };
        BackendSecret::new(&text).map_err(ConfigError::Invalid)
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` when systemd passed that credential (`LoadCredential=`).
fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = Path::new(&dir).join(name);
    path.exists().then_some(path)
}

fn read_secret_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Invalid(format!("reading {}: {e}", path.display())))
}

fn create_secret_file(path: &Path) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail =
        |e: std::io::Error| ConfigError::Invalid(format!("creating {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    writeln!(f, "{}", berth_common::tenants::generate_token()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::Config;

    fn with_backend(backend: &str, hosts: &[&str]) -> Config {
        Config {
            backend: backend.into(),
            backend_account_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn backend_is_host_port_or_an_absolute_socket_path() {
        for ok in ["127.0.0.1:3306", "db.internal:3307", "[::1]:3306"] {
            assert!(with_backend(ok, &["%"]).validate().is_ok(), "{ok}");
        }
        for ok in ["/run/mysqld/mysqld.sock", "unix:/run/mysqld/mysqld.sock"] {
            assert!(
                with_backend(ok, &["%", "localhost"]).validate().is_ok(),
                "{ok}"
            );
        }
        for bad in ["localhost", "unix:relative.sock", "unix:", ""] {
            let err = with_backend(bad, &["%", "localhost"])
                .validate()
                .unwrap_err();
            assert!(
                err.to_string().contains("neither host:port"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_socket_backend_needs_localhost_accounts() {
        let err = with_backend("/run/mysqld/mysqld.sock", &["%"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
    }
}
