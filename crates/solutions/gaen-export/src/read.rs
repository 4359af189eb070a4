//! Reading exports: the zip (bounded), `export.bin` and `export.sig`.

use std::io::{Cursor, Read as _};

use p256::ecdsa::VerifyingKey;
use prost::Message as _;
use trustedge_tracing::DiagnosisKey;

use crate::sign::{SignatureVerdict, verify_signature_with_key};
use crate::{
    EXPORT_BIN_NAME, EXPORT_HEADER, EXPORT_SIG_NAME, ExportError, MAX_EXPORT_BIN_BYTES,
    MAX_EXPORT_SIG_BYTES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES, convert, proto,
};

/// The header fields of an export (`TemporaryExposureKeyExport` without its keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportHeader {
    /// Start of the keys' arrival window, Unix seconds.
    pub start_timestamp: Option<u64>,
    /// End of that window, Unix seconds.
    pub end_timestamp: Option<u64>,
    /// Region of the keys.
    pub region: Option<String>,
    /// 1-based number of this file in its batch.
    pub batch_num: Option<i32>,
    /// Files in the batch.
    pub batch_size: Option<i32>,
}

/// A decoded export.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedExport {
    /// The raw `export.bin` (header included): what the signatures cover.
    pub export_bin: Vec<u8>,
    /// Header fields.
    pub header: ExportHeader,
    /// Descriptions of the signing keys, as listed in `export.bin`.
    pub signature_infos: Vec<proto::SignatureInfo>,
    /// Keys released for the first time, in file order.
    pub keys: Vec<DiagnosisKey>,
    /// Keys whose status changed (e.g. revoked), in file order.
    pub revised_keys: Vec<DiagnosisKey>,
    /// The raw `export.sig`; `None` for a raw `export.bin` or a zip without one.
    pub export_sig: Option<Vec<u8>>,
    /// The decoded `export.sig`; `None` when [`ParsedExport::export_sig`] is.
    pub signature_list: Option<proto::TekSignatureList>,
}

impl ParsedExport {
    /// Checks the signatures against `public_key`; `None` when there is no `export.sig`.
    pub fn verify(&self, public_key: &VerifyingKey) -> Option<SignatureVerdict> {
        self.signature_list
            .as_ref()
            .map(|list| verify_signature_with_key(&self.export_bin, list, public_key))
    }
}

/// Decodes a raw `export.bin`: the 16-byte header, then the protobuf. Unknown and reserved
/// fields are skipped. Every key must satisfy [`crate::key_from_proto`]'s rules.
pub fn parse_export_bin(export_bin: &[u8]) -> Result<ParsedExport, ExportError> {
    if export_bin.len() > MAX_EXPORT_BIN_BYTES {
        return Err(ExportError::EntryTooLarge {
            name: EXPORT_BIN_NAME,
            max_bytes: MAX_EXPORT_BIN_BYTES,
        });
    }
    let body = export_bin
        .strip_prefix(EXPORT_HEADER.as_slice())
        .ok_or(ExportError::BadHeader)?;
    let export =
        proto::TemporaryExposureKeyExport::decode(body).map_err(|source| ExportError::Decode {
            what: "TemporaryExposureKeyExport",
            source,
        })?;
    let keys = convert_keys("keys", &export.keys)?;
    let revised_keys = convert_keys("revised_keys", &export.revised_keys)?;
    Ok(ParsedExport {
        export_bin: export_bin.to_vec(),
        header: ExportHeader {
            start_timestamp: export.start_timestamp,
            end_timestamp: export.end_timestamp,
            region: export.region,
            batch_num: export.batch_num,
            batch_size: export.batch_size,
        },
        signature_infos: export.signature_infos,
        keys,
        revised_keys,
        export_sig: None,
        signature_list: None,
    })
}

fn convert_keys(
    list: &'static str,
    keys: &[proto::TemporaryExposureKey],
) -> Result<Vec<DiagnosisKey>, ExportError> {
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            convert::key_from_proto(key).map_err(|reason| ExportError::InvalidKey {
                list,
                index,
                reason,
            })
        })
        .collect()
}

/// Decodes an export zip: `export.bin` (required) and `export.sig` (optional here; without it
/// [`ParsedExport::signature_list`] is `None`). Refuses, before inflating anything, a zip
/// larger than [`MAX_ZIP_BYTES`] or with more than [`MAX_ZIP_ENTRIES`] entries, and an entry
/// whose declared or actual inflated size passes its limit. Never panics on arbitrary bytes.
pub fn parse_export_zip(zip_bytes: &[u8]) -> Result<ParsedExport, ExportError> {
    if zip_bytes.len() > MAX_ZIP_BYTES {
        return Err(ExportError::ZipTooLarge {
            size_bytes: zip_bytes.len(),
            max_bytes: MAX_ZIP_BYTES,
        });
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .map_err(|e| ExportError::Zip(e.to_string()))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ExportError::TooManyEntries {
            entries: archive.len(),
            max_entries: MAX_ZIP_ENTRIES,
        });
    }
    let export_bin = read_entry(&mut archive, EXPORT_BIN_NAME, MAX_EXPORT_BIN_BYTES)?
        .ok_or(ExportError::MissingEntry(EXPORT_BIN_NAME))?;
    let export_sig = read_entry(&mut archive, EXPORT_SIG_NAME, MAX_EXPORT_SIG_BYTES)?;
    let mut parsed = parse_export_bin(&export_bin)?;
    parsed.signature_list = export_sig
        .as_deref()
        .map(|sig| {
            proto::TekSignatureList::decode(sig).map_err(|source| ExportError::Decode {
                what: "TEKSignatureList",
                source,
            })
        })
        .transpose()?;
    parsed.export_sig = export_sig;
    Ok(parsed)
}

/// The inflated bytes of entry `name`, `None` when absent. The limit is checked on the size
/// the archive declares and again while inflating, since a hostile archive can under-declare.
fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &'static str,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, ExportError> {
    let too_large = ExportError::EntryTooLarge { name, max_bytes };
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ExportError::Zip(format!("{name}: {e}"))),
    };
    let declared = entry.size();
    if usize::try_from(declared).map_or(true, |d| d > max_bytes) {
        return Err(too_large);
    }
    let mut out = Vec::new();
    // Read at most one byte past the limit: enough to tell "too large" without inflating more.
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    entry
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ExportError::Zip(format!("{name}: {e}")))?;
    if out.len() > max_bytes {
        return Err(too_large);
    }
    Ok(Some(out))
}
