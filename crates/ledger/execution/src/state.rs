//! Reading state, and the overlays that hold a block's and a transaction's pending writes.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Most entries one scan returns.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// A failure of the state backend. Not a transaction failure: execution stops and the block
/// is neither proposed nor committed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("state backend: {0}")]
pub struct StateError(pub String);

/// Key/value pairs returned by a scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Read access to the key/value state at some committed height, plus pending writes.
pub trait StateRead {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Entries with `lower <= key < upper` in key order (descending if `reverse`), at most
    /// `limit` of them. An empty `upper` means no upper bound.
    fn scan(
        &self,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StateError>;
}

/// The smallest key greater than every key with this prefix (empty if none exists).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

/// Whether `lower <= key < upper` selects nothing (an empty `upper` is unbounded).
/// Backends must answer such scans with nothing rather than fail: ranges come from callers.
pub fn is_empty_range(lower: &[u8], upper: &[u8]) -> bool {
    !upper.is_empty() && lower >= upper
}

/// Pending writes: `Some(value)` sets, `None` deletes.
pub type StateWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes layered over a base state. Reads see the writes first.
pub struct WriteOverlay<'a> {
    base: &'a dyn StateRead,
    writes: StateWrites,
}

impl<'a> WriteOverlay<'a> {
    /// An empty overlay over `base`.
    pub fn new(base: &'a dyn StateRead) -> Self {
        WriteOverlay {
            base,
            writes: BTreeMap::new(),
        }
    }

    /// Sets a key.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Moves all writes of `other` into this overlay (later writes win).
    pub fn absorb(&mut self, other: StateWrites) {
        self.writes.extend(other);
    }

    /// The pending writes.
    pub fn writes(&self) -> &StateWrites {
        &self.writes
    }

    /// Takes the pending writes.
    pub fn into_writes(self) -> StateWrites {
        self.writes
    }
}

impl StateRead for WriteOverlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(
        &self,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StateError> {
        let limit = limit.min(MAX_SCAN_LIMIT);
        if is_empty_range(lower, upper) {
            return Ok(Vec::new());
        }
        let upper_bound = if upper.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(upper)
        };
        let range = (Bound::Included(lower), upper_bound);
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = if reverse {
            self.writes.range::<[u8], _>(range).rev().collect()
        } else {
            self.writes.range::<[u8], _>(range).collect()
        };
        // Deleted keys may hide base entries, so ask the base for enough to fill `limit`.
        let deletions = pending.iter().filter(|(_, v)| v.is_none()).count();
        let base = self.base.scan(lower, upper, reverse, limit + deletions)?;
        let mut out = Vec::with_capacity(limit);
        let (mut i, mut j) = (0, 0);
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        while out.len() < limit && (i < pending.len() || j < base.len()) {
            let take_pending = match (pending.get(i), base.get(j)) {
                (Some((pk, _)), Some((bk, _))) => {
                    if pk.as_slice() == bk.as_slice() {
                        j += 1; // the pending write shadows the base entry
                        true
                    } else {
                        before(pk, bk)
                    }
                }
                (Some(_), None) => true,
                _ => false,
            };
            if take_pending {
                let (k, v) = pending[i];
                i += 1;
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
            } else {
                out.push(base[j].clone());
                j += 1;
            }
        }
        Ok(out)
    }
}

/// A state held in memory. Used by tests, simulations and genesis building.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct MemState {
    /// The entries.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemState {
    /// Applies writes.
    pub fn apply(&mut self, writes: &StateWrites) {
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.map.insert(k.clone(), v.clone());
                }
                None => {
                    self.map.remove(k);
                }
            }
        }
    }
}

impl StateRead for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(
        &self,
        lower: &[u8],
        upper: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, StateError> {
        if is_empty_range(lower, upper) {
            return Ok(Vec::new());
        }
        let upper_bound = if upper.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(upper)
        };
        let it = self
            .map
            .range::<[u8], _>((Bound::Included(lower), upper_bound));
        let limit = limit.min(MAX_SCAN_LIMIT);
        let pick = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            it.rev().take(limit).map(pick).collect()
        } else {
            it.take(limit).map(pick).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An overlay over a base must read exactly like the base with the writes applied.
        #[test]
        fn overlay_scan_equals_applied_state(
            base in proptest::collection::btree_map(proptest::collection::vec(0u8..4, 1..3), proptest::collection::vec(any::<u8>(), 1..3), 0..20),
            writes in proptest::collection::btree_map(proptest::collection::vec(0u8..4, 1..3), proptest::option::of(proptest::collection::vec(any::<u8>(), 1..3)), 0..20),
            lower in proptest::collection::vec(0u8..4, 0..2),
            upper in proptest::collection::vec(0u8..5, 0..2),
            reverse in any::<bool>(),
            limit in 0usize..30,
        ) {
            let base = MemState { map: base };
            let mut overlay = WriteOverlay::new(&base);
            overlay.absorb(writes.clone());
            let mut applied = base.clone();
            applied.apply(&writes);
            prop_assert_eq!(
                overlay.scan(&lower, &upper, reverse, limit).unwrap(),
                applied.scan(&lower, &upper, reverse, limit).unwrap()
            );
            for k in writes.keys().chain(base.map.keys()) {
                prop_assert_eq!(overlay.get(k).unwrap(), applied.get(k).unwrap());
            }
        }
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert_eq!(prefix_end(&[0xff, 0xff]), Vec::<u8>::new());
    }
}
