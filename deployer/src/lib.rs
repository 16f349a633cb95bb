//! The deployer: today the `berth` CLI ([`cli`]) with the app manifest ([`manifest`]) and
//! bundle gates ([`bundle`]); the `berthd` daemon and `berth-router` join it next. The CLI is synchronous (blocking std I/O): each verb is
//! one module under `cli/` with its clap arguments and a `run` function.

pub mod bundle;
pub mod cli;
pub mod daemon;
pub mod http;
pub mod manifest;
