//! Admission, member keys, suspension and the orgs queries.

use trustedge_contracts::orgs::{ADMISSION_TTL_BLOCKS, MemberStatus, OrgStatus};
use trustedge_contracts::{Genesis, GovernancePolicy, OrgsCall, orgs as orgs_mod};
use trustedge_execution::identity::Inactive;
use trustedge_execution::{AdmissionError, OrgKind, Principal, Role};
use trustedge_types::{Keypair, Payload};

use crate::harness::*;

/// Three health authorities (admission needs two of them) and a hospital.
fn three_ha_genesis(approvals: u32) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: GENESIS_TIME_MS,
        validators: vec![validator("val-1")],
        organisations: vec![
            org(
                "ha-a",
                OrgKind::HealthAuthority,
                &[Role::Admin, Role::Operator],
            ),
            org("ha-b", OrgKind::HealthAuthority, &[Role::Admin]),
            org("ha-c", OrgKind::HealthAuthority, &[Role::Admin]),
            org(
                "hospital",
                OrgKind::Hospital,
                &[Role::Admin, Role::Clinician],
            ),
        ],
        policy: GovernancePolicy {
            admission_approvals: approvals,
        },
    }
}

fn admin(org: &str) -> Keypair {
    member(org, Role::Admin)
}

fn propose(id: &str, admin_key: &Keypair) -> Payload {
    orgs(OrgsCall::ProposeAdmission {
        org_id: id.into(),
        name: "Laboratoire Central".into(),
        kind: OrgKind::Laboratory,
        admin_key: admin_key.public(),
    })
}

fn approve(id: &str) -> Payload {
    orgs(OrgsCall::ApproveAdmission { org_id: id.into() })
}

#[test]
fn admission_needs_two_of_three_health_authorities_one_vote_each() {
    let mut net = Net::new(&three_ha_genesis(2));
    let lab_admin = kp("lab-x admin");
    let r = net.ok(&admin("ha-a"), propose("lab-x", &lab_admin));
    let ev = &r.events[0];
    assert_eq!(
        (ev.module.as_str(), ev.kind.as_str()),
        ("orgs", "admission_proposed")
    );
    assert_eq!(ev.attr("approvals"), Some("1"));
    assert_eq!(ev.attr("required"), Some("2"));
    assert!(
        orgs_mod::org(&net.state, "lab-x").unwrap().is_none(),
        "not admitted yet"
    );
    assert_eq!(
        net.admit(&lab_admin, approve("x")).unwrap_err().code(),
        "unknown_signer",
        "the proposed admin cannot sign before admission"
    );

    // the same organisation approving again, by the same or another of its admins, is refused
    net.fails(&admin("ha-a"), approve("lab-x"), "already_exists");
    net.ok(
        &admin("ha-a"),
        orgs(OrgsCall::AddMember {
            key: kp("ha-a second admin").public(),
            role: Role::Admin,
        }),
    );
    let r = net.fails(&kp("ha-a second admin"), approve("lab-x"), "already_exists");
    assert!(message(&r).contains("already approved"), "{}", message(&r));
    // the pending admission reserves its admin key
    net.fails(
        &admin("hospital"),
        orgs(OrgsCall::AddMember {
            key: lab_admin.public(),
            role: Role::Operator,
        }),
        "already_exists",
    );

    let r = net.ok(&admin("ha-b"), approve("lab-x"));
    let kinds: Vec<&str> = r.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["admission_approved", "org_admitted", "member_added"]
    );
    assert_eq!(r.events[1].attr("approvals"), Some("ha-a,ha-b"));
    let lab = orgs_mod::org(&net.state, "lab-x").unwrap().unwrap();
    assert_eq!(
        (
            lab.kind,
            lab.status,
            lab.active_members,
            lab.admitted_height
        ),
        (OrgKind::Laboratory, OrgStatus::Active, 1, net.height)
    );
    match net.resolve(&lab_admin.public()) {
        Ok(Principal::Member {
            org,
            role,
            org_kind,
            ..
        }) => {
            assert_eq!(
                (org.as_str(), role, org_kind),
                ("lab-x", Role::Admin, OrgKind::Laboratory)
            );
        }
        other => panic!("{other:?}"),
    }
    // the proposal is gone; a late third approval finds nothing
    assert!(orgs_mod::pending_proposals(&net.state).unwrap().is_empty());
    net.fails(&admin("ha-c"), approve("lab-x"), "not_found");
    // and the admitted admin manages its organisation
    net.ok(
        &lab_admin,
        orgs(OrgsCall::AddMember {
            key: kp("lab-x operator").public(),
            role: Role::Operator,
        }),
    );
    // the id cannot be proposed again
    net.fails(
        &admin("ha-c"),
        propose("lab-x", &kp("other")),
        "already_exists",
    );
}

#[test]
fn single_approval_policy_admits_at_once() {
    let mut net = Net::new(&three_ha_genesis(1));
    let r = net.ok(&admin("ha-c"), propose("lab-y", &kp("lab-y admin")));
    let kinds: Vec<&str> = r.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["admission_proposed", "org_admitted", "member_added"]
    );
    assert!(orgs_mod::org(&net.state, "lab-y").unwrap().is_some());
    assert!(orgs_mod::pending_proposals(&net.state).unwrap().is_empty());
}

#[test]
fn proposals_are_validated() {
    let mut net = Net::new(&three_ha_genesis(2));
    let a = admin("ha-a");
    // existing org, bad id, taken key, weak key, blank name
    net.fails(&a, propose("hospital", &kp("k1")), "already_exists");
    net.fails(&a, propose("Bad_Id", &kp("k1")), "invalid_argument");
    net.fails(&a, propose("lab-z", &admin("hospital")), "already_exists");
    net.fails(&a, propose("lab-z", &kp("val-1")), "already_exists");
    let mut weak = [0u8; 32];
    weak[0] = 1;
    net.fails(
        &a,
        orgs(OrgsCall::ProposeAdmission {
            org_id: "lab-z".into(),
            name: "Lab".into(),
            kind: OrgKind::Laboratory,
            admin_key: trustedge_types::PublicKey(weak),
        }),
        "invalid_argument",
    );
    net.fails(
        &a,
        orgs(OrgsCall::ProposeAdmission {
            org_id: "lab-z".into(),
            name: "  ".into(),
            kind: OrgKind::Laboratory,
            admin_key: kp("k1").public(),
        }),
        "invalid_argument",
    );
    net.ok(&a, propose("lab-z", &kp("k1")));
    net.fails(
        &admin("ha-b"),
        propose("lab-z", &kp("k2")),
        "already_exists",
    );
}

#[test]
fn lapsed_proposals_cannot_be_approved_and_are_cleared_by_the_next_proposal() {
    let mut net = Net::new(&three_ha_genesis(2));
    net.ok(&admin("ha-a"), propose("lab-x", &kp("lab-x admin")));
    net.height += ADMISSION_TTL_BLOCKS + 1;
    let r = net.fails(&admin("ha-b"), approve("lab-x"), "conflict");
    assert!(message(&r).contains("lapsed"), "{}", message(&r));
    let r = net.ok(&admin("ha-b"), propose("lab-x", &kp("lab-x admin")));
    assert_eq!(r.events[0].kind, "admission_expired");
    assert_eq!(r.events[1].kind, "admission_proposed");
    let pending = orgs_mod::pending_proposals(&net.state).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].approvals, ["ha-b"]);
}

#[test]
fn rotation_retires_the_old_key_and_the_new_one_works() {
    let mut net = Net::new(&three_ha_genesis(2));
    let old = admin("hospital");
    let new = kp("hospital admin v2");
    let r = net.ok(
        &old,
        orgs(OrgsCall::RotateKey {
            new_key: new.public(),
        }),
    );
    assert_eq!(r.events[0].kind, "key_rotated");

    let e = net.admit(
        &old,
        orgs(OrgsCall::RotateKey {
            new_key: kp("z").public(),
        }),
    );
    assert_eq!(e, Err(AdmissionError::RevokedSigner(old.public())));
    assert_eq!(net.resolve(&old.public()), Err(Inactive::Revoked));
    let m = orgs_mod::member(&net.state, &old.public())
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.status, m.replaced_by),
        (MemberStatus::Revoked, Some(new.public()))
    );
    let m = orgs_mod::member(&net.state, &new.public())
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.role, m.org.as_str(), m.replaces),
        (Role::Admin, "hospital", Some(old.public()))
    );
    assert_eq!(
        orgs_mod::org(&net.state, "hospital")
            .unwrap()
            .unwrap()
            .active_members,
        2,
        "rotation keeps the count"
    );

    // the new key has the old one's powers, and the old key can never come back
    net.fails(
        &new,
        orgs(OrgsCall::AddMember {
            key: old.public(),
            role: Role::Admin,
        }),
        "already_exists",
    );
    net.ok(
        &new,
        orgs(OrgsCall::AddMember {
            key: kp("nurse station").public(),
            role: Role::Operator,
        }),
    );
    // it is still the only admin: removing it is refused
    net.fails(
        &new,
        orgs(OrgsCall::RemoveMember { key: new.public() }),
        "conflict",
    );
}

#[test]
fn revocation_and_removal_make_keys_inadmissible() {
    let mut net = Net::new(&three_ha_genesis(2));
    let hadmin = admin("hospital");
    let clin = member("hospital", Role::Clinician);
    let r = net.ok(&hadmin, orgs(OrgsCall::RevokeKey { key: clin.public() }));
    assert_eq!(r.events[0].kind, "key_revoked");
    assert_eq!(r.events[0].attr("by"), Some("admin"));
    assert_eq!(
        net.admit(
            &clin,
            orgs(OrgsCall::RotateKey {
                new_key: kp("c2").public()
            })
        ),
        Err(AdmissionError::RevokedSigner(clin.public()))
    );
    net.fails(
        &hadmin,
        orgs(OrgsCall::RevokeKey { key: clin.public() }),
        "conflict",
    );

    // removal also ends the key
    let op = kp("hospital operator");
    net.ok(
        &hadmin,
        orgs(OrgsCall::AddMember {
            key: op.public(),
            role: Role::Operator,
        }),
    );
    assert!(net.resolve(&op.public()).is_ok());
    let r = net.ok(&hadmin, orgs(OrgsCall::RemoveMember { key: op.public() }));
    assert_eq!(r.events[0].kind, "member_removed");
    assert_eq!(net.resolve(&op.public()), Err(Inactive::Revoked));
    assert_eq!(
        orgs_mod::member(&net.state, &op.public())
            .unwrap()
            .unwrap()
            .status,
        MemberStatus::Removed
    );
    net.fails(
        &hadmin,
        orgs(OrgsCall::RemoveMember { key: op.public() }),
        "conflict",
    );

    // self-revocation
    let haop = member("ha-a", Role::Operator);
    let r = net.ok(&haop, orgs(OrgsCall::RevokeKey { key: haop.public() }));
    assert_eq!(r.events[0].attr("by"), Some("self"));
    assert_eq!(net.resolve(&haop.public()), Err(Inactive::Revoked));
    assert_eq!(
        orgs_mod::org(&net.state, "hospital")
            .unwrap()
            .unwrap()
            .active_members,
        1
    );
}

#[test]
fn admins_act_only_in_their_own_organisation_and_keep_one_admin() {
    let mut net = Net::new(&three_ha_genesis(2));
    let clin = member("hospital", Role::Clinician);
    // another organisation's admin, even a health authority's, is denied
    net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::RemoveMember { key: clin.public() }),
        "access_denied",
    );
    net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::RevokeKey { key: clin.public() }),
        "access_denied",
    );
    net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::RemoveMember {
            key: kp("nobody").public(),
        }),
        "not_found",
    );
    // the last admin cannot be removed, not even by itself
    let r = net.fails(
        &admin("hospital"),
        orgs(OrgsCall::RemoveMember {
            key: admin("hospital").public(),
        }),
        "conflict",
    );
    assert!(message(&r).contains("last active admin"), "{}", message(&r));
    // with a second admin, either can remove the other, and the survivor cannot be revoked by others
    let second = kp("hospital admin 2");
    net.ok(
        &admin("hospital"),
        orgs(OrgsCall::AddMember {
            key: second.public(),
            role: Role::Admin,
        }),
    );
    net.ok(
        &second,
        orgs(OrgsCall::RemoveMember {
            key: admin("hospital").public(),
        }),
    );
    net.fails(
        &second,
        orgs(OrgsCall::RemoveMember {
            key: second.public(),
        }),
        "conflict",
    );
    // adding a key that is already a member elsewhere is refused
    net.fails(
        &second,
        orgs(OrgsCall::AddMember {
            key: admin("ha-b").public(),
            role: Role::Auditor,
        }),
        "already_exists",
    );
}

#[test]
fn suspension_stops_members_and_reinstatement_restores_them() {
    let mut net = Net::new(&three_ha_genesis(2));
    let clin = member("hospital", Role::Clinician);
    // a health authority cannot suspend itself
    let r = net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::SuspendOrg {
            org_id: "ha-a".into(),
        }),
        "access_denied",
    );
    assert!(
        message(&r).contains("cannot suspend itself"),
        "{}",
        message(&r)
    );
    net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::SuspendOrg {
            org_id: "nope".into(),
        }),
        "not_found",
    );
    net.fails(
        &admin("ha-a"),
        orgs(OrgsCall::ReinstateOrg {
            org_id: "hospital".into(),
        }),
        "conflict",
    );

    let r = net.ok(
        &admin("ha-a"),
        orgs(OrgsCall::SuspendOrg {
            org_id: "hospital".into(),
        }),
    );
    assert_eq!(r.events[0].kind, "org_suspended");
    assert_eq!(r.events[0].attr("by_org"), Some("ha-a"));
    assert_eq!(net.resolve(&clin.public()), Err(Inactive::Suspended));
    assert_eq!(
        net.admit(&clin, orgs(OrgsCall::RevokeKey { key: clin.public() })),
        Err(AdmissionError::SuspendedSigner(clin.public()))
    );
    net.fails(
        &admin("ha-b"),
        orgs(OrgsCall::SuspendOrg {
            org_id: "hospital".into(),
        }),
        "conflict",
    );

    // a health authority may suspend another one; its admins then cannot act
    net.ok(
        &admin("ha-a"),
        orgs(OrgsCall::SuspendOrg {
            org_id: "ha-b".into(),
        }),
    );
    assert_eq!(
        net.resolve(&admin("ha-b").public()),
        Err(Inactive::Suspended)
    );

    net.ok(
        &admin("ha-c"),
        orgs(OrgsCall::ReinstateOrg {
            org_id: "hospital".into(),
        }),
    );
    assert!(net.resolve(&clin.public()).is_ok());
    net.ok(
        &clin,
        orgs(OrgsCall::RotateKey {
            new_key: kp("clin v2").public(),
        }),
    );
}

#[test]
fn orgs_queries() {
    let mut net = Net::new(&three_ha_genesis(2));
    net.ok(&admin("ha-a"), propose("lab-x", &kp("lab-x admin")));

    let all = net.query("orgs", "list", &[]);
    let ids: Vec<&str> = all["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ha-a", "ha-b", "ha-c", "hospital"]);
    assert!(all["next"].is_null());

    let p1 = net.query("orgs", "list", &[("limit", "3")]);
    assert_eq!(p1["orgs"].as_array().unwrap().len(), 3);
    assert_eq!(p1["next"], "ha-c");
    let p2 = net.query("orgs", "list", &[("limit", "3"), ("after", "ha-c")]);
    assert_eq!(p2["orgs"][0]["id"], "hospital");
    assert!(p2["next"].is_null());
    for bad in ["0", "1001", "many"] {
        assert!(
            net.try_query("orgs", "list", &[("limit", bad)]).is_err(),
            "{bad}"
        );
    }
    assert!(net.try_query("orgs", "list", &[("colour", "red")]).is_err());

    let o = net.query("orgs", "org/hospital", &[]);
    assert_eq!(
        (
            o["kind"].as_str(),
            o["status"].as_str(),
            o["active_members"].as_u64()
        ),
        (Some("hospital"), Some("active"), Some(2))
    );
    assert!(net.try_query("orgs", "org/nope", &[]).is_err());

    let key = member("hospital", Role::Clinician).public();
    let m = net.query("orgs", &format!("member/{key}"), &[]);
    assert_eq!(m["org"], "hospital");
    assert_eq!(m["role"], "clinician");
    assert_eq!(
        m["address"],
        trustedge_types::Address::of_member(&key).to_string()
    );
    let fields: Vec<&String> = m.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "added_height",
            "address",
            "changed_height",
            "key",
            "org",
            "replaced_by",
            "replaces",
            "role",
            "status"
        ],
        "a member record carries no personal data"
    );

    let mem = net.query("orgs", "members/hospital", &[("limit", "1")]);
    assert_eq!(mem["members"][0]["role"], "admin", "admins first");
    let next = mem["next"].as_str().unwrap().to_string();
    let mem2 = net.query("orgs", "members/hospital", &[("after", &next)]);
    assert_eq!(mem2["members"].as_array().unwrap().len(), 1);
    assert_eq!(mem2["members"][0]["role"], "clinician");

    let p = net.query("orgs", "proposals", &[]);
    assert_eq!(p[0]["org_id"], "lab-x");
    assert_eq!(p[0]["approvals"][0], "ha-a");
}
