//! The deployer: the `berth` CLI ([`cli`]) with the app manifest ([`manifest`]), the bundle
//! gates ([`bundle`]) and the bundle's archive form ([`tarball`]); the `berthd` daemon
//! ([`daemon`]); and `berth-shim`, the supervisor of one app instance ([`shim`]). The CLI is
//! synchronous (blocking std I/O): each verb is one module under `cli/` with its clap
//! arguments and a `run` function.

pub mod bundle;
pub mod cli;
pub mod daemon;
pub mod http;
pub mod manifest;
pub mod shim;
pub mod tarball;
