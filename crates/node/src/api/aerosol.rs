//! The edge's aerosol risk per room and window: `GET /v1/aerosol/rooms`, on edge nodes with
//! `[aerosol]` ([`crate::aerosol_worker`]). Local data of the edge (room names, occupancy),
//! never on the ledger.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiQuery;
use crate::aerosol_worker::AerosolRoomsResponse;

/// Query of [`rooms`].
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AerosolRoomsQuery {
    /// Only windows ending after this time, Unix seconds (default: every window kept).
    pub since_s: Option<u64>,
}

/// Every room the edge monitors, with the infection risk of its last closed 15-minute
/// windows (at most a day's per room, oldest first): probability, mean occupancy, the
/// detectors' state and whether an alert was emitted. Rooms are named as in the edge's
/// `[aerosol]` table.
#[utoipa::path(
    get, path = "/v1/aerosol/rooms", tag = "aerosol",
    params(AerosolRoomsQuery),
    responses(
        (status = 200, description = "The rooms and their last closed windows", body = AerosolRoomsResponse),
        (status = 400, description = "invalid_query: an unknown or malformed parameter", body = ErrorBody),
        (status = 404, description = "aerosol_disabled: the node has no [aerosol]", body = ErrorBody),
    )
)]
pub(crate) async fn rooms(
    State(st): State<ApiState>,
    ApiQuery(q): ApiQuery<AerosolRoomsQuery>,
) -> Result<Json<AerosolRoomsResponse>, ApiError> {
    let Some(rooms) = st.ctx.aerosol.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "aerosol_disabled",
            "this node scores no rooms (no [aerosol] table, or no [mqtt])",
        ));
    };
    Ok(Json(rooms.snapshot(q.since_s)))
}
