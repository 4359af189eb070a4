//! API errors: a status and a JSON body `{"code": "<stable_code>", "message": "<text>"}`.
//!
//! | code | status | meaning |
//! |---|---|---|
//! | `malformed`, `malformed_call`, `unknown_module` | 400 | the transaction does not decode |
//! | `invalid_path`, `invalid_query`, `invalid_body` | 400 | the request does not parse |
//! | `bad_signature`, `unknown_signer` | 401 | the signer is not authenticated |
//! | `revoked_signer`, `suspended_signer` | 403 | the signer may not sign now |
//! | `not_found` | 404 | no such transaction, block, route, module or entity |
//! | `method_not_allowed` | 405 | the route exists with another method |
//! | `replayed_nonce`, `duplicate`, `already_committed` | 409 | the transaction was seen before |
//! | `too_large` | 413 | the body or the transaction is over its limit |
//! | `unsupported_media_type` | 415 | the body is neither JSON nor octet-stream |
//! | `wrong_chain_id`, `expired` | 422 | the transaction cannot be included on this chain |
//! | `mempool_full` | 429 | retry later |
//! | `storage`, `internal` | 500 | the node failed |
//! | `forward_failed` | 502 | a follower could not reach any upstream |
//! | `busy`, `timeout` | 503 | too many requests in flight, or one took too long |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use trustedge_chain::{LedgerError, MempoolError, SubmitError};
use trustedge_execution::{AdmissionError, QueryError};

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code.
    #[schema(example = "bad_signature")]
    pub code: String,
    /// Human-readable explanation.
    #[schema(example = "bad signature")]
    pub message: String,
}

/// An error the API answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
            },
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 `invalid_query`.
    pub fn invalid_query(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// 400 `invalid_path`.
    pub fn invalid_path(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message)
    }

    /// 400 `malformed`: a transaction (or the body carrying it) does not decode.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.body.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The status a stable transaction-refusal code is answered with.
pub fn status_of_code(code: &str) -> StatusCode {
    match code {
        "bad_signature" | "unknown_signer" => StatusCode::UNAUTHORIZED,
        "revoked_signer" | "suspended_signer" => StatusCode::FORBIDDEN,
        "replayed_nonce" | "duplicate" | "already_committed" => StatusCode::CONFLICT,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "wrong_chain_id" | "expired" => StatusCode::UNPROCESSABLE_ENTITY,
        "mempool_full" => StatusCode::TOO_MANY_REQUESTS,
        "storage" | "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        "forward_failed" => StatusCode::BAD_GATEWAY,
        "busy" | "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        "not_found" => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        let code = e.code();
        ApiError::new(status_of_code(code), code, e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let code = match &e {
            SubmitError::Rejected(a) => return a.clone().into(),
            SubmitError::Mempool(MempoolError::Duplicate(_)) => "duplicate",
            SubmitError::Mempool(MempoolError::Full { .. }) => "mempool_full",
            SubmitError::AlreadyCommitted(_) => "already_committed",
            SubmitError::Store(_) | SubmitError::State(_) => "storage",
        };
        ApiError::new(status_of_code(code), code, e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(m) => ApiError::not_found(format!("not found: {m}")),
            LedgerError::Query(q) => q.into(),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                other.to_string(),
            ),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::NotFound(_) => ApiError::not_found(e.to_string()),
            QueryError::Invalid(_) => ApiError::invalid_query(e.to_string()),
            QueryError::Storage(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            }
        }
    }
}

/// The code used for a bare status (responses not built by a handler: unknown routes,
/// methods, rejected bodies).
pub fn code_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "mempool_full",
        s if s.is_server_error() => "internal",
        _ => "invalid_body",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{PublicKey, TypesError};

    #[test]
    fn admission_codes_map_to_statuses() {
        let k = PublicKey([1; 32]);
        let cases: Vec<(AdmissionError, u16)> = vec![
            (AdmissionError::BadSignature, 401),
            (AdmissionError::UnknownSigner(k), 401),
            (AdmissionError::RevokedSigner(k), 403),
            (AdmissionError::SuspendedSigner(k), 403),
            (AdmissionError::StaleNonce { last: 2, got: 1 }, 409),
            (
                AdmissionError::WrongChain {
                    expected: "a".into(),
                    got: "b".into(),
                },
                422,
            ),
            (
                AdmissionError::Expired {
                    expiry: 1,
                    height: 2,
                },
                422,
            ),
            (
                AdmissionError::Malformed(TypesError::Codec("x".into())),
                400,
            ),
            (
                AdmissionError::Malformed(TypesError::TooLarge {
                    what: "tx",
                    size_bytes: 2,
                    limit_bytes: 1,
                }),
                413,
            ),
            (AdmissionError::UnknownModule("m".into()), 400),
        ];
        for (e, status) in cases {
            let code = e.code();
            let api: ApiError = e.into();
            assert_eq!(api.status.as_u16(), status, "{code}");
            assert_eq!(api.code(), code);
        }
        let full: ApiError = SubmitError::Mempool(MempoolError::Full { txs: 1, bytes: 1 }).into();
        assert_eq!((full.status.as_u16(), full.code()), (429, "mempool_full"));
    }
}
