//! The record format of the edge store: what an edge node writes to its disk for each record
//! it keeps, and the digest it anchors.
//!
//! A record is encrypted at rest with XChaCha20-Poly1305 under the edge's 32-byte data key.
//! Each record gets its own 24-byte nonce (random, from the caller: this crate reads no
//! randomness); 24 bytes make random nonces safe for any number of records under one key.
//! The associated data binds the ciphertext to its record id and its index key, so a record
//! moved to another id, or filed under another key, fails to decrypt instead of being
//! served as someone else's.
//!
//! What the edge anchors is not the record but its [`record_digest`]: the batch Merkle tree
//! is built over digests, so a record proof hands out 32 bytes and a path, never the
//! record. Whoever holds the record (the device that signed it) recomputes the digest and
//! checks it against the ledger's anchor.
//!
//! Pure: the nonce and the key come in as arguments.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use trustedge_types::Hash;

use crate::EdgeError;

/// Bytes of a data key.
pub const DATA_KEY_BYTES: usize = 32;
/// Bytes of a record nonce (XChaCha20-Poly1305).
pub const NONCE_BYTES: usize = 24;
/// Bytes the encryption adds to a record: the nonce and the Poly1305 tag.
pub const SEAL_OVERHEAD_BYTES: usize = NONCE_BYTES + 16;
/// Longest index key bound into a record's associated data.
pub const MAX_INDEX_KEY_BYTES: usize = 64;

/// Domain tag of the associated data of a sealed record.
const RECORD_AD_TAG: &[u8] = b"trustedge/edge-record-ad/v1";
/// Domain tag of record digests.
const RECORD_DIGEST_TAG: &[u8] = b"trustedge/edge-record-digest/v1";

/// The key records are encrypted under. Its `Debug` form hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; DATA_KEY_BYTES]);

impl DataKey {
    /// A key from its bytes (from the caller's random source, or read back from disk).
    pub fn from_bytes(bytes: [u8; DATA_KEY_BYTES]) -> DataKey {
        DataKey(bytes)
    }

    /// The key's bytes, to persist it.
    pub fn to_bytes(&self) -> [u8; DATA_KEY_BYTES] {
        self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

fn associated_data(record_id: u64, index_key: &[u8]) -> Result<Vec<u8>, EdgeError> {
    if index_key.len() > MAX_INDEX_KEY_BYTES {
        return Err(EdgeError::IndexKeyTooLong {
            size_bytes: index_key.len(),
        });
    }
    let mut ad = Vec::with_capacity(RECORD_AD_TAG.len() + 9 + index_key.len());
    ad.extend_from_slice(RECORD_AD_TAG);
    ad.extend_from_slice(&record_id.to_be_bytes());
    // The key length fits in a byte (MAX_INDEX_KEY_BYTES); prefixing it keeps the encoding
    // unambiguous.
    ad.push(index_key.len() as u8);
    ad.extend_from_slice(index_key);
    Ok(ad)
}

/// Encrypts `plaintext` as record `record_id` filed under `index_key`, with `nonce` (which
/// must never repeat under `key`). Returns `nonce ‖ ciphertext ‖ tag`.
pub fn seal_record(
    key: &DataKey,
    nonce: [u8; NONCE_BYTES],
    record_id: u64,
    index_key: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, EdgeError> {
    let ad = associated_data(record_id, index_key)?;
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| EdgeError::Seal)?;
    let mut out = Vec::with_capacity(NONCE_BYTES + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a record sealed by [`seal_record`] for the same id and index key.
pub fn open_record(
    key: &DataKey,
    record_id: u64,
    index_key: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, EdgeError> {
    if sealed.len() < SEAL_OVERHEAD_BYTES {
        return Err(EdgeError::Open);
    }
    let ad = associated_data(record_id, index_key)?;
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
        .map_err(|_| EdgeError::Open)
}

/// The digest of a record's canonical bytes: what the edge puts in an anchored batch.
pub fn record_digest(record: &[u8]) -> Hash {
    Hash::tagged(RECORD_DIGEST_TAG, &[record])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let key = DataKey::from_bytes([7; 32]);
        let sealed = seal_record(&key, [1; 24], 5, b"rpi-1", b"secret reading").unwrap();
        assert_eq!(sealed.len(), 14 + SEAL_OVERHEAD_BYTES);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open_record(&key, 5, b"rpi-1", &sealed).unwrap(),
            b"secret reading"
        );
        // Another id, another index key, another key, a flipped bit: all refused.
        assert_eq!(
            open_record(&key, 6, b"rpi-1", &sealed),
            Err(EdgeError::Open)
        );
        assert_eq!(
            open_record(&key, 5, b"rpi-2", &sealed),
            Err(EdgeError::Open)
        );
        let other = DataKey::from_bytes([8; 32]);
        assert_eq!(
            open_record(&other, 5, b"rpi-1", &sealed),
            Err(EdgeError::Open)
        );
        let mut t = sealed.clone();
        t[30] ^= 1;
        assert_eq!(open_record(&key, 5, b"rpi-1", &t), Err(EdgeError::Open));
        assert_eq!(
            open_record(&key, 5, b"rpi-1", &sealed[..10]),
            Err(EdgeError::Open)
        );
        assert!(matches!(
            seal_record(&key, [1; 24], 5, &[0; 65], b"x"),
            Err(EdgeError::IndexKeyTooLong { .. })
        ));
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }

    #[test]
    fn digests_are_domain_separated() {
        assert_ne!(record_digest(b"a"), record_digest(b"b"));
        assert_ne!(record_digest(b"a"), Hash::sha256(b"a"));
    }
}
