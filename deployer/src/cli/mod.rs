//! The `berth` command line: one subcommand per verb, each in its own module.

pub mod logs;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Deploy and operate Python web apps on Berth",
    propagate_version = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show an app's logs, or follow them with --tail (like `heroku logs` / `journalctl`).
    Logs(logs::LogsArgs),
    /// Check an app's directory against the deploy gates, locally and offline: the manifest,
    /// the bundle (pure Python, sizes) and that its entry point imports.
    Validate(validate::ValidateArgs),
}

impl Cli {
    /// Runs the chosen verb.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Logs(args) => logs::run(&args),
            Command::Validate(args) => validate::run(&args),
        }
    }
}
