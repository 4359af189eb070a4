//! Integration tests of `trustedge-store`, in one binary (see STYLE.md).
//!
//! `crash` re-executes this binary as a child process; see that module.

// clippy.toml allows these in `#[test]` functions; the shared helpers are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

mod chain;
mod crash;
mod damaged;
mod determinism;
mod events;
mod proof_fuzz;
mod proofs;
mod refusals;
mod snapshot;
