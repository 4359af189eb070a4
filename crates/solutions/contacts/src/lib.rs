//! Contact chains among confirmed cases (cloud level).
//!
//! Once two cases' diagnosis keys are public, the cloud can attribute the close-contact
//! encounters that edges scored (by RPI) to case ids. This crate indexes those
//! [`Encounter`]s and answers, for a confirmed case, "through which other confirmed cases is
//! it connected, up to k hops, when, and how strongly" — forward in time (whom it may have
//! infected, onward) or backward (who may have infected it; issue 5's origin inference).
//!
//! - [`ContactGraph`]: an immutable compressed-sparse-row index, one row per case holding
//!   both directions of each contact (a→b and b→a), each row sorted by time, 16 bytes per
//!   stored direction; built by counting and sorting, with an optional [`EncounterFilter`].
//! - [`LiveContactGraph`]: a base [`ContactGraph`] plus a small sorted delta for encounters
//!   that keep arriving; queries see both; [`LiveContactGraph::compact`] folds the delta in.
//! - [`ChainQuery`] → [`ContactChains`]: a bounded, deterministic k-hop search (see
//!   [`query`] for the exact semantics): one best chain per reached case, earliest arrival
//!   (forward) or latest departure (backward) when time-respecting, fewest hops otherwise.
//! - [`ContactLinker`]: turns the ledger's diagnosis uploads (cases, their keys' RPIs) and
//!   exposure notices (source case, one exposed RPI, day, score) into encounters between
//!   confirmed cases, in either order, deduped, with revocation (see [`linker`]).
//! - [`synth`]: a seeded synthetic workload (skewed degrees) for benchmarks and tests.
//!
//! Architecture invariant: pure. No I/O, no clock, no randomness (the synthetic generator
//! takes its random source as an argument); a malformed encounter or query is a typed
//! [`ContactError`], never a panic.

pub mod graph;
pub mod linker;
pub mod live;
pub mod query;
pub mod synth;

pub use graph::{CaseId, ContactGraph, Encounter, EncounterFilter, TimeWindow};
pub use linker::{ContactLinker, LinkerConfig, NoticeInput, UploadId};
pub use live::LiveContactGraph;
pub use query::{Chain, ChainQuery, ContactChains, Direction, Hop, MAX_HOPS};

/// Everything that can go wrong building an index or running a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContactError {
    /// An encounter of a case with itself.
    #[error("encounter of case {0} with itself")]
    SelfContact(u32),
    /// A score that is not a finite number at or above zero.
    #[error(
        "encounter between cases {a} and {b} has an invalid score {score} (must be finite and >= 0)"
    )]
    InvalidScore {
        /// One side of the encounter.
        a: u32,
        /// The other side.
        b: u32,
        /// The offending score.
        score: f32,
    },
    /// The encounters of one graph span more than `u32::MAX` seconds (136 years): times are
    /// stored as 32-bit offsets from the earliest one.
    #[error("encounters span {span_s} s, more than the {max_s} s one graph can hold")]
    TimeSpanTooLarge {
        /// Latest start minus earliest start.
        span_s: u64,
        /// The most one graph holds.
        max_s: u64,
    },
    /// The queried case has no stored encounter.
    #[error("case {0} has no stored encounter")]
    UnknownCase(u32),
    /// A query parameter out of range.
    #[error("invalid query: {0}")]
    InvalidQuery(&'static str),
}
