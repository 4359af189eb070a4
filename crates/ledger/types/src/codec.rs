//! The canonical binary encoding (Borsh), with size-checked decoding.
//!
//! See the crate documentation for why Borsh. Decoding goes through [`decode`] only: it
//! refuses inputs over a caller-given limit before parsing, and rejects trailing bytes.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::TypesError;

/// Encodes a value canonically.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail; borsh only returns errors from the underlying writer.
    let mut out = Vec::new();
    if value.serialize(&mut out).is_err() {
        out.clear();
    }
    out
}

/// Decodes a value, requiring the input to be at most `limit_bytes` long and fully consumed.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], limit_bytes: usize) -> Result<T, TypesError> {
    if bytes.len() > limit_bytes {
        return Err(TypesError::TooLarge {
            what: std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("value"),
            size_bytes: bytes.len(),
            limit_bytes,
        });
    }
    borsh::from_slice(bytes).map_err(|e| TypesError::Codec(e.to_string()))
}

/// Serde helpers that write byte arrays and vectors as lowercase hex strings in JSON.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as hex.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v.as_ref()))
    }

    /// Deserializes hex into a byte vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s.trim_start_matches("0x")).map_err(serde::de::Error::custom)
    }
}

/// Parses a fixed-size hex string (an optional `0x` prefix is accepted).
pub fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], TypesError> {
    let bytes = hex::decode(s.trim().trim_start_matches("0x"))
        .map_err(|e| TypesError::InvalidHex(e.to_string()))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        TypesError::InvalidHex(format!("expected {N} bytes, got {}", b.len()))
    })
}
