//! Outbreak-origin inference (cloud level, issue 5 §4).
//!
//! Among the confirmed cases, the cloud builds a candidate transmission graph from two kinds
//! of evidence — close-contact encounters between confirmed cases (the
//! [`trustedge_contacts::ContactGraph`]) and co-presence in a room during an elevated-risk
//! aerosol window ([`RoomWindow`]) — weights each arc `u → v` with an explicit
//! epidemiological model ([`model`]: lognormal incubation, infectiousness relative to
//! symptom onset, the encounter's risk or the window's probability), and from it:
//!
//! - samples transmission trees with Wilson's algorithm ([`sample`] internals) to get the
//!   posterior probability that each case is the origin of its cluster;
//! - finds the single most likely tree with Chu–Liu/Edmonds ([`edmonds`]);
//! - explains each leading candidate: the arcs of its subtree with their evidence, and its
//!   forward close-contact chains (the contact graph's k-hop query);
//! - and ranks by the "earliest symptom onset" baseline for comparison.
//!
//! [`rank_origins`] is the entry point the cloud node and the city simulation call.
//! [`outbreak`] generates seeded outbreaks with a known tree, and [`eval`] measures top-1 /
//! top-3 accuracy against the baseline.
//!
//! Architecture invariant: pure. No I/O, no clock; randomness only from a seed argument;
//! malformed input is a typed [`OriginError`], never a panic.

pub mod edmonds;
pub mod eval;
pub mod graph;
pub mod model;
pub mod outbreak;
pub mod rank;
mod sample;

pub use eval::{EvalReport, EvalSpec, evaluate};
pub use graph::{CandidateArc, CandidateGraph, EvidenceRef};
pub use model::{Case, EpiModel, RoomWindow, VenueId};
pub use outbreak::{Infection, Outbreak, OutbreakSpec, generate_outbreak};
pub use rank::{
    ClusterRanking, ClusterRule, Explanation, OriginCandidate, OriginReport, OriginRule,
    RankParams, TreeEdge, earliest_onset_ranking, rank_origins,
};

/// Everything that can go wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OriginError {
    /// Two cases with the same id.
    #[error("case {0} is listed twice")]
    DuplicateCase(u32),
    /// More cases than one inference takes.
    #[error("{0} cases: more than the 1,000,000 one inference takes")]
    TooManyCases(usize),
    /// A malformed room window.
    #[error("invalid room window: {0}")]
    InvalidRoomWindow(&'static str),
    /// A model parameter out of range.
    #[error("invalid epidemiological model: every parameter must be finite and in range")]
    InvalidModel,
    /// A ranking parameter out of range.
    #[error("invalid parameters: {0}")]
    InvalidParams(&'static str),
    /// The contact graph refused the evidence.
    #[error("contact graph: {0}")]
    Contacts(#[from] trustedge_contacts::ContactError),
}
