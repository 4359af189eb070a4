//! The `aerosol` module: aerosol alerts that edge nodes publish for rooms whose air carried an
//! elevated risk of airborne infection during a time window.
//!
//! An edge node scores each room it monitors per time window (box model / Rudnick–Milton,
//! ventilation-failure and particle-spike detectors, see `trustedge_aerosol`) and publishes
//! one [`AerosolAlertTx`] per alerting window: the room's *pseudonymous venue id for that
//! UTC day* (the rolling id its beacon broadcasts, derived from a secret that never leaves
//! the edge), the window, the risk and why it alerted ([`AlertKind`]). Devices fetch a day's
//! alerts (`alerts?day=`) or ask by a venue id they heard (`by_venue?venue=&day=`) and match
//! their own presence locally, against the venue ids they heard during the window — as for
//! exposure notices.
//!
//! # Who publishes
//! Members with role [`Role::Operator`] of [`OrgKind::EdgeOperator`] organisations: the edge
//! node's service key, as for exposure notices.
//!
//! # Privacy
//! An alert carries exactly five fields: the 16-byte venue id of the day, start and end of
//! the window (Unix seconds), the risk in parts per million and the kind. There is no field
//! for a room name, a place, an occupancy count or any sensor reading, and the call's JSON
//! form refuses unknown fields, so none can be smuggled in. A venue id changes every UTC
//! day and cannot be linked across days without the venue's secret; that is why a window
//! must lie within one UTC day (its id is that day's). Nothing about who was present ever
//! reaches the ledger: presence is matched on the device.
//!
//! # Checks
//! 1..=[`MAX_ALERTS_PER_CALL`] alerts; a non-zero venue id; `end_s > start_s`, at most
//! [`MAX_WINDOW_S`] long, within one UTC day, ending no later than the block time plus
//! [`MAX_FUTURE_SKEW_S`], on a day no more than [`MAX_ALERT_AGE_DAYS`] before the block's;
//! `risk_ppm ≤ 1,000,000`. An alert is identified by (venue, start, end, kind)
//! ([`alert_id`]); publishing it again, in the same call or later, is refused.
//!
//! # Case presences (for origin inference)
//! [`AerosolCall::ReportCasePresence`] records that a *confirmed case* (a diagnosis upload on
//! the ledger) was in alerted rooms: the edge that relays the case's keys also relays, from the
//! case's device, the venue ids it heard during alerted windows ([`CaseVisit`]: venue id of the
//! day, start, end — nothing else). Minimal disclosure: each visit must overlap a published
//! alert of that venue id, so presences outside elevated-risk windows are never accepted. The
//! upload must be a publication (not a revocation, not wholly revoked since) and each visit's
//! day must be one of its keys' days ±1 (the case was infectious then). The same visit
//! (upload, venue, start, end) reported again, in the same call or later, is *refused*
//! (`duplicate_presence`, `already_exists`), like alerts: a relay that retries sees the
//! refusal and knows the visit is on the ledger. Linking a confirmed case's upload to venue
//! pseudonyms is within the privacy rule (a confirmed case's keys are public anyway); nothing
//! of anyone who was not confirmed is stored.
//!
//! # What is stored
//! - `alert/<alert id: 32 bytes>` → [`AlertRecord`].
//! - `day/<day: 4 bytes BE>/<alert id>` → alert id: alerts by UTC day.
//! - `venue/<venue id: 16 bytes>/<day: 4 bytes BE>/<alert id>` → alert id: alerts by venue id.
//! - `stats` → [`AerosolStats`].
//! - `presence/<presence id: 32 bytes>` → [`PresenceRecord`].
//! - `pupload/<upload id: 32 bytes>/<presence id>` → presence id: presences by case.
//! - `pday/<day: 4 bytes BE>/<presence id>` → presence id: presences by UTC day.
//! - `pstats` → number of case presences (u64).

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::{
    Access, Module, OrgKind, QueryError, Role, StateError, StateRead, TxContext, TxError,
};
use trustedge_types::codec::parse_hex_array;
use trustedge_types::{Hash, Height, codec};

use crate::diagnosis::hex16;
use crate::util::{decode_stored, only_params, page, query_limit, to_json};

/// Name of the module.
pub const NAME: &str = "aerosol";
/// Most alerts in one call.
pub const MAX_ALERTS_PER_CALL: usize = 64;
/// Longest alert window, seconds (a UTC day).
pub const MAX_WINDOW_S: u64 = 86_400;
/// How far an alert's end may lie after the block's time, seconds (edge and validator
/// clocks differ a little).
pub const MAX_FUTURE_SKEW_S: u64 = 300;
/// Oldest alert day accepted, in days before the block's UTC day (as exposure notices).
pub const MAX_ALERT_AGE_DAYS: u32 = 14;
/// Largest risk: a probability of 1, in parts per million.
pub const MAX_RISK_PPM: u32 = 1_000_000;
/// Seconds in a UTC day.
pub const DAY_S: u64 = 86_400;

/// Most visits in one case-presence report.
pub const MAX_VISITS_PER_CALL: usize = 64;

/// Domain tag of alert ids.
const ALERT_ID_TAG: &[u8] = b"trustedge/aerosol-alert/v1";
/// Domain tag of presence ids.
const PRESENCE_ID_TAG: &[u8] = b"trustedge/aerosol-case-presence/v1";

/// Why a window alerted.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum AlertKind {
    /// The window's estimated probability of infection reached the edge's threshold.
    ElevatedRisk = 0,
    /// The room's ventilation failed (CO₂ above its occupancy-expected level) while occupied.
    VentilationFailure = 1,
    /// PM2.5 spiked above its baseline while the room was occupied.
    ParticleSpike = 2,
}

impl AlertKind {
    /// Every kind, in discriminant order.
    pub const ALL: [AlertKind; 3] = [
        AlertKind::ElevatedRisk,
        AlertKind::VentilationFailure,
        AlertKind::ParticleSpike,
    ];

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::ElevatedRisk => "elevated_risk",
            AlertKind::VentilationFailure => "ventilation_failure",
            AlertKind::ParticleSpike => "particle_spike",
        }
    }
}

/// An aerosol alert, as an edge node publishes it. These five fields are all an alert
/// carries (see the module docs, "Privacy").
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct AerosolAlertTx {
    /// The venue's pseudonymous id for the window's UTC day (32 hex digits).
    #[serde(with = "hex16")]
    pub venue: [u8; 16],
    /// Window start, Unix seconds (inclusive).
    pub start_s: u64,
    /// Window end, Unix seconds (exclusive).
    pub end_s: u64,
    /// Probability of infection over the window × 10⁶.
    pub risk_ppm: u32,
    /// Why it alerted.
    pub kind: AlertKind,
}

impl AerosolAlertTx {
    /// The UTC day of the window (days since the Unix epoch), saturating.
    pub fn day(&self) -> u32 {
        day_of(self.start_s)
    }

    /// Its id: [`alert_id`].
    pub fn id(&self) -> Hash {
        alert_id(&self.venue, self.start_s, self.end_s, self.kind)
    }
}

/// A published alert, as stored and as queries return it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Id: [`alert_id`].
    pub id: Hash,
    /// The venue id of the day (hex).
    #[serde(with = "hex16")]
    pub venue: [u8; 16],
    /// Window start, Unix seconds.
    pub start_s: u64,
    /// Window end, Unix seconds.
    pub end_s: u64,
    /// Risk, parts per million.
    pub risk_ppm: u32,
    /// Kind.
    pub kind: AlertKind,
    /// UTC day of the window.
    pub day: u32,
    /// Height it was published at.
    pub height: Height,
}

impl AlertRecord {
    /// The alert as published.
    pub fn alert(&self) -> AerosolAlertTx {
        AerosolAlertTx {
            venue: self.venue,
            start_s: self.start_s,
            end_s: self.end_s,
            risk_ppm: self.risk_ppm,
            kind: self.kind,
        }
    }
}

/// Counters of the module.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct AerosolStats {
    /// Alerts published.
    pub alerts: u64,
    /// Of which elevated-risk windows.
    pub elevated_risk: u64,
    /// Of which ventilation failures.
    pub ventilation_failure: u64,
    /// Of which particle spikes.
    pub particle_spike: u64,
}

/// One stay of a confirmed case in a room, as the case's device heard the venue beacon: the
/// three fields are all a visit carries (see the module docs, "Case presences").
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct CaseVisit {
    /// The venue's pseudonymous id for the visit's UTC day (32 hex digits).
    #[serde(with = "hex16")]
    pub venue: [u8; 16],
    /// First heard, Unix seconds (inclusive).
    pub start_s: u64,
    /// Last heard, Unix seconds (exclusive).
    pub end_s: u64,
}

impl CaseVisit {
    /// The UTC day of the visit, saturating.
    pub fn day(&self) -> u32 {
        day_of(self.start_s)
    }
}

/// A case presence as stored and as queries return it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// Id: [`presence_id`].
    pub id: Hash,
    /// The case's diagnosis upload.
    pub upload: Hash,
    /// The venue id of the day (hex).
    #[serde(with = "hex16")]
    pub venue: [u8; 16],
    /// Start, Unix seconds.
    pub start_s: u64,
    /// End, Unix seconds.
    pub end_s: u64,
    /// UTC day of the visit.
    pub day: u32,
    /// The alerts of the venue the visit overlapped when it was reported (at least one; at
    /// most [`MAX_ALERTS_PER_VISIT`]), so a reader needs no second lookup.
    pub alerts: Vec<Hash>,
    /// Height it was reported at.
    pub height: Height,
}

/// Most overlapping alerts a presence record names.
pub const MAX_ALERTS_PER_VISIT: usize = 16;

/// The transactions of the `aerosol` module. JSON form:
/// `{"publish_alerts": {"alerts": [{"venue": "<32 hex>", "start_s": 0, "end_s": 900,
/// "risk_ppm": 12000, "kind": "elevated_risk"}]}}` (`kind`: `elevated_risk`,
/// `ventilation_failure` or `particle_spike`), and
/// `{"report_case_presence": {"upload": "<64 hex>", "visits": [{"venue": "<32 hex>",
/// "start_s": 0, "end_s": 900}]}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AerosolCall {
    /// Publishes 1..=64 alerts. Signer: an operator of an edge-operator organisation.
    PublishAlerts {
        /// The alerts.
        alerts: Vec<AerosolAlertTx>,
    },
    /// Records 1..=64 visits of a confirmed case to alerted rooms, each overlapping a
    /// published alert of its venue id. Signer: an operator of an edge-operator organisation
    /// (the edge relays for the case's device, as with diagnosis keys).
    ReportCasePresence {
        /// The case's diagnosis upload ([`crate::diagnosis::keys_digest`] of its keys).
        upload: Hash,
        /// The visits.
        visits: Vec<CaseVisit>,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["publish_alerts", "report_case_presence"];

/// Why an alert is refused. [`AerosolError::code`] is stable; the recorded failure is the
/// [`TxError`] of [`AerosolError::to_tx_error`], message `<code>: <reason>`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AerosolError {
    /// No alert in the call.
    #[error("a call must carry at least one alert")]
    NoAlerts,
    /// More than [`MAX_ALERTS_PER_CALL`] alerts.
    #[error("{count} alerts in one call; at most {MAX_ALERTS_PER_CALL} are allowed")]
    TooManyAlerts {
        /// Alerts in the call.
        count: usize,
    },
    /// The venue id is all zeros (a placeholder, not a derived id).
    #[error("alert {index} has an all-zero venue id")]
    ZeroVenue {
        /// Position in the call.
        index: usize,
    },
    /// The window is empty, reversed, too long or crosses a UTC day boundary.
    #[error("alert {index} has window {start_s}..{end_s}: {reason}")]
    InvalidWindow {
        /// Position in the call.
        index: usize,
        /// Start.
        start_s: u64,
        /// End.
        end_s: u64,
        /// Why.
        reason: &'static str,
    },
    /// The window ends after the block time plus the skew.
    #[error(
        "alert {index} ends at {end_s}, more than {MAX_FUTURE_SKEW_S} s after the block time {now_s}"
    )]
    InFuture {
        /// Position in the call.
        index: usize,
        /// The window's end.
        end_s: u64,
        /// The block time, Unix seconds.
        now_s: u64,
    },
    /// The window's day is more than 14 days before the block's day.
    #[error(
        "alert {index} is for day {day}, more than {MAX_ALERT_AGE_DAYS} days before the block's day {today}"
    )]
    TooOld {
        /// Position in the call.
        index: usize,
        /// The alert's day.
        day: u32,
        /// The block's day.
        today: u32,
    },
    /// The risk is above one million ppm.
    #[error("alert {index} has risk {risk_ppm} ppm; at most {MAX_RISK_PPM} (a probability of 1)")]
    RiskOutOfRange {
        /// Position in the call.
        index: usize,
        /// The risk given.
        risk_ppm: u32,
    },
    /// The same (venue, start, end, kind) was published before or twice in this call.
    #[error("alert {id} is already published")]
    DuplicateAlert {
        /// The alert id.
        id: Hash,
    },
    /// A case-presence report without visits.
    #[error("a case-presence report must carry at least one visit")]
    NoVisits,
    /// More than [`MAX_VISITS_PER_CALL`] visits.
    #[error("{count} visits in one report; at most {MAX_VISITS_PER_CALL} are allowed")]
    TooManyVisits {
        /// Visits in the call.
        count: usize,
    },
    /// The upload is not on the ledger.
    #[error("diagnosis upload {upload} is not on the ledger")]
    UnknownUpload {
        /// The upload.
        upload: Hash,
    },
    /// The upload is a revocation, or every key it published has been revoked since.
    #[error("diagnosis upload {upload} is a revocation or wholly revoked: not a confirmed case")]
    NotACase {
        /// The upload.
        upload: Hash,
    },
    /// The visit's day is not within the upload's key days ±1.
    #[error("visit {index} is on day {day}, outside the upload's key days {days:?} (±1)")]
    VisitNotInUpload {
        /// Position in the call.
        index: usize,
        /// The visit's day.
        day: u32,
        /// The upload's key days.
        days: Vec<u32>,
    },
    /// The visit overlaps no published alert of its venue id.
    #[error("visit {index} overlaps no published alert of venue {venue}")]
    NoAlertInWindow {
        /// Position in the call.
        index: usize,
        /// The venue id (hex).
        venue: String,
    },
    /// The same (upload, venue, start, end) was reported before or twice in this call.
    #[error("case presence {id} is already reported")]
    DuplicatePresence {
        /// The presence id.
        id: Hash,
    },
}

impl AerosolError {
    /// The stable code of the rejection.
    pub fn code(&self) -> &'static str {
        use AerosolError::*;
        match self {
            NoAlerts => "no_alerts",
            TooManyAlerts { .. } => "too_many_alerts",
            ZeroVenue { .. } => "zero_venue",
            InvalidWindow { .. } => "invalid_window",
            InFuture { .. } => "alert_in_future",
            TooOld { .. } => "alert_too_old",
            RiskOutOfRange { .. } => "risk_out_of_range",
            DuplicateAlert { .. } => "duplicate_alert",
            NoVisits => "no_visits",
            TooManyVisits { .. } => "too_many_visits",
            UnknownUpload { .. } => "unknown_upload",
            NotACase { .. } => "not_a_case",
            VisitNotInUpload { .. } => "visit_not_in_upload",
            NoAlertInWindow { .. } => "no_alert_in_window",
            DuplicatePresence { .. } => "duplicate_presence",
        }
    }

    /// The transaction failure: a duplicate is `already_exists`, an unknown upload
    /// `not_found`, a revoked one `conflict`, everything else `invalid_argument`.
    pub fn to_tx_error(&self) -> TxError {
        let message = format!("{}: {self}", self.code());
        match self {
            AerosolError::DuplicateAlert { .. } | AerosolError::DuplicatePresence { .. } => {
                TxError::AlreadyExists(message)
            }
            AerosolError::UnknownUpload { .. } => TxError::NotFound(message),
            AerosolError::NotACase { .. } => TxError::Conflict(message),
            _ => TxError::Invalid(message),
        }
    }
}

impl From<AerosolError> for TxError {
    fn from(e: AerosolError) -> TxError {
        e.to_tx_error()
    }
}

/// Day number (UTC) of a Unix time, saturating at `u32::MAX`.
pub fn day_of(t_s: u64) -> u32 {
    u32::try_from(t_s / DAY_S).unwrap_or(u32::MAX)
}

/// The id of an alert: a tagged hash of the canonical (venue, start, end, kind). The risk is
/// not part of it, so one window cannot be published twice with different risks.
pub fn alert_id(venue: &[u8; 16], start_s: u64, end_s: u64, kind: AlertKind) -> Hash {
    Hash::tagged(
        ALERT_ID_TAG,
        &[&codec::encode(&(venue, start_s, end_s, kind))],
    )
}

/// The id of a case presence: a tagged hash of (upload, venue, start, end).
pub fn presence_id(upload: &Hash, visit: &CaseVisit) -> Hash {
    Hash::tagged(
        PRESENCE_ID_TAG,
        &[&codec::encode(&(
            upload,
            &visit.venue,
            visit.start_s,
            visit.end_s,
        ))],
    )
}

/// The window checks an alert and a visit share: non-zero venue, non-empty, at most a day,
/// within one UTC day, not after the block time (+skew), not older than 14 days.
fn check_window(
    index: usize,
    venue: &[u8; 16],
    start_s: u64,
    end_s: u64,
    now_s: u64,
) -> Result<(), AerosolError> {
    if *venue == [0; 16] {
        return Err(AerosolError::ZeroVenue { index });
    }
    let reason = if end_s <= start_s {
        Some("end must be after start")
    } else if end_s - start_s > MAX_WINDOW_S {
        Some("longer than 24 h")
    } else if day_of(start_s) != day_of(end_s - 1) {
        Some("crosses a UTC day boundary (the venue id is per day)")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(AerosolError::InvalidWindow {
            index,
            start_s,
            end_s,
            reason,
        });
    }
    if end_s > now_s.saturating_add(MAX_FUTURE_SKEW_S) {
        return Err(AerosolError::InFuture {
            index,
            end_s,
            now_s,
        });
    }
    let today = day_of(now_s);
    let day = day_of(start_s);
    if day < today.saturating_sub(MAX_ALERT_AGE_DAYS) {
        return Err(AerosolError::TooOld { index, day, today });
    }
    Ok(())
}

/// Checks one visit against the block time (Unix seconds): the window rules of alerts.
pub fn check_visit(index: usize, v: &CaseVisit, now_s: u64) -> Result<(), AerosolError> {
    check_window(index, &v.venue, v.start_s, v.end_s, now_s)
}

/// Checks one alert against the block time (Unix seconds); everything but duplicates.
pub fn check_alert(index: usize, a: &AerosolAlertTx, now_s: u64) -> Result<(), AerosolError> {
    check_window(index, &a.venue, a.start_s, a.end_s, now_s)?;
    if a.risk_ppm > MAX_RISK_PPM {
        return Err(AerosolError::RiskOutOfRange {
            index,
            risk_ppm: a.risk_ppm,
        });
    }
    Ok(())
}

const ALERT_PREFIX: &[u8] = b"alert/";
const DAY_PREFIX: &[u8] = b"day/";
const VENUE_PREFIX: &[u8] = b"venue/";
const STATS_KEY: &[u8] = b"stats";
const PRESENCE_PREFIX: &[u8] = b"presence/";
const PUPLOAD_PREFIX: &[u8] = b"pupload/";
const PDAY_PREFIX: &[u8] = b"pday/";
const PSTATS_KEY: &[u8] = b"pstats";

fn presence_key(id: &Hash) -> Vec<u8> {
    [PRESENCE_PREFIX, &id.0].concat()
}

fn pupload_prefix(upload: &Hash) -> Vec<u8> {
    [PUPLOAD_PREFIX, &upload.0, b"/"].concat()
}

fn pupload_key(upload: &Hash, id: &Hash) -> Vec<u8> {
    [pupload_prefix(upload).as_slice(), &id.0].concat()
}

fn pday_prefix(day: u32) -> Vec<u8> {
    [PDAY_PREFIX, &day.to_be_bytes(), b"/"].concat()
}

fn pday_key(day: u32, id: &Hash) -> Vec<u8> {
    [pday_prefix(day).as_slice(), &id.0].concat()
}

fn alert_key(id: &Hash) -> Vec<u8> {
    [ALERT_PREFIX, &id.0].concat()
}

fn day_prefix(day: u32) -> Vec<u8> {
    [DAY_PREFIX, &day.to_be_bytes(), b"/"].concat()
}

fn day_key(day: u32, id: &Hash) -> Vec<u8> {
    [day_prefix(day).as_slice(), &id.0].concat()
}

fn venue_prefix(venue: &[u8; 16], day: u32) -> Vec<u8> {
    [VENUE_PREFIX, venue, b"/", &day.to_be_bytes(), b"/"].concat()
}

fn venue_key(venue: &[u8; 16], day: u32, id: &Hash) -> Vec<u8> {
    [venue_prefix(venue, day).as_slice(), &id.0].concat()
}

/// The alert `id`.
pub fn alert(state: &dyn StateRead, id: &Hash) -> Result<Option<AlertRecord>, StateError> {
    read_value(state, &module_key(NAME, &alert_key(id)))
}

/// The module's counters.
pub fn stats(state: &dyn StateRead) -> Result<AerosolStats, StateError> {
    Ok(read_value(state, &module_key(NAME, STATS_KEY))?.unwrap_or_default())
}

/// The case presence `id`.
pub fn presence(state: &dyn StateRead, id: &Hash) -> Result<Option<PresenceRecord>, StateError> {
    read_value(state, &module_key(NAME, &presence_key(id)))
}

/// Number of case presences recorded.
pub fn presence_count(state: &dyn StateRead) -> Result<u64, StateError> {
    Ok(read_value(state, &module_key(NAME, PSTATS_KEY))?.unwrap_or(0))
}

/// The first [`MAX_ALERTS_PER_VISIT`] alerts of `venue` on `day` whose window overlaps
/// `start_s..end_s` (a bounded scan of the venue's day index).
fn overlapping_alerts(
    ctx: &TxContext<'_, '_>,
    venue: &[u8; 16],
    day: u32,
    start_s: u64,
    end_s: u64,
) -> Result<Vec<Hash>, TxError> {
    // A day's alerts of one venue are bounded by its windows; scan a generous bound.
    const SCAN: usize = 1024;
    let mut out = Vec::new();
    for (k, v) in ctx.scan_prefix(&venue_prefix(venue, day), false, SCAN)? {
        let id = decode_stored::<Hash>(&v).ok_or_else(|| {
            TxError::Storage(StateError(format!(
                "undecodable aerosol index entry at {}",
                String::from_utf8_lossy(&k)
            )))
        })?;
        let Some(a) = ctx.get::<AlertRecord>(&alert_key(&id))? else {
            return Err(TxError::Storage(StateError(format!(
                "index names unknown alert {id}"
            ))));
        };
        if a.start_s < end_s && start_s < a.end_s {
            out.push(id);
            if out.len() == MAX_ALERTS_PER_VISIT {
                break;
            }
        }
    }
    Ok(out)
}

fn report_case_presence(
    ctx: &mut TxContext<'_, '_>,
    upload: Hash,
    visits: Vec<CaseVisit>,
) -> Result<(), TxError> {
    if visits.is_empty() {
        return Err(AerosolError::NoVisits.into());
    }
    if visits.len() > MAX_VISITS_PER_CALL {
        return Err(AerosolError::TooManyVisits {
            count: visits.len(),
        }
        .into());
    }
    let up = crate::diagnosis::upload(ctx.world(), &upload)?
        .ok_or(AerosolError::UnknownUpload { upload })?;
    if up.report_type == trustedge_tracing::ReportType::Revoked {
        return Err(AerosolError::NotACase { upload }.into());
    }
    let mut live = false;
    for kd in &up.keys {
        if crate::diagnosis::published_key(ctx.world(), kd)?.is_some_and(|k| k.revoked_by.is_none())
        {
            live = true;
            break;
        }
    }
    if !live {
        return Err(AerosolError::NotACase { upload }.into());
    }
    let now_s = ctx.time_ms / 1000;
    let first = up.days.first().copied().unwrap_or(0).saturating_sub(1);
    let last = up.days.last().copied().unwrap_or(0).saturating_add(1);
    let mut seen = BTreeSet::new();
    let mut records = Vec::with_capacity(visits.len());
    for (index, v) in visits.iter().enumerate() {
        check_visit(index, v, now_s)?;
        let day = v.day();
        if day < first || day > last {
            return Err(AerosolError::VisitNotInUpload {
                index,
                day,
                days: up.days.clone(),
            }
            .into());
        }
        let id = presence_id(&upload, v);
        if !seen.insert(id) || ctx.contains(&presence_key(&id))? {
            return Err(AerosolError::DuplicatePresence { id }.into());
        }
        let alerts = overlapping_alerts(ctx, &v.venue, day, v.start_s, v.end_s)?;
        if alerts.is_empty() {
            return Err(AerosolError::NoAlertInWindow {
                index,
                venue: hex::encode(v.venue),
            }
            .into());
        }
        records.push(PresenceRecord {
            id,
            upload,
            venue: v.venue,
            start_s: v.start_s,
            end_s: v.end_s,
            day,
            alerts,
            height: ctx.height,
        });
    }
    let mut count: u64 = ctx.get(PSTATS_KEY)?.unwrap_or(0);
    for rec in records {
        ctx.put(&pupload_key(&upload, &rec.id), &rec.id)?;
        ctx.put(&pday_key(rec.day, &rec.id), &rec.id)?;
        ctx.put(&presence_key(&rec.id), &rec)?;
        count += 1;
        ctx.emit(
            "case_presence",
            &[
                ("day", rec.day.to_string()),
                ("upload", upload.to_hex()),
                ("presence_id", rec.id.to_hex()),
            ],
        )?;
    }
    ctx.put(PSTATS_KEY, &count)
}

fn publish_alerts(ctx: &mut TxContext<'_, '_>, alerts: Vec<AerosolAlertTx>) -> Result<(), TxError> {
    if alerts.is_empty() {
        return Err(AerosolError::NoAlerts.into());
    }
    if alerts.len() > MAX_ALERTS_PER_CALL {
        return Err(AerosolError::TooManyAlerts {
            count: alerts.len(),
        }
        .into());
    }
    let now_s = ctx.time_ms / 1000;
    let mut seen = BTreeSet::new();
    for (index, a) in alerts.iter().enumerate() {
        check_alert(index, a, now_s)?;
        let id = a.id();
        if !seen.insert(id) || ctx.contains(&alert_key(&id))? {
            return Err(AerosolError::DuplicateAlert { id }.into());
        }
    }
    let mut stats: AerosolStats = ctx.get(STATS_KEY)?.unwrap_or_default();
    for a in alerts {
        let id = a.id();
        let day = a.day();
        ctx.put(&day_key(day, &id), &id)?;
        ctx.put(&venue_key(&a.venue, day, &id), &id)?;
        ctx.put(
            &alert_key(&id),
            &AlertRecord {
                id,
                venue: a.venue,
                start_s: a.start_s,
                end_s: a.end_s,
                risk_ppm: a.risk_ppm,
                kind: a.kind,
                day,
                height: ctx.height,
            },
        )?;
        stats.alerts += 1;
        match a.kind {
            AlertKind::ElevatedRisk => stats.elevated_risk += 1,
            AlertKind::VentilationFailure => stats.ventilation_failure += 1,
            AlertKind::ParticleSpike => stats.particle_spike += 1,
        }
        ctx.emit(
            "alert_published",
            &[("day", day.to_string()), ("alert_id", id.to_hex())],
        )?;
    }
    ctx.put(STATS_KEY, &stats)
}

/// The `aerosol` module. Queries: `alerts?day=N&after=<alert id hex>&limit=`,
/// `by_venue?venue=<32 hex>&day=N&after=<alert id hex>&limit=`, `alert/<id hex>`, `stats`
/// (with `case_presences`), and the case presences:
/// `presence?upload=<64 hex>&after=<presence id hex>&limit=` or
/// `presence?day=N&after=&limit=` (exactly one of `upload` and `day`), `presence/<id hex>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AerosolModule;

impl Module for AerosolModule {
    type Call = AerosolCall;
    const NAME: &'static str = NAME;

    fn access(&self, _call: &AerosolCall) -> Access {
        Access::Members {
            org_kinds: &[OrgKind::EdgeOperator],
            roles: &[Role::Operator],
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: AerosolCall) -> Result<(), TxError> {
        match call {
            AerosolCall::PublishAlerts { alerts } => publish_alerts(ctx, alerts),
            AerosolCall::ReportCasePresence { upload, visits } => {
                report_case_presence(ctx, upload, visits)
            }
        }
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        match path {
            "alerts" => {
                only_params(params, &["day", "after", "limit"])?;
                let day = day_param(params)?;
                let (alerts, next) =
                    listed(state, &day_prefix(day), params, |id| day_key(day, id))?;
                Ok(serde_json::json!({ "day": day, "alerts": alerts, "next": next }))
            }
            "by_venue" => {
                only_params(params, &["venue", "day", "after", "limit"])?;
                let raw = params.get("venue").ok_or_else(|| {
                    QueryError::Invalid("venue is required (32 hex digits)".into())
                })?;
                let venue: [u8; 16] =
                    parse_hex_array(raw).map_err(|e| QueryError::Invalid(format!("venue: {e}")))?;
                let day = day_param(params)?;
                let (alerts, next) = listed(state, &venue_prefix(&venue, day), params, |id| {
                    venue_key(&venue, day, id)
                })?;
                Ok(serde_json::json!({
                    "venue": hex::encode(venue), "day": day, "alerts": alerts, "next": next
                }))
            }
            "stats" => {
                only_params(params, &[])?;
                let mut v = to_json(&stats(state)?)?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("case_presences".into(), presence_count(state)?.into());
                }
                Ok(v)
            }
            "presence" => {
                only_params(params, &["upload", "day", "after", "limit"])?;
                let index = match (params.get("upload"), params.get("day")) {
                    (Some(u), None) => PresenceIndex::Upload(
                        Hash::from_hex(u)
                            .map_err(|e| QueryError::Invalid(format!("upload: {e}")))?,
                    ),
                    (None, Some(_)) => PresenceIndex::Day(day_param(params)?),
                    _ => {
                        return Err(QueryError::Invalid(
                            "presence takes exactly one of upload=<64 hex> and day=N".into(),
                        ));
                    }
                };
                let (presences, next) = listed_presences(state, index, params)?;
                Ok(serde_json::json!({ "presences": presences, "next": next }))
            }
            _ => {
                if let Some(h) = path.strip_prefix("presence/") {
                    only_params(params, &[])?;
                    let id =
                        Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("id: {e}")))?;
                    let rec = presence(state, &id)?
                        .ok_or_else(|| QueryError::NotFound(format!("case presence {id}")))?;
                    return to_json(&rec);
                }
                if let Some(h) = path.strip_prefix("alert/") {
                    only_params(params, &[])?;
                    let id =
                        Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("id: {e}")))?;
                    let rec = alert(state, &id)?
                        .ok_or_else(|| QueryError::NotFound(format!("alert {id}")))?;
                    return to_json(&rec);
                }
                Err(QueryError::NotFound(format!(
                    "no query {path:?}; aerosol answers alerts?day=, by_venue?venue=&day=, \
                     alert/<id>, presence?upload=|day=, presence/<id>, stats"
                )))
            }
        }
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with(ALERT_PREFIX) {
            serde_json::to_value(decode_stored::<AlertRecord>(value)?).ok()
        } else if key.starts_with(DAY_PREFIX) || key.starts_with(VENUE_PREFIX) {
            Some(serde_json::json!({ "alert_id": decode_stored::<Hash>(value)? }))
        } else if key == STATS_KEY {
            serde_json::to_value(decode_stored::<AerosolStats>(value)?).ok()
        } else if key.starts_with(PRESENCE_PREFIX) {
            serde_json::to_value(decode_stored::<PresenceRecord>(value)?).ok()
        } else if key.starts_with(PUPLOAD_PREFIX) || key.starts_with(PDAY_PREFIX) {
            Some(serde_json::json!({ "presence_id": decode_stored::<Hash>(value)? }))
        } else if key == PSTATS_KEY {
            Some(serde_json::json!({ "case_presences": decode_stored::<u64>(value)? }))
        } else {
            None
        }
    }
}

fn day_param(params: &BTreeMap<String, String>) -> Result<u32, QueryError> {
    params
        .get("day")
        .ok_or_else(|| QueryError::Invalid("day is required (days since the Unix epoch)".into()))?
        .parse()
        .map_err(|_| QueryError::Invalid("day must be a non-negative integer".into()))
}

/// One page of the alerts indexed under `prefix`, and the cursor of the next page.
fn listed(
    state: &dyn StateRead,
    prefix: &[u8],
    params: &BTreeMap<String, String>,
    key_of: impl Fn(&Hash) -> Vec<u8>,
) -> Result<(Vec<AlertRecord>, Option<Hash>), QueryError> {
    let limit = query_limit(params)?;
    let cursor = params
        .get("after")
        .map(|h| Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("after: {e}"))))
        .transpose()?
        .map(|id| key_of(&id));
    let (entries, more) = page(state, NAME, prefix, cursor.as_deref(), limit)?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in &entries {
        let id = decode_stored::<Hash>(v).ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "undecodable aerosol index entry at {}",
                String::from_utf8_lossy(k)
            )))
        })?;
        let rec = alert(state, &id)?.ok_or_else(|| {
            QueryError::Storage(StateError(format!("index names unknown alert {id}")))
        })?;
        out.push(rec);
    }
    let next = if more { out.last().map(|a| a.id) } else { None };
    Ok((out, next))
}

/// Which presence index a query lists.
#[derive(Clone, Copy)]
enum PresenceIndex {
    Upload(Hash),
    Day(u32),
}

impl PresenceIndex {
    fn prefix(self) -> Vec<u8> {
        match self {
            PresenceIndex::Upload(u) => pupload_prefix(&u),
            PresenceIndex::Day(d) => pday_prefix(d),
        }
    }

    fn key(self, id: &Hash) -> Vec<u8> {
        match self {
            PresenceIndex::Upload(u) => pupload_key(&u, id),
            PresenceIndex::Day(d) => pday_key(d, id),
        }
    }
}

/// One page of the case presences of `index`, and the cursor of the next page.
fn listed_presences(
    state: &dyn StateRead,
    index: PresenceIndex,
    params: &BTreeMap<String, String>,
) -> Result<(Vec<PresenceRecord>, Option<Hash>), QueryError> {
    let prefix = index.prefix();
    let limit = query_limit(params)?;
    let cursor = params
        .get("after")
        .map(|h| Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("after: {e}"))))
        .transpose()?
        .map(|id| index.key(&id));
    let (entries, more) = page(state, NAME, &prefix, cursor.as_deref(), limit)?;
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in &entries {
        let id = decode_stored::<Hash>(v).ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "undecodable presence index entry at {}",
                String::from_utf8_lossy(k)
            )))
        })?;
        let rec = presence(state, &id)?.ok_or_else(|| {
            QueryError::Storage(StateError(format!("index names unknown presence {id}")))
        })?;
        out.push(rec);
    }
    let next = if more { out.last().map(|p| p.id) } else { None };
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> AerosolAlertTx {
        AerosolAlertTx {
            venue: [7; 16],
            start_s: 19_700 * DAY_S + 3600,
            end_s: 19_700 * DAY_S + 4500,
            risk_ppm: 12_000,
            kind: AlertKind::VentilationFailure,
        }
    }

    #[test]
    fn alert_ids_ignore_the_risk_but_bind_the_rest() {
        let x = a();
        let mut y = x;
        y.risk_ppm = 1;
        assert_eq!(x.id(), y.id());
        for f in [
            |a: &mut AerosolAlertTx| a.venue[0] = 8,
            |a: &mut AerosolAlertTx| a.start_s += 1,
            |a: &mut AerosolAlertTx| a.end_s += 1,
            |a: &mut AerosolAlertTx| a.kind = AlertKind::ElevatedRisk,
        ] {
            let mut z = x;
            f(&mut z);
            assert_ne!(x.id(), z.id());
        }
    }

    #[test]
    fn json_form_has_exactly_the_five_fields() {
        let v = serde_json::to_value(a()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["end_s", "kind", "risk_ppm", "start_s", "venue"]);
        assert_eq!(v["venue"], "07".repeat(16));
        assert_eq!(v["kind"], "ventilation_failure");
        assert_eq!(serde_json::from_value::<AerosolAlertTx>(v).unwrap(), a());
        for k in AlertKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn window_checks() {
        let now = 19_700 * DAY_S + 7200;
        assert_eq!(check_alert(0, &a(), now), Ok(()));
        let mut x = a();
        x.end_s = x.start_s;
        assert_eq!(
            check_alert(0, &x, now).unwrap_err().code(),
            "invalid_window"
        );
        let mut x = a();
        x.start_s = 19_700 * DAY_S - 1;
        assert_eq!(
            check_alert(0, &x, now).unwrap_err().code(),
            "invalid_window"
        );
        // exactly the whole day is accepted
        let mut x = a();
        x.start_s = 19_700 * DAY_S;
        x.end_s = 19_701 * DAY_S;
        assert_eq!(check_alert(0, &x, 19_701 * DAY_S), Ok(()));
        let mut x = a();
        x.end_s = now + MAX_FUTURE_SKEW_S + 1;
        assert_eq!(
            check_alert(0, &x, now).unwrap_err().code(),
            "alert_in_future"
        );
        x.end_s = now + MAX_FUTURE_SKEW_S;
        assert_eq!(check_alert(0, &x, now), Ok(()));
        let later = now + 15 * DAY_S;
        assert_eq!(
            check_alert(0, &a(), later).unwrap_err().code(),
            "alert_too_old"
        );
        assert_eq!(check_alert(0, &a(), now + 14 * DAY_S), Ok(()));
    }
}
