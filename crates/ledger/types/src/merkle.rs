//! Binary Merkle trees as specified by RFC 6962 / RFC 9162 (Certificate Transparency).
//!
//! Leaf hash `SHA-256(0x00 ‖ data)`, interior node `SHA-256(0x01 ‖ left ‖ right)`: the one-byte
//! prefixes separate the two domains, so an interior node can never be passed off as a leaf
//! (the second-preimage attack on naive Merkle trees). A level with an odd number of nodes
//! promotes its last node unchanged instead of duplicating it, so no two different leaf lists
//! share a root (the flaw behind CVE-2012-2459). The empty tree's root is `SHA-256("")`.
//! Transaction roots, result roots and anchored record batches all use this tree.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Hash, TypesError};

/// Longest proof accepted: trees have at most 2^64 leaves.
pub const MAX_PROOF_LEN: usize = 64;

/// Hash of a leaf's data.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// Hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Root of the empty tree.
pub fn empty_root() -> Hash {
    Hash::sha256(&[])
}

/// A Merkle tree kept whole in memory, for building roots and proofs.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` are the leaf hashes; the last level holds the root.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over the given leaves' data.
    pub fn from_leaves<I, T>(leaves: I) -> MerkleTree
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        MerkleTree::from_leaf_hashes(leaves.into_iter().map(|l| leaf_hash(l.as_ref())).collect())
    }

    /// Builds the tree over already-computed leaf hashes.
    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> MerkleTree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or(&[]);
            let next: Vec<Hash> = prev
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => Hash::ZERO, // chunks(2) yields one or two items
                })
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(r) if !self.is_empty() => *r,
            _ => empty_root(),
        }
    }

    /// The inclusion proof of leaf `index`, or `None` if out of range.
    pub fn proof(&self, index: u64) -> Option<MerkleProof> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::new();
        let mut i = index as usize;
        for level in &self.levels[..self.levels.len() - 1] {
            if i % 2 == 1 {
                path.push(level[i - 1]);
            } else if i + 1 < level.len() {
                path.push(level[i + 1]);
            }
            i /= 2;
        }
        Some(MerkleProof {
            leaf_index: index,
            tree_size: self.len(),
            path,
        })
    }
}

/// Computes the root of a list of leaves' data without keeping the tree.
pub fn root_of<I, T>(leaves: I) -> Hash
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    MerkleTree::from_leaves(leaves).root()
}

/// An inclusion proof (an RFC 9162 audit path).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MerkleProof {
    /// Index of the leaf.
    pub leaf_index: u64,
    /// Number of leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes from the leaf up.
    pub path: Vec<Hash>,
}

impl MerkleProof {
    /// Verifies that `leaf_data` is leaf `leaf_index` of the tree with root `root`.
    pub fn verify(&self, leaf_data: &[u8], root: &Hash) -> Result<(), TypesError> {
        self.verify_leaf_hash(&leaf_hash(leaf_data), root)
    }

    /// Verifies a proof for an already-hashed leaf (RFC 9162 §2.1.3.2).
    pub fn verify_leaf_hash(&self, leaf: &Hash, root: &Hash) -> Result<(), TypesError> {
        let fail = |reason: &str| {
            Err(TypesError::Invalid {
                field: "merkle proof",
                reason: reason.to_string(),
            })
        };
        if self.leaf_index >= self.tree_size {
            return fail("leaf index is outside the tree");
        }
        if self.path.len() > MAX_PROOF_LEN {
            return fail("path is too long");
        }
        let mut fnode = self.leaf_index;
        let mut snode = self.tree_size - 1;
        let mut r = *leaf;
        for p in &self.path {
            if snode == 0 {
                return fail("path is longer than the tree is deep");
            }
            if fnode & 1 == 1 || fnode == snode {
                r = node_hash(p, &r);
                if fnode & 1 == 0 {
                    while fnode & 1 == 0 && fnode != 0 {
                        fnode >>= 1;
                        snode >>= 1;
                    }
                }
            } else {
                r = node_hash(&r, p);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        if snode != 0 {
            return fail("path is shorter than the tree is deep");
        }
        if r != *root {
            return fail("computed root does not match");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962 §2.1 reference definition, recursive, used to check the iterative build.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                let k = if k == n { n / 2 } else { k };
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn matches_rfc6962_reference_and_known_empty_root() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for n in 0..40usize {
            let leaves: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 3]).collect();
            assert_eq!(
                MerkleTree::from_leaves(&leaves).root(),
                mth(&leaves),
                "n={n}"
            );
        }
    }

    #[test]
    fn duplicated_last_leaf_changes_root() {
        let a = root_of([b"a".as_slice(), b"b", b"c"]);
        let b = root_of([b"a".as_slice(), b"b", b"c", b"c"]);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_tampering_fails(n in 1usize..70, pick in any::<u64>(), flip in any::<u8>()) {
            let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect();
            let tree = MerkleTree::from_leaves(&leaves);
            let root = tree.root();
            let i = (pick % n as u64) as usize;
            let proof = tree.proof(i as u64).unwrap();
            prop_assert!(proof.verify(&leaves[i], &root).is_ok());
            // wrong leaf
            prop_assert!(proof.verify(b"not a leaf", &root).is_err());
            // wrong index
            if n > 1 {
                let mut p = proof.clone();
                p.leaf_index = (p.leaf_index + 1) % n as u64;
                prop_assert!(p.verify(&leaves[i], &root).is_err());
            }
            // tampered sibling
            if !proof.path.is_empty() {
                let mut p = proof.clone();
                let j = flip as usize % p.path.len();
                p.path[j].0[0] ^= 1;
                prop_assert!(p.verify(&leaves[i], &root).is_err());
            }
        }
    }
}
