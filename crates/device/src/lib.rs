//! The device level of TrustEdge: a device's identity and the readings it signs.
//!
//! A device holds an ed25519 key. On the ledger it is known only by the pseudonymous address
//! derived from that key ([`Address::of_device`]), registered by its owning organisation
//! ([`DeviceIdentity::registration`] builds the `devices.register` call for an admin or
//! operator of that organisation to sign). The device signs each reading it produces
//! ([`SignedReading`]); the edge node checks the signature, batches the readings' canonical
//! bytes and anchors the batch's Merkle root on the ledger.
//!
//! Pure: no clock, no radio, no randomness — time comes in as an argument and keys from a
//! seed or a caller's random source.

use borsh::{BorshDeserialize, BorshSerialize};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use trustedge_contracts::devices::check_description;
use trustedge_contracts::{DeviceAttribute, DevicesCall};
use trustedge_execution::DeviceClass;
use trustedge_types::codec::{self, hex_bytes};
use trustedge_types::{Address, Keypair, Payload, PublicKey, Signature, TypesError};

/// Largest reading payload. Devices send small, frequent readings; anything bigger is a bug
/// or an attack on the edge's memory.
pub const MAX_READING_PAYLOAD_BYTES: usize = 4 * 1024;
/// Longest reading kind.
pub const MAX_KIND_CHARS: usize = 32;
/// Largest encoded reading (payload plus fixed fields, with room for the length prefixes).
pub const MAX_READING_BYTES: usize = MAX_READING_PAYLOAD_BYTES + 256;

/// Domain tag of what a device signs for a reading, so that a reading signature can never be
/// replayed as a transaction signature or anything else.
const READING_SIGN_TAG: &[u8] = b"trustedge/reading-sign/v1";

/// The one error enum of this crate.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    /// A reading's kind is not 1..=32 characters of `[a-z0-9_]`.
    #[error("reading kind {0:?} must be 1..=32 characters of [a-z0-9_]")]
    InvalidKind(String),
    /// A reading's payload is too large.
    #[error("reading payload is {size_bytes} bytes, over the limit of {MAX_READING_PAYLOAD_BYTES}")]
    PayloadTooLarge {
        /// Its size.
        size_bytes: usize,
    },
    /// The sequence counter is exhausted; the device must be re-keyed.
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// The registration description is refused by the devices contract's rules.
    #[error("invalid device description: {0}")]
    InvalidDescription(String),
    /// Decoding or signature verification failed.
    #[error(transparent)]
    Types(#[from] TypesError),
}

/// A device's key, its pseudonymous ledger address and its reading sequence counter.
///
/// Not `Clone`: two copies would hand out the same sequence numbers.
#[derive(Debug)]
pub struct DeviceIdentity {
    keypair: Keypair,
    address: Address,
    next_seq: u64,
}

impl DeviceIdentity {
    /// The identity of `keypair`, starting at sequence number `next_seq` (persisted by the
    /// device across restarts so that sequence numbers never repeat).
    pub fn new(keypair: Keypair, next_seq: u64) -> DeviceIdentity {
        let address = Address::of_device(&keypair.public());
        DeviceIdentity {
            keypair,
            address,
            next_seq,
        }
    }

    /// A fresh identity from a cryptographic random source.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> DeviceIdentity {
        DeviceIdentity::new(Keypair::generate(rng), 0)
    }

    /// The device's public key.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// The pseudonymous ledger address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The sequence number the next reading gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Signs a reading taken at `time_ms` with the next sequence number.
    pub fn sign_reading(
        &mut self,
        time_ms: u64,
        kind: &str,
        payload: Vec<u8>,
    ) -> Result<SignedReading, DeviceError> {
        check_reading_fields(kind, &payload)?;
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(DeviceError::SequenceExhausted)?;
        let body = ReadingBody {
            device: self.keypair.public(),
            seq,
            time_ms,
            kind: kind.to_string(),
            payload,
        };
        let signature = self.keypair.sign(&body.sign_bytes());
        self.next_seq = next;
        Ok(SignedReading {
            device: body.device,
            seq: body.seq,
            time_ms: body.time_ms,
            kind: body.kind,
            payload: body.payload,
            signature,
        })
    }

    /// The `devices.register` payload for an admin or operator of the owning organisation to
    /// sign. The description is checked against the contract's rules here, so that a device
    /// is not provisioned with a registration the ledger would refuse.
    pub fn registration(
        &self,
        class: DeviceClass,
        model: &str,
        attributes: Vec<DeviceAttribute>,
    ) -> Result<Payload, DeviceError> {
        let attributes =
            check_description(model, attributes).map_err(DeviceError::InvalidDescription)?;
        Ok(Payload::new(
            trustedge_contracts::devices::NAME,
            &DevicesCall::Register {
                key: self.keypair.public(),
                class,
                model: model.to_string(),
                attributes,
            },
        ))
    }
}

fn check_reading_fields(kind: &str, payload: &[u8]) -> Result<(), DeviceError> {
    let kind_ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_CHARS
        && kind
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !kind_ok {
        return Err(DeviceError::InvalidKind(kind.to_string()));
    }
    if payload.len() > MAX_READING_PAYLOAD_BYTES {
        return Err(DeviceError::PayloadTooLarge {
            size_bytes: payload.len(),
        });
    }
    Ok(())
}

/// The signed fields of a reading, in signing order.
#[derive(BorshSerialize)]
struct ReadingBody {
    device: PublicKey,
    seq: u64,
    time_ms: u64,
    kind: String,
    payload: Vec<u8>,
}

impl ReadingBody {
    fn sign_bytes(&self) -> Vec<u8> {
        let mut out = READING_SIGN_TAG.to_vec();
        out.extend_from_slice(&codec::encode(self));
        out
    }
}

/// A reading signed by the device that took it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedReading {
    /// The device's key.
    pub device: PublicKey,
    /// Per-device sequence number, strictly increasing: lets the edge spot gaps and replays.
    pub seq: u64,
    /// When it was taken, Unix milliseconds (the device's clock).
    pub time_ms: u64,
    /// What it is, e.g. `ble_contact`, `temperature`; becomes the anchored record type.
    pub kind: String,
    /// The measurement, in a format the kind defines.
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
    /// The device's signature over the other fields.
    pub signature: Signature,
}

impl SignedReading {
    /// The pseudonymous address of the device that signed it.
    pub fn device_address(&self) -> Address {
        Address::of_device(&self.device)
    }

    /// Checks the field rules and the signature.
    pub fn verify(&self) -> Result<(), DeviceError> {
        check_reading_fields(&self.kind, &self.payload)?;
        self.device
            .verify(&self.sign_bytes(), &self.signature)
            .map_err(DeviceError::from)
    }

    /// What the device signed for this reading (domain tag, then the canonical fields).
    fn sign_bytes(&self) -> Vec<u8> {
        ReadingBody {
            device: self.device,
            seq: self.seq,
            time_ms: self.time_ms,
            kind: self.kind.clone(),
            payload: self.payload.clone(),
        }
        .sign_bytes()
    }

    /// Canonical bytes: what the edge stores and anchors as the record.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes canonical bytes and verifies the reading.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedReading, DeviceError> {
        let r: SignedReading = codec::decode(bytes, MAX_READING_BYTES)?;
        r.verify()?;
        Ok(r)
    }
}

/// Checks many readings as [`SignedReading::verify`] checks each, with one ed25519 batch
/// verification for all their signatures (split in halves only when it fails, to find the
/// bad ones: `trustedge_types::crypto::verify_many`, the same verification rule as a single
/// check). One answer per reading, in order, the same as `verify` gives.
pub fn verify_readings(readings: &[&SignedReading]) -> Vec<Result<(), DeviceError>> {
    let mut out: Vec<Result<(), DeviceError>> = readings
        .iter()
        .map(|r| check_reading_fields(&r.kind, &r.payload))
        .collect();
    let bodies: Vec<(usize, Vec<u8>)> = out
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| (i, readings[i].sign_bytes()))
        .collect();
    let items: Vec<(PublicKey, &[u8], Signature)> = bodies
        .iter()
        .map(|(i, b)| (readings[*i].device, b.as_slice(), readings[*i].signature))
        .collect();
    let valid = trustedge_types::crypto::verify_many(&items);
    for ((i, _), ok) in bodies.iter().zip(valid) {
        if !ok {
            // Rare: the single check names the error (bad signature or invalid key); it
            // applies the same rule, so it fails too.
            out[*i] = match readings[*i].verify() {
                Ok(()) => Err(DeviceError::Types(TypesError::BadSignature)),
                e => e,
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_core::SeedableRng;

    fn device() -> DeviceIdentity {
        DeviceIdentity::new(Keypair::from_seed([4; 32]), 7)
    }

    #[test]
    fn readings_sign_verify_and_count() {
        let mut d = device();
        let r = d
            .sign_reading(1_000, "temperature", b"36.9".to_vec())
            .unwrap();
        assert_eq!(r.seq, 7);
        assert_eq!(d.next_seq(), 8);
        r.verify().unwrap();
        assert_eq!(r.device_address(), d.address());
        assert_ne!(d.address(), Address::of_member(&d.public_key()));
        let back = SignedReading::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<SignedReading>(&json).unwrap(), r);
    }

    #[test]
    fn every_field_is_signed() {
        let mut d = device();
        let r = d
            .sign_reading(1_000, "temperature", b"36.9".to_vec())
            .unwrap();
        let mut t = r.clone();
        t.seq += 1;
        assert!(t.verify().is_err());
        let mut t = r.clone();
        t.time_ms += 1;
        assert!(t.verify().is_err());
        let mut t = r.clone();
        t.kind = "humidity".into();
        assert!(t.verify().is_err());
        let mut t = r.clone();
        t.payload[0] ^= 1;
        assert!(t.verify().is_err());
        let mut t = r.clone();
        t.device = Keypair::from_seed([5; 32]).public();
        assert!(t.verify().is_err());
        let mut bytes = r.to_bytes();
        bytes.push(0);
        assert!(SignedReading::from_bytes(&bytes).is_err());
    }

    #[test]
    fn batch_verification_agrees_with_single_checks() {
        let mut d = device();
        let mut readings: Vec<SignedReading> = (0..40)
            .map(|i| {
                d.sign_reading(1_000 + i, "temperature", vec![i as u8; 8])
                    .unwrap()
            })
            .collect();
        // A forged signature, a tampered field, a bad kind and an undecompressable key among
        // good ones.
        readings[3].signature = readings[4].signature;
        readings[10].payload[0] ^= 1;
        readings[17].kind = "Bad".into();
        readings[25].device = PublicKey([0xff; 32]);
        let refs: Vec<&SignedReading> = readings.iter().collect();
        let batch = verify_readings(&refs);
        assert_eq!(batch.len(), readings.len());
        for (r, b) in readings.iter().zip(&batch) {
            assert_eq!(&r.verify(), b, "reading {}", r.seq);
        }
        let bad: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, vec![3, 10, 17, 25]);
        assert!(matches!(batch[17], Err(DeviceError::InvalidKind(_))));
        assert!(verify_readings(&[]).is_empty());
    }

    #[test]
    fn limits() {
        let mut d = device();
        assert!(matches!(
            d.sign_reading(0, "Temp", vec![]),
            Err(DeviceError::InvalidKind(_))
        ));
        assert!(matches!(
            d.sign_reading(0, "t", vec![0; MAX_READING_PAYLOAD_BYTES + 1]),
            Err(DeviceError::PayloadTooLarge { .. })
        ));
        let r = d
            .sign_reading(0, &"k".repeat(32), vec![0; MAX_READING_PAYLOAD_BYTES])
            .unwrap();
        assert!(r.to_bytes().len() <= MAX_READING_BYTES);
        SignedReading::from_bytes(&r.to_bytes()).unwrap();
        let mut last = DeviceIdentity::new(Keypair::from_seed([1; 32]), u64::MAX);
        assert_eq!(
            last.sign_reading(0, "t", vec![]),
            Err(DeviceError::SequenceExhausted)
        );
    }

    #[test]
    fn registration_payload_is_checked_and_decodes_as_the_contract_call() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let d = DeviceIdentity::generate(&mut rng);
        let attrs = vec![DeviceAttribute {
            key: "firmware".into(),
            value: "3.1".into(),
        }];
        let p = d
            .registration(DeviceClass::Wearable, "TE-Band", attrs)
            .unwrap();
        assert_eq!(p.module, "devices");
        let call: DevicesCall = codec::decode(&p.call, usize::MAX).unwrap();
        match call {
            DevicesCall::Register { key, class, .. } => {
                assert_eq!((key, class), (d.public_key(), DeviceClass::Wearable));
            }
            other => panic!("{other:?}"),
        }
        let bad = vec![DeviceAttribute {
            key: "owner".into(),
            value: "someone".into(),
        }];
        assert!(matches!(
            d.registration(DeviceClass::Wearable, "TE-Band", bad),
            Err(DeviceError::InvalidDescription(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedReading::from_bytes(&bytes);
        }
    }
}
