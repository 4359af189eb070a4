//! The one error enum of this crate.

/// Errors from decoding, parsing and verifying core types.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TypesError {
    /// The bytes are not a valid canonical encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Codec(String),
    /// The input is larger than the limit for its kind.
    #[error("{what} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// A public key is not a valid ed25519 point, or is a weak (small-order) key.
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// An address string does not parse.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// A hex string does not parse.
    #[error("invalid hex: {0}")]
    InvalidHex(String),
    /// A field has an invalid value.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
}
