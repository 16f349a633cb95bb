//! The route table: its JSON form (what berthd pushes with `PUT /v1/routes`, and what is kept
//! in `routes.json`), validation, the compiled form requests read, and the atomic swap.
//!
//! Every request loads one `Arc<Table>` and uses only it, so it sees either the old or the
//! new table, never a mix. Tables are replaced whole.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use berth_common::config::{ByteSize, HumanDuration};
use berth_common::tenants::AppName;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendAddr, ConnectOptions, Registry};
use crate::config::AppDefaults;
use crate::routing::{normalize_host, valid_prefix, IndexEntry, RouteIndex};
use crate::stats::{AppStats, Stats};

/// Version of the `routes.json` file format.
pub const FILE_FORMAT: u32 = 1;

/// The route table as pushed by berthd.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    /// Increases with every table berthd pushes.
    pub generation: u64,
    /// Every app served.
    #[serde(default)]
    pub apps: Vec<AppRoute>,
}

/// One app in the route table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRoute {
    /// The app's name; it is served at `NAME.<domain>` for every configured domain.
    pub name: String,
    /// Extra host names of the app (lowercase, no port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Optional path prefix (`/name`): requests under it on any other host go to the app with
    /// the prefix stripped and `X-Berth-Script-Name` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The live version's processes: `host:port`, `unix:/path`. Empty: 503.
    #[serde(default)]
    pub backends: Vec<String>,
    /// Version label (access logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Release label (access logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Limits; unset ones come from the router's `[app_defaults]`.
    #[serde(default)]
    pub limits: AppLimits,
    /// Where the app's access logs go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogTarget>,
}

/// Per-app limits of the route table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppLimits {
    /// Largest request body (`"32MiB"` or bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<ByteSize>,
    /// Time to the response headers (`"60s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<HumanDuration>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
}

/// The log collector stream of an app's access logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTarget {
    /// The collector's JSON lines address, `host:port`.
    pub addr: String,
    /// The token the router presents for the app (write-only: `GET` shows its hash).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// SHA-256 (hex) of the token; output only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl RouteTable {
    /// The table as `GET /v1/routes` shows it: log tokens replaced by their hashes.
    pub fn redacted(&self) -> RouteTable {
        let mut t = self.clone();
        for app in &mut t.apps {
            if let Some(l) = &mut app.logs {
                l.token_sha256 = Some(hex::encode(Sha256::digest(l.token.as_bytes())));
                l.token.clear();
            }
        }
        t
    }
}

/// Resolved limits of one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Time to the response headers.
    pub request_timeout: Duration,
    /// Requests in flight at once.
    pub max_concurrent_requests: u32,
}

/// One app of the compiled table.
pub struct App {
    /// Its name.
    pub name: String,
    /// Version label.
    pub version: Option<String>,
    /// Release label.
    pub release: Option<String>,
    /// Current backends.
    pub backends: Vec<Arc<Backend>>,
    /// Resolved limits.
    pub limits: Limits,
    /// Access log target with the app name, shared by its events.
    pub logs: Option<Arc<crate::accesslog::Target>>,
    /// Its metrics.
    pub stats: Arc<AppStats>,
    /// Load balancer rotation.
    pub rotor: AtomicUsize,
}

/// A compiled route table.
pub struct Table {
    /// The table as pushed.
    pub source: RouteTable,
    /// Apps in table order.
    pub apps: Vec<Arc<App>>,
    /// Host and prefix lookup.
    pub index: RouteIndex,
}

impl Table {
    /// The app called `name`.
    pub fn app(&self, name: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.name == name)
    }
}

/// Why a table was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Not JSON of the table's shape.
    #[error("invalid route table JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is invalid; the message names the app and the field.
    #[error("{0}")]
    Invalid(String),
    /// The generation is not newer than the table in use.
    #[error("generation {got} is not newer than the router's generation {current}; push a table with a higher generation")]
    Stale {
        /// The pushed generation.
        got: u64,
        /// The one in use.
        current: u64,
    },
    /// The table could not be stored; the old one stays.
    #[error("cannot store the route table: {0}")]
    Store(#[from] std::io::Error),
}

/// What a compile needs beside the table.
pub struct Compiler<'a> {
    /// Domains apps are served under.
    pub domains: &'a [String],
    /// Limits where the table sets none.
    pub defaults: &'a AppDefaults,
    /// Shared backends.
    pub registry: &'a Registry,
    /// Backend connection settings.
    pub connect: &'a ConnectOptions,
    /// Shared app stats.
    pub stats: &'a Stats,
}

impl Compiler<'_> {
    /// Validates and compiles `t`, with a message naming the app and field on failure.
    pub fn compile(&self, t: RouteTable) -> Result<Table, TableError> {
        let bad = |app: &str, msg: String| TableError::Invalid(format!("app {app:?}: {msg}"));
        let mut apps = Vec::with_capacity(t.apps.len());
        let mut hosts = Vec::with_capacity(t.apps.len());
        for (i, a) in t.apps.iter().enumerate() {
            AppName::parse(&a.name).map_err(|e| TableError::Invalid(format!("apps[{i}]: {e}")))?;
            if t.apps[..i].iter().any(|o| o.name == a.name) {
                return Err(bad(&a.name, "listed twice".into()));
            }
            let mut normalized = Vec::with_capacity(a.hosts.len());
            for h in &a.hosts {
                match normalize_host(h) {
                    Some(n) if &n == h => normalized.push(n),
                    _ => {
                        return Err(bad(
                            &a.name,
                            format!("hosts: {h:?} is not a lowercase host name without port"),
                        ))
                    }
                }
            }
            hosts.push(normalized);
            if let Some(p) = &a.prefix {
                if !valid_prefix(p) {
                    return Err(bad(
                        &a.name,
                        format!("prefix {p:?} must look like \"/name\" (segments of A-Z a-z 0-9 - . _ ~, no trailing slash)"),
                    ));
                }
            }
            let mut backends = Vec::with_capacity(a.backends.len());
            for b in &a.backends {
                let addr = BackendAddr::parse(b).map_err(|e| bad(&a.name, e))?;
                backends.push(self.registry.get(&addr, self.connect));
            }
            let l = &a.limits;
            let limits = Limits {
                max_body_bytes: l.max_body_bytes.unwrap_or(self.defaults.max_body_bytes).0,
                request_timeout: l.request_timeout.unwrap_or(self.defaults.request_timeout).0,
                max_concurrent_requests: l
                    .max_concurrent_requests
                    .unwrap_or(self.defaults.max_concurrent_requests),
            };
            if limits.max_concurrent_requests == 0 {
                return Err(bad(
                    &a.name,
                    "limits.max_concurrent_requests must be at least 1".into(),
                ));
            }
            if limits.request_timeout.is_zero() {
                return Err(bad(
                    &a.name,
                    "limits.request_timeout must be more than 0s".into(),
                ));
            }
            let logs = match &a.logs {
                None => None,
                Some(l) => {
                    if l.token.is_empty() {
                        return Err(bad(
                            &a.name,
                            "logs.token is required (the app's log collector token)".into(),
                        ));
                    }
                    if !l.addr.contains(':') {
                        return Err(bad(
                            &a.name,
                            format!("logs.addr {:?} must be host:port", l.addr),
                        ));
                    }
                    Some(Arc::new(crate::accesslog::Target {
                        addr: l.addr.clone(),
                        app: a.name.clone(),
                        token: l.token.clone(),
                    }))
                }
            };
            apps.push(Arc::new(App {
                name: a.name.clone(),
                version: a.version.clone(),
                release: a.release.clone(),
                backends,
                limits,
                logs,
                stats: self.stats.app(&a.name),
                rotor: AtomicUsize::new(0),
            }));
        }
        let entries: Vec<IndexEntry<'_>> = t
            .apps
            .iter()
            .zip(&hosts)
            .map(|(a, h)| IndexEntry {
                name: &a.name,
                hosts: h,
                prefix: a.prefix.as_deref(),
            })
            .collect();
        let index = RouteIndex::build(&entries, self.domains)
            .map_err(|e| TableError::Invalid(e.to_string()))?;
        Ok(Table {
            source: t,
            apps,
            index,
        })
    }
}

/// The table in use, swapped atomically, and its file.
pub struct Routes {
    current: RwLock<Arc<Table>>,
    /// Serializes replacements, so the file and the table in memory change in one order.
    writer: Mutex<()>,
    path: PathBuf,
}

/// The `routes.json` file: the table with a format header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    format: u32,
    table: RouteTable,
}

/// What `replace` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The table is in use now.
    Applied,
    /// The same generation with the same content: nothing changed.
    Unchanged,
}

impl Routes {
    /// Starts with `table`, kept at `path`.
    pub fn new(table: Table, path: PathBuf) -> Routes {
        Routes {
            current: RwLock::new(Arc::new(table)),
            writer: Mutex::new(()),
            path,
        }
    }

    /// The table in use.
    pub fn load(&self) -> Arc<Table> {
        self.current.read().clone()
    }

    /// Stores `table` durably, then puts it in use, if its generation is newer.
    pub fn replace(&self, table: Table) -> Result<Replaced, TableError> {
        let _w = self.writer.lock();
        let current = self.load();
        let (got, have) = (table.source.generation, current.source.generation);
        if got == have && table.source == current.source {
            return Ok(Replaced::Unchanged);
        }
        if got <= have {
            return Err(TableError::Stale { got, current: have });
        }
        save(&self.path, &table.source)?;
        *self.current.write() = Arc::new(table);
        Ok(Replaced::Applied)
    }
}

/// Reads the stored table; `None` when there is none yet.
pub fn load_file(path: &Path) -> Result<Option<RouteTable>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: RoutesFile = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a route table file: {e}", path.display()))?;
    if file.format != FILE_FORMAT {
        return Err(format!(
            "{}: format {} is not supported (this router reads format {FILE_FORMAT})",
            path.display(),
            file.format
        ));
    }
    Ok(Some(file.table))
}

/// Writes `table` durably: a temp file (mode 0600: it holds log tokens), fsync, rename,
/// fsync of the directory. The temp file is removed on any failure.
pub fn save(path: &Path, table: &RouteTable) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    struct Guard<'a>(&'a Path, bool);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut guard = Guard(&tmp, false);
    let data = serde_json::to_vec_pretty(&RoutesFile {
        format: FILE_FORMAT,
        table: table.clone(),
    })
    .map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    guard.1 = true;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        domains: Vec<String>,
        defaults: AppDefaults,
        registry: Registry,
        connect: ConnectOptions,
        stats: Stats,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                domains: vec!["localhost".into()],
                defaults: AppDefaults::default(),
                registry: Registry::default(),
                connect: ConnectOptions {
                    connect_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(1),
                    max_idle: 1,
                    down_time: Duration::from_secs(1),
                },
                stats: Stats::default(),
            }
        }
        fn compiler(&self) -> Compiler<'_> {
            Compiler {
                domains: &self.domains,
                defaults: &self.defaults,
                registry: &self.registry,
                connect: &self.connect,
                stats: &self.stats,
            }
        }
    }

    fn table(generation: u64, backend: &str) -> RouteTable {
        serde_json::from_value(serde_json::json!({
            "generation": generation,
            "apps": [{
                "name": "shop",
                "hosts": ["shop.example.com"],
                "prefix": "/shop",
                "backends": [backend],
                "version": "1.0.0",
                "limits": {"max_body_bytes": "1KiB", "request_timeout": "5s"},
                "logs": {"addr": "127.0.0.1:5170", "token": "secret"}
            }]
        }))
        .unwrap()
    }

    #[test]
    fn compiles_with_defaults_and_refuses_bad_fields() {
        let f = Fixture::new();
        let t = f.compiler().compile(table(1, "127.0.0.1:9000")).unwrap();
        let app = t.app("shop").unwrap();
        assert_eq!(app.limits.max_body_bytes, 1024);
        assert_eq!(app.limits.request_timeout, Duration::from_secs(5));
        assert_eq!(app.limits.max_concurrent_requests, 64);

        let cases: [(&str, serde_json::Value); 7] = [
            ("invalid app name", serde_json::json!({"name": "Shop"})),
            (
                "hosts",
                serde_json::json!({"name": "a", "hosts": ["A.com"]}),
            ),
            ("prefix", serde_json::json!({"name": "a", "prefix": "x"})),
            (
                "backend",
                serde_json::json!({"name": "a", "backends": ["nope"]}),
            ),
            (
                "max_concurrent",
                serde_json::json!({"name": "a", "limits": {"max_concurrent_requests": 0}}),
            ),
            (
                "logs.token",
                serde_json::json!({"name": "a", "logs": {"addr": "h:1"}}),
            ),
            (
                "unknown field",
                serde_json::json!({"name": "a", "colour": "red"}),
            ),
        ];
        for (want, app) in cases {
            let res = serde_json::from_value::<RouteTable>(
                serde_json::json!({"generation": 1, "apps": [app]}),
            )
            .map_err(TableError::from)
            .and_then(|t| f.compiler().compile(t));
            let msg = res.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(want), "{want}: {msg}");
        }
    }

    #[test]
    fn swap_is_whole_and_generations_only_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        let f = Fixture::new();
        let routes = Routes::new(
            f.compiler().compile(RouteTable::default()).unwrap(),
            path.clone(),
        );
        let before = routes.load();
        let t1 = f.compiler().compile(table(1, "127.0.0.1:9000")).unwrap();
        assert_eq!(routes.replace(t1).unwrap(), Replaced::Applied);
        // A request that loaded the old table keeps it whole.
        assert!(before.apps.is_empty());
        let now = routes.load();
        assert_eq!(now.source.generation, 1);
        assert_eq!(now.apps[0].backends[0].addr.to_string(), "127.0.0.1:9000");

        let same = f.compiler().compile(table(1, "127.0.0.1:9000")).unwrap();
        assert_eq!(routes.replace(same).unwrap(), Replaced::Unchanged);
        let clash = f.compiler().compile(table(1, "127.0.0.1:9001")).unwrap();
        assert!(matches!(
            routes.replace(clash),
            Err(TableError::Stale { .. })
        ));
        let old = f.compiler().compile(table(0, "127.0.0.1:9001")).unwrap();
        assert!(matches!(routes.replace(old), Err(TableError::Stale { .. })));
        let t2 = f.compiler().compile(table(2, "127.0.0.1:9001")).unwrap();
        routes.replace(t2).unwrap();
        // The same app keeps its stats; the new backend is what new requests get.
        assert!(Arc::ptr_eq(
            &now.apps[0].stats,
            &routes.load().apps[0].stats
        ));
        assert_eq!(
            routes.load().apps[0].backends[0].addr.to_string(),
            "127.0.0.1:9001"
        );

        let stored = load_file(&path).unwrap().unwrap();
        assert_eq!(stored, table(2, "127.0.0.1:9001"));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn redacted_hides_tokens() {
        let t = table(1, "127.0.0.1:1").redacted();
        let l = t.apps[0].logs.as_ref().unwrap();
        assert!(l.token.is_empty());
        assert_eq!(
            l.token_sha256.as_deref(),
            Some(hex::encode(Sha256::digest(b"secret")).as_str())
        );
        let text = serde_json::to_string(&t).unwrap();
        assert!(!text.contains("\"secret\""), "{text}");
    }

    #[test]
    fn missing_or_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_file(&dir.path().join("none.json")).unwrap(), None);
        let p = dir.path().join("bad.json");
        std::fs::write(&p, b"{\"format\": 9, \"table\": {\"generation\": 1}}").unwrap();
        assert!(load_file(&p).unwrap_err().contains("format 9"));
    }
}
