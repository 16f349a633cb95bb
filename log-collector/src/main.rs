//! `log-collector`: parse flags and config, bind every listener, print `LISTEN` lines, serve
//! until SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use berth_common::shutdown::Shutdown;
use berth_common::tenants::TenantSet;
use clap::Parser;
use log_collector::config::Cli;
use log_collector::server::{self, Bound, Shared};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (print, check) = (cli.print_config, cli.check_config);
    let cfg = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("log-collector: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        return berth_common::config::print_config("log-collector", &cfg);
    }
    let tenants = match cfg
        .tenants_source()
        .and_then(|s| s.map(|s| s.load().map(|(set, _)| set)).transpose())
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("log-collector: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = berth_common::tenants::OperatorTokens::from_hex_hashes(&cfg.operator_tokens) {
        eprintln!("log-collector: operator_tokens: {e}");
        return ExitCode::from(2);
    }
    if check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    berth_common::runtime::run_service("log-collector", "log-worker", 0, serve(cfg, tenants))
}

async fn serve(
    cfg: log_collector::config::Config,
    tenants: Option<TenantSet>,
) -> anyhow::Result<()> {
    let bound = Bound::bind(&cfg).await?;
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    // SIGHUP must not kill the process before (or without) a tenants reload handler.
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let shared = Shared::new(cfg, tenants, &shutdown)?;
    let mut stdout = std::io::stdout().lock();
    for line in bound.listen_lines() {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    drop(stdout);
    let res = server::run(bound, shared, shutdown).await;
    tracing::info!("log-collector stopped");
    res
}
