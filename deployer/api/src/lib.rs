//! berthd's control API (package `berth.v1`): messages, clients and server traits generated
//! from `proto/berth/v1/control.proto`, the documented contract (docs/deploy/control-api.md).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `berth.v1`.
pub mod v1 {
    tonic::include_proto!("berth.v1");
}
