//! Berth's blob server: per-app persistent storage, content-addressed (`sha256:<hex>` ids) with
//! named objects in buckets on top, exact per-app quotas and crash-safe durability.
//!
//! Layout: [`store`] is the storage engine, a blocking library (plus async helpers that read
//! from an `AsyncRead`): content files and volume files on disk, metadata in `redb`, and one
//! committer thread that group-commits every metadata change. [`http`] is the API on top of it
//! (docs/protocols/blob.md), [`server`] binds and runs it, [`config`] is its configuration.
//! The on-disk format is described in `docs/blob-store-design.md`.

pub mod admin;
pub mod config;
pub mod http;
pub mod server;
pub mod store;
