//! Validator-set governance: proposals, approvals, the scheduled height, refusals, and the
//! end-of-block hook that applies changes.

use trustedge_contracts::genesis::{
    MAX_PENDING_VALIDATOR_CHANGES, MAX_VALIDATOR_POWER, VALIDATOR_CHANGE_TTL_BLOCKS,
    apply_validator_change, retired_validator, scheduled_validator_changes,
};
use trustedge_contracts::{
    GenesisCall, OrgsCall, VALIDATOR_CHANGE_DELAY, ValidatorChange, validator_set,
};
use trustedge_execution::Role;
use trustedge_types::block::MAX_VALIDATORS;
use trustedge_types::{Address, Keypair, Payload, PublicKey, Validator, ValidatorSet};

use crate::harness::*;

fn gov(call: GenesisCall) -> Payload {
    Payload::new("genesis", &call)
}

fn add(label: &str, power: u64) -> Payload {
    gov(GenesisCall::ProposeValidatorChange {
        change: ValidatorChange::Add {
            name: label.into(),
            public_key: kp(label).public(),
            power,
        },
    })
}

fn approve(id: u64) -> Payload {
    gov(GenesisCall::ApproveValidatorChange { proposal_id: id })
}

fn remove(label: &str) -> Payload {
    gov(GenesisCall::ProposeValidatorChange {
        change: ValidatorChange::Remove {
            address: Address::of_member(&kp(label).public()),
        },
    })
}

fn ha() -> Keypair {
    member("health-authority", Role::Admin)
}

fn ha2() -> Keypair {
    member("ha-2", Role::Admin)
}

fn set(net: &Net) -> ValidatorSet {
    validator_set(&net.state).unwrap().unwrap()
}

fn attr(r: &trustedge_types::TxResult, kind: &str, key: &str) -> String {
    r.events
        .iter()
        .find(|e| e.kind == kind)
        .and_then(|e| e.attr(key))
        .unwrap_or_else(|| panic!("no {kind}.{key} in {:?}", r.events))
        .to_string()
}

#[test]
fn an_approved_addition_takes_effect_exactly_at_its_height() {
    let mut net = Net::new(&matrix_genesis());
    let before = set(&net);
    // matrix genesis: two approvals needed
    let r = net.ok(&ha(), add("val-3", 5));
    let id: u64 = attr(&r, "validator_change_proposed", "proposal_id")
        .parse()
        .unwrap();
    assert_eq!(attr(&r, "validator_change_proposed", "required"), "2");
    assert_eq!(set(&net), before, "a proposal changes nothing yet");
    let r = net.ok(&ha2(), approve(id));
    let approved_at = net.height;
    let effective: u64 = attr(&r, "validator_change_scheduled", "effective_height")
        .parse()
        .unwrap();
    assert_eq!(effective, approved_at + VALIDATOR_CHANGE_DELAY);
    assert_eq!(scheduled_validator_changes(&net.state).unwrap().len(), 1);
    // The state after block h holds the set of h + 1: unchanged until the block before the
    // effective height ends.
    while net.height + 1 < effective {
        assert_eq!(set(&net), before, "height {}", net.height);
        let out = net.block(&[]).unwrap();
        if net.height + 1 < effective {
            assert!(out.block_events.is_empty());
        } else {
            let kinds: Vec<&str> = out.block_events.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(
                kinds,
                ["validator_change_applied", "validator_set_changed"],
                "{out:?}"
            );
            let changed = &out.block_events[1];
            assert_eq!(
                changed.attr("effective_height"),
                Some(&*effective.to_string())
            );
        }
    }
    let after = set(&net);
    assert_eq!(after.validators.len(), 3);
    assert_eq!(after.total_power(), 25);
    assert!(
        after
            .get(&Address::of_member(&kp("val-3").public()))
            .is_some()
    );
    assert!(scheduled_validator_changes(&net.state).unwrap().is_empty());
    // nothing more happens in later blocks
    assert!(net.block(&[]).unwrap().block_events.is_empty());
    assert_eq!(set(&net), after);
    let q = net.query("genesis", "validators", &[]);
    assert_eq!(q["hash"], after.hash().to_hex());
}

#[test]
fn removal_retires_the_key_for_ever() {
    let mut net = Net::new(&matrix_genesis());
    let r = net.ok(&ha(), remove("val-1"));
    let id = attr(&r, "validator_change_proposed", "proposal_id")
        .parse()
        .unwrap();
    net.ok(&ha2(), approve(id));
    // The last validator cannot go: the projection already lacks val-1.
    net.fails(&ha(), remove("val-2"), "conflict");
    for _ in 0..VALIDATOR_CHANGE_DELAY {
        net.block(&[]).unwrap();
    }
    let s = set(&net);
    assert_eq!(s.validators.len(), 1);
    assert_eq!(s.validators[0].name, "val-2");
    let key = kp("val-1").public();
    assert!(retired_validator(&net.state, &key).unwrap().is_some());
    // a retired key has an identity: it can be neither a validator nor a member again
    let r = net.fails(&ha(), add("val-1", 1), "already_exists");
    assert!(
        message(&r).contains("was a validator key"),
        "{}",
        message(&r)
    );
    net.fails(
        &member("hospital", Role::Admin),
        orgs(OrgsCall::AddMember {
            key,
            role: Role::Clinician,
        }),
        "already_exists",
    );
}

#[test]
fn set_power_changes_the_quorum() {
    let mut net = Net::new(&matrix_genesis());
    let address = Address::of_member(&kp("val-2").public());
    let r = net.ok(
        &ha(),
        gov(GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::SetPower { address, power: 40 },
        }),
    );
    let id = attr(&r, "validator_change_proposed", "proposal_id")
        .parse()
        .unwrap();
    net.ok(&ha2(), approve(id));
    for _ in 0..VALIDATOR_CHANGE_DELAY {
        net.block(&[]).unwrap();
    }
    let s = set(&net);
    assert_eq!(s.get(&address).unwrap().power, 40);
    assert_eq!(s.total_power(), 50);
    assert_eq!(s.quorum_power(), 34);
}

#[test]
fn bad_proposals_are_refused_with_clear_codes() {
    let mut net = Net::new(&matrix_genesis());
    // weak (small-order) key
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let r = net.fails(
        &ha(),
        gov(GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Add {
                name: "weak".into(),
                public_key: PublicKey(weak),
                power: 1,
            },
        }),
        "invalid_argument",
    );
    assert!(message(&r).contains("validator key"), "{}", message(&r));
    // powers out of range, names that are not names
    net.fails(&ha(), add("zero", 0), "invalid_argument");
    net.fails(
        &ha(),
        add("huge", MAX_VALIDATOR_POWER + 1),
        "invalid_argument",
    );
    net.fails(
        &ha(),
        gov(GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Add {
                name: "bad\nname".into(),
                public_key: kp("named").public(),
                power: 1,
            },
        }),
        "invalid_argument",
    );
    // keys with an identity already: a validator, a member
    let r = net.fails(&ha(), add("val-1", 1), "already_exists");
    assert!(message(&r).contains("validator key"), "{}", message(&r));
    net.fails(
        &ha(),
        gov(GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Add {
                name: "member".into(),
                public_key: member("hospital", Role::Admin).public(),
                power: 1,
            },
        }),
        "already_exists",
    );
    // unknown validators
    net.fails(&ha(), remove("nobody"), "not_found");
    net.fails(
        &ha(),
        gov(GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::SetPower {
                address: Address::of_member(&kp("nobody").public()),
                power: 3,
            },
        }),
        "not_found",
    );
    // a pending addition reserves its key: for another proposal and for a member
    net.ok(&ha(), add("val-new", 1));
    net.fails(&ha2(), add("val-new", 2), "already_exists");
    net.fails(
        &member("clinic", Role::Admin),
        orgs(OrgsCall::AddMember {
            key: kp("val-new").public(),
            role: Role::Clinician,
        }),
        "already_exists",
    );
    // approvals: unknown id, twice by one organisation, the proposer's own
    net.fails(&ha2(), approve(999), "not_found");
    net.fails(&ha(), approve(1), "already_exists");
    net.ok(&ha2(), approve(1));
    net.fails(&ha2(), approve(1), "not_found");
}

#[test]
fn pending_proposals_are_bounded_and_lapse() {
    let mut net = Net::new(&matrix_genesis());
    for i in 0..MAX_PENDING_VALIDATOR_CHANGES {
        net.ok(&ha(), add(&format!("cand-{i}"), 1));
    }
    let r = net.fails(&ha(), add("one-too-many", 1), "conflict");
    assert!(message(&r).contains("pending already"), "{}", message(&r));
    let pending = net.query("genesis", "validator_changes", &[]);
    assert_eq!(
        pending["pending"].as_array().unwrap().len(),
        MAX_PENDING_VALIDATOR_CHANGES
    );
    // after the TTL they lapse: approving fails, a new proposal clears them
    net.height += VALIDATOR_CHANGE_TTL_BLOCKS + 1;
    net.fails(&ha2(), approve(1), "conflict");
    let r = net.ok(&ha(), add("fresh", 1));
    let expired = r
        .events
        .iter()
        .filter(|e| e.kind == "validator_change_expired")
        .count();
    assert_eq!(expired, MAX_PENDING_VALIDATOR_CHANGES);
    // the lapsed proposals' keys are free again
    net.ok(&ha(), add("cand-0", 1));
}

#[test]
fn the_set_never_exceeds_its_bound() {
    let validators: Vec<Validator> = (0..MAX_VALIDATORS)
        .map(|i| validator(&format!("v{i}")))
        .collect();
    let full = ValidatorSet::new(validators).unwrap();
    let e = apply_validator_change(
        &full,
        &ValidatorChange::Add {
            name: "extra".into(),
            public_key: kp("extra").public(),
            power: 1,
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "conflict");
    let one = ValidatorSet::new(vec![validator("solo")]).unwrap();
    let e = apply_validator_change(
        &one,
        &ValidatorChange::Remove {
            address: one.validators[0].address,
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn one_approval_policy_schedules_at_once() {
    let mut g = matrix_genesis();
    g.policy.admission_approvals = 1;
    let mut net = Net::new(&g);
    let r = net.ok(&ha2(), add("val-3", 1));
    assert_eq!(
        attr(&r, "validator_change_scheduled", "effective_height"),
        (net.height + VALIDATOR_CHANGE_DELAY).to_string()
    );
}
