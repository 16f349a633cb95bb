//! Berth's permission-filtering MySQL proxy.
//!
//! - [`protocol`]: the MySQL wire protocol as pure functions (framing, handshake, commands,
//!   replies, and the response tracker the relay uses to know where a response ends);
//! - [`policy`]: the pure SQL policy, [`policy::check`];
//! - [`backend`]: the proxy's own client of MariaDB (logins, control-path queries);
//! - [`secret`]: the backend password derivation;
//! - [`provision`]: creating and removing an app's database and account;
//! - [`config`] and [`server`]: the `query-proxy` binary.

pub mod backend;
pub mod config;
pub mod policy;
pub mod protocol;
pub mod provision;
pub mod secret;
pub mod server;
