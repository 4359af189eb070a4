//! ed25519 keys and signatures (`ed25519-dalek`).
//!
//! # One verification rule
//! Every node must agree on whether a signature is valid, or a Byzantine proposer could split
//! the network with a signature that some nodes accept and others reject. ed25519-dalek's
//! single `verify` is cofactorless while its batch verification is cofactored, and the two
//! can disagree on crafted signatures. TrustEdge therefore uses the batch equation for every
//! check: a single signature is verified as a batch of one. Weak (small-order) public keys
//! are refused wherever a key is registered.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::TypesError;
use crate::codec::parse_hex_array;

/// An ed25519 public key, as its 32-byte compressed encoding.
///
/// Holding the bytes (not a decompressed point) keeps decoding total: any 32 bytes decode,
/// and validity is checked where the key is used.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes: R ‖ s).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl PublicKey {
    /// The decompressed key, or an error if the bytes are not a valid point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, TypesError> {
        VerifyingKey::from_bytes(&self.0).map_err(|e| TypesError::InvalidKey(e.to_string()))
    }

    /// Checks that the key is a valid point and not of small order; registries call this.
    pub fn validate(&self) -> Result<(), TypesError> {
        let vk = self.verifying_key()?;
        if vk.is_weak() {
            return Err(TypesError::InvalidKey("weak (small-order) key".into()));
        }
        Ok(())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<PublicKey, TypesError> {
        parse_hex_array(s).map(PublicKey)
    }

    /// Verifies `signature` over `message` (as a batch of one; see the module docs).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), TypesError> {
        let vk = self.verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        ed25519_dalek::verify_batch(&[message], &[sig], &[vk]).map_err(|_| TypesError::BadSignature)
    }
}

/// Verifies many signatures together and returns, for each, whether it is valid.
///
/// Runs one batch verification; only if the batch fails does it split the batch in halves
/// to find the invalid ones, so the common all-valid case costs one batch.
pub fn verify_many(items: &[(PublicKey, &[u8], Signature)]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    let mut keys = Vec::with_capacity(items.len());
    // Keys that do not decompress are invalid outright and stay out of the batch. A batch
    // usually holds many transactions of few signers, and decompressing a key (a square
    // root in the field) took half of this function's time in a profile of the chain's
    // `commit_cost` example when done per transaction: once per distinct key.
    let mut decompressed: std::collections::HashMap<[u8; 32], Option<VerifyingKey>> =
        std::collections::HashMap::new();
    let mut idx = Vec::with_capacity(items.len());
    for (i, (pk, _, _)) in items.iter().enumerate() {
        let vk = *decompressed
            .entry(pk.0)
            .or_insert_with(|| pk.verifying_key().ok());
        if let Some(vk) = vk {
            keys.push(vk);
            idx.push(i);
        }
    }
    let msgs: Vec<&[u8]> = idx.iter().map(|&i| items[i].1).collect();
    let sigs: Vec<ed25519_dalek::Signature> = idx
        .iter()
        .map(|&i| ed25519_dalek::Signature::from_bytes(&items[i].2.0))
        .collect();
    bisect(&msgs, &sigs, &keys, &idx, &mut out);
    out
}

fn bisect(
    msgs: &[&[u8]],
    sigs: &[ed25519_dalek::Signature],
    keys: &[VerifyingKey],
    idx: &[usize],
    out: &mut [bool],
) {
    if idx.is_empty() {
        return;
    }
    if ed25519_dalek::verify_batch(msgs, sigs, keys).is_ok() {
        for &i in idx {
            out[i] = true;
        }
        return;
    }
    if idx.len() == 1 {
        return;
    }
    let mid = idx.len() / 2;
    bisect(&msgs[..mid], &sigs[..mid], &keys[..mid], &idx[..mid], out);
    bisect(&msgs[mid..], &sigs[mid..], &keys[mid..], &idx[mid..], out);
}

impl Signature {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 128 hex characters.
    pub fn from_hex(s: &str) -> Result<Signature, TypesError> {
        parse_hex_array(s).map(Signature)
    }
}

/// A signing key pair. Its secret never leaves the process except through
/// [`Keypair::secret_hex`], which key files use.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Generates a key from a cryptographic random source.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Keypair {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Keypair::from_seed(seed)
    }

    /// The key whose 32-byte secret seed is `seed` (deterministic; used by simulations).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Parses a hex secret seed.
    pub fn from_secret_hex(s: &str) -> Result<Keypair, TypesError> {
        parse_hex_array(s).map(Keypair::from_seed)
    }

    /// The secret seed in hex, for key files.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.signing.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

macro_rules! hex_display_serde {
    ($t:ty, $from:path) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($t), &self.to_hex()[..12])
            }
        }
        impl std::str::FromStr for $t {
            type Err = TypesError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $from(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                $from(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
hex_display_serde!(PublicKey, PublicKey::from_hex);
hex_display_serde!(Signature, Signature::from_hex);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let kp = Keypair::from_seed([7; 32]);
        let sig = kp.sign(b"hello");
        kp.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            kp.public().verify(b"hellp", &sig),
            Err(TypesError::BadSignature)
        );
        let mut bad = sig;
        bad.0[5] ^= 1;
        assert!(kp.public().verify(b"hello", &bad).is_err());
    }

    #[test]
    fn batch_finds_exactly_the_bad_signatures() {
        let keys: Vec<Keypair> = (0..9u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let msgs: Vec<Vec<u8>> = (0..9u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| (k.public(), m.as_slice(), k.sign(m)))
            .collect();
        items[2].2.0[0] ^= 1;
        items[7].0 = keys[0].public();
        let ok = verify_many(&items);
        let expected: Vec<bool> = (0..9).map(|i| i != 2 && i != 7).collect();
        assert_eq!(ok, expected);
    }

    #[test]
    fn weak_key_is_refused() {
        // The identity point encodes as 1 followed by zeros: small order.
        let mut b = [0u8; 32];
        b[0] = 1;
        assert!(PublicKey(b).validate().is_err());
        assert!(Keypair::from_seed([1; 32]).public().validate().is_ok());
    }
}
