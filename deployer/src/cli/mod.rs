//! The `berth` command line: one subcommand per verb, each in its own module.

pub mod control;
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
    /// Create, list, inspect and destroy apps.
    Apps(control::AppsArgs),
    /// Make, list and revoke an app's tokens.
    Tokens(control::TokensArgs),
    /// Show an app's limits, or set them (operators).
    Quota(control::QuotaArgs),
    /// The audit history: who did what, when.
    Events(control::EventsArgs),
    /// What services receive from berthd's registry.
    Registry(control::RegistryArgs),
    /// Check an app's directory against the deploy gates, locally and offline: the manifest,
    /// the bundle (pure Python, sizes) and that its entry point imports.
    Validate(validate::ValidateArgs),
}

impl Cli {
    /// Runs the chosen verb.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Logs(args) => logs::run(&args),
            Command::Apps(args) => control::apps(&args),
            Command::Tokens(args) => control::tokens(&args),
            Command::Quota(args) => control::quota(&args),
            Command::Events(args) => control::events(&args),
            Command::Registry(args) => control::registry(&args),
            Command::Validate(args) => validate::run(&args),
        }
    }
}
