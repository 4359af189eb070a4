//! The ledger: store + runtime + signature cache + mempool.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use trustedge_contracts::genesis::{self, Genesis};
use trustedge_execution::{
    AdmissionError, BlockEnv, ExecError, Runtime, StateError, StateRead, StateWrites,
};
use trustedge_store::{
    BlockLog, EventCursor, EventFilter, EventPage, LoggedBlock, PreparedState, Store, StoreError,
};
use trustedge_types::block::{MAX_BLOCK_BYTES, MAX_BLOCK_TXS};
use trustedge_types::merkle::{MerkleTree, root_of};
use trustedge_types::{
    Address, Block, BlockHeader, CommitCertificate, Event, Hash, Height, PublicKey, SignedTx,
    TxResult, ValidatorSet, codec,
};

use crate::mempool::{Mempool, MempoolConfig, MempoolError};
use crate::proofs::{StateValueProof, TxInclusionProof};
use crate::verify::SigCache;

/// How many executed-but-uncommitted blocks are kept (proposals and validated blocks of the
/// next height; a few rounds' worth).
const MAX_EXECUTED_CACHE: usize = 16;

/// Tunables of a ledger.
#[derive(Clone, Copy, Debug)]
pub struct LedgerConfig {
    /// Mempool bounds.
    pub mempool: MempoolConfig,
    /// Ids kept in the signature cache.
    pub sig_cache_capacity: usize,
    /// Most transactions a proposal takes.
    pub max_block_txs: usize,
    /// Most transaction bytes a proposal takes.
    pub max_block_bytes: usize,
    /// Blocks per durable store commit. Each block is made durable by its append to the
    /// block log (one sequential write and `fdatasync`) and committed to the store without
    /// durability; once `checkpoint_interval` blocks are not yet durable in the store, a
    /// background checkpoint commits durably, which persists them, and empties the log.
    /// `1` commits every block durably and logs nothing. See [`Ledger::open`] for what
    /// happens after a crash.
    pub checkpoint_interval: u64,
}

/// Where in the checkpoint interval a ledger on `db_path` checkpoints.
fn checkpoint_phase(db_path: &Path, interval: u64) -> u64 {
    let path = std::path::absolute(db_path).unwrap_or_else(|_| db_path.to_path_buf());
    let digest = Hash::tagged(
        b"trustedge/ledger/checkpoint-phase",
        &[path.as_os_str().as_encoded_bytes()],
    );
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.0[..8]);
    u64::from_be_bytes(first) % interval.max(1)
}

/// Default of [`LedgerConfig::checkpoint_interval`]. Measured with `trustedge bench ledger
/// --backlog-ms 500` (4 validators, 2 cores): 8 and 32 commit about as many transactions per
/// second, and a checkpoint of 8 blocks delays the height it overlaps less than one of 32.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 8;

/// The block log beside a ledger's store file: `<db_path>.blocklog` (`ledger.redb` →
/// `ledger.redb.blocklog`).
pub fn block_log_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".blocklog");
    PathBuf::from(name)
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            mempool: MempoolConfig::default(),
            sig_cache_capacity: 500_000,
            max_block_txs: 20_000,
            max_block_bytes: MAX_BLOCK_BYTES / 2,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

/// Failures opening or reading the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State read failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The genesis document is invalid.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// The store was initialised with another genesis.
    #[error("the store holds a different genesis (chain {stored_chain:?}); refusing to open")]
    GenesisMismatch {
        /// Chain id in the store.
        stored_chain: String,
    },
    /// Not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] trustedge_execution::QueryError),
}

/// Why a submitted transaction was refused. Every variant is the submitter's problem (4xx)
/// except `Store`/`State`.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Not admissible (bad encoding, chain, signature, nonce, signer, module, call).
    #[error(transparent)]
    Rejected(#[from] AdmissionError),
    /// The mempool refused it (duplicate or full).
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    /// Already committed.
    #[error("transaction {0} is already committed")]
    AlreadyCommitted(Hash),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State read failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a block was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The block breaks a rule; consensus must not accept it.
    #[error("invalid block: {0}")]
    Invalid(String),
    /// The certificate does not finalise the block.
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// State read failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<ExecError> for BlockError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Storage(s) => BlockError::State(s),
            other => BlockError::Invalid(other.to_string()),
        }
    }
}

/// What a commit did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitInfo {
    /// Height committed.
    pub height: Height,
    /// Its hash.
    pub hash: Hash,
    /// Transactions in it.
    pub txs: usize,
    /// Of which failed.
    pub failed: usize,
    /// Mempool transactions dropped as expired or with a used nonce.
    pub evicted: usize,
}

/// The chain's status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// Chain id.
    pub chain_id: String,
    /// Latest committed height (0: genesis only).
    pub height: Height,
    /// Hash of the latest block (zero at height 0).
    pub block_hash: Hash,
    /// State root after the latest block.
    pub state_root: Hash,
    /// Time of the latest block (genesis time at height 0), Unix ms.
    pub time_ms: u64,
    /// Transactions in the mempool.
    pub mempool_txs: usize,
    /// Hash of the genesis document.
    pub genesis_hash: Hash,
}

/// Where a transaction stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// In this node's mempool.
    Pending,
    /// In a committed block, with its result and an inclusion proof.
    Committed(Box<TxInclusionProof>),
    /// Not known to this node.
    Unknown,
}

/// Why a block is being committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Commit {
    /// Decided by consensus (or sealed): log it and commit it deferred, or (with
    /// `checkpoint_interval` 1) commit it durably.
    Decided,
    /// Read back from the block log at open: in the log already; made durable at the end.
    Replay,
}

struct Executed {
    tx_ids: Vec<Hash>,
    results: Vec<TxResult>,
    block_events: Vec<Event>,
    writes: StateWrites,
    prepared: PreparedState,
}

/// The ledger. Shared between threads (`Arc<Ledger>`); all methods take `&self`.
pub struct Ledger {
    store: Arc<Store>,
    runtime: Runtime,
    genesis: Genesis,
    genesis_hash: Hash,
    config: LedgerConfig,
    sigs: SigCache,
    mempool: Mutex<Mempool>,
    executed: Mutex<HashMap<Hash, Executed>>,
    /// Serialises commits (and proposals, which must see a stable parent).
    commit_lock: Mutex<()>,
    /// The block log and how far the store is durable; taken inside `commit_lock`, and by
    /// the checkpointer.
    durability: Arc<Mutex<Durability>>,
    /// Asks the checkpointer thread for a checkpoint; dropped (ending the thread) on drop.
    checkpoints: Option<std::sync::mpsc::SyncSender<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The height modulo `checkpoint_interval` at which this ledger checkpoints: a hash of
    /// its store's path, so that nodes differ.
    checkpoint_phase: u64,
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Ends the checkpointer after any checkpoint it is running; what is not durable in
        // the store stays in the block log.
        self.checkpoints.take();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
    }
}

/// What makes committed blocks durable between durable store commits.
struct Durability {
    log: BlockLog,
    /// Latest height the store holds durably (as of its last durable commit).
    durable_height: Height,
}

impl Durability {
    /// One durable store commit, then the log is emptied: everything logged is in the store.
    fn checkpoint(&mut self, store: &Store) -> Result<(), StoreError> {
        store.checkpoint()?;
        self.durable_height = store.latest_height()?;
        self.log.reset()
    }
}

/// The checkpointer: runs a checkpoint whenever asked, off the commit path, so that the
/// durable commit (which writes every page the deferred commits dirtied) overlaps the next
/// height's consensus instead of delaying it. The next commit waits for it only if it is
/// still running then.
fn run_checkpointer(
    store: Arc<Store>,
    durability: Arc<Mutex<Durability>>,
    asks: std::sync::mpsc::Receiver<()>,
) {
    while asks.recv().is_ok() {
        let mut d = lock(&durability);
        let started = std::time::Instant::now();
        match d.checkpoint(&store) {
            Ok(()) => tracing::debug!(
                height = d.durable_height,
                ms = started.elapsed().as_millis() as u64,
                "checkpoint"
            ),
            // The blocks stay in the log; the next commit asks again.
            Err(e) => tracing::error!(error = %e, "checkpoint failed"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State behind these locks stays consistent between statements; a panic elsewhere does
    // not make it unusable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    /// Opens the ledger in `db_path`, writing genesis if the store is new and refusing a store
    /// that was initialised with a different genesis.
    pub fn open(
        db_path: &Path,
        genesis: Genesis,
        config: LedgerConfig,
    ) -> Result<Ledger, LedgerError> {
        genesis
            .validate()
            .map_err(|e| LedgerError::Genesis(e.to_string()))?;
        let doc = codec::encode(&genesis);
        let store = Store::open(db_path)?;
        if !store.is_initialised()? {
            let writes = genesis
                .state_writes()
                .map_err(|e| LedgerError::Genesis(e.to_string()))?;
            store.init_genesis(&genesis.chain_id, &doc, &writes)?;
        } else if store.genesis_doc()?.as_deref() != Some(doc.as_slice()) {
            return Err(LedgerError::GenesisMismatch {
                stored_chain: store.chain_id()?.unwrap_or_default(),
            });
        }
        let runtime = trustedge_contracts::runtime(&genesis.chain_id);
        let (log, logged) = BlockLog::open(&block_log_path(db_path))?;
        let durable_height = store.latest_height()?;
        let store = Arc::new(store);
        let durability = Arc::new(Mutex::new(Durability {
            log,
            durable_height,
        }));
        let (checkpoints, checkpointer) = if config.checkpoint_interval > 1 {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let (s, d) = (store.clone(), durability.clone());
            let handle = std::thread::Builder::new()
                .name("ledger-checkpoint".into())
                .spawn(move || run_checkpointer(s, d, rx))
                .map_err(|e| StoreError::Io(format!("cannot start the checkpoint thread: {e}")))?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        let ledger = Ledger {
            store,
            runtime,
            genesis_hash: genesis.hash(),
            genesis,
            sigs: SigCache::new(config.sig_cache_capacity),
            mempool: Mutex::new(Mempool::new(config.mempool)),
            executed: Mutex::new(HashMap::new()),
            commit_lock: Mutex::new(()),
            durability,
            checkpoints,
            checkpointer,
            checkpoint_phase: checkpoint_phase(db_path, config.checkpoint_interval),
            config,
        };
        ledger.replay(logged)?;
        Ok(ledger)
    }

    /// Commits the logged blocks the store lost in a crash (those above its last durable
    /// commit), each checked and executed as any received block, then makes them durable and
    /// empties the log. Logged blocks the store holds must be the same blocks.
    fn replay(&self, logged: Vec<LoggedBlock>) -> Result<(), LedgerError> {
        let replay_err = |h: Height, e: String| {
            LedgerError::Store(StoreError::Corrupt {
                what: "block log replay",
                reason: format!("height {h}: {e}"),
            })
        };
        let had_log = !logged.is_empty();
        let mut replayed = 0u64;
        for LoggedBlock { block, certificate } in logged {
            let h = block.header.height;
            let latest = self.store.latest_height()?;
            if h <= latest {
                let stored = self.store.header(h)?.map(|hd| hd.hash());
                if stored != Some(block.hash()) {
                    return Err(replay_err(
                        h,
                        "the log's block differs from the store's".into(),
                    ));
                }
                continue;
            }
            if h != latest + 1 {
                return Err(replay_err(
                    h,
                    format!("the store ends at {latest}; the log skips blocks"),
                ));
            }
            self.commit_block_as(&block, &certificate, Commit::Replay)
                .map_err(|e| replay_err(h, e.to_string()))?;
            replayed += 1;
        }
        if had_log {
            let _g = lock(&self.commit_lock);
            lock(&self.durability).checkpoint(&self.store)?;
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                height = self.store.latest_height()?,
                "replayed blocks from the block log after an unclean stop"
            );
        }
        Ok(())
    }

    /// Makes every committed block durable in the store and empties the block log (what a
    /// checkpoint does every [`LedgerConfig::checkpoint_interval`] blocks). For a clean stop;
    /// not needed for safety.
    pub fn checkpoint(&self) -> Result<(), LedgerError> {
        let _g = lock(&self.commit_lock);
        lock(&self.durability).checkpoint(&self.store)?;
        Ok(())
    }

    /// The store (blocks, results, events).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime (modules).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The genesis document.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    /// The signature cache.
    pub fn sig_cache(&self) -> &SigCache {
        &self.sigs
    }

    /// Mempool size (transactions, bytes).
    pub fn mempool_size(&self) -> (usize, usize) {
        let m = lock(&self.mempool);
        (m.len(), m.size_bytes())
    }

    /// Latest committed height.
    pub fn height(&self) -> Result<Height, LedgerError> {
        Ok(self.store.latest_height()?)
    }

    /// Header of the latest block, if any block is committed.
    pub fn latest_header(&self) -> Result<Option<BlockHeader>, LedgerError> {
        let h = self.store.latest_height()?;
        if h == 0 {
            return Ok(None);
        }
        Ok(self.store.header(h)?)
    }

    /// Status of the chain.
    pub fn status(&self) -> Result<Status, LedgerError> {
        let height = self.store.latest_height()?;
        let header = if height == 0 {
            None
        } else {
            self.store.header(height)?
        };
        Ok(Status {
            chain_id: self.genesis.chain_id.clone(),
            height,
            block_hash: header.as_ref().map(|h| h.hash()).unwrap_or(Hash::ZERO),
            state_root: self.store.state_root(height)?,
            time_ms: header
                .map(|h| h.time_ms)
                .unwrap_or(self.genesis.genesis_time_ms),
            mempool_txs: lock(&self.mempool).len(),
            genesis_hash: self.genesis_hash,
        })
    }

    /// The validator set of the next height (read from authenticated state).
    pub fn validator_set(&self) -> Result<ValidatorSet, LedgerError> {
        let snap = self.store.snapshot()?;
        genesis::validator_set(&snap)?
            .ok_or_else(|| LedgerError::NotFound("validator set in state".into()))
    }

    /// The validator set that must sign block `height`: by the genesis module's invariant,
    /// the validator-set key in the state after block `height - 1` (the genesis state for
    /// height 1). Known for every height up to the next one (`latest + 1`); later sets may
    /// still change and are [`LedgerError::NotFound`], as is height 0 (no block).
    pub fn validator_set_at(&self, height: Height) -> Result<ValidatorSet, LedgerError> {
        let Some(state_height) = height.checked_sub(1) else {
            return Err(LedgerError::NotFound(
                "validator set of height 0: there is no block 0".into(),
            ));
        };
        let latest = self.store.latest_height()?;
        if state_height > latest {
            return Err(LedgerError::NotFound(format!(
                "validator set of height {height}: only heights up to {} are known",
                latest.saturating_add(1)
            )));
        }
        let bytes = self
            .store
            .get_at(&genesis::validator_set_key(), state_height)?
            .ok_or_else(|| {
                LedgerError::NotFound(format!("validator set in the state of {state_height}"))
            })?;
        codec::decode(&bytes, usize::MAX).map_err(|e| {
            LedgerError::State(StateError(format!(
                "undecodable validator set at height {state_height}: {e}"
            )))
        })
    }

    // ---------------------------------------------------------------- submission

    /// Admits one transaction into the mempool. Returns its id.
    pub fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        self.submit_batch(vec![tx])
            .pop()
            .unwrap_or(Err(SubmitError::State(StateError(
                "empty batch result".into(),
            ))))
    }

    /// Admits many transactions, verifying their signatures in one parallel batch.
    pub fn submit_batch(&self, txs: Vec<SignedTx>) -> Vec<Result<Hash, SubmitError>> {
        let ids: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
        let refs: Vec<&SignedTx> = txs.iter().collect();
        let sig_ok = self.sigs.verify(&refs, &ids);
        let snap = match self.store.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                return txs
                    .iter()
                    .map(|_| Err(SubmitError::State(StateError(msg.clone()))))
                    .collect();
            }
        };
        let next_height = snap.height() + 1;
        let mut out = Vec::with_capacity(txs.len());
        // Once the mempool is full, every later transaction of the batch is refused as full
        // too, even if a commit frees room meanwhile: a sender retries the refused tail in
        // order, and admitting a later nonce ahead of a refused earlier one would make the
        // earlier one stale for good once the later one commits.
        let mut full: Option<MempoolError> = None;
        for ((tx, id), ok) in txs.into_iter().zip(ids).zip(sig_ok) {
            if let Some(e) = &full {
                out.push(Err(SubmitError::Mempool(e.clone())));
                continue;
            }
            let r = self.admit_one(&snap, tx, id, ok, next_height);
            if let Err(SubmitError::Mempool(e @ MempoolError::Full { .. })) = &r {
                full = Some(e.clone());
            }
            out.push(r);
        }
        out
    }

    fn admit_one(
        &self,
        snap: &dyn StateRead,
        tx: SignedTx,
        id: Hash,
        sig_ok: bool,
        next_height: Height,
    ) -> Result<Hash, SubmitError> {
        if self.store.tx_location(&id)?.is_some() {
            return Err(SubmitError::AlreadyCommitted(id));
        }
        self.runtime.admit(snap, &tx, next_height, sig_ok)??;
        let size = codec::encode(&tx).len();
        lock(&self.mempool).insert(id, tx, size)?;
        Ok(id)
    }

    /// Drops a transaction from the mempool (a follower does this when its upstream refused
    /// a transaction it had admitted locally). Returns whether it was there.
    pub fn remove_from_mempool(&self, id: &Hash) -> bool {
        lock(&self.mempool).remove(id).is_some()
    }

    // ---------------------------------------------------------------- consensus interface

    /// Builds the next block from the mempool, executing it. `time_ms` is the proposer's
    /// clock; it is raised to one past the parent's time if it is not later.
    /// Transactions that turn out inadmissible are dropped from the mempool.
    pub fn propose_block(&self, time_ms: u64, proposer: Address) -> Result<Block, BlockError> {
        self.propose_block_within(time_ms, proposer, &mut || true)
    }

    /// [`Ledger::propose_block`], taking transactions only while `more()` says so (asked
    /// before each one; the first is always taken): the proposer's time budget, so that a
    /// mempool of costly transactions yields a smaller block in time rather than a full one
    /// too late for the round. What is left stays in the mempool for the next block.
    pub fn propose_block_within(
        &self,
        time_ms: u64,
        proposer: Address,
        more: &mut dyn FnMut() -> bool,
    ) -> Result<Block, BlockError> {
        let _g = lock(&self.commit_lock);
        let snap = self.store.snapshot()?;
        let parent_height = snap.height();
        let height = parent_height + 1;
        let (prev_hash, parent_time) = self.parent_of(parent_height)?;
        let time_ms = time_ms.max(parent_time + 1);
        let candidates =
            lock(&self.mempool).candidates(self.config.max_block_txs, self.config.max_block_bytes);
        let refs: Vec<&SignedTx> = candidates.iter().map(|(_, t)| t).collect();
        let ids: Vec<Hash> = candidates.iter().map(|(id, _)| *id).collect();
        let sig_ok = self.sigs.verify(&refs, &ids);
        let validators = genesis::validator_set(&snap)?
            .ok_or_else(|| BlockError::Invalid("no validator set in state".into()))?;
        // Every other node refuses such a block (see execute_received); say so here, where
        // the proposer can still act on it, rather than after it was broadcast.
        if validators.get(&proposer).is_none() {
            return Err(BlockError::Invalid(format!(
                "proposer {proposer} is not a validator of height {height}"
            )));
        }

        let mut builder = self
            .runtime
            .begin_block(&snap, BlockEnv { height, time_ms });
        let mut txs = Vec::with_capacity(candidates.len());
        let mut tx_ids = Vec::with_capacity(candidates.len());
        let mut dropped = Vec::new();
        for ((id, tx), ok) in candidates.into_iter().zip(sig_ok) {
            if !txs.is_empty() && !more() {
                break;
            }
            match builder.apply(&tx, id, ok) {
                Ok(_) => {
                    txs.push(tx);
                    tx_ids.push(id);
                }
                Err(ExecError::Inadmissible { .. }) => dropped.push(id),
                Err(ExecError::Storage(e)) => return Err(BlockError::State(e)),
            }
        }
        let exec = builder.finish()?;
        drop(snap);
        let prepared = self.store.prepare_state(parent_height, &exec.writes)?;
        let header = BlockHeader {
            chain_id: self.genesis.chain_id.clone(),
            height,
            time_ms,
            prev_hash,
            tx_root: root_of(tx_ids.iter().map(|h| h.0)),
            state_root: prepared.root,
            results_root: TxResult::root_of(&exec.results),
            validator_set_hash: validators.hash(),
            proposer,
        };
        {
            let mut m = lock(&self.mempool);
            for id in &dropped {
                m.remove(id);
            }
        }
        let block = Block { header, txs };
        self.remember(
            block.hash(),
            Executed {
                tx_ids,
                results: exec.results,
                block_events: exec.block_events,
                writes: exec.writes,
                prepared,
            },
        );
        Ok(block)
    }

    fn parent_of(&self, parent_height: Height) -> Result<(Hash, u64), BlockError> {
        if parent_height == 0 {
            return Ok((Hash::ZERO, self.genesis.genesis_time_ms));
        }
        let h = self
            .store
            .header(parent_height)?
            .ok_or_else(|| BlockError::Invalid(format!("missing parent header {parent_height}")))?;
        Ok((h.hash(), h.time_ms))
    }

    fn remember(&self, hash: Hash, e: Executed) {
        let mut m = lock(&self.executed);
        if m.len() >= MAX_EXECUTED_CACHE {
            m.clear();
        }
        m.insert(hash, e);
    }

    /// Checks a received block for the next height by executing it. `now_ms`, if given, bounds
    /// how far in the future the block's time may be (`max_future_ms`).
    pub fn validate_block(&self, block: &Block) -> Result<(), BlockError> {
        let hash = block.hash();
        if lock(&self.executed).contains_key(&hash) {
            return Ok(());
        }
        let _g = lock(&self.commit_lock);
        let executed = self.execute_received(block)?;
        self.remember(hash, executed);
        Ok(())
    }

    fn execute_received(&self, block: &Block) -> Result<Executed, BlockError> {
        let inv = |m: String| Err(BlockError::Invalid(m));
        let h = &block.header;
        let snap = self.store.snapshot()?;
        let parent_height = snap.height();
        if h.chain_id != self.genesis.chain_id {
            return inv(format!(
                "chain id {:?} is not {:?}",
                h.chain_id, self.genesis.chain_id
            ));
        }
        if h.height != parent_height + 1 {
            return inv(format!(
                "height {} does not follow {parent_height}",
                h.height
            ));
        }
        let (prev_hash, parent_time) = self.parent_of(parent_height)?;
        if h.prev_hash != prev_hash {
            return inv("prev_hash is not the hash of the latest block".into());
        }
        if h.time_ms <= parent_time {
            return inv(format!(
                "time {} is not after the parent's {parent_time}",
                h.time_ms
            ));
        }
        if block.txs.len() > MAX_BLOCK_TXS {
            return inv(format!(
                "{} transactions exceed {MAX_BLOCK_TXS}",
                block.txs.len()
            ));
        }
        // The set that signs this height; `snap` is the parent's state, so this is also
        // what `validator_set_at(h.height)` reads.
        let validators = genesis::validator_set(&snap)?
            .ok_or_else(|| BlockError::Invalid("no validator set in state".into()))?;
        if h.validator_set_hash != validators.hash() {
            return inv(format!(
                "validator_set_hash is not the hash of the validator set of height {}",
                h.height
            ));
        }
        if validators.get(&h.proposer).is_none() {
            return inv(format!("proposer {} is not a validator", h.proposer));
        }
        let tx_ids: Vec<Hash> = block.txs.iter().map(SignedTx::hash).collect();
        if root_of(tx_ids.iter().map(|x| x.0)) != h.tx_root {
            return inv("tx_root does not match the transactions".into());
        }
        let refs: Vec<&SignedTx> = block.txs.iter().collect();
        let sig_ok = self.sigs.verify(&refs, &tx_ids);
        let mut builder = self.runtime.begin_block(
            &snap,
            BlockEnv {
                height: h.height,
                time_ms: h.time_ms,
            },
        );
        for ((tx, id), ok) in block.txs.iter().zip(&tx_ids).zip(sig_ok) {
            builder.apply(tx, *id, ok)?;
        }
        let exec = builder.finish()?;
        drop(snap);
        if TxResult::root_of(&exec.results) != h.results_root {
            return inv("results_root does not match execution".into());
        }
        let prepared = self.store.prepare_state(parent_height, &exec.writes)?;
        if prepared.root != h.state_root {
            return inv(format!(
                "state_root {} does not match execution ({})",
                h.state_root, prepared.root
            ));
        }
        Ok(Executed {
            tx_ids,
            results: exec.results,
            block_events: exec.block_events,
            writes: exec.writes,
            prepared,
        })
    }

    /// Commits a decided block with its certificate. Executes it first unless it was
    /// proposed or validated here. One atomic store transaction.
    ///
    /// When it returns, the block is durable: in the block log, which [`Ledger::open`]
    /// replays after a crash until a checkpoint has made the store durable past it (or, with
    /// [`LedgerConfig::checkpoint_interval`] 1, in the store itself).
    pub fn commit_block(
        &self,
        block: &Block,
        cert: &CommitCertificate,
    ) -> Result<CommitInfo, BlockError> {
        self.commit_block_as(block, cert, Commit::Decided)
    }

    fn commit_block_as(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        how: Commit,
    ) -> Result<CommitInfo, BlockError> {
        let hash = block.hash();
        // The set of the block's own height, not the latest state's: the two differ once a
        // scheduled change has applied, and a set fixed by committed state cannot change
        // under a concurrent commit.
        let validators = self
            .validator_set_at(block.header.height)
            .map_err(|e| match e {
                LedgerError::Store(s) => BlockError::Store(s),
                LedgerError::State(s) => BlockError::State(s),
                other => BlockError::Invalid(format!("validator set: {other}")),
            })?;
        cert.verify(&block.header, &validators)
            .map_err(|e| BlockError::BadCertificate(e.to_string()))?;
        let _g = lock(&self.commit_lock);
        let cached = lock(&self.executed).remove(&hash);
        let executed = match cached {
            Some(e) => e,
            None => self.execute_received(block)?,
        };
        let failed = executed.results.iter().filter(|r| !r.is_success()).count();
        let tx_ids = self.store_block(block, cert, executed, how)?;
        lock(&self.executed).clear();
        let mut last_nonce: BTreeMap<PublicKey, u64> = BTreeMap::new();
        for tx in &block.txs {
            let n = last_nonce.entry(tx.body.signer).or_insert(0);
            *n = (*n).max(tx.body.nonce);
        }
        let evicted = {
            let mut m = lock(&self.mempool);
            for id in &tx_ids {
                m.remove(id);
            }
            m.evict(block.header.height + 1, |k| last_nonce.get(k).copied())
        };
        tracing::debug!(
            height = block.header.height,
            txs = block.txs.len(),
            failed,
            evicted,
            "committed"
        );
        Ok(CommitInfo {
            height: block.header.height,
            hash,
            txs: block.txs.len(),
            failed,
            evicted,
        })
    }

    /// Writes an executed block to the store: deferred after appending it to the block log
    /// (a replayed block is in the log already), or durably without the log when there is no
    /// checkpointer (`checkpoint_interval` 1). Asks for a checkpoint when one is due. Returns
    /// the transaction ids. Called under `commit_lock`.
    fn store_block(
        &self,
        block: &Block,
        cert: &CommitCertificate,
        executed: Executed,
        how: Commit,
    ) -> Result<Vec<Hash>, BlockError> {
        let Executed {
            tx_ids,
            results,
            block_events,
            writes,
            prepared,
        } = executed;
        let height = block.header.height;
        let mut d = lock(&self.durability);
        // checkpoint_interval 1: every block durable in the store, nothing logged.
        let durable = self.checkpoints.is_none() && how == Commit::Decided;
        let logged_from = if how == Commit::Decided && !durable {
            if d.log.last_height().is_some_and(|l| l <= d.durable_height) {
                d.log.reset()?;
            }
            Some(d.log.append(block, cert)?)
        } else {
            None
        };
        let commit = if durable {
            Store::commit_block_with_events
        } else {
            Store::commit_block_deferred
        };
        let stored = commit(
            &self.store,
            block,
            &tx_ids,
            cert,
            &results,
            &block_events,
            &writes,
            prepared,
        );
        if durable && stored.is_ok() {
            d.durable_height = height;
            if !d.log.is_empty()
                && let Err(e) = d.log.reset()
            {
                // Harmless: what the log holds is durable in the store now, replay skips
                // it, and the next append empties it first (above).
                tracing::warn!(error = %e, "could not empty the block log after a durable commit");
            }
        }
        if let Err(e) = stored {
            if let Some(len) = logged_from
                && let Err(t) = d.log.truncate_to(len)
            {
                // The log now holds a block the store refused; a restart replays it, which
                // is right for a decided block with a valid certificate.
                tracing::error!(error = %t, height, "could not take a block back out of the block log");
            }
            return Err(e.into());
        }
        let interval = self.config.checkpoint_interval;
        let behind = height.saturating_sub(d.durable_height);
        // At this node's phase of the interval, so that validators sharing a machine or a
        // disk do not all checkpoint at the same height (their checkpoints overlapping made
        // that height the slowest of a run); late ones are caught up at twice the interval.
        let due = (height % interval == self.checkpoint_phase && behind > 0)
            || behind >= interval.saturating_mul(2);
        if due
            && how == Commit::Decided
            && let Some(asks) = &self.checkpoints
        {
            // A full channel means one is queued already; the checkpointer holds the
            // durability lock while it runs, so it cannot be running now.
            let _ = asks.try_send(());
        }
        Ok(tx_ids)
    }

    /// Signs a certificate for `block` as the only signer (a single-validator chain).
    /// Multi-validator certificates come from consensus.
    pub fn solo_certificate(
        &self,
        block: &Block,
        key: &trustedge_types::Keypair,
    ) -> CommitCertificate {
        let h = &block.header;
        let hash = h.hash();
        let msg = CommitCertificate::sign_bytes(&h.chain_id, h.height, 0, &hash);
        CommitCertificate {
            height: h.height,
            round: 0,
            block_hash: hash,
            signatures: vec![trustedge_types::CommitSig {
                validator: Address::of_member(&key.public()),
                signature: key.sign(&msg),
            }],
        }
    }

    // ---------------------------------------------------------------- queries

    /// Status of a transaction, with an inclusion proof once committed.
    pub fn tx_status(&self, id: &Hash) -> Result<TxStatus, LedgerError> {
        if let Some((height, index)) = self.store.tx_location(id)? {
            return Ok(TxStatus::Committed(Box::new(self.tx_proof(height, index)?)));
        }
        if lock(&self.mempool).contains(id) {
            return Ok(TxStatus::Pending);
        }
        Ok(TxStatus::Unknown)
    }

    /// The inclusion proof of transaction `index` of block `height`.
    pub fn tx_proof(&self, height: Height, index: u32) -> Result<TxInclusionProof, LedgerError> {
        let block = self
            .store
            .block(height)?
            .ok_or_else(|| LedgerError::NotFound(format!("block {height}")))?;
        let i = index as usize;
        let tx = block.txs.get(i).cloned().ok_or_else(|| {
            LedgerError::NotFound(format!("transaction {index} of block {height}"))
        })?;
        let ids = block.txs.iter().map(|t| t.hash().0);
        let tx_proof = MerkleTree::from_leaves(ids)
            .proof(u64::from(index))
            .ok_or_else(|| LedgerError::NotFound("tx proof".into()))?;
        let mut results = Vec::with_capacity(block.txs.len());
        for j in 0..block.txs.len() as u32 {
            results.push(
                self.store.tx_result(height, j)?.ok_or_else(|| {
                    LedgerError::NotFound(format!("result {j} of block {height}"))
                })?,
            );
        }
        let result_proof = MerkleTree::from_leaves(results.iter().map(|r| r.leaf().0))
            .proof(u64::from(index))
            .ok_or_else(|| LedgerError::NotFound("result proof".into()))?;
        Ok(TxInclusionProof {
            certificate: self.store.certificate(height)?,
            header: block.header,
            index,
            tx,
            tx_proof,
            result: results.swap_remove(i),
            result_proof,
        })
    }

    /// A raw state value with its proof, at `height` (latest if `None`).
    pub fn state_proof(
        &self,
        key: &[u8],
        height: Option<Height>,
    ) -> Result<StateValueProof, LedgerError> {
        let latest = self.store.latest_height()?;
        let height = height.unwrap_or(latest);
        if height > latest {
            return Err(LedgerError::NotFound(format!(
                "height {height} (latest is {latest})"
            )));
        }
        let (value, proof) = self.store.get_with_proof(key, height)?;
        let header = if height == 0 {
            None
        } else {
            self.store.header(height)?
        };
        Ok(StateValueProof {
            height,
            certificate: if height == 0 {
                None
            } else {
                self.store.certificate(height)?
            },
            header,
            state_root: self.store.state_root(height)?,
            key: key.to_vec(),
            value,
            proof,
        })
    }

    /// Runs a module query on the latest state.
    pub fn query(
        &self,
        module: &str,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, LedgerError> {
        let m = self
            .runtime
            .module(module)
            .ok_or_else(|| LedgerError::NotFound(format!("module {module:?}")))?;
        let snap = self.store.snapshot()?;
        Ok(m.query(&snap, path, params)?)
    }

    /// Events matching a filter, a page at a time.
    pub fn events(
        &self,
        filter: &EventFilter,
        cursor: Option<EventCursor>,
        limit: usize,
    ) -> Result<EventPage, LedgerError> {
        Ok(self.store.events(filter, cursor, limit)?)
    }

    /// The last nonce `key` used on the committed chain.
    pub fn last_nonce(&self, key: &PublicKey) -> Result<u64, LedgerError> {
        let snap = self.store.snapshot()?;
        Ok(Runtime::last_nonce(&snap, key)?)
    }
}
