//! (1) Commit a chain of hand-built blocks and read everything back.

use trustedge_execution::StateRead;
use trustedge_store::{MAX_HEADERS_PER_CALL, Store, StoreError};

use crate::common::*;

#[test]
fn before_genesis_nothing_is_readable() {
    let (_dir, store) = temp_store();
    assert!(!store.is_initialised().unwrap());
    assert!(matches!(
        store.latest_height(),
        Err(StoreError::NotInitialised)
    ));
    assert!(matches!(store.snapshot(), Err(StoreError::NotInitialised)));
    assert!(matches!(
        store.state_root(0),
        Err(StoreError::NotInitialised)
    ));
    assert!(matches!(
        store.prepare_state(0, &genesis_writes()),
        Err(StoreError::NotInitialised)
    ));
    assert_eq!(store.chain_id().unwrap(), None);
    assert_eq!(store.genesis_doc().unwrap(), None);
    assert!(store.block(1).unwrap().is_none());
    assert!(matches!(
        store.init_genesis("", b"", &genesis_writes()),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn genesis_is_written_once() {
    let (_dir, store) = genesis_store();
    assert!(store.is_initialised().unwrap());
    assert_eq!(store.latest_height().unwrap(), 0);
    assert_eq!(store.snapshot().unwrap().height(), 0);
    verify_state(&store, 0, &model_state(0));
    assert!(matches!(
        store.init_genesis(CHAIN_ID, GENESIS_DOC, &genesis_writes()),
        Err(StoreError::AlreadyInitialised)
    ));
    assert!(matches!(
        store.state_root(1),
        Err(StoreError::UnknownHeight {
            height: 1,
            latest: 0
        })
    ));
}

#[test]
fn committed_chain_reads_back_and_survives_reopen() {
    let (dir, store) = genesis_store();
    let genesis_root = store.state_root(0).unwrap();
    let mut blocks = Vec::new();
    for _ in 0..12 {
        blocks.push(commit_next(&store).unwrap());
    }
    assert_eq!(store.latest_height().unwrap(), 12);
    assert_eq!(verify_chain(&store), 12);

    // Ranges of headers: inclusive, clipped to what exists, empty when inverted.
    let hs = store.headers(3, 7).unwrap();
    assert_eq!(hs.len(), 5);
    assert_eq!(hs[0], blocks[2].header);
    assert_eq!(hs[4], blocks[6].header);
    assert_eq!(store.headers(0, u64::MAX).unwrap().len(), 12);
    assert!(store.headers(7, 3).unwrap().is_empty());
    assert!(store.headers(13, 20).unwrap().is_empty());
    assert_eq!(
        store.headers(12, 12).unwrap(),
        vec![blocks[11].header.clone()]
    );

    // Older heights keep their own roots; the genesis root is unchanged.
    assert_eq!(store.state_root(0).unwrap(), genesis_root);
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(store.block(i as u64 + 1).unwrap().as_ref(), Some(b));
    }
    assert_eq!(store.block(0).unwrap(), None);
    assert_eq!(
        store
            .height_of_block(&trustedge_types::Hash([9; 32]))
            .unwrap(),
        None
    );
    assert_eq!(
        store.tx_location(&trustedge_types::Hash([9; 32])).unwrap(),
        None
    );

    // A snapshot taken now does not see later commits.
    let snap = store.snapshot().unwrap();
    let before = snap.scan(b"", b"", false, 10_000).unwrap();
    commit_next(&store).unwrap();
    assert_eq!(snap.height(), 12);
    assert_eq!(snap.scan(b"", b"", false, 10_000).unwrap(), before);
    assert_eq!(store.snapshot().unwrap().height(), 13);
    drop(snap);

    let path = dir.path().join("store.redb");
    drop(store);
    let store = reopen(&path);
    assert_eq!(verify_chain(&store), 13);
    commit_next(&store).unwrap();
    assert_eq!(verify_chain(&store), 14);
}

#[test]
fn headers_are_capped_per_call() {
    let (_dir, store) = genesis_store();
    let n = MAX_HEADERS_PER_CALL + 5;
    for _ in 0..n {
        commit_writes(&store, &writes([])).unwrap();
    }
    let hs = store.headers(1, n).unwrap();
    assert_eq!(hs.len() as u64, MAX_HEADERS_PER_CALL);
    assert_eq!(hs[0].height, 1);
    assert_eq!(hs.last().unwrap().height, MAX_HEADERS_PER_CALL);
    assert_eq!(
        store
            .headers(MAX_HEADERS_PER_CALL + 1, u64::MAX)
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused_not_corrupting() {
    let (dir, store) = genesis_store();
    let path = dir.path().join("store.redb");
    assert!(matches!(Store::open(&path), Err(StoreError::Database(_))));
    commit_next(&store).unwrap();
    assert_eq!(verify_chain(&store), 1);
}
