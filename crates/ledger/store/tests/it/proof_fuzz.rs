//! (7) Decoding and verifying arbitrary proofs never panics.

use proptest::prelude::*;
use trustedge_store::{ProofLeaf, ProofNode, StateProof};
use trustedge_types::Hash;

fn hash() -> impl Strategy<Value = Hash> {
    prop_oneof![
        Just(Hash::ZERO),
        Just(Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__")),
        any::<[u8; 32]>().prop_map(Hash),
    ]
}

fn leaf() -> impl Strategy<Value = ProofLeaf> {
    (hash(), hash()).prop_map(|(key_hash, value_hash)| ProofLeaf {
        key_hash,
        value_hash,
    })
}

fn node() -> impl Strategy<Value = ProofNode> {
    prop_oneof![
        Just(ProofNode::Null),
        (hash(), hash()).prop_map(|(left, right)| ProofNode::Internal { left, right }),
        leaf().prop_map(ProofNode::Leaf),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        root in hash(),
        key in proptest::collection::vec(any::<u8>(), 0..8),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    ) {
        if let Ok(p) = StateProof::from_bytes(&bytes) {
            // Decoding is canonical: what decodes re-encodes to the same bytes.
            prop_assert_eq!(&p.to_bytes(), &bytes);
            let _ = p.verify(&root, &key, value.as_deref());
        }
        let _ = serde_json::from_slice::<StateProof>(&bytes)
            .map(|p| p.verify(&root, &key, value.as_deref()));
    }

    #[test]
    fn arbitrary_structured_proofs_never_panic(
        leaf in proptest::option::of(leaf()),
        siblings in proptest::collection::vec(node(), 0..300),
        root in hash(),
        key in proptest::collection::vec(any::<u8>(), 0..8),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    ) {
        let p = StateProof { leaf, siblings };
        let r = p.verify(&root, &key, value.as_deref());
        // Random proofs do not verify (except by a negligible accident).
        prop_assert!(r.is_err() || p.siblings.is_empty());
        let _ = StateProof::from_bytes(&p.to_bytes());
    }
}
