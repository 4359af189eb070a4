//! Every stored key is described as JSON by its module, and calls round-trip through JSON.

use trustedge_contracts::{AnchorCall, DevicesCall, MODULES, OrgsCall};
use trustedge_execution::{DeviceClass, OrgKind, Role};
use trustedge_types::{Address, Hash};

use crate::harness::*;

#[test]
fn every_stored_value_is_described() {
    let mut net = Net::new(&matrix_genesis());
    let hosp = member("hospital", Role::Admin);
    let dev = kp("described");
    net.ok(
        &member("ha-2", Role::Admin),
        orgs(OrgsCall::ProposeAdmission {
            org_id: "lab-q".into(),
            name: "Lab Q".into(),
            kind: OrgKind::Laboratory,
            admin_key: kp("lab-q admin").public(),
        }),
    );
    net.ok(
        &hosp,
        devices(DevicesCall::Register {
            key: dev.public(),
            class: DeviceClass::AirQualitySensor,
            model: "AQ-1".into(),
            attributes: vec![],
        }),
    );
    net.ok(
        &member("edge-operator", Role::Admin),
        anchor(AnchorCall::AnchorBatch {
            record_type: "air_quality".into(),
            merkle_root: Hash([9; 32]),
            count: 2,
            from_ms: 1,
            to_ms: 2,
        }),
    );
    net.ok(
        &hosp,
        orgs(OrgsCall::RotateKey {
            new_key: kp("hosp2").public(),
        }),
    );
    // a pending validator change (and the proposal counter)
    net.ok(
        &member("ha-2", Role::Admin),
        trustedge_types::Payload::new(
            "genesis",
            &trustedge_contracts::GenesisCall::ProposeValidatorChange {
                change: trustedge_contracts::ValidatorChange::Add {
                    name: "v".into(),
                    public_key: kp("described validator").public(),
                    power: 1,
                },
            },
        ),
    );
    // a diagnosis upload with a released and an embargoed key, and a notice
    let day = crate::diagnosis::today(&net);
    let keys = [
        crate::diagnosis::dkey("described", day - 1),
        crate::diagnosis::dkey("described-now", day),
    ];
    let up = crate::diagnosis::upload_ok(&mut net, "described", &keys);
    net.ok(
        &member("edge-operator", Role::Operator),
        exposure(trustedge_contracts::ExposureCall::PublishNotices {
            notices: vec![trustedge_contracts::ExposureNotice {
                rpis: vec![[0x42; 16]],
                risk_score: 1,
                day: day - 1,
                source_upload: up,
            }],
        }),
    );
    // an aerosol alert
    net.ok(
        &member("edge-operator", Role::Operator),
        crate::aerosol::aerosol(trustedge_contracts::AerosolCall::PublishAlerts {
            alerts: vec![trustedge_contracts::AerosolAlertTx {
                venue: [0x17; 16],
                start_s: u64::from(day - 1) * 86_400,
                end_s: u64::from(day - 1) * 86_400 + 900,
                risk_ppm: 10_000,
                kind: trustedge_contracts::AlertKind::VentilationFailure,
            }],
        }),
    );
    // the case's presence during it
    net.ok(
        &member("edge-operator", Role::Operator),
        crate::aerosol::aerosol(trustedge_contracts::AerosolCall::ReportCasePresence {
            upload: up,
            visits: vec![trustedge_contracts::CaseVisit {
                venue: [0x17; 16],
                start_s: u64::from(day - 1) * 86_400 + 300,
                end_s: u64::from(day - 1) * 86_400 + 600,
            }],
        }),
    );

    let mut described = std::collections::BTreeMap::<&str, usize>::new();
    for (k, v) in &net.state.map {
        let Some(slash) = k.iter().position(|&b| b == b'/') else {
            panic!("key without namespace")
        };
        let module = std::str::from_utf8(&k[..slash]).unwrap();
        if module == "sys" {
            continue;
        }
        let m = net
            .rt
            .module(module)
            .unwrap_or_else(|| panic!("key of unknown module {module}"));
        let json = m.describe_value(&k[slash + 1..], v);
        assert!(
            json.is_some(),
            "{module} does not describe {}",
            String::from_utf8_lossy(k)
        );
        *described.entry(m.name()).or_default() += 1;
    }
    for m in MODULES {
        assert!(
            described.get(m).copied().unwrap_or(0) > 0,
            "no key of {m} in state"
        );
    }
    // a key the module does not document is not described
    assert!(
        net.rt
            .module("orgs")
            .unwrap()
            .describe_value(b"unknown/x", &[])
            .is_none()
    );
}

#[test]
fn calls_have_the_documented_json_shape() {
    let rt = trustedge_contracts::runtime(CHAIN);
    let key = kp("k").public();
    let cases = [
        (
            "orgs",
            serde_json::json!({"add_member": {"key": key.to_hex(), "role": "operator"}}),
        ),
        (
            "orgs",
            serde_json::json!({"suspend_org": {"org_id": "clinic"}}),
        ),
        (
            "orgs",
            serde_json::json!({"propose_admission": {"org_id": "x", "name": "X", "kind": "edge_operator", "admin_key": key.to_hex()}}),
        ),
        (
            "devices",
            serde_json::json!({"register": {"key": key.to_hex(), "class": "cold_chain_logger", "model": "C", "attributes": [{"key": "firmware", "value": "1.0"}]}}),
        ),
        (
            "devices",
            serde_json::json!({"revoke": {"device": Address::of_device(&key).to_string()}}),
        ),
        (
            "genesis",
            serde_json::json!({"propose_validator_change": {"change": {"add": {"name": "v", "public_key": key.to_hex(), "power": 3}}}}),
        ),
        (
            "genesis",
            serde_json::json!({"propose_validator_change": {"change": {"set_power": {"address": Address::of_member(&key).to_string(), "power": 3}}}}),
        ),
        (
            "genesis",
            serde_json::json!({"approve_validator_change": {"proposal_id": 7}}),
        ),
        (
            "aerosol",
            serde_json::json!({"publish_alerts": {"alerts": [{"venue": "ab".repeat(16), "start_s": 0, "end_s": 900, "risk_ppm": 12000, "kind": "particle_spike"}]}}),
        ),
        (
            "aerosol",
            serde_json::json!({"report_case_presence": {"upload": Hash([2; 32]).to_hex(), "visits": [{"venue": "cd".repeat(16), "start_s": 60, "end_s": 900}]}}),
        ),
        (
            "anchor",
            serde_json::json!({"anchor_batch": {"record_type": "t", "merkle_root": Hash([1; 32]).to_hex(), "count": 1, "from_ms": 0, "to_ms": 1}}),
        ),
    ];
    for (module, json) in cases {
        let m = rt.module(module).unwrap();
        let bytes = m
            .call_from_json(json.clone())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(m.call_to_json(&bytes).unwrap(), json);
        m.check_call(&bytes).unwrap();
    }
    assert!(rt.module("orgs").unwrap().call_from_json(serde_json::json!({"add_member": {"key": key.to_hex(), "role": "operator", "name": "Jane"}})).is_err());
    assert_eq!(rt.module("orgs").unwrap().call_kinds().len(), 8);
    assert_eq!(
        rt.module("devices").unwrap().call_kinds(),
        ["register", "suspend", "reinstate", "revoke"]
    );
    assert_eq!(rt.module("anchor").unwrap().call_kinds(), ["anchor_batch"]);
    assert_eq!(
        rt.module("aerosol").unwrap().call_kinds(),
        ["publish_alerts", "report_case_presence"]
    );
    assert_eq!(
        rt.module("genesis").unwrap().call_kinds(),
        ["propose_validator_change", "approve_validator_change"]
    );
}
