//! Tenants (apps): names, token hashes, per-app limits, the set a service serves, and its
//! reload on SIGHUP. See ARCHITECTURE.md, "Tenants (apps), tokens and operators".

mod handle;
mod name;
pub mod registry;
mod set;
mod tenant;
mod token;

use std::path::PathBuf;

pub use handle::{reload_on_sighup, Operators, ReloadStatus, TenantsHandle};
pub use name::{AppName, MAX_APP_NAME_LEN, RESERVED_APP_NAMES};
pub use set::{looks_like_authfile, TenantSet};
pub use tenant::Tenant;
pub use token::{generate_token, hash_token, OperatorTokens, TokenHash};

use crate::config::ConfigError;

/// Why a name, a token, or a tenants file was refused.
#[derive(thiserror::Error, Debug)]
pub enum TenantError {
    /// The app name breaks the naming rules.
    #[error("invalid app name {name:?}: {reason}")]
    InvalidAppName {
        /// The refused name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A token entry or a token hash is malformed.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// An operator token hash is malformed.
    #[error("invalid operator token hash #{index}: {reason}")]
    InvalidOperatorHash {
        /// Its position in the list, from 1.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A limit has a value no service can use.
    #[error("app {app}: invalid {field}: {reason}")]
    InvalidLimit {
        /// The app.
        app: String,
        /// The key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two entries for the same app.
    #[error("app {0} is listed twice")]
    DuplicateApp(String),
    /// The tenants file could not be read.
    #[error("cannot read tenants file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML tenants file is malformed (the message names the line and key).
    #[error(transparent)]
    Toml(#[from] ConfigError),
    /// A line of a memcached authfile is malformed.
    #[error("{origin}:{line}: {reason}")]
    Authfile {
        /// The file name.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// The service refused an otherwise valid set (e.g. cache budgets over the memory limit).
    #[error("tenants refused: {0}")]
    Rejected(String),
}
