//! (2) State proofs: membership and non-membership at current and older heights, and every
//! way of lying with one fails.

use trustedge_store::{ProofError, StateProof};

use crate::common::*;

#[test]
fn membership_and_absence_verify_at_every_height() {
    let (_dir, store) = genesis_store();
    for _ in 0..6 {
        commit_next(&store).unwrap();
    }
    for h in 0..=6 {
        verify_state_at(&store, h);
    }
}

/// Like `verify_state`, but for an older height (the snapshot is always the latest).
fn verify_state_at(store: &trustedge_store::Store, h: u64) {
    let model = model_state(h);
    let root = store.state_root(h).unwrap();
    for i in 0..64 {
        let k = key(i);
        let (value, proof) = store.get_with_proof(&k, h).unwrap();
        assert_eq!(value.as_ref(), model.map.get(&k), "key {i} at {h}");
        proof.verify(&root, &k, value.as_deref()).unwrap();
        assert_eq!(proof.proves_membership_of(&k), value.is_some());
        // The opposite claim fails.
        match &value {
            Some(_) => assert!(proof.verify(&root, &k, None).is_err()),
            None => assert!(proof.verify(&root, &k, Some(b"anything")).is_err()),
        }
    }
}

#[test]
fn a_key_deleted_later_is_present_at_the_older_height_only() {
    let (_dir, store) = genesis_store();
    commit_writes(&store, &writes([("x", Some("1"))])).unwrap();
    commit_writes(&store, &writes([("x", None)])).unwrap();
    let (v1, p1) = store.get_with_proof(b"x", 1).unwrap();
    assert_eq!(v1.as_deref(), Some(b"1".as_slice()));
    p1.verify(&store.state_root(1).unwrap(), b"x", Some(b"1"))
        .unwrap();
    let (v2, p2) = store.get_with_proof(b"x", 2).unwrap();
    assert_eq!(v2, None);
    p2.verify(&store.state_root(2).unwrap(), b"x", None)
        .unwrap();
    // Each proof fails against the other height's root.
    assert!(
        p1.verify(&store.state_root(2).unwrap(), b"x", Some(b"1"))
            .is_err()
    );
    assert!(
        p2.verify(&store.state_root(1).unwrap(), b"x", None)
            .is_err()
    );
    assert!(store.get_with_proof(b"x", 3).is_err());
}

#[test]
fn tampered_value_wrong_key_and_wrong_root_fail() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    commit_next(&store).unwrap();
    let h = 2;
    let root = store.state_root(h).unwrap();
    let other_root = store.state_root(1).unwrap();
    assert_ne!(root, other_root);
    let k = key(3);
    let (value, proof) = store.get_with_proof(&k, h).unwrap();
    let value = value.expect("key 3 is set at genesis and not touched by blocks 1-2");
    proof.verify(&root, &k, Some(&value)).unwrap();

    let mut tampered = value.clone();
    tampered.push(0);
    assert!(matches!(
        proof.verify(&root, &k, Some(&tampered)),
        Err(ProofError::Invalid(_))
    ));
    assert!(proof.verify(&root, &key(4), Some(&value)).is_err());
    assert!(proof.verify(&other_root, &k, Some(&value)).is_err());
    assert!(
        proof
            .verify(&trustedge_types::Hash::ZERO, &k, Some(&value))
            .is_err()
    );

    // A non-membership proof does not prove a present key absent.
    let (absent, nproof) = store.get_with_proof(b"nope", h).unwrap();
    assert_eq!(absent, None);
    nproof.verify(&root, b"nope", None).unwrap();
    assert!(nproof.verify(&root, &k, None).is_err());
    assert!(nproof.verify(&other_root, b"nope", None).is_err());
}

#[test]
fn every_single_bit_flip_of_the_proof_bytes_fails() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    let root = store.state_root(1).unwrap();
    for (k, expect) in [(key(3), true), (b"absent".to_vec(), false)] {
        let (value, proof) = store.get_with_proof(&k, 1).unwrap();
        assert_eq!(value.is_some(), expect);
        let bytes = proof.to_bytes();
        assert!(!bytes.is_empty());
        assert_eq!(StateProof::from_bytes(&bytes).unwrap(), proof);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                if let Ok(p) = StateProof::from_bytes(&b) {
                    assert!(
                        p.verify(&root, &k, value.as_deref()).is_err(),
                        "flip of byte {i} bit {bit} still verifies"
                    );
                }
            }
        }
        // Truncations and extensions are refused.
        assert!(StateProof::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StateProof::from_bytes(&longer).is_err());
        // Dropping or adding a sibling fails.
        let mut p = proof.clone();
        if p.siblings.pop().is_some() {
            assert!(p.verify(&root, &k, value.as_deref()).is_err());
        }
        let mut p = proof.clone();
        p.siblings.push(trustedge_store::ProofNode::Null);
        assert!(p.verify(&root, &k, value.as_deref()).is_err());
    }
}

#[test]
fn json_round_trip_keeps_a_proof_valid() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    let root = store.state_root(1).unwrap();
    let (value, proof) = store.get_with_proof(&key(5), 1).unwrap();
    let json = serde_json::to_string(&proof).unwrap();
    let back: StateProof = serde_json::from_str(&json).unwrap();
    assert_eq!(back, proof);
    back.verify(&root, &key(5), value.as_deref()).unwrap();
}

#[test]
fn the_empty_state_proves_every_key_absent() {
    let (_dir, store) = temp_store();
    let root = store
        .init_genesis(CHAIN_ID, GENESIS_DOC, &Default::default())
        .unwrap();
    assert_eq!(root.0, *b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
    let (v, p) = store.get_with_proof(b"k", 0).unwrap();
    assert_eq!(v, None);
    p.verify(&root, b"k", None).unwrap();
    assert!(p.verify(&root, b"k", Some(b"")).is_err());
}
