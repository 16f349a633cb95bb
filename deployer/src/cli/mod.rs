//! The `berth` command line: one subcommand per verb, each in its own module.

pub mod config;
pub mod control;
pub mod deploy;
pub mod logs;
pub mod releases;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Deploy and operate Python web apps on Berth",
    after_help = "Every verb but `validate` and `logs` talks to berthd: --server URL \
(BERTH_SERVER, default http://127.0.0.1:7100) and a token, --token or --token-file \
(BERTH_TOKEN, BERTH_TOKEN_FILE): an operator's or the app's own.\n\
Exit status: 0 done or nothing to do, 1 failed (the error on stderr as `berth: …`), 2 a usage \
error.\n\
Docs: docs/cli.md; every error message with its fix: docs/troubleshooting.md.",
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
    #[command(
        after_help = "Exit status: 0 when no gate failed (warnings allowed), 1 otherwise. \
Each FAIL line says what to change; docs/troubleshooting.md explains every message."
    )]
    Validate(validate::ValidateArgs),
    /// Deploy an app's directory: local checks, upload, then berthd's gates, health checks
    /// and the switch, shown phase by phase.
    #[command(
        after_help = "Progress goes to stderr, the result line to stdout. A failure \
prints the phase that failed and `berth: MESSAGE` (exit 1); the live release is then \
unchanged. docs/troubleshooting.md explains every message and its fix."
    )]
    Deploy(deploy::DeployArgs),
    /// The versions berthd keeps for an app, newest first.
    Versions(releases::VersionsArgs),
    /// An app's releases, newest first (like `heroku releases`).
    Releases(releases::ReleasesArgs),
    /// Make a version (with the current config) or a release (with its config) live again.
    Promote(releases::PromoteArgs),
    /// Make the release before the live one (or the one named) live again.
    Rollback(releases::RollbackArgs),
    /// What runs: the live release, the URLs, and every instance.
    Status(releases::StatusArgs),
    /// Set the number of instances of the live release.
    Scale(releases::ScaleArgs),
    /// Replace every instance of the live release with fresh ones, one by one.
    Restart(releases::RestartArgs),
    /// An app's environment: plain values and write-only secrets.
    Config(config::ConfigArgs),
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
            Command::Deploy(args) => deploy::run(&args),
            Command::Versions(args) => releases::versions(&args),
            Command::Releases(args) => releases::releases(&args),
            Command::Promote(args) => releases::promote(&args),
            Command::Rollback(args) => releases::rollback(&args),
            Command::Status(args) => releases::status(&args),
            Command::Scale(args) => releases::scale(&args),
            Command::Restart(args) => releases::restart(&args),
            Command::Config(args) => config::run(&args),
        }
    }
}
