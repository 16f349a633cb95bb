//! Berth's cache server: the memcached text protocol (classic and meta commands) in front of a
//! segment-based item store, with one namespace and memory budget per app.
//!
//! Layout: [`protocol`] parses bytes into requests (pure, fuzzed); [`store`] keeps items in
//! per-namespace segments; [`server`] runs one tokio task per connection that parses, executes
//! against the caller's namespace and writes replies; [`config`] merges memcached's flags with
//! our TOML config. The binary (`main.rs`) only parses the command line and calls [`server::run`].

pub mod clock;
pub mod config;
pub mod protocol;
pub mod server;
pub mod store;
