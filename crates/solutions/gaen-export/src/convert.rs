//! [`DiagnosisKey`] ⇄ [`proto::TemporaryExposureKey`].

use trustedge_tracing::{DiagnosisKey, ReportType, TEK_ROLLING_PERIOD};

use crate::proto;

/// GAEN's default (and largest) `rolling_period`: 144 intervals of 10 minutes.
const DEFAULT_ROLLING_PERIOD: i32 = 144;

/// The export form of a diagnosis key, as GAEN servers write it: `rolling_period` is omitted
/// when it is the default 144, `report_type` when it is `UNKNOWN`, `days_since_onset` when
/// unknown; the deprecated `transmission_risk_level` and `variant_of_concern` are not set.
///
/// Fails when the key cannot be represented (`rolling_start_interval_number` or
/// `rolling_period` above `i32::MAX`).
pub fn key_to_proto(key: &DiagnosisKey) -> Result<proto::TemporaryExposureKey, String> {
    let rolling_start = i32::try_from(key.rolling_start_interval_number).map_err(|_| {
        format!(
            "rolling_start_interval_number {} does not fit the export's int32",
            key.rolling_start_interval_number
        )
    })?;
    let rolling_period = i32::try_from(key.rolling_period)
        .map_err(|_| format!("rolling_period {} out of range", key.rolling_period))?;
    Ok(proto::TemporaryExposureKey {
        key_data: Some(key.key_data.to_vec()),
        transmission_risk_level: None,
        rolling_start_interval_number: Some(rolling_start),
        rolling_period: (rolling_period != DEFAULT_ROLLING_PERIOD).then_some(rolling_period),
        report_type: (key.report_type != ReportType::Unknown).then(|| key.report_type.number()),
        days_since_onset_of_symptoms: key.days_since_onset,
        variant_of_concern: None,
    })
}

/// The diagnosis key of an exported key.
///
/// `key_data` must be exactly 16 bytes, `rolling_start_interval_number` (0 when absent) not
/// negative, `rolling_period` (144 when absent) in 1..=144. An absent or unknown
/// `report_type` becomes [`ReportType::Unknown`] (GAEN receivers treat it as absent).
/// `transmission_risk_level` and `variant_of_concern` have no place in a [`DiagnosisKey`] and
/// are dropped.
pub fn key_from_proto(key: &proto::TemporaryExposureKey) -> Result<DiagnosisKey, String> {
    let data = key.key_data.as_deref().ok_or("key_data is missing")?;
    let key_data: [u8; 16] = data
        .try_into()
        .map_err(|_| format!("key_data is {} bytes, not 16", data.len()))?;
    // Absent is the proto2 default 0 (early GAEN servers omitted a zero start).
    let start = key.rolling_start_interval_number();
    let rolling_start_interval_number = u32::try_from(start)
        .map_err(|_| format!("rolling_start_interval_number {start} is negative"))?;
    // `rolling_period()` is prost's accessor: the .proto default 144 when the field is absent.
    let period = key.rolling_period();
    let rolling_period = u32::try_from(period)
        .ok()
        .filter(|p| (1..=TEK_ROLLING_PERIOD).contains(p))
        .ok_or_else(|| format!("rolling_period {period} is outside 1..={TEK_ROLLING_PERIOD}"))?;
    let report_type = key
        .report_type
        .and_then(ReportType::from_number)
        .unwrap_or(ReportType::Unknown);
    Ok(DiagnosisKey {
        key_data,
        rolling_start_interval_number,
        rolling_period,
        report_type,
        days_since_onset: key.days_since_onset_of_symptoms,
    })
}
