//! Configuration: a TOML file (`--config`) overlaid with command-line flags.

use berth_common::tenants::registry::TenantsSource;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::config::{ByteSize, HumanDuration};
use clap::{ArgAction, Parser};
use serde::{Deserialize, Serialize};

/// Everything the log collector can be told. Every field can be set in the TOML file; the
/// common ones also by a flag, which wins over the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// JSON lines over TCP (`--listen-json`); empty string: off.
    pub listen_json: String,
    /// Syslog over TCP and UDP on the same port (`--listen-syslog`); empty string: off.
    pub listen_syslog: String,
    /// HTTP query and tail API (`--listen-http`); empty string: off.
    pub listen_http: String,
    /// OTLP logs over gRPC, `LogsService/Export` (`--listen-otlp`); empty string: off.
    pub listen_otlp: String,
    /// Admin endpoint: `/metrics`, `/healthz`, `/readyz` (`--admin-listen`).
    pub admin_listen: String,
    /// Where segments live (`--data-dir`).
    pub data_dir: PathBuf,
    /// Tenants file (`--tenants`); without one, input needs no token and names its app
    /// itself (or goes to app `default`), and reads need no token.
    pub tenants: Option<PathBuf>,
    /// berthd's control API to follow for tenants instead of a file (`--registry`).
    pub registry: Option<String>,
    /// The berthd service token for the registry (`--registry-token`).
    pub registry_token_file: Option<PathBuf>,
    /// SHA-256 hashes (hex) of the operator tokens: they read every app and `/metrics`.
    pub operator_tokens: Vec<String>,
    /// Largest JSON line or syslog message; longer ones are skipped and counted.
    pub max_message_bytes: ByteSize,
    /// Largest segment file before a new one is started.
    pub segment_bytes: ByteSize,
    /// Oldest first event a segment may hold before a new one is started.
    pub segment_age: HumanDuration,
    /// Longest time between writing events and fsyncing them (group commit).
    pub commit_interval: HumanDuration,
    /// Bytes of received events waiting to be written, across all connections; past it,
    /// TCP clients wait (back-pressure) and UDP datagrams are dropped and counted.
    pub max_buffer_bytes: ByteSize,
    /// Retention per app when there is no tenants file (tenants have `log_retention`).
    pub default_retention: HumanDuration,
    /// Bytes kept per app when there is no tenants file (tenants have `log_bytes`).
    pub default_log_bytes: ByteSize,
    /// Events per second per app when there is no tenants file; 0: unlimited (tenants have
    /// `log_rate`).
    pub default_log_rate: u32,
    /// Most simultaneous TCP connections (JSON and syslog together).
    pub max_connections: usize,
    /// Largest OTLP `Export` request (the protobuf message, after gzip decompression);
    /// larger ones are refused with RESOURCE_EXHAUSTED before they are buffered.
    pub otlp_max_message_bytes: ByteSize,
    /// Most simultaneous OTLP (HTTP/2) connections; more wait in the listen backlog.
    pub otlp_max_connections: usize,
    /// Most concurrent gRPC streams (requests) on one OTLP connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub otlp_max_concurrent_streams: u32,
    /// Most OTLP requests being decoded and stored at once, across all connections; more
    /// wait (back-pressure). Bounds memory at about this times `otlp_max_message_bytes`.
    pub otlp_max_concurrent_requests: usize,
    /// Close JSON and syslog connections idle this long; "0s": never.
    pub idle_timeout: HumanDuration,
    /// How long connections get to finish after SIGTERM.
    pub drain_timeout: HumanDuration,
    /// Most events a query returns in one page.
    pub max_page_events: usize,
    /// Most bytes a query examines before returning a partial page with a cursor.
    pub max_scan_bytes: ByteSize,
    /// NATS server to forward every app's events to (`host:port` or `nats://host:port`);
    /// empty: no forwarding. JetStream must be enabled on it.
    pub forward_nats: String,
    /// Subject prefix: events of app `a` go to `<prefix>.a`.
    pub forward_nats_subject: String,
    /// JetStream stream holding the subjects (created if missing).
    pub forward_nats_stream: String,
    /// Loki base URL (`http://host:3100`) to push every app's events to; empty: off.
    pub forward_loki: String,
    /// `X-Scope-OrgID` for Loki pushes (multi-tenant Loki); empty: none.
    pub forward_loki_org: String,
    /// Log verbosity (`-v`).
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_json: "127.0.0.1:5170".into(),
            listen_syslog: "127.0.0.1:5140".into(),
            listen_http: "127.0.0.1:8099".into(),
            listen_otlp: "127.0.0.1:4317".into(),
            admin_listen: "127.0.0.1:9299".into(),
            data_dir: PathBuf::from("/var/lib/berth/log-collector"),
            tenants: None,
            registry: None,
            registry_token_file: None,
            operator_tokens: Vec::new(),
            max_message_bytes: ByteSize::kib(256),
            segment_bytes: ByteSize::mib(64),
            segment_age: HumanDuration::secs(3600),
            commit_interval: HumanDuration(Duration::from_millis(50)),
            max_buffer_bytes: ByteSize::mib(4),
            default_retention: HumanDuration::days(7),
            default_log_bytes: ByteSize::gib(1),
            default_log_rate: 0,
            max_connections: 4096,
            otlp_max_message_bytes: ByteSize::mib(4),
            otlp_max_connections: 1024,
            otlp_max_concurrent_streams: 16,
            otlp_max_concurrent_requests: 32,
            idle_timeout: HumanDuration(Duration::ZERO),
            drain_timeout: HumanDuration::secs(5),
            max_page_events: 1000,
            max_scan_bytes: ByteSize::mib(64),
            forward_nats: String::new(),
            forward_nats_subject: "berth.logs".into(),
            forward_nats_stream: "BERTH_LOGS".into(),
            forward_loki: String::new(),
            forward_loki_org: String::new(),
            verbosity: 0,
            log_json: false,
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "log-collector",
    version,
    about = "Berth's log collector: durable per-app logs with tail and query",
    long_about = "Berth's log collector. Takes JSON lines over TCP, syslog (RFC 5424/3164) over \
TCP and UDP, OTLP logs over gRPC, stores each app's events durably in its own segments, and serves queries and live \
tail over HTTP. See docs/protocols/logs.md and docs/ops/log-collector.md."
)]
pub struct Cli {
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check the configuration (and tenants file) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// JSON lines address ("" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub listen_json: Option<String>,
    /// Syslog TCP and UDP address ("" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub listen_syslog: Option<String>,
    /// HTTP query/tail address ("" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub listen_http: Option<String>,
    /// OTLP/gRPC logs address ("" turns it off).
    #[arg(long, value_name = "ADDR")]
    pub listen_otlp: Option<String>,
    /// Admin address (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tenants file (TOML); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Follow berthd's registry for tenants (e.g. http://127.0.0.1:7100) instead of a file;
    /// the last state is kept in the data directory.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// File holding the berthd service token for --registry.
    #[arg(long = "registry-token", value_name = "FILE")]
    pub registry_token_file: Option<PathBuf>,
    /// More logging; repeat for more.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

/// A configuration problem, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file.
    #[error(transparent)]
    File(#[from] berth_common::config::ConfigError),
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Cli {
    /// The effective configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut cfg: Config = berth_common::config::load_toml(self.config.as_deref())?;
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut cfg.listen_json, self.listen_json);
        set(&mut cfg.listen_syslog, self.listen_syslog);
        set(&mut cfg.listen_http, self.listen_http);
        set(&mut cfg.listen_otlp, self.listen_otlp);
        set(&mut cfg.admin_listen, self.admin_listen);
        if let Some(d) = self.data_dir {
            cfg.data_dir = d;
        }
        if let Some(t) = self.tenants {
            cfg.tenants = Some(t);
        }
        if let Some(r) = self.registry {
            cfg.registry = Some(r);
        }
        if let Some(t) = self.registry_token_file {
            cfg.registry_token_file = Some(t);
        }
        if self.verbose > 0 {
            cfg.verbosity = self.verbose;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl Config {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_message_bytes.0 < 256 || self.max_message_bytes.0 > 16 << 20 {
            return bad("max_message_bytes must be between 256B and 16MiB".into());
        }
        if self.segment_bytes.0 < 64 << 10 {
            return bad("segment_bytes must be at least 64KiB".into());
        }
        let ci = self.commit_interval.0;
        if ci.is_zero() || ci > Duration::from_secs(1) {
            return bad("commit_interval must be between 1ms and 1s".into());
        }
        if self.max_buffer_bytes.0 < 4 * self.max_message_bytes.0 {
            return bad(format!(
                "max_buffer_bytes must be at least 4 x max_message_bytes ({} bytes)",
                4 * self.max_message_bytes.0
            ));
        }
        let otlp_max = self.otlp_max_message_bytes.0;
        if !(4 << 10..=256 << 20).contains(&otlp_max) {
            return bad("otlp_max_message_bytes must be between 4KiB and 256MiB".into());
        }
        if self.otlp_max_connections == 0
            || self.otlp_max_concurrent_streams == 0
            || self.otlp_max_concurrent_requests == 0
        {
            return bad("otlp_max_connections, otlp_max_concurrent_streams and otlp_max_concurrent_requests must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_page_events == 0 {
            return bad("max_connections and max_page_events must be at least 1".into());
        }
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|t| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !token_ok(&self.forward_nats_subject)
            || !token_ok(&self.forward_nats_stream)
            || self.forward_nats_stream.contains('.')
        {
            return bad("forward_nats_subject must be dot-separated words and forward_nats_stream one word (letters, digits, - and _)".into());
        }
        if !self.forward_loki.is_empty() {
            crate::forward::loki::Target::parse(&self.forward_loki)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir must be set".into());
        }
        Ok(())
    }

    /// Where tenants come from: the tenants file, berthd's registry, or none.
    pub fn tenants_source(&self) -> Result<Option<TenantsSource>, String> {
        TenantsSource::from_flags(
            self.tenants.as_deref(),
            self.registry.as_deref(),
            self.registry_token_file.as_deref(),
            Some(self.data_dir.join("registry-tenants.toml")),
        )
    }

    /// The tenants file, if any.
    pub fn tenants_path(&self) -> Option<&Path> {
        self.tenants.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_print_round_trips() {
        let cli = Cli::parse_from([
            "log-collector",
            "--listen-json",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
        ]);
        let cfg = cli.into_config().unwrap();
        assert_eq!(cfg.listen_json, "127.0.0.1:0");
        assert_eq!(cfg.listen_syslog, "127.0.0.1:5140");
        assert_eq!(cfg.listen_otlp, "127.0.0.1:4317");
        let text = berth_common::config::to_toml(&cfg).unwrap();
        let back: Config = berth_common::config::from_toml_str(&text, "printed").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_values_say_what_to_change() {
        let cfg = Config {
            commit_interval: HumanDuration(Duration::from_secs(5)),
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("commit_interval"), "{e}");
        let cfg = Config {
            otlp_max_message_bytes: ByteSize(100),
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("otlp_max_message_bytes"), "{e}");
        let cfg = Config {
            otlp_max_concurrent_streams: 0,
            ..Config::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("otlp_max_concurrent_streams"), "{e}");
        let e = berth_common::config::from_toml_str::<Config>("segmnt_bytes = 1", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("segmnt_bytes"), "{e}");
    }
}
