//! A failed transaction changes nothing but its signer's nonce.

use trustedge_contracts::orgs::{ADMISSION_TTL_BLOCKS, pending_proposals};
use trustedge_contracts::{AnchorCall, DevicesCall, OrgsCall};
use trustedge_execution::module::module_key;
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload};

use crate::harness::*;

fn nonce_key(k: &Keypair) -> Vec<u8> {
    let mut rel = b"nonce/".to_vec();
    rel.extend_from_slice(&k.public().0);
    module_key("sys", &rel)
}

#[test]
fn failed_transactions_write_only_the_nonce() {
    let mut net = Net::new(&matrix_genesis());
    let hosp = member("hospital", Role::Admin);
    let edge = member("edge-operator", Role::Operator);
    // state with something in every module, so failures have something to disturb
    let dev = kp("dev");
    net.ok(
        &hosp,
        devices(DevicesCall::Register {
            key: dev.public(),
            class: DeviceClass::Thermometer,
            model: "T1".into(),
            attributes: vec![],
        }),
    );
    net.ok(
        &edge,
        anchor(AnchorCall::AnchorBatch {
            record_type: "reading".into(),
            merkle_root: Hash([5; 32]),
            count: 3,
            from_ms: GENESIS_TIME_MS,
            to_ms: GENESIS_TIME_MS + 10,
        }),
    );
    net.ok(
        &member("ha-2", Role::Admin),
        orgs(OrgsCall::ProposeAdmission {
            org_id: "lab-new".into(),
            name: "New Lab".into(),
            kind: OrgKind::Laboratory,
            admin_key: kp("lab-new admin").public(),
        }),
    );
    // let the proposal lapse
    net.height += ADMISSION_TTL_BLOCKS + 1;

    let failing: Vec<(Keypair, Payload, &str)> = vec![
        // fails late, after the module has already deleted the lapsed proposal of lab-new
        // and emitted an event for it
        (
            member("health-authority", Role::Admin),
            orgs(OrgsCall::ProposeAdmission {
                org_id: "lab-other".into(),
                name: "Other Lab".into(),
                kind: OrgKind::Laboratory,
                admin_key: hosp.public(),
            }),
            "already_exists",
        ),
        (
            member("ha-2", Role::Admin),
            orgs(OrgsCall::ApproveAdmission {
                org_id: "lab-new".into(),
            }),
            "conflict",
        ),
        (
            hosp.clone(),
            orgs(OrgsCall::RemoveMember { key: hosp.public() }),
            "conflict",
        ),
        (
            member("hospital", Role::Clinician),
            orgs(OrgsCall::AddMember {
                key: kp("x").public(),
                role: Role::Admin,
            }),
            "access_denied",
        ),
        (
            member("clinic", Role::Admin),
            devices(DevicesCall::Revoke {
                device: Address::of_device(&dev.public()),
            }),
            "access_denied",
        ),
        (
            edge.clone(),
            anchor(AnchorCall::AnchorBatch {
                record_type: "reading".into(),
                merkle_root: Hash([6; 32]),
                count: 3,
                from_ms: GENESIS_TIME_MS + 10,
                to_ms: GENESIS_TIME_MS + 20,
            }),
            "conflict",
        ),
        (
            dev.clone(),
            orgs(OrgsCall::RotateKey {
                new_key: kp("y").public(),
            }),
            "access_denied",
        ),
    ];
    for (signer, payload, expected) in failing {
        let before = net.state.clone();
        let tx = net.tx(&signer, payload.clone());
        let out = net.block(std::slice::from_ref(&tx)).unwrap();
        assert_eq!(
            code(&out.results[0]),
            expected,
            "{payload:?}: {}",
            message(&out.results[0])
        );
        assert!(out.results[0].events.is_empty());
        let keys: Vec<&Vec<u8>> = out.writes.keys().collect();
        assert_eq!(
            keys,
            [&nonce_key(&signer)],
            "{payload:?} wrote more than the nonce"
        );
        // and the state, minus that key, is what it was
        let mut after = net.state.map.clone();
        let mut prior = before.map.clone();
        after.remove(&nonce_key(&signer));
        prior.remove(&nonce_key(&signer));
        assert_eq!(after, prior);
        assert_eq!(
            net.state.map.get(&nonce_key(&signer)),
            Some(&trustedge_types::encode(&tx.body.nonce))
        );
    }
    assert_eq!(
        pending_proposals(&net.state).unwrap().len(),
        1,
        "the lapsed proposal is still there"
    );
}
