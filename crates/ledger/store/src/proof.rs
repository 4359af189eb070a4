//! Proofs of a state value (or of its absence) against a state root.
//!
//! A [`StateProof`] is the `jmt` 0.12 `SparseMerkleProof<Sha256>` held in types this crate
//! owns. Its Borsh encoding is, byte for byte, the Borsh encoding of `SparseMerkleProof`:
//!
//! ```text
//! proof    = option<leaf> ‖ u32 count ‖ node*          (count ≤ 256)
//! leaf     = key_hash[32] ‖ value_hash[32]
//! node     = 0x00                                        (empty subtree)
//!          | 0x01 ‖ left[32] ‖ right[32]                 (internal node)
//!          | 0x02 ‖ leaf                                 (leaf)
//! option<x> = 0x00 | 0x01 ‖ x
//! ```
//!
//! Siblings run from the leaf up to the root. Verification converts back to the `jmt` type
//! and runs `jmt`'s own verifier, so there is one definition of what a valid proof is; a test
//! pins that the two encodings agree. The JSON form writes hashes as hex.
//!
//! The key of a proof is `SHA-256(raw state key)` (`KeyHash::with::<Sha256>`), and the value
//! hash is `SHA-256(value)`. Verification is pure and needs only the root, the raw key and
//! the claimed value, so clients and `trustedge verify-proof` run it offline.

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::{KeyHash, RootHash};
use serde::{Deserialize, Serialize};
use trustedge_types::Hash;

use crate::ProofError;
use crate::tree::Hasher;

/// Most siblings a proof can have: one per bit of the 256-bit key hash.
pub const MAX_PROOF_SIBLINGS: usize = 256;

/// Largest encoded proof: the optional leaf, the count, and 256 of the largest nodes.
pub const MAX_PROOF_BYTES: usize = 1 + 64 + 4 + MAX_PROOF_SIBLINGS * 65;

/// The leaf a proof ends at: the queried key's leaf (membership), or the leaf of another key
/// that occupies the queried key's place (non-membership).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ProofLeaf {
    /// `SHA-256(key)`.
    pub key_hash: Hash,
    /// `SHA-256(value)`.
    pub value_hash: Hash,
}

/// A sibling on the path from the leaf to the root.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProofNode {
    /// An empty subtree.
    Null,
    /// An internal node, given by its children's hashes.
    Internal {
        /// Hash of the left child.
        left: Hash,
        /// Hash of the right child.
        right: Hash,
    },
    /// A subtree holding a single leaf.
    Leaf(ProofLeaf),
}

/// A Jellyfish Merkle proof of a state key's value, or of its absence, at some state root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct StateProof {
    /// The leaf the path ends at, if the path ends at a leaf.
    pub leaf: Option<ProofLeaf>,
    /// Siblings from the bottom of the path up to the root.
    pub siblings: Vec<ProofNode>,
}

impl StateProof {
    /// Converts a proof produced by `jmt`.
    pub(crate) fn from_jmt(proof: &SparseMerkleProof<Hasher>) -> Result<StateProof, ProofError> {
        let bytes = borsh::to_vec(proof).map_err(|e| ProofError::Malformed(e.to_string()))?;
        StateProof::from_bytes(&bytes)
    }

    fn to_jmt(&self) -> Result<SparseMerkleProof<Hasher>, ProofError> {
        self.check_shape()?;
        borsh::from_slice(&self.to_bytes()).map_err(|e| ProofError::Malformed(e.to_string()))
    }

    fn check_shape(&self) -> Result<(), ProofError> {
        if self.siblings.len() > MAX_PROOF_SIBLINGS {
            return Err(ProofError::Malformed(format!(
                "{} siblings, at most {MAX_PROOF_SIBLINGS}",
                self.siblings.len()
            )));
        }
        Ok(())
    }

    /// The canonical (Borsh) bytes, identical to `jmt`'s encoding of the proof.
    pub fn to_bytes(&self) -> Vec<u8> {
        trustedge_types::encode(self)
    }

    /// Decodes canonical bytes, refusing oversized input, trailing bytes and too many siblings.
    pub fn from_bytes(bytes: &[u8]) -> Result<StateProof, ProofError> {
        let proof: StateProof = trustedge_types::decode(bytes, MAX_PROOF_BYTES)
            .map_err(|e| ProofError::Malformed(e.to_string()))?;
        proof.check_shape()?;
        Ok(proof)
    }

    /// Whether this is a proof of membership (its leaf is the key's) for `key`.
    pub fn proves_membership_of(&self, key: &[u8]) -> bool {
        let kh = KeyHash::with::<Hasher>(key);
        self.leaf.is_some_and(|l| l.key_hash.0 == kh.0)
    }

    /// Verifies that under `root`, `key` has `value` (`Some`) or is absent (`None`).
    ///
    /// Pure and offline. Fails if the proof is malformed, if it proves a different value or
    /// key, or if the path does not hash to `root`.
    pub fn verify(&self, root: &Hash, key: &[u8], value: Option<&[u8]>) -> Result<(), ProofError> {
        let proof = self.to_jmt()?;
        proof
            .verify(RootHash(root.0), KeyHash::with::<Hasher>(key), value)
            .map_err(|e| ProofError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateProof {
        StateProof {
            leaf: Some(ProofLeaf {
                key_hash: Hash([1; 32]),
                value_hash: Hash([2; 32]),
            }),
            siblings: vec![
                ProofNode::Null,
                ProofNode::Internal {
                    left: Hash([3; 32]),
                    right: Hash([4; 32]),
                },
                ProofNode::Leaf(ProofLeaf {
                    key_hash: Hash([5; 32]),
                    value_hash: Hash([6; 32]),
                }),
            ],
        }
    }

    #[test]
    fn encoding_is_jmts_encoding() {
        let p = sample();
        let bytes = p.to_bytes();
        let j: SparseMerkleProof<Hasher> = borsh::from_slice(&bytes).unwrap();
        assert_eq!(borsh::to_vec(&j).unwrap(), bytes);
        assert_eq!(StateProof::from_jmt(&j).unwrap(), p);
        // Pin the layout itself, not only the agreement.
        assert_eq!(bytes.len(), 1 + 64 + 4 + 1 + 65 + 65);
        assert_eq!(&bytes[..2], &[1, 1]);
        // option tag, leaf (64), count = 3 (u32 LE), then the siblings' tags.
        assert_eq!(&bytes[65..69], &[3, 0, 0, 0]);
        assert_eq!(bytes[69], 0, "Null");
        assert_eq!(bytes[70], 1, "Internal");
        assert_eq!(&bytes[71..103], &[3; 32]);
        assert_eq!(bytes[135], 2, "Leaf");
        assert_eq!(&bytes[136..168], &[5; 32]);
    }

    #[test]
    fn json_round_trip_uses_hex() {
        let p = sample();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(&"01".repeat(32)), "{json}");
        assert!(json.contains("\"type\":\"internal\""), "{json}");
        let back: StateProof = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn oversized_and_trailing_inputs_are_malformed() {
        let mut bytes = sample().to_bytes();
        bytes.push(0);
        assert!(matches!(
            StateProof::from_bytes(&bytes),
            Err(ProofError::Malformed(_))
        ));
        let too_many = StateProof {
            leaf: None,
            siblings: vec![ProofNode::Null; MAX_PROOF_SIBLINGS + 1],
        };
        assert!(matches!(
            StateProof::from_bytes(&too_many.to_bytes()),
            Err(ProofError::Malformed(_))
        ));
        assert!(matches!(
            too_many.verify(&Hash::ZERO, b"k", None),
            Err(ProofError::Malformed(_))
        ));
        let max = StateProof {
            leaf: Some(ProofLeaf {
                key_hash: Hash::ZERO,
                value_hash: Hash::ZERO,
            }),
            siblings: vec![
                ProofNode::Internal {
                    left: Hash::ZERO,
                    right: Hash::ZERO
                };
                MAX_PROOF_SIBLINGS
            ],
        };
        assert_eq!(max.to_bytes().len(), MAX_PROOF_BYTES);
        assert_eq!(StateProof::from_bytes(&max.to_bytes()).unwrap(), max);
    }

    #[test]
    fn empty_tree_proves_absence_only() {
        let empty_root = Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
        let p = StateProof {
            leaf: None,
            siblings: vec![],
        };
        p.verify(&empty_root, b"anything", None).unwrap();
        assert!(p.verify(&empty_root, b"anything", Some(b"v")).is_err());
        assert!(p.verify(&Hash::ZERO, b"anything", None).is_err());
    }
}
