//! SHA-256 hashes with domain separation.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::TypesError;

/// Domain tags. Every hash the ledger computes is prefixed with one of these, so that a
/// value of one kind can never be confused with a value of another kind that happens to
/// have the same bytes.
pub mod domain {
    /// Transaction signing bytes.
    pub const TX_SIGN: &[u8] = b"trustedge/tx-sign/v1";
    /// Transaction identifier.
    pub const TX_ID: &[u8] = b"trustedge/tx-id/v1";
    /// Block header hash.
    pub const BLOCK: &[u8] = b"trustedge/block/v1";
    /// Precommit vote signing bytes (what a commit certificate's signatures cover).
    pub const PRECOMMIT: &[u8] = b"trustedge/precommit/v1";
    /// Validator set hash.
    pub const VALIDATOR_SET: &[u8] = b"trustedge/validator-set/v1";
    /// Transaction result hash (leaf of the results root).
    pub const TX_RESULT: &[u8] = b"trustedge/tx-result/v1";
    /// Member (person or service) address derivation.
    pub const MEMBER_ADDRESS: &[u8] = b"trustedge/address/member/v1";
    /// Device pseudonymous address derivation.
    pub const DEVICE_ADDRESS: &[u8] = b"trustedge/address/device/v1";
    /// Anchored record leaf.
    pub const RECORD: &[u8] = b"trustedge/record/v1";
}

/// A 32-byte SHA-256 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used as the previous hash of the first block.
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `domain ‖ len(domain) ‖ parts…`.
    ///
    /// The domain length byte makes the boundary between tag and data unambiguous.
    pub fn tagged(domain: &[u8], parts: &[&[u8]]) -> Hash {
        let mut h = Sha256::new();
        h.update(domain);
        h.update([domain.len() as u8]);
        for p in parts {
            h.update(p);
        }
        Hash(h.finalize().into())
    }

    /// Plain SHA-256 of `data` (no domain tag), for external formats that define their own.
    pub fn sha256(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters (an optional `0x` prefix is accepted).
    pub fn from_hex(s: &str) -> Result<Hash, TypesError> {
        crate::codec::parse_hex_array(s).map(Hash)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", &self.to_hex()[..12])
    }
}

impl std::str::FromStr for Hash {
    type Err = TypesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
