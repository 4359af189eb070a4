//! A light edge node (`role = "edge"`, `light = true`): a partial ledger.
//!
//! It opens no ledger database. It holds a [`LightClient`] built from the genesis file (the
//! trust root: chain id, validator set and the genesis state root, computed locally) and
//! follows its upstream:
//!
//! 1. `GET /v1/status` for the upstream's height;
//! 2. `GET /v1/headers?from=&to=` (at most [`MAX_HEADERS_PER_ROUND`] a round), each header
//!    with its commit certificate;
//! 3. when a header names a new validator set, `GET /v1/state?key=<validator-set key>&height=
//!    <h - 1>` for the proof of that set against the previous verified state root.
//!
//! Every header goes through [`LightClient::ingest`]; an upstream can delay the node but never
//! make it accept a header the validators did not finalise. Verified headers (the client's
//! bounded window and checkpoints, see [`trustedge_edge::light`]) are persisted after each
//! round that advanced, as one file (`light-headers.bin` beside `db_path`) replaced
//! atomically, so a restart resumes where it stopped.
//!
//! Its API: `GET /v1/status` (mode `light`), `GET /v1/headers` (held headers),
//! `GET /v1/light/verify-state?key=<hex>|path=<module>/<key>` (fetches the value and proof
//! from the upstream at the latest verified height and verifies it locally),
//! `GET /v1/light/verify-tx/{hash}` (an inclusion proof, checked against the held header)
//! and `POST /v1/txs` (forwarded to the upstream unchanged: a light node cannot admit).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::Proof;
use trustedge_contracts::genesis::{Genesis, validator_set_key};
use trustedge_edge::light::{
    DEFAULT_WINDOW_HEADERS, LightClient, LightSnapshot, TrustedGenesis, TxInclusion,
    ValidatorSetProof,
};
use trustedge_types::{BlockHeader, Hash, Height};
use utoipa::IntoParams;

use crate::NodeError;
use crate::api::error::ApiError;
use crate::api::extract::{self, ApiPath, ApiQuery};
use crate::api::types::{
    HeaderEntry, HeadersQuery, HeadersResponse, MAX_HEADERS, Mode, StatusResponse,
    SubmitTxResponse, SyncStatus,
};
use crate::client::{Client, ClientError};
use crate::config::NodeConfig;
use crate::follower::{Backoff, Forwarder, MAX_ROUND_BACKOFF, retry};
use crate::node::load_genesis;

/// Most headers one follow round fetches.
pub const MAX_HEADERS_PER_ROUND: u64 = 100;
/// Name of the persisted headers file, beside the configured `db_path`.
pub const HEADERS_FILE: &str = "light-headers.bin";

/// Shared state of a light node.
struct LightState {
    name: String,
    genesis_hash: Hash,
    client: Mutex<LightClient>,
    sync: Mutex<SyncStatus>,
    upstreams: Vec<Client>,
    forward: Forwarder,
    snapshot_path: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The light client is changed only by ingest, which changes nothing on error, so a
    // panic elsewhere cannot leave it half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A light node running in this process.
pub struct RunningLightNode {
    addr: SocketAddr,
    state: Arc<LightState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), NodeError>>,
    worker: JoinHandle<()>,
}

impl RunningLightNode {
    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The latest verified height.
    pub fn height(&self) -> Height {
        lock(&self.state.client).height()
    }

    /// A copy of the light client's state.
    pub fn snapshot(&self) -> LightSnapshot {
        lock(&self.state.client).snapshot()
    }

    /// Stops following and the API, and waits for both.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.stop.send(true);
        let worker = self.worker.await;
        let server = self.server.await;
        worker.map_err(|e| NodeError::Task {
            task: "light follower",
            message: e.to_string(),
        })?;
        server.map_err(|e| NodeError::Task {
            task: "api",
            message: e.to_string(),
        })?
    }
}

fn snapshot_path(home: &Path, config: &NodeConfig) -> PathBuf {
    NodeConfig::resolve(home, &config.db_path).with_file_name(HEADERS_FILE)
}

/// Loads the persisted headers, or starts from genesis if there are none.
fn load_client(trust: TrustedGenesis, path: &Path) -> Result<LightClient, NodeError> {
    let err = |message: String| NodeError::Config {
        path: path.to_path_buf(),
        message,
    };
    if !path.exists() {
        return LightClient::new(trust, DEFAULT_WINDOW_HEADERS).map_err(|e| err(e.to_string()));
    }
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > trustedge_edge::light::MAX_SNAPSHOT_BYTES as u64 {
        return Err(err(format!("{} bytes is too large", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let snap = LightSnapshot::from_bytes(&bytes).map_err(|e| err(e.to_string()))?;
    LightClient::restore(trust, DEFAULT_WINDOW_HEADERS, snap).map_err(|e| {
        err(format!(
            "{e}; move the file away to resync from genesis (headers only, nothing is lost)"
        ))
    })
}

/// Writes the snapshot to a temporary file, syncs it and renames it over the old one, so a
/// crash leaves either the old or the new file, never a torn one.
fn save_snapshot(path: &Path, snap: &LightSnapshot) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&snap.to_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Starts the light edge node whose home directory is `home`.
pub async fn start_light_node(
    home: &Path,
    config: NodeConfig,
) -> Result<RunningLightNode, NodeError> {
    let config_err = |message: String| NodeError::Config {
        path: home.join(crate::config::CONFIG_FILE),
        message,
    };
    config.validate().map_err(config_err)?;
    if !config.light {
        return Err(config_err("not a light node (light = false)".into()));
    }
    let genesis: Genesis = load_genesis(&NodeConfig::resolve(home, &config.genesis_path))?;
    let genesis_hash = genesis.hash();
    let trust = TrustedGenesis::from_genesis(&genesis).map_err(|e| NodeError::Genesis {
        path: NodeConfig::resolve(home, &config.genesis_path),
        message: e.to_string(),
    })?;
    let path = snapshot_path(home, &config);
    let client = load_client(trust, &path)?;
    let timeout = Duration::from_millis(config.upstream_timeout_ms);
    let state = Arc::new(LightState {
        name: config.name.clone(),
        genesis_hash,
        client: Mutex::new(client),
        sync: Mutex::new(SyncStatus::default()),
        upstreams: config
            .upstream
            .iter()
            .map(|u| Client::with_timeout(u.clone(), timeout))
            .collect(),
        forward: Forwarder::new(&config.upstream, timeout),
        snapshot_path: path,
    });

    let addr = config.listen_addr().map_err(config_err)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Bind {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    let local_addr = listener.local_addr().map_err(|e| NodeError::Bind {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(follow(
        state.clone(),
        Duration::from_millis(config.follow_interval_ms),
        stop_rx.clone(),
    ));
    let app = router(state.clone(), config.max_request_bytes);
    let mut server_stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|e| NodeError::Serve(e.to_string()))
    });
    tracing::info!(
        name = %config.name,
        api = %local_addr,
        height = lock(&state.client).height(),
        "light edge node started"
    );
    Ok(RunningLightNode {
        addr: local_addr,
        state,
        stop,
        server,
        worker,
    })
}

/// Runs a light node until `shutdown` completes.
pub async fn run_light_node(
    home: &Path,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut node = start_light_node(home, config).await?;
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down");
            node.shutdown().await
        }
        r = &mut node.server => {
            let _ = node.stop.send(true);
            let _ = (&mut node.worker).await;
            r.map_err(|e| NodeError::Task { task: "api", message: e.to_string() })?
        }
    }
}

// ------------------------------------------------------------------------------ following

/// Why a round stopped.
#[derive(Debug)]
enum RoundError {
    Upstream(ClientError),
    Refused(String),
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Upstream(e) => write!(f, "{e}"),
            RoundError::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

/// The proof of the validator set of `height` (in the state of `height - 1`).
async fn fetch_set_proof(c: &Client, height: Height) -> Result<ValidatorSetProof, RoundError> {
    let key = validator_set_key();
    let state_height = height.saturating_sub(1);
    let resp = retry(Backoff::SYNC, || c.state_proof(&key, Some(state_height)))
        .await
        .map_err(RoundError::Upstream)?;
    let Proof::State(p) = resp.proof else {
        return Err(RoundError::Refused(
            "the state answer holds no state proof".into(),
        ));
    };
    if p.height != state_height || p.key != key {
        return Err(RoundError::Refused(format!(
            "asked for the validator set at {state_height}, got key {} at {}",
            hex::encode(&p.key),
            p.height
        )));
    }
    let value = p
        .value
        .ok_or_else(|| RoundError::Refused("the upstream says there is no validator set".into()))?;
    Ok(ValidatorSetProof {
        value,
        proof: p.proof,
    })
}

/// One round against one upstream: fetch and verify up to [`MAX_HEADERS_PER_ROUND`]
/// headers. Returns how many were verified; they stay verified even if a later one fails.
async fn round(st: &LightState, c: &Client) -> Result<u64, RoundError> {
    let status = retry(Backoff::SYNC, || c.status())
        .await
        .map_err(RoundError::Upstream)?;
    {
        let mut s = lock(&st.sync);
        s.upstream = Some(c.url().to_string());
        s.upstream_height = Some(status.height);
    }
    let from = lock(&st.client).height().saturating_add(1);
    if status.height < from {
        return Ok(0);
    }
    let to = status
        .height
        .min(from.saturating_add(MAX_HEADERS_PER_ROUND - 1));
    let resp = retry(Backoff::SYNC, || c.headers(from, to))
        .await
        .map_err(RoundError::Upstream)?;
    let mut verified = 0;
    for entry in resp
        .headers
        .into_iter()
        .take(MAX_HEADERS_PER_ROUND as usize)
    {
        let height = entry.header.height;
        let Some(cert) = entry.certificate else {
            return Err(RoundError::Refused(format!(
                "header {height} came without its certificate"
            )));
        };
        let known = lock(&st.client).validators().hash();
        let proof = if entry.header.validator_set_hash != known {
            Some(fetch_set_proof(c, height).await?)
        } else {
            None
        };
        // Verification is a handful of signature checks: short enough to hold the lock.
        lock(&st.client)
            .ingest(entry.header, &cert, proof.as_ref())
            .map_err(|e| RoundError::Refused(e.to_string()))?;
        verified += 1;
    }
    Ok(verified)
}

async fn follow(st: Arc<LightState>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut current = 0usize;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match st.upstreams.get(current) {
            None => interval,
            Some(c) => {
                let outcome = round(&st, c).await;
                let advanced = match &outcome {
                    Ok(n) => *n,
                    Err(_) => 0,
                };
                if advanced > 0 {
                    let snap = lock(&st.client).snapshot();
                    let path = st.snapshot_path.clone();
                    let saved =
                        tokio::task::spawn_blocking(move || save_snapshot(&path, &snap)).await;
                    if let Ok(Err(e)) | Err(e) = saved.map_err(std::io::Error::other) {
                        tracing::warn!(error = %e, "cannot persist light headers");
                    }
                }
                match outcome {
                    Ok(n) => {
                        failures = 0;
                        lock(&st.sync).last_error = None;
                        // Catching up: go again at once.
                        if n >= MAX_HEADERS_PER_ROUND {
                            Duration::ZERO
                        } else {
                            interval
                        }
                    }
                    Err(e) => {
                        tracing::warn!(upstream = c.url(), error = %e, "light follow round failed");
                        lock(&st.sync).last_error = Some(e.to_string());
                        failures = failures.saturating_add(1);
                        current = (current + 1) % st.upstreams.len().max(1);
                        Backoff {
                            attempts: 1,
                            base: interval,
                            max: MAX_ROUND_BACKOFF,
                        }
                        .delay(failures.saturating_sub(1))
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

// ------------------------------------------------------------------------------ API

fn router(st: Arc<LightState>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/headers", get(headers))
        .route("/v1/light/verify-state", get(verify_state))
        .route("/v1/light/verify-tx/{hash}", get(verify_tx))
        .route("/v1/txs", post(submit_tx))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .with_state(st)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {} on a light edge node; it serves /v1/status, /v1/headers, \
         /v1/light/verify-state, /v1/light/verify-tx/{{hash}} and POST /v1/txs",
        uri.path()
    ))
}

async fn status(State(st): State<Arc<LightState>>) -> Json<StatusResponse> {
    let (chain_id, height, block_hash, state_root, time_ms) = {
        let c = lock(&st.client);
        let g = c.genesis();
        match c.latest() {
            Some(h) => (
                g.chain_id.clone(),
                h.height,
                h.hash(),
                h.state_root,
                h.time_ms,
            ),
            None => (
                g.chain_id.clone(),
                0,
                Hash::ZERO,
                g.state_root,
                g.genesis_time_ms,
            ),
        }
    };
    Json(StatusResponse {
        name: st.name.clone(),
        role: crate::config::Role::Edge,
        mode: Mode::Light,
        chain_id,
        height,
        block_hash,
        state_root,
        time_ms,
        mempool_txs: 0,
        genesis_hash: st.genesis_hash,
        sync: Some(lock(&st.sync).clone()),
    })
}

/// The held (verified) headers in a range; heights not held are left out.
async fn headers(
    State(st): State<Arc<LightState>>,
    ApiQuery(q): ApiQuery<HeadersQuery>,
) -> Result<Json<HeadersResponse>, ApiError> {
    let c = lock(&st.client);
    let from = q.from.unwrap_or(1).max(1);
    let to =
        q.to.unwrap_or(u64::MAX)
            .min(c.height())
            .min(from.saturating_add(MAX_HEADERS - 1));
    let mut out = Vec::new();
    for h in from..=to {
        if let Some(header) = c.header(h) {
            out.push(HeaderEntry {
                height: h,
                hash: header.hash(),
                header: header.clone(),
                certificate: None,
            });
        }
    }
    Ok(Json(HeadersResponse { headers: out }))
}

/// Query of `GET /v1/light/verify-state`: exactly one of `key` and `path`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyStateQuery {
    /// The raw state key, hex.
    pub key: Option<String>,
    /// The state key as `<module>/<utf-8 key>`.
    pub path: Option<String>,
}

/// `GET /v1/light/verify-state`: a value (or its absence) proven against a verified header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifiedState {
    /// Height whose state the value is of: the latest verified height.
    pub height: Height,
    /// Hash of the verified header of that height (zero for the genesis state).
    pub block_hash: Hash,
    /// Its state root, which the proof was checked against.
    pub state_root: Hash,
    /// The raw key, hex.
    pub key: String,
    /// The value, hex; `None` if the key is proven absent.
    pub value: Option<String>,
    /// The value decoded by its module, when the module documents the key.
    pub decoded: Option<serde_json::Value>,
    /// The upstream the proof came from.
    pub upstream: String,
    /// Always true: an answer is only given for a proof that verified.
    pub verified: bool,
}

fn parse_key(q: &VerifyStateQuery) -> Result<Vec<u8>, ApiError> {
    crate::api::handlers::parse_state_key(q.key.as_deref(), q.path.as_deref())
}

fn upstream_failed(e: &ClientError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "forward_failed",
        format!("upstream: {e}"),
    )
}

fn proof_rejected(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "proof_rejected", message)
}

/// The module's JSON description of a raw value, if it has one.
fn describe(chain_id: &str, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
    let slash = key.iter().position(|&b| b == b'/')?;
    let module = std::str::from_utf8(&key[..slash]).ok()?;
    trustedge_contracts::runtime(chain_id)
        .module(module)?
        .describe_value(&key[slash + 1..], value)
}

async fn verify_state(
    State(st): State<Arc<LightState>>,
    ApiQuery(q): ApiQuery<VerifyStateQuery>,
) -> Result<Json<VerifiedState>, ApiError> {
    let key = parse_key(&q)?;
    let (height, block_hash, chain_id) = {
        let c = lock(&st.client);
        (
            c.height(),
            c.latest().map_or(Hash::ZERO, BlockHeader::hash),
            c.genesis().chain_id.clone(),
        )
    };
    let mut last_error = None;
    for up in &st.upstreams {
        let resp = match up.state_proof(&key, Some(height)).await {
            Ok(r) => r,
            Err(e) if e.is_retryable() => {
                last_error = Some(upstream_failed(&e));
                continue;
            }
            Err(e) => return Err(upstream_failed(&e)),
        };
        let Proof::State(p) = resp.proof else {
            return Err(proof_rejected("the answer holds no state proof".into()));
        };
        if p.height != height || p.key != key {
            return Err(proof_rejected(format!(
                "asked for the key at height {height}, the proof is for another key or height {}",
                p.height
            )));
        }
        let (state_root, verdict) = {
            let c = lock(&st.client);
            (
                c.latest_state_root(),
                c.verify_state(height, &key, p.value.as_deref(), &p.proof),
            )
        };
        verdict.map_err(|e| proof_rejected(e.to_string()))?;
        return Ok(Json(VerifiedState {
            height,
            block_hash,
            state_root,
            key: hex::encode(&key),
            decoded: p.value.as_ref().and_then(|v| describe(&chain_id, &key, v)),
            value: p.value.as_ref().map(hex::encode),
            upstream: up.url().to_string(),
            verified: true,
        }));
    }
    Err(last_error.unwrap_or_else(|| ApiError::internal("no upstream configured")))
}

/// `GET /v1/light/verify-tx/{hash}`: a committed transaction and its result, proven against
/// the verified header of its block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifiedTx {
    /// The transaction id.
    pub hash: Hash,
    /// Height of its block.
    pub height: Height,
    /// Its position in the block.
    pub index: u32,
    /// The verified result.
    pub result: trustedge_types::TxResult,
    /// Always true.
    pub verified: bool,
}

async fn verify_tx(
    State(st): State<Arc<LightState>>,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<VerifiedTx>, ApiError> {
    let hash = Hash::from_hex(&hash)
        .map_err(|e| ApiError::invalid_path(format!("{hash:?} is not a 32-byte hex hash: {e}")))?;
    let up = st
        .upstreams
        .first()
        .ok_or_else(|| ApiError::internal("no upstream configured"))?;
    let proof = up.tx_proof(&hash).await.map_err(|e| match e.status() {
        Some(404) => ApiError::not_found(format!("transaction {hash} is not committed upstream")),
        _ => upstream_failed(&e),
    })?;
    let Proof::Tx(p) = proof else {
        return Err(proof_rejected(
            "the answer holds no transaction proof".into(),
        ));
    };
    if p.tx.hash() != hash {
        return Err(proof_rejected(
            "the proof is for another transaction".into(),
        ));
    }
    let inclusion = TxInclusion {
        header: p.header,
        index: p.index,
        tx: p.tx,
        tx_proof: p.tx_proof,
        result: p.result,
        result_proof: p.result_proof,
    };
    lock(&st.client).verify_tx(&inclusion).map_err(|e| {
        if e.code() == "header_not_held" {
            ApiError::not_found(e.to_string())
        } else {
            proof_rejected(e.to_string())
        }
    })?;
    Ok(Json(VerifiedTx {
        hash,
        height: inclusion.header.height,
        index: inclusion.index,
        result: inclusion.result,
        verified: true,
    }))
}

/// Forwards a transaction to the upstream: a light node holds no state to admit it against.
async fn submit_tx(
    State(st): State<Arc<LightState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitTxResponse>), ApiError> {
    let kind = extract::body_kind(&headers)?;
    let bytes = extract::body(body)?;
    let tx = extract::tx_from_body(kind, &bytes)?;
    let hash = st.forward.submit(&tx).await?;
    Ok((StatusCode::ACCEPTED, Json(SubmitTxResponse { hash })))
}
