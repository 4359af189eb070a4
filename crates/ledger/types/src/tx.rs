//! The signed transaction envelope.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, hex_bytes};
use crate::hash::domain;
use crate::{Address, Hash, Keypair, PublicKey, Signature, TypesError};

/// Largest encoded transaction accepted anywhere (API, mempool, block).
pub const MAX_TX_BYTES: usize = 64 * 1024;
/// Longest module name.
pub const MAX_MODULE_NAME_BYTES: usize = 32;
/// Longest chain id.
pub const MAX_CHAIN_ID_BYTES: usize = 64;

/// What a transaction asks for: a call into one contract module. `call` is the module's own
/// call type in the canonical encoding; the module registry decodes it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Payload {
    /// Name of the module (`orgs`, `devices`, `anchor`, …).
    pub module: String,
    /// The module's call, canonically encoded.
    #[serde(with = "hex_bytes")]
    pub call: Vec<u8>,
}

impl Payload {
    /// A payload carrying `call` for `module`.
    pub fn new<C: BorshSerialize>(module: &str, call: &C) -> Payload {
        Payload {
            module: module.to_string(),
            call: encode(call),
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    /// Chain the transaction is meant for; it is invalid on any other chain.
    pub chain_id: String,
    /// Public key of the signer (a member key or a device key).
    pub signer: PublicKey,
    /// Replay protection: must exceed the signer's last committed nonce.
    pub nonce: u64,
    /// Last height at which the transaction may be included.
    pub expiry_height: u64,
    /// The call.
    pub payload: Payload,
}

/// A transaction: body and the signer's signature over its signing bytes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTx {
    /// The signed body.
    pub body: TxBody,
    /// ed25519 signature over [`TxBody::sign_bytes`].
    pub signature: Signature,
}

impl TxBody {
    /// The bytes the signer signs: a domain tag, then the canonical body.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut out = domain::TX_SIGN.to_vec();
        out.extend_from_slice(&encode(self));
        out
    }

    /// Signs the body.
    pub fn sign(self, key: &Keypair) -> SignedTx {
        let signature = key.sign(&self.sign_bytes());
        SignedTx {
            body: self,
            signature,
        }
    }
}

impl SignedTx {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// The transaction id: a tagged hash of the canonical bytes.
    pub fn hash(&self) -> Hash {
        Hash::tagged(domain::TX_ID, &[&self.to_bytes()])
    }

    /// The member address of the signer.
    pub fn signer_member_address(&self) -> Address {
        Address::of_member(&self.body.signer)
    }

    /// Decodes and checks the static rules (size, field limits). Does not check the
    /// signature: that goes through the node's verification cache.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedTx, TypesError> {
        let tx: SignedTx = decode(bytes, MAX_TX_BYTES)?;
        tx.check_static()?;
        Ok(tx)
    }

    /// Rules that need no state: field lengths and total size.
    pub fn check_static(&self) -> Result<(), TypesError> {
        let b = &self.body;
        if b.chain_id.is_empty() || b.chain_id.len() > MAX_CHAIN_ID_BYTES {
            return Err(TypesError::Invalid {
                field: "chain_id",
                reason: format!("must be 1..={MAX_CHAIN_ID_BYTES} bytes"),
            });
        }
        let m = &b.payload.module;
        if m.is_empty()
            || m.len() > MAX_MODULE_NAME_BYTES
            || !m
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c == b'_' || c == b'-')
        {
            return Err(TypesError::Invalid {
                field: "payload.module",
                reason: format!(
                    "must be 1..={MAX_MODULE_NAME_BYTES} lowercase ASCII letters, '-' or '_'"
                ),
            });
        }
        let size = encode(self).len();
        if size > MAX_TX_BYTES {
            return Err(TypesError::TooLarge {
                what: "transaction",
                size_bytes: size,
                limit_bytes: MAX_TX_BYTES,
            });
        }
        Ok(())
    }

    /// Verifies the signature directly (no cache).
    pub fn verify_signature(&self) -> Result<(), TypesError> {
        self.body
            .signer
            .verify(&self.body.sign_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(nonce: u64) -> SignedTx {
        let kp = Keypair::from_seed([9; 32]);
        TxBody {
            chain_id: "trustedge-test".into(),
            signer: kp.public(),
            nonce,
            expiry_height: 100,
            payload: Payload {
                module: "orgs".into(),
                call: vec![1, 2, 3],
            },
        }
        .sign(&kp)
    }

    #[test]
    fn round_trip_binary_and_json() {
        let tx = sample(5);
        let bytes = tx.to_bytes();
        assert_eq!(SignedTx::from_bytes(&bytes).unwrap(), tx);
        let json = serde_json::to_string(&tx).unwrap();
        let back: SignedTx = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.hash(), tx.hash());
        tx.verify_signature().unwrap();
    }

    #[test]
    fn signature_covers_every_field() {
        let tx = sample(5);
        let mut t = tx.clone();
        t.body.nonce = 6;
        assert!(t.verify_signature().is_err());
        let mut t = tx.clone();
        t.body.chain_id = "other".into();
        assert!(t.verify_signature().is_err());
        let mut t = tx;
        t.body.payload.call.push(0);
        assert!(t.verify_signature().is_err());
    }

    #[test]
    fn trailing_bytes_and_oversize_are_rejected() {
        let mut bytes = sample(1).to_bytes();
        bytes.push(0);
        assert!(matches!(
            SignedTx::from_bytes(&bytes),
            Err(TypesError::Codec(_))
        ));
        let big = vec![0u8; MAX_TX_BYTES + 1];
        assert!(matches!(
            SignedTx::from_bytes(&big),
            Err(TypesError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_module_name_is_rejected() {
        let mut tx = sample(1);
        tx.body.payload.module = "Orgs!".into();
        assert!(SignedTx::from_bytes(&tx.to_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = SignedTx::from_bytes(&bytes);
        }

        #[test]
        fn decode_encode_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(tx) = SignedTx::from_bytes(&bytes) {
                prop_assert_eq!(tx.to_bytes(), bytes);
            }
        }
    }
}
