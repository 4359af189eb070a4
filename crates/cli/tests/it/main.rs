//! Integration tests of the `trustedge` binary, in one test binary (see STYLE.md): every
//! test runs the real executable, node processes included, on loopback ports.

// clippy.toml allows these in `#[test]` functions; the shared helpers are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    missing_docs,
    reason = "test code: a failed unwrap is a failed test"
)]

mod aerosol;
mod bench_contacts;
mod bench_matching;
mod chains;
mod common;
mod dashboard;
mod devnet;
mod distance;
mod end_to_end;
mod faults;
mod gaen_export;
mod offline;
mod origin;
mod simulate;
mod tracing;
mod tracing_sim;
