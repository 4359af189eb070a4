//! Genesis validation, state and the genesis module's queries.

use trustedge_contracts::genesis::{chain_info, policy};
use trustedge_contracts::{Genesis, GenesisError, GenesisMember, validator_set};
use trustedge_execution::{OrgKind, Role};
use trustedge_types::PublicKey;

use crate::harness::*;

fn expect_err(mutate: impl FnOnce(&mut Genesis), check: impl FnOnce(&GenesisError) -> bool) {
    let mut g = matrix_genesis();
    mutate(&mut g);
    let e = g.validate().unwrap_err();
    assert!(check(&e), "unexpected error {e:?}");
    assert!(
        g.state_writes().is_err(),
        "invalid genesis must not produce state"
    );
}

#[test]
fn valid_genesis_round_trips_through_json() {
    let g = matrix_genesis();
    g.validate().unwrap();
    let json = g.to_json();
    let back = Genesis::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.hash(), g.hash());
    let mut other = g.clone();
    other.genesis_time_ms += 1;
    assert_ne!(other.hash(), g.hash());
    // unknown fields are refused rather than ignored
    let with_typo = json.replacen("\"policy\"", "\"polcy\"", 1);
    assert!(matches!(
        Genesis::from_json(with_typo.as_bytes()),
        Err(GenesisError::Json(_))
    ));
}

#[test]
fn every_rule_is_enforced() {
    expect_err(
        |g| g.chain_id = String::new(),
        |e| {
            matches!(
                e,
                GenesisError::Invalid {
                    field: "chain_id",
                    ..
                }
            )
        },
    );
    expect_err(
        |g| g.chain_id = "has space".into(),
        |e| {
            matches!(
                e,
                GenesisError::Invalid {
                    field: "chain_id",
                    ..
                }
            )
        },
    );
    expect_err(
        |g| g.organisations[1].id = "Hospital".into(),
        |e| matches!(e, GenesisError::InvalidId { .. }),
    );
    expect_err(
        |g| g.organisations[1].id = "x".repeat(33),
        |e| matches!(e, GenesisError::InvalidId { .. }),
    );
    expect_err(
        |g| g.organisations[2].id = "hospital".into(),
        |e| *e == GenesisError::DuplicateOrg("hospital".into()),
    );
    expect_err(
        |g| g.organisations[1].name = "\n".into(),
        |e| matches!(e, GenesisError::Invalid { .. }),
    );
    expect_err(
        |g| {
            g.organisations
                .retain(|o| o.kind != OrgKind::HealthAuthority)
        },
        |e| *e == GenesisError::NoHealthAuthority,
    );
    expect_err(
        |g| g.policy.admission_approvals = 0,
        |e| matches!(e, GenesisError::AdmissionApprovals { approvals: 0, .. }),
    );
    // two health authorities in the matrix genesis
    expect_err(
        |g| g.policy.admission_approvals = 3,
        |e| {
            matches!(
                e,
                GenesisError::AdmissionApprovals {
                    approvals: 3,
                    health_authorities: 2
                }
            )
        },
    );
    expect_err(
        |g| g.organisations[3].members.retain(|m| m.role != Role::Admin),
        |e| matches!(e, GenesisError::NoAdmin(id) if id == "manufacturer"),
    );
    let mut weak = [0u8; 32];
    weak[0] = 1;
    expect_err(
        |g| g.organisations[0].members[0].public_key = PublicKey(weak),
        |e| matches!(e, GenesisError::InvalidKey { .. }),
    );
    expect_err(
        |g| {
            let dup = g.organisations[0].members[0].clone();
            g.organisations[4].members.push(dup);
        },
        |e| matches!(e, GenesisError::DuplicateKey(_)),
    );
    expect_err(
        |g| {
            let v = g.validators[0].public_key;
            g.organisations[4].members.push(GenesisMember {
                public_key: v,
                role: Role::Auditor,
            });
        },
        |e| matches!(e, GenesisError::DuplicateKey(_)),
    );
    expect_err(
        |g| g.validators.clear(),
        |e| matches!(e, GenesisError::Validators(_)),
    );
    expect_err(
        |g| g.validators[0].power = 0,
        |e| matches!(e, GenesisError::Validators(_)),
    );
    expect_err(
        |g| g.validators[0].address = g.validators[1].address,
        |e| matches!(e, GenesisError::Validators(_)),
    );
}

#[test]
fn genesis_state_holds_the_authenticated_validator_set() {
    let g = matrix_genesis();
    let net = Net::new(&g);
    let set = validator_set(&net.state).unwrap().unwrap();
    assert_eq!(set, g.validator_set().unwrap());
    assert_eq!(policy(&net.state).unwrap().unwrap(), g.policy);
    assert_eq!(chain_info(&net.state).unwrap().unwrap().chain_id, CHAIN);
    assert_eq!(
        validator_set(&trustedge_execution::MemState::default()).unwrap(),
        None
    );

    let v = net.query("genesis", "validators", &[]);
    assert_eq!(v["hash"], set.hash().to_hex());
    assert_eq!(v["total_power"], 20);
    assert_eq!(v["validators"].as_array().unwrap().len(), 2);
    assert_eq!(
        net.query("genesis", "params", &[])["admission_approvals"],
        2
    );
    assert_eq!(
        net.query("genesis", "chain", &[])["genesis_time_ms"],
        GENESIS_TIME_MS
    );
    assert!(net.try_query("genesis", "nothing", &[]).is_err());

    // every genesis organisation and member is in state and can sign
    for o in &g.organisations {
        let rec = trustedge_contracts::orgs::org(&net.state, &o.id)
            .unwrap()
            .unwrap();
        assert_eq!(rec.active_members as usize, o.members.len());
        for m in &o.members {
            assert!(net.resolve(&m.public_key).is_ok());
        }
    }
}
