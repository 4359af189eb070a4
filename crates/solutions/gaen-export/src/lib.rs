//! GAEN key export files, read and written.
//!
//! An export is a zip holding two entries:
//! - `export.bin`: the 16-byte header [`EXPORT_HEADER`] (`"EK Export v1    "`), then a
//!   protobuf [`proto::TemporaryExposureKeyExport`];
//! - `export.sig`: a protobuf [`proto::TekSignatureList`]. Each signature is ECDSA P-256 over
//!   the SHA-256 of the *whole* `export.bin`, header included, DER-encoded (X9.62).
//!
//! Reading ([`parse_export_zip`], [`parse_export_bin`]) is bounded (zip size, entry count, entry
//! sizes, so a zip bomb is refused before it is inflated) and never panics on arbitrary bytes.
//! Writing ([`build_export_zip`], [`build_export_batches`]) is deterministic: keys are sorted by
//! `key_data` (as GAEN servers do, so the file does not reveal upload order), the zip has fixed
//! timestamps, and ECDSA nonces are RFC 6979, so the same keys and key give the same bytes.
//!
//! Diagnosis keys are [`trustedge_tracing::DiagnosisKey`]; [`key_to_proto`] and
//! [`key_from_proto`] convert. The crate is pure: no clock, no randomness, no I/O.

pub mod proto;

mod convert;
mod read;
mod sign;
mod write;

pub use convert::{key_from_proto, key_to_proto};
pub use p256;
pub use read::{ExportHeader, ParsedExport, parse_export_bin, parse_export_zip};
pub use sign::{
    MatchedSignature, SignatureVerdict, parse_public_key_pem, parse_signing_key_pem,
    public_key_to_pem, signing_key_to_pem, verify_signature, verify_signature_with_key,
};
pub use write::{
    ExportMeta, build_export_batches, build_export_bin, build_export_zip, sign_export_bin,
    split_into_batches, zip_export,
};

/// The 16-byte, space-padded header that starts every `export.bin`.
pub const EXPORT_HEADER: &[u8; 16] = b"EK Export v1    ";
/// Name of the key file inside the zip.
pub const EXPORT_BIN_NAME: &str = "export.bin";
/// Name of the signature file inside the zip.
pub const EXPORT_SIG_NAME: &str = "export.sig";
/// ASN.1 OID of ECDSA with SHA-256 (the only algorithm phones accept with P-256 keys).
pub const ECDSA_P256_SHA256_OID: &str = "1.2.840.10045.4.3.2";
/// Keys per file above which a day is split into batches (the GAEN reference server's default
/// `EXPORT_FILE_MAX_RECORDS`).
pub const MAX_KEYS_PER_FILE: usize = 500_000;
/// Signature infos a phone reads per file (`export.proto`); more are refused when building.
pub const MAX_SIGNATURE_INFOS: usize = 10;

/// Largest zip accepted by [`parse_export_zip`].
pub const MAX_ZIP_BYTES: usize = 32 << 20;
/// Most entries accepted in an export zip (GAEN writes two).
pub const MAX_ZIP_ENTRIES: usize = 8;
/// Largest `export.bin` accepted (inflated): room for [`MAX_KEYS_PER_FILE`] keys of ~40 bytes.
pub const MAX_EXPORT_BIN_BYTES: usize = 24 << 20;
/// Largest `export.sig` accepted (inflated): ten signatures take well under 4 KiB.
pub const MAX_EXPORT_SIG_BYTES: usize = 64 << 10;

/// Why an export could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The zip is larger than [`MAX_ZIP_BYTES`].
    #[error("zip archive of {size_bytes} bytes is larger than the limit of {max_bytes} bytes")]
    ZipTooLarge {
        /// Size of the input.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The bytes are not a zip archive the reader understands (or an entry is corrupt).
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    /// The zip holds more than [`MAX_ZIP_ENTRIES`] entries.
    #[error("zip archive has {entries} entries, more than the limit of {max_entries}")]
    TooManyEntries {
        /// Entries in the archive.
        entries: usize,
        /// The limit.
        max_entries: usize,
    },
    /// An entry inflates to more than its limit (declared or actual size): a zip bomb or not
    /// an export.
    #[error("zip entry {name} inflates to more than the limit of {max_bytes} bytes")]
    EntryTooLarge {
        /// Entry name.
        name: &'static str,
        /// The limit.
        max_bytes: usize,
    },
    /// A required entry is missing from the zip.
    #[error("zip archive has no {0} entry")]
    MissingEntry(&'static str),
    /// `export.bin` does not start with [`EXPORT_HEADER`].
    #[error("export.bin does not start with the 16-byte header \"EK Export v1    \"")]
    BadHeader,
    /// A protobuf message does not decode.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// The decoder's reason.
        source: prost::DecodeError,
    },
    /// A key in the file breaks GAEN's rules.
    #[error("{list}[{index}]: {reason}")]
    InvalidKey {
        /// `keys` or `revised_keys`.
        list: &'static str,
        /// Position in that list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key given to the writer cannot be exported.
    #[error("diagnosis key {key_hex}: {reason}")]
    UnexportableKey {
        /// The key's `key_data` in hex.
        key_hex: String,
        /// What is wrong.
        reason: String,
    },
    /// More keys than [`MAX_KEYS_PER_FILE`] (or the given maximum) for one file.
    #[error("{keys} keys do not fit in one export file (at most {max_keys})")]
    TooManyKeys {
        /// Keys given.
        keys: usize,
        /// The limit.
        max_keys: usize,
    },
    /// The export metadata is not valid (timestamps, batch numbers, signature info).
    #[error("invalid export metadata: {0}")]
    InvalidMeta(String),
    /// A PEM key does not parse.
    #[error("invalid {what}: {reason}")]
    InvalidKeyPem {
        /// `public key` or `signing key`.
        what: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// Writing the zip failed (does not happen in memory, but the writer's API is fallible).
    #[error("cannot write the zip archive: {0}")]
    ZipWrite(String),
}
