//! The TrustEdge ledger engine.
//!
//! [`Ledger`] ties the pure executor and contracts to the store, and offers the interface a
//! consensus engine drives:
//! - [`Ledger::propose_block`]: build a block from the mempool (executing it, so its header
//!   carries the state root after execution);
//! - [`Ledger::validate_block`]: check a received block by executing it;
//! - [`Ledger::commit_block`]: commit a decided block with its commit certificate, in one
//!   atomic store transaction.
//!
//! It also admits transactions ([`Ledger::submit`]): decoding and static checks, signature
//! verification (batched across cores and cached per node), admission against the latest
//! committed state, then the bounded mempool.
//!
//! Blocking: this crate does disk I/O through the store and may block; async callers run it
//! on a blocking thread.

pub mod ledger;
pub mod mempool;
pub mod proofs;
pub mod verify;

pub use ledger::{
    BlockError, CommitInfo, DEFAULT_CHECKPOINT_INTERVAL, Ledger, LedgerConfig, LedgerError, Status,
    SubmitError, TxStatus, block_log_path,
};
pub use mempool::{Mempool, MempoolConfig, MempoolError};
pub use proofs::{Proof, ProofError, StateValueProof, TxInclusionProof};
pub use verify::SigCache;
