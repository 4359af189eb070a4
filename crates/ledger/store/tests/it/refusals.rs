//! (4) commit_block refuses what does not extend the chain consistently, and writes nothing
//! when it does.

use trustedge_store::{Store, StoreError};
use trustedge_types::{Hash, TxOutcome};

use crate::common::*;

fn assert_unchanged(store: &Store, height: u64) {
    assert_eq!(store.latest_height().unwrap(), height);
    assert!(store.block(height + 1).unwrap().is_none());
    assert_eq!(verify_chain(store), height);
}

/// Re-signs the certificate after a header change, so only the change itself is wrong.
fn resign(p: &mut Pending) {
    let (key, _) = validator();
    p.cert = sign_cert(&key, &p.block.header);
}

#[test]
fn wrong_height_is_refused() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    // A block built for height 2, committed once; offered again it is stale.
    let stale = next_block(&store, &content(2)).unwrap();
    let again = next_block(&store, &content(2)).unwrap();
    stale.commit(&store).unwrap();
    assert!(matches!(
        again.commit(&store),
        Err(StoreError::WrongHeight {
            expected: 3,
            got: 2
        })
    ));
    // A consistent block for height 5, from a longer copy of the same chain.
    let (_other_dir, other) = genesis_store();
    for _ in 0..4 {
        commit_next(&other).unwrap();
    }
    let ahead = next_block(&other, &content(5)).unwrap();
    assert!(matches!(
        ahead.commit(&store),
        Err(StoreError::WrongHeight {
            expected: 3,
            got: 5
        })
    ));
    assert_unchanged(&store, 2);
    commit_next(&store).unwrap();
    assert_unchanged(&store, 3);
}

#[test]
fn edited_public_fields_of_a_prepared_state_are_refused() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    commit_next(&store).unwrap();
    // Prepared on top of height 0 (version 1), relabelled as height 3 with a matching header:
    // committing it would write version-1 nodes over the committed ones.
    let mut p = next_block(&store, &content(3)).unwrap();
    let old = store.prepare_state(0, &content(3).writes).unwrap();
    p.prepared = old;
    p.prepared.height = 3;
    p.block.header.state_root = p.prepared.root;
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::PreparedHeightMismatch {
            prepared: 1,
            block: 3
        })
    ));
    let mut p = next_block(&store, &content(3)).unwrap();
    p.prepared.root = Hash([5; 32]);
    p.block.header.state_root = Hash([5; 32]);
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::StateRootMismatch { .. })
    ));
    assert_unchanged(&store, 2);
}

#[test]
fn wrong_prev_hash_is_refused() {
    let (_dir, store) = genesis_store();
    // Height 1 must point at ZERO.
    let mut p = next_block(&store, &content(1)).unwrap();
    p.block.header.prev_hash = Hash([1; 32]);
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::WrongPrevHash { .. })
    ));
    assert_unchanged(&store, 0);
    commit_next(&store).unwrap();
    let mut p = next_block(&store, &content(2)).unwrap();
    p.block.header.prev_hash = Hash::ZERO;
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::WrongPrevHash { .. })
    ));
    assert_unchanged(&store, 1);
}

#[test]
fn prepared_root_differing_from_the_header_is_refused() {
    let (_dir, store) = genesis_store();
    let mut p = next_block(&store, &content(1)).unwrap();
    p.block.header.state_root = Hash([7; 32]);
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::StateRootMismatch { .. })
    ));
    // A prepared state of other writes, with the header claiming its root: the write set
    // passed to commit is not the one prepared.
    let mut p = next_block(&store, &content(1)).unwrap();
    let other = store.prepare_state(0, &content(2).writes).unwrap();
    p.block.header.state_root = other.root;
    p.prepared = other;
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::PreparedWritesMismatch)
    ));
    assert_unchanged(&store, 0);
}

#[test]
fn prepared_state_of_another_height_is_refused() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    let mut p = next_block(&store, &content(2)).unwrap();
    // Prepared on top of genesis: height 1, not 2.
    let stale = store.prepare_state(0, &content(2).writes).unwrap();
    p.block.header.state_root = stale.root;
    p.prepared = stale;
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::PreparedHeightMismatch {
            prepared: 1,
            block: 2
        })
    ));
    assert!(matches!(
        store.prepare_state(2, &content(2).writes),
        Err(StoreError::UnknownHeight {
            height: 2,
            latest: 1
        })
    ));
    assert_unchanged(&store, 1);
}

#[test]
fn inconsistent_hashes_results_certificate_and_chain_id_are_refused() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    let parts = content(2); // three transactions
    assert_eq!(parts.txs.len(), 3);

    let mut p = next_block(&store, &parts).unwrap();
    p.tx_hashes.swap(0, 1);
    assert!(matches!(p.commit(&store), Err(StoreError::TxRootMismatch)));

    let mut p = next_block(&store, &parts).unwrap();
    p.tx_hashes.pop();
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::CountMismatch { .. })
    ));

    let mut p = next_block(&store, &parts).unwrap();
    p.results.pop();
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::CountMismatch { .. })
    ));

    let mut p = next_block(&store, &parts).unwrap();
    p.results[0].outcome = TxOutcome::Success;
    p.results[0].events.clear();
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::ResultsRootMismatch)
    ));

    let mut p = next_block(&store, &parts).unwrap();
    p.cert.block_hash = Hash([3; 32]);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::CertificateMismatch { .. })
    ));

    let mut p = next_block(&store, &parts).unwrap();
    p.cert.height = 9;
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::CertificateMismatch { .. })
    ));

    let mut p = next_block(&store, &parts).unwrap();
    p.block.header.chain_id = "other-chain".into();
    resign(&mut p);
    assert!(matches!(
        p.commit(&store),
        Err(StoreError::WrongChainId { .. })
    ));

    assert_unchanged(&store, 1);
    commit_next(&store).unwrap();
    assert_unchanged(&store, 2);
}
