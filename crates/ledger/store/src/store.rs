//! The store: opening, genesis, preparing and committing blocks, and reads.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use jmt::KeyHash;
use jmt::storage::TreeUpdateBatch;
use redb::{Database, Durability, ReadTransaction, ReadableTable, WriteTransaction};
use sha2::{Digest, Sha256};
use trustedge_execution::StateWrites;
use trustedge_types::{
    Block, BlockHeader, CommitCertificate, Event, Hash, Height, TxResult, decode, encode,
};

use crate::events::{self, EventCursor, EventFilter, EventPage};
use crate::tables::{
    self, BLOCK_HASHES, BLOCKS, CERTIFICATES, EVENT_INDEX, EVENTS, HEADERS, JMT_NODES, JMT_STALE,
    JMT_VALUES, META, SCHEMA_VERSION, STATE, TX_INDEX, TX_RESULTS, decode_tx_pos, decode_u64,
    encode_versioned, meta, node_key, tx_pos, value_key,
};
use crate::tree::{Hasher, Tree, TreeTables, guarded, panic_message, put_writes};
use crate::{Snapshot, StateProof, StoreError};

/// Most end-of-block events one block may store.
pub const MAX_BLOCK_EVENTS: usize = 4096;
/// Most headers one [`Store::headers`] call returns.
pub const MAX_HEADERS_PER_CALL: u64 = 1000;
/// redb page cache. Bounded so that a node on a small machine does not grow to redb's
/// default of 1 GiB.
pub const CACHE_SIZE_BYTES: usize = 256 * 1024 * 1024;
/// Largest stored record (block, certificate, result) decoded. Records are written by this
/// crate; the limit only stops a damaged length prefix from asking for absurd allocations.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// `StoreError::Corrupt::what` when redb panicked while opening the file.
const OPEN_PANICKED: &str = "database file (redb panicked while opening it)";
/// Largest chain id (the transaction rule).
const MAX_CHAIN_ID_BYTES: usize = trustedge_types::tx::MAX_CHAIN_ID_BYTES;

/// The persistent store of one node: blocks, certificates, transaction index and results,
/// events, and the authenticated state. See the crate documentation for the layout.
///
/// `Send + Sync`: share it with `Arc<Store>`. Reads never block each other or a commit;
/// commits are serialised by redb's single writer.
pub struct Store {
    db: Database,
    path: PathBuf,
}

/// The state after a block's writes, computed but not yet written: produced by
/// [`Store::prepare_state`], consumed by [`Store::commit_block`].
#[derive(Clone)]
pub struct PreparedState {
    /// State root after the writes (the block header's `state_root`).
    pub root: Hash,
    /// Height (JMT version) the state is for: the base height + 1.
    pub height: Height,
    // What commit checks: copies that callers cannot change, since the public fields can be.
    // The batch's nodes are keyed by `version`; committing them under another height would
    // overwrite another version's nodes.
    version: Height,
    computed_root: Hash,
    batch: TreeUpdateBatch,
    writes_digest: [u8; 32],
}

impl fmt::Debug for PreparedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedState")
            .field("root", &self.root)
            .field("height", &self.height)
            .field("new_nodes", &self.batch.node_batch.nodes().len())
            .field("new_values", &self.batch.node_batch.values().len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A digest of a write set, so that commit can check it was given the writes the prepared
/// state was computed from (otherwise the latest-state table and the tree would diverge).
fn writes_digest(writes: &StateWrites) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"trustedge/store/writes/v1");
    h.update((writes.len() as u64).to_be_bytes());
    for (k, v) in writes {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        match v {
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

fn decode_record<T: borsh::BorshDeserialize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    decode(bytes, MAX_RECORD_BYTES).map_err(|e| StoreError::corrupt(what, e))
}

fn read_latest(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Height>, StoreError> {
    meta.get(meta::LATEST_HEIGHT)?
        .map(|g| decode_u64(g.value(), "latest height"))
        .transpose()
}

fn latest_in(txn: &ReadTransaction) -> Result<Height, StoreError> {
    read_latest(&txn.open_table(META)?)?.ok_or(StoreError::NotInitialised)
}

/// Writes a tree update (new nodes, versioned values, stale-node records).
fn write_tree(txn: &WriteTransaction, batch: &TreeUpdateBatch) -> Result<(), StoreError> {
    let mut nodes = txn.open_table(JMT_NODES)?;
    for (k, node) in batch.node_batch.nodes() {
        nodes.insert(node_key(k).as_slice(), encode(node).as_slice())?;
    }
    let mut values = txn.open_table(JMT_VALUES)?;
    for ((version, kh), v) in batch.node_batch.values() {
        values.insert(
            value_key(kh, *version).as_slice(),
            encode_versioned(v.as_deref()).as_slice(),
        )?;
    }
    let mut stale = txn.open_table(JMT_STALE)?;
    for s in &batch.stale_node_index_batch {
        let mut k = s.stale_since_version.to_be_bytes().to_vec();
        k.extend_from_slice(&node_key(&s.node_key));
        stale.insert(k.as_slice(), ())?;
    }
    Ok(())
}

/// Applies writes to the latest-state table.
fn write_state(txn: &WriteTransaction, writes: &StateWrites) -> Result<(), StoreError> {
    let mut state = txn.open_table(STATE)?;
    for (k, v) in writes {
        match v {
            Some(v) => {
                state.insert(k.as_slice(), v.as_slice())?;
            }
            None => {
                state.remove(k.as_slice())?;
            }
        }
    }
    Ok(())
}

impl Store {
    /// Opens the store at `path`, creating the file and tables if missing.
    ///
    /// After an unclean shutdown redb recovers the last committed transaction here. If the
    /// store holds blocks, the latest block's `state_root` is checked against the tree's root
    /// at that height before the store is handed out.
    ///
    /// redb trusts a file it did not see damaged and may panic on one that was altered
    /// outside it. If opening panics, the open is retried once with redb's full integrity
    /// check, which verifies every page's checksum and reports damage as an error (or, if
    /// only redb's allocator state was damaged, rebuilds it and opens).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        match Store::open_guarded(path, false) {
            Err(StoreError::Corrupt {
                what: OPEN_PANICKED,
                reason,
            }) => {
                tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "opening the store panicked; retrying with a full integrity check"
                );
                Store::open_guarded(path, true)
            }
            other => other,
        }
    }

    /// Like [`Store::open`], but runs redb's full integrity check first (reads the whole
    /// file). For use after a disk or file-system incident.
    pub fn open_checked(path: &Path) -> Result<Store, StoreError> {
        Store::open_guarded(path, true)
    }

    fn open_guarded(path: &Path, check_integrity: bool) -> Result<Store, StoreError> {
        // Nothing survives a caught panic: the half-opened database is dropped with it.
        catch_unwind(AssertUnwindSafe(|| {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_SIZE_BYTES)
                .set_check_integrity_on_open(check_integrity)
                .create(path)?;
            let store = Store {
                db,
                path: path.to_path_buf(),
            };
            store.create_tables()?;
            store.check_head()?;
            Ok(store)
        }))
        .unwrap_or_else(|payload| {
            Err(StoreError::Corrupt {
                what: OPEN_PANICKED,
                reason: panic_message(payload.as_ref()),
            })
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every write goes through here: immediate durability, and quick repair (which also
    /// turns on two-phase commit) so that reopening after a crash need not walk the file.
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.begin_write_with(true)
    }

    /// A write transaction, durable when it commits or (`durable = false`) visible at once
    /// but durable only with the next durable commit ([`Store::checkpoint`]).
    fn begin_write_with(&self, durable: bool) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write()?;
        if durable {
            txn.set_durability(Durability::Immediate)?;
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(Durability::None)?;
        }
        Ok(txn)
    }

    /// Makes every commit so far durable: one durable commit, which writes the pages the
    /// deferred commits ([`Store::commit_block_deferred`]) left in memory and syncs the file.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.begin_write()?.commit()?;
        Ok(())
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        Ok(self.db.begin_read()?)
    }

    fn create_tables(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(meta::SCHEMA)?.map(|g| g.value().to_vec());
            match found {
                None => {
                    meta.insert(meta::SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_be_bytes)
                        .map_err(|_| StoreError::corrupt("schema version", "not 4 bytes"))?;
                    if found != SCHEMA_VERSION {
                        return Err(StoreError::SchemaMismatch {
                            found,
                            expected: SCHEMA_VERSION,
                        });
                    }
                }
            }
            txn.open_table(HEADERS)?;
            txn.open_table(BLOCKS)?;
            txn.open_table(BLOCK_HASHES)?;
            txn.open_table(CERTIFICATES)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(TX_RESULTS)?;
            txn.open_table(STATE)?;
            txn.open_table(JMT_NODES)?;
            txn.open_table(JMT_VALUES)?;
            txn.open_table(JMT_STALE)?;
            txn.open_table(EVENTS)?;
            txn.open_table(EVENT_INDEX)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Checks that the tree's root at the latest height is the latest header's state root.
    fn check_head(&self) -> Result<(), StoreError> {
        if !self.is_initialised()? {
            return Ok(());
        }
        let latest = self.latest_height()?;
        let root = self.state_root(latest)?;
        if latest > 0 {
            let header = self
                .header(latest)?
                .ok_or_else(|| StoreError::corrupt("latest header", "missing"))?;
            if header.state_root != root {
                return Err(StoreError::corrupt(
                    "latest header",
                    format!(
                        "state_root {} but the tree's root at {latest} is {root}",
                        header.state_root
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether genesis has been written.
    pub fn is_initialised(&self) -> Result<bool, StoreError> {
        let txn = self.begin_read()?;
        Ok(read_latest(&txn.open_table(META)?)?.is_some())
    }

    /// Writes genesis: the chain id, the genesis document, and `writes` as the state at
    /// height 0 (JMT version 0), all in one transaction. Returns the genesis state root.
    pub fn init_genesis(
        &self,
        chain_id: &str,
        genesis_doc: &[u8],
        writes: &StateWrites,
    ) -> Result<Hash, StoreError> {
        if chain_id.is_empty() || chain_id.len() > MAX_CHAIN_ID_BYTES {
            return Err(StoreError::InvalidArgument(format!(
                "chain id must be 1..={MAX_CHAIN_ID_BYTES} bytes"
            )));
        }
        if self.is_initialised()? {
            return Err(StoreError::AlreadyInitialised);
        }
        let (root, batch) = {
            let txn = self.begin_read()?;
            let tables = TreeTables::open(&txn)?;
            let tree = Tree::new(&tables);
            guarded("genesis state", || put_writes(&tree, writes, 0))?
        };
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            // Checked again inside the write transaction: another caller may have won.
            if read_latest(&meta)?.is_some() {
                return Err(StoreError::AlreadyInitialised);
            }
            meta.insert(meta::CHAIN_ID, chain_id.as_bytes())?;
            meta.insert(meta::GENESIS_DOC, genesis_doc)?;
            meta.insert(meta::LATEST_HEIGHT, 0u64.to_be_bytes().as_slice())?;
        }
        write_state(&txn, writes)?;
        write_tree(&txn, &batch)?;
        txn.commit()?;
        let root = Hash(root.0);
        tracing::info!(chain_id, %root, keys = writes.len(), "genesis written");
        Ok(root)
    }

    fn meta_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(key)?.map(|g| g.value().to_vec()))
    }

    /// The genesis document given to [`Store::init_genesis`].
    pub fn genesis_doc(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta_value(meta::GENESIS_DOC)
    }

    /// The chain id given to [`Store::init_genesis`].
    pub fn chain_id(&self) -> Result<Option<String>, StoreError> {
        self.meta_value(meta::CHAIN_ID)?
            .map(|b| String::from_utf8(b).map_err(|e| StoreError::corrupt("chain id", e)))
            .transpose()
    }

    /// The latest committed height; 0 right after genesis.
    pub fn latest_height(&self) -> Result<Height, StoreError> {
        latest_in(&self.begin_read()?)
    }

    /// The state root at `height` (0 = genesis state).
    pub fn state_root(&self, height: Height) -> Result<Hash, StoreError> {
        let txn = self.begin_read()?;
        let latest = latest_in(&txn)?;
        if height > latest {
            return Err(StoreError::UnknownHeight { height, latest });
        }
        let tables = TreeTables::open(&txn)?;
        let tree = Tree::new(&tables);
        guarded("state root", || tree.get_root_hash_option(height))?
            .map(|r| Hash(r.0))
            .ok_or_else(|| StoreError::corrupt("jmt root", format!("missing at {height}")))
    }

    /// A consistent read view of the latest committed state.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.begin_read()?;
        let latest = latest_in(&txn)?;
        Snapshot::new(txn, latest)
    }

    /// Computes the state root after applying `writes` on top of the state at `base_height`,
    /// as the state of `base_height + 1`. Writes nothing; the result is committed with the
    /// block by [`Store::commit_block`].
    pub fn prepare_state(
        &self,
        base_height: Height,
        writes: &StateWrites,
    ) -> Result<PreparedState, StoreError> {
        let txn = self.begin_read()?;
        let latest = latest_in(&txn)?;
        if base_height > latest {
            return Err(StoreError::UnknownHeight {
                height: base_height,
                latest,
            });
        }
        let height = base_height
            .checked_add(1)
            .ok_or_else(|| StoreError::InvalidArgument("base height is u64::MAX".into()))?;
        let tables = TreeTables::open(&txn)?;
        let tree = Tree::new(&tables);
        let (root, batch) = guarded("prepare state", || put_writes(&tree, writes, height))?;
        Ok(PreparedState {
            root: Hash(root.0),
            height,
            version: height,
            computed_root: Hash(root.0),
            batch,
            writes_digest: writes_digest(writes),
        })
    }

    /// Commits one block atomically, in one durable write transaction: the block, its hash,
    /// its certificate, the transaction index and results, the events and their indexes, the
    /// state writes (latest-state table and tree) and the new latest height.
    ///
    /// Refuses (writing nothing) a block that is not at `latest + 1`, whose `prev_hash` is not
    /// the latest block's hash ([`Hash::ZERO`] for height 1), of another chain id, whose
    /// `tx_root` or `results_root` do not match `tx_hashes` or `results`, a certificate for
    /// another block, and a prepared state of another height, root or write set. It does not
    /// verify the certificate's signatures: that needs the validator set, which the caller has.
    pub fn commit_block(
        &self,
        block: &Block,
        tx_hashes: &[Hash],
        cert: &CommitCertificate,
        results: &[TxResult],
        writes: &StateWrites,
        prepared: PreparedState,
    ) -> Result<(), StoreError> {
        self.commit_block_with_events(block, tx_hashes, cert, results, &[], writes, prepared)
    }

    /// [`Store::commit_block`] for a block whose end-of-block hooks emitted `block_events`
    /// (at most [`MAX_BLOCK_EVENTS`]): they are stored and indexed like transaction events,
    /// at transaction index [`crate::BLOCK_EVENTS_TX_INDEX`] with a zero transaction hash.
    /// They are not covered by the header's `results_root`; the state they report on is
    /// covered by its `state_root`.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_block_with_events(
        &self,
        block: &Block,
        tx_hashes: &[Hash],
        cert: &CommitCertificate,
        results: &[TxResult],
        block_events: &[Event],
        writes: &StateWrites,
        prepared: PreparedState,
    ) -> Result<(), StoreError> {
        self.commit_with(
            block,
            tx_hashes,
            cert,
            results,
            block_events,
            writes,
            prepared,
            true,
        )
    }

    /// [`Store::commit_block_with_events`] without durability: the block is committed and
    /// visible to every read when this returns, with the same checks and the same single
    /// transaction, but it reaches the disk only with the next durable commit
    /// ([`Store::checkpoint`], or any durable commit). A crash before that reopens the store at
    /// the last durable commit, so the caller must keep the block durable elsewhere until then
    /// (the ledger appends it to its [`crate::BlockLog`] first and replays that log on open).
    #[allow(clippy::too_many_arguments)]
    pub fn commit_block_deferred(
        &self,
        block: &Block,
        tx_hashes: &[Hash],
        cert: &CommitCertificate,
        results: &[TxResult],
        block_events: &[Event],
        writes: &StateWrites,
        prepared: PreparedState,
    ) -> Result<(), StoreError> {
        self.commit_with(
            block,
            tx_hashes,
            cert,
            results,
            block_events,
            writes,
            prepared,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_with(
        &self,
        block: &Block,
        tx_hashes: &[Hash],
        cert: &CommitCertificate,
        results: &[TxResult],
        block_events: &[Event],
        writes: &StateWrites,
        prepared: PreparedState,
        durable: bool,
    ) -> Result<(), StoreError> {
        if block_events.len() > MAX_BLOCK_EVENTS {
            return Err(StoreError::InvalidArgument(format!(
                "{} end-of-block events; at most {MAX_BLOCK_EVENTS}",
                block_events.len()
            )));
        }
        // The transaction index u32::MAX is reserved for the block's own events.
        if block.txs.len() >= crate::BLOCK_EVENTS_TX_INDEX as usize {
            return Err(StoreError::InvalidArgument(
                "too many transactions in one block".into(),
            ));
        }
        let header = &block.header;
        let height = header.height;
        let block_hash = block.hash();
        self.check_block(
            block,
            &block_hash,
            tx_hashes,
            cert,
            results,
            writes,
            &prepared,
        )?;

        let txn = self.begin_write_with(durable)?;
        {
            let mut meta = txn.open_table(META)?;
            let latest = read_latest(&meta)?.ok_or(StoreError::NotInitialised)?;
            let expected = latest.saturating_add(1);
            if height != expected {
                return Err(StoreError::WrongHeight {
                    expected,
                    got: height,
                });
            }
            let chain_id = meta
                .get(meta::CHAIN_ID)?
                .map(|g| String::from_utf8_lossy(g.value()).into_owned())
                .unwrap_or_default();
            if header.chain_id != chain_id {
                return Err(StoreError::WrongChainId {
                    expected: chain_id,
                    got: header.chain_id.clone(),
                });
            }
            let mut headers = txn.open_table(HEADERS)?;
            let prev_hash = if latest == 0 {
                Hash::ZERO
            } else {
                let bytes = headers
                    .get(latest)?
                    .map(|g| g.value().to_vec())
                    .ok_or_else(|| StoreError::corrupt("latest header", "missing"))?;
                decode_record::<BlockHeader>(&bytes, "header")?.hash()
            };
            if header.prev_hash != prev_hash {
                return Err(StoreError::WrongPrevHash {
                    expected: prev_hash,
                    got: header.prev_hash,
                });
            }
            headers.insert(height, encode(header).as_slice())?;
            txn.open_table(BLOCKS)?
                .insert(height, encode(block).as_slice())?;
            txn.open_table(BLOCK_HASHES)?
                .insert(block_hash.0.as_slice(), height)?;
            txn.open_table(CERTIFICATES)?
                .insert(height, encode(cert).as_slice())?;
            meta.insert(meta::LATEST_HEIGHT, height.to_be_bytes().as_slice())?;
        }
        {
            let mut tx_index = txn.open_table(TX_INDEX)?;
            let mut tx_results = txn.open_table(TX_RESULTS)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut index = txn.open_table(EVENT_INDEX)?;
            for (i, (tx_hash, result)) in tx_hashes.iter().zip(results).enumerate() {
                let i = u32::try_from(i).map_err(|_| {
                    StoreError::InvalidArgument("more than u32::MAX transactions".into())
                })?;
                let pos = tx_pos(height, i);
                // Nonces make a repeated transaction impossible; if one slips through, the
                // index keeps its first inclusion rather than silently moving it.
                if tx_index.get(tx_hash.0.as_slice())?.is_none() {
                    tx_index.insert(tx_hash.0.as_slice(), pos.as_slice())?;
                } else {
                    tracing::warn!(%tx_hash, height, index = i, "transaction hash already indexed");
                }
                tx_results.insert(pos.as_slice(), encode(result).as_slice())?;
                for (j, event) in result.events.iter().enumerate() {
                    let j = u32::try_from(j).map_err(|_| {
                        StoreError::InvalidArgument("more than u32::MAX events".into())
                    })?;
                    events::put_event(&mut events, &mut index, height, i, j, tx_hash, event)?;
                }
            }
            for (j, event) in block_events.iter().enumerate() {
                // bounded by MAX_BLOCK_EVENTS above
                let j = u32::try_from(j).unwrap_or(u32::MAX);
                events::put_event(
                    &mut events,
                    &mut index,
                    height,
                    crate::BLOCK_EVENTS_TX_INDEX,
                    j,
                    &Hash::ZERO,
                    event,
                )?;
            }
        }
        write_state(&txn, writes)?;
        write_tree(&txn, &prepared.batch)?;
        txn.commit()?;
        tracing::debug!(
            height,
            hash = %block_hash,
            txs = block.txs.len(),
            writes = writes.len(),
            state_root = %prepared.computed_root,
            durable,
            "block committed"
        );
        Ok(())
    }

    /// The checks of [`Store::commit_block`] that need no database.
    #[allow(clippy::too_many_arguments)]
    fn check_block(
        &self,
        block: &Block,
        block_hash: &Hash,
        tx_hashes: &[Hash],
        cert: &CommitCertificate,
        results: &[TxResult],
        writes: &StateWrites,
        prepared: &PreparedState,
    ) -> Result<(), StoreError> {
        let header = &block.header;
        if tx_hashes.len() != block.txs.len() || results.len() != block.txs.len() {
            return Err(StoreError::CountMismatch {
                txs: block.txs.len(),
                tx_hashes: tx_hashes.len(),
                results: results.len(),
            });
        }
        if prepared.version != header.height || prepared.height != prepared.version {
            return Err(StoreError::PreparedHeightMismatch {
                prepared: prepared.version,
                block: header.height,
            });
        }
        if prepared.computed_root != header.state_root || prepared.root != prepared.computed_root {
            return Err(StoreError::StateRootMismatch {
                prepared: prepared.computed_root,
                header: header.state_root,
            });
        }
        if prepared.writes_digest != writes_digest(writes) {
            return Err(StoreError::PreparedWritesMismatch);
        }
        if cert.height != header.height || cert.block_hash != *block_hash {
            return Err(StoreError::CertificateMismatch {
                cert_height: cert.height,
                cert_hash: cert.block_hash,
            });
        }
        // The header's tx_root is over the transaction ids; recomputing it from the given
        // hashes (not the transactions) is cheap and catches hashes out of order.
        if trustedge_types::merkle::root_of(tx_hashes.iter().map(|h| h.0)) != header.tx_root {
            return Err(StoreError::TxRootMismatch);
        }
        if TxResult::root_of(results) != header.results_root {
            return Err(StoreError::ResultsRootMismatch);
        }
        Ok(())
    }

    fn get_by_height<T: borsh::BorshDeserialize>(
        &self,
        table: redb::TableDefinition<u64, &[u8]>,
        height: Height,
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(table)?;
        let bytes = t.get(height)?.map(|g| g.value().to_vec());
        bytes.map(|b| decode_record(&b, what)).transpose()
    }

    /// The block at `height`.
    pub fn block(&self, height: Height) -> Result<Option<Block>, StoreError> {
        self.get_by_height(BLOCKS, height, "block")
    }

    /// The header of the block at `height`.
    pub fn header(&self, height: Height) -> Result<Option<BlockHeader>, StoreError> {
        self.get_by_height(HEADERS, height, "header")
    }

    /// Headers of the committed blocks with `from <= height <= to`, in height order, at most
    /// [`MAX_HEADERS_PER_CALL`] of them (the first ones).
    pub fn headers(&self, from: Height, to: Height) -> Result<Vec<BlockHeader>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let to = to.min(from.saturating_add(MAX_HEADERS_PER_CALL - 1));
        let txn = self.begin_read()?;
        let t = txn.open_table(HEADERS)?;
        let mut out = Vec::new();
        for entry in t.range(from..=to)? {
            let (_, v) = entry?;
            out.push(decode_record(v.value(), "header")?);
        }
        Ok(out)
    }

    /// The height of the block with this hash.
    pub fn height_of_block(&self, hash: &Hash) -> Result<Option<Height>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(BLOCK_HASHES)?;
        Ok(t.get(hash.0.as_slice())?.map(|g| g.value()))
    }

    /// The commit certificate of the block at `height`.
    pub fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, StoreError> {
        self.get_by_height(CERTIFICATES, height, "certificate")
    }

    /// Where a transaction was included: (height, index in the block).
    pub fn tx_location(&self, hash: &Hash) -> Result<Option<(Height, u32)>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(TX_INDEX)?;
        let pos = t.get(hash.0.as_slice())?.map(|g| g.value().to_vec());
        pos.map(|p| decode_tx_pos(&p)).transpose()
    }

    /// The result of transaction `index` of the block at `height`.
    pub fn tx_result(&self, height: Height, index: u32) -> Result<Option<TxResult>, StoreError> {
        let txn = self.begin_read()?;
        let t = txn.open_table(TX_RESULTS)?;
        let bytes = t
            .get(tables::tx_pos(height, index).as_slice())?
            .map(|g| g.value().to_vec());
        bytes.map(|b| decode_record(&b, "tx result")).transpose()
    }

    /// The value of a raw state key in the state at a committed height (0 = genesis state),
    /// without a proof: a plain versioned read of the tree's values.
    pub fn get_at(&self, key: &[u8], height: Height) -> Result<Option<Vec<u8>>, StoreError> {
        use jmt::storage::TreeReader;
        let txn = self.begin_read()?;
        let latest = latest_in(&txn)?;
        if height > latest {
            return Err(StoreError::UnknownHeight { height, latest });
        }
        let tables = TreeTables::open(&txn)?;
        let key_hash = KeyHash::with::<Hasher>(key);
        guarded("versioned read", || {
            tables.get_value_option(height, key_hash)
        })
    }

    /// The value of a raw state key at a committed height, with a proof of it (or of its
    /// absence) against [`Store::state_root`] at that height.
    pub fn get_with_proof(
        &self,
        key: &[u8],
        height: Height,
    ) -> Result<(Option<Vec<u8>>, StateProof), StoreError> {
        let txn = self.begin_read()?;
        let latest = latest_in(&txn)?;
        if height > latest {
            return Err(StoreError::UnknownHeight { height, latest });
        }
        let tables = TreeTables::open(&txn)?;
        let tree = Tree::new(&tables);
        let key_hash = KeyHash::with::<Hasher>(key);
        let (value, proof) = guarded("get with proof", || tree.get_with_proof(key_hash, height))?;
        let proof = StateProof::from_jmt(&proof)
            .map_err(|e| StoreError::Tree(format!("proof conversion: {e}")))?;
        Ok((value, proof))
    }

    /// A page of events matching `filter`, starting at `cursor` (inclusive). `limit` is
    /// clamped to `1..=`[`crate::MAX_EVENT_PAGE`]. See [`crate::events`] for the paging rules.
    pub fn events(
        &self,
        filter: &EventFilter,
        cursor: Option<EventCursor>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        events::query(&self.begin_read()?, filter, cursor, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_sets_deletes_and_boundaries() {
        let mut a = StateWrites::new();
        a.insert(b"ab".to_vec(), Some(b"c".to_vec()));
        let mut b = StateWrites::new();
        b.insert(b"a".to_vec(), Some(b"bc".to_vec()));
        let mut c = StateWrites::new();
        c.insert(b"ab".to_vec(), None);
        let mut d = StateWrites::new();
        d.insert(b"ab".to_vec(), Some(vec![]));
        let all = [&a, &b, &c, &d, &StateWrites::new()].map(writes_digest);
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(writes_digest(&a), writes_digest(&a.clone()));
    }

    /// `TreeReader::get_value_option` contract: the newest value at or below the version, and
    /// `None` where the newest entry is a deletion. (Proofs never read a deleted value, so
    /// only this test sees tombstones.)
    #[test]
    fn versioned_values_follow_history() {
        use jmt::storage::TreeReader;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.init_genesis("c", b"", &StateWrites::new()).unwrap();
        let step = |v: Option<&[u8]>| {
            let mut w = StateWrites::new();
            w.insert(b"x".to_vec(), v.map(<[u8]>::to_vec));
            let latest = store.latest_height().unwrap();
            let p = store.prepare_state(latest, &w).unwrap();
            let mut txn = store.begin_write().unwrap();
            txn.set_quick_repair(false);
            write_state(&txn, &w).unwrap();
            write_tree(&txn, &p.batch).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(meta::LATEST_HEIGHT, p.height.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        };
        step(Some(b"1"));
        step(None);
        step(Some(b""));
        let txn = store.begin_read().unwrap();
        let t = TreeTables::open(&txn).unwrap();
        let kh = KeyHash::with::<Hasher>(b"x");
        let got: Vec<Option<Vec<u8>>> = (0..=4)
            .map(|v| t.get_value_option(v, kh).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![None, Some(b"1".to_vec()), None, Some(vec![]), Some(vec![])]
        );
        assert!(t.get_rightmost_leaf().is_err());
    }

    #[test]
    fn store_is_send_and_sync_and_snapshot_is_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Store>();
        send_sync::<StoreError>();
        send::<Snapshot>();
        send::<PreparedState>();
    }
}
