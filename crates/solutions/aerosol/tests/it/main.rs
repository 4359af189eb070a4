//! Integration tests of `trustedge-aerosol`, in one test binary.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod alert;
mod detect;
mod risk;
