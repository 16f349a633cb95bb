//! `berth-router`: the HTTP front door of app traffic. It routes each request by Host
//! (`APP.<domain>`, extra hosts) or path prefix to the app's current backends (its WSGI server
//! processes), with per-app limits, request ids, forwarding headers, access logs into the
//! app's log stream and per-app metrics.
//!
//! Layout: `routing` (pure host/prefix lookup), `table` (the route table berthd pushes, its
//! file and atomic swap), `backend` (connections and pools), `proxy` (one request's way),
//! `body` (request and response bodies), `accesslog`, `stats`, `admin` (health, metrics and
//! the control API), `tls`, `server` (listeners), `config`.
//!
//! Task model: one tokio task per client connection (hyper HTTP/1.1), one per backend
//! connection, one access log shipper, one admin server. Requests read the route table
//! through one `Arc` load, so a swap never mixes two tables.

pub mod accesslog;
pub mod admin;
pub mod backend;
pub mod body;
pub mod config;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod stats;
pub mod table;
pub mod tls;
