//! Extractors whose rejections are JSON [`ApiError`]s, and body decoding.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use trustedge_types::{SignedTx, TypesError};

use crate::api::error::ApiError;
use crate::api::types::SubmitTxHex;

/// Path parameters; a rejection is a 400 `invalid_path`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e| ApiError::invalid_path(e.body_text()))
    }
}

/// Query parameters; a rejection is a 400 `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::invalid_query(e.body_text()))
    }
}

/// The buffered body, or the JSON error for a body that could not be read (413 when over
/// the limit).
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("request body is too large: {}", e.body_text()))
        } else {
            ApiError::new(e.status(), "invalid_body", e.body_text())
        }
    })
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON (also assumed when no content type is given).
    Json,
    /// Raw canonical bytes.
    Binary,
}

/// The kind of body the `Content-Type` header announces; anything but JSON and
/// octet-stream is a 415.
pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let v = v.to_str().unwrap_or_default();
    let mime = v.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(BodyKind::Json)
    } else if mime.eq_ignore_ascii_case("application/octet-stream") {
        Ok(BodyKind::Binary)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "content type {v:?} is not supported; send application/json or \
                 application/octet-stream"
            ),
        ))
    }
}

/// Maps a decoding failure of a transaction to its API error (413 for oversize).
pub fn tx_decode_error(e: TypesError) -> ApiError {
    match e {
        TypesError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::malformed(format!("transaction does not decode: {other}")),
    }
}

/// Decodes a hex transaction (an optional `0x` prefix is accepted).
pub fn tx_from_hex(s: &str) -> Result<SignedTx, ApiError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(s).map_err(|e| ApiError::malformed(format!("tx is not hex: {e}")))?;
    SignedTx::from_bytes(&bytes).map_err(tx_decode_error)
}

/// Decodes the body of `POST /v1/txs`: raw bytes, `{"tx": "<hex>"}` or a JSON `SignedTx`.
pub fn tx_from_body(kind: BodyKind, body: &[u8]) -> Result<SignedTx, ApiError> {
    match kind {
        BodyKind::Binary => SignedTx::from_bytes(body).map_err(tx_decode_error),
        BodyKind::Json => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::malformed(format!("body is not JSON: {e}")))?;
            let is_hex_form = value
                .as_object()
                .is_some_and(|o| o.len() == 1 && o.contains_key("tx"));
            if is_hex_form {
                let SubmitTxHex { tx } = serde_json::from_value(value).map_err(|e| {
                    ApiError::malformed(format!("\"tx\" must be a hex string: {e}"))
                })?;
                tx_from_hex(&tx)
            } else {
                let tx: SignedTx = serde_json::from_value(value).map_err(|e| {
                    ApiError::malformed(format!(
                        "body is neither {{\"tx\": \"<hex>\"}} nor a JSON SignedTx: {e}"
                    ))
                })?;
                tx.check_static().map_err(tx_decode_error)?;
                Ok(tx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_types::{Keypair, Payload, TxBody};

    fn tx() -> SignedTx {
        let k = Keypair::from_seed([1; 32]);
        TxBody {
            chain_id: "c".into(),
            signer: k.public(),
            nonce: 1,
            expiry_height: 9,
            payload: Payload {
                module: "orgs".into(),
                call: vec![1],
            },
        }
        .sign(&k)
    }

    #[test]
    fn every_body_form_decodes_to_the_same_tx() {
        let t = tx();
        let hex_form = format!("{{\"tx\":\"{}\"}}", hex::encode(t.to_bytes()));
        let json_form = serde_json::to_vec(&t).unwrap();
        assert_eq!(
            tx_from_body(BodyKind::Json, hex_form.as_bytes()).unwrap(),
            t
        );
        assert_eq!(tx_from_body(BodyKind::Json, &json_form).unwrap(), t);
        assert_eq!(tx_from_body(BodyKind::Binary, &t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn bad_bodies_are_malformed() {
        for body in [
            &b"{"[..],
            b"{\"tx\": 5}",
            b"{\"tx\": \"zz\"}",
            b"[]",
            b"{\"tx\":\"00\"}",
        ] {
            let e = tx_from_body(BodyKind::Json, body).unwrap_err();
            assert_eq!(e.code(), "malformed", "{}", String::from_utf8_lossy(body));
        }
        let e = tx_from_body(BodyKind::Binary, &[0u8; 70 * 1024]).unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(body_kind(&h).unwrap(), BodyKind::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_kind(&h).unwrap(), BodyKind::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/octet-stream".parse().unwrap(),
        );
        assert_eq!(body_kind(&h).unwrap(), BodyKind::Binary);
        h.insert(header::CONTENT_TYPE, "text/xml".parse().unwrap());
        assert_eq!(body_kind(&h).unwrap_err().status.as_u16(), 415);
    }
}
