//! The error enums of this crate: [`StoreError`] for everything the store does, and
//! [`ProofError`] for the pure, offline verification of a [`crate::StateProof`].

use trustedge_types::{Hash, Height};

/// Everything that can go wrong in the store.
///
/// Refusals of [`crate::Store::commit_block`] have their own variants so that the caller can
/// tell a bad argument (its own bug) from a failing disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O, a lock held by another process, a full disk, ...).
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// A file beside the database (the block log) could not be read or written.
    #[error("i/o: {0}")]
    Io(String),
    /// Bytes read from the database do not decode: the file was damaged or written by
    /// something else.
    #[error("corrupt store: {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// Why it does not decode.
        reason: String,
    },
    /// The Jellyfish Merkle tree failed (a missing node, or an internal error of the library).
    #[error("state tree: {0}")]
    Tree(String),
    /// The file was written by a different version of this crate's table layout.
    #[error("store schema version is {found}, this build reads version {expected}")]
    SchemaMismatch {
        /// Version found in the file.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// Genesis has not been written yet.
    #[error("store is not initialised (no genesis)")]
    NotInitialised,
    /// Genesis was written already.
    #[error("store is already initialised")]
    AlreadyInitialised,
    /// A height above the latest committed one was asked for.
    #[error("height {height} is not committed (latest is {latest})")]
    UnknownHeight {
        /// Height asked for.
        height: Height,
        /// Latest committed height.
        latest: Height,
    },
    /// A block at the wrong height was offered for commit.
    #[error("block height {got} is not the next height {expected}")]
    WrongHeight {
        /// `latest + 1`.
        expected: Height,
        /// The block's height.
        got: Height,
    },
    /// A block whose `prev_hash` is not the latest block's hash was offered for commit.
    #[error("block prev_hash {got} is not the latest block hash {expected}")]
    WrongPrevHash {
        /// Hash of the latest block ([`Hash::ZERO`] before the first block).
        expected: Hash,
        /// The block's `prev_hash`.
        got: Hash,
    },
    /// A block of another chain was offered for commit.
    #[error("block chain id {got:?} is not the store's chain id {expected:?}")]
    WrongChainId {
        /// The store's chain id.
        expected: String,
        /// The block's chain id.
        got: String,
    },
    /// The prepared state was computed for another height.
    #[error("prepared state is for height {prepared}, block is at height {block}")]
    PreparedHeightMismatch {
        /// Height of the prepared state.
        prepared: Height,
        /// Height of the block.
        block: Height,
    },
    /// The prepared state root differs from the header's `state_root`.
    #[error("prepared state root {prepared} differs from the header's state_root {header}")]
    StateRootMismatch {
        /// Root of the prepared state.
        prepared: Hash,
        /// The header's `state_root`.
        header: Hash,
    },
    /// The writes passed to commit are not the writes the prepared state was computed from.
    #[error("writes differ from the writes the prepared state was computed from")]
    PreparedWritesMismatch,
    /// Counts of transactions, transaction hashes and results differ.
    #[error("block has {txs} transactions but {tx_hashes} hashes and {results} results")]
    CountMismatch {
        /// Transactions in the block.
        txs: usize,
        /// Transaction hashes given.
        tx_hashes: usize,
        /// Results given.
        results: usize,
    },
    /// The given transaction hashes do not have the header's `tx_root`.
    #[error("transaction hashes do not match the header's tx_root")]
    TxRootMismatch,
    /// The given results do not have the header's `results_root`.
    #[error("results do not match the header's results_root")]
    ResultsRootMismatch,
    /// The certificate is not for this block.
    #[error("certificate is for height {cert_height} block {cert_hash}, not this block")]
    CertificateMismatch {
        /// The certificate's height.
        cert_height: Height,
        /// The certificate's block hash.
        cert_hash: Hash,
    },
    /// An argument is out of its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation is not implemented by this store.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        })*
    };
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Why a [`crate::StateProof`] does not prove what it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof's bytes or structure are not a well-formed proof.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The proof is well formed but does not prove the claim against the root.
    #[error("proof does not verify: {0}")]
    Invalid(String),
}
