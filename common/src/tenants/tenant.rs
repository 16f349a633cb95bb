//! The one `Tenant` type: an app's tokens and every limit any service enforces for it, so a
//! single tenants file (or registry entry) configures the whole suite.

use serde::{Deserialize, Serialize};

use super::{hash_token, AppName, TenantError, TokenHash};
use crate::config::{ByteSize, HumanDuration};

/// An app, its tokens and its limits. Operators set these; an app never sets its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawTenant")]
pub struct Tenant {
    /// The app's name.
    pub name: AppName,
    /// Hashes of the app's tokens (several, so they can be rotated).
    pub tokens: Vec<TokenHash>,
    /// Cache memory reserved for the app (cache server).
    pub cache_bytes: ByteSize,
    /// Blob storage quota (blob server).
    pub blob_bytes: ByteSize,
    /// Database size limit; writes are refused past it (query proxy).
    pub db_bytes: ByteSize,
    /// How long log records are kept (log collector).
    pub log_retention: HumanDuration,
    /// Log storage quota (log collector).
    pub log_bytes: ByteSize,
    /// Log events accepted per second (log collector).
    pub log_rate: u32,
    /// Largest single object (blob server).
    pub max_object_bytes: ByteSize,
    /// Connections open at once, per service.
    pub max_connections: u32,
    /// Longest a statement may run (query proxy).
    pub statement_timeout: HumanDuration,
    /// Largest result set returned (query proxy).
    pub max_result_bytes: ByteSize,
    /// Most processes the app's manifest may ask for (deployer).
    pub max_processes: u32,
    /// Most memory per process the manifest may ask for (deployer).
    pub max_memory: ByteSize,
    /// Most CPUs the manifest may ask for (deployer).
    pub max_cpu: f64,
    /// Requests in flight at once (router).
    pub max_concurrent_requests: u32,
    /// Largest request body (router).
    pub max_body_bytes: ByteSize,
    /// Longest a request may take (router).
    pub request_timeout: HumanDuration,
}

/// The defaults of ARCHITECTURE.md's tenants example, as functions for serde's `default = "…"`.
mod defaults {
    use super::{ByteSize, HumanDuration};

    pub fn cache_bytes() -> ByteSize {
        ByteSize::mib(64)
    }
    pub fn blob_bytes() -> ByteSize {
        ByteSize::gib(100)
    }
    pub fn db_bytes() -> ByteSize {
        ByteSize::gib(1)
    }
    pub fn log_retention() -> HumanDuration {
        HumanDuration::days(7)
    }
    pub fn log_bytes() -> ByteSize {
        ByteSize::gib(1)
    }
    pub fn log_rate() -> u32 {
        1000
    }
    pub fn max_object_bytes() -> ByteSize {
        ByteSize::gib(5)
    }
    pub fn max_connections() -> u32 {
        64
    }
    pub fn statement_timeout() -> HumanDuration {
        HumanDuration::secs(10)
    }
    pub fn max_result_bytes() -> ByteSize {
        ByteSize::mib(64)
    }
    pub fn max_processes() -> u32 {
        4
    }
    pub fn max_memory() -> ByteSize {
        ByteSize::mib(512)
    }
    pub fn max_cpu() -> f64 {
        1.0
    }
    pub fn max_concurrent_requests() -> u32 {
        64
    }
    pub fn max_body_bytes() -> ByteSize {
        ByteSize::mib(32)
    }
    pub fn request_timeout() -> HumanDuration {
        HumanDuration::secs(60)
    }
}

impl Tenant {
    /// An app with no tokens and the default limits.
    pub fn new(name: AppName) -> Tenant {
        Tenant {
            name,
            tokens: Vec::new(),
            cache_bytes: defaults::cache_bytes(),
            blob_bytes: defaults::blob_bytes(),
            db_bytes: defaults::db_bytes(),
            log_retention: defaults::log_retention(),
            log_bytes: defaults::log_bytes(),
            log_rate: defaults::log_rate(),
            max_object_bytes: defaults::max_object_bytes(),
            max_connections: defaults::max_connections(),
            statement_timeout: defaults::statement_timeout(),
            max_result_bytes: defaults::max_result_bytes(),
            max_processes: defaults::max_processes(),
            max_memory: defaults::max_memory(),
            max_cpu: defaults::max_cpu(),
            max_concurrent_requests: defaults::max_concurrent_requests(),
            max_body_bytes: defaults::max_body_bytes(),
            request_timeout: defaults::request_timeout(),
        }
    }

    /// Whether `token` is one of the app's tokens. Checks every entry, in constant time.
    pub fn verify_token(&self, token: &str) -> bool {
        let digest = hash_token_sha256(token);
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |found, t| {
                found | t.matches_sha256(&digest)
            })
            .into()
    }

    /// Refuses values no service could enforce.
    pub fn validate(&self) -> Result<(), TenantError> {
        if !self.max_cpu.is_finite() || self.max_cpu <= 0.0 {
            return Err(TenantError::InvalidLimit {
                app: self.name.to_string(),
                field: "max_cpu",
                reason: format!("must be a positive number of CPUs, got {}", self.max_cpu),
            });
        }
        Ok(())
    }
}

pub(super) fn hash_token_sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// A tenant entry as written in a file: `Tenant` plus the development shorthand
/// `token = "…"`. Every field of `Tenant` is listed here too; the struct literal in `try_from`
/// makes the compiler catch a field added to one and not the other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: AppName,
    #[serde(default)]
    tokens: Vec<TokenHash>,
    /// Development only: a plaintext token, hashed on load.
    #[serde(default)]
    token: Option<String>,
    #[serde(default = "defaults::cache_bytes")]
    cache_bytes: ByteSize,
    #[serde(default = "defaults::blob_bytes")]
    blob_bytes: ByteSize,
    #[serde(default = "defaults::db_bytes")]
    db_bytes: ByteSize,
    #[serde(default = "defaults::log_retention")]
    log_retention: HumanDuration,
    #[serde(default = "defaults::log_bytes")]
    log_bytes: ByteSize,
    #[serde(default = "defaults::log_rate")]
    log_rate: u32,
    #[serde(default = "defaults::max_object_bytes")]
    max_object_bytes: ByteSize,
    #[serde(default = "defaults::max_connections")]
    max_connections: u32,
    #[serde(default = "defaults::statement_timeout")]
    statement_timeout: HumanDuration,
    #[serde(default = "defaults::max_result_bytes")]
    max_result_bytes: ByteSize,
    #[serde(default = "defaults::max_processes")]
    max_processes: u32,
    #[serde(default = "defaults::max_memory")]
    max_memory: ByteSize,
    #[serde(default = "defaults::max_cpu")]
    max_cpu: f64,
    #[serde(default = "defaults::max_concurrent_requests")]
    max_concurrent_requests: u32,
    #[serde(default = "defaults::max_body_bytes")]
    max_body_bytes: ByteSize,
    #[serde(default = "defaults::request_timeout")]
    request_timeout: HumanDuration,
}

impl TryFrom<RawTenant> for Tenant {
    type Error = TenantError;

    fn try_from(raw: RawTenant) -> Result<Tenant, TenantError> {
        let mut tokens = raw.tokens;
        if let Some(token) = raw.token {
            if token.is_empty() {
                return Err(TenantError::InvalidToken(format!(
                    "app {}: token is empty",
                    raw.name
                )));
            }
            tokens.push(hash_token(&token));
        }
        let tenant = Tenant {
            name: raw.name,
            tokens,
            cache_bytes: raw.cache_bytes,
            blob_bytes: raw.blob_bytes,
            db_bytes: raw.db_bytes,
            log_retention: raw.log_retention,
            log_bytes: raw.log_bytes,
            log_rate: raw.log_rate,
            max_object_bytes: raw.max_object_bytes,
            max_connections: raw.max_connections,
            statement_timeout: raw.statement_timeout,
            max_result_bytes: raw.max_result_bytes,
            max_processes: raw.max_processes,
            max_memory: raw.max_memory,
            max_cpu: raw.max_cpu,
            max_concurrent_requests: raw.max_concurrent_requests,
            max_body_bytes: raw.max_body_bytes,
            request_timeout: raw.request_timeout,
        };
        tenant.validate()?;
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Tenant, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_architecture() {
        let t = parse("name = \"guestbook\"").unwrap();
        assert_eq!(t, Tenant::new(AppName::parse("guestbook").unwrap()));
        assert!(t.tokens.is_empty());
        assert_eq!(t.cache_bytes, ByteSize(64 << 20));
        assert_eq!(t.blob_bytes, ByteSize(100 << 30));
        assert_eq!(t.db_bytes, ByteSize(1 << 30));
        assert_eq!(t.log_retention.0, Duration::from_secs(7 * 86400));
        assert_eq!(t.log_bytes, ByteSize(1 << 30));
        assert_eq!(t.log_rate, 1000);
        assert_eq!(t.max_object_bytes, ByteSize(5 << 30));
        assert_eq!(t.max_connections, 64);
        assert_eq!(t.statement_timeout.0, Duration::from_secs(10));
        assert_eq!(t.max_result_bytes, ByteSize(64 << 20));
        assert_eq!(t.max_processes, 4);
        assert_eq!(t.max_memory, ByteSize(512 << 20));
        assert_eq!(t.max_cpu, 1.0);
        assert_eq!(t.max_concurrent_requests, 64);
        assert_eq!(t.max_body_bytes, ByteSize(32 << 20));
        assert_eq!(t.request_timeout.0, Duration::from_secs(60));
    }

    #[test]
    fn architecture_example_parses() {
        let text = r#"
name = "guestbook"
tokens = [{ sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", mysql_native = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19" }]
cache_bytes = "16MiB"
blob_bytes = "10GiB"
db_bytes = "2GiB"
log_retention = "30d"
log_bytes = "512MiB"
log_rate = 50
max_object_bytes = "1GiB"
max_connections = 8
statement_timeout = "5s"
max_result_bytes = "1MiB"
max_processes = 2
max_memory = "256MiB"
max_cpu = 0.5
max_concurrent_requests = 16
max_body_bytes = "1MiB"
request_timeout = "30s"
"#;
        let t = parse(text).unwrap();
        assert!(t.verify_token("password"));
        assert_eq!(t.cache_bytes, ByteSize::mib(16));
        assert_eq!(t.log_retention, HumanDuration::days(30));
        assert_eq!(t.max_cpu, 0.5);
        assert_eq!(t.request_timeout, HumanDuration::secs(30));

        // What we print parses back to the same tenant.
        let printed = toml::to_string(&t).unwrap();
        assert_eq!(parse(&printed).unwrap(), t);
    }

    #[test]
    fn token_shorthand_adds_to_tokens() {
        let t = parse("name = \"a\"\ntoken = \"dev\"\ntokens = [{ token = \"other\" }]").unwrap();
        assert_eq!(t.tokens.len(), 2);
        assert!(t.verify_token("dev"));
        assert!(t.verify_token("other"));
        assert!(!t.verify_token("nope"));
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let err = parse("name = \"a\"\ncache_byts = \"1MiB\"").unwrap_err();
        assert!(err.contains("unknown field `cache_byts`"), "{err}");
        let err = parse("cache_bytes = \"1MiB\"").unwrap_err();
        assert!(err.contains("missing field `name`"), "{err}");
        let err = parse("name = \"a\"\nmax_cpu = 0").unwrap_err();
        assert!(err.contains("max_cpu"), "{err}");
        let err = parse("name = \"a\"\nmax_cpu = -1.0").unwrap_err();
        assert!(err.contains("positive"), "{err}");
        let err = parse("name = \"a\"\ntoken = \"\"").unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = parse("name = \"a\"\nmax_connections = -1").unwrap_err();
        assert!(
            err.contains("max_connections") || err.contains("invalid value"),
            "{err}"
        );
    }
}
