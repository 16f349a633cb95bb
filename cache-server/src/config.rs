//! Configuration: a TOML file (`--config`) overlaid with memcached's own command-line flags, so
//! the server drops into an existing memcached init script or test harness unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::config::{ByteSize, HumanDuration};
use clap::{ArgAction, Parser};
use serde::{Deserialize, Serialize};

/// Everything the cache server can be told. Every field can be set in the TOML file; most also
/// by a memcached flag, which wins over the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TCP addresses of the memcached port (`-l`, `-p`, `--listen`). Default loopback only:
    /// unlike memcached, an anonymous cache is not exposed to the network unless asked.
    pub listen: Vec<String>,
    /// Unix socket path for the memcached protocol (`-s`); when set, TCP is off, as in memcached.
    pub unix_socket: Option<PathBuf>,
    /// Permission bits of the unix socket, octal (`-a`).
    pub unix_mask: String,
    /// Address of the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: String,
    /// Item memory budget (`-m`, megabytes on the command line). Per-app budgets are
    /// reservations inside it.
    pub memory_limit: ByteSize,
    /// Answer `SERVER_ERROR out of memory storing object` instead of evicting (`-M`).
    pub disable_evictions: bool,
    /// Most simultaneous client connections (`-c`); past it new ones get
    /// `ERROR Too many open connections` and are closed.
    pub max_connections: usize,
    /// Worker threads (`-t`).
    pub threads: usize,
    /// Largest value (`-I`, 1 KiB to 1 GiB).
    pub item_size_max: ByteSize,
    /// Longest command line before the connection is closed with `CLIENT_ERROR line too long`.
    pub max_line_len: ByteSize,
    /// Requests served from one connection before it yields to others (`-R`).
    pub max_reqs_per_event: usize,
    /// Disable CAS: `gets` reports 0 and items carry no CAS value (`-C`).
    pub disable_cas: bool,
    /// Refuse `flush_all` (`-F`).
    pub disable_flush_all: bool,
    /// Allow the `shutdown` command (`-A`).
    pub enable_shutdown: bool,
    /// Close connections idle this long; "0s" never (`-o idle_timeout=SECONDS`).
    pub idle_timeout: HumanDuration,
    /// How long in-flight connections get to finish after SIGTERM.
    pub drain_timeout: HumanDuration,
    /// Tenants file (`--tenants`, TOML) or memcached auth file (`-Y`, `name:token` lines).
    /// Without one the server serves a single anonymous namespace, like memcached.
    pub tenants: Option<PathBuf>,
    /// berthd's control API to follow for tenants instead of a file (`--registry`).
    pub registry: Option<String>,
    /// File holding the berthd service token for `registry` (`--registry-token`).
    pub registry_token_file: Option<PathBuf>,
    /// Where the registry's last state is kept, so a restart while berthd is away still
    /// serves the apps it knew (`--registry-state`); none: a restart waits for berthd.
    pub registry_state: Option<PathBuf>,
    /// SHA-256 hashes (hex) of the operator tokens accepted for `_operator` logins and the
    /// admin endpoint's `/metrics`.
    pub operator_tokens: Vec<String>,
    /// Shards per namespace in the item store; more shards, less lock contention.
    pub store_shards: usize,
    /// Log verbosity (`-v`, `-vv`, `-vvv`).
    pub verbosity: u8,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// Drop privileges to this user after binding (`-u`).
    pub user: Option<String>,
    /// Write the process id here (`-P`).
    pub pidfile: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec!["127.0.0.1:11211".into()],
            unix_socket: None,
            unix_mask: "0700".into(),
            admin_listen: "127.0.0.1:9211".into(),
            memory_limit: ByteSize(64 << 20),
            disable_evictions: false,
            max_connections: 1024,
            threads: 4,
            item_size_max: ByteSize(1 << 20),
            max_line_len: ByteSize(64 << 10),
            max_reqs_per_event: 20,
            disable_cas: false,
            disable_flush_all: false,
            enable_shutdown: false,
            idle_timeout: HumanDuration(Duration::ZERO),
            drain_timeout: HumanDuration(Duration::from_secs(5)),
            tenants: None,
            registry: None,
            registry_token_file: None,
            registry_state: None,
            operator_tokens: Vec::new(),
            store_shards: 16,
            verbosity: 0,
            log_json: false,
            user: None,
            pidfile: None,
        }
    }
}

/// The command line: memcached's flags plus `--config`, `--tenants`, `--admin-listen`.
#[derive(Debug, Parser)]
#[command(
    name = "cache-server",
    version,
    about = "Berth's memcached-compatible cache server with per-app namespaces",
    long_about = "Berth's memcached-compatible cache server. Speaks the memcached text protocol \
(classic and meta commands) and accepts memcached's own flags. With --tenants or -Y, every \
connection logs in with memcached's ASCII authentication and gets its app's own namespace and \
memory budget. See docs/ops/cache-server.md."
)]
pub struct Cli {
    /// TOML config file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check the configuration (and tenants file) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// TCP port to listen on (0 picks a free one).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// UDP port; only 0 (off) is supported, anything else is ignored with a warning.
    #[arg(short = 'U', long = "udp-port", value_name = "PORT")]
    pub udp_port: Option<u16>,
    /// Interface(s) to listen on, comma-separated, each `addr` or `addr:port`.
    #[arg(short = 'l', long = "listen", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Unix socket path to listen on (disables TCP).
    #[arg(short = 's', long = "unix-socket", value_name = "FILE")]
    pub unix_socket: Option<PathBuf>,
    /// Access mask for the unix socket, in octal.
    #[arg(short = 'a', long = "unix-mask", value_name = "MASK")]
    pub unix_mask: Option<String>,
    /// Admin HTTP address (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Item memory in megabytes (or with a k/m/g suffix).
    #[arg(short = 'm', long = "memory-limit", value_name = "MB")]
    pub memory_limit: Option<String>,
    /// Return an error when memory is exhausted instead of evicting.
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,
    /// Max simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", value_name = "N")]
    pub conn_limit: Option<usize>,
    /// Number of worker threads.
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// Max item size in bytes (k/m suffix allowed; 1k..1024m).
    #[arg(short = 'I', long = "max-item-size", value_name = "SIZE")]
    pub max_item_size: Option<String>,
    /// Max requests served per connection before yielding.
    #[arg(short = 'R', long = "max-reqs-per-event", value_name = "N")]
    pub max_reqs_per_event: Option<usize>,
    /// Disable CAS.
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,
    /// Disable flush_all.
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,
    /// Enable the shutdown command.
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,
    /// memcached auth file (`name:token` per line) or a Berth tenants file: each name is an app.
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Berth tenants file (TOML, see ARCHITECTURE.md); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Follow berthd's registry for tenants (e.g. http://127.0.0.1:7100) instead of a file.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// File holding the berthd service token for --registry.
    #[arg(long = "registry-token", value_name = "FILE")]
    pub registry_token_file: Option<PathBuf>,
    /// Where to keep the registry's last state (the cache server has no data directory).
    #[arg(long = "registry-state", value_name = "FILE")]
    pub registry_state: Option<PathBuf>,
    /// Drop privileges to this user after binding.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Run as a daemon (fork into the background).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Write the process id to this file.
    #[arg(short = 'P', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// More logging; repeat for more (-vv).
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
    /// Extended options, comma-separated: idle_timeout=SECONDS, modern, no_modern; other
    /// memcached options are accepted and ignored with a warning.
    #[arg(short = 'o', long = "extended", value_name = "OPTS")]
    pub extended: Vec<String>,
}

/// A configuration problem, with what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] berth_common::config::ConfigError),
    #[error("{flag}: {msg}")]
    Flag { flag: &'static str, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// memcached's size syntax: a number with an optional k/m/g/t suffix; `unit` multiplies a bare
/// number (1 for `-I`, 1 MiB for `-m`).
pub fn parse_mc_size(s: &str, unit: u64) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        b't' | b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, unit),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl Cli {
    /// The effective configuration: the file (if any), then each flag given.
    /// Returns the warnings to log once tracing is up.
    pub fn into_config(self) -> Result<(Config, Vec<String>), ConfigError> {
        let mut cfg: Config = berth_common::config::load_toml(self.config.as_deref())?;
        let mut warnings = Vec::new();
        if let Some(listen) = &self.listen {
            let port = self.port.unwrap_or(11211);
            cfg.listen = listen
                .split(',')
                .filter(|a| !a.is_empty())
                .map(|a| with_port(a.trim(), port))
                .collect();
        } else if let Some(port) = self.port {
            cfg.listen = cfg
                .listen
                .iter()
                .map(|a| with_port(strip_port(a), port))
                .collect();
        }
        if let Some(p) = self.udp_port {
            if p != 0 {
                warnings.push(format!("UDP is not supported; ignoring -U {p}"));
            }
        }
        set(&mut cfg.unix_socket, self.unix_socket.map(Some));
        set(&mut cfg.unix_mask, self.unix_mask);
        set(&mut cfg.admin_listen, self.admin_listen);
        if let Some(m) = &self.memory_limit {
            let bytes = parse_mc_size(m, 1 << 20).ok_or_else(|| ConfigError::Flag {
                flag: "-m",
                msg: format!("{m:?} is not a size in megabytes (e.g. 64 or 1g)"),
            })?;
            cfg.memory_limit = ByteSize(bytes);
        }
        if let Some(i) = &self.max_item_size {
            let bytes = parse_mc_size(i, 1).ok_or_else(|| ConfigError::Flag {
                flag: "-I",
                msg: format!("{i:?} is not a size (e.g. 1m or 512k)"),
            })?;
            cfg.item_size_max = ByteSize(bytes);
        }
        cfg.disable_evictions |= self.disable_evictions;
        set(&mut cfg.max_connections, self.conn_limit);
        set(&mut cfg.threads, self.threads);
        set(&mut cfg.max_reqs_per_event, self.max_reqs_per_event);
        cfg.disable_cas |= self.disable_cas;
        cfg.disable_flush_all |= self.disable_flush_all;
        cfg.enable_shutdown |= self.enable_shutdown;
        if self.auth_file.is_some() && self.tenants.is_some() {
            return Err(ConfigError::Invalid(
                "give either -Y/--auth-file or --tenants, not both".into(),
            ));
        }
        set(&mut cfg.tenants, self.auth_file.or(self.tenants).map(Some));
        set(&mut cfg.registry, self.registry.map(Some));
        set(
            &mut cfg.registry_token_file,
            self.registry_token_file.map(Some),
        );
        set(&mut cfg.registry_state, self.registry_state.map(Some));
        set(&mut cfg.user, self.user.map(Some));
        set(&mut cfg.pidfile, self.pidfile.map(Some));
        cfg.verbosity = cfg.verbosity.max(self.verbose);
        for opt in self.extended.iter().flat_map(|o| o.split(',')) {
            let (key, val) = opt.split_once('=').unwrap_or((opt, ""));
            match key.trim() {
                "idle_timeout" => {
                    let secs: u64 = val.parse().map_err(|_| ConfigError::Flag {
                        flag: "-o idle_timeout",
                        msg: format!("{val:?} is not a number of seconds"),
                    })?;
                    cfg.idle_timeout = HumanDuration(Duration::from_secs(secs));
                }
                "modern" | "no_modern" | "" => {}
                other => warnings.push(format!("ignoring memcached option -o {other}")),
            }
        }
        cfg.validate()?;
        Ok((cfg, warnings))
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

fn with_port(addr: &str, port: u16) -> String {
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Config {
    /// Check ranges; the message says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let item = self.item_size_max.0;
        if !(1024..=1 << 30).contains(&item) {
            return bad(format!(
                "item_size_max (-I) is {item} bytes; it must be between 1k and 1024m"
            ));
        }
        if item > self.memory_limit.0 {
            return bad(format!(
                "item_size_max (-I) of {item} bytes is larger than memory_limit (-m) of {} bytes",
                self.memory_limit.0
            ));
        }
        if self.memory_limit.0 < 1 << 20 {
            return bad("memory_limit (-m) must be at least 1 MiB".into());
        }
        if self.threads == 0 || self.threads > 1024 {
            return bad(format!("threads (-t) is {}; use 1 to 1024", self.threads));
        }
        if self.max_connections == 0 {
            return bad("max_connections (-c) must be at least 1".into());
        }
        if self.max_reqs_per_event == 0 {
            return bad("max_reqs_per_event (-R) must be at least 1".into());
        }
        if self.store_shards == 0 || !self.store_shards.is_power_of_two() {
            return bad(format!(
                "store_shards is {}; use a power of two such as 16",
                self.store_shards
            ));
        }
        if self.max_line_len.0 < 2048 {
            return bad("max_line_len must be at least 2KiB".into());
        }
        if u32::from_str_radix(self.unix_mask.trim_start_matches("0o"), 8).is_err() {
            return bad(format!(
                "unix_mask {:?} is not an octal mode such as 0700",
                self.unix_mask
            ));
        }
        if self.listen.is_empty() && self.unix_socket.is_none() {
            return bad("nothing to listen on: set listen (-l/-p) or unix_socket (-s)".into());
        }
        Ok(())
    }

    /// The tenants file, if any.
    pub fn tenants_path(&self) -> Option<&Path> {
        self.tenants.as_deref()
    }

    /// Where tenants come from: the tenants file (or `-Y` auth file), berthd's registry, or
    /// none (one anonymous namespace).
    pub fn tenants_source(
        &self,
    ) -> Result<Option<berth_common::tenants::registry::TenantsSource>, String> {
        berth_common::tenants::registry::TenantsSource::from_flags(
            self.tenants.as_deref(),
            self.registry.as_deref(),
            self.registry_token_file.as_deref(),
            self.registry_state.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["cache-server"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .unwrap()
            .into_config()
            .map(|(c, _)| c)
    }

    #[test]
    fn memcached_flags() {
        let c = cli(&[
            "-p", "11311", "-U", "0", "-m", "128", "-c", "10", "-t", "2", "-I", "2m", "-vv", "-A",
            "-F", "-C", "-M",
        ])
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:11311"]);
        assert_eq!(c.memory_limit.0, 128 << 20);
        assert_eq!(c.item_size_max.0, 2 << 20);
        assert_eq!((c.max_connections, c.threads, c.verbosity), (10, 2, 2));
        assert!(c.enable_shutdown && c.disable_flush_all && c.disable_cas && c.disable_evictions);
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            cli(&["-l", "0.0.0.0", "-p", "5"]).unwrap().listen,
            vec!["0.0.0.0:5"]
        );
        assert_eq!(
            cli(&["-l", "127.0.0.1:7,::1"]).unwrap().listen,
            vec!["127.0.0.1:7", "[::1]:11211"]
        );
        assert_eq!(
            cli(&["-l", "127.0.0.1"]).unwrap().listen,
            vec!["127.0.0.1:11211"]
        );
    }

    #[test]
    fn extended_options() {
        let c = cli(&["-o", "idle_timeout=30,modern", "-o", "slab_reassign"]).unwrap();
        assert_eq!(c.idle_timeout.0, Duration::from_secs(30));
        assert!(cli(&["-o", "idle_timeout=x"]).is_err());
    }

    #[test]
    fn bad_values_say_what_to_change() {
        let e = cli(&["-I", "2m", "-m", "1"]).unwrap_err().to_string();
        assert!(e.contains("larger than memory_limit"), "{e}");
        let e = cli(&["-I", "512"]).unwrap_err().to_string();
        assert!(e.contains("between 1k and 1024m"), "{e}");
        let e = cli(&["-m", "lots"]).unwrap_err().to_string();
        assert!(e.contains("-m"), "{e}");
        let e = cli(&["-t", "0"]).unwrap_err().to_string();
        assert!(e.contains("threads"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_mc_size("64", 1 << 20), Some(64 << 20));
        assert_eq!(parse_mc_size("1g", 1 << 20), Some(1 << 30));
        assert_eq!(parse_mc_size("512k", 1), Some(512 << 10));
        assert_eq!(parse_mc_size("x", 1), None);
    }

    #[test]
    fn print_config_round_trips() {
        let c = Config::default();
        let text = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(c, back);
    }
}
