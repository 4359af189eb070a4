//! The access matrix: every state-changing action against every (organisation kind, role),
//! checked against a table written here by hand — not derived from the modules' `Access`
//! declarations, so a change to either shows up as a failure.

use trustedge_contracts::{
    AerosolAlertTx, AerosolCall, AlertKind, AnchorCall, CaseVisit, DevicesCall, ExposureCall,
    ExposureNotice, GenesisCall, OrgsCall, ValidatorChange,
};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash, Keypair, Payload};

use crate::diagnosis::{certify, dkey, lab, publish, today, upload_ok};
use crate::harness::*;

/// Allowed roles per organisation kind: A admin, O operator, C clinician, U auditor.
/// Columns in `OrgKind::ALL` order.
#[rustfmt::skip]
const EXPECTED: &[(&str, [&str; 7])] = &[
    //                      HealthAuth Hospital Lab     Manufact Distrib  Clinic   EdgeOp
    ("propose_admission",  ["A",       "",      "",     "",      "",      "",      ""    ]),
    ("approve_admission",  ["A",       "",      "",     "",      "",      "",      ""    ]),
    ("add_member",         ["A",       "A",     "A",    "A",     "A",     "A",     "A"   ]),
    ("remove_member",      ["A",       "A",     "A",    "A",     "A",     "A",     "A"   ]),
    ("rotate_key",         ["AOCU",    "AOCU",  "AOCU", "AOCU",  "AOCU",  "AOCU",  "AOCU"]),
    ("revoke_own_key",     ["AOCU",    "AOCU",  "AOCU", "AOCU",  "AOCU",  "AOCU",  "AOCU"]),
    ("revoke_other_key",   ["A",       "A",     "A",    "A",     "A",     "A",     "A"   ]),
    ("suspend_org",        ["A",       "",      "",     "",      "",      "",      ""    ]),
    ("reinstate_org",      ["A",       "",      "",     "",      "",      "",      ""    ]),
    ("register_device",    ["AO",      "AO",    "AO",   "AO",    "AO",    "AO",    "AO"  ]),
    ("suspend_device",     ["AO",      "AO",    "AO",   "AO",    "AO",    "AO",    "AO"  ]),
    ("reinstate_device",   ["AO",      "AO",    "AO",   "AO",    "AO",    "AO",    "AO"  ]),
    ("revoke_device",      ["AO",      "AO",    "AO",   "AO",    "AO",    "AO",    "AO"  ]),
    ("anchor_batch",       ["",        "",      "",     "",      "",      "",      "AO"  ]),
    ("publish_keys",       ["AOC",     "AOC",   "AOC",  "AOC",   "AOC",   "AOC",   "AOC" ]),
    ("publish_notices",    ["",        "",      "",     "",      "",      "",      "O"   ]),
    ("publish_alerts",     ["",        "",      "",     "",      "",      "",      "O"   ]),
    ("report_case_presence", ["",      "",      "",     "",      "",      "",      "O"   ]),
    ("propose_validator_change", ["A", "",      "",     "",      "",      "",      ""    ]),
    ("approve_validator_change", ["A", "",      "",     "",      "",      "",      ""    ]),
];

fn letter(role: Role) -> char {
    match role {
        Role::Admin => 'A',
        Role::Operator => 'O',
        Role::Clinician => 'C',
        Role::Auditor => 'U',
    }
}

fn register(key: &Keypair) -> Payload {
    devices(DevicesCall::Register {
        key: key.public(),
        class: DeviceClass::Wearable,
        model: "TE-Band 2".into(),
        attributes: vec![],
    })
}

/// Another member of the signer's organisation to act on.
fn other_member(org: &str, role: Role) -> Keypair {
    member(
        org,
        if role == Role::Auditor {
            Role::Clinician
        } else {
            Role::Auditor
        },
    )
}

/// An organisation other than the signer's to suspend or reinstate.
fn other_org(org: &str) -> &'static str {
    if org == "clinic" {
        "hospital"
    } else {
        "clinic"
    }
}

/// Runs the setup of `action` on `net` and returns the call the signer makes.
fn prepare(net: &mut Net, action: &str, org: &str, role: Role) -> Payload {
    let ha2 = member("ha-2", Role::Admin);
    let device = kp(&format!("device-of-{org}"));
    match action {
        "propose_admission" => propose_newcomer(),
        "approve_admission" => {
            net.ok(&ha2, propose_newcomer());
            orgs(OrgsCall::ApproveAdmission {
                org_id: "newcomer".into(),
            })
        }
        "add_member" => orgs(OrgsCall::AddMember {
            key: kp("fresh-member").public(),
            role: Role::Clinician,
        }),
        "remove_member" => orgs(OrgsCall::RemoveMember {
            key: other_member(org, role).public(),
        }),
        "rotate_key" => orgs(OrgsCall::RotateKey {
            new_key: kp("fresh-member").public(),
        }),
        "revoke_own_key" => orgs(OrgsCall::RevokeKey {
            key: member(org, role).public(),
        }),
        "revoke_other_key" => orgs(OrgsCall::RevokeKey {
            key: other_member(org, role).public(),
        }),
        "suspend_org" => orgs(OrgsCall::SuspendOrg {
            org_id: other_org(org).into(),
        }),
        "reinstate_org" => {
            net.ok(
                &ha2,
                orgs(OrgsCall::SuspendOrg {
                    org_id: other_org(org).into(),
                }),
            );
            orgs(OrgsCall::ReinstateOrg {
                org_id: other_org(org).into(),
            })
        }
        "register_device" => register(&device),
        "suspend_device" | "reinstate_device" | "revoke_device" => {
            let addr = Address::of_device(&device.public());
            net.ok(&member(org, Role::Admin), register(&device));
            if action == "reinstate_device" {
                net.ok(
                    &member(org, Role::Admin),
                    devices(DevicesCall::Suspend { device: addr }),
                );
            }
            devices(match action {
                "suspend_device" => DevicesCall::Suspend { device: addr },
                "reinstate_device" => DevicesCall::Reinstate { device: addr },
                _ => DevicesCall::Revoke { device: addr },
            })
        }
        "anchor_batch" => anchor(AnchorCall::AnchorBatch {
            record_type: "contact_event".into(),
            merkle_root: Hash::sha256(org.as_bytes()),
            count: 10,
            from_ms: GENESIS_TIME_MS,
            to_ms: GENESIS_TIME_MS + 500,
        }),
        "publish_keys" => {
            // a certificate from the laboratory's clinician; the signer only relays it
            let k = [dkey("matrix", today(net) - 1)];
            publish(&k, certify(net, &lab(), "matrix", &k))
        }
        "publish_notices" => {
            let day = today(net) - 1;
            let up = upload_ok(net, "matrix", &[dkey("matrix", day)]);
            exposure(ExposureCall::PublishNotices {
                notices: vec![ExposureNotice {
                    rpis: vec![[0x42; 16]],
                    risk_score: 1,
                    day,
                    source_upload: up,
                }],
            })
        }
        "publish_alerts" => {
            let day = today(net) - 1;
            crate::aerosol::aerosol(AerosolCall::PublishAlerts {
                alerts: vec![AerosolAlertTx {
                    venue: [0x42; 16],
                    start_s: u64::from(day) * 86_400 + 3600,
                    end_s: u64::from(day) * 86_400 + 4500,
                    risk_ppm: 20_000,
                    kind: AlertKind::ElevatedRisk,
                }],
            })
        }
        "report_case_presence" => {
            // a confirmed case and an alert, set up by the fixture edge operator
            let day = today(net) - 1;
            let up = upload_ok(net, "matrix", &[dkey("matrix", day)]);
            let start = u64::from(day) * 86_400 + 3600;
            net.ok(
                &member("edge-operator", Role::Operator),
                crate::aerosol::aerosol(AerosolCall::PublishAlerts {
                    alerts: vec![AerosolAlertTx {
                        venue: [0x42; 16],
                        start_s: start,
                        end_s: start + 900,
                        risk_ppm: 20_000,
                        kind: AlertKind::ElevatedRisk,
                    }],
                }),
            );
            crate::aerosol::aerosol(AerosolCall::ReportCasePresence {
                upload: up,
                visits: vec![CaseVisit {
                    venue: [0x42; 16],
                    start_s: start + 300,
                    end_s: start + 1200,
                }],
            })
        }
        "propose_validator_change" => propose_new_validator(),
        "approve_validator_change" => {
            // ha-2's proposal is id 1 and holds one of the two approvals needed.
            net.ok(&ha2, propose_new_validator());
            Payload::new(
                "genesis",
                &GenesisCall::ApproveValidatorChange { proposal_id: 1 },
            )
        }
        other => panic!("no action {other}"),
    }
}

fn propose_new_validator() -> Payload {
    Payload::new(
        "genesis",
        &GenesisCall::ProposeValidatorChange {
            change: ValidatorChange::Add {
                name: "val-new".into(),
                public_key: kp("val-new").public(),
                power: 1,
            },
        },
    )
}

fn propose_newcomer() -> Payload {
    orgs(OrgsCall::ProposeAdmission {
        org_id: "newcomer".into(),
        name: "Newcomer Clinic".into(),
        kind: OrgKind::Clinic,
        admin_key: kp("newcomer-admin").public(),
    })
}

#[test]
fn access_matrix_matches_the_written_table() {
    let genesis = matrix_genesis();
    let mut mismatches = Vec::new();
    let mut cases = 0;
    for (action, row) in EXPECTED {
        for (col, kind) in OrgKind::ALL.iter().enumerate() {
            let org = org_id(*kind);
            for role in Role::ALL {
                let mut net = Net::new(&genesis);
                let call = prepare(&mut net, action, &org, role);
                let r = net.exec(&member(&org, role), call);
                let expected = if row[col].contains(letter(role)) {
                    "ok"
                } else {
                    "access_denied"
                };
                cases += 1;
                if code(&r) != expected {
                    mismatches.push(format!(
                        "{action} by {role:?} of {org}: expected {expected}, got {} ({})",
                        code(&r),
                        message(&r)
                    ));
                }
            }
        }
    }
    assert_eq!(cases, EXPECTED.len() * 7 * 4);
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn devices_cannot_sign_member_calls() {
    let genesis = matrix_genesis();
    let mut net = Net::new(&genesis);
    let dev = kp("a-wearable");
    net.ok(&member("hospital", Role::Operator), register(&dev));
    let mut checked = 0;
    for (action, _) in EXPECTED {
        // Calls that need setup are built on a scratch net; only the call matters here,
        // since access is checked before the module looks at state.
        let mut scratch = Net::new(&genesis);
        let call = prepare(&mut scratch, action, "hospital", Role::Admin);
        let r = net.exec(&dev, call);
        assert_eq!(code(&r), "access_denied", "{action}: {}", message(&r));
        assert!(
            message(&r).contains("requires an organisation member"),
            "{}",
            message(&r)
        );
        checked += 1;
    }
    assert_eq!(checked, EXPECTED.len());
    // and the device is still a valid signer afterwards (it was only refused, not revoked)
    assert!(net.resolve(&dev.public()).is_ok());
}

#[test]
fn validators_are_not_transaction_signers() {
    let mut net = Net::new(&matrix_genesis());
    let v = kp("val-1");
    let e = net
        .admit(
            &v,
            orgs(OrgsCall::RotateKey {
                new_key: kp("x").public(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.code(), "unknown_signer");
}
