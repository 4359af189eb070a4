//! The `exposure` module: exposure notices that edge nodes publish after matching published
//! diagnosis keys against the encounters they hold.
//!
//! When a `diagnosis` upload is committed (event `keys_published`, or `keys_released` for
//! embargoed keys), an edge node expands the keys to RPIs, finds the encounters its devices
//! logged with them, scores them, and publishes one [`ExposureNotice`] per exposed device:
//! the exposed device's *own* RPIs (those it broadcast, by which it recognises the notice), a
//! risk score, the UTC day of the exposure and the id of the diagnosis upload that triggered
//! it. Devices fetch the day's notices (`notices?day=`) or ask by one of their RPIs
//! (`by_rpi?rpi=`) and match locally.
//!
//! # Who publishes
//! Members with role [`Role::Operator`] of [`OrgKind::EdgeOperator`] organisations: the edge
//! node's service key, as for anchoring. Admins manage the organisation and do not run the
//! matching; devices cannot sign (an edge gateway acts through its operator member key).
//!
//! # Privacy
//! A notice never carries a diagnosis key nor an RPI of the confirmed case: every RPI is
//! checked against the key data published on the ledger and against the RPIs of every key of
//! the source upload over its validity, and such a notice is refused (`notice_carries_case_key`,
//! `notice_carries_case_rpi`). A notice carries exactly one RPI ([`MAX_RPIS_PER_NOTICE`]):
//! two RPIs in one notice would tell every reader that they belong to one device, linking
//! pseudonyms of a device that has not been confirmed. The edge decides that a device is a
//! close contact with what it knows locally (which uploads one device signed) and publishes
//! one notice per exposed device and day, naming one of its RPIs with the day's score; the
//! device recognises any of its RPIs. (The field stays a list so the format can carry a
//! different rule later without a new call.) Nothing else is
//! stored: no edge address, no location, no device address (the transaction's signer, an edge
//! operator's member key, is in the block as for any transaction).
//!
//! # What is stored
//! - `notice/<notice id: 32 bytes>` → [`NoticeRecord`].
//! - `day/<day: 4 bytes BE>/<notice id: 32 bytes>` → notice id: notices by exposure day.
//! - `rpi/<rpi: 16 bytes>/<source upload: 32 bytes>` → notice id: notices by RPI. An RPI is
//!   notified at most once per diagnosis upload.
//! - `stats` → `u64`, notices published.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{module_key, read_value};
use trustedge_execution::{
    Access, Module, OrgKind, QueryError, Role, StateError, StateRead, TxContext, TxError,
};
use trustedge_tracing::{EnIntervalNumber, ReportType, TemporaryExposureKey};
use trustedge_types::codec::parse_hex_array;
use trustedge_types::{Hash, Height, codec};

use crate::diagnosis::{self, hex16_vec};
use crate::util::{decode_stored, only_params, page, query_limit, to_json};

/// Name of the module.
pub const NAME: &str = "exposure";
/// Most notices in one call.
pub const MAX_NOTICES_PER_CALL: usize = 64;
/// RPIs in one notice: exactly one, so no notice links two pseudonyms (see the module docs).
pub const MAX_RPIS_PER_NOTICE: usize = 1;
/// Oldest exposure day accepted, in days before the block's UTC day (GAEN's 14 days).
pub const MAX_NOTICE_AGE_DAYS: u32 = 14;

/// Domain tag of notice ids.
const NOTICE_ID_TAG: &[u8] = b"trustedge/exposure-notice/v1";

/// An exposure notice, as an edge node publishes it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposureNotice {
    /// The RPI the *exposed* device broadcast (hex): exactly one. Never the confirmed case's.
    #[serde(with = "hex16_vec")]
    pub rpis: Vec<[u8; 16]>,
    /// Risk score of the exposure (the edge's GAEN v2 score).
    pub risk_score: u32,
    /// UTC day of the exposure, days since the Unix epoch.
    pub day: u32,
    /// Id of the diagnosis upload whose keys matched (the `upload_id` of `keys_published`).
    pub source_upload: Hash,
}

/// A published notice, as stored.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NoticeRecord {
    /// Id: [`notice_id`].
    pub id: Hash,
    /// The exposed device's RPIs, sorted.
    #[serde(with = "hex16_vec")]
    pub rpis: Vec<[u8; 16]>,
    /// Risk score.
    pub risk_score: u32,
    /// Exposure day.
    pub day: u32,
    /// The diagnosis upload that triggered it.
    pub source_upload: Hash,
    /// Height it was published at.
    pub height: Height,
}

/// The transactions of the `exposure` module. JSON form:
/// `{"publish_notices": {"notices": [{"rpis": ["<32 hex>"], "risk_score": 0, "day": 0,
/// "source_upload": "<64 hex>"}]}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExposureCall {
    /// Publishes 1..=64 notices. Signer: an operator of an edge-operator organisation.
    PublishNotices {
        /// The notices.
        notices: Vec<ExposureNotice>,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["publish_notices"];

/// Why a notice is refused. [`ExposureError::code`] is stable; the recorded failure is the
/// [`TxError`] of [`ExposureError::to_tx_error`], message `<code>: <reason>`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ExposureError {
    /// No notice in the call.
    #[error("a call must carry at least one notice")]
    NoNotices,
    /// More than [`MAX_NOTICES_PER_CALL`] notices.
    #[error("{count} notices in one call; at most {MAX_NOTICES_PER_CALL} are allowed")]
    TooManyNotices {
        /// Notices in the call.
        count: usize,
    },
    /// A notice does not carry exactly one RPI.
    #[error(
        "notice {index} has {count} RPIs; it must have exactly {MAX_RPIS_PER_NOTICE} (one notice per exposed RPI, so that no notice links two pseudonyms)"
    )]
    RpiCount {
        /// Position in the call.
        index: usize,
        /// RPIs.
        count: usize,
    },
    /// The exposure day is after the block's day or more than 14 days before it.
    #[error(
        "notice {index} is for day {day}; it must be between {MAX_NOTICE_AGE_DAYS} days before \
         the block's day {today} and that day"
    )]
    DayOutOfWindow {
        /// Position in the call.
        index: usize,
        /// The notice's day.
        day: u32,
        /// The block's day.
        today: u32,
    },
    /// The source upload does not exist.
    #[error("notice {index} names diagnosis upload {upload}, which does not exist")]
    UnknownUpload {
        /// Position in the call.
        index: usize,
        /// The upload id.
        upload: Hash,
    },
    /// The source upload is a revocation.
    #[error("notice {index} names diagnosis upload {upload}, a revocation")]
    RevocationUpload {
        /// Position in the call.
        index: usize,
        /// The upload id.
        upload: Hash,
    },
    /// The exposure day is not within a day of the source upload's keys.
    #[error("notice {index} is for day {day}; the keys of upload {upload} cover days {days:?}")]
    DayNotInUpload {
        /// Position in the call.
        index: usize,
        /// The notice's day.
        day: u32,
        /// The upload.
        upload: Hash,
        /// The upload's key days.
        days: Vec<u32>,
    },
    /// An "RPI" is the key data of a diagnosis key.
    #[error("notice {index} carries {rpi}, which is a published diagnosis key")]
    CarriesCaseKey {
        /// Position in the call.
        index: usize,
        /// The value, hex.
        rpi: String,
    },
    /// An RPI is one of the confirmed case's.
    #[error(
        "notice {index} carries RPI {rpi}, which the confirmed case broadcast under a key of \
         upload {upload}; a notice carries only the exposed party's own RPIs"
    )]
    CarriesCaseRpi {
        /// Position in the call.
        index: usize,
        /// The RPI, hex.
        rpi: String,
        /// The upload.
        upload: Hash,
    },
    /// The same notice was published before (or twice in this call).
    #[error("notice {id} is already published")]
    DuplicateNotice {
        /// The notice id.
        id: Hash,
    },
    /// The RPI was already notified for this upload.
    #[error("RPI {rpi} was already notified for upload {upload}, by notice {id}")]
    RpiAlreadyNotified {
        /// The RPI, hex.
        rpi: String,
        /// The upload.
        upload: Hash,
        /// The earlier notice.
        id: Hash,
    },
}

impl ExposureError {
    /// The stable code of the rejection.
    pub fn code(&self) -> &'static str {
        use ExposureError::*;
        match self {
            NoNotices => "no_notices",
            TooManyNotices { .. } => "too_many_notices",
            RpiCount { .. } => "rpi_count",
            DayOutOfWindow { .. } => "notice_day_out_of_window",
            UnknownUpload { .. } => "unknown_upload",
            RevocationUpload { .. } => "revocation_upload",
            DayNotInUpload { .. } => "notice_day_not_in_upload",
            CarriesCaseKey { .. } => "notice_carries_case_key",
            CarriesCaseRpi { .. } => "notice_carries_case_rpi",
            DuplicateNotice { .. } => "duplicate_notice",
            RpiAlreadyNotified { .. } => "rpi_already_notified",
        }
    }

    /// The transaction failure: an unknown upload is `not_found`, a duplicate
    /// `already_exists`, everything else `invalid_argument`.
    pub fn to_tx_error(&self) -> TxError {
        let message = format!("{}: {self}", self.code());
        match self {
            ExposureError::UnknownUpload { .. } => TxError::NotFound(message),
            ExposureError::DuplicateNotice { .. } | ExposureError::RpiAlreadyNotified { .. } => {
                TxError::AlreadyExists(message)
            }
            _ => TxError::Invalid(message),
        }
    }
}

impl From<ExposureError> for TxError {
    fn from(e: ExposureError) -> TxError {
        e.to_tx_error()
    }
}

/// The id of a notice: a tagged hash of the canonical (source upload, day, sorted RPIs). The
/// risk score is not part of it, so the same exposure cannot be published twice with
/// different scores.
pub fn notice_id(source_upload: &Hash, day: u32, sorted_rpis: &[[u8; 16]]) -> Hash {
    Hash::tagged(
        NOTICE_ID_TAG,
        &[&codec::encode(&(source_upload, day, sorted_rpis))],
    )
}

const NOTICE_PREFIX: &[u8] = b"notice/";
const DAY_PREFIX: &[u8] = b"day/";
const RPI_PREFIX: &[u8] = b"rpi/";
const STATS_KEY: &[u8] = b"stats";

fn notice_key(id: &Hash) -> Vec<u8> {
    [NOTICE_PREFIX, &id.0].concat()
}

fn day_prefix(day: u32) -> Vec<u8> {
    [DAY_PREFIX, &day.to_be_bytes(), b"/"].concat()
}

fn day_key(day: u32, id: &Hash) -> Vec<u8> {
    [day_prefix(day).as_slice(), &id.0].concat()
}

fn rpi_prefix(rpi: &[u8; 16]) -> Vec<u8> {
    [RPI_PREFIX, rpi, b"/"].concat()
}

fn rpi_key(rpi: &[u8; 16], upload: &Hash) -> Vec<u8> {
    [rpi_prefix(rpi).as_slice(), &upload.0].concat()
}

/// The notice `id`.
pub fn notice(state: &dyn StateRead, id: &Hash) -> Result<Option<NoticeRecord>, StateError> {
    read_value(state, &module_key(NAME, &notice_key(id)))
}

/// Every RPI the keys of diagnosis upload `upload` produced over their validity.
fn case_rpis(
    state: &dyn StateRead,
    upload: &diagnosis::UploadRecord,
) -> Result<BTreeSet<[u8; 16]>, TxError> {
    let mut out = BTreeSet::new();
    for kd in &upload.keys {
        let Some(k) = diagnosis::published_key(state, kd)? else {
            return Err(TxError::Storage(StateError(format!(
                "upload {} names unknown key {}",
                upload.id,
                hex::encode(kd)
            ))));
        };
        let rpik = TemporaryExposureKey(k.key.key_data)
            .rpik()
            .map_err(|e| TxError::Invalid(format!("cannot derive RPIK: {e}")))?;
        let start = k.key.rolling_start_interval_number;
        for i in 0..k.key.rolling_period {
            out.insert(rpik.rpi(EnIntervalNumber(start.saturating_add(i))).0);
        }
    }
    Ok(out)
}

fn publish_notices(
    ctx: &mut TxContext<'_, '_>,
    notices: Vec<ExposureNotice>,
) -> Result<(), TxError> {
    if notices.is_empty() {
        return Err(ExposureError::NoNotices.into());
    }
    if notices.len() > MAX_NOTICES_PER_CALL {
        return Err(ExposureError::TooManyNotices {
            count: notices.len(),
        }
        .into());
    }
    let today = u32::try_from(ctx.time_ms / 1000 / 86_400).unwrap_or(u32::MAX);
    let oldest = today.saturating_sub(MAX_NOTICE_AGE_DAYS);
    // RPIs of each source upload's case, derived once per call.
    let mut case: BTreeMap<Hash, BTreeSet<[u8; 16]>> = BTreeMap::new();
    let mut count: u64 = ctx.get(STATS_KEY)?.unwrap_or(0);
    for (index, n) in notices.into_iter().enumerate() {
        if n.rpis.is_empty() || n.rpis.len() > MAX_RPIS_PER_NOTICE {
            return Err(ExposureError::RpiCount {
                index,
                count: n.rpis.len(),
            }
            .into());
        }
        let rpis = n.rpis.clone();
        if n.day > today || n.day < oldest {
            return Err(ExposureError::DayOutOfWindow {
                index,
                day: n.day,
                today,
            }
            .into());
        }
        let up = diagnosis::upload(ctx.world(), &n.source_upload)?.ok_or(
            ExposureError::UnknownUpload {
                index,
                upload: n.source_upload,
            },
        )?;
        if up.report_type == ReportType::Revoked {
            return Err(ExposureError::RevocationUpload {
                index,
                upload: n.source_upload,
            }
            .into());
        }
        // Matching accepts ±2 h of clock skew, so an exposure may fall on the day before the
        // first key's day or after the last one's, never further.
        let first = up.days.first().copied().unwrap_or(0).saturating_sub(1);
        let last = up.days.last().copied().unwrap_or(0).saturating_add(1);
        if n.day < first || n.day > last {
            return Err(ExposureError::DayNotInUpload {
                index,
                day: n.day,
                upload: n.source_upload,
                days: up.days,
            }
            .into());
        }
        for rpi in &rpis {
            if diagnosis::published_key(ctx.world(), rpi)?.is_some() {
                return Err(ExposureError::CarriesCaseKey {
                    index,
                    rpi: hex::encode(rpi),
                }
                .into());
            }
        }
        let set = match case.entry(n.source_upload) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(case_rpis(ctx.world(), &up)?),
        };
        if let Some(rpi) = rpis.iter().find(|r| set.contains(*r)) {
            return Err(ExposureError::CarriesCaseRpi {
                index,
                rpi: hex::encode(rpi),
                upload: n.source_upload,
            }
            .into());
        }
        let id = notice_id(&n.source_upload, n.day, &rpis);
        if ctx.contains(&notice_key(&id))? {
            return Err(ExposureError::DuplicateNotice { id }.into());
        }
        for rpi in &rpis {
            if let Some(prev) = ctx.get::<Hash>(&rpi_key(rpi, &n.source_upload))? {
                return Err(ExposureError::RpiAlreadyNotified {
                    rpi: hex::encode(rpi),
                    upload: n.source_upload,
                    id: prev,
                }
                .into());
            }
        }
        for rpi in &rpis {
            ctx.put(&rpi_key(rpi, &n.source_upload), &id)?;
        }
        ctx.put(&day_key(n.day, &id), &id)?;
        ctx.put(
            &notice_key(&id),
            &NoticeRecord {
                id,
                rpis,
                risk_score: n.risk_score,
                day: n.day,
                source_upload: n.source_upload,
                height: ctx.height,
            },
        )?;
        count += 1;
        ctx.emit(
            "notice_published",
            &[("day", n.day.to_string()), ("notice_id", id.to_hex())],
        )?;
    }
    ctx.put(STATS_KEY, &count)
}

/// The `exposure` module. Queries: `notices?day=N&after=<notice id hex>&limit=`,
/// `by_rpi?rpi=<hex>&after=<upload id hex>&limit=`, `notice/<id hex>`, `stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExposureModule;

impl Module for ExposureModule {
    type Call = ExposureCall;
    const NAME: &'static str = NAME;

    fn access(&self, _call: &ExposureCall) -> Access {
        Access::Members {
            org_kinds: &[OrgKind::EdgeOperator],
            roles: &[Role::Operator],
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: ExposureCall) -> Result<(), TxError> {
        match call {
            ExposureCall::PublishNotices { notices } => publish_notices(ctx, notices),
        }
    }

    fn query(
        &self,
        state: &dyn StateRead,
        path: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<serde_json::Value, QueryError> {
        match path {
            "notices" => {
                only_params(params, &["day", "after", "limit"])?;
                by_day(state, params)
            }
            "by_rpi" => {
                only_params(params, &["rpi", "after", "limit"])?;
                by_rpi(state, params)
            }
            "stats" => {
                only_params(params, &[])?;
                let n: u64 = read_value(state, &module_key(NAME, STATS_KEY))?.unwrap_or(0);
                Ok(serde_json::json!({ "notices": n }))
            }
            _ => {
                if let Some(h) = path.strip_prefix("notice/") {
                    only_params(params, &[])?;
                    let id =
                        Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("id: {e}")))?;
                    let rec = notice(state, &id)?
                        .ok_or_else(|| QueryError::NotFound(format!("notice {id}")))?;
                    return to_json(&rec);
                }
                Err(QueryError::NotFound(format!(
                    "no query {path:?}; exposure answers notices?day=, by_rpi?rpi=, \
                     notice/<id>, stats"
                )))
            }
        }
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with(NOTICE_PREFIX) {
            serde_json::to_value(decode_stored::<NoticeRecord>(value)?).ok()
        } else if key.starts_with(DAY_PREFIX) || key.starts_with(RPI_PREFIX) {
            Some(serde_json::json!({ "notice_id": decode_stored::<Hash>(value)? }))
        } else if key == STATS_KEY {
            Some(serde_json::json!({ "notices": decode_stored::<u64>(value)? }))
        } else {
            None
        }
    }
}

fn notices_of(
    state: &dyn StateRead,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Result<Vec<NoticeRecord>, QueryError> {
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let id = decode_stored::<Hash>(v).ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "undecodable exposure index entry at {}",
                String::from_utf8_lossy(k)
            )))
        })?;
        let rec = notice(state, &id)?.ok_or_else(|| {
            QueryError::Storage(StateError(format!("index names unknown notice {id}")))
        })?;
        out.push(rec);
    }
    Ok(out)
}

fn hash_param(params: &BTreeMap<String, String>, name: &str) -> Result<Option<Hash>, QueryError> {
    params
        .get(name)
        .map(|h| Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("{name}: {e}"))))
        .transpose()
}

fn by_day(
    state: &dyn StateRead,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    let day: u32 = params
        .get("day")
        .ok_or_else(|| QueryError::Invalid("day is required (days since the Unix epoch)".into()))?
        .parse()
        .map_err(|_| QueryError::Invalid("day must be a non-negative integer".into()))?;
    let cursor = hash_param(params, "after")?.map(|id| day_key(day, &id));
    let (entries, more) = page(state, NAME, &day_prefix(day), cursor.as_deref(), limit)?;
    let notices = notices_of(state, &entries)?;
    let next = if more {
        notices.last().map(|n| n.id)
    } else {
        None
    };
    Ok(serde_json::json!({ "day": day, "notices": notices, "next": next }))
}

fn by_rpi(
    state: &dyn StateRead,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    let raw = params
        .get("rpi")
        .ok_or_else(|| QueryError::Invalid("rpi is required (32 hex digits)".into()))?;
    let rpi: [u8; 16] =
        parse_hex_array(raw).map_err(|e| QueryError::Invalid(format!("rpi: {e}")))?;
    let cursor = hash_param(params, "after")?.map(|up| rpi_key(&rpi, &up));
    let (entries, more) = page(state, NAME, &rpi_prefix(&rpi), cursor.as_deref(), limit)?;
    let notices = notices_of(state, &entries)?;
    let next = if more {
        notices.last().map(|n| n.source_upload)
    } else {
        None
    };
    Ok(serde_json::json!({ "rpi": hex::encode(rpi), "notices": notices, "next": next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_ids_ignore_the_score_but_bind_the_rest() {
        let up = Hash([1; 32]);
        let a = notice_id(&up, 5, &[[1; 16], [2; 16]]);
        assert_eq!(a, notice_id(&up, 5, &[[1; 16], [2; 16]]));
        assert_ne!(a, notice_id(&up, 6, &[[1; 16], [2; 16]]));
        assert_ne!(a, notice_id(&Hash([2; 32]), 5, &[[1; 16], [2; 16]]));
        assert_ne!(a, notice_id(&up, 5, &[[1; 16]]));
    }

    #[test]
    fn json_form() {
        let n = ExposureNotice {
            rpis: vec![[0xab; 16]],
            risk_score: 7,
            day: 19_675,
            source_upload: Hash([3; 32]),
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["rpis"][0], "ab".repeat(16));
        assert_eq!(serde_json::from_value::<ExposureNotice>(v).unwrap(), n);
        let bad = serde_json::json!({"rpis": ["ab"], "risk_score": 1, "day": 1, "source_upload": "03".repeat(32)});
        assert!(serde_json::from_value::<ExposureNotice>(bad).is_err());
    }
}
