//! Device → edge → ledger → verifier, end to end, through the real runtime.

// clippy.toml allows unwrap and panic in `#[test]` functions only; helpers here are test code.
#![allow(clippy::unwrap_used, clippy::panic)]

mod aerosol;
mod light;

use proptest::prelude::*;
use trustedge_contracts::anchor::batch;
use trustedge_contracts::{
    AnchorError, Genesis, GenesisMember, GenesisOrg, GovernancePolicy, runtime,
};
use trustedge_device::{DeviceIdentity, SignedReading};
use trustedge_edge::{RecordBatch, SealedBatch};
use trustedge_execution::{BlockEnv, DeviceClass, MemState, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload, TxBody};

const CHAIN: &str = "edge-test";
const T0: u64 = 1_700_000_000_000;

fn key(label: &str) -> Keypair {
    Keypair::from_seed(Hash::sha256(label.as_bytes()).0)
}

fn genesis() -> Genesis {
    let org = |id: &str, kind, label: &str| GenesisOrg {
        id: id.into(),
        name: id.into(),
        kind,
        members: vec![GenesisMember {
            public_key: key(label).public(),
            role: Role::Admin,
        }],
    };
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: T0,
        validators: vec![trustedge_types::Validator {
            name: "v".into(),
            address: Address::of_member(&key("v").public()),
            public_key: key("v").public(),
            power: 1,
        }],
        organisations: vec![
            org("ha", OrgKind::HealthAuthority, "ha admin"),
            org("gateways", OrgKind::EdgeOperator, "gateway"),
        ],
        policy: GovernancePolicy {
            admission_approvals: 1,
        },
    }
}

/// Executes one transaction in block `height` and applies it; asserts success.
fn run(state: &mut MemState, height: u64, signer: &Keypair, payload: Payload) {
    let rt = runtime(CHAIN);
    let tx = TxBody {
        chain_id: CHAIN.into(),
        signer: signer.public(),
        nonce: height,
        expiry_height: height,
        payload,
    }
    .sign(signer);
    let mut b = rt.begin_block(
        &*state,
        BlockEnv {
            height,
            time_ms: T0 + 60_000 * height,
        },
    );
    let r = b.apply(&tx, tx.hash(), true).unwrap().clone();
    assert!(r.is_success(), "{r:?}");
    let out = b.finish().unwrap();
    state.apply(&out.writes);
}

fn readings(n: u64) -> (DeviceIdentity, Vec<SignedReading>) {
    let mut d = DeviceIdentity::new(key("wearable"), 0);
    let rs = (0..n)
        .map(|i| {
            d.sign_reading(
                T0 + 1000 * i,
                "ble_contact",
                format!("rssi=-{}", 50 + i).into_bytes(),
            )
            .unwrap()
        })
        .collect();
    (d, rs)
}

fn seal(rs: &[SignedReading]) -> SealedBatch {
    let mut batch = RecordBatch::new("ble_contact", 1000).unwrap();
    for r in rs {
        // the edge accepts only readings that verify
        r.verify().unwrap();
        batch.push(r.time_ms, r.to_bytes()).unwrap();
    }
    batch.seal().unwrap()
}

#[test]
fn readings_anchored_by_the_edge_verify_against_the_ledger() {
    let mut state = MemState::default();
    state.apply(&genesis().state_writes().unwrap());
    let (device, rs) = readings(11);
    let gateway = key("gateway");

    // the gateway's organisation registers the device, then anchors its readings
    let reg = device
        .registration(DeviceClass::Wearable, "TE-Band", vec![])
        .unwrap();
    run(&mut state, 1, &gateway, reg);
    assert!(trustedge_contracts::is_authorised(&state, &device.address()).unwrap());

    let sealed = seal(&rs);
    assert_eq!(
        (sealed.from_ms(), sealed.to_ms(), sealed.count()),
        (T0, T0 + 10_000, 11)
    );
    run(&mut state, 2, &gateway, sealed.payload());

    let id = sealed.anchor_id(&Address::of_member(&gateway.public()));
    let anchor = batch(&state, &id)
        .unwrap()
        .expect("anchored under the predicted id");
    assert_eq!(anchor.merkle_root, sealed.merkle_root());

    for i in 0..sealed.count() {
        let p = sealed.proof(i).unwrap();
        // what a verifier receives is JSON
        let p: trustedge_edge::RecordProof =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        p.verify(&anchor).unwrap();
        // and the record is the device's signed reading
        let reading = SignedReading::from_bytes(&p.record).unwrap();
        assert_eq!(reading.device_address(), device.address());
        assert_eq!(reading, rs[i as usize]);
    }

    let mut p = sealed.proof(3).unwrap();
    p.record = rs[4].to_bytes();
    assert!(matches!(p.verify(&anchor), Err(AnchorError::BadProof(_))));
    let other = seal(&rs[..10]);
    assert!(matches!(
        other.proof(3).unwrap().verify(&anchor),
        Err(AnchorError::CountMismatch { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every record of any batch proves against that batch's root, and no other record does.
    #[test]
    fn every_record_proves_and_no_other(
        records in proptest::collection::vec((0u64..1_000_000, proptest::collection::vec(any::<u8>(), 0..40)), 1..40),
    ) {
        let mut b = RecordBatch::new("r", 100).unwrap();
        for (t, r) in &records {
            b.push(*t, r.clone()).unwrap();
        }
        let sealed = b.seal().unwrap();
        let edge = Address([1; 20]);
        let anchor = trustedge_contracts::AnchorRecord {
            id: sealed.anchor_id(&edge),
            edge,
            org: "e".into(),
            record_type: "r".into(),
            merkle_root: sealed.merkle_root(),
            count: sealed.count(),
            from_ms: sealed.from_ms(),
            to_ms: sealed.to_ms(),
            height: 1,
            tx_hash: Hash::ZERO,
        };
        prop_assert_eq!(sealed.from_ms(), records.iter().map(|r| r.0).min().unwrap());
        prop_assert_eq!(sealed.to_ms(), records.iter().map(|r| r.0).max().unwrap());
        for i in 0..sealed.count() {
            let p = sealed.proof(i).unwrap();
            prop_assert!(p.verify(&anchor).is_ok());
            let mut forged = p.clone();
            forged.record.push(0);
            prop_assert!(forged.verify(&anchor).is_err());
        }
    }
}
