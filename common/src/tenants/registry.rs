//! Following berthd's registry: the tenants arrive over `Registry.Watch` instead of from a
//! file, and the last state is kept on disk so a service restarted while berthd is away
//! still serves the apps it knew.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::v1 as api;
use tokio::task::JoinHandle;
use tonic::metadata::MetadataValue;

use super::{TenantSet, TenantsHandle};
use crate::shutdown::ShutdownSignal;

/// Where a service follows the registry from.
#[derive(Clone)]
pub struct RegistrySource {
    /// berthd's control API, e.g. `http://127.0.0.1:7100`.
    pub url: String,
    /// The service token (never logged).
    pub token: String,
    /// Where the last state is kept; `None`: nowhere (a restart waits for berthd).
    pub state_file: Option<PathBuf>,
}

impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("url", &self.url)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

impl RegistrySource {
    /// `url`, the token read from `token_file`, and the state kept at `state_file`.
    pub fn new(
        url: &str,
        token_file: &Path,
        state_file: Option<PathBuf>,
    ) -> Result<RegistrySource, String> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("registry token file {}: {e}", token_file.display()))?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(format!(
                "registry token file {} is empty",
                token_file.display()
            ));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "registry {url:?}: expected http://host:port (berthd's control API)"
            ));
        }
        Ok(RegistrySource {
            url: url.to_string(),
            token,
            state_file,
        })
    }

    /// The tenants to start with: the kept state, or none (every client refused until the
    /// first state arrives), and its generation.
    pub fn initial(&self) -> Result<(TenantSet, u64), String> {
        let Some(path) = &self.state_file else {
            return Ok((TenantSet::empty(), 0));
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let generation = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# generation "))
                    .and_then(|g| g.trim().parse().ok())
                    .unwrap_or(0);
                let set = TenantSet::from_toml_str(&text)
                    .map_err(|e| format!("kept registry state {}: {e}", path.display()))?;
                Ok((set, generation))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((TenantSet::empty(), 0)),
            Err(e) => Err(format!("kept registry state {}: {e}", path.display())),
        }
    }
}

fn keep(path: &Path, generation: u64, toml: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    write!(f, "# generation {generation}\n{toml}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Follows `source` until `shutdown`: every state that `validate` accepts replaces the
/// handle's set and is kept; a refused one is logged and the previous set stays. Reconnects
/// with backoff (0.2 s doubling to 5 s) while berthd is away.
pub fn follow(
    handle: TenantsHandle,
    source: RegistrySource,
    known_generation: u64,
    validate: impl Fn(&TenantSet) -> Result<(), String> + Send + Sync + 'static,
    mut shutdown: ShutdownSignal,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut known = known_generation;
        let mut backoff = Duration::from_millis(200);
        loop {
            let attempt = watch_once(&handle, &source, &mut known, &validate);
            tokio::select! {
                _ = shutdown.recv() => return,
                result = attempt => match result {
                    Ok(()) => {
                        tracing::warn!(registry = %source.url, "registry stream ended; reconnecting");
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => tracing::warn!(registry = %source.url, error = %e, "registry unavailable; serving the last state"),
                },
            }
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// Environment variable naming a PEM file of a CA to trust (besides the system's roots) for
/// an `https://` registry, e.g. berthd's own certificate authority.
pub const REGISTRY_CA_ENV: &str = "BERTH_REGISTRY_CA_FILE";

fn registry_tls() -> Result<tonic::transport::ClientTlsConfig, String> {
    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
    if let Some(path) = std::env::var_os(REGISTRY_CA_ENV) {
        let pem = std::fs::read(&path).map_err(|e| {
            format!(
                "{REGISTRY_CA_ENV}={}: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    Ok(tls)
}

async fn watch_once(
    handle: &TenantsHandle,
    source: &RegistrySource,
    known: &mut u64,
    validate: &(impl Fn(&TenantSet) -> Result<(), String> + Send + Sync),
) -> Result<(), String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(source.url.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5));
    if source.url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(registry_tls()?)
            .map_err(|e| format!("TLS: {e}"))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why.push_str(&format!(": {c}"));
            cause = c.source();
        }
        why
    })?;
    let mut client = api::registry_client::RegistryClient::new(channel);
    let mut req = tonic::Request::new(api::WatchRequest {
        known_generation: *known,
    });
    let auth: MetadataValue<_> = format!("Bearer {}", source.token)
        .parse()
        .map_err(|_| "the registry token is not a valid header value".to_string())?;
    req.metadata_mut().insert("authorization", auth);
    let mut stream = client
        .watch(req)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    tracing::info!(registry = %source.url, "following the registry");
    while let Some(state) = stream
        .message()
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
    {
        let set = match TenantSet::from_toml_str(&state.tenants_toml) {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(generation = state.generation, error = %e, "registry state refused, keeping the previous set");
                continue;
            }
        };
        if let Err(e) = validate(&set) {
            tracing::error!(generation = state.generation, error = %e, "registry state refused, keeping the previous set");
            continue;
        }
        let apps = set.len();
        handle.replace(set);
        *known = state.generation;
        tracing::info!(
            generation = state.generation,
            apps,
            "tenants from the registry"
        );
        if let Some(path) = &source.state_file {
            if let Err(e) = keep(path, state.generation, &state.tenants_toml) {
                tracing::error!(path = %path.display(), error = %e, "cannot keep the registry state");
            }
        }
    }
    Ok(())
}

/// Where a service's tenants come from: a tenants file (reloaded on SIGHUP) or berthd's
/// registry (followed, with the last state kept).
#[derive(Debug, Clone)]
pub enum TenantsSource {
    /// `--tenants FILE`.
    File(PathBuf),
    /// `--registry URL --registry-token FILE`.
    Registry(RegistrySource),
}

impl TenantsSource {
    /// The source the flags name: `tenants`, or `registry` with its token file (and where
    /// to keep its state), or none (anonymous mode). Both at once is an error.
    pub fn from_flags(
        tenants: Option<&Path>,
        registry: Option<&str>,
        registry_token_file: Option<&Path>,
        state_file: Option<PathBuf>,
    ) -> Result<Option<TenantsSource>, String> {
        match (tenants, registry, registry_token_file) {
            (Some(_), Some(_), _) => {
                Err("--tenants and --registry name two sources of tenants: choose one".into())
            }
            (Some(path), None, _) => Ok(Some(TenantsSource::File(path.to_path_buf()))),
            (None, Some(url), Some(token)) => Ok(Some(TenantsSource::Registry(
                RegistrySource::new(url, token, state_file)?,
            ))),
            (None, Some(_), None) => {
                Err("--registry needs --registry-token FILE (a berthd service token)".into())
            }
            (None, None, Some(_)) => Err("--registry-token needs --registry URL".into()),
            (None, None, None) => Ok(None),
        }
    }

    /// The tenants to start with, and the registry generation they are (0 for a file).
    pub fn load(&self) -> Result<(TenantSet, u64), String> {
        match self {
            TenantsSource::File(path) => TenantSet::load(path)
                .map(|s| (s, 0))
                .map_err(|e| format!("tenants file {}: {e}", path.display())),
            TenantsSource::Registry(r) => r.initial(),
        }
    }

    /// Keeps `handle` current until `shutdown`: SIGHUP reloads of the file, or the registry
    /// stream. `validate` refuses sets the service cannot serve (the previous set stays).
    pub fn watch(
        self,
        handle: TenantsHandle,
        validate: impl Fn(&TenantSet) -> Result<(), String> + Send + Sync + 'static,
        shutdown: ShutdownSignal,
    ) -> JoinHandle<()> {
        match self {
            TenantsSource::File(path) => super::reload_on_sighup(handle, path, validate, shutdown),
            TenantsSource::Registry(source) => {
                // SIGHUP must not kill a service that follows the registry either.
                let hangups =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
                // The generation of the kept state the service started from.
                let generation = source.initial().map(|(_, g)| g).unwrap_or(0);
                let task = follow(handle, source, generation, validate, shutdown);
                tokio::spawn(async move {
                    let _keep = hangups;
                    let _ = task.await;
                })
            }
        }
    }
}
