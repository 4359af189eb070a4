//! The `diagnosis` module: diagnosis keys of confirmed cases, published under GAEN's server
//! rules with a verification certificate from a laboratory or a health authority.
//!
//! # Authorisation: the verification certificate
//! A laboratory or health authority confirms a case off the ledger and hands the patient's app
//! a [`VerificationCertificate`]: a random `cert_id`, the [`keys_digest`] of the exact keys the
//! app will upload (like GAEN's `tekmac`, binding the certificate to one upload), the report
//! type, an optional symptom-onset day, a validity window, and the issuer's signature over
//! [`VerificationCertificate::sign_bytes`]. Issuers are *active* members with role
//! [`Role::Clinician`] (a person confirming the case) or [`Role::Operator`] (the
//! organisation's verification service, like GAEN's verification server) of an *active*
//! [`OrgKind::Laboratory`] or [`OrgKind::HealthAuthority`]. Admins are not issuers: their keys
//! manage the organisation and should not be online signing certificates; auditors only read.
//!
//! The certificate is the authorisation, so [`DiagnosisCall::PublishKeys`] may be *signed* by
//! any active member with role admin, operator or clinician, of any organisation kind.
//! In practice the patient's edge node (an edge operator's member key) relays the upload, so
//! the patient's own device identity never appears on the ledger: the transaction names the
//! relaying edge, the certificate names the issuer, and nothing names the patient.
//! Devices cannot sign the call (an [`Access`] rule admits members or devices, not both, and
//! a patient device signing would put its pseudonymous address next to its keys).
//!
//! # GAEN server rules
//! At most [`MAX_KEYS_PER_UPLOAD`] keys; each with rolling period 1..=144, starting on a UTC
//! day at most [`MAX_KEY_AGE_DAYS`] days before the block's day and not after the block's
//! interval; no key twice in an upload nor again once published; `days_since_onset`, if
//! given, in -14..=14; every key's report type equal to the certificate's. Keys whose validity
//! has not ended at block time are *embargoed*: stored, but released (listed by
//! `released?day=`, answered by `key?key_data=`) only by the end-of-block hook of the first
//! block whose time is at or after the end of their validity, which emits `keys_released`.
//! An upload whose certificate has report type [`ReportType::Revoked`] revokes keys published
//! before (GAEN "REVOKED"): they stay listed, with report type `REVOKED`, so that exports can
//! carry them as `revised_keys`.
//!
//! The embargo governs what this module releases (queries, exports built from them, release
//! events). The upload transaction itself is in a block, which every replica of the
//! permissioned ledger holds; it is not published beyond the consortium before release.
//!
//! # Failures
//! Every rejection is a [`DiagnosisError`] with a stable code ([`DiagnosisError::code`]); it
//! is recorded as the [`TxError`] of its category with the message `<code>: <reason>`.
//!
//! # Privacy
//! Stored is exactly what GAEN publishes anyway (key data, rolling start and period, report
//! type, days since onset), plus the certificate id (a random nonce) and the issuing
//! organisation. No patient identifier, device address or location is stored or emitted.
//!
//! # What is stored
//! - `key/<key_data: 16 bytes>` → [`PublishedKey`]: every key ever published.
//! - `day/<day: 4 bytes BE>/<key_data: 16 bytes>` → upload id ([`Hash`]): the *released* keys
//!   by the UTC day of their rolling start (interval number / 144), for per-day exports.
//! - `embargo/<end interval: 4 bytes BE>/<key_data: 16 bytes>` → upload id: keys waiting for
//!   the end of their validity, in release order.
//! - `cert/<cert_id: 16 bytes>` → upload id: used certificates (single use).
//! - `upload/<upload id: 32 bytes>` → [`UploadRecord`].
//! - `stats` → [`DiagnosisStats`].

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use trustedge_execution::module::{MAX_EVENTS_PER_END_BLOCK, module_key, read_value};
use trustedge_execution::{
    Access, BlockContext, Module, OrgKind, QueryError, Role, StateError, StateRead, TxContext,
    TxError,
};
use trustedge_tracing::{DiagnosisKey, INTERVAL_LENGTH_S, ReportType};
use trustedge_types::codec::parse_hex_array;
use trustedge_types::{Hash, Height, Keypair, PublicKey, Signature, codec};

use crate::orgs::{self, MemberStatus, OrgStatus};
use crate::util::{decode_stored, only_params, page, query_limit, to_json};

/// Name of the module.
pub const NAME: &str = "diagnosis";
/// Most keys in one upload (GAEN: 30; 14 days plus same-day revisions).
pub const MAX_KEYS_PER_UPLOAD: usize = 30;
/// Oldest key day accepted, in days before the block's UTC day.
pub const MAX_KEY_AGE_DAYS: u32 = 14;
/// Largest rolling period (one day of 10-minute intervals).
pub const MAX_ROLLING_PERIOD: u32 = 144;
/// Largest `|days_since_onset|`.
pub const MAX_DAYS_SINCE_ONSET: i32 = 14;
/// Longest validity of a certificate.
pub const MAX_CERT_VALIDITY_S: u64 = 7 * 86_400;
/// How far after the block time a certificate may claim to be issued (clock skew).
pub const MAX_ISSUE_SKEW_S: u64 = 300;
/// Most embargoed keys one end-of-block hook releases; the rest follow in the next blocks.
pub const MAX_RELEASES_PER_BLOCK: usize = 1024;
/// Organisation kinds whose members issue certificates.
pub const ISSUER_ORG_KINDS: &[OrgKind] = &[OrgKind::Laboratory, OrgKind::HealthAuthority];
/// Roles that issue certificates.
pub const ISSUER_ROLES: &[Role] = &[Role::Clinician, Role::Operator];
/// Report types a certificate may carry. `UNKNOWN` and `RECURSIVE` are never uploaded.
pub const UPLOAD_REPORT_TYPES: &[ReportType] = &[
    ReportType::ConfirmedTest,
    ReportType::ConfirmedClinicalDiagnosis,
    ReportType::SelfReport,
    ReportType::Revoked,
];
/// 10-minute intervals in a UTC day.
pub const INTERVALS_PER_DAY: u32 = (86_400 / INTERVAL_LENGTH_S) as u32;

/// Domain tag of [`keys_digest`].
const KEYS_DIGEST_TAG: &[u8] = b"trustedge/diagnosis-keys/v1";
/// Domain tag of [`VerificationCertificate::sign_bytes`].
const CERT_SIGN_TAG: &[u8] = b"trustedge/verification-certificate/v1";

/// Serde helpers: a 16-byte array as 32 lowercase hex digits.
pub(crate) mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        trustedge_types::codec::parse_hex_array(&s).map_err(D::Error::custom)
    }
}

/// Serde helpers: a list of 16-byte arrays as hex strings.
pub(crate) mod hex16_vec {
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(v: &[[u8; 16]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&hex::encode(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 16]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| trustedge_types::codec::parse_hex_array(s).map_err(D::Error::custom))
            .collect()
    }
}

/// The digest that binds a certificate to one upload: a domain-tagged SHA-256 over the sorted
/// canonical (Borsh) encodings of the keys, every field included. Order-independent, so a
/// relay may reorder the keys; any other change (a key added, dropped or altered, another
/// report type or onset) changes it. It is also the upload's id on the ledger.
pub fn keys_digest(keys: &[DiagnosisKey]) -> Hash {
    let mut encoded: Vec<Vec<u8>> = keys.iter().map(codec::encode).collect();
    encoded.sort_unstable();
    Hash::tagged(KEYS_DIGEST_TAG, &[&codec::encode(&encoded)])
}

/// The UTC day (days since the Unix epoch) of a key's rolling start.
pub fn key_day(key: &DiagnosisKey) -> u32 {
    key.rolling_start_interval_number / INTERVALS_PER_DAY
}

/// A verification certificate: a laboratory's or health authority's signed statement that the
/// holder of exactly these keys is a confirmed case (see the module docs). JSON form:
/// `{"cert_id": "<32 hex>", "keys_digest": "<64 hex>", "report_type": "CONFIRMED_TEST",
/// "onset_day": null, "issued_at_s": 0, "expires_at_s": 0, "issuer": "<64 hex>",
/// "signature": "<128 hex>"}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationCertificate {
    /// A random nonce chosen by the issuer; a certificate is used at most once.
    #[serde(with = "hex16")]
    pub cert_id: [u8; 16],
    /// [`keys_digest`] of the keys the certificate authorises.
    pub keys_digest: Hash,
    /// Report type of the keys; [`ReportType::Revoked`] for a revocation.
    pub report_type: ReportType,
    /// Day of symptom onset (days since the Unix epoch), when known.
    pub onset_day: Option<u32>,
    /// When it was issued, Unix seconds.
    pub issued_at_s: u64,
    /// When it expires, Unix seconds (exclusive).
    pub expires_at_s: u64,
    /// The issuing member's key.
    pub issuer: PublicKey,
    /// The issuer's signature over [`VerificationCertificate::sign_bytes`].
    pub signature: Signature,
}

impl VerificationCertificate {
    /// Issues a certificate for `keys`, valid `validity_s` seconds from `issued_at_s`. Pure:
    /// the caller supplies the random `cert_id` and the time.
    pub fn issue(
        keypair: &Keypair,
        chain_id: &str,
        cert_id: [u8; 16],
        keys: &[DiagnosisKey],
        report_type: ReportType,
        issued_at_s: u64,
        validity_s: u64,
    ) -> VerificationCertificate {
        Self::issue_with_onset(
            keypair,
            chain_id,
            cert_id,
            keys,
            report_type,
            None,
            issued_at_s..issued_at_s.saturating_add(validity_s),
        )
    }

    /// Like [`VerificationCertificate::issue`], with the day of symptom onset (days since the
    /// Unix epoch; keys without `days_since_onset` get it from this day when published) and
    /// the validity as `issued_at_s..expires_at_s`.
    pub fn issue_with_onset(
        keypair: &Keypair,
        chain_id: &str,
        cert_id: [u8; 16],
        keys: &[DiagnosisKey],
        report_type: ReportType,
        onset_day: Option<u32>,
        valid: std::ops::Range<u64>,
    ) -> VerificationCertificate {
        let mut cert = VerificationCertificate {
            cert_id,
            keys_digest: keys_digest(keys),
            report_type,
            onset_day,
            issued_at_s: valid.start,
            expires_at_s: valid.end,
            issuer: keypair.public(),
            signature: Signature([0; 64]),
        };
        cert.signature = keypair.sign(&cert.sign_bytes(chain_id));
        cert
    }

    /// The bytes the issuer signs for the chain `chain_id`: a domain-tagged hash of the chain
    /// id and the canonical encoding of every field but the signature. Binding the chain id
    /// means a certificate cannot be replayed on another TrustEdge chain where the same
    /// issuer is a member.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        Hash::tagged(
            CERT_SIGN_TAG,
            &[&codec::encode(&(
                chain_id,
                &self.cert_id,
                &self.keys_digest,
                &self.report_type,
                &self.onset_day,
                self.issued_at_s,
                self.expires_at_s,
                &self.issuer,
            ))],
        )
        .0
        .to_vec()
    }

    /// Checks everything that needs no ledger state, in this order: the validity window is
    /// non-empty and at most [`MAX_CERT_VALIDITY_S`]; the signature verifies against
    /// `issuer`; it was not issued after `now_s` (+[`MAX_ISSUE_SKEW_S`]); it has not expired
    /// at `now_s`; it is bound to `keys`. Whether the issuer may issue, and whether the
    /// certificate was used before, are the module's checks.
    pub fn verify(
        &self,
        chain_id: &str,
        keys: &[DiagnosisKey],
        now_s: u64,
    ) -> Result<(), DiagnosisError> {
        if self.expires_at_s <= self.issued_at_s
            || self.expires_at_s - self.issued_at_s > MAX_CERT_VALIDITY_S
        {
            return Err(DiagnosisError::CertificateValidity {
                issued_at_s: self.issued_at_s,
                expires_at_s: self.expires_at_s,
            });
        }
        self.issuer
            .verify(&self.sign_bytes(chain_id), &self.signature)
            .map_err(|_| DiagnosisError::BadSignature {
                issuer: self.issuer,
            })?;
        if self.issued_at_s > now_s.saturating_add(MAX_ISSUE_SKEW_S) {
            return Err(DiagnosisError::IssuedInFuture {
                issued_at_s: self.issued_at_s,
                now_s,
            });
        }
        if now_s >= self.expires_at_s {
            return Err(DiagnosisError::CertificateExpired {
                expires_at_s: self.expires_at_s,
                now_s,
            });
        }
        let actual = keys_digest(keys);
        if actual != self.keys_digest {
            return Err(DiagnosisError::BindingMismatch {
                certified: self.keys_digest,
                actual,
            });
        }
        Ok(())
    }
}

/// Why an upload is refused. [`DiagnosisError::code`] is stable; the transaction's recorded
/// failure is the [`TxError`] of [`DiagnosisError::to_tx_error`], message `<code>: <reason>`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DiagnosisError {
    /// The upload has no key.
    #[error("an upload must carry at least one key")]
    NoKeys,
    /// More than [`MAX_KEYS_PER_UPLOAD`] keys.
    #[error("{count} keys in one upload; at most {MAX_KEYS_PER_UPLOAD} are allowed")]
    TooManyKeys {
        /// Keys in the upload.
        count: usize,
    },
    /// The issuer key was never a member key.
    #[error("certificate issuer {issuer} is not a member key of this ledger")]
    IssuerUnknown {
        /// The issuer.
        issuer: PublicKey,
    },
    /// The issuer key was removed or revoked.
    #[error("certificate issuer {issuer} is {status:?}, not an active member")]
    IssuerInactive {
        /// The issuer.
        issuer: PublicKey,
        /// Its status.
        status: MemberStatus,
    },
    /// The issuer's role does not issue certificates.
    #[error(
        "certificate issuer {issuer} has role {role:?}; certificates are issued by {ISSUER_ROLES:?}"
    )]
    IssuerRole {
        /// The issuer.
        issuer: PublicKey,
        /// Its role.
        role: Role,
    },
    /// The issuer's organisation is not a laboratory or health authority.
    #[error(
        "certificate issuer belongs to {org:?}, a {kind:?}; certificates are issued by \
         {ISSUER_ORG_KINDS:?}"
    )]
    IssuerOrgKind {
        /// The organisation.
        org: String,
        /// Its kind.
        kind: OrgKind,
    },
    /// The issuer's organisation is suspended (or unknown).
    #[error("certificate issuer's organisation {org:?} is suspended")]
    IssuerOrgSuspended {
        /// The organisation.
        org: String,
    },
    /// The validity window is empty or too long.
    #[error(
        "certificate validity {issued_at_s}..{expires_at_s} s is empty or longer than \
         {MAX_CERT_VALIDITY_S} s"
    )]
    CertificateValidity {
        /// Issue time.
        issued_at_s: u64,
        /// Expiry.
        expires_at_s: u64,
    },
    /// The signature does not verify against the issuer key (forged or altered).
    #[error("certificate signature does not verify against its issuer {issuer}")]
    BadSignature {
        /// The claimed issuer.
        issuer: PublicKey,
    },
    /// Issued after the block time (plus skew).
    #[error(
        "certificate issued at {issued_at_s} s, after the block time {now_s} s \
         (+{MAX_ISSUE_SKEW_S} s skew)"
    )]
    IssuedInFuture {
        /// Issue time.
        issued_at_s: u64,
        /// Block time.
        now_s: u64,
    },
    /// Expired at block time.
    #[error("certificate expired at {expires_at_s} s; the block time is {now_s} s")]
    CertificateExpired {
        /// Expiry.
        expires_at_s: u64,
        /// Block time.
        now_s: u64,
    },
    /// The certificate was used before.
    #[error("certificate {cert_id} was already used, by upload {upload_id}")]
    CertificateReused {
        /// The certificate id, hex.
        cert_id: String,
        /// The upload that used it.
        upload_id: Hash,
    },
    /// The certificate was issued for other keys.
    #[error("certificate is bound to keys digest {certified}; the uploaded keys hash to {actual}")]
    BindingMismatch {
        /// The certificate's digest.
        certified: Hash,
        /// The upload's.
        actual: Hash,
    },
    /// The certificate's report type is never uploaded.
    #[error("report type {0:?} cannot be uploaded; allowed are {UPLOAD_REPORT_TYPES:?}")]
    ReportTypeNotAllowed(ReportType),
    /// A key's report type differs from the certificate's.
    #[error("key {key} has report type {key_type:?}, the certificate says {cert_type:?}")]
    ReportTypeMismatch {
        /// Key data, hex.
        key: String,
        /// The key's.
        key_type: ReportType,
        /// The certificate's.
        cert_type: ReportType,
    },
    /// Rolling period outside 1..=144.
    #[error("key {key} has rolling period {period}; it must be 1..={MAX_ROLLING_PERIOD}")]
    RollingPeriod {
        /// Key data, hex.
        key: String,
        /// The period.
        period: u32,
    },
    /// The key starts more than [`MAX_KEY_AGE_DAYS`] days before the block's day.
    #[error(
        "key {key} starts on day {day}, more than {MAX_KEY_AGE_DAYS} days before the block's \
         day {today}"
    )]
    StartTooOld {
        /// Key data, hex.
        key: String,
        /// The key's day.
        day: u32,
        /// The block's day.
        today: u32,
    },
    /// The key starts after the block's interval.
    #[error("key {key} starts at interval {start}, after the block's interval {now}")]
    StartInFuture {
        /// Key data, hex.
        key: String,
        /// Its rolling start.
        start: u32,
        /// The block's interval.
        now: u32,
    },
    /// `days_since_onset` outside -14..=14.
    #[error("key {key} has days_since_onset {value}; it must be in -14..=14")]
    DaysSinceOnset {
        /// Key data, hex.
        key: String,
        /// The value.
        value: i32,
    },
    /// The same key data twice in one upload.
    #[error("key {key} appears more than once in the upload")]
    DuplicateInUpload {
        /// Key data, hex.
        key: String,
    },
    /// The key was published before.
    #[error("key {key} is already published, by upload {upload_id}")]
    DuplicateOnLedger {
        /// Key data, hex.
        key: String,
        /// The upload that published it.
        upload_id: Hash,
    },
    /// A revocation names a key never published.
    #[error("key {key} cannot be revoked: it was never published")]
    RevokeUnknown {
        /// Key data, hex.
        key: String,
    },
    /// A revocation names a key already revoked.
    #[error("key {key} is already revoked")]
    AlreadyRevoked {
        /// Key data, hex.
        key: String,
    },
    /// A revocation's key differs from the published key's validity.
    #[error("key {key} does not match the published key (rolling start {start}, period {period})")]
    RevokeMismatch {
        /// Key data, hex.
        key: String,
        /// The published rolling start.
        start: u32,
        /// The published period.
        period: u32,
    },
}

impl DiagnosisError {
    /// The stable code of the rejection.
    pub fn code(&self) -> &'static str {
        use DiagnosisError::*;
        match self {
            NoKeys => "no_keys",
            TooManyKeys { .. } => "too_many_keys",
            IssuerUnknown { .. } => "issuer_unknown",
            IssuerInactive { .. } => "issuer_inactive",
            IssuerRole { .. } => "issuer_role",
            IssuerOrgKind { .. } => "issuer_org_kind",
            IssuerOrgSuspended { .. } => "issuer_org_suspended",
            CertificateValidity { .. } => "certificate_validity",
            BadSignature { .. } => "certificate_signature",
            IssuedInFuture { .. } => "certificate_not_yet_valid",
            CertificateExpired { .. } => "certificate_expired",
            CertificateReused { .. } => "certificate_reused",
            BindingMismatch { .. } => "certificate_binding",
            ReportTypeNotAllowed(_) => "report_type_not_allowed",
            ReportTypeMismatch { .. } => "report_type_mismatch",
            RollingPeriod { .. } => "rolling_period",
            StartTooOld { .. } => "key_too_old",
            StartInFuture { .. } => "key_in_future",
            DaysSinceOnset { .. } => "days_since_onset",
            DuplicateInUpload { .. } => "duplicate_in_upload",
            DuplicateOnLedger { .. } => "duplicate_key",
            RevokeUnknown { .. } => "revoke_unknown_key",
            AlreadyRevoked { .. } => "already_revoked",
            RevokeMismatch { .. } => "revoke_mismatch",
        }
    }

    /// The transaction failure: an unauthorised issuer or a bad signature is `access_denied`,
    /// a reused certificate or a published key `already_exists`, an unknown key to revoke
    /// `not_found`, an already revoked key `conflict`, everything else `invalid_argument`.
    pub fn to_tx_error(&self) -> TxError {
        use DiagnosisError::*;
        let message = format!("{}: {self}", self.code());
        match self {
            IssuerUnknown { .. }
            | IssuerInactive { .. }
            | IssuerRole { .. }
            | IssuerOrgKind { .. }
            | IssuerOrgSuspended { .. }
            | BadSignature { .. } => TxError::Denied(message),
            CertificateReused { .. } | DuplicateOnLedger { .. } => TxError::AlreadyExists(message),
            RevokeUnknown { .. } => TxError::NotFound(message),
            AlreadyRevoked { .. } => TxError::Conflict(message),
            _ => TxError::Invalid(message),
        }
    }
}

impl From<DiagnosisError> for TxError {
    fn from(e: DiagnosisError) -> TxError {
        e.to_tx_error()
    }
}

/// A published diagnosis key, as stored.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PublishedKey {
    /// The key; its report type becomes `REVOKED` when revoked, and its `days_since_onset` is
    /// filled from the certificate's onset day when the upload left it out.
    pub key: DiagnosisKey,
    /// The upload that published it.
    pub upload_id: Hash,
    /// The organisation that issued the certificate.
    pub issuer_org: String,
    /// Height it was published at.
    pub published_height: Height,
    /// Whether its validity has ended and it is released.
    pub released: bool,
    /// The revocation upload, if revoked.
    pub revoked_by: Option<Hash>,
}

/// An accepted upload (a publication or a revocation).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Id: the certificate's [`keys_digest`].
    pub id: Hash,
    /// The certificate it used.
    #[serde(with = "hex16")]
    pub cert_id: [u8; 16],
    /// The issuing organisation.
    pub issuer_org: String,
    /// Report type; [`ReportType::Revoked`] for a revocation.
    pub report_type: ReportType,
    /// Key data of its keys, in upload order.
    #[serde(with = "hex16_vec")]
    pub keys: Vec<[u8; 16]>,
    /// Distinct UTC days of the keys' rolling starts, ascending.
    pub days: Vec<u32>,
    /// Height it was accepted at.
    pub height: Height,
    /// The transaction.
    pub tx_hash: Hash,
}

/// Counters of the module.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct DiagnosisStats {
    /// Accepted publication uploads.
    pub uploads: u64,
    /// Accepted revocation uploads.
    pub revocations: u64,
    /// Keys published.
    pub keys: u64,
    /// Keys released.
    pub released: u64,
    /// Keys under embargo.
    pub embargoed: u64,
    /// Keys revoked.
    pub revoked: u64,
}

/// The transactions of the `diagnosis` module. JSON form:
/// `{"publish_keys": {"keys": [{"key_data": "<32 hex>", "rolling_start_interval_number": 0,
/// "rolling_period": 144, "report_type": "CONFIRMED_TEST", "days_since_onset": null}],
/// "certificate": {…}}}`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DiagnosisCall {
    /// Publishes (or, with a `REVOKED` certificate, revokes) diagnosis keys. Signer: any
    /// active member with role admin, operator or clinician (typically the relaying edge
    /// node); the certificate is the authorisation.
    PublishKeys {
        /// The keys, 1..=30.
        keys: Vec<DiagnosisKey>,
        /// The verification certificate bound to exactly these keys.
        certificate: VerificationCertificate,
    },
}

/// Call kinds, as in the JSON form.
pub const CALL_KINDS: &[&str] = &["publish_keys"];

const KEY_PREFIX: &[u8] = b"key/";
const DAY_PREFIX: &[u8] = b"day/";
const EMBARGO_PREFIX: &[u8] = b"embargo/";
const CERT_PREFIX: &[u8] = b"cert/";
const UPLOAD_PREFIX: &[u8] = b"upload/";
const STATS_KEY: &[u8] = b"stats";

fn key_key(key_data: &[u8; 16]) -> Vec<u8> {
    [KEY_PREFIX, key_data].concat()
}

fn day_prefix(day: u32) -> Vec<u8> {
    [DAY_PREFIX, &day.to_be_bytes(), b"/"].concat()
}

fn day_key(day: u32, key_data: &[u8; 16]) -> Vec<u8> {
    [day_prefix(day).as_slice(), key_data].concat()
}

fn embargo_key(end: u32, key_data: &[u8; 16]) -> Vec<u8> {
    [EMBARGO_PREFIX, &end.to_be_bytes(), b"/", key_data].concat()
}

fn cert_key(cert_id: &[u8; 16]) -> Vec<u8> {
    [CERT_PREFIX, cert_id].concat()
}

fn upload_key(id: &Hash) -> Vec<u8> {
    [UPLOAD_PREFIX, &id.0].concat()
}

/// The published key with `key_data`, released or not.
pub fn published_key(
    state: &dyn StateRead,
    key_data: &[u8; 16],
) -> Result<Option<PublishedKey>, StateError> {
    read_value(state, &module_key(NAME, &key_key(key_data)))
}

/// The accepted upload `id`.
pub fn upload(state: &dyn StateRead, id: &Hash) -> Result<Option<UploadRecord>, StateError> {
    read_value(state, &module_key(NAME, &upload_key(id)))
}

/// The module's counters.
pub fn stats(state: &dyn StateRead) -> Result<DiagnosisStats, StateError> {
    Ok(read_value(state, &module_key(NAME, STATS_KEY))?.unwrap_or_default())
}

/// The block's interval number and UTC day.
fn block_interval(time_ms: u64) -> u32 {
    u32::try_from(time_ms / 1000 / INTERVAL_LENGTH_S).unwrap_or(u32::MAX)
}

/// The active, authorised issuer's organisation.
fn check_issuer(state: &dyn StateRead, issuer: &PublicKey) -> Result<String, TxError> {
    let m =
        orgs::member(state, issuer)?.ok_or(DiagnosisError::IssuerUnknown { issuer: *issuer })?;
    if m.status != MemberStatus::Active {
        return Err(DiagnosisError::IssuerInactive {
            issuer: *issuer,
            status: m.status,
        }
        .into());
    }
    if !ISSUER_ROLES.contains(&m.role) {
        return Err(DiagnosisError::IssuerRole {
            issuer: *issuer,
            role: m.role,
        }
        .into());
    }
    let org = orgs::org(state, &m.org)?
        .ok_or_else(|| DiagnosisError::IssuerOrgSuspended { org: m.org.clone() })?;
    if !ISSUER_ORG_KINDS.contains(&org.kind) {
        return Err(DiagnosisError::IssuerOrgKind {
            org: org.id,
            kind: org.kind,
        }
        .into());
    }
    if org.status != OrgStatus::Active {
        return Err(DiagnosisError::IssuerOrgSuspended { org: org.id }.into());
    }
    Ok(org.id)
}

/// GAEN's per-key rules and the upload's internal duplicates. Returns the keys as they will
/// be stored (days since onset filled from the certificate).
fn check_keys(
    keys: &[DiagnosisKey],
    cert: &VerificationCertificate,
    now: u32,
) -> Result<Vec<DiagnosisKey>, DiagnosisError> {
    let today = now / INTERVALS_PER_DAY;
    let oldest_day = today.saturating_sub(MAX_KEY_AGE_DAYS);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let hex_key = hex::encode(k.key_data);
        if k.report_type != cert.report_type {
            return Err(DiagnosisError::ReportTypeMismatch {
                key: hex_key,
                key_type: k.report_type,
                cert_type: cert.report_type,
            });
        }
        if !(1..=MAX_ROLLING_PERIOD).contains(&k.rolling_period) {
            return Err(DiagnosisError::RollingPeriod {
                key: hex_key,
                period: k.rolling_period,
            });
        }
        if k.rolling_start_interval_number > now {
            return Err(DiagnosisError::StartInFuture {
                key: hex_key,
                start: k.rolling_start_interval_number,
                now,
            });
        }
        let day = key_day(k);
        if day < oldest_day {
            return Err(DiagnosisError::StartTooOld {
                key: hex_key,
                day,
                today,
            });
        }
        if let Some(v) = k.days_since_onset
            && !(-MAX_DAYS_SINCE_ONSET..=MAX_DAYS_SINCE_ONSET).contains(&v)
        {
            return Err(DiagnosisError::DaysSinceOnset {
                key: hex_key,
                value: v,
            });
        }
        if !seen.insert(k.key_data) {
            return Err(DiagnosisError::DuplicateInUpload { key: hex_key });
        }
        let mut stored = *k;
        if stored.days_since_onset.is_none()
            && let Some(onset) = cert.onset_day
        {
            let d = i64::from(day) - i64::from(onset);
            if (-i64::from(MAX_DAYS_SINCE_ONSET)..=i64::from(MAX_DAYS_SINCE_ONSET)).contains(&d) {
                stored.days_since_onset = i32::try_from(d).ok();
            }
        }
        out.push(stored);
    }
    Ok(out)
}

fn decode_entry<T: BorshDeserialize>(k: &[u8], v: &[u8]) -> Result<T, StateError> {
    codec::decode(v, usize::MAX).map_err(|e| {
        StateError(format!(
            "undecodable diagnosis entry at {}: {e}",
            String::from_utf8_lossy(k)
        ))
    })
}

fn days_attr(days: &[u32]) -> String {
    days.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn report_type_name(t: ReportType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

fn publish_keys(
    ctx: &mut TxContext<'_, '_>,
    keys: Vec<DiagnosisKey>,
    cert: VerificationCertificate,
) -> Result<(), TxError> {
    if keys.is_empty() {
        return Err(DiagnosisError::NoKeys.into());
    }
    if keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(DiagnosisError::TooManyKeys { count: keys.len() }.into());
    }
    let issuer_org = check_issuer(ctx.world(), &cert.issuer)?;
    let now_s = ctx.time_ms / 1000;
    cert.verify(ctx.chain_id, &keys, now_s)?;
    if let Some(upload_id) = ctx.get::<Hash>(&cert_key(&cert.cert_id))? {
        return Err(DiagnosisError::CertificateReused {
            cert_id: hex::encode(cert.cert_id),
            upload_id,
        }
        .into());
    }
    if !UPLOAD_REPORT_TYPES.contains(&cert.report_type) {
        return Err(DiagnosisError::ReportTypeNotAllowed(cert.report_type).into());
    }
    let now = block_interval(ctx.time_ms);
    let stored = check_keys(&keys, &cert, now)?;
    let upload_id = cert.keys_digest;
    if ctx.contains(&upload_key(&upload_id))? {
        // Unreachable: an upload's keys are published (or revoked) by it, so the same
        // digest fails the duplicate (or already-revoked) check first. Kept as a guard.
        return Err(TxError::AlreadyExists(format!("upload {upload_id}")));
    }
    let mut days: Vec<u32> = stored.iter().map(key_day).collect();
    days.sort_unstable();
    days.dedup();
    let record = UploadRecord {
        id: upload_id,
        cert_id: cert.cert_id,
        issuer_org: issuer_org.clone(),
        report_type: cert.report_type,
        keys: stored.iter().map(|k| k.key_data).collect(),
        days: days.clone(),
        height: ctx.height,
        tx_hash: ctx.tx_hash,
    };
    let mut st: DiagnosisStats = ctx.get(STATS_KEY)?.unwrap_or_default();
    if cert.report_type == ReportType::Revoked {
        revoke(ctx, &stored, upload_id)?;
        st.revocations += 1;
        st.revoked += stored.len() as u64;
        ctx.put(STATS_KEY, &st)?;
        ctx.put(&cert_key(&cert.cert_id), &upload_id)?;
        ctx.put(&upload_key(&upload_id), &record)?;
        return ctx.emit(
            "keys_revoked",
            &[
                ("upload_id", upload_id.to_hex()),
                ("issuer_org", issuer_org),
                ("count", stored.len().to_string()),
                ("days", days_attr(&days)),
            ],
        );
    }
    let mut released = 0u64;
    for k in &stored {
        if let Some(prev) = ctx.get::<PublishedKey>(&key_key(&k.key_data))? {
            return Err(DiagnosisError::DuplicateOnLedger {
                key: hex::encode(k.key_data),
                upload_id: prev.upload_id,
            }
            .into());
        }
        let end = k.end_interval_number();
        let release_now = end <= now;
        ctx.put(
            &key_key(&k.key_data),
            &PublishedKey {
                key: *k,
                upload_id,
                issuer_org: issuer_org.clone(),
                published_height: ctx.height,
                released: release_now,
                revoked_by: None,
            },
        )?;
        if release_now {
            ctx.put(&day_key(key_day(k), &k.key_data), &upload_id)?;
            released += 1;
        } else {
            ctx.put(&embargo_key(end, &k.key_data), &upload_id)?;
        }
    }
    let count = stored.len() as u64;
    st.uploads += 1;
    st.keys += count;
    st.released += released;
    st.embargoed += count - released;
    ctx.put(STATS_KEY, &st)?;
    ctx.put(&cert_key(&cert.cert_id), &upload_id)?;
    ctx.put(&upload_key(&upload_id), &record)?;
    ctx.emit(
        "keys_published",
        &[
            ("upload_id", upload_id.to_hex()),
            ("issuer_org", issuer_org),
            ("report_type", report_type_name(cert.report_type)),
            ("count", count.to_string()),
            ("released", released.to_string()),
            ("embargoed", (count - released).to_string()),
            ("days", days_attr(&days)),
        ],
    )
}

fn revoke(
    ctx: &mut TxContext<'_, '_>,
    keys: &[DiagnosisKey],
    upload_id: Hash,
) -> Result<(), TxError> {
    for k in keys {
        let hex_key = hex::encode(k.key_data);
        let mut rec: PublishedKey =
            ctx.get(&key_key(&k.key_data))?
                .ok_or(DiagnosisError::RevokeUnknown {
                    key: hex_key.clone(),
                })?;
        if rec.key.report_type == ReportType::Revoked {
            return Err(DiagnosisError::AlreadyRevoked { key: hex_key }.into());
        }
        if rec.key.rolling_start_interval_number != k.rolling_start_interval_number
            || rec.key.rolling_period != k.rolling_period
        {
            return Err(DiagnosisError::RevokeMismatch {
                key: hex_key,
                start: rec.key.rolling_start_interval_number,
                period: rec.key.rolling_period,
            }
            .into());
        }
        rec.key.report_type = ReportType::Revoked;
        rec.revoked_by = Some(upload_id);
        ctx.put(&key_key(&k.key_data), &rec)?;
    }
    Ok(())
}

/// Releases the embargoed keys whose validity ended at or before the block's time.
fn release_embargoed(ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
    let now = block_interval(ctx.time_ms);
    let entries = ctx.scan_prefix(EMBARGO_PREFIX, MAX_RELEASES_PER_BLOCK)?;
    // (upload, day) → keys released, one event each.
    let mut groups: BTreeMap<(Hash, u32), u64> = BTreeMap::new();
    let mut released = 0u64;
    for (k, v) in entries {
        let rest = &k[EMBARGO_PREFIX.len()..];
        let (Some(end), Some(key_data)) = (
            rest.get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes),
            rest.get(5..).and_then(|b| <[u8; 16]>::try_from(b).ok()),
        ) else {
            return Err(TxError::Storage(StateError(format!(
                "malformed embargo key {}",
                String::from_utf8_lossy(&k)
            ))));
        };
        if end > now {
            break;
        }
        let upload_id: Hash = decode_entry(&k, &v)?;
        let mut rec: PublishedKey = ctx.get(&key_key(&key_data))?.ok_or_else(|| {
            TxError::Storage(StateError(format!(
                "embargo names unknown key {}",
                hex::encode(key_data)
            )))
        })?;
        let day = key_day(&rec.key);
        let group = (upload_id, day);
        if !groups.contains_key(&group) && groups.len() >= MAX_EVENTS_PER_END_BLOCK {
            break;
        }
        rec.released = true;
        ctx.put(&key_key(&key_data), &rec)?;
        ctx.put(&day_key(day, &key_data), &upload_id)?;
        ctx.delete(&k);
        *groups.entry(group).or_default() += 1;
        released += 1;
    }
    if released == 0 {
        return Ok(());
    }
    let mut st: DiagnosisStats = ctx.get(STATS_KEY)?.unwrap_or_default();
    st.released += released;
    st.embargoed = st.embargoed.saturating_sub(released);
    ctx.put(STATS_KEY, &st)?;
    for ((upload_id, day), count) in groups {
        ctx.emit(
            "keys_released",
            &[
                ("upload_id", upload_id.to_hex()),
                ("day", day.to_string()),
                ("count", count.to_string()),
            ],
        )?;
    }
    Ok(())
}

/// A released key as a query lists it: the [`DiagnosisKey`] JSON fields plus its upload.
#[derive(Serialize)]
struct ReleasedKey<'a> {
    #[serde(flatten)]
    key: &'a DiagnosisKey,
    upload_id: Hash,
}

/// The `diagnosis` module. Queries: `released?day=N&after=<key_data hex>&limit=`,
/// `key?key_data=<hex>`, `upload/<id hex>`, `stats`. Only released keys are answered.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiagnosisModule;

impl Module for DiagnosisModule {
    type Call = DiagnosisCall;
    const NAME: &'static str = NAME;

    fn access(&self, _call: &DiagnosisCall) -> Access {
        Access::Members {
            org_kinds: &[],
            roles: &[Role::Admin, Role::Operator, Role::Clinician],
        }
    }

    fn execute(&self, ctx: &mut TxContext<'_, '_>, call: DiagnosisCall) -> Result<(), TxError> {
        match call {
            DiagnosisCall::PublishKeys { keys, certificate } => {
                publish_keys(ctx, keys, certificate)
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
            "released" => {
                only_params(params, &["day", "after", "limit"])?;
                released(state, params)
            }
            "key" => {
                only_params(params, &["key_data"])?;
                let raw = params
                    .get("key_data")
                    .ok_or_else(|| QueryError::Invalid("key_data is required".into()))?;
                let kd: [u8; 16] = parse_hex_array(raw)
                    .map_err(|e| QueryError::Invalid(format!("key_data: {e}")))?;
                match published_key(state, &kd)? {
                    Some(rec) if rec.released => to_json(&rec),
                    _ => Err(QueryError::NotFound(format!(
                        "key {raw} is not published or still under embargo"
                    ))),
                }
            }
            "stats" => {
                only_params(params, &[])?;
                to_json(&stats(state)?)
            }
            _ => {
                if let Some(h) = path.strip_prefix("upload/") {
                    only_params(params, &[])?;
                    let id =
                        Hash::from_hex(h).map_err(|e| QueryError::Invalid(format!("id: {e}")))?;
                    let rec = upload(state, &id)?
                        .ok_or_else(|| QueryError::NotFound(format!("upload {id}")))?;
                    return upload_json(state, rec);
                }
                Err(QueryError::NotFound(format!(
                    "no query {path:?}; diagnosis answers released?day=, key?key_data=, \
                     upload/<id>, stats"
                )))
            }
        }
    }

    fn call_kinds(&self) -> &'static [&'static str] {
        CALL_KINDS
    }

    fn describe_value(&self, key: &[u8], value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with(KEY_PREFIX) {
            serde_json::to_value(decode_stored::<PublishedKey>(value)?).ok()
        } else if key.starts_with(UPLOAD_PREFIX) {
            serde_json::to_value(decode_stored::<UploadRecord>(value)?).ok()
        } else if key.starts_with(DAY_PREFIX)
            || key.starts_with(EMBARGO_PREFIX)
            || key.starts_with(CERT_PREFIX)
        {
            Some(serde_json::json!({ "upload_id": decode_stored::<Hash>(value)? }))
        } else if key == STATS_KEY {
            serde_json::to_value(decode_stored::<DiagnosisStats>(value)?).ok()
        } else {
            None
        }
    }

    fn end_block(&self, ctx: &mut BlockContext<'_, '_>) -> Result<(), TxError> {
        release_embargoed(ctx)
    }
}

/// An upload as the query shows it: its released keys only, and how many it has.
fn upload_json(state: &dyn StateRead, rec: UploadRecord) -> Result<serde_json::Value, QueryError> {
    let count = rec.keys.len();
    let mut visible = Vec::with_capacity(count);
    for kd in &rec.keys {
        if published_key(state, kd)?.is_some_and(|k| k.released) {
            visible.push(*kd);
        }
    }
    let mut v = to_json(&UploadRecord {
        keys: visible,
        ..rec
    })?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("count".into(), count.into());
    }
    Ok(v)
}

/// The released keys of one day, by key data, paged.
fn released(
    state: &dyn StateRead,
    params: &BTreeMap<String, String>,
) -> Result<serde_json::Value, QueryError> {
    let limit = query_limit(params)?;
    let day: u32 = params
        .get("day")
        .ok_or_else(|| QueryError::Invalid("day is required (days since the Unix epoch)".into()))?
        .parse()
        .map_err(|_| QueryError::Invalid("day must be a non-negative integer".into()))?;
    let after = params
        .get("after")
        .map(|a| parse_hex_array::<16>(a).map_err(|e| QueryError::Invalid(format!("after: {e}"))))
        .transpose()?;
    let cursor = after.map(|kd| day_key(day, &kd));
    let (entries, more) = page(state, NAME, &day_prefix(day), cursor.as_deref(), limit)?;
    let mut keys = Vec::with_capacity(entries.len());
    let mut last = None;
    for (k, _) in &entries {
        let kd: [u8; 16] = k
            .get(k.len().saturating_sub(16)..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| QueryError::Storage(StateError("malformed day index key".into())))?;
        let rec = published_key(state, &kd)?.ok_or_else(|| {
            QueryError::Storage(StateError(format!(
                "day index names unknown key {}",
                hex::encode(kd)
            )))
        })?;
        keys.push(to_json(&ReleasedKey {
            key: &rec.key,
            upload_id: rec.upload_id,
        })?);
        last = Some(kd);
    }
    let next = if more { last.map(hex::encode) } else { None };
    Ok(serde_json::json!({ "day": day, "keys": keys, "next": next }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8, start: u32) -> DiagnosisKey {
        DiagnosisKey {
            key_data: [b; 16],
            rolling_start_interval_number: start,
            rolling_period: 144,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        }
    }

    #[test]
    fn digest_is_order_independent_and_binds_every_field() {
        let a = key(1, 2_833_200);
        let b = key(2, 2_833_056);
        assert_eq!(keys_digest(&[a, b]), keys_digest(&[b, a]));
        let mut b2 = b;
        b2.days_since_onset = Some(1);
        assert_ne!(keys_digest(&[a, b]), keys_digest(&[a, b2]));
        let mut b3 = b;
        b3.report_type = ReportType::Revoked;
        assert_ne!(keys_digest(&[a, b]), keys_digest(&[a, b3]));
        assert_ne!(keys_digest(&[a, b]), keys_digest(&[a]));
    }

    #[test]
    fn certificate_verifies_and_detects_tampering() {
        let lab = Keypair::from_seed([7; 32]);
        let keys = [key(1, 2_833_200)];
        let cert = VerificationCertificate::issue(
            &lab,
            "c",
            [9; 16],
            &keys,
            ReportType::ConfirmedTest,
            1_000,
            600,
        );
        cert.verify("c", &keys, 1_000).unwrap();
        assert_eq!(
            cert.verify("c", &keys, 1_600).unwrap_err().code(),
            "certificate_expired"
        );
        assert_eq!(
            cert.verify("c", &keys, 600).unwrap_err().code(),
            "certificate_not_yet_valid"
        );
        assert_eq!(
            cert.verify("another-chain", &keys, 1_000)
                .unwrap_err()
                .code(),
            "certificate_signature"
        );
        let mut altered = cert.clone();
        altered.expires_at_s += 1;
        assert_eq!(
            altered.verify("c", &keys, 1_000).unwrap_err().code(),
            "certificate_signature"
        );
        assert_eq!(
            cert.verify("c", &[key(2, 2_833_200)], 1_000)
                .unwrap_err()
                .code(),
            "certificate_binding"
        );
        let long = VerificationCertificate::issue(
            &lab,
            "c",
            [9; 16],
            &keys,
            ReportType::ConfirmedTest,
            1_000,
            MAX_CERT_VALIDITY_S + 1,
        );
        assert_eq!(
            long.verify("c", &keys, 1_000).unwrap_err().code(),
            "certificate_validity"
        );
        let json = serde_json::to_value(&cert).unwrap();
        assert_eq!(json["cert_id"], "09".repeat(16));
        assert_eq!(json["report_type"], "CONFIRMED_TEST");
        assert_eq!(
            serde_json::from_value::<VerificationCertificate>(json).unwrap(),
            cert
        );
    }

    #[test]
    fn embargo_keys_sort_by_end() {
        assert!(embargo_key(255, &[9; 16]) < embargo_key(256, &[0; 16]));
        assert!(day_key(1, &[0xff; 16]) < day_key(2, &[0; 16]));
        assert_eq!(INTERVALS_PER_DAY, 144);
    }
}
