//! Contact tracing for devices: `GET /v1/tracing/notices?day=N` (the exposure notices of a
//! day, one RPI each, from the ledger) and the GAEN key exports of nodes with `[tracing]`:
//! `GET /v1/tracing/exports/{day}.zip` (the day's released diagnosis keys, signed by the
//! node's P-256 export key) and `GET /v1/tracing/exports/public.pem` (its public key).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use trustedge_tracing::DiagnosisKey;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};

/// Most keys read for one export (the released keys of one day).
pub const MAX_EXPORT_KEYS: usize = trustedge_gaen_export::MAX_KEYS_PER_FILE;

/// One exposure notice.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TracingNotice {
    /// Notice id (hex).
    pub id: String,
    /// The exposed device's RPI (hex): exactly one.
    pub rpis: Vec<String>,
    /// Risk score.
    pub risk_score: u32,
    /// UTC day of the exposure.
    pub day: u32,
    /// The diagnosis upload that triggered it (hex).
    pub source_upload: String,
    /// Height it was published at.
    pub height: u64,
}

/// A page of a day's notices.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TracingNoticesResponse {
    /// The day.
    pub day: u32,
    /// Notices, by id.
    pub notices: Vec<TracingNotice>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Query of [`notices`].
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
pub struct NoticesQuery {
    /// UTC day, days since the Unix epoch.
    pub day: u32,
    /// Id of the last notice of the previous page (hex).
    pub after: Option<String>,
    /// Most notices in the page.
    pub limit: Option<u32>,
}

/// The exposure notices of a day; a device matches each notice's RPI against the RPIs it
/// broadcast (`trustedge_tracing::matching::match_notices`).
#[utoipa::path(
    get, path = "/v1/tracing/notices", tag = "tracing",
    params(NoticesQuery),
    responses(
        (status = 200, description = "A page of the day's notices", body = TracingNoticesResponse),
        (status = 400, description = "invalid_query", body = ErrorBody),
    )
)]
pub(crate) async fn notices(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<NoticesQuery>,
) -> Result<Json<TracingNoticesResponse>, ApiError> {
    let mut params = BTreeMap::new();
    params.insert("day".to_string(), q.day.to_string());
    if let Some(a) = q.after {
        params.insert("after".to_string(), a);
    }
    if let Some(l) = q.limit {
        params.insert("limit".to_string(), l.to_string());
    }
    let v = st
        .ledger(move |l| Ok(l.query(trustedge_contracts::exposure::NAME, "notices", &params)?))
        .await?;
    serde_json::from_value(v)
        .map(Json)
        .map_err(|e| ApiError::internal(format!("exposure notices answer: {e}")))
}

/// Every released key of `day`, through the `diagnosis` module's paged query.
fn day_keys(l: &trustedge_chain::Ledger, day: u32) -> Result<Vec<DiagnosisKey>, ApiError> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = BTreeMap::new();
        params.insert("day".to_string(), day.to_string());
        params.insert("limit".to_string(), "1000".to_string());
        if let Some(a) = &after {
            params.insert("after".to_string(), a.clone());
        }
        let v = l.query(trustedge_contracts::diagnosis::NAME, "released", &params)?;
        for k in v["keys"].as_array().into_iter().flatten() {
            let key: DiagnosisKey = serde_json::from_value(k.clone())
                .map_err(|e| ApiError::internal(format!("released key: {e}")))?;
            keys.push(key);
        }
        if keys.len() > MAX_EXPORT_KEYS {
            return Err(ApiError::too_large(format!(
                "day {day} has more than {MAX_EXPORT_KEYS} released keys; batched exports \
                 are not served yet"
            )));
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return Ok(keys),
        }
    }
}

/// A GAEN export of a day (`{day}.zip`: `export.bin` + `export.sig`, ECDSA P-256 /
/// SHA-256) or the public key that verifies it (`public.pem`).
#[utoipa::path(
    get, path = "/v1/tracing/exports/{file}", tag = "tracing",
    params(("file" = String, Path, description = "`<day>.zip` (UTC day, days since the Unix epoch) or `public.pem`")),
    responses(
        (status = 200, description = "The zip (application/zip) or the PEM public key", content_type = "application/octet-stream"),
        (status = 400, description = "invalid_path", body = ErrorBody),
        (status = 404, description = "not_found: this node serves no exports", body = ErrorBody),
        (status = 413, description = "too_large: more keys than one file holds", body = ErrorBody),
    )
)]
pub(crate) async fn export(
    State(st): State<ApiState>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let signer = st
        .ctx
        .tracing_export
        .clone()
        .ok_or_else(|| ApiError::not_found("this node serves no exports ([tracing] is off)"))?;
    if file == "public.pem" {
        return Ok((
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            signer.public_pem.clone(),
        )
            .into_response());
    }
    let day: u32 = file
        .strip_suffix(".zip")
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid_path(format!("{file:?} is neither <day>.zip nor public.pem"))
        })?;
    let keys = st.ledger(move |l| day_keys(l, day)).await?;
    let start = u64::from(day) * 86_400;
    let meta = trustedge_gaen_export::ExportMeta::new(
        start,
        start + 86_400,
        signer.region.clone(),
        signer.region.clone(),
        "v1",
    );
    let zip = tokio::task::spawn_blocking(move || {
        trustedge_gaen_export::build_export_zip(&keys, &meta, &signer.signing_key)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("building the export: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{day}.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}
