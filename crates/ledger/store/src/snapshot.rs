//! A consistent read view of the latest committed state.

use std::fmt;

use redb::{ReadOnlyTable, ReadTransaction};
use trustedge_execution::state::{MAX_SCAN_LIMIT, is_empty_range};
use trustedge_execution::{Entries, StateError, StateRead};
use trustedge_types::Height;

use crate::StoreError;
use crate::tables::STATE;

/// The latest-state table as of one committed height, held open by a redb read transaction.
///
/// Commits that happen after the snapshot was taken are not visible through it, so a block
/// can be executed against a stable parent while the store keeps committing. Hold it only as
/// long as needed: pages it can see are not reused while it lives.
pub struct Snapshot {
    height: Height,
    // Declared before the transaction so that it is dropped first.
    state: ReadOnlyTable<&'static [u8], &'static [u8]>,
    _txn: ReadTransaction,
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction, height: Height) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            height,
            state: txn.open_table(STATE)?,
            _txn: txn,
        })
    }

    /// The committed height whose state this is (0 = genesis state).
    pub fn height(&self) -> Height {
        self.height
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn state_err(e: impl fmt::Display) -> StateError {
    StateError(format!("store: {e}"))
}

impl StateRead for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self
            .state
            .get(key)
            .map_err(state_err)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StateError> {
        // An inverted range would make the B-tree range call fail or panic; the contract says
        // it selects nothing.
        if is_empty_range(lower, upper) {
            return Ok(Vec::new());
        }
        let limit = limit.min(MAX_SCAN_LIMIT);
        let range = if upper.is_empty() {
            self.state.range::<&[u8]>(lower..)
        } else {
            self.state.range::<&[u8]>(lower..upper)
        }
        .map_err(state_err)?;
        let pick = |entry: Result<_, redb::StorageError>| {
            let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
                entry.map_err(state_err)?;
            Ok((k.value().to_vec(), v.value().to_vec()))
        };
        if reverse {
            range.rev().take(limit).map(pick).collect()
        } else {
            range.take(limit).map(pick).collect()
        }
    }
}
