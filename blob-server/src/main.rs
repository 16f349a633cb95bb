//! `blob-server`: parse flags and config, bind, then serve until SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use berth_common::shutdown::Shutdown;
use berth_common::tenants::TenantSet;
use blob_server::config::Cli;
use blob_server::server::{self, Bound};
use clap::Parser;

// mimalloc: every request allocates its headers, body frames and metadata rows; glibc's malloc
// and free were ~8% of the server's CPU on small GETs and PUTs (perf, 2026-11-26).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (print, check) = (cli.print_config, cli.check_config);
    let cfg = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blob-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cfg
        .validate()
        .and_then(|()| cfg.storage.backend().map(drop))
    {
        eprintln!("blob-server: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    if print {
        return berth_common::config::print_config("blob-server", &cfg);
    }
    let tenants = match cfg
        .tenants_source()
        .and_then(|s| s.map(|s| s.load().map(|(set, _)| set)).transpose())
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("blob-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = berth_common::tenants::OperatorTokens::from_hex_hashes(&cfg.operator_tokens) {
        eprintln!("blob-server: operator_tokens: {e}");
        return ExitCode::from(2);
    }
    if check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    berth_common::runtime::run_service(
        "blob-server",
        "blob-worker",
        cfg.threads,
        serve(cfg, tenants),
    )
}

async fn serve(cfg: blob_server::config::Config, tenants: Option<TenantSet>) -> anyhow::Result<()> {
    let bound = Bound::bind(&cfg).await?;
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    // Without tenants SIGHUP has nothing to reload, but must not kill the process.
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let (api, admin) = (bound.api_addr()?, bound.admin_addr()?);
    // The store opens before the LISTEN lines, so a client that waits for them finds the
    // server ready (and a bad data directory fails before anyone waits).
    let on_ready = move || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTEN http {api}");
        let _ = writeln!(out, "LISTEN admin {admin}");
        let _ = out.flush();
    };
    let res = server::run(bound, cfg, tenants, shutdown, on_ready).await;
    tracing::info!("blob-server stopped");
    res
}
