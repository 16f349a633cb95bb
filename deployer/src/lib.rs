//! The deployer: today the `berth` CLI ([`cli`]); the `berthd` daemon and `berth-router`
//! join it with the deployer issue. The CLI is synchronous (blocking std I/O): each verb is
//! one module under `cli/` with its clap arguments and a `run` function.

pub mod cli;
pub mod http;
