//! `query-proxy`: parse the config, bind, print `LISTEN` lines, serve until SIGTERM; or run an
//! operator command (`provision APP`, `deprovision APP`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth_common::shutdown::Shutdown;
use berth_common::tenants::TenantSet;
use clap::Parser;
use query_proxy::config::{Action, Cli, Config};
use query_proxy::server;

// mimalloc: a relayed command allocates its packet, and a session its buffers; glibc's
// malloc is slower at these small, short-lived allocations (as measured for berth-router).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Version shown to clients when the backend cannot be probed at startup.
const FALLBACK_VERSION: &str = "5.5.5-10.11.0-MariaDB-berth";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match cli.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("query-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        return berth_common::config::print_config("query-proxy", &cfg);
    }
    let tenants = match load_tenants(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("query-proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    let secret = match cfg.backend_secret() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("query-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    // The server's own runtime is worker 0; `server::run` starts the other workers, each a
    // single-threaded runtime of its own (see `server::workers`).
    berth_common::runtime::run_service_single_thread("query-proxy", async move {
        match &cli.command {
            Some(action) => operator(action, cfg, tenants, secret).await,
            None => serve(cfg, tenants, secret).await,
        }
    })
}

/// The tenants (file or registry), or the development app; and whether it is the
/// development app.
fn load_tenants(cfg: &Config) -> anyhow::Result<(TenantSet, bool)> {
    match cfg.tenants_source().map_err(anyhow::Error::msg)? {
        Some(source) => Ok((source.load().map_err(anyhow::Error::msg)?.0, false)),
        None => Ok((server::dev_tenants(cfg)?, true)),
    }
}

async fn operator(
    action: &Action,
    cfg: Config,
    (tenants, dev): (TenantSet, bool),
    secret: query_proxy::secret::BackendSecret,
) -> anyhow::Result<()> {
    let shared = server::shared(cfg, tenants, dev, secret, String::new())?;
    let hosts = &shared.cfg.backend_account_hosts;
    match action {
        Action::Provision { app } => {
            let name = server::app_name(app)?;
            query_proxy::provision::provision(&shared.admin, &shared.secret, &name, hosts)
                .await
                .with_context(|| format!("provisioning {name}"))?;
            println!(
                "provisioned {name}: database {0}, account {0}",
                name.mysql_ident()
            );
        }
        Action::Deprovision { app } => {
            let name = server::app_name(app)?;
            query_proxy::provision::deprovision(&shared.admin, &name, hosts)
                .await
                .with_context(|| format!("deprovisioning {name}"))?;
            println!("deprovisioned {name}");
        }
    }
    Ok(())
}

async fn serve(
    cfg: Config,
    (tenants, dev): (TenantSet, bool),
    secret: query_proxy::secret::BackendSecret,
) -> anyhow::Result<()> {
    let bound = server::Bound::bind(&cfg).await?;
    let version = if cfg.server_version.is_empty() {
        match query_proxy::backend::probe_version(&cfg.backend, Duration::from_secs(3)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the backend's version; using {FALLBACK_VERSION}");
                FALLBACK_VERSION.to_owned()
            }
        }
    } else {
        cfg.server_version.clone()
    };
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let shared = server::shared(cfg, tenants, dev, secret, version)?;
    if dev {
        tracing::warn!(
            app = %shared.cfg.dev_app,
            "no tenants file: serving the development app only (user {}, its token from dev_token)",
            shared.cfg.dev_app
        );
        if let Err(e) = server::provision_dev(&shared).await {
            tracing::error!("{e:#}");
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Ok(a) = bound.mysql.local_addr() {
        let _ = writeln!(stdout, "LISTEN mysql {a}");
    }
    if let Ok(a) = bound.admin.local_addr() {
        let _ = writeln!(stdout, "LISTEN admin {a}");
    }
    let _ = stdout.flush();
    drop(stdout);
    let res = server::run(bound, shared, shutdown).await;
    tracing::info!("query-proxy stopped");
    res
}
