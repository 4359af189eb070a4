//! ECDSA P-256 / SHA-256 signatures over `export.bin`, and the PEM forms of the keys.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

use crate::{ECDSA_P256_SHA256_OID, ExportError, MAX_SIGNATURE_INFOS, proto};

/// Which signature of an `export.sig` verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedSignature {
    /// Position in [`proto::TekSignatureList::signatures`].
    pub index: usize,
    /// The signing key's description, as the file gives it.
    pub signature_info: Option<proto::SignatureInfo>,
    /// The signature's `batch_num`.
    pub batch_num: Option<i32>,
    /// The signature's `batch_size`.
    pub batch_size: Option<i32>,
}

/// Outcome of checking an `export.sig` against one public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureVerdict {
    /// Some signature verified over the whole `export.bin`.
    pub valid: bool,
    /// The first signature that verified.
    pub matched: Option<MatchedSignature>,
    /// Signatures tried (those with the ECDSA-SHA256 algorithm or none given, among the first
    /// [`MAX_SIGNATURE_INFOS`], as phones read no further).
    pub checked: usize,
}

/// The P-256 public key of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block, the form GAEN
/// health authorities publish.
pub fn parse_public_key_pem(pem: &str) -> Result<VerifyingKey, ExportError> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| ExportError::InvalidKeyPem {
        what: "public key",
        reason: e.to_string(),
    })
}

/// The P-256 signing key of a PEM `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1, what
/// `openssl ecparam -genkey` writes) block.
pub fn parse_signing_key_pem(pem: &str) -> Result<SigningKey, ExportError> {
    let pem = pem.trim();
    if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(key);
    }
    p256::SecretKey::from_sec1_pem(pem)
        .map(SigningKey::from)
        .map_err(|e| ExportError::InvalidKeyPem {
            what: "signing key",
            reason: format!("neither PKCS#8 nor SEC1 PEM: {e}"),
        })
}

/// PKCS#8 PEM of a signing key (`-----BEGIN PRIVATE KEY-----`).
pub fn signing_key_to_pem(key: &SigningKey) -> Result<String, ExportError> {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| ExportError::InvalidKeyPem {
            what: "signing key",
            reason: e.to_string(),
        })
}

/// SubjectPublicKeyInfo PEM of a public key (`-----BEGIN PUBLIC KEY-----`).
pub fn public_key_to_pem(key: &VerifyingKey) -> Result<String, ExportError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| ExportError::InvalidKeyPem {
            what: "public key",
            reason: e.to_string(),
        })
}

/// Checks the signatures of `signature_list` over the whole `export_bin` (header included)
/// against the PEM public key. An unparseable PEM is an error; a signature that does not
/// verify (tampered file, wrong key, malformed DER) is `valid: false`.
pub fn verify_signature(
    export_bin: &[u8],
    signature_list: &proto::TekSignatureList,
    public_key_pem: &str,
) -> Result<SignatureVerdict, ExportError> {
    let key = parse_public_key_pem(public_key_pem)?;
    Ok(verify_signature_with_key(export_bin, signature_list, &key))
}

/// [`verify_signature`] with a parsed key.
pub fn verify_signature_with_key(
    export_bin: &[u8],
    signature_list: &proto::TekSignatureList,
    public_key: &VerifyingKey,
) -> SignatureVerdict {
    let mut checked = 0;
    for (index, sig) in signature_list
        .signatures
        .iter()
        .enumerate()
        .take(MAX_SIGNATURE_INFOS)
    {
        let algorithm = sig
            .signature_info
            .as_ref()
            .and_then(|info| info.signature_algorithm.as_deref());
        if algorithm.is_some_and(|oid| oid != ECDSA_P256_SHA256_OID) {
            continue;
        }
        checked += 1;
        let Some(der) = sig.signature.as_deref() else {
            continue;
        };
        let Ok(signature) = Signature::from_der(der) else {
            continue;
        };
        // `verify` hashes the message with SHA-256 (P-256's digest), as GAEN signs.
        if public_key.verify(export_bin, &signature).is_ok() {
            return SignatureVerdict {
                valid: true,
                matched: Some(MatchedSignature {
                    index,
                    signature_info: sig.signature_info.clone(),
                    batch_num: sig.batch_num,
                    batch_size: sig.batch_size,
                }),
                checked,
            };
        }
    }
    SignatureVerdict {
        valid: false,
        matched: None,
        checked,
    }
}

/// The DER signature of `export_bin` by `key` (ECDSA P-256 over SHA-256; RFC 6979 nonces, so
/// deterministic).
pub(crate) fn sign_der(export_bin: &[u8], key: &SigningKey) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    let signature: Signature = key.sign(export_bin);
    signature.to_der().as_bytes().to_vec()
}
