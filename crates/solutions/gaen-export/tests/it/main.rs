//! Integration tests of trustedge-gaen-export: the .proto schema cross-check, the published
//! sample exports, our own exports (round trip, determinism, batches), and hostile input.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod hostile;
mod own_exports;
mod proto_schema;
mod samples;

use std::path::PathBuf;

use trustedge_gaen_export::p256::ecdsa::SigningKey;
use trustedge_tracing::{DiagnosisKey, ReportType};

/// A file of /work/shared/testdata/gaen (beside the repository). A missing file fails the
/// test: the published samples are the point of these tests.
pub fn gaen_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../shared/testdata/gaen")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "GAEN test file {} is missing or unreadable ({e}); the shared/ directory must be \
             checked out beside the repository",
            path.display()
        )
    })
}

pub fn gaen_text(name: &str) -> String {
    String::from_utf8(gaen_file(name)).unwrap()
}

/// A fixed signing key (a valid P-256 scalar), so tests are reproducible.
pub fn test_signing_key(seed: u8) -> SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 0x01; // well below the group order
    SigningKey::from_bytes(&bytes.into()).unwrap()
}

/// `n` distinct diagnosis keys with varied fields.
pub fn some_keys(n: usize) -> Vec<DiagnosisKey> {
    (0..n)
        .map(|i| {
            let mut key_data = [0u8; 16];
            // Reverse-ordered key bytes, so insertion order is not sorted order.
            key_data[..8].copy_from_slice(&(u64::MAX - i as u64 * 7919).to_be_bytes());
            key_data[8..].copy_from_slice(&(i as u64).to_le_bytes());
            DiagnosisKey {
                key_data,
                rolling_start_interval_number: 2_650_000 + 144 * (i as u32 % 14),
                rolling_period: if i % 5 == 0 { 72 } else { 144 },
                report_type: match i % 4 {
                    0 => ReportType::ConfirmedTest,
                    1 => ReportType::ConfirmedClinicalDiagnosis,
                    2 => ReportType::SelfReport,
                    _ => ReportType::Revoked,
                },
                days_since_onset: (i % 3 != 0).then_some(i as i32 % 29 - 14),
            }
        })
        .collect()
}
