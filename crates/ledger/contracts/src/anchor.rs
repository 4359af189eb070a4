//! The `anchor` module: edge nodes commit to the batches of records they hold.
//!
//! Records (readings, contact events, cold-chain logs, …) stay at the edge; the ledger holds
//! only the Merkle root of each batch, its size and its time range. Anyone holding a record
//! and its inclusion proof can later show, against the ledger, that the record existed
//! unchanged when the batch was anchored ([`verify_record_anchored`]).
//!
//! Leaves are [`record_leaf`]s: a record's leaf data is the domain-tagged hash of its
//! canonical bytes, so that an anchored record can never be confused with any other hashed
//! value of the ledger (a transaction id, a result) that happens to share its bytes.
//!
//! # What is stored
//! - `batch/<id: 32 bytes>` → [`AnchorRecord`].
//! - `root/<merkle root: 32 bytes>` → the batch id: a root is anchored once, anywhere.
//! - `range/<edge: 20 bytes>/<record type>/<from_ms: 8 bytes big-endian>` → [`AnchorRange`]:
//!   the time ranges of an edge's batches of one record type, which never overlap, in
//!   time order. Record types are `[a-z0-9_]`, so `/` ends them unambiguously.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::state::prefix_end;
use trustedge_execution::{
    Access, Module, OrgKind, Principal, QueryError, Role, StateError, StateRead, TxContext, TxError,
};
use trustedge_types::hash::domain;
use trustedge_types::{Address, Hash, Height, MerkleProof, codec};

use crate::error::AnchorError;
use crate::util::{decode_stored, only_params, page, parse_address, query_limit, to_json};

/// Name of the module.
pub const NAME: &str = "anchor";
/// Longest record type.
pub const MAX_RECORD_TYPE_CHARS: usize = 32;
/// Most records in one anchored batch.
pub const MAX_BATCH_RECORDS: u64 = 10_000_000;
/// How far past the block time a batch may end. Edge clocks drift a little; a batch that
/// claims records from further in the future is a bug or a lie.
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;

/// Domain tag of anchor ids.
const ANCHOR_ID_TAG: &[u8] = b"trustedge/anchor-id/v1";

/// An anchored batch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// Id: [`anchor_id`] of the fields below.
    pub id: Hash,
    /// Member address of the edge node that anchored it (the signer).
    pub edge: Address,
    /// The edge node's organisation.
    pub org: String,
    /// Record type, e.g. `contact_event`.
    pub record_type: String,
    /// Merkle root over the batch's [`record_leaf`]s.
    pub merkle_root: Hash,
    /// Number of records.
    pub count: u64,
    /// Time of the first record, Unix milliseconds.
    pub from_ms: u64,
    /// Time of the last record, Unix milliseconds (inclusive).
    pub to_ms: u64,
    /// Height of the anchoring block.
    pub height: Height,
    /// The anchoring transaction.
    pub tx_hash: Hash,
}

/// An entry of the range index.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AnchorRange {
    /// End of the range (inclusive), Unix milliseconds.
    pub to_ms: u64,
    /// The batch.
    pub id: Hash,
}

/// The transactions of the `anchor` module. JSON form:
/// `{"anchor_batch": {"record_type": "…", "merkle_root": "<hex>", "count": 1, "from_ms": 0, "to_ms": 0}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AnchorCall {
    /// Anchors a batch. Signer: admin or operator of an edge-operator organisation.
    AnchorBatch {
        /// Record type: 1..=32 characters of `[a-z0-9_]`.
        record_type: String,
        /// Merkle root over the batch's [`record_leaf`]s.
        merkle_root: Hash,
        /// Number of records: 1..=10,000,000.
        count: u64,
        /// Time of the first record, Unix milliseconds.
        from_ms: u64,
        /// Time of the last record, Unix milliseconds; not before `from_ms`.
        to_ms: u64,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["anchor_batch"];

/// The id of a batch: a tagged hash of the canonical (edge, record type, root, count, from,
/// to). The count is part of the id because an RFC 6962 proof for a leaf in the left, complete
/// part of a tree also verifies for some smaller tree sizes: binding the count to the id makes
/// an altered count detectable by [`verify_record_anchored`].
pub fn anchor_id(
    edge: &Address,
    record_type: &str,
    merkle_root: &Hash,
    count: u64,
    from_ms: u64,
    to_ms: u64,
) -> Hash {
    Hash::tagged(
        ANCHOR_ID_TAG,
        &[&codec::encode(&(
            edge,
            record_type,
            merkle_root,
            count,
            from_ms,
            to_ms,
        ))],
    )
}

/// The leaf data of a record in an anchored batch's Merkle tree.
pub fn record_leaf(record: &[u8]) -> Hash {
    Hash::tagged(domain::RECORD, &[record])
}

/// Checks that `record` is in the batch `anchor` with inclusion `proof`.
///
/// The proof must be for a tree of exactly `anchor.count` leaves: a proof against a root is
/// only meaningful for the tree size it was built for, and checking it pins the record to the
/// batch the ledger describes. The anchor's identifying fields (edge, record type, root, count,
/// time range) must hash to its id, so an altered count is detected.
///
/// `anchor` should come from the ledger (with a state proof, if it crossed a trust boundary):
/// its `height` and `tx_hash` are not part of the id.
pub fn verify_record_anchored(
    record: &[u8],
    proof: &MerkleProof,
    anchor: &AnchorRecord,
) -> Result<(), AnchorError> {
    if proof.tree_size != anchor.count {
        return Err(AnchorError::CountMismatch {
            proof_tree_size: proof.tree_size,
            anchor_count: anchor.count,
        });
    }
    let id = anchor_id(
        &anchor.edge,
        &anchor.record_type,
        &anchor.merkle_root,
        anchor.count,
        anchor.from_ms,
        anchor.to_ms,
    );
    if id != anchor.id {
        return Err(AnchorError::IdMismatch);
    }
    proof
        .verify(&record_leaf(record).0, &anchor.merkle_root)
        .map_err(AnchorError::BadProof)
}

const BATCH_PREFIX: &[u8] = b"batch/";
const ROOT_PREFIX: &[u8] = b"root/";
const RANGE_PREFIX: &[u8] = b"range/";

fn batch_key(id: &Hash) -> Vec<u8> {
    [BATCH_PREFIX, &id.0].concat()
}

fn root_key(root: &Hash) -> Vec<u8> {
    [ROOT_PREFIX, &root.0].concat()
}

fn range_edge_prefix(edge: &Address) -> Vec<u8> {
    [RANGE_PREFIX, &edge.0, b"/"].concat()
}

fn range_prefix(edge: &Address, record_type: &str) -> Vec<u8> {
    [
        range_edge_prefix(edge).as_slice(),
        record_type.as_bytes(),
        b"/",
    ]
    .concat()
}

fn range_key(edge: &Address, record_type: &str, from_ms: u64) -> Vec<u8> {
    [
        range_prefix(edge, record_type).as_slice(),
        &from_ms.to_be_bytes(),
    ]
    .concat()
}

/// The anchored batch `id`.
pub fn batch(state: &dyn StateRead, id: &Hash) -> Result<Option<AnchorRecord>, StateError> {
    read_value(state, &module_key(NAME, &batch_key(id)))
}

/// The anchored batch with Merkle root `root`.
pub fn batch_by_root(
    state: &dyn StateRead,
    root: &Hash,
) -> Result<Option<AnchorRecord>, StateError> {
    match read_value::<Hash>(state, &module_key(NAME, &root_key(root)))? {
        Some(id) => batch(state, &id),
        None => Ok(None),
    }
}

fn is_valid_record_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RECORD_TYPE_CHARS
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn anchor_batch(
    ctx: &mut TxContext<'_, '_>,
    record_type: String,
    merkle_root: Hash,
    count: u64,
    from_ms: u64,
    to_ms: u64,
) -> Result<(), TxError> {
    let (edge, org) = match ctx.signer {
        Principal::Member { address, org, .. } => (*address, org.clone()),
        // Unreachable after the access check, which only admits members to this module.
        other => {
            return Err(TxError::Denied(format!(
                "requires an organisation member; signer is {other}"
            )));
        }
    };
    if !is_valid_record_type(&record_type) {
        return Err(TxError::Invalid(format!(
            "record_type {record_type:?} must be 1..={MAX_RECORD_TYPE_CHARS} characters of [a-z0-9_]"
        )));
    }
    if !(1..=MAX_BATCH_RECORDS).contains(&count) {
        return Err(TxError::Invalid(format!(
            "count {count} must be in 1..={MAX_BATCH_RECORDS}"
        )));
    }
    if from_ms > to_ms {
        return Err(TxError::Invalid(format!(
            "from_ms {from_ms} is after to_ms {to_ms}"
        )));
    }
    let latest_ms = ctx.time_ms.saturating_add(MAX_FUTURE_SKEW_MS);
    if to_ms > latest_ms {
        return Err(TxError::Invalid(format!(
            "to_ms {to_ms} is more than {MAX_FUTURE_SKEW_MS} ms after the block time {}",
            ctx.time_ms
        )));
    }
    if let Some(id) = ctx.get::<Hash>(&root_key(&merkle_root))? {
        return Err(TxError::AlreadyExists(format!(
            "merkle root {merkle_root} is already anchored as batch {id}"
        )));
    }
    // The ranges of one edge and record type are disjoint, so sorted by start they are also
    // sorted by end. The new range [from, to] overlaps an existing one iff the existing range
    // with the greatest start <= to ends at or after from: one reverse lookup, no scan.
    let prefix = range_prefix(&edge, &record_type);
    let upper = match to_ms.checked_add(1) {
        Some(next) => [prefix.as_slice(), &next.to_be_bytes()].concat(),
        None => prefix_end(&prefix),
    };
    if let Some((k, v)) = ctx.scan_range(&prefix, &upper, true, 1)?.into_iter().next() {
        let prev: AnchorRange = codec::decode(&v, usize::MAX).map_err(|e| {
            TxError::Storage(StateError(format!(
                "undecodable anchor range at {}: {e}",
                String::from_utf8_lossy(&k)
            )))
        })?;
        if prev.to_ms >= from_ms {
            return Err(TxError::Conflict(format!(
                "time range {from_ms}..={to_ms} overlaps batch {} of the same edge and record type",
                prev.id
            )));
        }
    }
    let id = anchor_id(&edge, &record_type, &merkle_root, count, from_ms, to_ms);
    let rec = AnchorRecord {
        id,
        edge,
        org,
        record_type,
        merkle_root,
        count,
        from_ms,
        to_ms,
        height: ctx.height,
        tx_hash: ctx.tx_hash,
    };
    ctx.put(&batch_key(&id), &rec)?;
    ctx.put(&root_key(&merkle_root), &id)?;
    ctx.put(
        &range_key(&edge, &rec.record_type, from_ms),
        &AnchorRange { to_ms, id },
    )?;
    ctx.emit(
        "batch_anchored",
        &[
            ("id", id.to_hex()),
            ("edge", edge.to_string()),
            ("org_id", rec.org.clone()),
            ("record_type", rec.record_type.clone()),
            ("merkle_root", merkle_root.to_hex()),
            ("count", count.to_string()),
            ("from_ms", from_ms.to_string()),
            ("to_ms", to_ms.to_string()),
        ],
    )
}

/// The `anchor` module. Queries: `batch/<id hex>`, `root/<merkle root hex>`,
/// `list?edge=&record_type=&after=<id hex>&limit=`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnchorModule;

impl Module for AnchorModule {
    type Call = AnchorCall;
    const NAME: &'static str = NAME;

    fn access(&self, _call: &AnchorCall) -> Access {
        Access::Members {
            org_kinds: &[OrgKind::EdgeOperator],
            roles: &[Role::Admin, Role::Operator],
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: AnchorCall) -> Result<(), TxError> {
        match call {
            AnchorCall::AnchorBatch {
                record_type,
                merkle_root,
                count,
                from_ms,
                to_ms,
            } => anchor_batch(ctx, record_type, merkle_root, count, from_ms, to_ms),
        }
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        if path == "list" {
            only_params(params, &["edge", "record_type", "after", "limit"])?;
            return list(state, params);
        }
        if let Some(h) = path.strip_prefix("batch/") {
            only_params(params, &[])?;
            let id = Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("id: {e}")))?;
            let rec =
                batch(state, &id)?.ok_or_else(|| QueryError::NotFound(format!("batch {id}")))?;
            return to_json(&rec);
        }
        if let Some(h) = path.strip_prefix("root/") {
            only_params(params, &[])?;
            let root = Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("root: {e}")))?;
            let rec = batch_by_root(state, &root)?
                .ok_or_else(|| QueryError::NotFound(format!("no batch with root {root}")))?;
            return to_json(&rec);
        }
        Err(QueryError::NotFound(format!(
            "no query {path:?}; anchor answers list, batch/<id>, root/<merkle root>"
        )))
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with(BATCH_PREFIX) {
            serde_json::to_value(decode_stored::<AnchorRecord>(value)?).ok()
        } else if key.starts_with(ROOT_PREFIX) {
            Some(serde_json::json!({ "batch": decode_stored::<Hash>(value)? }))
        } else if key.starts_with(RANGE_PREFIX) {
            serde_json::to_value(decode_stored::<AnchorRange>(value)?).ok()
        } else {
            None
        }
    }
}

/// Lists batches: of one edge and record type in time order, of one edge by record type
/// and time, or all by id. `after` is the id of the last batch of the previous page.
fn list(
    state: &dyn StateRead,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    let edge = params
        .get("edge")
        .map(|e| parse_address("edge", e))
        .transpose()?;
    let record_type = params.get("record_type");
    if let Some(t) = record_type
        && !is_valid_record_type(t)
    {
        return Err(QueryError::Invalid(format!("record_type {t:?} is invalid")));
    }
    let after = match params.get("after") {
        None => None,
        Some(h) => {
            let id = Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("after: {e}")))?;
            let rec = batch(state, &id)?
                .ok_or_else(|| QueryError::Invalid(format!("after: no batch {id}")))?;
            let wrong_edge = edge.is_some_and(|e| e != rec.edge);
            let wrong_type = record_type.is_some_and(|t| *t != rec.record_type);
            if wrong_edge || wrong_type {
                return Err(QueryError::Invalid(format!(
                    "after: batch {id} is not in this listing"
                )));
            }
            Some(rec)
        }
    };
    let (prefix, cursor) = match (edge, record_type) {
        (Some(e), Some(t)) => (
            range_prefix(&e, t),
            after.map(|r| range_key(&e, t, r.from_ms)),
        ),
        (Some(e), None) => (
            range_edge_prefix(&e),
            after.map(|r| range_key(&e, &r.record_type, r.from_ms)),
        ),
        (None, None) => (BATCH_PREFIX.to_vec(), after.map(|r| batch_key(&r.id))),
        (None, Some(_)) => {
            return Err(QueryError::Invalid(
                "record_type needs edge: batches are indexed by edge first".into(),
            ));
        }
    };
    let (entries, more) = page(state, NAME, &prefix, cursor.as_deref(), limit)?;
    let mut batches = Vec::with_capacity(entries.len());
    for (k, v) in &entries {
        let rec = if prefix.starts_with(BATCH_PREFIX) {
            decode_stored::<AnchorRecord>(v)
        } else {
            match decode_stored::<AnchorRange>(v) {
                Some(r) => batch(state, &r.id)?,
                None => None,
            }
        };
        let rec = rec.ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "undecodable anchor entry at {}",
                String::from_utf8_lossy(k)
            )))
        })?;
        batches.push(rec);
    }
    let next = if more {
        batches.last().map(|b| b.id)
    } else {
        None
    };
    Ok(serde_json::json!({ "batches": batches, "next": next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_keys_sort_by_time_within_edge_and_type() {
        let e = Address([7; 20]);
        assert!(range_key(&e, "a", 255) < range_key(&e, "a", 256));
        assert!(range_key(&e, "a", u64::MAX) < prefix_end(&range_prefix(&e, "a")));
        // type "a" must not share a prefix with type "a_b"
        assert!(!range_key(&e, "a_b", 0).starts_with(&range_prefix(&e, "a")));
    }

    #[test]
    fn record_types() {
        assert!(is_valid_record_type("contact_event"));
        assert!(!is_valid_record_type(""));
        assert!(!is_valid_record_type("Contact"));
        assert!(!is_valid_record_type("a/b"));
        assert!(!is_valid_record_type(&"a".repeat(33)));
    }
}
