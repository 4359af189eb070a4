//! Contact chains among confirmed cases: `GET /v1/contacts/chains`, on nodes with
//! `[contacts]` ([`crate::contacts_service`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use trustedge_contacts::{ChainQuery, Direction, MAX_HOPS};
use trustedge_types::Hash;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::contacts_service::ChainsError;

/// Most chains one answer may hold.
pub const MAX_RESULTS: usize = 10_000;
/// Chains returned when `max_results` is not given.
pub const DEFAULT_RESULTS: usize = 100;
/// Most stored edges one query looks at.
pub const MAX_EDGES_SCANNED: u64 = 1_000_000;

/// Query of [`chains`].
#[derive(Clone, Debug, Deserialize, utoipa::IntoParams)]
pub struct ChainsQuery {
    /// The confirmed case: its diagnosis upload id (64 hex digits).
    pub case: String,
    /// Most hops in a chain, 1..=16 (default 2).
    pub hops: Option<u8>,
    /// `forward` (whom the case may have infected, onward; default), `backward` (who may
    /// have infected it) or `any` (both, or no time order).
    pub direction: Option<String>,
    /// Whether hop times must be ordered along a chain (default true). Times have day
    /// resolution: contacts of the same day are never ordered against each other.
    pub time_respecting: Option<bool>,
    /// Most chains returned, 1..=10000 (default 100).
    pub max_results: Option<usize>,
}

/// One hop of a chain, from the source outward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactHopResponse {
    /// Upload id of the case nearer the source (hex).
    pub from: String,
    /// Upload id of the case farther from the source (hex).
    pub to: String,
    /// UTC day of the contact (days since the Unix epoch): exposure notices carry only a day.
    pub day: u32,
    /// Time used for ordering: the day's start + 12 h, Unix seconds.
    pub start_s: u64,
    /// Score: the sum of the risk scores of the exposure notices of that pair and day.
    pub score: f32,
}

/// One chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactChainResponse {
    /// Upload id of the reached case (hex).
    pub target: String,
    /// `forward`, `backward`, or `any` (no time order).
    pub direction: String,
    /// The weakest hop's score.
    pub score: f32,
    /// The hops, from the source outward.
    pub hops: Vec<ContactHopResponse>,
}

/// The chains of a case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactChainsResponse {
    /// The queried case's upload id (hex).
    pub case: String,
    /// Hops asked for.
    pub hops: u8,
    /// Direction asked for.
    pub direction: String,
    /// Whether hop times were ordered.
    pub time_respecting: bool,
    /// One chain per reached case (per direction), by hop count, then time.
    pub chains: Vec<ContactChainResponse>,
    /// Whether a bound (`max_results`, or the scan bound) cut the answer short.
    pub truncated: bool,
    /// Stored contacts looked at.
    pub edges_scanned: u64,
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Backward => "backward",
        Direction::Any => "any",
    }
}

/// Parses the query into a case and a [`ChainQuery`]; every refusal is a 400
/// `invalid_query` naming the parameter.
pub fn parse_query(q: &ChainsQuery) -> Result<(Hash, ChainQuery), ApiError> {
    let case = Hash::from_hex(&q.case).map_err(|e| {
        ApiError::invalid_query(format!("case must be a diagnosis upload id (64 hex): {e}"))
    })?;
    let hops = q.hops.unwrap_or(2);
    if hops == 0 || hops > MAX_HOPS {
        return Err(ApiError::invalid_query(format!(
            "hops is {hops}; it must be in 1..={MAX_HOPS}"
        )));
    }
    let direction = match q.direction.as_deref().unwrap_or("forward") {
        "forward" => Direction::Forward,
        "backward" => Direction::Backward,
        "any" => Direction::Any,
        other => {
            return Err(ApiError::invalid_query(format!(
                "direction is {other:?}; it must be forward, backward or any"
            )));
        }
    };
    let max_results = q.max_results.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max_results) {
        return Err(ApiError::invalid_query(format!(
            "max_results is {max_results}; it must be in 1..={MAX_RESULTS}"
        )));
    }
    Ok((
        case,
        ChainQuery {
            max_hops: hops,
            direction,
            time_respecting: q.time_respecting.unwrap_or(true),
            max_results,
            max_edges_scanned: MAX_EDGES_SCANNED,
            ..ChainQuery::default()
        },
    ))
}

/// The contact chains of a confirmed case, through other confirmed cases, up to `hops`
/// hops: each hop is a close contact an edge reported (an exposure notice whose RPI turned
/// out to be the later case's), with its day and score. Built from the ledger alone; see
/// `trustedge_contacts::linker`.
#[utoipa::path(
    get, path = "/v1/contacts/chains", tag = "contacts",
    params(ChainsQuery),
    responses(
        (status = 200, description = "The chains (possibly none)", body = ContactChainsResponse),
        (status = 400, description = "invalid_query: a parameter out of range", body = ErrorBody),
        (status = 404, description = "unknown_case: not a confirmed case known here; \
                                      contacts_disabled: the node has no [contacts]", body = ErrorBody),
        (status = 410, description = "case_revoked: the case's keys were revoked", body = ErrorBody),
    )
)]
pub(crate) async fn chains(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<ChainsQuery>,
) -> Result<Json<ContactChainsResponse>, ApiError> {
    let Some(handle) = st.ctx.contacts.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "contacts_disabled",
            "this node does not index contact chains (no [contacts] table)",
        ));
    };
    let (case, query) = parse_query(&q)?;
    let found = tokio::task::spawn_blocking(move || handle.chains(&case, &query))
        .await
        .map_err(|e| ApiError::internal(format!("contact query failed: {e}")))?
        .map_err(|e| match e {
            ChainsError::UnknownCase(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_case", e.to_string())
            }
            ChainsError::Revoked(_) => {
                ApiError::new(StatusCode::GONE, "case_revoked", e.to_string())
            }
            ChainsError::Query(_) => ApiError::invalid_query(e.to_string()),
        })?;
    Ok(Json(ContactChainsResponse {
        case: case.to_hex(),
        hops: query.max_hops,
        direction: direction_name(query.direction).into(),
        time_respecting: query.time_respecting,
        chains: found
            .chains
            .into_iter()
            .map(|c| ContactChainResponse {
                target: c.hops.last().map(|h| h.to.to_hex()).unwrap_or_default(),
                direction: direction_name(c.direction).into(),
                score: c.score,
                hops: c
                    .hops
                    .into_iter()
                    .map(|h| ContactHopResponse {
                        from: h.from.to_hex(),
                        to: h.to.to_hex(),
                        day: u32::try_from(h.start_s / 86_400).unwrap_or(u32::MAX),
                        start_s: h.start_s,
                        score: h.score,
                    })
                    .collect(),
            })
            .collect(),
        truncated: found.truncated,
        edges_scanned: found.edges_scanned,
    }))
}
