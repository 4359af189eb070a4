//! The edge's record proofs: `GET /v1/edge/records/{id}/proof`.
//!
//! A proof hands out the record's 32-byte digest and its Merkle path in the anchored batch,
//! never the record: whoever holds the reading (the device that signed it) recomputes
//! [`trustedge_edge::store::record_digest`] of its canonical bytes, compares, and checks the
//! proof against the ledger's anchor of `merkle_root` (`RecordProof::verify`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use trustedge_edge::RecordProof;
use trustedge_types::Hash;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiPath;
use crate::edge_store::BatchStatus;

/// A record's proof of inclusion in an anchored batch.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EdgeRecordProofResponse {
    /// The record's id at this edge.
    pub record_id: u64,
    /// Record type of the anchor.
    pub record_type: String,
    /// Merkle root of the batch (hex): look the anchor up by it on the ledger.
    #[schema(value_type = String)]
    pub merkle_root: Hash,
    /// Records in the batch.
    pub count: u64,
    /// Receive time of the batch's first record, Unix ms.
    pub from_ms: u64,
    /// Receive time of its last record, Unix ms.
    pub to_ms: u64,
    /// The anchoring transaction last submitted (hex), if any.
    #[schema(value_type = Option<String>)]
    pub tx_hash: Option<Hash>,
    /// Height of the block that anchored the batch, once seen.
    pub anchored_height: Option<u64>,
    /// `record`: the record's digest (hex); `proof`: its Merkle audit path.
    #[schema(value_type = Object)]
    pub proof: RecordProof,
}

/// The proof that an edge record is in an anchored batch (edge nodes with `[mqtt]`).
#[utoipa::path(
    get, path = "/v1/edge/records/{id}/proof", tag = "proofs",
    params(("id" = u64, Path, description = "Record id, as the device's acknowledgement gave it")),
    responses(
        (status = 200, description = "The digest, its Merkle path and the batch", body = EdgeRecordProofResponse),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found: not an edge node, unknown or pruned record, or not yet batched", body = ErrorBody),
    )
)]
pub(crate) async fn record_proof(
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EdgeRecordProofResponse>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid_path(format!("record id {id:?} is not a number")))?;
    let store = st
        .ctx
        .edge_store
        .clone()
        .ok_or_else(|| ApiError::not_found("this node keeps no edge records"))?;
    let proof = tokio::task::spawn_blocking(move || store.record_proof(id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "record {id} is unknown, pruned, or not yet in a batch"
            ))
        })?;
    let b = proof.batch;
    Ok(Json(EdgeRecordProofResponse {
        record_id: proof.id,
        record_type: b.record_type,
        merkle_root: b.merkle_root,
        count: b.count,
        from_ms: b.from_ms,
        to_ms: b.to_ms,
        tx_hash: b.tx_hash,
        anchored_height: match b.status {
            BatchStatus::Anchored(h) => Some(h),
            BatchStatus::Pending => None,
        },
        proof: proof.proof,
    }))
}
