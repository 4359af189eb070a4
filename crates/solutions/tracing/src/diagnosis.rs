//! Diagnosis keys: the TEKs a confirmed case shares, with the fields of GAEN's
//! `TemporaryExposureKey` export message. One type for the ledger, the exports and matching.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::{EnIntervalNumber, TEK_ROLLING_PERIOD, TemporaryExposureKey};

/// GAEN's report type of a diagnosis key (`TemporaryExposureKey.ReportType` in `export.proto`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ReportType {
    /// Never used by a sender; receivers treat it as absent.
    Unknown = 0,
    /// Confirmed by a laboratory test.
    ConfirmedTest = 1,
    /// Confirmed by a clinician's diagnosis.
    ConfirmedClinicalDiagnosis = 2,
    /// Reported by the user without confirmation.
    SelfReport = 3,
    /// Reserved by GAEN (recursive notification).
    Recursive = 4,
    /// The key was shared before and is now withdrawn.
    Revoked = 5,
}

impl ReportType {
    /// The protobuf enum number.
    pub fn number(self) -> i32 {
        self as i32
    }

    /// The report type of a protobuf enum number, `None` when the number is unknown.
    pub fn from_number(n: i32) -> Option<ReportType> {
        Some(match n {
            0 => ReportType::Unknown,
            1 => ReportType::ConfirmedTest,
            2 => ReportType::ConfirmedClinicalDiagnosis,
            3 => ReportType::SelfReport,
            4 => ReportType::Recursive,
            5 => ReportType::Revoked,
            _ => return None,
        })
    }
}

/// A diagnosis key: a TEK a confirmed case shares, with its validity and report fields.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct DiagnosisKey {
    /// The TEK's 16 bytes.
    #[serde(with = "hex16")]
    pub key_data: [u8; 16],
    /// First interval the key was valid for.
    pub rolling_start_interval_number: u32,
    /// Number of intervals it was valid for, 1..=144 (GAEN's default is 144).
    pub rolling_period: u32,
    /// How the case was confirmed, or [`ReportType::Revoked`].
    pub report_type: ReportType,
    /// Days from symptom onset to the key's day (GAEN: -14..=14), when known.
    pub days_since_onset: Option<i32>,
}

impl DiagnosisKey {
    /// A confirmed-test key valid for a whole day from `rolling_start`.
    pub fn confirmed(tek: TemporaryExposureKey, rolling_start: EnIntervalNumber) -> DiagnosisKey {
        DiagnosisKey {
            key_data: tek.0,
            rolling_start_interval_number: rolling_start.0,
            rolling_period: TEK_ROLLING_PERIOD,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        }
    }

    /// The key as a TEK, to expand into RPIs.
    pub fn tek(&self) -> TemporaryExposureKey {
        TemporaryExposureKey(self.key_data)
    }

    /// First interval after the key's validity (saturating).
    pub fn end_interval_number(&self) -> u32 {
        self.rolling_start_interval_number
            .saturating_add(self.rolling_period)
    }
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(32);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 32 || !s.is_ascii() {
            return Err(D::Error::custom("key_data must be 32 hex digits"));
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(D::Error::custom)?;
            out[i] = u8::from_str_radix(pair, 16).map_err(D::Error::custom)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_borsh_round_trip() {
        let key = DiagnosisKey {
            key_data: [0xab; 16],
            rolling_start_interval_number: 2_642_976,
            rolling_period: 144,
            report_type: ReportType::Revoked,
            days_since_onset: Some(-3),
        };
        let json = serde_json::to_string(&key).unwrap();
        assert!(
            json.contains("\"key_data\":\"abababababababababababababababab\""),
            "{json}"
        );
        assert!(json.contains("\"REVOKED\""), "{json}");
        assert_eq!(serde_json::from_str::<DiagnosisKey>(&json).unwrap(), key);
        let bytes = borsh::to_vec(&key).unwrap();
        assert_eq!(borsh::from_slice::<DiagnosisKey>(&bytes).unwrap(), key);
        assert!(serde_json::from_str::<DiagnosisKey>(&json.replace("abab", "zz")).is_err());
        assert_eq!(key.end_interval_number(), 2_643_120);
        for n in 0..=5 {
            assert_eq!(ReportType::from_number(n).unwrap().number(), n);
        }
        assert_eq!(ReportType::from_number(6), None);
    }
}
