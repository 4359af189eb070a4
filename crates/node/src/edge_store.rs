//! The edge store: the device records an edge node keeps, encrypted at rest, indexed by
//! pseudonymous lookup keys and by time, and batched for anchoring.
//!
//! One redb file (`[mqtt] store_path`, by default `data/edge.redb`). Each accepted reading
//! gets a record id (increasing from 0) and is written in ONE write transaction together
//! with its metadata and its device's new sequence number, so a reading is either stored
//! and counted against replay, or not at all; the node acknowledges a reading only after
//! that transaction is durable.
//!
//! # Tables
//! - `records`: id → [`trustedge_edge::store::seal_record`] of the Borsh [`StoredBody`]
//!   (the signed reading, device key included), under the data key, bound to the id and
//!   the record's own key.
//! - `meta`: id → [`RecordMeta`] in the clear: receive time, digest, kind, own key and
//!   observed keys. No device key, address or sequence number.
//! - `by_time`: `(received_ms, id)`, for retention.
//! - `seqs`: device public key → last accepted sequence number, its record id and digest
//!   (replay protection; the same reading sent again is recognised as a duplicate).
//! - `batches`: first id → [`BatchMeta`]; `counters`: next id, next unbatched id, last
//!   receive time.
//!
//! There is no lookup table by index key. The workers read records in receive order
//! (`by_time`) and keep what they match on in memory; a clear multimap from RPIs to record
//! ids was written for every record and read by nothing, and its random-key inserts were
//! about 85 % of a batch's write cost (`cargo bench -p trustedge-node --bench edge_store`).
//! A store written by an earlier version loses that table when it is opened.
//!
//! # What the metadata leaks
//! Index keys are what the indexer returns; for encounter uploads they are RPIs: the
//! uploader's own RPI and the RPIs it heard. RPIs are pseudonyms that rotate every 10–20
//! minutes and are broadcast in the clear anyway; a record's metadata links one own RPI to
//! the RPIs heard under it (which is what the upload says), and never two own RPIs of one device:
//! the device key, address and sequence number that would link them are only inside the
//! encrypted body and in `seqs` (key → a number), which is never shared and is not joined
//! to records. Receive times and record sizes are in the clear. Someone who steals the
//! file together with the data key file reads everything: the key protects against a
//! copied or discarded database, not a compromised node.

use std::path::{Path, PathBuf};

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{
    Database, Durability, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use trustedge_device::SignedReading;
use trustedge_edge::store::{
    DataKey, MAX_INDEX_KEY_BYTES, NONCE_BYTES, open_record, record_digest, seal_record,
};
use trustedge_edge::{RecordBatch, RecordProof, SealedBatch};
use trustedge_types::{Address, Hash, codec};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<u64, &[u8]> = TableDefinition::new("meta");
/// The clear index by key of earlier versions: dropped when such a store is opened.
const OLD_INDEX: MultimapTableDefinition<&[u8], u64> = MultimapTableDefinition::new("index");
const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("by_time");
const SEQS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("seqs");
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

const NEXT_ID: &str = "next_id";
const NEXT_UNBATCHED: &str = "next_unbatched";
const LAST_RECEIVED_MS: &str = "last_received_ms";
/// Bytes of the sealed records held (a store written before this counter existed counts
/// from when it was first opened by a version that keeps it).
const SEALED_BYTES: &str = "sealed_bytes";

/// Most observed keys one record may be indexed under.
pub const MAX_OBSERVED_KEYS: usize = 1024;
/// Most ids a lookup returns.
pub const MAX_LOOKUP: usize = 10_000;
/// Largest stored value read back (a sealed reading is well under this).
const MAX_STORED_BYTES: usize = 64 * 1024;

/// Errors of the edge store.
#[derive(Debug, thiserror::Error)]
pub enum EdgeStoreError {
    /// The database failed.
    #[error("edge store database: {0}")]
    Database(#[from] redb::Error),
    /// The data key file is missing, unreadable or malformed.
    #[error("data key file {path}: {message}")]
    DataKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A stored value does not decode or decrypt: the file was altered or the key is wrong.
    #[error("edge store corrupt at record {id}: {message}")]
    Corrupt {
        /// The record.
        id: u64,
        /// What is wrong.
        message: String,
    },
    /// The reading's sequence number is not above the last one accepted from its device.
    #[error("sequence number {seq} is not above {last}, the last accepted from this device")]
    Replayed {
        /// The reading's sequence number.
        seq: u64,
        /// The last accepted one.
        last: u64,
    },
    /// Too many or too long index keys.
    #[error("index keys refused: {0}")]
    IndexKeys(String),
    /// Sealing a record or a batch failed.
    #[error(transparent)]
    Edge(#[from] trustedge_edge::EdgeError),
}

macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for EdgeStoreError {
            fn from(e: $t) -> Self {
                EdgeStoreError::Database(e.into())
            }
        })*
    };
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The keys a record is found by: the uploader's own key (for encounters: the own RPI the
/// upload is for) and the keys it observed (the RPIs heard). Both may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct IndexKeys {
    /// The uploader's own key, at most [`MAX_INDEX_KEY_BYTES`].
    pub own: Vec<u8>,
    /// Observed keys, each at most [`MAX_INDEX_KEY_BYTES`], at most [`MAX_OBSERVED_KEYS`].
    pub observed: Vec<Vec<u8>>,
}

impl IndexKeys {
    fn check(&self) -> Result<(), EdgeStoreError> {
        if self.own.len() > MAX_INDEX_KEY_BYTES
            || self
                .observed
                .iter()
                .any(|k| k.is_empty() || k.len() > MAX_INDEX_KEY_BYTES)
        {
            return Err(EdgeStoreError::IndexKeys(format!(
                "each key must be 1..={MAX_INDEX_KEY_BYTES} bytes"
            )));
        }
        if self.observed.len() > MAX_OBSERVED_KEYS {
            return Err(EdgeStoreError::IndexKeys(format!(
                "{} observed keys; at most {MAX_OBSERVED_KEYS}",
                self.observed.len()
            )));
        }
        Ok(())
    }
}

/// What the store keeps in the clear about a record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RecordMeta {
    /// When the edge accepted it, Unix milliseconds of the edge's clock (strictly
    /// increasing from record to record, so anchored batches never overlap in time).
    pub received_ms: u64,
    /// [`record_digest`] of the reading's canonical bytes: what is anchored.
    pub digest: Hash,
    /// The reading's kind.
    pub kind: String,
    /// Index keys.
    pub keys: IndexKeys,
}

/// The encrypted part of a record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StoredBody {
    /// The reading as the device signed it.
    pub reading: SignedReading,
}

/// A record read back from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its id.
    pub id: u64,
    /// Its clear metadata.
    pub meta: RecordMeta,
    /// The decrypted reading.
    pub reading: SignedReading,
}

/// One reading for [`EdgeStore::put_many`].
#[derive(Debug)]
pub struct PutItem<'a> {
    /// The verified reading.
    pub reading: &'a SignedReading,
    /// When it was received, Unix ms.
    pub now_ms: u64,
    /// Its index keys.
    pub keys: IndexKeys,
    /// A fresh random nonce for its encryption.
    pub nonce: [u8; NONCE_BYTES],
}

/// What [`EdgeStore::put`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutcome {
    /// The new record's id.
    pub id: u64,
    /// Its receive time as stored.
    pub received_ms: u64,
    /// Its digest.
    pub digest: Hash,
    /// The reading was the device's last one, stored already (a retry): nothing was
    /// written, `id` is the stored record's and `received_ms` is 0.
    pub duplicate: bool,
}

/// The last reading accepted from a device.
struct LastSeq {
    seq: u64,
    id: u64,
    digest: Hash,
}

fn encode_seq(l: &LastSeq) -> [u8; 48] {
    let mut out = [0; 48];
    out[..8].copy_from_slice(&l.seq.to_be_bytes());
    out[8..16].copy_from_slice(&l.id.to_be_bytes());
    out[16..].copy_from_slice(&l.digest.0);
    out
}

fn parse_seq(b: &[u8]) -> Result<LastSeq, EdgeStoreError> {
    let corrupt = || EdgeStoreError::Corrupt {
        id: u64::MAX,
        message: "a sequence entry is not 48 bytes".into(),
    };
    let b: &[u8; 48] = b.try_into().map_err(|_| corrupt())?;
    let mut seq = [0; 8];
    seq.copy_from_slice(&b[..8]);
    let mut id = [0; 8];
    id.copy_from_slice(&b[8..16]);
    let mut digest = [0; 32];
    digest.copy_from_slice(&b[16..]);
    Ok(LastSeq {
        seq: u64::from_be_bytes(seq),
        id: u64::from_be_bytes(id),
        digest: Hash(digest),
    })
}

/// The state of a batch of records cut for anchoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BatchStatus {
    /// Cut, not yet seen committed on the ledger.
    Pending,
    /// Committed on the ledger at this height.
    Anchored(u64),
}

/// A batch of consecutive records, anchored (or to be anchored) as one Merkle root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BatchMeta {
    /// Id of its first record.
    pub first_id: u64,
    /// Number of records (ids `first_id..first_id + count`).
    pub count: u64,
    /// Record type of the anchor.
    pub record_type: String,
    /// Receive time of the first record.
    pub from_ms: u64,
    /// Receive time of the last record.
    pub to_ms: u64,
    /// Merkle root over the records' digests.
    pub merkle_root: Hash,
    /// The last anchoring transaction submitted, if any.
    pub tx_hash: Option<Hash>,
    /// Where it stands.
    pub status: BatchStatus,
}

impl BatchMeta {
    /// The `anchor.anchor_batch` call, as [`trustedge_edge::SealedBatch::anchor_call`] makes.
    pub fn anchor_call(&self) -> trustedge_contracts::AnchorCall {
        trustedge_contracts::AnchorCall::AnchorBatch {
            record_type: self.record_type.clone(),
            merkle_root: self.merkle_root,
            count: self.count,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }

    /// The ledger id of this batch when `edge` anchors it.
    pub fn anchor_id(&self, edge: &Address) -> Hash {
        trustedge_contracts::anchor::anchor_id(
            edge,
            &self.record_type,
            &self.merkle_root,
            self.count,
            self.from_ms,
            self.to_ms,
        )
    }
}

/// A record's proof of inclusion in its anchored batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeRecordProof {
    /// The record.
    pub id: u64,
    /// Its batch.
    pub batch: BatchMeta,
    /// The digest and its Merkle path (`proof.record` is the 32-byte digest).
    pub proof: RecordProof,
}

/// Sizes of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// Records held.
    pub records: u64,
    /// Size of the database file (its length: redb grows it ahead of use, so this is an
    /// upper bound on what the store holds).
    pub file_bytes: u64,
    /// Bytes of the sealed (encrypted) readings held: the raw data the edge keeps.
    pub sealed_bytes: u64,
    /// Records not yet in a batch.
    pub unbatched: u64,
}

/// The edge store. See the [module documentation](self).
pub struct EdgeStore {
    db: Database,
    key: DataKey,
    path: PathBuf,
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeStore")
            .field("path", &self.path)
            .finish()
    }
}

fn decode<T: BorshDeserialize>(id: u64, bytes: &[u8]) -> Result<T, EdgeStoreError> {
    codec::decode(bytes, MAX_STORED_BYTES).map_err(|e| EdgeStoreError::Corrupt {
        id,
        message: e.to_string(),
    })
}

/// redb page cache of an edge store. Bounded as the ledger store's is: redb's default of
/// 1 GiB per store would hold most of a busy edge's recent readings in memory a second time
/// (and twice over when two edges share a process, as in `trustedge simulate`).
pub const CACHE_SIZE_BYTES: usize = 256 * 1024 * 1024;

impl EdgeStore {
    /// Opens (creating if needed) the store at `path`, encrypting under `key`.
    pub fn open(path: &Path, key: DataKey) -> Result<EdgeStore, EdgeStoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| EdgeStoreError::Database(e.into()))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_SIZE_BYTES)
            .create(path)?;
        let store = EdgeStore {
            db,
            key,
            path: path.to_path_buf(),
        };
        let txn = store.begin_write()?;
        {
            txn.open_table(RECORDS)?;
            txn.open_table(META)?;
            txn.open_table(BY_TIME)?;
            txn.open_table(SEQS)?;
            txn.open_table(BATCHES)?;
            txn.open_table(COUNTERS)?;
        }
        if txn.delete_multimap_table(OLD_INDEX)? {
            tracing::info!(path = %path.display(), "edge store: dropped the unused index table");
        }
        txn.commit()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn begin_write(&self) -> Result<WriteTransaction, EdgeStoreError> {
        let mut txn = self.db.begin_write()?;
        // Acknowledged means on disk.
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }

    /// Stores a verified reading received at `now_ms`, indexed under `keys`, with a fresh
    /// random `nonce`. Refuses it as [`EdgeStoreError::Replayed`] unless its sequence number
    /// is above the last one stored for its device. Durable when it returns.
    pub fn put(
        &self,
        reading: &SignedReading,
        now_ms: u64,
        keys: IndexKeys,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<PutOutcome, EdgeStoreError> {
        let mut out = self.put_many(vec![PutItem {
            reading,
            now_ms,
            keys,
            nonce,
        }])?;
        out.pop().unwrap_or(Err(EdgeStoreError::Corrupt {
            id: u64::MAX,
            message: "put_many answered no outcome".into(),
        }))
    }

    /// Stores verified readings in order in one durable transaction (group commit: one
    /// disk sync for the lot), each as [`EdgeStore::put`] would. Each item gets its own
    /// outcome: a refusal ([`EdgeStoreError::Replayed`], [`EdgeStoreError::IndexKeys`])
    /// writes nothing of that item and does not stop the others; a later item sees the
    /// earlier ones (a device's readings in one batch must rise). The outer error means
    /// the transaction failed and nothing of the batch was stored.
    pub fn put_many(
        &self,
        items: Vec<PutItem<'_>>,
    ) -> Result<Vec<Result<PutOutcome, EdgeStoreError>>, EdgeStoreError> {
        let txn = self.begin_write()?;
        let mut out = Vec::with_capacity(items.len());
        let mut wrote = false;
        {
            let mut w = BatchWriter::open(&txn)?;
            for item in items {
                match w.put(&self.key, item) {
                    Ok(p) => {
                        wrote |= !p.duplicate;
                        out.push(Ok(p));
                    }
                    Err(e @ (EdgeStoreError::Replayed { .. } | EdgeStoreError::IndexKeys(_))) => {
                        out.push(Err(e));
                    }
                    // Anything else may have left part of the item written: abort it all.
                    Err(e) => return Err(e),
                }
            }
            if wrote {
                w.finish()?;
            }
        }
        if wrote {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(out)
    }

    /// The last sequence number stored for the device with public key bytes `device`.
    pub fn last_seq(&self, device: &[u8; 32]) -> Result<Option<u64>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SEQS)?;
        let Some(v) = t.get(device.as_slice())? else {
            return Ok(None);
        };
        Ok(Some(parse_seq(v.value())?.seq))
    }

    /// The clear metadata of record `id`.
    pub fn meta(&self, id: u64) -> Result<Option<RecordMeta>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        let Some(v) = table.get(id)? else {
            return Ok(None);
        };
        decode(id, v.value()).map(Some)
    }

    /// Record `id`, decrypted.
    pub fn get(&self, id: u64) -> Result<Option<StoredRecord>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let metas = txn.open_table(META)?;
        let records = txn.open_table(RECORDS)?;
        let (Some(m), Some(r)) = (metas.get(id)?, records.get(id)?) else {
            return Ok(None);
        };
        let meta: RecordMeta = decode(id, m.value())?;
        let plain = open_record(&self.key, id, &meta.keys.own, r.value()).map_err(|e| {
            EdgeStoreError::Corrupt {
                id,
                message: e.to_string(),
            }
        })?;
        let body: StoredBody = decode(id, &plain)?;
        Ok(Some(StoredRecord {
            id,
            meta,
            reading: body.reading,
        }))
    }

    /// Ids of the records received in `from_ms..=to_ms`, oldest first, at most `limit`
    /// (capped at [`MAX_LOOKUP`]).
    pub fn range_by_time(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<u64>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BY_TIME)?;
        let mut out = Vec::new();
        if from_ms > to_ms {
            return Ok(out);
        }
        for e in t.range((from_ms, 0)..=(to_ms, u64::MAX))? {
            if out.len() >= limit.min(MAX_LOOKUP) {
                break;
            }
            out.push(e?.0.value().1);
        }
        Ok(out)
    }

    /// Deletes the records received before `cutoff_ms` (their bodies and metadata), at most `max` per call, and the digests of anchored batches that ended
    /// before it. Returns how many records went.
    pub fn prune_before(&self, cutoff_ms: u64, max: usize) -> Result<usize, EdgeStoreError> {
        let txn = self.begin_write()?;
        let mut n = 0;
        {
            let mut by_time = txn.open_table(BY_TIME)?;
            let old: Vec<(u64, u64)> = by_time
                .range(..(cutoff_ms, 0))?
                .take(max)
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?;
            let mut records = txn.open_table(RECORDS)?;
            let mut metas = txn.open_table(META)?;
            let mut freed = 0u64;
            for (t, id) in old {
                by_time.remove((t, id))?;
                freed += records.remove(id)?.map_or(0, |v| v.value().len() as u64);
                metas.remove(id)?;
                n += 1;
            }
            if freed > 0 {
                let mut counters = txn.open_table(COUNTERS)?;
                let held = counters.get(SEALED_BYTES)?.map_or(0, |g| g.value());
                counters.insert(SEALED_BYTES, held.saturating_sub(freed))?;
            }
            // Whole anchored batches that ended before the cutoff: forget them (their
            // records are gone, so no proof can be asked for).
            let mut batches = txn.open_table(BATCHES)?;
            let mut gone = Vec::new();
            for e in batches.iter()? {
                let (k, v) = e?;
                let b: BatchMeta = decode(k.value(), v.value())?;
                if b.to_ms >= cutoff_ms {
                    break;
                }
                if matches!(b.status, BatchStatus::Anchored(_)) {
                    gone.push(k.value());
                }
            }
            for k in gone {
                batches.remove(k)?;
            }
        }
        txn.commit()?;
        Ok(n)
    }

    /// Sizes of the store.
    pub fn stats(&self) -> Result<StoreStats, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let records = txn.open_table(RECORDS)?.len()?;
        let counters = txn.open_table(COUNTERS)?;
        let next = counters.get(NEXT_ID)?.map_or(0, |g| g.value());
        let unbatched = counters.get(NEXT_UNBATCHED)?.map_or(0, |g| g.value());
        let sealed_bytes = counters.get(SEALED_BYTES)?.map_or(0, |g| g.value());
        let file_bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok(StoreStats {
            records,
            file_bytes,
            sealed_bytes,
            unbatched: next.saturating_sub(unbatched),
        })
    }

    /// The digests of records `first..first + count`, in id order. A record pruned since
    /// has no digest: `None` then.
    fn digests(&self, first: u64, count: u64) -> Result<Option<Vec<(u64, Hash)>>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let metas = txn.open_table(META)?;
        let mut out = Vec::new();
        for e in metas.range(first..first.saturating_add(count))? {
            let (k, v) = e?;
            let m: RecordMeta = decode(k.value(), v.value())?;
            out.push((k.value(), m.digest));
        }
        Ok((out.len() as u64 == count).then_some(out))
    }

    fn seal(&self, batch: &BatchMeta) -> Result<Option<SealedBatch>, EdgeStoreError> {
        let Some(digests) = self.digests(batch.first_id, batch.count)? else {
            return Ok(None);
        };
        let mut b = RecordBatch::new(&batch.record_type, batch.count.max(1))?;
        // Times do not enter the Merkle root; only the digests in id order do.
        for (_, d) in &digests {
            b.push(batch.from_ms, d.0.to_vec())?;
        }
        Ok(Some(b.seal()?))
    }

    /// Cuts the next batch: the oldest records not yet in one, at most `max_records`.
    /// `None` if there are none.
    pub fn cut_batch(
        &self,
        record_type: &str,
        max_records: u64,
    ) -> Result<Option<BatchMeta>, EdgeStoreError> {
        let (first, next) = {
            let txn = self.db.begin_read()?;
            let c = txn.open_table(COUNTERS)?;
            (
                c.get(NEXT_UNBATCHED)?.map_or(0, |g| g.value()),
                c.get(NEXT_ID)?.map_or(0, |g| g.value()),
            )
        };
        if first >= next {
            return Ok(None);
        }
        let count = (next - first).min(max_records.max(1));
        let mut b = RecordBatch::new(record_type, count)?;
        let txn = self.db.begin_read()?;
        let metas = txn.open_table(META)?;
        let mut from_ms = u64::MAX;
        let mut to_ms = 0;
        let mut n = 0;
        for e in metas.range(first..first + count)? {
            let (k, v) = e?;
            let m: RecordMeta = decode(k.value(), v.value())?;
            from_ms = from_ms.min(m.received_ms);
            to_ms = to_ms.max(m.received_ms);
            b.push(m.received_ms, m.digest.0.to_vec())?;
            n += 1;
        }
        drop(metas);
        drop(txn);
        if n != count {
            // Records pruned before they were batched (an edge offline for the whole
            // retention period): skip past them.
            let txn = self.begin_write()?;
            txn.open_table(COUNTERS)?
                .insert(NEXT_UNBATCHED, first + count)?;
            txn.commit()?;
            return Ok(None);
        }
        let sealed = b.seal()?;
        let meta = BatchMeta {
            first_id: first,
            count,
            record_type: record_type.to_string(),
            from_ms,
            to_ms,
            merkle_root: sealed.merkle_root(),
            tx_hash: None,
            status: BatchStatus::Pending,
        };
        let txn = self.begin_write()?;
        txn.open_table(BATCHES)?
            .insert(first, codec::encode(&meta).as_slice())?;
        txn.open_table(COUNTERS)?
            .insert(NEXT_UNBATCHED, first + count)?;
        txn.commit()?;
        Ok(Some(meta))
    }

    /// Batches not yet seen anchored, oldest first.
    pub fn pending_batches(&self) -> Result<Vec<BatchMeta>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BATCHES)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let b: BatchMeta = decode(k.value(), v.value())?;
            if b.status == BatchStatus::Pending {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Records the new state of a batch (by its `first_id`).
    pub fn update_batch(&self, batch: &BatchMeta) -> Result<(), EdgeStoreError> {
        let txn = self.begin_write()?;
        txn.open_table(BATCHES)?
            .insert(batch.first_id, codec::encode(batch).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The batch holding record `id`, if it was cut.
    pub fn batch_of(&self, id: u64) -> Result<Option<BatchMeta>, EdgeStoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BATCHES)?;
        let Some(e) = t.range(..=id)?.next_back() else {
            return Ok(None);
        };
        let (k, v) = e?;
        let b: BatchMeta = decode(k.value(), v.value())?;
        Ok((id < b.first_id.saturating_add(b.count)).then_some(b))
    }

    /// The proof that record `id` is in its batch, once the batch is cut. `None` if the
    /// record is unknown, pruned, or not yet in a batch.
    pub fn record_proof(&self, id: u64) -> Result<Option<EdgeRecordProof>, EdgeStoreError> {
        let Some(batch) = self.batch_of(id)? else {
            return Ok(None);
        };
        let Some(sealed) = self.seal(&batch)? else {
            return Ok(None);
        };
        if sealed.merkle_root() != batch.merkle_root {
            return Err(EdgeStoreError::Corrupt {
                id,
                message: "the batch's digests no longer hash to its Merkle root".into(),
            });
        }
        Ok(sealed
            .proof(id - batch.first_id)
            .map(|proof| EdgeRecordProof { id, batch, proof }))
    }
}

/// The tables and counters of one [`EdgeStore::put_many`] transaction, opened once for the
/// batch (opening a redb table per item and table cost more than the inserts); the
/// counters are read once and written back by [`BatchWriter::finish`].
struct BatchWriter<'t> {
    seqs: redb::Table<'t, &'static [u8], &'static [u8]>,
    counters: redb::Table<'t, &'static str, u64>,
    records: redb::Table<'t, u64, &'static [u8]>,
    by_time: redb::Table<'t, (u64, u64), ()>,
    metas: redb::Table<'t, u64, &'static [u8]>,
    next_id: u64,
    last_received_ms: Option<u64>,
    sealed_bytes: u64,
}

impl<'t> BatchWriter<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<BatchWriter<'t>, EdgeStoreError> {
        let counters = txn.open_table(COUNTERS)?;
        let next_id = counters.get(NEXT_ID)?.map_or(0, |g| g.value());
        let last_received_ms = counters.get(LAST_RECEIVED_MS)?.map(|g| g.value());
        let sealed_bytes = counters.get(SEALED_BYTES)?.map_or(0, |g| g.value());
        Ok(BatchWriter {
            seqs: txn.open_table(SEQS)?,
            counters,
            records: txn.open_table(RECORDS)?,
            by_time: txn.open_table(BY_TIME)?,
            metas: txn.open_table(META)?,
            next_id,
            last_received_ms,
            sealed_bytes,
        })
    }

    /// One item. Refusals return before writing.
    fn put(&mut self, key: &DataKey, item: PutItem<'_>) -> Result<PutOutcome, EdgeStoreError> {
        let PutItem {
            reading,
            now_ms,
            keys,
            nonce,
        } = item;
        keys.check()?;
        let bytes = reading.to_bytes();
        let digest = record_digest(&bytes);
        let device = reading.device.0;
        let last = self
            .seqs
            .get(device.as_slice())?
            .map(|g| parse_seq(g.value()))
            .transpose()?;
        if let Some(last) = last
            && reading.seq <= last.seq
        {
            if reading.seq == last.seq && digest == last.digest {
                // A retry of the last reading, whose acknowledgement was lost.
                return Ok(PutOutcome {
                    id: last.id,
                    received_ms: 0,
                    digest,
                    duplicate: true,
                });
            }
            return Err(EdgeStoreError::Replayed {
                seq: reading.seq,
                last: last.seq,
            });
        }
        let body = codec::encode(&StoredBody {
            reading: reading.clone(),
        });
        let id = self.next_id;
        let sealed = seal_record(key, nonce, id, &keys.own, &body)?;
        self.seqs.insert(
            device.as_slice(),
            encode_seq(&LastSeq {
                seq: reading.seq,
                id,
                digest,
            })
            .as_slice(),
        )?;
        let received_ms = match self.last_received_ms {
            Some(l) => now_ms.max(l.saturating_add(1)),
            None => now_ms,
        };
        self.records.insert(id, sealed.as_slice())?;
        self.by_time.insert((received_ms, id), ())?;
        let meta = RecordMeta {
            received_ms,
            digest,
            kind: reading.kind.clone(),
            keys,
        };
        self.metas.insert(id, codec::encode(&meta).as_slice())?;
        self.next_id = id + 1;
        self.last_received_ms = Some(received_ms);
        self.sealed_bytes = self.sealed_bytes.saturating_add(sealed.len() as u64);
        Ok(PutOutcome {
            id,
            received_ms,
            digest,
            duplicate: false,
        })
    }

    /// Writes the counters back.
    fn finish(mut self) -> Result<(), EdgeStoreError> {
        self.counters.insert(NEXT_ID, self.next_id)?;
        if let Some(l) = self.last_received_ms {
            self.counters.insert(LAST_RECEIVED_MS, l)?;
        }
        self.counters.insert(SEALED_BYTES, self.sealed_bytes)?;
        Ok(())
    }
}

/// Reads the data key at `path`, or creates it from `random` (owner-readable only, mode
/// 0600) if the file does not exist.
pub fn load_or_create_data_key(
    path: &Path,
    random: impl FnOnce() -> [u8; 32],
) -> Result<DataKey, EdgeStoreError> {
    use std::io::Write;
    let err = |message: String| EdgeStoreError::DataKey {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| err(e.to_string()))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| err("must hold 32 bytes in hex".into()))?;
            Ok(DataKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            let key = random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
            file.write_all(hex::encode(key).as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|e| err(e.to_string()))?;
            Ok(DataKey::from_bytes(key))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_device::DeviceIdentity;
    use trustedge_types::Keypair;

    fn store(dir: &Path) -> EdgeStore {
        EdgeStore::open(&dir.join("edge.redb"), DataKey::from_bytes([3; 32])).unwrap()
    }

    #[test]
    fn put_get_index_replay_time_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut d = DeviceIdentity::new(Keypair::from_seed([1; 32]), 0);
        let r0 = d
            .sign_reading(1, "encounters", b"plain-0".to_vec())
            .unwrap();
        let keys = IndexKeys {
            own: b"own-a".to_vec(),
            observed: vec![b"heard-x".to_vec(), b"heard-y".to_vec()],
        };
        let p0 = s.put(&r0, 1_000, keys, [0; 24]).unwrap();
        assert_eq!(p0.id, 0);
        let again = s.put(&r0, 1_001, IndexKeys::default(), [1; 24]).unwrap();
        assert!(again.duplicate && again.id == 0);
        let r1 = d
            .sign_reading(2, "encounters", b"plain-1".to_vec())
            .unwrap();
        let keys = IndexKeys {
            own: b"own-b".to_vec(),
            observed: vec![b"heard-x".to_vec()],
        };
        // Same clock reading: stored 1 ms later, so times stay strictly increasing.
        let p1 = s.put(&r1, 1_000, keys, [2; 24]).unwrap();
        assert_eq!((p1.id, p1.received_ms), (1, 1_001));
        assert_eq!(s.get(0).unwrap().unwrap().reading, r0);
        // The record's keys come back with it (the own key also binds its encryption).
        let m1 = s.get(1).unwrap().unwrap().meta.keys;
        assert_eq!(m1.own, b"own-b");
        assert_eq!(m1.observed, [b"heard-x".to_vec()]);
        assert_eq!(s.range_by_time(1_001, 5_000, 10).unwrap(), [1]);
        assert_eq!(s.last_seq(&d.public_key().0).unwrap(), Some(1));
        let mut old = DeviceIdentity::new(Keypair::from_seed([1; 32]), 0);
        let replay = old
            .sign_reading(9, "encounters", b"other".to_vec())
            .unwrap();
        assert!(matches!(
            s.put(&replay, 2_000, IndexKeys::default(), [3; 24]),
            Err(EdgeStoreError::Replayed { seq: 0, last: 1 })
        ));

        assert!(s.record_proof(0).unwrap().is_none(), "not batched yet");
        let b = s.cut_batch("device_readings", 10).unwrap().unwrap();
        assert_eq!(
            (b.first_id, b.count, b.from_ms, b.to_ms),
            (0, 2, 1_000, 1_001)
        );
        assert!(s.cut_batch("device_readings", 10).unwrap().is_none());
        let p = s.record_proof(1).unwrap().unwrap();
        assert_eq!(p.proof.record, p1.digest.0.to_vec());
        assert_eq!(p.proof.proof.tree_size, 2);
        assert_eq!(s.pending_batches().unwrap().len(), 1);

        // Retention removes bodies and metadata.
        let mut b = b;
        b.status = BatchStatus::Anchored(3);
        s.update_batch(&b).unwrap();
        let held = s.stats().unwrap().sealed_bytes;
        assert!(held > 0);
        assert_eq!(s.prune_before(1_001, 100).unwrap(), 1);
        // The pruned record's sealed bytes are no longer counted; the other's are.
        let left = s.stats().unwrap().sealed_bytes;
        assert!(left > 0 && left < held, "{held} -> {left}");
        assert!(s.get(0).unwrap().is_none());
        assert!(s.meta(0).unwrap().is_none());
        assert_eq!(s.range_by_time(0, u64::MAX, 10).unwrap(), [1]);
        assert!(s.record_proof(1).unwrap().is_none(), "batch incomplete now");
        assert_eq!(s.stats().unwrap().records, 1);
    }

    #[test]
    fn opening_drops_the_index_table_of_earlier_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_multimap_table(OLD_INDEX)
                .unwrap()
                .insert(b"\x01rpi".as_slice(), 7)
                .unwrap();
            txn.commit().unwrap();
        }
        let tables = |p: &Path| -> Vec<String> {
            let db = redb::Database::open(p).unwrap();
            let txn = db.begin_read().unwrap();
            txn.list_multimap_tables()
                .unwrap()
                .map(|h| redb::MultimapTableHandle::name(&h).to_string())
                .collect()
        };
        assert_eq!(tables(&path), ["index"]);
        let s = EdgeStore::open(&path, DataKey::from_bytes([3; 32])).unwrap();
        assert_eq!(s.stats().unwrap().records, 0);
        drop(s);
        assert!(tables(&path).is_empty());
    }

    #[test]
    fn put_many_stores_a_batch_in_order_with_per_item_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut a = DeviceIdentity::new(Keypair::from_seed([1; 32]), 0);
        let mut b = DeviceIdentity::new(Keypair::from_seed([2; 32]), 0);
        let a0 = a.sign_reading(1, "encounters", b"a0".to_vec()).unwrap();
        let a1 = a.sign_reading(2, "encounters", b"a1".to_vec()).unwrap();
        let b0 = b.sign_reading(3, "encounters", b"b0".to_vec()).unwrap();
        let own = |k: &[u8]| IndexKeys {
            own: k.to_vec(),
            observed: vec![b"heard".to_vec()],
        };
        let bad_keys = IndexKeys {
            own: vec![0; 10_000],
            observed: vec![],
        };
        let item = |r, k, n| PutItem {
            reading: r,
            now_ms: 5_000,
            keys: k,
            nonce: [n; 24],
        };
        let out = s
            .put_many(vec![
                item(&a0, own(b"a0"), 0),
                item(&b0, bad_keys, 1), // refused: its index keys
                item(&a1, own(b"a1"), 2),
                item(&a0, own(b"a0"), 3), // below a1 now: replayed
                item(&b0, own(b"b0"), 4),
                item(&b0, own(b"b0"), 5), // the device's last again: a duplicate
            ])
            .unwrap();
        assert_eq!(out.len(), 6);
        let ids: Vec<_> = out
            .iter()
            .map(|o| o.as_ref().ok().map(|p| (p.id, p.duplicate)))
            .collect();
        assert_eq!(
            ids,
            [
                Some((0, false)),
                None,
                Some((1, false)),
                None,
                Some((2, false)),
                Some((2, true))
            ]
        );
        assert!(matches!(out[1], Err(EdgeStoreError::IndexKeys(_))));
        assert!(matches!(
            out[3],
            Err(EdgeStoreError::Replayed { seq: 0, last: 1 })
        ));
        // Committed together, in order, with strictly increasing receive times.
        assert_eq!(s.get(1).unwrap().unwrap().reading, a1);
        assert_eq!(s.range_by_time(5_000, 5_002, 10).unwrap(), [0, 1, 2]);
        assert_eq!(s.get(2).unwrap().unwrap().meta.keys, own(b"b0"));
        // A batch of refusals only writes nothing.
        let held = s.stats().unwrap().sealed_bytes;
        let out = s.put_many(vec![item(&a0, own(b"a0"), 6)]).unwrap();
        assert!(matches!(out[0], Err(EdgeStoreError::Replayed { .. })));
        assert_eq!(s.stats().unwrap().records, 3);
        assert_eq!(s.stats().unwrap().sealed_bytes, held);
    }

    #[test]
    fn data_key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/edge.key");
        let k = load_or_create_data_key(&path, || [9; 32]).unwrap();
        let again = load_or_create_data_key(&path, || [1; 32]).unwrap();
        assert_eq!(k, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "zz").unwrap();
        assert!(load_or_create_data_key(&path, || [1; 32]).is_err());
    }
}
