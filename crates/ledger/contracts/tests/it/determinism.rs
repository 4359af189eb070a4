//! The same transactions on two fresh states give the same writes and results.

use trustedge_contracts::{AnchorCall, DevicesCall, Genesis, OrgsCall};
use trustedge_execution::{BlockExecution, DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash, SignedTx, TxResult};

use crate::harness::*;

/// A scenario touching every module, with successes and failures, in three blocks.
fn scenario(net: &mut Net) -> Vec<Vec<SignedTx>> {
    let ha = member("health-authority", Role::Admin);
    let ha2 = member("ha-2", Role::Admin);
    let hosp = member("hospital", Role::Admin);
    let edge = member("edge-operator", Role::Operator);
    let dev = kp("det-dev");
    let b1 = vec![
        net.tx(
            &ha,
            orgs(OrgsCall::ProposeAdmission {
                org_id: "lab-d".into(),
                name: "Lab D".into(),
                kind: OrgKind::Laboratory,
                admin_key: kp("lab-d admin").public(),
            }),
        ),
        net.tx(
            &hosp,
            devices(DevicesCall::Register {
                key: dev.public(),
                class: DeviceClass::Wearable,
                model: "W".into(),
                attributes: vec![],
            }),
        ),
        net.tx(
            &hosp,
            orgs(OrgsCall::AddMember {
                key: kp("det-op").public(),
                role: Role::Operator,
            }),
        ),
        net.tx(
            &edge,
            anchor(AnchorCall::AnchorBatch {
                record_type: "contact_event".into(),
                merkle_root: Hash([1; 32]),
                count: 4,
                from_ms: GENESIS_TIME_MS,
                to_ms: GENESIS_TIME_MS + 100,
            }),
        ),
    ];
    let b2 = vec![
        net.tx(
            &ha2,
            orgs(OrgsCall::ApproveAdmission {
                org_id: "lab-d".into(),
            }),
        ),
        net.tx(
            &hosp,
            devices(DevicesCall::Suspend {
                device: Address::of_device(&dev.public()),
            }),
        ),
        net.tx(
            &edge,
            anchor(AnchorCall::AnchorBatch {
                record_type: "contact_event".into(),
                merkle_root: Hash([2; 32]),
                count: 4,
                from_ms: GENESIS_TIME_MS + 50,
                to_ms: GENESIS_TIME_MS + 150,
            }),
        ),
    ];
    let b3 = vec![
        net.tx(
            &hosp,
            orgs(OrgsCall::RotateKey {
                new_key: kp("hosp v2").public(),
            }),
        ),
        net.tx(
            &ha,
            orgs(OrgsCall::SuspendOrg {
                org_id: "clinic".into(),
            }),
        ),
    ];
    vec![b1, b2, b3]
}

fn run(genesis: &Genesis, blocks: &[Vec<SignedTx>]) -> (Vec<BlockExecution>, Net) {
    let mut net = Net::new(genesis);
    let outs = blocks.iter().map(|b| net.block(b).unwrap()).collect();
    (outs, net)
}

#[test]
fn same_transactions_same_writes_and_results() {
    let genesis = matrix_genesis();
    assert_eq!(
        genesis.state_writes().unwrap(),
        genesis.state_writes().unwrap()
    );
    let blocks = scenario(&mut Net::new(&genesis));
    let (a, net_a) = run(&genesis, &blocks);
    let (b, net_b) = run(&genesis, &blocks);
    assert_eq!(a, b);
    assert_eq!(net_a.state, net_b.state);
    let roots: Vec<Hash> = a.iter().map(|x| TxResult::root_of(&x.results)).collect();
    let roots_b: Vec<Hash> = b.iter().map(|x| TxResult::root_of(&x.results)).collect();
    assert_eq!(roots, roots_b);
    // the scenario exercised both outcomes
    let codes: Vec<&str> = a.iter().flat_map(|x| x.results.iter().map(code)).collect();
    assert_eq!(
        codes,
        ["ok", "ok", "ok", "ok", "ok", "ok", "conflict", "ok", "ok"]
    );
}
