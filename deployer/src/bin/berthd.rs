//! `berthd`: Berth's control plane daemon.

use std::process::ExitCode;

use berth_deployer::daemon::{serve, Cli};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let print = cli.print_config;
    let cfg = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return ExitCode::from(2);
        }
    };
    if print {
        return berth_common::config::print_config("berthd", &cfg);
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    berth_common::runtime::run_service("berthd", "berthd-worker", 2, serve(cfg))
}
