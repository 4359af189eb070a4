//! A typed async client of the node API, used by the CLI, followers and tests.
//!
//! Every response body is read with a size limit, so a misbehaving server cannot make the
//! client allocate without bound. Errors the server reports keep its `{"code","message"}`.

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use trustedge_chain::{Proof, TxStatus};
use trustedge_contracts::genesis::Genesis;
use trustedge_types::block::MAX_BLOCK_BYTES;
use trustedge_types::{Block, CommitCertificate, Hash, Height, PublicKey, SignedTx};

use crate::api::error::{ErrorBody, code_of_status};
use crate::api::types::{
    BlockResponse, EventsQuery, EventsResponse, HeadersResponse, NonceResponse, StateResponse,
    StatusResponse, SubmitBatchRequest, SubmitBatchResponse, SubmitTxHex, SubmitTxResponse,
};

/// Largest JSON response the client reads.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Largest raw block response: a largest block and its certificate.
pub const MAX_RAW_BLOCK_BYTES: usize = MAX_BLOCK_BYTES + 1024 * 1024;
/// Timeout of one request unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest server error message kept.
const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// The server could not be reached or the connection failed.
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered with an error.
    #[error("{url} answered {status} {code}: {message}")]
    Api {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's stable code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server's answer does not decode or is too large.
    #[error("bad response from {url}: {message}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl ClientError {
    /// The server's code, if the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again (later, or elsewhere) may succeed: transport failures, 5xx,
    /// 429 and undecodable answers. Other 4xx answers are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Decode { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// A client of one node.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node at `url` (e.g. `http://127.0.0.1:26657`), with the default
    /// timeout.
    pub fn new(url: impl Into<String>) -> Client {
        Client::with_timeout(url, DEFAULT_TIMEOUT)
    }

    /// A client whose requests time out after `timeout`.
    pub fn with_timeout(url: impl Into<String>, timeout: Duration) -> Client {
        let base = url.into().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            // The builder fails only if a TLS backend cannot start; this client has none.
            .unwrap_or_default();
        Client { base, http }
    }

    /// The node's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get_json("/v1/status", &[]).await
    }

    /// `GET /v1/blocks/{height}`.
    pub async fn block(&self, height: Height) -> Result<BlockResponse, ClientError> {
        self.get_json(&format!("/v1/blocks/{height}"), &[]).await
    }

    /// `GET /v1/blocks/latest`.
    pub async fn latest_block(&self) -> Result<BlockResponse, ClientError> {
        self.get_json("/v1/blocks/latest", &[]).await
    }

    /// `GET /v1/blocks/hash/{hash}`.
    pub async fn block_by_hash(&self, hash: &Hash) -> Result<BlockResponse, ClientError> {
        self.get_json(&format!("/v1/blocks/hash/{hash}"), &[]).await
    }

    /// `GET /v1/blocks/{height}/raw`: the block and its certificate, decoded and checked
    /// for static validity (not for finality: [`trustedge_chain::Ledger::commit_block`] does
    /// that).
    pub async fn block_raw(
        &self,
        height: Height,
    ) -> Result<(Block, CommitCertificate), ClientError> {
        let url = self.url_of(&format!("/v1/blocks/{height}/raw"));
        let resp = self.send(self.http.get(&url), &url).await?;
        let bytes = read_limited(resp, MAX_RAW_BLOCK_BYTES, &url).await?;
        decode_raw_block(&bytes).map_err(|message| ClientError::Decode { url, message })
    }

    /// `GET /v1/headers?from=&to=`.
    pub async fn headers(&self, from: Height, to: Height) -> Result<HeadersResponse, ClientError> {
        self.get_json(
            "/v1/headers",
            &[("from", from.to_string()), ("to", to.to_string())],
        )
        .await
    }

    /// `POST /v1/txs` with the hex form; returns the transaction id.
    pub async fn submit_tx(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let body = SubmitTxHex {
            tx: hex::encode(tx.to_bytes()),
        };
        let r: SubmitTxResponse = self.post_json("/v1/txs", &body).await?;
        Ok(r.hash)
    }

    /// `POST /v1/txs` with raw bytes (`application/octet-stream`), which need not be a valid
    /// transaction: for tests and tools.
    pub async fn submit_raw(&self, bytes: Vec<u8>) -> Result<Hash, ClientError> {
        let url = self.url_of("/v1/txs");
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let resp = self.send(req, &url).await?;
        let r: SubmitTxResponse = decode_json(resp, &url).await?;
        Ok(r.hash)
    }

    /// `POST /v1/txs/batch`.
    pub async fn submit_batch(&self, txs: &[SignedTx]) -> Result<SubmitBatchResponse, ClientError> {
        let body = SubmitBatchRequest {
            txs: txs.iter().map(|t| hex::encode(t.to_bytes())).collect(),
        };
        self.post_json("/v1/txs/batch", &body).await
    }

    /// `POST /v1/txs/batch` of a body already written as JSON (see [`batch_body`]).
    pub async fn submit_batch_body(
        &self,
        body: Vec<u8>,
    ) -> Result<SubmitBatchResponse, ClientError> {
        self.post_batch_body(body, false).await
    }

    /// Like [`Client::submit_batch_body`], marked as gossip
    /// ([`crate::gossip::GOSSIP_HEADER`]) so that the receiver does not push it on.
    pub async fn submit_gossip(&self, body: Vec<u8>) -> Result<SubmitBatchResponse, ClientError> {
        self.post_batch_body(body, true).await
    }

    async fn post_batch_body(
        &self,
        body: Vec<u8>,
        gossip: bool,
    ) -> Result<SubmitBatchResponse, ClientError> {
        let url = self.url_of("/v1/txs/batch");
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if gossip {
            req = req.header(crate::gossip::GOSSIP_HEADER, "1");
        }
        let resp = self.send(req.body(body), &url).await?;
        decode_json(resp, &url).await
    }

    /// `GET /v1/txs/{hash}`; an unknown transaction is [`TxStatus::Unknown`].
    pub async fn tx_status(&self, hash: &Hash) -> Result<TxStatus, ClientError> {
        match self.get_json(&format!("/v1/txs/{hash}"), &[]).await {
            Err(ClientError::Api { status: 404, .. }) => Ok(TxStatus::Unknown),
            other => other,
        }
    }

    /// `GET /v1/txs/{hash}/proof`: the inclusion proof of a committed transaction.
    pub async fn tx_proof(&self, hash: &Hash) -> Result<Proof, ClientError> {
        self.get_json(&format!("/v1/txs/{hash}/proof"), &[]).await
    }

    /// `GET /v1/state?key=<hex>`: a raw state value and its proof, at `height` or the latest.
    pub async fn state_proof(
        &self,
        key: &[u8],
        height: Option<Height>,
    ) -> Result<StateResponse, ClientError> {
        let mut q = vec![("key", hex::encode(key))];
        if let Some(h) = height {
            q.push(("height", h.to_string()));
        }
        self.get_json("/v1/state", &q).await
    }

    /// `GET /v1/state?path=<module>/<key>`.
    pub async fn state_at_path(
        &self,
        path: &str,
        height: Option<Height>,
    ) -> Result<StateResponse, ClientError> {
        let mut q = vec![("path", path.to_string())];
        if let Some(h) = height {
            q.push(("height", h.to_string()));
        }
        self.get_json("/v1/state", &q).await
    }

    /// `GET /v1/query/{module}/{path}?params`.
    pub async fn query(
        &self,
        module: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, ClientError> {
        let q: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let p = format!(
            "/v1/query/{}/{}",
            encode_segment(module),
            path.split('/')
                .map(encode_segment)
                .collect::<Vec<_>>()
                .join("/")
        );
        self.get_json(&p, &q).await
    }

    /// `GET /v1/events`.
    pub async fn events(&self, query: &EventsQuery) -> Result<EventsResponse, ClientError> {
        let mut q: Vec<(&str, String)> = Vec::new();
        let mut opt = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k, v));
            }
        };
        opt("module", query.module.clone());
        opt("kind", query.kind.clone());
        opt("attr", query.attr.clone());
        opt("from_height", query.from_height.map(|h| h.to_string()));
        opt("to_height", query.to_height.map(|h| h.to_string()));
        opt("cursor", query.cursor.clone());
        opt("limit", query.limit.map(|l| l.to_string()));
        self.get_json("/v1/events", &q).await
    }

    /// `GET /v1/accounts/{key}/nonce`: the last nonce `key` used (build with last + 1).
    pub async fn last_nonce(&self, key: &PublicKey) -> Result<u64, ClientError> {
        let r: NonceResponse = self
            .get_json(&format!("/v1/accounts/{key}/nonce"), &[])
            .await?;
        Ok(r.last_nonce)
    }

    /// `GET /v1/genesis`.
    pub async fn genesis(&self) -> Result<Genesis, ClientError> {
        self.get_json("/v1/genesis", &[]).await
    }

    /// `GET /metrics` (OpenMetrics text).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url_of("/metrics");
        let resp = self.send(self.http.get(&url), &url).await?;
        let bytes = read_limited(resp, MAX_RESPONSE_BYTES, &url).await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// `GET /v1/contacts/chains`: the contact chains of the confirmed case of diagnosis
    /// upload `case` (nodes with `[contacts]`). `None` leaves a parameter at the node's
    /// default (2 hops, forward, time-respecting, 100 chains).
    pub async fn contact_chains(
        &self,
        case: &Hash,
        hops: Option<u8>,
        direction: Option<&str>,
        time_respecting: Option<bool>,
        max_results: Option<usize>,
    ) -> Result<crate::api::contacts::ContactChainsResponse, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("case", case.to_hex())];
        if let Some(h) = hops {
            q.push(("hops", h.to_string()));
        }
        if let Some(d) = direction {
            q.push(("direction", d.to_string()));
        }
        if let Some(t) = time_respecting {
            q.push(("time_respecting", t.to_string()));
        }
        if let Some(m) = max_results {
            q.push(("max_results", m.to_string()));
        }
        self.get_json("/v1/contacts/chains", &q).await
    }

    /// `GET /v1/origin`: the ranked outbreak-origin candidates of every cluster of
    /// confirmed cases (nodes with `[origin]`); `refresh` reads the newest ledger events and
    /// recomputes first; `min_cluster_size` drops smaller clusters.
    pub async fn origin(
        &self,
        refresh: bool,
        min_cluster_size: Option<usize>,
    ) -> Result<crate::origin_service::OriginView, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("refresh", refresh.to_string())];
        if let Some(m) = min_cluster_size {
            q.push(("min_cluster_size", m.to_string()));
        }
        self.get_json("/v1/origin", &q).await
    }

    /// `GET /v1/aerosol/rooms`: the last closed windows of the edge's rooms (nodes with
    /// `[aerosol]`), only those ending after `since_s` when given.
    pub async fn aerosol_rooms(
        &self,
        since_s: Option<u64>,
    ) -> Result<crate::aerosol_worker::AerosolRoomsResponse, ClientError> {
        let q: Vec<(&str, String)> = since_s
            .map(|s| ("since_s", s.to_string()))
            .into_iter()
            .collect();
        self.get_json("/v1/aerosol/rooms", &q).await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/openapi.json", &[]).await
    }

    /// `GET` any path of the API, decoding JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let url = self.url_of(path);
        let resp = self.send(self.http.get(&url).query(query), &url).await?;
        decode_json(resp, &url).await
    }

    async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url_of(path);
        let resp = self.send(self.http.post(&url).json(body), &url).await?;
        decode_json(resp, &url).await
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = read_limited(resp, 64 * 1024, url).await.unwrap_or_default();
        Err(api_error(url, status, &body))
    }
}

fn api_error(url: &str, status: StatusCode, body: &[u8]) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.code, e.message),
        Err(_) => {
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .take(MAX_ERROR_MESSAGE_CHARS)
                .collect();
            (code_of_status(status).to_string(), text)
        }
    };
    ClientError::Api {
        url: url.to_string(),
        status: status.as_u16(),
        code,
        message,
    }
}

/// The whole error chain of a reqwest error (its `Display` alone hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, ClientError> {
    let too_large = |n: u64| ClientError::Decode {
        url: url.to_string(),
        message: format!("response of {n} bytes is over the limit of {limit}"),
    };
    if let Some(n) = resp.content_length()
        && n > limit as u64
    {
        return Err(too_large(n));
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        let Some(chunk) = chunk else { break };
        if out.len() + chunk.len() > limit {
            return Err(too_large((out.len() + chunk.len()) as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn decode_json<T: DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> Result<T, ClientError> {
    let bytes = read_limited(resp, MAX_RESPONSE_BYTES, url).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// The body of `POST /v1/txs/batch` (`{"txs": ["<hex>", …]}`) for transactions already in
/// hex, written directly: hex needs no escaping, and no transaction is copied twice.
pub fn batch_body<'a>(hexes: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut body = b"{\"txs\":[".to_vec();
    for (i, h) in hexes.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'"');
        body.extend_from_slice(h.as_bytes());
        body.push(b'"');
    }
    body.extend_from_slice(b"]}");
    body
}

/// Decodes the body of `GET /v1/blocks/{h}/raw`: Borsh of `(Block, CommitCertificate)`,
/// with the block's static checks.
pub fn decode_raw_block(bytes: &[u8]) -> Result<(Block, CommitCertificate), String> {
    let (block, cert): (Block, CommitCertificate) =
        trustedge_types::decode(bytes, MAX_RAW_BLOCK_BYTES).map_err(|e| e.to_string())?;
    // Re-check the block's own limits and every transaction's static rules.
    let block = Block::from_bytes(&block.to_bytes()).map_err(|e| e.to_string())?;
    Ok((block, cert))
}

/// Percent-encodes one URL path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("te1abc"), "te1abc");
        assert_eq!(encode_segment("a b/c?"), "a%20b%2Fc%3F");
    }

    #[test]
    fn error_bodies_keep_the_server_code() {
        let e = api_error(
            "u",
            StatusCode::CONFLICT,
            br#"{"code":"replayed_nonce","message":"nonce 1 was already used"}"#,
        );
        assert_eq!(e.code(), Some("replayed_nonce"));
        assert_eq!(e.status(), Some(409));
        assert!(!e.is_retryable());
        let e = api_error("u", StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(e.code(), Some("internal"));
        assert!(e.is_retryable());
    }

    #[test]
    fn raw_block_decoding_refuses_garbage() {
        assert!(decode_raw_block(&[1, 2, 3]).is_err());
    }
}
