//! (3) Determinism: the state root depends only on the state, not on the store, the order
//! of blocks or how the writes were split into blocks.

use proptest::prelude::*;
use trustedge_execution::StateWrites;

use crate::common::*;

#[test]
fn two_fresh_stores_give_the_same_roots() {
    let (_a_dir, a) = genesis_store();
    let (_b_dir, b) = genesis_store();
    assert_eq!(a.state_root(0).unwrap(), b.state_root(0).unwrap());
    for h in 1..=8 {
        let ba = commit_next(&a).unwrap();
        let bb = commit_next(&b).unwrap();
        assert_eq!(ba, bb, "block {h}");
        assert_eq!(a.state_root(h).unwrap(), b.state_root(h).unwrap());
    }
}

#[test]
fn an_empty_block_keeps_the_root() {
    let (_dir, store) = genesis_store();
    commit_next(&store).unwrap();
    let before = store.state_root(1).unwrap();
    commit_writes(&store, &StateWrites::new()).unwrap();
    assert_eq!(store.state_root(2).unwrap(), before);
    // Deleting a key that does not exist changes nothing either.
    commit_writes(&store, &writes([("never-set", None)])).unwrap();
    assert_eq!(store.state_root(3).unwrap(), before);
}

#[test]
fn deleting_everything_returns_to_the_empty_root() {
    let (_dir, store) = temp_store();
    let empty = store
        .init_genesis(CHAIN_ID, GENESIS_DOC, &StateWrites::new())
        .unwrap();
    commit_writes(&store, &genesis_writes()).unwrap();
    assert_ne!(store.state_root(1).unwrap(), empty);
    let all_deleted: StateWrites = genesis_writes().into_keys().map(|k| (k, None)).collect();
    commit_writes(&store, &all_deleted).unwrap();
    assert_eq!(store.state_root(2).unwrap(), empty);
}

fn write_sets() -> impl Strategy<Value = Vec<StateWrites>> {
    let key = proptest::collection::vec(0u8..6, 0..3);
    let value = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4));
    proptest::collection::vec(proptest::collection::btree_map(key, value, 0..8), 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Applying write sets one block each, or all merged in one block, gives the same root;
    /// and a store fed the same blocks twice agrees with itself.
    #[test]
    fn root_depends_only_on_the_resulting_state(sets in write_sets()) {
        let (_a_dir, a) = genesis_store();
        let (_b_dir, b) = genesis_store();
        let mut merged = StateWrites::new();
        for s in &sets {
            commit_writes(&a, s).unwrap();
            merged.extend(s.clone());
        }
        commit_writes(&b, &merged).unwrap();
        prop_assert_eq!(a.state_root(sets.len() as u64).unwrap(), b.state_root(1).unwrap());

        // prepare_state is a pure function of (base, writes).
        let p1 = a.prepare_state(0, &merged).unwrap();
        let p2 = a.prepare_state(0, &merged).unwrap();
        prop_assert_eq!(p1.root, p2.root);
        prop_assert_eq!(p1.root, b.state_root(1).unwrap());
    }
}
