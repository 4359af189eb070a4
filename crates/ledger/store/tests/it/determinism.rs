//! (3) Determinism: the state root depends only on the state, not on the store, the order
//! of blocks or how the writes were split into blocks.

use proptest::prelude::*;
use trustedge_execution::StateWrites;
use trustedge_types::Hash;

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

/// The root of a state holding exactly `state`, built key by key on an empty `jmt` tree: a
/// reference computed neither by the store nor by its batch insertion.
fn reference_root(state: &StateWrites) -> Hash {
    use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
    use jmt::{KeyHash, OwnedValue, Version};
    struct Empty;
    impl TreeReader for Empty {
        fn get_node_option(&self, _: &NodeKey) -> anyhow::Result<Option<Node>> {
            Ok(None)
        }
        fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
            Ok(None)
        }
        fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
            Ok(None)
        }
    }
    let tree = jmt::JellyfishMerkleTree::<Empty, sha2::Sha256>::new(&Empty);
    let values = state
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (KeyHash::with::<sha2::Sha256>(k), v.clone()));
    let (root, _) = tree.put_value_set(values, 0).unwrap();
    Hash(root.0)
}

/// Blocks of many writes (sets only, the store's batch insertion; with deletions, its
/// key-by-key insertion), over a key space small enough that later blocks update keys of
/// earlier ones and large enough for a tree several levels deep.
fn big_write_sets() -> impl Strategy<Value = Vec<StateWrites>> {
    let block = (
        proptest::collection::btree_map(0u16..3000, any::<u8>(), 0..400),
        any::<bool>(),
    )
        .prop_map(|(m, deletes)| {
            m.into_iter()
                .map(|(k, v)| {
                    let key = format!("key/{k}").into_bytes();
                    let value = (!deletes || v % 4 != 0).then(|| vec![v; 1 + (k % 7) as usize]);
                    (key, value)
                })
                .collect::<StateWrites>()
        });
    proptest::collection::vec(block, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// After every block, the store's root (each block inserted incrementally on the tree
    /// of the one before, in one batch when it deletes nothing) is the root of the whole
    /// state inserted key by key into an empty tree; and so is `state_root_of`.
    #[test]
    fn incremental_roots_match_a_key_by_key_reference(sets in big_write_sets()) {
        let (_dir, store) = genesis_store();
        let mut state = genesis_writes();
        for (i, s) in sets.iter().enumerate() {
            commit_writes(&store, s).unwrap();
            for (k, v) in s {
                match v {
                    Some(_) => { state.insert(k.clone(), v.clone()); }
                    None => { state.remove(k); }
                }
            }
            let want = reference_root(&state);
            prop_assert_eq!(store.state_root(i as u64 + 1).unwrap(), want);
            prop_assert_eq!(trustedge_store::state_root_of(&state).unwrap(), want);
        }
    }
}
