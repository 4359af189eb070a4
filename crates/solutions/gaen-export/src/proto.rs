//! The messages of GAEN's `export.proto` (proto2), written out by hand with `prost`'s derive so
//! that no `protoc` is needed to build. Field numbers, types and defaults follow the .proto
//! exactly; `tests/it/proto_schema.rs` checks them against the .proto text.
//!
//! Decoding skips unknown and reserved fields (protobuf's rule), so files from older servers
//! that still set `SignatureInfo`'s reserved fields 1 and 2 decode.

/// A key export: the protobuf that follows the 16-byte header in `export.bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TemporaryExposureKeyExport {
    /// Start of the time window of the keys (arrival at the server), Unix seconds.
    #[prost(fixed64, optional, tag = "1")]
    pub start_timestamp: Option<u64>,
    /// End of that window, Unix seconds.
    #[prost(fixed64, optional, tag = "2")]
    pub end_timestamp: Option<u64>,
    /// Region the keys came from (e.g. a country code or MCC).
    #[prost(string, optional, tag = "3")]
    pub region: Option<String>,
    /// This file's 1-based number within its batch.
    #[prost(int32, optional, tag = "4")]
    pub batch_num: Option<i32>,
    /// Number of files in the batch.
    #[prost(int32, optional, tag = "5")]
    pub batch_size: Option<i32>,
    /// The signing keys' descriptions, most recent first (at most 10 are read by phones).
    #[prost(message, repeated, tag = "6")]
    pub signature_infos: Vec<SignatureInfo>,
    /// Keys released for the first time.
    #[prost(message, repeated, tag = "7")]
    pub keys: Vec<TemporaryExposureKey>,
    /// Keys whose status changed since an earlier release (e.g. revoked).
    #[prost(message, repeated, tag = "8")]
    pub revised_keys: Vec<TemporaryExposureKey>,
}

/// Describes the key that signs an export. Fields 1 and 2 (`app_bundle_id`,
/// `android_package`) are reserved: decoding skips them.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SignatureInfo {
    /// Key version for rollovers, `[a-zA-Z0-9_]`, e.g. `v1`.
    #[prost(string, optional, tag = "3")]
    pub verification_key_version: Option<String>,
    /// Alias of the public key (for Apple: the MCC), `[a-zA-Z0-9_]`.
    #[prost(string, optional, tag = "4")]
    pub verification_key_id: Option<String>,
    /// ASN.1 OID of the signature algorithm, `1.2.840.10045.4.3.2` for ECDSA P-256 / SHA-256.
    #[prost(string, optional, tag = "5")]
    pub signature_algorithm: Option<String>,
}

/// One diagnosis key as exported.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct TemporaryExposureKey {
    /// The TEK (16 bytes).
    #[prost(bytes = "vec", optional, tag = "1")]
    pub key_data: Option<Vec<u8>>,
    /// Deprecated risk level, ignored by v1.5+ clients when `report_type` is set.
    #[prost(int32, optional, tag = "2")]
    pub transmission_risk_level: Option<i32>,
    /// First ENIntervalNumber of the key.
    #[prost(int32, optional, tag = "3")]
    pub rolling_start_interval_number: Option<i32>,
    /// Number of 10-minute intervals the key is valid for; absent means 144.
    #[prost(int32, optional, tag = "4", default = "144")]
    pub rolling_period: Option<i32>,
    /// Why the key was published ([`ReportType`] number).
    #[prost(enumeration = "ReportType", optional, tag = "5")]
    pub report_type: Option<i32>,
    /// Days from symptom onset to the key's day.
    #[prost(sint32, optional, tag = "6")]
    pub days_since_onset_of_symptoms: Option<i32>,
    /// Variant of concern ([`VariantOfConcern`] number).
    #[prost(
        enumeration = "VariantOfConcern",
        optional,
        tag = "8",
        default = "VariantTypeUnknown"
    )]
    pub variant_of_concern: Option<i32>,
}

/// `TemporaryExposureKey.ReportType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReportType {
    /// Never returned by the client API.
    Unknown = 0,
    /// Confirmed by a test.
    ConfirmedTest = 1,
    /// Confirmed by a clinical diagnosis.
    ConfirmedClinicalDiagnosis = 2,
    /// Self-reported.
    SelfReport = 3,
    /// Recursive notification.
    Recursive = 4,
    /// Revokes an earlier key; never returned by the client API.
    Revoked = 5,
}

/// `TemporaryExposureKey.VariantOfConcern`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VariantOfConcern {
    /// Unknown variant.
    VariantTypeUnknown = 0,
    /// Vaccine is effective.
    VariantType1 = 1,
    /// Highly transmissive.
    VariantType2 = 2,
    /// High severity.
    VariantType3 = 3,
    /// Vaccine breakthrough.
    VariantType4 = 4,
}

/// The content of `export.sig`: one signature per signing key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TekSignatureList {
    /// The signatures, most recent signing key first.
    #[prost(message, repeated, tag = "1")]
    pub signatures: Vec<TekSignature>,
}

/// One signature over the whole `export.bin` (header included).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TekSignature {
    /// The signing key's description.
    #[prost(message, optional, tag = "1")]
    pub signature_info: Option<SignatureInfo>,
    /// Must equal the export's `batch_num`.
    #[prost(int32, optional, tag = "2")]
    pub batch_num: Option<i32>,
    /// Must equal the export's `batch_size`.
    #[prost(int32, optional, tag = "3")]
    pub batch_size: Option<i32>,
    /// The signature, X9.62 DER (an ASN.1 SEQUENCE of two INTEGERs).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub signature: Option<Vec<u8>>,
}
