//! (6) A snapshot satisfies the `StateRead` contract: it reads exactly like `MemState` with
//! the same writes applied.

use proptest::prelude::*;
use trustedge_execution::state::MAX_SCAN_LIMIT;
use trustedge_execution::{MemState, StateRead, StateWrites};

use crate::common::*;

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Small alphabet and short keys so that ranges, prefixes and overwrites collide often;
    // 0xff makes prefix ends interesting; the empty key is a valid key.
    proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff)], 0..4)
}

fn write_set() -> impl Strategy<Value = StateWrites> {
    proptest::collection::btree_map(
        key(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3)),
        0..16,
    )
}

#[derive(Debug, Clone)]
struct Query {
    lower: Vec<u8>,
    upper: Vec<u8>,
    reverse: bool,
    limit: usize,
}

fn query() -> impl Strategy<Value = Query> {
    (
        key(),
        key(),
        any::<bool>(),
        prop_oneof![0usize..20, Just(usize::MAX)],
    )
        .prop_map(|(lower, upper, reverse, limit)| Query {
            lower,
            upper,
            reverse,
            limit,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn snapshot_reads_like_memstate(
        genesis in write_set(),
        blocks in proptest::collection::vec(write_set(), 0..3),
        queries in proptest::collection::vec(query(), 1..12),
        probes in proptest::collection::vec(key(), 0..8),
    ) {
        let (_dir, store) = temp_store();
        // Genesis writes are plain sets: deletions of nothing are meaningless there.
        let genesis: StateWrites = genesis.into_iter().filter(|(_, v)| v.is_some()).collect();
        store.init_genesis(CHAIN_ID, GENESIS_DOC, &genesis).unwrap();
        let mut model = MemState::default();
        model.apply(&genesis);
        for w in &blocks {
            commit_writes(&store, w).unwrap();
            model.apply(w);
        }
        let snap = store.snapshot().unwrap();
        prop_assert_eq!(snap.height(), blocks.len() as u64);
        for q in &queries {
            prop_assert_eq!(
                snap.scan(&q.lower, &q.upper, q.reverse, q.limit).unwrap(),
                model.scan(&q.lower, &q.upper, q.reverse, q.limit).unwrap(),
                "{:?}", q
            );
        }
        for k in probes.iter().chain(model.map.keys()) {
            prop_assert_eq!(snap.get(k).unwrap(), model.get(k).unwrap());
        }
    }
}

#[test]
fn scans_are_capped_at_the_contract_limit() {
    let (_dir, store) = temp_store();
    let n = MAX_SCAN_LIMIT + 25;
    let genesis: StateWrites = (0..n)
        .map(|i| (format!("s/{i:06}").into_bytes(), Some(vec![1])))
        .collect();
    store.init_genesis(CHAIN_ID, GENESIS_DOC, &genesis).unwrap();
    let mut model = MemState::default();
    model.apply(&genesis);
    let snap = store.snapshot().unwrap();
    for reverse in [false, true] {
        let got = snap.scan(b"", b"", reverse, usize::MAX).unwrap();
        assert_eq!(got.len(), MAX_SCAN_LIMIT);
        assert_eq!(got, model.scan(b"", b"", reverse, usize::MAX).unwrap());
    }
    // Inverted and empty ranges select nothing rather than fail.
    assert!(snap.scan(b"s/2", b"s/1", false, 10).unwrap().is_empty());
    assert!(snap.scan(b"s/1", b"s/1", true, 10).unwrap().is_empty());
    assert!(snap.scan(b"s/1", b"s/2", false, 0).unwrap().is_empty());
}
