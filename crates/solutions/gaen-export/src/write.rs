//! Writing exports: `export.bin`, `export.sig` and the deterministic zip.

use std::io::{Cursor, Write as _};

use p256::ecdsa::SigningKey;
use prost::Message as _;
use trustedge_tracing::{DiagnosisKey, ReportType};

use crate::sign::sign_der;
use crate::{
    ECDSA_P256_SHA256_OID, EXPORT_BIN_NAME, EXPORT_HEADER, EXPORT_SIG_NAME, ExportError,
    MAX_KEYS_PER_FILE, convert, proto,
};

/// What an export says besides its keys, and how its signature is described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMeta {
    /// Start of the keys' arrival window, Unix seconds.
    pub start_timestamp: u64,
    /// End of that window, Unix seconds (not before the start).
    pub end_timestamp: u64,
    /// Region of the keys (e.g. a country code or MCC).
    pub region: String,
    /// 1-based number of this file in its batch.
    pub batch_num: i32,
    /// Files in the batch (at least `batch_num`).
    pub batch_size: i32,
    /// Signing-key version, `[a-zA-Z0-9_]*` (e.g. `v1`); omitted from the file when empty.
    pub verification_key_version: String,
    /// Signing-key alias (for Apple: the MCC), `[a-zA-Z0-9_]*`; omitted when empty.
    pub verification_key_id: String,
    /// Must be [`ECDSA_P256_SHA256_OID`], the algorithm this crate signs with.
    pub signature_algorithm: String,
}

impl ExportMeta {
    /// Metadata of a single-file batch (1 of 1) signed with ECDSA P-256 / SHA-256.
    pub fn new(
        start_timestamp: u64,
        end_timestamp: u64,
        region: impl Into<String>,
        verification_key_id: impl Into<String>,
        verification_key_version: impl Into<String>,
    ) -> ExportMeta {
        ExportMeta {
            start_timestamp,
            end_timestamp,
            region: region.into(),
            batch_num: 1,
            batch_size: 1,
            verification_key_version: verification_key_version.into(),
            verification_key_id: verification_key_id.into(),
            signature_algorithm: ECDSA_P256_SHA256_OID.to_string(),
        }
    }

    fn validate(&self) -> Result<(), ExportError> {
        let invalid = |m: String| Err(ExportError::InvalidMeta(m));
        if self.start_timestamp > self.end_timestamp {
            return invalid(format!(
                "start_timestamp {} is after end_timestamp {}",
                self.start_timestamp, self.end_timestamp
            ));
        }
        if self.batch_num < 1 || self.batch_num > self.batch_size {
            return invalid(format!(
                "batch {} of {} (need 1 <= batch_num <= batch_size)",
                self.batch_num, self.batch_size
            ));
        }
        for (field, value) in [
            ("verification_key_version", &self.verification_key_version),
            ("verification_key_id", &self.verification_key_id),
        ] {
            if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return invalid(format!("{field} {value:?} is not [a-zA-Z0-9_]*"));
            }
        }
        if self.signature_algorithm != ECDSA_P256_SHA256_OID {
            return invalid(format!(
                "signature_algorithm {:?}: only {ECDSA_P256_SHA256_OID} (ECDSA P-256 / SHA-256) is produced",
                self.signature_algorithm
            ));
        }
        Ok(())
    }

    fn signature_info(&self) -> proto::SignatureInfo {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        proto::SignatureInfo {
            verification_key_version: non_empty(&self.verification_key_version),
            verification_key_id: non_empty(&self.verification_key_id),
            signature_algorithm: Some(self.signature_algorithm.clone()),
        }
    }
}

/// Keys in GAEN file order: by `key_data` (then the other fields, for a total order), so a
/// file does not reveal the order in which keys were uploaded.
fn sorted(keys: &[DiagnosisKey]) -> Vec<DiagnosisKey> {
    let mut keys = keys.to_vec();
    keys.sort_by_key(|k| {
        (
            k.key_data,
            k.rolling_start_interval_number,
            k.rolling_period,
            k.report_type.number(),
            k.days_since_onset,
        )
    });
    keys
}

/// `export.bin` for `keys`: the header, then the `TemporaryExposureKeyExport`. Keys are sorted
/// by `key_data`; [`ReportType::Revoked`] keys go to `revised_keys`, the others to `keys`.
/// Refuses more than [`MAX_KEYS_PER_FILE`] keys (split them with [`build_export_batches`]),
/// keys GAEN cannot carry (`rolling_period` outside 1..=144, start above `i32::MAX`) and
/// invalid metadata.
pub fn build_export_bin(keys: &[DiagnosisKey], meta: &ExportMeta) -> Result<Vec<u8>, ExportError> {
    meta.validate()?;
    if keys.len() > MAX_KEYS_PER_FILE {
        return Err(ExportError::TooManyKeys {
            keys: keys.len(),
            max_keys: MAX_KEYS_PER_FILE,
        });
    }
    let mut export = proto::TemporaryExposureKeyExport {
        start_timestamp: Some(meta.start_timestamp),
        end_timestamp: Some(meta.end_timestamp),
        region: Some(meta.region.clone()),
        batch_num: Some(meta.batch_num),
        batch_size: Some(meta.batch_size),
        signature_infos: vec![meta.signature_info()],
        keys: Vec::new(),
        revised_keys: Vec::new(),
    };
    for key in sorted(keys) {
        let unexportable = |reason: String| ExportError::UnexportableKey {
            key_hex: key.key_data.iter().map(|b| format!("{b:02x}")).collect(),
            reason,
        };
        if !(1..=trustedge_tracing::TEK_ROLLING_PERIOD).contains(&key.rolling_period) {
            return Err(unexportable(format!(
                "rolling_period {} is outside 1..=144",
                key.rolling_period
            )));
        }
        let pb = convert::key_to_proto(&key).map_err(unexportable)?;
        if key.report_type == ReportType::Revoked {
            export.revised_keys.push(pb);
        } else {
            export.keys.push(pb);
        }
    }
    let mut out = Vec::with_capacity(EXPORT_HEADER.len() + export.encoded_len());
    out.extend_from_slice(EXPORT_HEADER);
    export.encode_raw(&mut out);
    Ok(out)
}

/// `export.sig` for `export_bin`: a `TEKSignatureList` with one signature (ECDSA P-256 over
/// SHA-256 of the whole `export_bin`, DER) carrying `meta`'s signature info and batch.
pub fn sign_export_bin(export_bin: &[u8], meta: &ExportMeta, signing_key: &SigningKey) -> Vec<u8> {
    proto::TekSignatureList {
        signatures: vec![proto::TekSignature {
            signature_info: Some(meta.signature_info()),
            batch_num: Some(meta.batch_num),
            batch_size: Some(meta.batch_size),
            signature: Some(sign_der(export_bin, signing_key)),
        }],
    }
    .encode_to_vec()
}

/// The zip of an export: `export.bin` then `export.sig`, deflated, with fixed timestamps
/// (1980-01-01 00:00), Unix attributes and mode 0644, so equal inputs give equal bytes.
pub fn zip_export(export_bin: &[u8], export_sig: &[u8]) -> Result<Vec<u8>, ExportError> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .system(zip::System::Unix)
        .unix_permissions(0o644);
    let err = |e: &dyn std::fmt::Display| ExportError::ZipWrite(e.to_string());
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in [(EXPORT_BIN_NAME, export_bin), (EXPORT_SIG_NAME, export_sig)] {
        writer.start_file(name, options).map_err(|e| err(&e))?;
        writer.write_all(bytes).map_err(|e| err(&e))?;
    }
    Ok(writer.finish().map_err(|e| err(&e))?.into_inner())
}

/// A signed export zip of `keys` (see [`build_export_bin`], [`sign_export_bin`],
/// [`zip_export`]). Deterministic: the same keys, metadata and signing key give the same
/// bytes (keys sorted, fixed zip timestamps, RFC 6979 ECDSA nonces).
pub fn build_export_zip(
    keys: &[DiagnosisKey],
    meta: &ExportMeta,
    signing_key: &SigningKey,
) -> Result<Vec<u8>, ExportError> {
    let export_bin = build_export_bin(keys, meta)?;
    let export_sig = sign_export_bin(&export_bin, meta, signing_key);
    zip_export(&export_bin, &export_sig)
}

/// `keys` sorted by `key_data` and cut into files of at most `max_keys_per_file` (clamped to
/// 1..=[`MAX_KEYS_PER_FILE`]). Always at least one (possibly empty) batch, so an empty day
/// still has a file.
pub fn split_into_batches(
    keys: &[DiagnosisKey],
    max_keys_per_file: usize,
) -> Vec<Vec<DiagnosisKey>> {
    let max = max_keys_per_file.clamp(1, MAX_KEYS_PER_FILE);
    let keys = sorted(keys);
    if keys.is_empty() {
        return vec![Vec::new()];
    }
    keys.chunks(max).map(<[DiagnosisKey]>::to_vec).collect()
}

/// One signed zip per batch of [`split_into_batches`]: file `i` (0-based) has
/// `batch_num = i + 1` and `batch_size` = the number of files; `meta`'s own batch fields are
/// replaced. Every file shares `meta`'s window and region.
pub fn build_export_batches(
    keys: &[DiagnosisKey],
    meta: &ExportMeta,
    signing_key: &SigningKey,
    max_keys_per_file: usize,
) -> Result<Vec<Vec<u8>>, ExportError> {
    let batches = split_into_batches(keys, max_keys_per_file);
    let batch_size = i32::try_from(batches.len())
        .map_err(|_| ExportError::InvalidMeta(format!("{} batches", batches.len())))?;
    batches
        .iter()
        .zip(1..)
        .map(|(batch, batch_num)| {
            let meta = ExportMeta {
                batch_num,
                batch_size,
                ..meta.clone()
            };
            build_export_zip(batch, &meta, signing_key)
        })
        .collect()
}
