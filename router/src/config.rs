//! Configuration: a TOML file (`--config`) with every setting, overridden by the command
//! line's flags. `--print-config` shows the result, `--check-config` validates it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_common::config::{ByteSize, ConfigError, HumanDuration};
use clap::Parser;
use serde::{Deserialize, Serialize};

/// The router's settings. Every field has a default; a config file names only what it
/// changes. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the plain HTTP listener for app traffic.
    pub listen: SocketAddr,
    /// Address of the HTTPS listener; used only when `[[tls_certificates]]` are configured
    /// (default then: 127.0.0.1:8443).
    pub https_listen: Option<SocketAddr>,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics, the /v1/routes control
    /// API); loopback by default.
    pub admin_listen: SocketAddr,
    /// Directory holding the last accepted route table (`routes.json`).
    pub data_dir: PathBuf,
    /// Domains under which every app is served as `APP.<domain>`.
    pub domains: Vec<String>,
    /// SHA-256 hashes (hex) of the control tokens allowed to replace the route table
    /// (`PUT /v1/routes`, berthd's token) and read it. Without any, the table cannot be pushed.
    pub control_tokens: Vec<String>,
    /// SHA-256 hashes (hex) of operator tokens: they reach `/metrics` and `GET /v1/routes`.
    /// When empty, `/metrics` is open (loopback-only setups).
    pub operator_tokens: Vec<String>,
    /// Client connections served at once, over all listeners (others wait in the backlog).
    pub max_connections: usize,
    /// Largest request head (request line and headers) a client may send; at least 8KiB.
    pub max_header_bytes: ByteSize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// A client must send a request's headers within this time; idle keep-alive connections
    /// are closed after it too.
    pub header_timeout: HumanDuration,
    /// A client that takes nothing of a response for this long is disconnected.
    pub send_timeout: HumanDuration,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: HumanDuration,
    /// Also serve HTTP/2: negotiated by ALPN on the HTTPS listener, by prior knowledge (h2c)
    /// on the HTTP listener. Backends are always spoken to in HTTP/1.1.
    pub http2: bool,
    /// Requests in flight at once on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Trust `X-Forwarded-For`/`-Proto`/`-Host` sent by clients (only behind another proxy);
    /// otherwise they are replaced by what the router saw.
    pub trust_forwarded_headers: bool,
    /// Limits of an app whose route table entry does not set them.
    pub app_defaults: AppDefaults,
    /// Connections to app backends.
    pub backend: BackendConfig,
    /// Access events waiting to be shipped to the log collector; past this, events are
    /// dropped and counted (requests never wait for logging).
    pub access_log_queue: usize,
    /// How long the access log shipper gathers events before it sends them (or until it has
    /// 512), so a busy app's lines reach the collector in a few large writes instead of one
    /// write per request; `0s` sends at once.
    pub access_log_flush_interval: HumanDuration,
    /// Largest route table accepted by `PUT /v1/routes`.
    pub max_table_bytes: ByteSize,
    /// Certificates of the HTTPS listener; the client's SNI picks one by its `hosts`.
    pub tls_certificates: Vec<TlsCertificate>,
    /// Worker threads of the async runtime (0: one per two CPUs, at least one; 1 runs
    /// everything on one thread). The router shares its host with the apps it serves.
    pub threads: usize,
    /// Log verbosity: 0 warnings, 1 info, 2 debug, 3 trace.
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
}

/// Router-wide defaults of the per-app limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppDefaults {
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: ByteSize,
    /// Time from receiving a request to the app's response headers; past it, 504.
    pub request_timeout: HumanDuration,
    /// Requests of one app in flight at once; more get 503 with `Retry-After` at once.
    pub max_concurrent_requests: u32,
}

impl Default for AppDefaults {
    fn default() -> Self {
        AppDefaults {
            max_body_bytes: ByteSize::mib(32),
            request_timeout: HumanDuration::secs(60),
            max_concurrent_requests: 64,
        }
    }
}

/// How the router talks to app backends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// Time allowed to open a connection to a backend.
    pub connect_timeout: HumanDuration,
    /// Idle keep-alive connections to a backend are closed after this (keep it below the
    /// app server's own keep-alive timeout).
    pub idle_timeout: HumanDuration,
    /// Idle keep-alive connections kept per backend.
    pub max_idle_per_backend: usize,
    /// Request bodies up to this size (with a Content-Length) are read before forwarding, so
    /// an idempotent request can be retried on a fresh connection; larger ones stream.
    pub retry_body_bytes: ByteSize,
    /// A backend that refused a connection is skipped for this long.
    pub down_time: HumanDuration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            connect_timeout: HumanDuration::secs(2),
            idle_timeout: HumanDuration::secs(4),
            max_idle_per_backend: 64,
            retry_body_bytes: ByteSize::kib(64),
            down_time: HumanDuration(Duration::from_secs(1)),
        }
    }
}

/// One certificate of the HTTPS listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Host names this certificate serves, exact (`example.com`) or one-label wildcards
    /// (`*.example.com`). The first certificate also answers clients that send no SNI.
    pub hosts: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            https_listen: None,
            admin_listen: "127.0.0.1:9280".parse().expect("valid address"),
            data_dir: PathBuf::from("/var/lib/berth/berth-router"),
            domains: vec!["localhost".into()],
            control_tokens: Vec::new(),
            operator_tokens: Vec::new(),
            max_connections: 4096,
            max_header_bytes: ByteSize::kib(64),
            max_headers: 100,
            header_timeout: HumanDuration::secs(30),
            send_timeout: HumanDuration::secs(60),
            drain_timeout: HumanDuration::secs(30),
            http2: false,
            http2_max_concurrent_streams: 100,
            trust_forwarded_headers: false,
            app_defaults: AppDefaults::default(),
            backend: BackendConfig::default(),
            access_log_queue: 65536,
            access_log_flush_interval: HumanDuration(Duration::from_millis(100)),
            max_table_bytes: ByteSize::mib(16),
            tls_certificates: Vec::new(),
            threads: 0,
            verbosity: 1,
            log_json: false,
        }
    }
}

impl Config {
    /// The runtime's worker threads: `threads`, or for 0 one per two CPUs (at least one).
    ///
    /// Half, not all: the router shares its host with the apps it routes to, and a worker per
    /// CPU mostly buys wake-ups and work stealing across the CPUs the apps need. On the router
    /// benchmark (2 CPUs, an app doing 1 ms of work per request), one current-thread worker
    /// cost 80 us of CPU per request against 98-103 us for two workers, and served more.
    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cpus / 2).max(1)
    }

    /// Refuses settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_header_bytes.0 < 8192 || self.max_header_bytes.0 > (16 << 20) {
            return Err("max_header_bytes must be between 8KiB and 16MiB".into());
        }
        if self.max_headers == 0 {
            return Err("max_headers must be at least 1".into());
        }
        if self.app_defaults.max_concurrent_requests == 0 {
            return Err("app_defaults.max_concurrent_requests must be at least 1".into());
        }
        if self.app_defaults.request_timeout.0.is_zero() {
            return Err("app_defaults.request_timeout must be more than 0s".into());
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err("http2_max_concurrent_streams must be at least 1".into());
        }
        if self.access_log_queue == 0 {
            return Err("access_log_queue must be at least 1".into());
        }
        if self.access_log_flush_interval.0 > Duration::from_secs(10) {
            return Err("access_log_flush_interval must be at most 10s".into());
        }
        for d in &self.domains {
            if crate::routing::normalize_host(d).as_deref() != Some(d.as_str()) {
                return Err(format!(
                    "domains: {d:?} is not a lowercase host name without port (e.g. \"apps.example.com\")"
                ));
            }
        }
        if self.https_listen.is_some() && self.tls_certificates.is_empty() {
            return Err(
                "https_listen needs at least one [[tls_certificates]] entry (cert_file, key_file, hosts)"
                    .into(),
            );
        }
        for (i, c) in self.tls_certificates.iter().enumerate() {
            if c.hosts.is_empty() {
                return Err(format!(
                    "tls_certificates[{i}] ({}): hosts must name at least one host",
                    c.cert_file.display()
                ));
            }
        }
        berth_common::tenants::OperatorTokens::from_hex_hashes(&self.control_tokens)
            .map_err(|e| format!("control_tokens: {e}"))?;
        berth_common::tenants::OperatorTokens::from_hex_hashes(&self.operator_tokens)
            .map_err(|e| format!("operator_tokens: {e}"))?;
        Ok(())
    }

    /// The HTTPS address, when TLS is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        if self.tls_certificates.is_empty() {
            return None;
        }
        Some(
            self.https_listen
                .unwrap_or_else(|| "127.0.0.1:8443".parse().expect("valid address")),
        )
    }

    /// Where the last accepted route table is kept.
    pub fn routes_path(&self) -> PathBuf {
        self.data_dir.join("routes.json")
    }
}

/// Command line: every flag overrides the config file's value.
#[derive(Parser, Debug)]
#[command(
    name = "berth-router",
    version,
    about = "Berth's router: serves every app's HTTP traffic from a route table pushed by berthd"
)]
pub struct Cli {
    /// TOML config file (see docs/ops/berth-router.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP listener [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the HTTPS listener (needs tls_certificates) [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub https_listen: Option<SocketAddr>,
    /// Address of the admin endpoint [default: 127.0.0.1:9280].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory holding the route table [default: /var/lib/berth/berth-router].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A domain apps are served under as APP.DOMAIN (repeat; replaces the config's list).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Connections served at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Worker threads (0: one per two CPUs, at least one; 1: a single-threaded runtime).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Validate the configuration (and the stored route table) and exit.
    #[arg(long)]
    pub check_config: bool,
}

impl Cli {
    /// The config file's settings with the flags applied on top.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut c: Config = berth_common::config::load_toml(self.config.as_deref())?;
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.https_listen {
            c.https_listen = Some(v);
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if !self.domains.is_empty() {
            c.domains = self.domains;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.threads {
            c.threads = v;
        }
        if self.verbose > 0 {
            c.verbosity = c.verbosity.saturating_add(self.verbose);
        }
        if self.log_json {
            c.log_json = true;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let text = berth_common::config::to_toml(&c).unwrap();
        let back: Config = berth_common::config::from_toml_str(&text, "t").unwrap();
        assert_eq!(back, c);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.admin_listen.port(), 9280);
        assert_eq!(c.https_addr(), None);
    }

    #[test]
    fn bad_values_are_explained() {
        let e = berth_common::config::from_toml_str::<Config>("listen = \"x\"\nfoo = 1\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:1"), "{e}");
        let c = Config {
            domains: vec!["Apps.Example.com".into()],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("domains"));
        let c = Config {
            https_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("tls_certificates"));
        let c = Config {
            control_tokens: vec!["nothex".into()],
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("control_tokens"));
        let c = Config {
            max_header_bytes: ByteSize(100),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("max_header_bytes"));
    }
}
