//! Undecided proposals on disk, so that a restarted validator hands consensus back the values
//! it had seen (Malachite asks at every `StartedRound`) and can still turn a decided block hash
//! into its block.
//!
//! Two redb tables, both keyed so that a height's entries are contiguous (big-endian
//! heights first):
//! - `proposals`: `height ‖ round ‖ block_hash` → [`StoredProposal`] (who proposed it,
//!   its POL round, and whether the ledger found it valid);
//! - `blocks`: `height ‖ block_hash` → [`StoredBlock`] (the signed proposal, to restream it,
//!   or the bare bytes of a block that came through value sync).
//!
//! *Invariant:* a block is written here before its hash is handed to consensus, so every
//! value in Malachite's write-ahead log has its block on disk. Entries of a height are
//! deleted once the height is committed ([`ProposalStore::prune_through`]). Every write is
//! durable when it returns.

use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use trustedge_types::{Address, Hash, Height, decode, encode};

use crate::error::ConsensusError;
use crate::parts::SignedProposal;

const PROPOSALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("proposals");
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");

/// Largest stored record (a maximal block and its framing).
const MAX_RECORD_BYTES: usize = trustedge_types::block::MAX_BLOCK_BYTES + 64 * 1024;

/// A proposal seen (or made) at a height and round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StoredProposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: u32,
    /// The block's hash.
    pub block_hash: Hash,
    /// Who proposed it.
    pub proposer: Address,
    /// The proposer's POL round.
    pub valid_round: Option<u32>,
    /// Whether the ledger found the block valid.
    pub valid: bool,
}

/// A block held for an undecided height.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StoredBlock {
    /// Proposed through consensus: the signed parts, replayable as they were.
    Proposed(SignedProposal),
    /// Received through value sync: the block's canonical bytes.
    Synced(Vec<u8>),
}

impl StoredBlock {
    /// The block's canonical bytes.
    pub fn block_bytes(&self) -> &[u8] {
        match self {
            StoredBlock::Proposed(sp) => &sp.block_bytes,
            StoredBlock::Synced(b) => b,
        }
    }
}

fn proposal_key(height: Height, round: u32, hash: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(44);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&round.to_be_bytes());
    k.extend_from_slice(&hash.0);
    k
}

fn round_prefix(height: Height, round: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&round.to_be_bytes());
    k
}

fn block_key(height: Height, hash: &Hash) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(&hash.0);
    k
}

/// The first key of a height above `height` (the end of a range covering `..=height`).
fn after_height(height: Height) -> Vec<u8> {
    height.saturating_add(1).to_be_bytes().to_vec()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ConsensusError {
    ConsensusError::Store(format!("corrupt {what} record: {e}"))
}

/// The store of undecided proposals (see the module documentation).
pub struct ProposalStore {
    db: Database,
}

impl ProposalStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<ProposalStore, ConsensusError> {
        let db = Database::create(path)?;
        let store = ProposalStore { db };
        let txn = store.begin_write()?;
        txn.open_table(PROPOSALS)?;
        txn.open_table(BLOCKS)?;
        txn.commit()?;
        Ok(store)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, ConsensusError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }

    /// Records `proposal` and, if given, its block, in one durable transaction.
    pub fn put(
        &self,
        proposal: &StoredProposal,
        block: Option<&StoredBlock>,
    ) -> Result<(), ConsensusError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(PROPOSALS)?;
            let k = proposal_key(proposal.height, proposal.round, &proposal.block_hash);
            t.insert(k.as_slice(), encode(proposal).as_slice())?;
        }
        if let Some(b) = block {
            let mut t = txn.open_table(BLOCKS)?;
            let k = block_key(proposal.height, &proposal.block_hash);
            if t.get(k.as_slice())?.is_none() {
                t.insert(k.as_slice(), encode(b).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The proposals recorded for `(height, round)`, in block-hash order.
    pub fn proposals(
        &self,
        height: Height,
        round: u32,
    ) -> Result<Vec<StoredProposal>, ConsensusError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PROPOSALS)?;
        let from = round_prefix(height, round);
        let to = round_prefix(height, round.saturating_add(1));
        let mut out = Vec::new();
        for entry in t.range(from.as_slice()..to.as_slice())? {
            let (_, v) = entry?;
            out.push(decode(v.value(), MAX_RECORD_BYTES).map_err(|e| corrupt("proposal", e))?);
        }
        Ok(out)
    }

    /// The proposal recorded for `(height, round, block_hash)`, if any.
    pub fn proposal(
        &self,
        height: Height,
        round: u32,
        block_hash: &Hash,
    ) -> Result<Option<StoredProposal>, ConsensusError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PROPOSALS)?;
        let k = proposal_key(height, round, block_hash);
        t.get(k.as_slice())?
            .map(|v| decode(v.value(), MAX_RECORD_BYTES).map_err(|e| corrupt("proposal", e)))
            .transpose()
    }

    /// The block with this hash held for `height`, if any.
    pub fn block(
        &self,
        height: Height,
        hash: &Hash,
    ) -> Result<Option<StoredBlock>, ConsensusError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BLOCKS)?;
        let k = block_key(height, hash);
        t.get(k.as_slice())?
            .map(|v| decode(v.value(), MAX_RECORD_BYTES).map_err(|e| corrupt("block", e)))
            .transpose()
    }

    /// Deletes everything recorded for heights up to `height` (they are committed).
    pub fn prune_through(&self, height: Height) -> Result<(), ConsensusError> {
        let end = after_height(height);
        let txn = self.begin_write()?;
        for table in [PROPOSALS, BLOCKS] {
            let mut t = txn.open_table(table)?;
            t.retain_in(..end.as_slice(), |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(height: Height, round: u32, h: u8) -> StoredProposal {
        StoredProposal {
            height,
            round,
            block_hash: Hash([h; 32]),
            proposer: Address([1; 20]),
            valid_round: None,
            valid: true,
        }
    }

    #[test]
    fn survives_reopen_and_prunes_by_height() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        {
            let s = ProposalStore::open(&path).unwrap();
            s.put(&p(5, 0, 1), Some(&StoredBlock::Synced(vec![1, 2])))
                .unwrap();
            s.put(&p(5, 1, 2), None).unwrap();
            s.put(&p(5, 1, 3), None).unwrap();
            s.put(&p(6, 0, 4), None).unwrap();
        }
        let s = ProposalStore::open(&path).unwrap();
        assert_eq!(s.proposals(5, 1).unwrap().len(), 2);
        assert_eq!(s.proposals(5, 0).unwrap(), vec![p(5, 0, 1)]);
        assert_eq!(
            s.block(5, &Hash([1; 32])).unwrap(),
            Some(StoredBlock::Synced(vec![1, 2]))
        );
        assert_eq!(s.proposal(5, 1, &Hash([3; 32])).unwrap(), Some(p(5, 1, 3)));
        s.prune_through(5).unwrap();
        assert!(s.proposals(5, 0).unwrap().is_empty());
        assert!(s.block(5, &Hash([1; 32])).unwrap().is_none());
        assert_eq!(s.proposals(6, 0).unwrap().len(), 1);
    }
}
