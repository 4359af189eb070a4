//! Integration tests of the built-in contracts, driven through the runtime's block builder.
//! One test binary (see STYLE.md): each file is a module.

// clippy.toml allows unwrap and panic in `#[test]` functions only; the harness and table
// helpers of this test binary are test code too, and a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::panic)]

mod access;
mod aerosol;
mod anchor;
mod describe;
mod determinism;
mod devices;
mod diagnosis;
mod exposure;
mod failure;
mod fuzz;
mod genesis;
mod harness;
mod orgs;
mod validators;
