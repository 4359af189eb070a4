//! Integration tests of trustedge-contacts: hand-built graphs for the semantics, and property
//! tests against a brute-force enumeration of every chain.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod reference;
mod semantics;

use trustedge_contacts::{CaseId, Encounter};

/// An encounter with a duration of 600 s and a score of 1.
pub fn enc(a: u32, b: u32, start_s: u64) -> Encounter {
    Encounter {
        a: CaseId(a),
        b: CaseId(b),
        start_s,
        duration_s: 600,
        score: 1.0,
    }
}
