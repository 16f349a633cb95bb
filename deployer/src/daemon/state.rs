//! berthd's state: apps, their tokens (hashes only), limits and the audit history, in redb.
//!
//! redb (already the blob server's metadata store) gives ACID transactions with a
//! copy-on-write B-tree and a commit that is durable when it returns, so everything berthd
//! acknowledged survives `kill -9`; it is pure Rust and embedded. Records are JSON values
//! keyed by name, id or sequence number: small, readable, and free to grow fields.
//!
//! The registry view (the tenants TOML every service reads) is derived from the apps and
//! tokens after each change and validated by the shared `TenantSet` parser before the
//! change commits, so berthd never publishes limits a service would refuse.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_common::tenants::{hash_token, AppName, TenantSet};
use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const APPS: TableDefinition<&str, &str> = TableDefinition::new("apps");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// An app as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    /// Its name.
    pub name: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Limits set by operators (tenant key -> value as written, e.g. "64MiB").
    pub limits: BTreeMap<String, String>,
}

/// A token as stored: never the token, only its hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The first 12 hex digits of its SHA-256.
    pub id: String,
    /// Its app.
    pub app: String,
    /// A label for people.
    pub label: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// SHA-256, hex.
    pub sha256: String,
    /// `mysql_native_password` hash, `*` and 40 uppercase hex digits.
    pub mysql_native: String,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// The app concerned, or empty.
    pub app: String,
    /// What.
    pub action: String,
    /// Details.
    pub detail: String,
}

/// What a state change can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Bad input; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No such app or token.
    #[error("{0}")]
    NotFound(String),
    /// The app exists already.
    #[error("{0}")]
    Exists(String),
    /// The storage failed.
    #[error("state database: {0}")]
    Storage(String),
}

fn storage<E: std::fmt::Display>(e: E) -> StateError {
    StateError::Storage(e.to_string())
}

/// The registry's view: a generation and the tenants TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Grows with every change.
    pub generation: u64,
    /// The tenants file every service reads.
    pub tenants_toml: String,
}

/// The state store and its in-memory indexes.
pub struct State {
    pub(crate) db: Database,
    /// Token SHA-256 (hex) -> (app, token id), for authenticating calls.
    tokens: Mutex<HashMap<String, (String, String)>>,
    registry: watch::Sender<Arc<Registry>>,
    pub(crate) write: tokio::sync::Mutex<()>,
    /// The cache servers' memory that apps' `cache_bytes` are reserved from (0: unchecked).
    cache_memory: std::sync::atomic::AtomicU64,
    /// berthd's operator token hashes (hex), streamed to the services with the tenants.
    operators: Mutex<Vec<String>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A limit value as TOML: numbers and booleans bare, everything else a string.
pub(crate) fn toml_value(value: &str) -> String {
    let bare = value.parse::<i64>().is_ok()
        || value == "true"
        || value == "false"
        || (value.parse::<f64>().is_ok() && value.contains('.'));
    if bare {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

fn tenants_toml(apps: &[AppRecord], tokens: &[TokenRecord], operators: &[String]) -> String {
    let mut out = String::new();
    if !operators.is_empty() {
        // berthd's operator tokens (hashes): every service following the registry accepts
        // them besides its own configured ones.
        let quoted: Vec<String> = operators.iter().map(|h| format!("\"{h}\"")).collect();
        out.push_str(&format!("operator_tokens = [{}]\n\n", quoted.join(", ")));
    }
    for app in apps {
        out.push_str("[[app]]\n");
        out.push_str(&format!("name = \"{}\"\n", app.name));
        let hashes: Vec<String> = tokens
            .iter()
            .filter(|t| t.app == app.name)
            .map(|t| {
                format!(
                    "{{ sha256 = \"{}\", mysql_native = \"{}\" }}",
                    t.sha256, t.mysql_native
                )
            })
            .collect();
        out.push_str(&format!("tokens = [{}]\n", hashes.join(", ")));
        for (k, v) in &app.limits {
            out.push_str(&format!("{k} = {}\n", toml_value(v)));
        }
        out.push('\n');
    }
    out
}

/// The apps' cache budgets added up (an invalid set, which `mutate` never stores, counts 0).
fn cache_total(apps: &[AppRecord], tokens: &[TokenRecord]) -> u64 {
    TenantSet::from_toml_str(&tenants_toml(apps, tokens, &[]))
        .map(|set| set.iter().map(|t| t.cache_bytes.0).sum())
        .unwrap_or(0)
}

impl State {
    /// Opens (or creates) the state database at `path`.
    pub fn open(path: &Path) -> Result<Arc<State>, StateError> {
        let db = Database::create(path).map_err(storage)?;
        {
            let tx = db.begin_write().map_err(storage)?;
            tx.open_table(APPS).map_err(storage)?;
            tx.open_table(TOKENS).map_err(storage)?;
            tx.open_table(EVENTS).map_err(storage)?;
            tx.open_table(META).map_err(storage)?;
            tx.commit().map_err(storage)?;
        }
        let (registry, _) = watch::channel(Arc::new(Registry {
            generation: 0,
            tenants_toml: String::new(),
        }));
        let state = Arc::new(State {
            db,
            tokens: Mutex::new(HashMap::new()),
            registry,
            write: tokio::sync::Mutex::new(()),
            cache_memory: std::sync::atomic::AtomicU64::new(0),
            operators: Mutex::new(Vec::new()),
        });
        state.refresh()?;
        Ok(state)
    }

    /// Sets the cache servers' memory (`[services] cache_memory`, their `-m`): from then on a
    /// change that makes the apps' `cache_bytes` add up to more is refused. 0: unchecked.
    pub fn set_cache_memory(&self, bytes: u64) {
        self.cache_memory
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets berthd's operator token hashes (hex), which the registry streams with the tenants
    /// so that every service following it accepts berthd's operator tokens. When they differ
    /// from those last published by this state (a new token, or a state from before they were
    /// streamed), the generation is bumped so that services that know the current one get
    /// them too.
    pub fn set_operators(&self, mut hashes: Vec<String>) -> Result<(), StateError> {
        hashes.sort();
        let fingerprint = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(hashes.join(",").as_bytes());
            u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]))
        };
        *self.operators.lock() = hashes;
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut t = tx.open_table(META).map_err(storage)?;
            let before = t.get("operators").map_err(storage)?.map(|v| v.value());
            let generation = t
                .get("generation")
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0);
            if before != Some(fingerprint) {
                t.insert("operators", fingerprint).map_err(storage)?;
                // A fresh state has published nothing yet: no bump needed.
                if before.is_some() || generation > 0 {
                    t.insert("generation", generation + 1).map_err(storage)?;
                }
            }
        }
        tx.commit().map_err(storage)?;
        self.refresh()
    }

    /// Rebuilds the token index and the registry view from the database.
    fn refresh(&self) -> Result<(), StateError> {
        let (apps, tokens, generation) = self.snapshot()?;
        let mut index = HashMap::new();
        for t in &tokens {
            index.insert(t.sha256.clone(), (t.app.clone(), t.id.clone()));
        }
        *self.tokens.lock() = index;
        let operators = self.operators.lock().clone();
        self.registry.send_replace(Arc::new(Registry {
            generation,
            tenants_toml: tenants_toml(&apps, &tokens, &operators),
        }));
        Ok(())
    }

    fn snapshot(&self) -> Result<(Vec<AppRecord>, Vec<TokenRecord>, u64), StateError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let apps = read_all::<AppRecord>(&tx.open_table(APPS).map_err(storage)?)?;
        let tokens = read_all::<TokenRecord>(&tx.open_table(TOKENS).map_err(storage)?)?;
        let generation = tx
            .open_table(META)
            .map_err(storage)?
            .get("generation")
            .map_err(storage)?
            .map(|g| g.value())
            .unwrap_or(0);
        Ok((apps, tokens, generation))
    }

    /// The registry view, and changes to it.
    pub fn registry(&self) -> watch::Receiver<Arc<Registry>> {
        self.registry.subscribe()
    }

    /// The (app, token id) a token belongs to.
    pub fn token_owner(&self, token: &str) -> Option<(String, String)> {
        let sha = hex::encode(hash_token(token).sha256);
        self.tokens.lock().get(&sha).cloned()
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StateError> {
        Ok(self.snapshot()?.0)
    }

    /// One app.
    pub fn app(&self, name: &str) -> Result<AppRecord, StateError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(APPS).map_err(storage)?;
        let found = table.get(name).map_err(storage)?;
        match found {
            Some(v) => serde_json::from_str(v.value()).map_err(storage),
            None => Err(StateError::NotFound(format!("no app named {name:?}"))),
        }
    }

    /// The tokens of `app`.
    pub fn tokens_of(&self, app: &str) -> Result<Vec<TokenRecord>, StateError> {
        Ok(self
            .snapshot()?
            .1
            .into_iter()
            .filter(|t| t.app == app)
            .collect())
    }

    /// Events, newest first: of `app` (or all when None), before `before_seq` (0: from the
    /// newest), at most `limit`.
    pub fn events(
        &self,
        app: Option<&str>,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StateError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let table = tx.open_table(EVENTS).map_err(storage)?;
        let upper = if before_seq == 0 {
            u64::MAX
        } else {
            before_seq
        };
        let mut out = Vec::new();
        for row in table.range(..upper).map_err(storage)?.rev() {
            let (_, v) = row.map_err(storage)?;
            let e: EventRecord = serde_json::from_str(v.value()).map_err(storage)?;
            if app.is_none_or(|a| a == e.app) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Applies `change` to the apps and tokens in one transaction, checks that the tenants
    /// it produces are valid, records `event`, bumps the generation, commits durably, and
    /// publishes the new registry view.
    async fn mutate<R>(
        &self,
        event: (&str, &str, &str, String),
        change: impl FnOnce(&mut Vec<AppRecord>, &mut Vec<TokenRecord>) -> Result<R, StateError>,
    ) -> Result<R, StateError> {
        let _one_writer = self.write.lock().await;
        let (mut apps, mut tokens, generation) = self.snapshot()?;
        let before = cache_total(&apps, &tokens);
        let operators = self.operators.lock().clone();
        let result = change(&mut apps, &mut tokens)?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let toml = tenants_toml(&apps, &tokens, &operators);
        let set =
            TenantSet::from_toml_str(&toml).map_err(|e| StateError::Invalid(e.to_string()))?;
        let memory = self.cache_memory.load(std::sync::atomic::Ordering::Relaxed);
        if memory > 0 {
            // Only a change that adds to the reservations is refused: with the memory lowered
            // below what apps hold already, tokens and smaller budgets still go through.
            let total: u64 = set.iter().map(|t| t.cache_bytes.0).sum();
            if total > memory && total > before {
                return Err(StateError::Invalid(format!(
                    "the apps' cache_bytes would add up to {total} bytes, {} more than the cache \
                     servers' memory of {memory} bytes ([services] cache_memory, their -m): \
                     lower cache_bytes, or give the cache servers more memory",
                    total - memory
                )));
            }
        }
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut t = tx.open_table(APPS).map_err(storage)?;
            let old: Vec<String> = read_keys(&t)?;
            for k in old {
                t.remove(k.as_str()).map_err(storage)?;
            }
            for a in &apps {
                let v = serde_json::to_string(a).map_err(storage)?;
                t.insert(a.name.as_str(), v.as_str()).map_err(storage)?;
            }
            let mut t = tx.open_table(TOKENS).map_err(storage)?;
            let old: Vec<String> = read_keys(&t)?;
            for k in old {
                t.remove(k.as_str()).map_err(storage)?;
            }
            for tok in &tokens {
                let v = serde_json::to_string(tok).map_err(storage)?;
                t.insert(tok.id.as_str(), v.as_str()).map_err(storage)?;
            }
            let mut t = tx.open_table(EVENTS).map_err(storage)?;
            let seq = t
                .last()
                .map_err(storage)?
                .map(|(k, _)| k.value())
                .unwrap_or(0)
                + 1;
            let (actor, app, action, detail) = event;
            let record = EventRecord {
                seq,
                at_ms: now_ms(),
                actor: actor.into(),
                app: app.into(),
                action: action.into(),
                detail,
            };
            let v = serde_json::to_string(&record).map_err(storage)?;
            t.insert(seq, v.as_str()).map_err(storage)?;
            let mut t = tx.open_table(META).map_err(storage)?;
            t.insert("generation", generation + 1).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        self.refresh()?;
        Ok(result)
    }

    /// Creates `name` with `limits` and a first token labelled `label`; returns the app, the
    /// token record and the token.
    pub async fn create_app(
        &self,
        actor: &str,
        name: &str,
        limits: BTreeMap<String, String>,
        label: &str,
    ) -> Result<(AppRecord, TokenRecord, String), StateError> {
        AppName::parse(name).map_err(|e| StateError::Invalid(format!("name: {e}")))?;
        let (token, record) = new_token(name, label);
        let detail = format!("created with token {}", record.id);
        self.mutate((actor, name, "app.create", detail), |apps, tokens| {
            if apps.iter().any(|a| a.name == name) {
                return Err(StateError::Exists(format!("app {name:?} exists already")));
            }
            let app = AppRecord {
                name: name.into(),
                created_ms: now_ms(),
                limits,
            };
            apps.push(app.clone());
            tokens.push(record.clone());
            Ok((app, record, token))
        })
        .await
    }

    /// Sets (and resets) limits of `name`.
    pub async fn set_limits(
        &self,
        actor: &str,
        name: &str,
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    ) -> Result<AppRecord, StateError> {
        let detail = describe_limits(&set, &reset);
        self.mutate((actor, name, "app.limits", detail), |apps, _| {
            let app = apps
                .iter_mut()
                .find(|a| a.name == name)
                .ok_or_else(|| StateError::NotFound(format!("no app named {name:?}")))?;
            for k in &reset {
                app.limits.remove(k);
            }
            app.limits.extend(set);
            Ok(app.clone())
        })
        .await
    }

    /// Removes `name` and its tokens.
    pub async fn destroy_app(&self, actor: &str, name: &str) -> Result<(), StateError> {
        self.mutate(
            (actor, name, "app.destroy", String::new()),
            |apps, tokens| {
                let before = apps.len();
                apps.retain(|a| a.name != name);
                if apps.len() == before {
                    return Err(StateError::NotFound(format!("no app named {name:?}")));
                }
                tokens.retain(|t| t.app != name);
                Ok(())
            },
        )
        .await
    }

    /// Adds a token to `app`.
    pub async fn create_token(
        &self,
        actor: &str,
        app: &str,
        label: &str,
    ) -> Result<(TokenRecord, String), StateError> {
        let (token, record) = new_token(app, label);
        let detail = format!("token {} ({label})", record.id);
        self.mutate((actor, app, "token.create", detail), |apps, tokens| {
            if !apps.iter().any(|a| a.name == app) {
                return Err(StateError::NotFound(format!("no app named {app:?}")));
            }
            tokens.push(record.clone());
            Ok((record, token))
        })
        .await
    }

    /// Removes token `id` of `app`.
    pub async fn revoke_token(&self, actor: &str, app: &str, id: &str) -> Result<(), StateError> {
        let detail = format!("token {id}");
        self.mutate((actor, app, "token.revoke", detail), |_, tokens| {
            let before = tokens.len();
            tokens.retain(|t| !(t.app == app && t.id == id));
            if tokens.len() == before {
                return Err(StateError::NotFound(format!(
                    "app {app:?} has no token {id:?}"
                )));
            }
            Ok(())
        })
        .await
    }
}

fn describe_limits(set: &BTreeMap<String, String>, reset: &[String]) -> String {
    let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.extend(reset.iter().map(|k| format!("{k}=default")));
    parts.join(" ")
}

fn new_token(app: &str, label: &str) -> (String, TokenRecord) {
    let token = berth_common::tenants::generate_token();
    let hash = hash_token(&token);
    let sha256 = hex::encode(hash.sha256);
    let record = TokenRecord {
        id: sha256[..12].to_string(),
        app: app.into(),
        label: label.into(),
        created_ms: now_ms(),
        mysql_native: hash.mysql_native_string().unwrap_or_default(),
        sha256,
    };
    (token, record)
}

fn read_all<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Vec<T>, StateError> {
    let mut out = Vec::new();
    for row in table.iter().map_err(storage)? {
        let (_, v) = row.map_err(storage)?;
        out.push(serde_json::from_str(v.value()).map_err(storage)?);
    }
    Ok(out)
}

fn read_keys(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Vec<String>, StateError> {
    let mut out = Vec::new();
    for row in table.iter().map_err(storage)? {
        let (k, _) = row.map_err(storage)?;
        out.push(k.value().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn apps_tokens_and_the_registry_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let state = State::open(&path).unwrap();
        let mut limits = BTreeMap::new();
        limits.insert("cache_bytes".to_string(), "16MiB".to_string());
        let (app, rec, token) = state
            .create_app("operator:x", "shop", limits, "first")
            .await
            .unwrap();
        assert_eq!(app.name, "shop");
        assert_eq!(
            state.token_owner(&token),
            Some(("shop".into(), rec.id.clone()))
        );
        let reg = state.registry().borrow().clone();
        assert_eq!(reg.generation, 1);
        let set = TenantSet::from_toml_str(&reg.tenants_toml).unwrap();
        let tenant = set.get("shop").unwrap();
        assert!(tenant.verify_token(&token));
        assert_eq!(tenant.cache_bytes.as_u64(), 16 << 20);
        drop(state);

        let state = State::open(&path).unwrap();
        assert_eq!(state.token_owner(&token).unwrap().0, "shop");
        assert_eq!(state.registry().borrow().generation, 1);
        let (_, second) = state
            .create_token("operator:x", "shop", "ci")
            .await
            .unwrap();
        state
            .revoke_token("operator:x", "shop", &rec.id)
            .await
            .unwrap();
        assert!(state.token_owner(&token).is_none());
        assert!(state.token_owner(&second).is_some());
        let events = state.events(Some("shop"), 0, 10).unwrap();
        let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["token.revoke", "token.create", "app.create"]);
    }

    #[tokio::test]
    async fn cache_budgets_cannot_add_up_to_more_than_the_cache_memory() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.redb")).unwrap();
        state.set_cache_memory(100 << 20);
        let limits = |v: &str| BTreeMap::from([("cache_bytes".to_string(), v.to_string())]);
        state
            .create_app("op", "shop", BTreeMap::new(), "")
            .await
            .unwrap(); // the default 64 MiB
        state
            .create_app("op", "blog", limits("32MiB"), "")
            .await
            .unwrap();
        let err = state
            .create_app("op", "wiki", limits("8MiB"), "")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Invalid(_)), "{err}");
        assert!(
            err.to_string()
                .contains("4194304 more than the cache servers' memory"),
            "{err}"
        );
        assert!(state.app("wiki").is_err(), "nothing was created");
        let err = state
            .set_limits("op", "blog", limits("40MiB"), vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cache_memory"), "{err}");
        assert_eq!(state.app("blog").unwrap().limits["cache_bytes"], "32MiB");
        // Lowering the memory below what apps hold: smaller budgets and tokens still go through.
        state.set_cache_memory(50 << 20);
        state
            .set_limits("op", "blog", limits("16MiB"), vec![])
            .await
            .unwrap();
        state.create_token("op", "shop", "ci").await.unwrap();
        state.set_cache_memory(0);
        state
            .create_app("op", "wiki", limits("1GiB"), "")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn invalid_limits_and_names_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("s.redb")).unwrap();
        let mut limits = BTreeMap::new();
        limits.insert("cache_bytez".to_string(), "1MiB".to_string());
        let err = state
            .create_app("op", "shop", limits, "")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("cache_bytez"), "{err}");
        let err = state
            .create_app("op", "Shop", BTreeMap::new(), "")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Invalid(_)));
        assert!(state.apps().unwrap().is_empty());
        assert_eq!(state.registry().borrow().generation, 0);
        state
            .create_app("op", "shop", BTreeMap::new(), "")
            .await
            .unwrap();
        let err = state
            .create_app("op", "shop", BTreeMap::new(), "")
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Exists(_)));
    }

    #[test]
    fn limit_values_become_toml() {
        assert_eq!(toml_value("64"), "64");
        assert_eq!(toml_value("0.5"), "0.5");
        assert_eq!(toml_value("64MiB"), "\"64MiB\"");
        assert_eq!(toml_value("10s"), "\"10s\"");
        let quoted = toml_value("a\"b");
        let parsed: toml::Table = toml::from_str(&format!("k = {quoted}")).unwrap();
        assert_eq!(parsed["k"].as_str(), Some("a\"b"));
    }
}
