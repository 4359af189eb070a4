//! Core types of the TrustEdge ledger.
//!
//! Everything here is pure data and pure functions: keys and signatures, addresses, hashing,
//! Merkle trees with inclusion proofs, the canonical binary encoding, transactions, blocks,
//! validator sets and commit certificates. No I/O, no clock, no randomness except where a
//! caller hands in a random source (key generation).
//!
//! # Canonical encoding
//! Every value that is hashed or signed is encoded with [Borsh](https://borsh.io): a
//! specification-defined, non-self-describing binary format whose encoding of a value is
//! unique (fixed-width little-endian integers, `u32` length prefixes, no optional padding,
//! no maps with unspecified order). The same value gives the same bytes on every machine and
//! architecture, which is what block and state hashes need. Decoding rejects trailing bytes,
//! so a byte string decodes to at most one value and re-encodes to itself. JSON forms (via
//! serde) exist for the HTTP API only and are never hashed.

pub mod address;
pub mod block;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod hash;
pub mod merkle;
pub mod tx;

pub use address::Address;
pub use block::{
    Block, BlockHeader, CommitCertificate, CommitSig, Event, TxFailure, TxOutcome, TxResult,
    Validator, ValidatorSet,
};
pub use codec::{decode, encode};
pub use crypto::{Keypair, PublicKey, Signature};
pub use error::TypesError;
pub use hash::Hash;
pub use merkle::{MerkleProof, MerkleTree};
pub use tx::{Payload, SignedTx, TxBody};

/// Height of a block. Genesis state is height 0; the first block is height 1.
pub type Height = u64;
