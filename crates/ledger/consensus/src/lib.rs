//! TrustEdge BFT consensus on [Malachite](https://github.com/circlefin/malachite)
//! (`arc-malachitebft-app-channel`, pinned).
//!
//! We do not write a consensus protocol: Malachite runs Tendermint, and this crate is the
//! glue between it and the ledger ([`trustedge_chain::Ledger`]):
//! - [`context`]: the Malachite [`context::LedgerContext`] (heights, validator addresses,
//!   the block hash as the value, votes, proposals, the validator set and proposer
//!   selection);
//! - [`signing`]: what validators sign (a precommit signs exactly
//!   [`trustedge_types::CommitCertificate::sign_bytes`], so Malachite's commit certificates
//!   are the ledger's) and the ed25519 signer and verifier;
//! - [`parts`]: the proposed block streamed in signed chunks, and their reassembly;
//! - [`codec`]: Borsh wire and WAL encodings with size limits;
//! - [`store`]: undecided proposals on disk, for restarts;
//! - [`app`]: the loop that answers every message of the engine with the ledger;
//! - [`engine`]: settings, starting and stopping a validator's engine.
//!
//! Architecture invariant: consensus decides *which* block is next; whether a block is
//! valid and what it does is the ledger's ([`trustedge_chain::Ledger::validate_block`],
//! [`trustedge_chain::Ledger::commit_block`]). A block is committed only with a certificate
//! of more than two thirds of the voting power of the ledger's validator set.

pub mod app;
pub mod codec;
pub mod context;
pub mod engine;
mod error;
pub mod parts;
pub mod signing;
pub mod store;

pub use app::{CommitHook, ConsensusStats, Faults, NowMs, StatsSnapshot, system_now};
pub use context::{BlockHash, Height, LedgerContext, ValidatorAddress};
pub use engine::{ConsensusHandle, ConsensusSettings, EngineOptions, start};
pub use error::ConsensusError;
