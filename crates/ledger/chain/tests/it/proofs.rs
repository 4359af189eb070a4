use trustedge_chain::{Proof, TxStatus};
use trustedge_execution::module::module_key;
use trustedge_types::{Address, Keypair, TxOutcome};

use crate::support::*;

#[test]
fn inclusion_and_state_proofs_verify_offline_and_tampering_fails() {
    let k = keys();
    let d = tempfile::tempdir().unwrap();
    let l = open(d.path(), &k);
    let ids: Vec<_> = (1..=5u64)
        .map(|i| {
            l.submit(register_device(&k.hospital_admin, i, 100 + i as u8))
                .unwrap()
        })
        .collect();
    seal(&l, &k, 1_700_000_001_000);
    let vs = l.validator_set().unwrap();

    for id in &ids {
        let TxStatus::Committed(p) = l.tx_status(id).unwrap() else {
            panic!("not committed")
        };
        assert!(matches!(p.result.outcome, TxOutcome::Success));
        let proof = Proof::Tx(*p.clone());
        proof.verify(Some(&vs)).unwrap();
        // JSON round trip, as `trustedge verify-proof` reads it
        let back: Proof = serde_json::from_str(&serde_json::to_string(&proof).unwrap()).unwrap();
        back.verify(Some(&vs)).unwrap();

        let mut t = (*p).clone();
        t.result.events.clear();
        assert!(t.verify(None).is_err(), "tampered result verified");
        let mut t = (*p).clone();
        t.tx.body.nonce += 100;
        assert!(t.verify(None).is_err(), "tampered tx verified");
        let mut t = (*p).clone();
        t.certificate = None;
        assert!(t.verify(Some(&vs)).is_err(), "missing certificate accepted");
        t.verify(None).unwrap();
    }

    // a device record (membership) and an absent key (non-membership)
    let dev = Address::of_device(&Keypair::from_seed([101; 32]).public());
    let present = l
        .state_proof(&module_key("devices", b"nonce-check-absent"), None)
        .unwrap();
    assert!(present.value.is_none());
    present.verify(Some(&vs)).unwrap();
    let mut lie = present.clone();
    lie.value = Some(vec![1, 2, 3]);
    assert!(lie.verify(None).is_err(), "absent key proven present");

    let nonce_key = {
        let mut k2 = b"nonce/".to_vec();
        k2.extend_from_slice(&k.hospital_admin.public().0);
        module_key("sys", &k2)
    };
    let p = l.state_proof(&nonce_key, None).unwrap();
    assert_eq!(p.value, Some(trustedge_types::encode(&5u64)));
    p.verify(Some(&vs)).unwrap();
    let mut lie = p.clone();
    lie.value = Some(trustedge_types::encode(&4u64));
    assert!(lie.verify(None).is_err(), "tampered value verified");
    let mut lie = p.clone();
    lie.state_root.0[0] ^= 1;
    assert!(lie.verify(None).is_err(), "wrong root verified");

    // an older height still proves its own value
    let old = l.state_proof(&nonce_key, Some(0)).unwrap();
    assert!(old.value.is_none());
    old.verify(None).unwrap();
    let _ = dev;
}
