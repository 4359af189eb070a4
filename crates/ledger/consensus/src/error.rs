//! The one error enum of this crate.

use trustedge_chain::{BlockError, LedgerError};
use trustedge_types::TypesError;

/// Everything that can go wrong in consensus glue: a malformed input from the network, a
/// failing disk, or the engine itself.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// Bytes from the network or the WAL do not decode into the expected message.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A message could not be encoded (it holds something the wire format cannot carry).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A proposal's parts are incomplete, inconsistent or not signed by their proposer.
    #[error("bad proposal parts: {0}")]
    BadParts(String),
    /// A validator set cannot be used for consensus.
    #[error("invalid validator set: {0}")]
    ValidatorSet(String),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger refused or failed a block.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A core type failed to decode or verify.
    #[error(transparent)]
    Types(#[from] TypesError),
    /// The store of undecided proposals failed.
    #[error("proposal store: {0}")]
    Store(String),
    /// The consensus configuration is invalid.
    #[error("consensus config: {0}")]
    Config(String),
    /// The Malachite engine failed to start or stop.
    #[error("consensus engine: {0}")]
    Engine(String),
    /// A blocking task panicked or was cancelled.
    #[error("task {task} failed: {message}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How.
        message: String,
    },
    /// Malachite closed the channel to the application (the engine stopped).
    #[error("the consensus engine closed its channel to the application")]
    ChannelClosed,
}

impl From<redb::Error> for ConsensusError {
    fn from(e: redb::Error) -> Self {
        ConsensusError::Store(e.to_string())
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for ConsensusError {
            fn from(e: $t) -> Self {
                ConsensusError::Store(e.to_string())
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
