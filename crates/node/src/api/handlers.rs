//! The route handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use trustedge_chain::{Ledger, MempoolError, Proof, SubmitError, TxStatus};
use trustedge_execution::module::module_key;
use trustedge_types::{Hash, Height, PublicKey, SignedTx};
use utoipa::OpenApi;

use super::error::{ApiError, ErrorBody};
use super::events;
use super::extract::{self, ApiPath, ApiQuery};
use super::types::{
    BatchItem, BlockResponse, BlockTx, EventsQuery, EventsResponse, HeaderEntry, HeadersQuery,
    HeadersResponse, MAX_BATCH_TXS, MAX_HEADERS, NonceResponse, StateQuery, StateResponse,
    StatusResponse, SubmitBatchRequest, SubmitBatchResponse, SubmitTxHex, SubmitTxResponse,
};
use super::{ApiState, with_content_type};
use crate::gossip::{self, GossipTx};

/// Longest raw state key accepted by `GET /v1/state`.
const MAX_STATE_KEY_BYTES: usize = 1024;
/// Most query parameters passed to a module query.
const MAX_QUERY_PARAMS: usize = 32;

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(s)
        .map_err(|e| ApiError::invalid_path(format!("{s:?} is not a 32-byte hex hash: {e}")))
}

fn parse_height(s: &str) -> Result<Height, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid_path(format!("height {s:?} is not a non-negative integer")))
}

// ------------------------------------------------------------------------------ transactions

/// Submit a transaction.
///
/// The body is `{"tx": "<hex of the canonical SignedTx>"}`, a JSON `SignedTx`, or (with
/// `Content-Type: application/octet-stream`) the canonical bytes. The transaction is admitted
/// (signature, chain, nonce, signer, module, call) and queued; a follower also forwards it
/// to its upstream. 202 means queued, not committed: poll `GET /v1/txs/{hash}`.
#[utoipa::path(
    post, path = "/v1/txs", tag = "transactions",
    request_body(description = "A signed transaction", content(
        (SubmitTxHex = "application/json"),
        (Object = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 202, description = "Admitted and queued", body = SubmitTxResponse),
        (status = 400, description = "malformed, malformed_call, unknown_module", body = ErrorBody),
        (status = 401, description = "bad_signature, unknown_signer", body = ErrorBody),
        (status = 403, description = "revoked_signer, suspended_signer", body = ErrorBody),
        (status = 409, description = "replayed_nonce, duplicate, already_committed", body = ErrorBody),
        (status = 413, description = "too_large: body or transaction over its limit", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "wrong_chain_id, expired", body = ErrorBody),
        (status = 429, description = "mempool_full", body = ErrorBody),
        (status = 502, description = "forward_failed (followers)", body = ErrorBody),
    )
)]
pub(crate) async fn submit_tx(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitTxResponse>), ApiError> {
    let m = &st.ctx.metrics;
    m.txs_submitted.inc();
    let result = submit_one(&st, &headers, body).await;
    match &result {
        Ok(_) => {
            m.txs_accepted.inc();
        }
        Err(e) => {
            m.rejected(e.code());
            if e.code() == "forward_failed" {
                m.txs_forward_failed.inc();
            }
        }
    }
    result.map(|hash| (StatusCode::ACCEPTED, Json(SubmitTxResponse { hash })))
}

async fn submit_one(
    st: &ApiState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Hash, ApiError> {
    let kind = extract::body_kind(headers)?;
    let bytes = extract::body(body)?;
    let tx = extract::tx_from_body(kind, &bytes)?;
    let local_tx = tx.clone();
    let local = st.ledger(move |l| Ok(l.submit(local_tx))).await?;
    if let (Ok(id), Some(g)) = (&local, &st.ctx.gossip) {
        g.push(&[GossipTx::new(*id, hex::encode(tx.to_bytes()))]);
    }
    match &st.ctx.forward {
        None => local.map_err(ApiError::from),
        // Admitted here (now, or by an earlier submission whose forwarding failed): forward.
        Some(fwd) if forwardable(&local) => {
            let forwarded = fwd.submit(&tx).await;
            if let Err(e) = &forwarded
                && upstream_refused(e)
            {
                let id = tx.hash();
                st.ledger(move |l| Ok(l.remove_from_mempool(&id))).await?;
            }
            forwarded
        }
        Some(_) => local.map_err(ApiError::from),
    }
}

/// Whether the upstream refused a forwarded transaction for good (as opposed to being
/// unreachable, or holding it already): then the local copy is dropped, so this node does not
/// report as pending a transaction that no validator will include.
fn upstream_refused(e: &ApiError) -> bool {
    !matches!(
        e.code(),
        "forward_failed" | "duplicate" | "already_committed"
    )
}

/// Whether a follower forwards a transaction after local admission gave `local`.
fn forwardable(local: &Result<Hash, SubmitError>) -> bool {
    matches!(
        local,
        Ok(_) | Err(SubmitError::Mempool(MempoolError::Duplicate(_)))
    )
}

/// Submit many transactions (load generation).
///
/// Signatures are verified in one parallel batch. The answer has one item per transaction,
/// in order: `{"hash"}` if accepted, `{"error": {"code","message"}}` if not. A batch with the
/// header `x-trustedge-gossip` comes from another validator's gossip: it is admitted here
/// and neither forwarded nor pushed on.
#[utoipa::path(
    post, path = "/v1/txs/batch", tag = "transactions",
    request_body = SubmitBatchRequest,
    responses(
        (status = 200, description = "Per-transaction results", body = SubmitBatchResponse),
        (status = 400, description = "The body is not a batch", body = ErrorBody),
        (status = 413, description = "too_large: over the body limit or 10000 transactions", body = ErrorBody),
    )
)]
pub(crate) async fn submit_batch(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitBatchResponse>, ApiError> {
    let from_gossip = gossip::is_gossip(&headers);
    let bytes = extract::body(body)?;
    let forwarding = st.ctx.forward.is_some() && !from_gossip;
    // Parsing and decoding up to MAX_BATCH_TXS transactions is CPU work: it runs on the
    // blocking pool in the same call as admission, never on the async workers.
    let Admitted {
        mut hexes,
        mut results,
        decoded,
        local,
    } = st
        .ledger(move |l| {
            let req: SubmitBatchRequest = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::malformed(format!("body is not {{\"txs\": [\"<hex>\", …]}}: {e}"))
            })?;
            if req.txs.len() > MAX_BATCH_TXS {
                return Err(ApiError::too_large(format!(
                    "{} transactions; a batch holds at most {MAX_BATCH_TXS}",
                    req.txs.len()
                )));
            }
            let mut results: Vec<Option<Result<Hash, ApiError>>> =
                Vec::with_capacity(req.txs.len());
            let mut txs: Vec<SignedTx> = Vec::with_capacity(req.txs.len());
            let mut positions: Vec<usize> = Vec::with_capacity(req.txs.len());
            for (i, hex_tx) in req.txs.iter().enumerate() {
                match extract::tx_from_hex(hex_tx) {
                    Ok(tx) => {
                        positions.push(i);
                        txs.push(tx);
                        results.push(None);
                    }
                    Err(e) => results.push(Some(Err(e))),
                }
            }
            // Forwarding needs the transactions after admission; otherwise they move in.
            let (local, kept) = if forwarding {
                (l.submit_batch(txs.clone()), txs)
            } else {
                (l.submit_batch(txs), Vec::new())
            };
            let decoded = if forwarding {
                positions
                    .into_iter()
                    .zip(kept)
                    .map(|(i, t)| (i, Some(t)))
                    .collect()
            } else {
                positions.into_iter().map(|i| (i, None)).collect()
            };
            Ok(Admitted {
                hexes: req.txs,
                results,
                decoded,
                local,
            })
        })
        .await?;
    let m = &st.ctx.metrics;
    if from_gossip {
        m.gossip.txs_received.inc_by(hexes.len() as u64);
    } else {
        m.txs_submitted.inc_by(hexes.len() as u64);
    }
    if let Some(g) = &st.ctx.gossip
        && !from_gossip
    {
        let admitted: Vec<Arc<GossipTx>> = decoded
            .iter()
            .zip(&local)
            .filter_map(|((i, _), r)| {
                let id = r.as_ref().ok()?;
                // It decoded, so after trimming it is plain hex.
                let hex = std::mem::take(&mut hexes[*i]);
                let hex = hex.trim();
                Some(GossipTx::new(
                    *id,
                    hex.strip_prefix("0x").unwrap_or(hex).to_string(),
                ))
            })
            .collect();
        g.push(&admitted);
    }
    let mut to_forward: Vec<(usize, SignedTx)> = Vec::new();
    for ((i, tx), r) in decoded.into_iter().zip(local) {
        match tx {
            Some(tx) if forwardable(&r) => to_forward.push((i, tx)),
            _ => results[i] = Some(r.map_err(ApiError::from)),
        }
    }
    if let Some(fwd) = &st.ctx.forward
        && !to_forward.is_empty()
    {
        let txs: Vec<SignedTx> = to_forward.iter().map(|(_, t)| t.clone()).collect();
        let mut refused = Vec::new();
        for ((i, tx), r) in to_forward.iter().zip(fwd.submit_batch(&txs).await) {
            if let Err(e) = &r
                && upstream_refused(e)
            {
                refused.push(tx.hash());
            }
            results[*i] = Some(r);
        }
        if !refused.is_empty() {
            st.ledger(move |l| {
                for id in &refused {
                    l.remove_from_mempool(id);
                }
                Ok(())
            })
            .await?;
        }
    }
    let mut items = Vec::with_capacity(results.len());
    let (mut accepted, mut rejected) = (0, 0);
    for r in results {
        let r = r.unwrap_or_else(|| Err(ApiError::internal("transaction was not processed")));
        match r {
            Ok(hash) => {
                accepted += 1;
                items.push(BatchItem {
                    hash: Some(hash),
                    error: None,
                });
            }
            Err(e) => {
                rejected += 1;
                if !from_gossip {
                    m.rejected(e.code());
                }
                items.push(BatchItem {
                    hash: None,
                    error: Some(e.body),
                });
            }
        }
    }
    if from_gossip {
        m.gossip.txs_received_accepted.inc_by(accepted as u64);
    } else {
        m.txs_accepted.inc_by(accepted as u64);
    }
    Ok(Json(SubmitBatchResponse {
        results: items,
        accepted,
        rejected,
    }))
}

/// A batch after decoding and admission.
struct Admitted {
    /// The request's hex transactions, in order.
    hexes: Vec<String>,
    /// Per position: the decoding error, or `None` if it decoded.
    results: Vec<Option<Result<Hash, ApiError>>>,
    /// Position of each decoded transaction, with the transaction if it may be forwarded.
    decoded: Vec<(usize, Option<SignedTx>)>,
    /// Admission results of the decoded transactions, in order.
    local: Vec<Result<Hash, SubmitError>>,
}

/// Where a transaction stands.
///
/// `{"status": "pending"}` while in this node's mempool; once committed,
/// `{"status": "committed", …}` with the block header, certificate, the transaction, its
/// result (outcome and events) and Merkle proofs of both.
#[utoipa::path(
    get, path = "/v1/txs/{hash}", tag = "transactions",
    params(("hash" = String, Path, description = "Transaction id, hex")),
    responses(
        (status = 200, description = "Pending or committed with proof and result", body = Object),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found: unknown to this node", body = ErrorBody),
    )
)]
pub(crate) async fn tx_status(
    State(st): State<ApiState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<TxStatus>, ApiError> {
    let hash = parse_hash(&hash)?;
    let status = st.ledger(move |l| Ok(l.tx_status(&hash)?)).await?;
    match status {
        TxStatus::Unknown => Err(ApiError::not_found(format!(
            "transaction {hash} is not known to this node"
        ))),
        s => Ok(Json(s)),
    }
}

/// The inclusion proof of a committed transaction (`"kind": "tx"`).
///
/// Save it and check it offline with `trustedge verify-proof`.
#[utoipa::path(
    get, path = "/v1/txs/{hash}/proof", tag = "proofs",
    params(("hash" = String, Path, description = "Transaction id, hex")),
    responses(
        (status = 200, description = "The proof", body = Object),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found: unknown or not yet committed", body = ErrorBody),
    )
)]
pub(crate) async fn tx_proof(
    State(st): State<ApiState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<Proof>, ApiError> {
    let hash = parse_hash(&hash)?;
    let status = st.ledger(move |l| Ok(l.tx_status(&hash)?)).await?;
    match status {
        TxStatus::Committed(p) => Ok(Json(Proof::Tx(*p))),
        TxStatus::Pending => Err(ApiError::not_found(format!(
            "transaction {hash} is pending; its proof exists once it is committed"
        ))),
        TxStatus::Unknown => Err(ApiError::not_found(format!(
            "transaction {hash} is not known to this node"
        ))),
    }
}

// ------------------------------------------------------------------------------ blocks

fn block_response(l: &Ledger, height: Height) -> Result<BlockResponse, ApiError> {
    let store = l.store();
    let block = store
        .block(height)
        .map_err(trustedge_chain::LedgerError::from)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let certificate = store
        .certificate(height)
        .map_err(trustedge_chain::LedgerError::from)?;
    let mut txs = Vec::with_capacity(block.txs.len());
    for (i, tx) in block.txs.into_iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| ApiError::internal("block too large"))?;
        let result = store
            .tx_result(height, index)
            .map_err(trustedge_chain::LedgerError::from)?;
        let call = l
            .runtime()
            .module(&tx.body.payload.module)
            .and_then(|m| m.call_to_json(&tx.body.payload.call).ok());
        txs.push(BlockTx {
            hash: tx.hash(),
            tx,
            call,
            result,
        });
    }
    Ok(BlockResponse {
        height,
        hash: block.header.hash(),
        state_root: block.header.state_root,
        header: block.header,
        txs,
        certificate,
    })
}

/// The latest block.
#[utoipa::path(
    get, path = "/v1/blocks/latest", tag = "blocks",
    responses(
        (status = 200, description = "The block", body = BlockResponse),
        (status = 404, description = "not_found: no block committed yet", body = ErrorBody),
    )
)]
pub(crate) async fn latest_block(
    State(st): State<ApiState>,
) -> Result<Json<BlockResponse>, ApiError> {
    st.ledger(|l| {
        let h = l.height()?;
        if h == 0 {
            return Err(ApiError::not_found("no block committed yet"));
        }
        block_response(l, h)
    })
    .await
    .map(Json)
}

/// A block by height, with its transactions (decoded calls, results) and certificate.
#[utoipa::path(
    get, path = "/v1/blocks/{height}", tag = "blocks",
    params(("height" = u64, Path, description = "Height (the first block is 1)")),
    responses(
        (status = 200, description = "The block", body = BlockResponse),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn block_by_height(
    State(st): State<ApiState>,
    ApiPath(height): ApiPath<String>,
) -> Result<Json<BlockResponse>, ApiError> {
    let height = parse_height(&height)?;
    st.ledger(move |l| block_response(l, height))
        .await
        .map(Json)
}

/// A block by hash.
#[utoipa::path(
    get, path = "/v1/blocks/hash/{hash}", tag = "blocks",
    params(("hash" = String, Path, description = "Block hash, hex")),
    responses(
        (status = 200, description = "The block", body = BlockResponse),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn block_by_hash(
    State(st): State<ApiState>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<BlockResponse>, ApiError> {
    let hash = parse_hash(&hash)?;
    st.ledger(move |l| {
        let height = l
            .store()
            .height_of_block(&hash)
            .map_err(trustedge_chain::LedgerError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no block with hash {hash}")))?;
        block_response(l, height)
    })
    .await
    .map(Json)
}

/// A block and its certificate as Borsh bytes of `(Block, CommitCertificate)`; followers
/// fetch blocks this way.
#[utoipa::path(
    get, path = "/v1/blocks/{height}/raw", tag = "blocks",
    params(("height" = u64, Path, description = "Height")),
    responses(
        (status = 200, description = "Borsh of (Block, CommitCertificate)", body = Vec<u8>,
         content_type = "application/octet-stream"),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn block_raw(
    State(st): State<ApiState>,
    ApiPath(height): ApiPath<String>,
) -> Result<Response, ApiError> {
    let height = parse_height(&height)?;
    let bytes = st
        .ledger(move |l| {
            let store = l.store();
            let block = store
                .block(height)
                .map_err(trustedge_chain::LedgerError::from)?
                .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
            let cert = store
                .certificate(height)
                .map_err(trustedge_chain::LedgerError::from)?
                .ok_or_else(|| ApiError::not_found(format!("no certificate for block {height}")))?;
            Ok(trustedge_types::encode(&(block, cert)))
        })
        .await?;
    Ok(with_content_type(
        StatusCode::OK,
        "application/octet-stream",
        Body::from(bytes),
    ))
}

/// Block headers in a height range (at most 1000), each with its commit certificate.
#[utoipa::path(
    get, path = "/v1/headers", tag = "blocks",
    params(HeadersQuery),
    responses(
        (status = 200, description = "Headers in ascending height; heights past the latest are left out", body = HeadersResponse),
        (status = 400, description = "invalid_query: bad numbers or more than 1000 headers", body = ErrorBody),
    )
)]
pub(crate) async fn headers(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<HeadersQuery>,
) -> Result<Json<HeadersResponse>, ApiError> {
    let from = q.from.unwrap_or(1).max(1);
    if let Some(to) = q.to {
        if to < from {
            return Err(ApiError::invalid_query(format!(
                "to ({to}) is below from ({from})"
            )));
        }
        if to - from >= MAX_HEADERS {
            return Err(ApiError::invalid_query(format!(
                "at most {MAX_HEADERS} headers per request; asked for {}",
                u128::from(to - from) + 1
            )));
        }
    }
    st.ledger(move |l| {
        let latest = l.height()?;
        let to =
            q.to.unwrap_or(u64::MAX)
                .min(latest)
                .min(from.saturating_add(MAX_HEADERS - 1));
        let store = l.store();
        let mut headers = Vec::new();
        for header in store
            .headers(from, to)
            .map_err(trustedge_chain::LedgerError::from)?
        {
            let certificate = store
                .certificate(header.height)
                .map_err(trustedge_chain::LedgerError::from)?;
            headers.push(HeaderEntry {
                height: header.height,
                hash: header.hash(),
                header,
                certificate,
            });
        }
        Ok(HeadersResponse { headers })
    })
    .await
    .map(Json)
}

// ------------------------------------------------------------------------------ node

/// The chain's and the node's status.
#[utoipa::path(
    get, path = "/v1/status", tag = "node",
    responses((status = 200, description = "Status", body = StatusResponse))
)]
pub(crate) async fn status(State(st): State<ApiState>) -> Result<Json<StatusResponse>, ApiError> {
    let s = st.ledger(|l| Ok(l.status()?)).await?;
    let c = &st.ctx;
    let sync = c
        .sync
        .as_ref()
        .map(|h| h.lock().unwrap_or_else(|p| p.into_inner()).clone());
    Ok(Json(StatusResponse {
        name: c.name.clone(),
        role: c.role,
        mode: c.mode,
        chain_id: s.chain_id,
        height: s.height,
        block_hash: s.block_hash,
        state_root: s.state_root,
        time_ms: s.time_ms,
        mempool_txs: s.mempool_txs,
        genesis_hash: s.genesis_hash,
        sync,
    }))
}

/// The genesis document.
#[utoipa::path(
    get, path = "/v1/genesis", tag = "node",
    responses((status = 200, description = "The genesis document", body = Object))
)]
pub(crate) async fn genesis(State(st): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(st.ctx.ledger.genesis()).unwrap_or(serde_json::Value::Null))
}

/// Metrics in the OpenMetrics text format.
#[utoipa::path(
    get, path = "/metrics", tag = "node",
    responses((status = 200, description = "OpenMetrics text", body = String,
               content_type = "application/openmetrics-text"))
)]
pub(crate) async fn metrics(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let height = st.ledger(|l| Ok(l.height()?)).await?;
    let m = &st.ctx.metrics;
    m.height.set(i64::try_from(height).unwrap_or(i64::MAX));
    let (txs, bytes) = st.ctx.ledger.mempool_size();
    m.mempool(txs, bytes);
    Ok(with_content_type(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Body::from(m.encode()),
    ))
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::docs::ApiDoc::openapi())
}

/// Unknown routes.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; see /openapi.json",
        uri.path()
    ))
}

// ------------------------------------------------------------------------------ state

/// The raw state key a query names: `key=<hex>` or `path=<module>/<key>` (exactly one),
/// 1..=`MAX_STATE_KEY_BYTES` bytes. Shared by the full API and the light node's.
pub(crate) fn parse_state_key(key: Option<&str>, path: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let key = match (key, path) {
        (Some(k), None) => {
            let k = k.trim();
            hex::decode(k.strip_prefix("0x").unwrap_or(k))
                .map_err(|e| ApiError::invalid_query(format!("key is not hex: {e}")))?
        }
        (None, Some(p)) => match p.split_once('/') {
            Some((module, rest)) if !module.is_empty() => module_key(module, rest.as_bytes()),
            _ => {
                return Err(ApiError::invalid_query(format!(
                    "path {p:?} is not <module>/<key>"
                )));
            }
        },
        _ => {
            return Err(ApiError::invalid_query(
                "give exactly one of key=<hex> and path=<module>/<key>",
            ));
        }
    };
    if key.is_empty() || key.len() > MAX_STATE_KEY_BYTES {
        return Err(ApiError::invalid_query(format!(
            "key must be 1..={MAX_STATE_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}

/// A raw state value with its proof (`"kind": "state"`).
///
/// Name the key either as hex (`key`) or as `<module>/<utf-8 key>` (`path`, e.g.
/// `orgs/org/ha`). The value is decoded to JSON when its module documents the key. The proof
/// verifies offline against the block header and, with the validator set, its certificate.
#[utoipa::path(
    get, path = "/v1/state", tag = "proofs",
    params(StateQuery),
    responses(
        (status = 200, description = "Value (or absence) and proof", body = StateResponse),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 404, description = "not_found: height above the latest", body = ErrorBody),
    )
)]
pub(crate) async fn state(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<StateQuery>,
) -> Result<Json<StateResponse>, ApiError> {
    let key = parse_state_key(q.key.as_deref(), q.path.as_deref())?;
    let height = q.height;
    st.ledger(move |l| {
        let p = l.state_proof(&key, height)?;
        let decoded = p.value.as_ref().and_then(|v| describe(l, &key, v));
        Ok(StateResponse {
            height: p.height,
            key: hex::encode(&key),
            value: p.value.as_ref().map(hex::encode),
            decoded,
            proof: Proof::State(p),
        })
    })
    .await
    .map(Json)
}

/// The module's JSON description of a raw value, if it has one.
fn describe(l: &Ledger, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
    let slash = key.iter().position(|&b| b == b'/')?;
    let module = std::str::from_utf8(&key[..slash]).ok()?;
    l.runtime()
        .module(module)?
        .describe_value(&key[slash + 1..], value)
}

/// Runs a module's read-only query on the latest state.
///
/// For example `/v1/query/devices/device/te1…` or `/v1/query/orgs/list?limit=10`; each
/// module documents its paths and parameters.
#[utoipa::path(
    get, path = "/v1/query/{module}/{path}", tag = "state",
    params(
        ("module" = String, Path, description = "Module name: genesis, orgs, devices, anchor"),
        ("path" = String, Path, description = "Query path inside the module (may contain '/')"),
    ),
    responses(
        (status = 200, description = "The module's answer", body = Object),
        (status = 400, description = "invalid_query", body = ErrorBody),
        (status = 404, description = "not_found: no such module, path or entity", body = ErrorBody),
    )
)]
pub(crate) async fn query(
    State(st): State<ApiState>,
    ApiPath((module, path)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    module_query(&st, module, path, params).await.map(Json)
}

async fn module_query(
    st: &ApiState,
    module: String,
    path: String,
    params: BTreeMap<String, String>,
) -> Result<serde_json::Value, ApiError> {
    if params.len() > MAX_QUERY_PARAMS {
        return Err(ApiError::invalid_query(format!(
            "at most {MAX_QUERY_PARAMS} query parameters"
        )));
    }
    st.ledger(move |l| Ok(l.query(&module, &path, &params)?))
        .await
}

/// Events, filtered and paged.
#[utoipa::path(
    get, path = "/v1/events", tag = "state",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events; `next` continues", body = EventsResponse),
        (status = 400, description = "invalid_query", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventsResponse>, ApiError> {
    let (filter, cursor, limit) = events::parse_query(&q)?;
    st.ledger(move |l| {
        let page = l.events(&filter, cursor, limit)?;
        events::to_response(page)
    })
    .await
    .map(Json)
}

/// Organisations, a page at a time (the `orgs` module's `list` query).
#[utoipa::path(
    get, path = "/v1/orgs", tag = "state",
    params(("limit" = Option<usize>, Query, description = "Page size, 1..=1000"),
           ("after" = Option<String>, Query, description = "Continue after this organisation id")),
    responses(
        (status = 200, description = "Organisations", body = Object),
        (status = 400, description = "invalid_query", body = ErrorBody),
    )
)]
pub(crate) async fn orgs(
    State(st): State<ApiState>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    module_query(&st, "orgs".into(), "list".into(), params)
        .await
        .map(Json)
}

/// One organisation.
#[utoipa::path(
    get, path = "/v1/orgs/{id}", tag = "state",
    params(("id" = String, Path, description = "Organisation id")),
    responses(
        (status = 200, description = "The organisation", body = Object),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn org(
    State(st): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    module_query(&st, "orgs".into(), format!("org/{id}"), BTreeMap::new())
        .await
        .map(Json)
}

/// Devices, a page at a time (the `devices` module's `list` query).
#[utoipa::path(
    get, path = "/v1/devices", tag = "state",
    params(("limit" = Option<usize>, Query, description = "Page size, 1..=1000"),
           ("after" = Option<String>, Query, description = "Continue after this device address"),
           ("org" = Option<String>, Query, description = "Only this organisation's devices (id)")),
    responses(
        (status = 200, description = "Devices", body = Object),
        (status = 400, description = "invalid_query", body = ErrorBody),
    )
)]
pub(crate) async fn devices(
    State(st): State<ApiState>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    module_query(&st, "devices".into(), "list".into(), params)
        .await
        .map(Json)
}

/// One device, by its pseudonymous address.
#[utoipa::path(
    get, path = "/v1/devices/{address}", tag = "state",
    params(("address" = String, Path, description = "Device address (te1…)")),
    responses(
        (status = 200, description = "The device", body = Object),
        (status = 400, description = "invalid_query: not an address", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    )
)]
pub(crate) async fn device(
    State(st): State<ApiState>,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    module_query(
        &st,
        "devices".into(),
        format!("device/{address}"),
        BTreeMap::new(),
    )
    .await
    .map(Json)
}

/// The last nonce a key used; its next transaction carries `last_nonce + 1`.
#[utoipa::path(
    get, path = "/v1/accounts/{public_key}/nonce", tag = "transactions",
    params(("public_key" = String, Path, description = "Public key, hex")),
    responses(
        (status = 200, description = "Nonces", body = NonceResponse),
        (status = 400, description = "invalid_path", body = ErrorBody),
    )
)]
pub(crate) async fn nonce(
    State(st): State<ApiState>,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<NonceResponse>, ApiError> {
    let key = PublicKey::from_hex(&key)
        .map_err(|e| ApiError::invalid_path(format!("{key:?} is not a public key: {e}")))?;
    let last = st.ledger(move |l| Ok(l.last_nonce(&key)?)).await?;
    Ok(Json(NonceResponse {
        public_key: key.to_hex(),
        last_nonce: last,
        next_nonce: last.saturating_add(1),
    }))
}
