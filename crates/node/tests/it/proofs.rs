//! Proofs from the API verify offline, and tampered copies do not.

use trustedge_chain::Proof;
use trustedge_execution::module::module_key;
use trustedge_types::{Address, Hash};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_proofs_verify_offline_and_tampering_fails() {
    let n = sealer().await;
    let (t, _) = register_device(&keys().operator, 1, 90);
    let h = n.client.submit_tx(&t).await.unwrap();
    committed(&n.client, &h).await;
    let vs = validator_set();

    let proof = n.client.tx_proof(&h).await.unwrap();
    // As saved to a file and read back by `trustedge verify-proof`.
    let json = serde_json::to_string_pretty(&proof).unwrap();
    assert!(json.contains("\"kind\": \"tx\""), "{json}");
    let proof: Proof = serde_json::from_str(&json).unwrap();
    proof.verify(Some(&vs)).unwrap();
    proof.verify(None).unwrap();
    let Proof::Tx(p) = proof else {
        panic!("expected a tx proof")
    };
    assert_eq!(p.tx.hash(), h);
    assert!(p.result.is_success());

    let mut bad = p.clone();
    bad.result.events.clear();
    assert!(
        Proof::Tx(bad).verify(None).is_err(),
        "a changed result must not verify"
    );
    let mut bad = p.clone();
    bad.tx.body.nonce += 1;
    assert!(
        Proof::Tx(bad).verify(None).is_err(),
        "a changed tx must not verify"
    );
    let mut bad = p.clone();
    bad.header.state_root = Hash([7; 32]);
    assert!(
        Proof::Tx(bad).verify(Some(&vs)).is_err(),
        "a changed header is not finalised by the certificate"
    );
    let mut bad = p.clone();
    if let Some(c) = bad.certificate.as_mut() {
        c.signatures[0].signature.0[0] ^= 1;
    }
    assert!(
        Proof::Tx(bad).verify(Some(&vs)).is_err(),
        "a forged certificate must not verify"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_proofs_verify_offline_and_tampering_fails() {
    let n = sealer().await;
    let (t, device) = register_device(&keys().operator, 1, 91);
    let p = committed(&n.client, &n.client.submit_tx(&t).await.unwrap()).await;
    let vs = validator_set();

    // The device record, by raw key.
    let addr = Address::of_device(&device.public());
    let key = module_key("devices", &[b"device/".as_slice(), &addr.0].concat());
    let r = n.client.state_proof(&key, None).await.unwrap();
    assert!(r.height >= p.header.height);
    assert!(r.value.is_some());
    assert_eq!(
        r.decoded.as_ref().unwrap()["status"],
        "active",
        "{:?}",
        r.decoded
    );
    let json = serde_json::to_string(&r.proof).unwrap();
    assert!(json.contains("\"kind\":\"state\""), "{json}");
    let proof: Proof = serde_json::from_str(&json).unwrap();
    proof.verify(Some(&vs)).unwrap();
    let Proof::State(sp) = proof else {
        panic!("expected a state proof")
    };
    let mut bad = sp.clone();
    if let Some(v) = bad.value.as_mut() {
        v[0] ^= 1;
    }
    assert!(
        Proof::State(bad).verify(None).is_err(),
        "a changed value must not verify"
    );
    let mut bad = sp.clone();
    bad.value = None;
    assert!(
        Proof::State(bad).verify(None).is_err(),
        "hiding a value must not verify"
    );
    let mut bad = sp.clone();
    bad.state_root = Hash([3; 32]);
    assert!(Proof::State(bad).verify(None).is_err());

    // By path, and at genesis (height 0), where the device did not exist yet.
    let org = n
        .client
        .state_at_path("orgs/org/edge-op", None)
        .await
        .unwrap();
    assert!(org.value.is_some());
    assert_eq!(
        org.decoded.as_ref().unwrap()["id"],
        "edge-op",
        "{:?}",
        org.decoded
    );
    org.proof.verify(Some(&vs)).unwrap();
    let before = n.client.state_proof(&key, Some(0)).await.unwrap();
    assert_eq!((before.height, before.value.as_ref()), (0, None));
    before.proof.verify(Some(&vs)).unwrap();

    // Absence is proven too, and cannot be turned into presence.
    let absent = n
        .client
        .state_at_path("orgs/org/nobody", None)
        .await
        .unwrap();
    assert!(absent.value.is_none());
    absent.proof.verify(Some(&vs)).unwrap();
    let Proof::State(mut bad) = absent.proof else {
        panic!("expected a state proof")
    };
    bad.value = Some(b"forged".to_vec());
    assert!(Proof::State(bad).verify(None).is_err());
    n.stop().await;
}
