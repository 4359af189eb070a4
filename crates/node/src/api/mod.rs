//! The HTTP API: an axum router over the shared [`Ledger`], documented with OpenAPI
//! (`GET /openapi.json`).
//!
//! Every ledger call may block on disk, so handlers run it on tokio's blocking pool, at most
//! [`MAX_CONCURRENT_LEDGER_CALLS`] at a time. Every error is JSON `{"code","message"}`
//! (see [`error`] for the codes and statuses); nothing a client sends makes a handler panic.

pub mod aerosol;
pub mod contacts;
pub mod docs;
pub mod edge;
pub mod error;
mod events;
pub mod extract;
pub(crate) mod handlers;
pub mod origin;
pub mod tracing;
pub mod types;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use trustedge_chain::Ledger;

use crate::config::Role;
use crate::follower::{Forwarder, SyncHandle};
use crate::gossip::Gossip;
use crate::metrics::Metrics;
pub use error::{ApiError, ErrorBody};
use types::Mode;

/// Most ledger calls running on blocking threads at once; further requests wait.
pub const MAX_CONCURRENT_LEDGER_CALLS: usize = 64;
/// Most requests in flight; more are answered 503 `busy` at once rather than queued.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 1024;
/// Longest a request may take, body upload included; then it is answered 503 `timeout`.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest error body a non-JSON error response may have before it is replaced.
const MAX_PLAIN_ERROR_BYTES: usize = 16 * 1024;

/// Every route of the API, as `(method, path)` in OpenAPI notation.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/txs"),
    ("post", "/v1/txs/batch"),
    ("get", "/v1/txs/{hash}"),
    ("get", "/v1/txs/{hash}/proof"),
    ("get", "/v1/blocks/latest"),
    ("get", "/v1/blocks/{height}"),
    ("get", "/v1/blocks/hash/{hash}"),
    ("get", "/v1/blocks/{height}/raw"),
    ("get", "/v1/headers"),
    ("get", "/v1/status"),
    ("get", "/v1/state"),
    ("get", "/v1/query/{module}/{path}"),
    ("get", "/v1/events"),
    ("get", "/v1/orgs"),
    ("get", "/v1/orgs/{id}"),
    ("get", "/v1/devices"),
    ("get", "/v1/devices/{address}"),
    ("get", "/v1/accounts/{public_key}/nonce"),
    ("get", "/v1/genesis"),
    ("get", "/v1/edge/records/{id}/proof"),
    ("get", "/v1/tracing/notices"),
    ("get", "/v1/tracing/exports/{file}"),
    ("get", "/v1/contacts/chains"),
    ("get", "/v1/origin"),
    ("get", "/v1/aerosol/rooms"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// What the API serves and how it reaches the rest of the node.
pub struct ApiContext {
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Node name.
    pub name: String,
    /// Node role.
    pub role: Role,
    /// How the node makes progress.
    pub mode: Mode,
    /// Where a follower forwards transactions (none on the sealer).
    pub forward: Option<Forwarder>,
    /// A follower's view of its upstream.
    pub sync: Option<SyncHandle>,
    /// Where transactions admitted here are pushed (nodes with `gossip_peers`).
    pub gossip: Option<Arc<Gossip>>,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// The edge store, on edge nodes with `[mqtt]`.
    pub edge_store: Option<Arc<crate::edge_store::EdgeStore>>,
    /// The GAEN export signer, on nodes with `[tracing]`.
    pub tracing_export: Option<Arc<crate::tracing_worker::ExportSigner>>,
    /// The contact index, on nodes with `[contacts]`.
    pub contacts: Option<crate::contacts_service::ContactsHandle>,
    /// The origin service, on nodes with `[origin]`.
    pub origin: Option<crate::origin_service::OriginHandle>,
    /// The rooms' last closed aerosol windows, on edge nodes with `[aerosol]`.
    pub aerosol: Option<crate::aerosol_worker::AerosolRooms>,
}

/// The shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    ctx: Arc<ApiContext>,
    ledger_calls: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
}

impl ApiState {
    /// Runs `f` on the ledger on a blocking thread.
    async fn ledger<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Ledger) -> Result<T, ApiError> + Send + 'static,
    {
        let _permit = self
            .ledger_calls
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the node is shutting down"))?;
        let ledger = self.ctx.ledger.clone();
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| ApiError::internal(format!("ledger call failed: {e}")))?
    }
}

/// The API router.
pub fn router(ctx: ApiContext) -> Router {
    let max_body = ctx.max_request_bytes;
    let state = ApiState {
        ctx: Arc::new(ctx),
        ledger_calls: Arc::new(Semaphore::new(MAX_CONCURRENT_LEDGER_CALLS)),
        in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
    };
    use handlers as h;
    Router::new()
        .route("/v1/txs", post(h::submit_tx))
        .route("/v1/txs/batch", post(h::submit_batch))
        .route("/v1/txs/{hash}", get(h::tx_status))
        .route("/v1/txs/{hash}/proof", get(h::tx_proof))
        .route("/v1/blocks/latest", get(h::latest_block))
        .route("/v1/blocks/{height}", get(h::block_by_height))
        .route("/v1/blocks/hash/{hash}", get(h::block_by_hash))
        .route("/v1/blocks/{height}/raw", get(h::block_raw))
        .route("/v1/headers", get(h::headers))
        .route("/v1/status", get(h::status))
        .route("/v1/state", get(h::state))
        .route("/v1/query/{module}/{*path}", get(h::query))
        .route("/v1/events", get(h::events))
        .route("/v1/orgs", get(h::orgs))
        .route("/v1/orgs/{id}", get(h::org))
        .route("/v1/devices", get(h::devices))
        .route("/v1/devices/{address}", get(h::device))
        .route("/v1/accounts/{public_key}/nonce", get(h::nonce))
        .route("/v1/genesis", get(h::genesis))
        .route("/v1/edge/records/{id}/proof", get(edge::record_proof))
        .route("/v1/tracing/notices", get(tracing::notices))
        .route("/v1/tracing/exports/{file}", get(tracing::export))
        .route("/v1/contacts/chains", get(contacts::chains))
        .route("/v1/origin", get(origin::origin))
        .route("/v1/aerosol/rooms", get(aerosol::rooms))
        .route("/metrics", get(h::metrics))
        .route("/openapi.json", get(h::openapi))
        .fallback(h::no_route)
        // Bodies over the limit are refused while being read (413, JSON, by the handlers).
        .layer(DefaultBodyLimit::max(max_body))
        // Requests that announce an oversized body are refused before it is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Bounds requests in flight and their duration, counts every request by route and status,
/// and makes sure every error response is JSON.
async fn observe(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let resp = match state.in_flight.clone().try_acquire_owned() {
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_REQUESTS_IN_FLIGHT} requests are in flight; retry shortly"),
        )
        .into_response(),
        Ok(_permit) => match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(resp) => json_errors(resp).await,
            Err(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request took longer than {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
            .into_response(),
        },
    };
    state
        .ctx
        .metrics
        .http_request(&method, &route, resp.status().as_u16());
    resp
}

/// Replaces a non-JSON error response (an unknown method, a body refused by a layer) with
/// the JSON error format, keeping its status and text.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, error::code_of_status(status), message).into_response();
    // Keep headers such as `Allow` on a 405.
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// A response with a fixed content type.
fn with_content_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
