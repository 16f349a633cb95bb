//! What every Berth service shares, and nothing more: graceful shutdown, the accept loop with
//! connection permits, TOML config loading, logging setup, the admin HTTP endpoint, and the
//! tenants (apps, tokens, limits) every service authenticates against.
//!
//! Services run on tokio. `listener::serve` spawns one task per connection and owns them all;
//! `admin::serve`, `tenants::reload_on_sighup` and `Shutdown::listen_os_signals` each run as
//! one task beside it, and all of them stop when the `shutdown::Shutdown` is triggered.

pub mod admin;
pub mod config;
pub mod conn;
pub mod listener;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
pub mod tenants;
