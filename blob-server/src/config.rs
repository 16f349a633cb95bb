//! Configuration: a TOML file (`--config`) with every setting, overridden by the command
//! line's flags. `--print-config` shows the result, `--check-config` validates it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_common::config::{ByteSize, ConfigError, HumanDuration};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::store::{Backend, StoreConfig};

/// The blob server's settings. Every field has a default; a config file names only what it
/// changes. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Address of the admin endpoint (/healthz, /readyz, /metrics); loopback by default.
    pub admin_listen: SocketAddr,
    /// Directory holding everything: volumes, content files, metadata, the signing key.
    pub data_dir: PathBuf,
    /// Tenants file (TOML `[[app]]` tables); reloaded on SIGHUP. Without it the server serves
    /// one anonymous namespace (local development) and takes no credentials.
    pub tenants: Option<PathBuf>,
    /// berthd's control API to follow for tenants instead of a file; the last state is kept
    /// in the data directory (`registry-tenants.toml`).
    pub registry: Option<String>,
    /// File holding the berthd service token for `registry`.
    pub registry_token_file: Option<PathBuf>,
    /// SHA-256 hashes (hex) of operator tokens: they see every app's `/stats`, reach
    /// `/metrics`, and act for an app named in `X-Berth-App`.
    pub operator_tokens: Vec<String>,
    /// File with the key that signs URLs (64 hex digits); created with a random key when
    /// missing. Default: `signing.key` in the data directory.
    pub signing_key_file: Option<PathBuf>,
    /// Connections served at once (others wait in the kernel's backlog).
    pub max_connections: usize,
    /// Requests in flight at once per app when no tenants are configured (with tenants, each
    /// app's `max_connections`).
    pub max_requests_per_app: u32,
    /// Largest object (an app's own `max_object_bytes` may lower it).
    pub max_object_size: ByteSize,
    /// Quota of an app without a tenants entry (the development namespace).
    pub default_quota: ByteSize,
    /// Longest bucket or key name, in bytes.
    pub max_name_bytes: usize,
    /// Most keys or buckets per listing page.
    pub max_list_page: usize,
    /// Longest lifetime of a signed URL.
    pub max_signed_url_ttl: HumanDuration,
    /// An upload that sends nothing for this long is dropped (nothing is stored).
    pub body_idle_timeout: HumanDuration,
    /// A client must send a request's headers within this time; idle keep-alive
    /// connections are closed after it too.
    pub header_timeout: HumanDuration,
    /// A client that takes nothing of a response for this long is disconnected (so a stalled
    /// reader cannot hold a connection or its app's request slot forever).
    pub send_timeout: HumanDuration,
    /// How long in-flight requests may take to finish at shutdown.
    pub drain_timeout: HumanDuration,
    /// Objects up to this size are appended to volume files with group commit; larger ones
    /// get their own file.
    pub small_object_max: ByteSize,
    /// Unit of checksums, range reads and per-request memory for large objects.
    pub chunk_size: ByteSize,
    /// Write large objects' files with direct I/O (`O_DIRECT`), past the page cache: less
    /// CPU per stored byte and no cache pollution from uploads. Falls back to buffered writes
    /// where the file system refuses it (tmpfs on older kernels).
    pub direct_io: bool,
    /// A volume file takes no more appends past this size.
    pub volume_max: ByteSize,
    /// Zeros written ahead of the end of the volume being appended to, so that each group
    /// commit's fsync overwrites blocks the file already has instead of growing it (several
    /// times cheaper on ext4); "0" turns it off. Only written while the file system keeps
    /// 64 MiB plus sixteen times this free.
    pub volume_prealloc: ByteSize,
    /// Memory for verified chunks of recently read objects, so hot objects are served without
    /// reading storage again (each chunk's checksum is still checked before it is sent); one
    /// entry per app and content, so the cache never tells an app what another reads. "0"
    /// turns it off.
    pub read_cache: ByteSize,
    /// Objects larger than this are never cached (a big download does not flush the hot set).
    pub read_cache_max_object: ByteSize,
    /// Time between commits of the metadata database; changes in between are durable in
    /// the metadata log (`meta-0.wal`, `meta-1.wal`) and replayed from it after a crash.
    pub meta_checkpoint_interval: HumanDuration,
    /// Size of each of the two metadata log files, allocated up front.
    pub meta_log_size: ByteSize,
    /// Time between background scrubs, which read every stored content back and verify it
    /// ("0s" disables them). The first runs one interval after start.
    pub scrub_interval: HumanDuration,
    /// Bytes per second a scrub reads at most, so it never crowds out clients.
    pub scrub_rate: ByteSize,
    /// Time between volume compactions, which give the space of deleted small objects back
    /// ("0s" disables them).
    pub compact_interval: HumanDuration,
    /// A volume is compacted once at least this share (0.0 to 1.0) of it is deleted records.
    pub compact_dead_ratio: f64,
    /// Worker threads of the async runtime (0: one per CPU).
    pub threads: usize,
    /// Log verbosity: 0 warnings, 1 info, 2 debug, 3 trace.
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Where content bytes are stored (metadata always stays in `data_dir`).
    pub storage: StorageConfig,
}

/// Which storage holds new content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Volume files and content files in `data_dir`.
    #[default]
    Local,
    /// An S3-compatible bucket (a blob-server built with the cargo feature `s3`).
    S3,
}

/// The `[storage]` table: the content backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// "local" (the data directory) or "s3" (an S3-compatible bucket; content already stored
    /// locally is still served from the data directory).
    pub backend: BackendKind,
    /// Bucket name (backend "s3"); the bucket must exist.
    pub bucket: String,
    /// URL of an S3-compatible server (MinIO, Garage, Ceph RGW, moto); empty for AWS S3.
    pub endpoint: String,
    /// Region the requests are signed for.
    pub region: String,
    /// Prefix of every key this server writes ("" or ending in "/"); one server per prefix.
    pub prefix: String,
    /// TOML file with `access_key_id` and `secret_access_key`, readable by the server only.
    /// Without it they come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). Never logged or printed.
    pub credentials_file: Option<PathBuf>,
    /// Allow a plain `http://` endpoint (local testing only).
    pub allow_http: bool,
    /// Address the bucket as `bucket.host` instead of `host/bucket`.
    pub virtual_hosted_style: bool,
    /// Upload part size (at least 5MiB); objects below it are sent as one PUT.
    pub part_size: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: BackendKind::Local,
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            credentials_file: None,
            allow_http: false,
            virtual_hosted_style: false,
            part_size: ByteSize(8 << 20),
        }
    }
}

/// The credentials file of the S3 backend.
#[cfg(feature = "s3")]
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl StorageConfig {
    /// Refuses settings that cannot work, saying what to change.
    fn validate(&self, max_object: u64) -> Result<(), String> {
        if self.backend == BackendKind::Local {
            return Ok(());
        }
        if !cfg!(feature = "s3") {
            return Err(
                "[storage] backend = \"s3\" needs a blob-server built with S3 support: \
                 cargo build --release -p blob-server --features s3"
                    .into(),
            );
        }
        if self.bucket.is_empty() {
            return Err("[storage] bucket must name the bucket (backend \"s3\")".into());
        }
        if self.prefix.starts_with('/') || !(self.prefix.is_empty() || self.prefix.ends_with('/')) {
            return Err(
                "[storage] prefix must be empty or end with \"/\" (and not start with it)".into(),
            );
        }
        const MIN_PART: u64 = 5 << 20;
        if self.part_size.0 < MIN_PART || self.part_size.0 > (5 << 30) {
            return Err("[storage] part_size must be between 5MiB and 5GiB".into());
        }
        // Framing adds 4 bytes per chunk; S3 takes at most 10000 parts.
        if max_object.saturating_add(max_object / 64 + 64) / self.part_size.0 >= 10_000 {
            return Err(format!(
                "[storage] part_size must be larger: objects of max_object_size need over 10000 parts of {} bytes",
                self.part_size.0
            ));
        }
        Ok(())
    }

    /// The store's backend, with the credentials read from their file.
    pub fn backend(&self) -> Result<Backend, String> {
        match self.backend {
            BackendKind::Local => Ok(Backend::Local),
            #[cfg(feature = "s3")]
            BackendKind::S3 => {
                let creds: Credentials = match &self.credentials_file {
                    Some(path) => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            format!("[storage] credentials_file {}: {e}", path.display())
                        })?;
                        // The parser's message could quote the secret: not shown.
                        berth_common::config::from_toml_str(&text, "credentials").map_err(|_| {
                            format!(
                                "[storage] credentials_file {}: expected TOML with only \
                                 access_key_id and secret_access_key",
                                path.display()
                            )
                        })?
                    }
                    None => Credentials::default(),
                };
                Ok(Backend::S3(crate::store::S3Config {
                    bucket: self.bucket.clone(),
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone(),
                    prefix: self.prefix.clone(),
                    access_key_id: creds.access_key_id,
                    secret_access_key: creds.secret_access_key,
                    allow_http: self.allow_http,
                    virtual_hosted_style: self.virtual_hosted_style,
                    part_size: self.part_size.0,
                }))
            }
            #[cfg(not(feature = "s3"))]
            BackendKind::S3 => Err("this blob-server was built without S3 support".into()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let store = StoreConfig::default();
        Config {
            listen: "127.0.0.1:8098".parse().expect("valid address"),
            admin_listen: "127.0.0.1:9298".parse().expect("valid address"),
            data_dir: PathBuf::from("/var/lib/berth/blob-server"),
            tenants: None,
            registry: None,
            registry_token_file: None,
            operator_tokens: Vec::new(),
            signing_key_file: None,
            max_connections: 1024,
            max_requests_per_app: 64,
            max_object_size: ByteSize(store.max_object),
            default_quota: ByteSize(store.default_quota),
            max_name_bytes: 1024,
            max_list_page: 1000,
            max_signed_url_ttl: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            body_idle_timeout: HumanDuration(Duration::from_secs(60)),
            header_timeout: HumanDuration(Duration::from_secs(30)),
            send_timeout: HumanDuration(Duration::from_secs(60)),
            drain_timeout: HumanDuration(Duration::from_secs(30)),
            small_object_max: ByteSize(store.small_max),
            chunk_size: ByteSize(u64::from(store.chunk_size)),
            direct_io: store.direct_io,
            volume_max: ByteSize(store.volume_max),
            volume_prealloc: ByteSize(store.volume_prealloc),
            read_cache: ByteSize(store.read_cache),
            read_cache_max_object: ByteSize(store.read_cache_max_object),
            meta_checkpoint_interval: HumanDuration(store.checkpoint),
            meta_log_size: ByteSize(store.wal_bytes),
            scrub_interval: HumanDuration(Duration::from_secs(24 * 3600)),
            scrub_rate: ByteSize(64 << 20),
            compact_interval: HumanDuration(Duration::from_secs(3600)),
            compact_dead_ratio: 0.5,
            threads: 0,
            verbosity: 1,
            log_json: false,
            storage: StorageConfig::default(),
        }
    }
}

impl Config {
    /// Where tenants come from: the tenants file, berthd's registry, or none.
    pub fn tenants_source(
        &self,
    ) -> Result<Option<berth_common::tenants::registry::TenantsSource>, String> {
        berth_common::tenants::registry::TenantsSource::from_flags(
            self.tenants.as_deref(),
            self.registry.as_deref(),
            self.registry_token_file.as_deref(),
            Some(self.data_dir.join("registry-tenants.toml")),
        )
    }

    /// The storage engine's settings.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            small_max: self.small_object_max.0,
            chunk_size: u32::try_from(self.chunk_size.0).unwrap_or(u32::MAX),
            volume_max: self.volume_max.0,
            volume_prealloc: self.volume_prealloc.0,
            read_cache: self.read_cache.0,
            read_cache_max_object: self.read_cache_max_object.0,
            max_object: self.max_object_size.0,
            default_quota: self.default_quota.0,
            checkpoint: self.meta_checkpoint_interval.0,
            wal_bytes: self.meta_log_size.0,
            direct_io: self.direct_io,
            ..StoreConfig::default()
        }
    }

    /// Refuses settings that cannot work, saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.max_name_bytes == 0 || self.max_name_bytes > 1024 {
            return Err("max_name_bytes must be between 1 and 1024".into());
        }
        if self.max_list_page == 0 {
            return Err("max_list_page must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.compact_dead_ratio) {
            return Err("compact_dead_ratio must be between 0.0 and 1.0".into());
        }
        if self.chunk_size.0 == 0 || self.chunk_size.0 > (64 << 20) {
            return Err("chunk_size must be between 1 byte and 64MiB".into());
        }
        self.storage.validate(self.max_object_size.0)?;
        self.store_config().validate().map_err(|e| e.to_string())
    }

    /// Where the signing key lives.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing.key"))
    }
}

/// Command line: every flag overrides the config file's value.
#[derive(Parser, Debug)]
#[command(
    name = "blob-server",
    version,
    about = "Berth's blob server: per-app storage with a Riak-style HTTP API and content-addressed blobs"
)]
pub struct Cli {
    /// TOML config file (see docs/ops/blob-server.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:8098].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address of the admin endpoint [default: 127.0.0.1:9298].
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory holding all data [default: /var/lib/berth/blob-server].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tenants file (TOML); without it, one anonymous namespace.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// Follow berthd's registry for tenants (e.g. http://127.0.0.1:7100) instead of a file.
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// File holding the berthd service token for --registry.
    #[arg(long = "registry-token", value_name = "FILE")]
    pub registry_token_file: Option<PathBuf>,
    /// Largest object, e.g. 5GiB.
    #[arg(long, value_name = "SIZE")]
    pub max_object_size: Option<ByteSize>,
    /// Connections served at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Worker threads (0: one per CPU).
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
    /// Validate the configuration (and tenants file) and exit.
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
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.tenants {
            c.tenants = Some(v);
        }
        if let Some(v) = self.registry {
            c.registry = Some(v);
        }
        if let Some(v) = self.registry_token_file {
            c.registry_token_file = Some(v);
        }
        if let Some(v) = self.max_object_size {
            c.max_object_size = v;
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
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let e = berth_common::config::from_toml_str::<Config>(
            "listen = \"127.0.0.1:1\"\nquota = 1\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f:2"), "{e}");
        assert!(e.contains("quota"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let c = Config {
            small_object_max: ByteSize(1 << 40),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("small_max"));
        let c = Config {
            max_list_page: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("max_list_page"));
    }

    #[test]
    fn s3_storage_is_checked() {
        let mut c: Config = berth_common::config::from_toml_str(
            "[storage]\nbackend = \"s3\"\nbucket = \"b\"\nprefix = \"p\"\n",
            "t",
        )
        .unwrap();
        let e = c.validate().unwrap_err();
        if cfg!(feature = "s3") {
            assert!(e.contains("prefix"), "{e}");
            c.storage.prefix = "p/".into();
            c.validate().unwrap();
            c.storage.part_size = ByteSize(1 << 20);
            assert!(c.validate().unwrap_err().contains("part_size"));
        } else {
            assert!(e.contains("--features s3"), "{e}");
        }
    }
}
