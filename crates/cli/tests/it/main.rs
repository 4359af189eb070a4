//! Integration tests of the `trustedge` binary: every test runs the real executable.

mod common;
mod end_to_end;
mod offline;
