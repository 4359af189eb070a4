//! Table definitions and the byte encodings of composite keys.
//!
//! Composite keys are fixed-width big-endian byte strings, so that redb's lexicographic order
//! of `&[u8]` keys is the numeric order of their parts and a range scan over a prefix visits
//! one height, one transaction or one index selector in order. The layout is described in the
//! crate documentation.

use redb::TableDefinition;
use sha2::{Digest, Sha256};
use trustedge_types::Height;

use crate::StoreError;

/// Version of the table layout written by this build. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Store-wide values: schema version, chain id, genesis document, latest height.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Height → canonical header bytes.
pub const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
/// Height → canonical block bytes.
pub const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Block hash (32 bytes) → height.
pub const BLOCK_HASHES: TableDefinition<&[u8], u64> = TableDefinition::new("block_hashes");
/// Height → canonical commit certificate bytes.
pub const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
/// Transaction hash (32 bytes) → [`tx_pos`] (height ‖ index, 12 bytes).
pub const TX_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_index");
/// [`tx_pos`] → canonical `TxResult` bytes.
pub const TX_RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_results");
/// Raw state key → value, at the latest height only.
pub const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// [`node_key`] → Borsh of the JMT `Node`.
pub const JMT_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// [`value_key`] (key hash ‖ version) → [`encode_versioned`] value or tombstone.
pub const JMT_VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_values");
/// Stale-since version (8 bytes) ‖ [`node_key`] → (). Kept for future pruning.
pub const JMT_STALE: TableDefinition<&[u8], ()> = TableDefinition::new("jmt_stale");
/// [`event_pos`] → Borsh of `(tx hash, Event)`.
pub const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
/// Selector (32 bytes) ‖ [`event_pos`] → (). See [`selector`].
pub const EVENT_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("event_index");

/// Keys of [`META`].
pub mod meta {
    /// Table layout version, `u32` big-endian.
    pub const SCHEMA: &str = "schema_version";
    /// The chain id, UTF-8.
    pub const CHAIN_ID: &str = "chain_id";
    /// The genesis document as given to `init_genesis`.
    pub const GENESIS_DOC: &str = "genesis_doc";
    /// Latest committed height, `u64` big-endian. Present exactly when genesis was written.
    pub const LATEST_HEIGHT: &str = "latest_height";
}

/// Length of a [`tx_pos`].
pub const TX_POS_LEN: usize = 12;
/// Length of an [`event_pos`].
pub const EVENT_POS_LEN: usize = 16;
/// Length of a [`selector`].
pub const SELECTOR_LEN: usize = 32;

/// Height ‖ transaction index, big-endian.
pub fn tx_pos(height: Height, index: u32) -> [u8; TX_POS_LEN] {
    let mut k = [0u8; TX_POS_LEN];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Inverse of [`tx_pos`].
pub fn decode_tx_pos(bytes: &[u8]) -> Result<(Height, u32), StoreError> {
    let arr: [u8; TX_POS_LEN] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("tx location", format!("{} bytes", bytes.len())))?;
    let mut h = [0u8; 8];
    let mut i = [0u8; 4];
    h.copy_from_slice(&arr[..8]);
    i.copy_from_slice(&arr[8..]);
    Ok((u64::from_be_bytes(h), u32::from_be_bytes(i)))
}

/// The position of an event: (height, transaction index, event index) packed into 128 bits,
/// so that the successor of a position is `+ 1`.
pub fn pos_to_u128(height: Height, tx: u32, ev: u32) -> u128 {
    (u128::from(height) << 64) | (u128::from(tx) << 32) | u128::from(ev)
}

/// Inverse of [`pos_to_u128`].
pub fn pos_from_u128(p: u128) -> (Height, u32, u32) {
    ((p >> 64) as u64, (p >> 32) as u32, p as u32)
}

/// Height ‖ transaction index ‖ event index, big-endian.
pub fn event_pos(p: u128) -> [u8; EVENT_POS_LEN] {
    p.to_be_bytes()
}

/// Inverse of [`event_pos`], from the last 16 bytes of `bytes`.
pub fn decode_event_pos(bytes: &[u8]) -> Result<u128, StoreError> {
    let tail = bytes
        .len()
        .checked_sub(EVENT_POS_LEN)
        .map(|start| &bytes[start..])
        .ok_or_else(|| StoreError::corrupt("event position", format!("{} bytes", bytes.len())))?;
    let arr: [u8; EVENT_POS_LEN] = tail
        .try_into()
        .map_err(|_| StoreError::corrupt("event position", "wrong length"))?;
    Ok(u128::from_be_bytes(arr))
}

/// What an event index entry selects on. Each is hashed into a fixed 32-byte prefix, so
/// that index keys stay short however long modules, kinds and attribute values are, and no
/// escaping is needed: the tags and length prefixes make distinct selectors hash differently.
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    /// Events of a module.
    Module(&'a str),
    /// Events of a kind (whatever the module).
    Kind(&'a str),
    /// Events of a kind of a module.
    ModuleKind(&'a str, &'a str),
    /// Events with an attribute `key = value`.
    Attribute(&'a str, &'a str),
}

/// The 32-byte prefix of a selector's index entries.
pub fn selector(s: Selector<'_>) -> [u8; SELECTOR_LEN] {
    let mut h = Sha256::new();
    h.update(b"trustedge/store/event-index/v1");
    let mut part = |tag: u8, parts: &[&str]| {
        h.update([tag]);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
    };
    match s {
        Selector::Module(m) => part(1, &[m]),
        Selector::Kind(k) => part(2, &[k]),
        Selector::ModuleKind(m, k) => part(3, &[m, k]),
        Selector::Attribute(k, v) => part(4, &[k, v]),
    }
    h.finalize().into()
}

/// Selector ‖ position.
pub fn index_key(sel: &[u8; SELECTOR_LEN], pos: u128) -> [u8; SELECTOR_LEN + EVENT_POS_LEN] {
    let mut k = [0u8; SELECTOR_LEN + EVENT_POS_LEN];
    k[..SELECTOR_LEN].copy_from_slice(sel);
    k[SELECTOR_LEN..].copy_from_slice(&event_pos(pos));
    k
}

/// Key of a JMT node: version (big-endian) ‖ Borsh of its nibble path. Grouping by version
/// keeps one block's nodes together and makes pruning by version a range delete.
pub fn node_key(key: &jmt::storage::NodeKey) -> Vec<u8> {
    // Borsh into a Vec cannot fail; `encode` documents why.
    let path = trustedge_types::encode(key.nibble_path());
    let mut k = Vec::with_capacity(8 + path.len());
    k.extend_from_slice(&key.version().to_be_bytes());
    k.extend_from_slice(&path);
    k
}

/// Key of a versioned JMT value: key hash ‖ version (big-endian), so the newest version at
/// or below `v` is the last entry of the range `kh ‖ 0 ..= kh ‖ v`.
pub fn value_key(key_hash: &jmt::KeyHash, version: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&key_hash.0);
    k[32..].copy_from_slice(&version.to_be_bytes());
    k
}

/// A versioned value: `0x01 ‖ bytes`, or `0x00` for a deletion.
pub fn encode_versioned(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
        None => vec![0],
    }
}

/// Inverse of [`encode_versioned`].
pub fn decode_versioned(bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match bytes.split_first() {
        Some((1, rest)) => Ok(Some(rest.to_vec())),
        Some((0, [])) => Ok(None),
        _ => Err(StoreError::corrupt("jmt value", "bad tag")),
    }
}

/// Decodes a big-endian `u64`.
pub fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::corrupt(what, format!("{} bytes, expected 8", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_numerically_and_round_trip() {
        let a = pos_to_u128(1, u32::MAX, u32::MAX);
        let b = pos_to_u128(2, 0, 0);
        assert_eq!(a + 1, b);
        assert!(event_pos(a) < event_pos(b));
        assert_eq!(pos_from_u128(a), (1, u32::MAX, u32::MAX));
        assert_eq!(decode_event_pos(&index_key(&[7; 32], b)).unwrap(), b);
        assert!(decode_event_pos(&[1, 2, 3]).is_err());
        assert_eq!(decode_tx_pos(&tx_pos(9, 4)).unwrap(), (9, 4));
        assert!(tx_pos(1, 9) < tx_pos(2, 0));
        assert!(decode_tx_pos(&[0; 11]).is_err());
    }

    #[test]
    fn selectors_do_not_collide_across_kinds_or_boundaries() {
        let all = [
            selector(Selector::Module("ab")),
            selector(Selector::Kind("ab")),
            selector(Selector::ModuleKind("a", "b")),
            selector(Selector::ModuleKind("ab", "")),
            selector(Selector::Attribute("a", "b")),
            selector(Selector::Attribute("ab", "")),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn versioned_values_round_trip_and_reject_garbage() {
        assert_eq!(decode_versioned(&encode_versioned(None)).unwrap(), None);
        assert_eq!(
            decode_versioned(&encode_versioned(Some(b""))).unwrap(),
            Some(vec![])
        );
        assert_eq!(
            decode_versioned(&encode_versioned(Some(b"xy"))).unwrap(),
            Some(b"xy".to_vec())
        );
        assert!(decode_versioned(&[]).is_err());
        assert!(decode_versioned(&[0, 1]).is_err());
        assert!(decode_versioned(&[2]).is_err());
    }
}
