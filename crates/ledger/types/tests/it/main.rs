//! Every decoder of the core types fed arbitrary input: a typed error or a value that
//! re-encodes to the same bytes, never a panic.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use proptest::prelude::*;
use trustedge_types::{
    Address, Block, CommitCertificate, Hash, MerkleProof, PublicKey, Signature, SignedTx, TxResult,
    ValidatorSet, decode, encode,
};

fn roundtrip<T: borsh::BorshDeserialize + borsh::BorshSerialize>(bytes: &[u8]) -> bool {
    match decode::<T>(bytes, 1 << 20) {
        Ok(v) => encode(&v) == bytes,
        Err(_) => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn binary_decoders_are_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(roundtrip::<SignedTx>(&bytes));
        prop_assert!(roundtrip::<Block>(&bytes));
        prop_assert!(roundtrip::<CommitCertificate>(&bytes));
        prop_assert!(roundtrip::<MerkleProof>(&bytes));
        prop_assert!(roundtrip::<ValidatorSet>(&bytes));
        prop_assert!(roundtrip::<TxResult>(&bytes));
        let _ = Block::from_bytes(&bytes);
        let _ = SignedTx::from_bytes(&bytes);
    }

    #[test]
    fn text_parsers_never_panic(s in "\\PC{0,120}") {
        let _ = Address::parse(&s);
        let _ = Hash::from_hex(&s);
        let _ = PublicKey::from_hex(&s);
        let _ = Signature::from_hex(&s);
        let _ = serde_json::from_str::<SignedTx>(&s);
        let _ = serde_json::from_str::<Block>(&s);
    }

    #[test]
    fn arbitrary_public_keys_never_panic_verification(key in any::<[u8; 32]>(), sig in proptest::collection::vec(any::<u8>(), 64)) {
        let mut s = [0u8; 64];
        s.copy_from_slice(&sig);
        let pk = PublicKey(key);
        let _ = pk.validate();
        prop_assert!(pk.verify(b"message", &Signature(s)).is_err());
    }
}

#[test]
fn json_forms_round_trip() {
    let kp = trustedge_types::Keypair::from_seed([4; 32]);
    let tx = trustedge_types::TxBody {
        chain_id: "c".into(),
        signer: kp.public(),
        nonce: 1,
        expiry_height: 2,
        payload: trustedge_types::Payload {
            module: "devices".into(),
            call: vec![0, 1],
        },
    }
    .sign(&kp);
    let v = serde_json::to_value(&tx).unwrap();
    assert_eq!(v["body"]["signer"], serde_json::json!(kp.public().to_hex()));
    assert_eq!(v["body"]["payload"]["call"], serde_json::json!("0001"));
    let back: SignedTx = serde_json::from_value(v).unwrap();
    assert_eq!(back, tx);
    let addr = Address::of_member(&kp.public());
    let s = serde_json::to_string(&addr).unwrap();
    assert!(s.starts_with("\"te1"));
    assert_eq!(serde_json::from_str::<Address>(&s).unwrap(), addr);
}
