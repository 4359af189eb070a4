//! Outbreak-origin candidates: `GET /v1/origin`, on nodes with `[origin]`
//! ([`crate::origin_service`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::origin_service::OriginView;

/// Query of [`origin`].
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OriginQuery {
    /// Read the ledger's newest events and recompute before answering (default false: the
    /// answer the worker last computed).
    pub refresh: Option<bool>,
    /// Only clusters with at least this many cases (default 1: every cluster).
    pub min_cluster_size: Option<usize>,
}

/// The ranked outbreak-origin candidates of every cluster of linked confirmed cases, with
/// explanations (the contacts and rooms that support each), the most likely transmission
/// tree and the earliest-onset baseline. Built from ledger data alone: diagnosis uploads
/// (cases, onset, confirmation), exposure notices between cases (close contacts) and case
/// presences in alerted rooms.
#[utoipa::path(
    get, path = "/v1/origin", tag = "origin",
    params(OriginQuery),
    responses(
        (status = 200, description = "The clusters and their ranked candidates", body = OriginView),
        (status = 400, description = "invalid_query: a parameter out of range", body = ErrorBody),
        (status = 404, description = "origin_disabled: the node has no [origin]", body = ErrorBody),
        (status = 500, description = "internal: the inference failed", body = ErrorBody),
    )
)]
pub(crate) async fn origin(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<OriginQuery>,
) -> Result<Json<OriginView>, ApiError> {
    let Some(handle) = st.ctx.origin.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "origin_disabled",
            "this node does not infer outbreak origins (no [origin] table)",
        ));
    };
    let min = q.min_cluster_size.unwrap_or(1);
    if min == 0 {
        return Err(ApiError::invalid_query(
            "min_cluster_size must be at least 1",
        ));
    }
    let refresh = q.refresh.unwrap_or(false);
    let view: Arc<OriginView> = tokio::task::spawn_blocking(move || handle.view(refresh))
        .await
        .map_err(|e| ApiError::internal(format!("origin inference failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = (*view).clone();
    if min > 1 {
        let keep: Vec<bool> = out.clusters.iter().map(|c| c.cases.len() >= min).collect();
        let mut k = keep.iter();
        out.clusters.retain(|_| k.next().copied().unwrap_or(false));
        let mut k = keep.iter();
        out.baseline.retain(|_| k.next().copied().unwrap_or(false));
    }
    Ok(Json(out))
}
