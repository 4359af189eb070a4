//! Errors of this crate's pure functions. Transaction failures are
//! [`trustedge_execution::TxError`]s; these are for genesis files and proof checking, which
//! run outside a transaction.

use trustedge_types::{PublicKey, TypesError};

/// Why a genesis file is not acceptable.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    /// The JSON does not parse as a genesis.
    #[error("genesis JSON: {0}")]
    Json(String),
    /// An identifier is not 1..=32 characters of `[a-z0-9-]`.
    #[error("invalid {what} {id:?}: must be 1..=32 characters of [a-z0-9-]")]
    InvalidId {
        /// What kind of identifier.
        what: &'static str,
        /// The identifier.
        id: String,
    },
    /// A field has an invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A list is longer than its bound.
    #[error("too many {what}: {count}, the limit is {limit}")]
    TooMany {
        /// The list.
        what: &'static str,
        /// Its length.
        count: usize,
        /// The bound.
        limit: usize,
    },
    /// Two organisations share an id.
    #[error("duplicate organisation id {0:?}")]
    DuplicateOrg(String),
    /// No organisation is a health authority, so nobody could ever admit anyone.
    #[error("at least one organisation must be a health authority")]
    NoHealthAuthority,
    /// The admission policy asks for zero approvals or more than there are approvers.
    #[error(
        "admission_approvals is {approvals}; it must be between 1 and the number of health \
         authorities ({health_authorities})"
    )]
    AdmissionApprovals {
        /// The policy's value.
        approvals: u32,
        /// Number of health-authority organisations.
        health_authorities: usize,
    },
    /// An organisation has no admin member, so nobody could ever manage it.
    #[error("organisation {0:?} has no admin member")]
    NoAdmin(String),
    /// A key is not a valid, strong ed25519 key.
    #[error("invalid key of {whose}: {error}")]
    InvalidKey {
        /// Whose key (organisation id or validator name).
        whose: String,
        /// Why.
        error: TypesError,
    },
    /// A key appears twice among members and validators.
    #[error("key {0} is used more than once among members and validators")]
    DuplicateKey(PublicKey),
    /// The validators do not form a valid set.
    #[error("validator set: {0}")]
    Validators(TypesError),
}

/// Why a record is not proven to be part of an anchored batch.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AnchorError {
    /// The proof is for a tree of another size than the anchored batch.
    #[error(
        "proof is for a tree of {proof_tree_size} records, the anchored batch has {anchor_count}"
    )]
    CountMismatch {
        /// The proof's tree size.
        proof_tree_size: u64,
        /// The anchor's record count.
        anchor_count: u64,
    },
    /// The anchor record's fields do not hash to its id: it was altered after it was read.
    #[error("anchor record fields do not match its id")]
    IdMismatch,
    /// The Merkle proof does not lead from the record to the anchored root.
    #[error("record is not in the anchored batch: {0}")]
    BadProof(TypesError),
}
