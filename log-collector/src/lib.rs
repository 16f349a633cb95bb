//! The log collector: durable per-app logs with tail and query.
//!
//! Layout: [`protocol`] is the pure wire code (framing, syslog, JSON lines, the OTLP record
//! mapping), [`store`] the segment files and the writer thread with group commit, [`server`]
//! the listeners (JSON lines, syslog TCP and UDP, OTLP/gRPC, HTTP read API, admin) on tokio, [`forward`] the NATS JetStream
//! forwarder, [`config`] the TOML/CLI
//! configuration. Task model: one task per connection (and one per UDP socket), one writer
//! thread; see `store` for how batches flow and how back-pressure works.

pub mod config;
pub mod forward;
pub mod protocol;
pub mod server;
pub mod store;
