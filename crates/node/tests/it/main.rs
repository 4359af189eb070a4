//! Integration tests of the node, in one binary (see STYLE.md): real HTTP on loopback ports
//! (`127.0.0.1:0`), nodes running in this process.

// clippy.toml allows these in `#[test]` functions; the shared helpers are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

mod aerosol;
mod aerosol_delivery;
mod bad_upstream;
mod common;
mod consensus;
mod contacts;
mod docs_metrics;
mod edge_mqtt;
mod follower;
mod fuzz;
mod gossip;
mod light;
mod origin;
mod proofs;
mod refusals;
mod submit;
mod tracing_e2e;
