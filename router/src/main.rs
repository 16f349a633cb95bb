//! `berth-router`: parse flags and config, bind, then serve until SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use berth_common::shutdown::Shutdown;
use berth_router::config::{Cli, Config};
use berth_router::server::{self, Bound};
use clap::Parser;

// mimalloc: a request through the router makes a few dozen small allocations (headers, the
// request and response heads, the access log event) and frees them on another worker
// thread; glibc's malloc spent about 8% of the router's CPU on them (`perf`), mimalloc's
// per-thread free lists take a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (print, check) = (cli.print_config, cli.check_config);
    let cfg = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-router: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cfg.validate() {
        eprintln!("berth-router: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    if print {
        return berth_common::config::print_config("berth-router", &cfg);
    }
    if !cfg.tls_certificates.is_empty() {
        if let Err(e) = berth_router::tls::acceptor(&cfg.tls_certificates, cfg.http2) {
            eprintln!("berth-router: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = berth_router::table::load_file(&cfg.routes_path()) {
        eprintln!("berth-router: {e}");
        return ExitCode::from(2);
    }
    if check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    match cfg.worker_threads() {
        1 => berth_common::runtime::run_service_single_thread("berth-router", serve(cfg)),
        n => berth_common::runtime::run_service("berth-router", "router-worker", n, serve(cfg)),
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let bound = Bound::bind(&cfg).await?;
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    let addrs = bound.addrs()?;
    // The stored table is loaded before the LISTEN lines: whoever waits for them finds the
    // router serving what it last knew.
    let on_ready = move || {
        let mut out = std::io::stdout().lock();
        for (kind, addr) in &addrs {
            let _ = writeln!(out, "LISTEN {kind} {addr}");
        }
        let _ = out.flush();
    };
    let res = server::run(bound, cfg, shutdown, on_ready).await;
    tracing::info!("berth-router stopped");
    res
}
