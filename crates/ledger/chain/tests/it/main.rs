//! Integration tests of the ledger engine: the propose / validate / commit interface
//! consensus drives, admission errors, proofs and reopening.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod support;

mod blocks;
mod crash;
mod proofs;
mod submit;
mod validators;
