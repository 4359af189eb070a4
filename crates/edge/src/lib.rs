//! The edge level of TrustEdge: what an edge node (gateway, access point) keeps and anchors.
//!
//! Records stay at the edge. The edge collects their canonical bytes in a [`RecordBatch`],
//! seals it into a [`SealedBatch`] (a Merkle tree over the records' leaves), and anchors the
//! root on the ledger with the `anchor.anchor_batch` call it builds. Afterwards it can hand
//! anyone a [`RecordProof`] for one record, which they check against the anchor the ledger
//! holds — without the ledger ever seeing the record.
//!
//! The [`light`] module is the edge's partial ledger: a light client that keeps verified
//! block headers only and checks state and transaction proofs from full nodes against them.
//!
//! The [`store`] module is the format an edge node keeps records in: encrypted at rest
//! under a data key, with the digest it anchors.
//!
//! The [`exposure`] module is the edge's exposure matching: encounter uploads and released
//! diagnosis keys in, unlinkable per-RPI exposure notices out.
//!
//! The [`aerosol`] module is the edge's aerosol surveillance: rooms' air-quality readings
//! in, per-window risk and detector alarms, `aerosol.publish_alerts` alerts out under
//! per-day venue pseudonyms; and the device-side presence match.
//!
//! Pure: record times come from the records, not from a clock; nonces from the caller.

pub mod aerosol;
pub mod exposure;
pub mod light;
pub mod store;

use serde::{Deserialize, Serialize};
use trustedge_contracts::anchor::{MAX_BATCH_RECORDS, MAX_RECORD_TYPE_CHARS, anchor_id};
use trustedge_contracts::{
    AnchorCall, AnchorError, AnchorRecord, record_leaf, verify_record_anchored,
};
use trustedge_types::codec::hex_bytes;
use trustedge_types::{Address, Hash, MerkleProof, MerkleTree, Payload};

/// Largest single record.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Most record bytes one batch holds in memory.
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// The one error enum of this crate.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EdgeError {
    /// The record type is not 1..=32 characters of `[a-z0-9_]`.
    #[error("record type {0:?} must be 1..=32 characters of [a-z0-9_]")]
    InvalidRecordType(String),
    /// The batch size bound is not in 1..=the anchor contract's maximum.
    #[error("max_records must be in 1..={MAX_BATCH_RECORDS}, got {0}")]
    InvalidMaxRecords(u64),
    /// A record is larger than [`MAX_RECORD_BYTES`].
    #[error("record is {size_bytes} bytes, over the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge {
        /// Its size.
        size_bytes: usize,
    },
    /// The batch holds as many records or bytes as it may; seal it and start another.
    #[error("batch is full")]
    Full,
    /// An empty batch cannot be sealed: the ledger anchors 1 or more records.
    #[error("batch is empty")]
    Empty,
    /// An index key bound into a sealed record is longer than
    /// [`store::MAX_INDEX_KEY_BYTES`].
    #[error(
        "index key is {size_bytes} bytes, over the limit of {}",
        store::MAX_INDEX_KEY_BYTES
    )]
    IndexKeyTooLong {
        /// Its size.
        size_bytes: usize,
    },
    /// A record could not be encrypted (it is too large for the cipher).
    #[error("record could not be encrypted")]
    Seal,
    /// A sealed record does not decrypt under this key, record id and index key: it was
    /// altered, moved, or sealed under another key.
    #[error("record does not decrypt: altered, moved or under another key")]
    Open,
}

/// Records being collected for one anchor.
#[derive(Clone, Debug)]
pub struct RecordBatch {
    record_type: String,
    max_records: u64,
    records: Vec<Vec<u8>>,
    size_bytes: usize,
    from_ms: u64,
    to_ms: u64,
}

impl RecordBatch {
    /// An empty batch of `record_type` that holds at most `max_records` records.
    pub fn new(record_type: &str, max_records: u64) -> Result<RecordBatch, EdgeError> {
        let ok = !record_type.is_empty()
            && record_type.len() <= MAX_RECORD_TYPE_CHARS
            && record_type
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !ok {
            return Err(EdgeError::InvalidRecordType(record_type.to_string()));
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&max_records) {
            return Err(EdgeError::InvalidMaxRecords(max_records));
        }
        Ok(RecordBatch {
            record_type: record_type.to_string(),
            max_records,
            records: Vec::new(),
            size_bytes: 0,
            from_ms: u64::MAX,
            to_ms: 0,
        })
    }

    /// Adds a record taken at `time_ms`; returns its index in the batch. Records may arrive
    /// out of time order: the batch's range covers the earliest to the latest.
    pub fn push(&mut self, time_ms: u64, record: Vec<u8>) -> Result<u64, EdgeError> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(EdgeError::RecordTooLarge {
                size_bytes: record.len(),
            });
        }
        let index = self.records.len() as u64;
        if index >= self.max_records || self.size_bytes + record.len() > MAX_BATCH_BYTES {
            return Err(EdgeError::Full);
        }
        self.size_bytes += record.len();
        self.from_ms = self.from_ms.min(time_ms);
        self.to_ms = self.to_ms.max(time_ms);
        self.records.push(record);
        Ok(index)
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.records.len() as u64
    }

    /// Whether the batch has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether another record would be refused as [`EdgeError::Full`] by count.
    pub fn is_full(&self) -> bool {
        self.len() >= self.max_records
    }

    /// Builds the Merkle tree and closes the batch.
    pub fn seal(self) -> Result<SealedBatch, EdgeError> {
        if self.records.is_empty() {
            return Err(EdgeError::Empty);
        }
        let tree = MerkleTree::from_leaves(self.records.iter().map(|r| record_leaf(r).0));
        Ok(SealedBatch {
            record_type: self.record_type,
            records: self.records,
            tree,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        })
    }
}

/// A closed batch: its records, their Merkle tree and time range.
#[derive(Clone, Debug)]
pub struct SealedBatch {
    record_type: String,
    records: Vec<Vec<u8>>,
    tree: MerkleTree,
    from_ms: u64,
    to_ms: u64,
}

impl SealedBatch {
    /// The Merkle root the ledger anchors.
    pub fn merkle_root(&self) -> Hash {
        self.tree.root()
    }

    /// Number of records.
    pub fn count(&self) -> u64 {
        self.records.len() as u64
    }

    /// Record type.
    pub fn record_type(&self) -> &str {
        &self.record_type
    }

    /// Time of the earliest record, Unix milliseconds.
    pub fn from_ms(&self) -> u64 {
        self.from_ms
    }

    /// Time of the latest record, Unix milliseconds.
    pub fn to_ms(&self) -> u64 {
        self.to_ms
    }

    /// The `anchor_batch` call for this batch.
    pub fn anchor_call(&self) -> AnchorCall {
        AnchorCall::AnchorBatch {
            record_type: self.record_type.clone(),
            merkle_root: self.merkle_root(),
            count: self.count(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }

    /// The transaction payload anchoring this batch, for the edge's member key to sign.
    pub fn payload(&self) -> Payload {
        Payload::new(trustedge_contracts::anchor::NAME, &self.anchor_call())
    }

    /// The id the ledger will give this batch when `edge` (the signer's member address)
    /// anchors it.
    pub fn anchor_id(&self, edge: &Address) -> Hash {
        anchor_id(
            edge,
            &self.record_type,
            &self.merkle_root(),
            self.count(),
            self.from_ms,
            self.to_ms,
        )
    }

    /// Record `index`.
    pub fn record(&self, index: u64) -> Option<&[u8]> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.records.get(i))
            .map(Vec::as_slice)
    }

    /// The proof that record `index` is in this batch.
    pub fn proof(&self, index: u64) -> Option<RecordProof> {
        Some(RecordProof {
            record: self.record(index)?.to_vec(),
            proof: self.tree.proof(index)?,
        })
    }
}

/// A record with its inclusion proof, as the edge hands it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordProof {
    /// The record's canonical bytes.
    #[serde(with = "hex_bytes")]
    pub record: Vec<u8>,
    /// Its inclusion proof in the batch's tree.
    pub proof: MerkleProof,
}

impl RecordProof {
    /// Checks the proof against the anchor the ledger holds.
    pub fn verify(&self, anchor: &AnchorRecord) -> Result<(), AnchorError> {
        verify_record_anchored(&self.record, &self.proof, anchor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rules() {
        assert!(RecordBatch::new("Bad", 10).is_err());
        assert!(RecordBatch::new("ok", 0).is_err());
        assert!(RecordBatch::new("ok", MAX_BATCH_RECORDS + 1).is_err());
        let mut b = RecordBatch::new("ok", 2).unwrap();
        assert_eq!(b.clone().seal().unwrap_err(), EdgeError::Empty);
        assert!(matches!(
            b.push(1, vec![0; MAX_RECORD_BYTES + 1]),
            Err(EdgeError::RecordTooLarge { .. })
        ));
        assert_eq!(b.push(50, b"a".to_vec()), Ok(0));
        assert_eq!(b.push(20, b"b".to_vec()), Ok(1));
        assert!(b.is_full());
        assert_eq!(b.push(30, b"c".to_vec()), Err(EdgeError::Full));
        let s = b.seal().unwrap();
        assert_eq!((s.from_ms(), s.to_ms(), s.count()), (20, 50, 2));
        assert_eq!(s.record(1), Some(b"b".as_slice()));
        assert!(s.proof(2).is_none());
    }
}
