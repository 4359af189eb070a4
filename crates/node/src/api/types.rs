//! Request and response bodies of the API, shared by the server and [`crate::client`].
//!
//! Ledger types (headers, transactions, certificates, proofs) keep their own serde forms;
//! in the OpenAPI document they appear as objects described in prose.

use serde::{Deserialize, Serialize};
use trustedge_chain::Proof;
use trustedge_store::IndexedEvent;
use trustedge_types::{BlockHeader, CommitCertificate, Hash, Height, SignedTx, TxResult};
use utoipa::{IntoParams, ToSchema};

use crate::api::error::ErrorBody;
use crate::config::Role;

/// Most transactions in one `POST /v1/txs/batch`.
pub const MAX_BATCH_TXS: usize = 10_000;
/// Most headers one `GET /v1/headers` returns.
pub const MAX_HEADERS: u64 = 1000;
/// Most events one `GET /v1/events` returns.
pub const MAX_EVENTS: usize = 1000;
/// Events `GET /v1/events` returns without `limit`.
pub const DEFAULT_EVENTS: usize = 100;

/// `POST /v1/txs` with a hex transaction.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxHex {
    /// Hex of the canonical (Borsh) encoding of a `SignedTx`.
    pub tx: String,
}

/// The answer to an accepted transaction (202).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxResponse {
    /// Transaction id, hex.
    #[schema(value_type = String)]
    pub hash: Hash,
}

/// `POST /v1/txs/batch`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitBatchRequest {
    /// Hex of canonical `SignedTx` encodings (at most 10000).
    pub txs: Vec<String>,
}

/// One transaction's fate in a batch: either `hash` or `error` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// Transaction id when accepted.
    #[schema(value_type = Option<String>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Hash>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The answer to a batch (200, one item per submitted transaction, in order).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitBatchResponse {
    /// Per-transaction results.
    pub results: Vec<BatchItem>,
    /// How many were accepted.
    pub accepted: usize,
    /// How many were refused.
    pub rejected: usize,
}

/// How a node makes progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Seals blocks itself (the only validator of the chain).
    Sealer,
    /// Follows an upstream node and forwards transactions to it.
    Follower,
    /// Takes part in BFT consensus with the other validators (Malachite; see
    /// [`trustedge_consensus`]).
    Consensus,
    /// Keeps verified headers only and checks proofs from its upstream against them
    /// (an edge node with `light = true`, see [`crate::light`]).
    Light,
}

/// Where a follower stands with its upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    /// The upstream currently followed.
    pub upstream: Option<String>,
    /// Its latest height when last asked.
    pub upstream_height: Option<Height>,
    /// The last error, cleared by the next success.
    pub last_error: Option<String>,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// Node name.
    pub name: String,
    /// Node role.
    #[schema(value_type = String, example = "validator")]
    pub role: Role,
    /// How the node makes progress.
    pub mode: Mode,
    /// Chain id.
    pub chain_id: String,
    /// Latest committed height (0: genesis only).
    pub height: Height,
    /// Hash of the latest block (zero at height 0).
    #[schema(value_type = String)]
    pub block_hash: Hash,
    /// State root after the latest block.
    #[schema(value_type = String)]
    pub state_root: Hash,
    /// Time of the latest block, Unix ms.
    pub time_ms: u64,
    /// Transactions in the mempool.
    pub mempool_txs: usize,
    /// Hash of the genesis document.
    #[schema(value_type = String)]
    pub genesis_hash: Hash,
    /// The follower's view of its upstream (followers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
}

/// A transaction in a block.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockTx {
    /// Transaction id.
    #[schema(value_type = String)]
    pub hash: Hash,
    /// The signed transaction (serde form: body with hex call, signature).
    #[schema(value_type = Object)]
    pub tx: SignedTx,
    /// The call decoded by its module, when it decodes.
    #[schema(value_type = Object)]
    pub call: Option<serde_json::Value>,
    /// The recorded result (outcome and events).
    #[schema(value_type = Object)]
    pub result: Option<TxResult>,
}

/// `GET /v1/blocks/{height}` and friends.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockResponse {
    /// Height.
    pub height: Height,
    /// Block hash.
    #[schema(value_type = String)]
    pub hash: Hash,
    /// State root after the block.
    #[schema(value_type = String)]
    pub state_root: Hash,
    /// The header.
    #[schema(value_type = Object)]
    pub header: BlockHeader,
    /// The transactions in order.
    pub txs: Vec<BlockTx>,
    /// The commit certificate.
    #[schema(value_type = Object)]
    pub certificate: Option<CommitCertificate>,
}

/// One header in `GET /v1/headers`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HeaderEntry {
    /// Height.
    pub height: Height,
    /// Block hash.
    #[schema(value_type = String)]
    pub hash: Hash,
    /// The header.
    #[schema(value_type = Object)]
    pub header: BlockHeader,
    /// The block's commit certificate, so that a light client can check finality without
    /// fetching blocks (absent only if the serving node does not hold it).
    #[schema(value_type = Object)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CommitCertificate>,
}

/// `GET /v1/headers`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HeadersResponse {
    /// Headers in ascending height.
    pub headers: Vec<HeaderEntry>,
}

/// Query of `GET /v1/headers`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeadersQuery {
    /// First height (default 1).
    pub from: Option<Height>,
    /// Last height (default: latest, at most 1000 headers after `from`).
    pub to: Option<Height>,
}

/// Query of `GET /v1/state`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// The raw state key, hex.
    pub key: Option<String>,
    /// The state key as `<module>/<utf-8 key>`, e.g. `orgs/org/ha`.
    pub path: Option<String>,
    /// Height to read at (default: latest).
    pub height: Option<Height>,
}

/// `GET /v1/state`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StateResponse {
    /// Height read at.
    pub height: Height,
    /// The raw key, hex.
    pub key: String,
    /// The value, hex; absent if the key has no value.
    pub value: Option<String>,
    /// The value decoded by its module, when the module documents the key.
    #[schema(value_type = Object)]
    pub decoded: Option<serde_json::Value>,
    /// The proof (`"kind": "state"`), verifiable offline with `trustedge verify-proof`.
    #[schema(value_type = Object)]
    pub proof: Proof,
}

/// `GET /v1/accounts/{public_key}/nonce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NonceResponse {
    /// The key, hex.
    pub public_key: String,
    /// Last nonce the key used on the committed chain (0 if none).
    pub last_nonce: u64,
    /// The nonce its next transaction should carry.
    pub next_nonce: u64,
}

/// Query of `GET /v1/events`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Emitting module.
    pub module: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// An attribute, as `key:value`.
    pub attr: Option<String>,
    /// Lowest height (inclusive).
    pub from_height: Option<Height>,
    /// Highest height (inclusive).
    pub to_height: Option<Height>,
    /// Where to continue: the `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/events`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsResponse {
    /// Matching events in position order, each with `height`, `tx_index`, `event_index`,
    /// `tx_hash` and the `event` (`module`, `kind`, `attributes`).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<IndexedEvent>,
    /// Cursor of the next page (`height-tx_index-event_index`); `null` when there is nothing
    /// more. A page may hold fewer than `limit` events while `next` is set.
    pub next: Option<String>,
}
