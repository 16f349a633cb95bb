//! `berthd`: the control plane. Today it keeps the apps, their tokens and limits and the
//! audit history, serves them over the gRPC control API (deployer/api/proto), and streams
//! the tenants to every service (`Registry.Watch`). Deploys, the supervisor and the router
//! feed come next (issue 7).

pub mod service;
pub mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use berth_api::v1 as api;
use berth_common::admin::{AdminState, MetricsWriter};
use berth_common::shutdown::Shutdown;
use berth_common::tenants::{generate_token, OperatorTokens};
use clap::{ArgAction, Parser};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// How long calls in flight get to finish after SIGTERM.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// berthd's configuration (TOML; flags override it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The gRPC control API.
    pub listen: String,
    /// The admin endpoint (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: String,
    /// State and bundles.
    pub data_dir: PathBuf,
    /// SHA-256 (hex) of the operator tokens. Empty: berthd makes one at first start and
    /// writes it to `<data_dir>/operator-token` (mode 0600).
    pub operator_tokens: Vec<String>,
    /// SHA-256 (hex) of the tokens Berth services use to read the registry.
    pub service_tokens: Vec<String>,
    /// Log verbosity (0 info, 1 debug, 2 trace).
    pub verbosity: u8,
    /// Log as JSON lines.
    pub log_json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7100".into(),
            admin_listen: "127.0.0.1:9271".into(),
            data_dir: PathBuf::from("/var/lib/berthd"),
            operator_tokens: vec![],
            service_tokens: vec![],
            verbosity: 0,
            log_json: false,
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berthd",
    version,
    about = "Berth's control plane: apps, tokens, limits and the registry every service follows. \
See docs/deploy/control-api.md."
)]
pub struct Cli {
    /// TOML config file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC control API address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin endpoint address.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// More logging; repeat for more.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The configuration: the file's, then the flags.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut cfg: Config = berth_common::config::load_toml(self.config.as_deref())?;
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.admin_listen {
            cfg.admin_listen = v;
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        cfg.verbosity = cfg.verbosity.max(self.verbose);
        OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
            .map_err(|e| anyhow::anyhow!("operator_tokens: {e}"))?;
        OperatorTokens::from_hex_hashes(&cfg.service_tokens)
            .map_err(|e| anyhow::anyhow!("service_tokens: {e}"))?;
        Ok(cfg)
    }
}

/// The operator tokens: the configured hashes, or the bootstrap token in the data dir
/// (made on first start).
fn operator_tokens(cfg: &Config) -> anyhow::Result<OperatorTokens> {
    if !cfg.operator_tokens.is_empty() {
        return OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
            .map_err(|e| anyhow::anyhow!("operator_tokens: {e}"));
    }
    let path = cfg.data_dir.join("operator-token");
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_secret(&path, &token)?;
            tracing::warn!(
                path = %path.display(),
                "no operator_tokens configured: made an operator token; keep it safe"
            );
            token
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(OperatorTokens::from_tokens(&[token]))
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(format!("{secret}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Binds, prints the `LISTEN` lines, serves until SIGTERM/SIGINT.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    let state = state::State::open(&cfg.data_dir.join("state.redb"))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("opening {}", cfg.data_dir.join("state.redb").display()))?;
    let operators = operator_tokens(&cfg)?;
    let services = OperatorTokens::from_hex_hashes(&cfg.service_tokens)
        .map_err(|e| anyhow::anyhow!("service_tokens: {e}"))?;
    let grpc = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding the control API on {}", cfg.listen))?;
    let admin = TcpListener::bind(&cfg.admin_listen)
        .await
        .with_context(|| format!("binding the admin endpoint on {}", cfg.admin_listen))?;
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTEN grpc {}", grpc.local_addr()?)?;
        writeln!(out, "LISTEN admin {}", admin.local_addr()?)?;
        out.flush()?;
    }
    let control = service::Control::new(state.clone(), operators, services, shutdown.signal());
    let metrics_state = state.clone();
    let admin_state = AdminState {
        metrics: Arc::new(move |out: &mut String| {
            let mut w = MetricsWriter::new(out);
            let apps = metrics_state.apps().map(|a| a.len()).unwrap_or(0);
            w.gauge("berthd_apps", "Apps registered.", apps as f64);
            w.gauge(
                "berthd_registry_generation",
                "Generation of the tenants state streamed to services.",
                metrics_state.registry().borrow().generation as f64,
            );
        }),
        ready: Arc::new(AtomicBool::new(true)),
        operators: Arc::new(OperatorTokens::default()),
    };
    let admin_task = tokio::spawn(berth_common::admin::serve(
        admin,
        admin_state,
        shutdown.signal(),
    ));
    tracing::info!(listen = %cfg.listen, data_dir = %cfg.data_dir.display(), "berthd ready");
    let mut stop = shutdown.signal();
    let server = tonic::transport::Server::builder()
        .add_service(api::apps_server::AppsServer::new(control.clone()))
        .add_service(api::tokens_server::TokensServer::new(control.clone()))
        .add_service(api::registry_server::RegistryServer::new(control.clone()))
        .add_service(api::events_server::EventsServer::new(control))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc),
            async move { stop.recv().await },
        );
    // Calls in flight get DRAIN to finish; idle client connections that a client keeps
    // open must not hold the shutdown up.
    let mut deadline = shutdown.signal();
    tokio::select! {
        res = server => res.context("serving the control API")?,
        _ = async { deadline.recv().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("control API connections still open after {DRAIN:?}; closing them");
        }
    }
    let _ = admin_task.await;
    tracing::info!("berthd stopped");
    Ok(())
}
