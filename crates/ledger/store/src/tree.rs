//! The Jellyfish Merkle tree over redb: a [`TreeReader`] on a read transaction, and a guard
//! that turns every failure of the `jmt` library into a [`StoreError`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Version};
use redb::{ReadOnlyTable, ReadTransaction};

use crate::StoreError;
use crate::tables::{JMT_NODES, JMT_VALUES, decode_versioned, node_key, value_key};

/// The hasher of the state tree. `jmt` and this crate share `sha2` 0.10.
pub(crate) type Hasher = sha2::Sha256;

/// The state tree on a read transaction.
pub(crate) type Tree<'a> = jmt::JellyfishMerkleTree<'a, TreeTables, Hasher>;

/// The JMT node and value tables of one read transaction: a consistent view of every version.
pub(crate) struct TreeTables {
    nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl TreeTables {
    /// Opens the tables in `txn`.
    pub(crate) fn open(txn: &ReadTransaction) -> Result<TreeTables, StoreError> {
        Ok(TreeTables {
            nodes: txn.open_table(JMT_NODES)?,
            values: txn.open_table(JMT_VALUES)?,
        })
    }
}

fn db_err(e: impl Into<redb::Error>) -> anyhow::Error {
    anyhow::Error::new(StoreError::Database(e.into()))
}

impl TreeReader for TreeTables {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let k = node_key(key);
        let Some(guard) = self.nodes.get(k.as_slice()).map_err(db_err)? else {
            return Ok(None);
        };
        borsh::from_slice::<Node>(guard.value())
            .map(Some)
            .map_err(|e| anyhow::Error::new(StoreError::corrupt("jmt node", e)))
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let lo = value_key(&key_hash, 0);
        let hi = value_key(&key_hash, max_version);
        let mut range = self
            .values
            .range::<&[u8]>(lo.as_slice()..=hi.as_slice())
            .map_err(db_err)?;
        match range.next_back() {
            None => Ok(None),
            Some(entry) => {
                let (_, v) = entry.map_err(db_err)?;
                Ok(decode_versioned(v.value())?)
            }
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only `jmt::restore` (state sync from a snapshot) calls this; this store does not
        // restore, and answering from a tree of many versions would be wrong.
        Err(anyhow::Error::new(StoreError::Unsupported(
            "TreeReader::get_rightmost_leaf (JMT restore)",
        )))
    }
}

/// Applies `writes` to `tree` as version `version`: the new root and the nodes to store.
///
/// A write set of values only (the common case: a block that deletes nothing) goes through
/// `jmt`'s batch insertion, which visits and hashes every touched node once. `put_value_set`
/// inserts key by key, rebuilding and rehashing the path from the root for every key: for a
/// block of thousands of writes the top levels of the tree were rehashed thousands of times
/// (most of the cost of computing a state root). The tree, and so the root, is a function of
/// the key set alone, so both ways give the same root and nodes (tested in the store's
/// determinism tests). Deletions, and an empty set (which the batch refuses), take the
/// key-by-key way.
pub(crate) fn put_writes<R: TreeReader>(
    tree: &jmt::JellyfishMerkleTree<'_, R, Hasher>,
    writes: &trustedge_execution::StateWrites,
    version: Version,
) -> anyhow::Result<(jmt::RootHash, jmt::storage::TreeUpdateBatch)> {
    let values: Option<Vec<(KeyHash, OwnedValue)>> = writes
        .iter()
        .map(|(k, v)| v.as_ref().map(|v| (KeyHash::with::<Hasher>(k), v.clone())))
        .collect();
    match values {
        Some(values) if !values.is_empty() => {
            let (roots, batch) = tree.batch_put_value_sets(vec![values], None, version)?;
            let root = roots
                .first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("jmt returned no root for version {version}"))?;
            Ok((root, batch))
        }
        _ => tree.put_value_set(
            writes
                .iter()
                .map(|(k, v)| (KeyHash::with::<Hasher>(k), v.clone())),
            version,
        ),
    }
}

/// A tree with nothing stored: the base a fresh state is built on.
struct EmptyTree;

impl TreeReader for EmptyTree {
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

/// The state root of a state holding exactly `writes` (deletions are ignored), computed in
/// memory with no database: what [`crate::Store::init_genesis`] would record as the genesis
/// state root. A light client derives the root it trusts from the genesis file this way.
pub fn state_root_of(
    writes: &trustedge_execution::StateWrites,
) -> Result<trustedge_types::Hash, StoreError> {
    let tree = jmt::JellyfishMerkleTree::<EmptyTree, Hasher>::new(&EmptyTree);
    let values: trustedge_execution::StateWrites = writes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (root, _) = guarded("state root of writes", || put_writes(&tree, &values, 0))?;
    Ok(trustedge_types::Hash(root.0))
}

/// Runs a `jmt` operation and makes every failure a [`StoreError`].
///
/// Why catch panics: `jmt` 0.12 unwraps reader errors inside proof construction (for example
/// in `InternalNode::build_sibling`), so an I/O error or a damaged node would otherwise abort
/// the caller's thread. Nothing outlives a caught panic: the closure only reads from a read
/// transaction that the caller drops with the error. A [`StoreError`] the reader returned
/// comes back as itself.
pub(crate) fn guarded<T>(
    op: &'static str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.downcast::<StoreError>() {
            Ok(store_error) => store_error,
            Err(other) => StoreError::Tree(format!("{op}: {other:#}")),
        }),
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            tracing::error!(op, %msg, "jmt panicked; returned as an error");
            Err(StoreError::Tree(format!("{op}: panicked: {msg}")))
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
