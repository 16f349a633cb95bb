//! In-process integration tests: the real server on 127.0.0.1:0, raw sockets, exact bytes.
//! Expiry runs on a frozen clock that the tests move, so nothing sleeps.

mod expiry;
mod harness;
mod robustness;
mod tenants;
