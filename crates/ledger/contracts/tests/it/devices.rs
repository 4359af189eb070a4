//! Device registration, status changes, authorisation and queries.

use trustedge_contracts::devices::DeviceStatus;
use trustedge_contracts::{DeviceAttribute, DevicesCall, OrgsCall, device, is_authorised};
use trustedge_execution::identity::Inactive;
use trustedge_execution::{AdmissionError, DeviceClass, OrgKind, Principal, Role};
use trustedge_types::{Address, Keypair, Payload};

use crate::harness::*;

fn attr(k: &str, v: &str) -> DeviceAttribute {
    DeviceAttribute {
        key: k.into(),
        value: v.into(),
    }
}

fn register(key: &Keypair, attributes: Vec<DeviceAttribute>) -> Payload {
    devices(DevicesCall::Register {
        key: key.public(),
        class: DeviceClass::BleBeacon,
        model: "TE-Beacon mk3".into(),
        attributes,
    })
}

fn hospital_op() -> Keypair {
    member("hospital", Role::Operator)
}

#[test]
fn registration_stores_only_pseudonymous_technical_data() {
    let mut net = Net::new(&matrix_genesis());
    let dev = kp("beacon-1");
    let addr = Address::of_device(&dev.public());
    let r = net.ok(
        &hospital_op(),
        register(
            &dev,
            vec![attr("tx_power_dbm", "-8"), attr("firmware", "2.1.0")],
        ),
    );
    let ev = &r.events[0];
    assert_eq!(
        (ev.module.as_str(), ev.kind.as_str()),
        ("devices", "device_registered")
    );
    assert_eq!(ev.attr("device"), Some(addr.to_string().as_str()));
    assert_eq!(ev.attr("org_id"), Some("hospital"));
    assert_eq!(ev.attr("class"), Some("ble_beacon"));
    assert!(
        r.events.iter().all(|e| e
            .attributes
            .iter()
            .all(|a| a.value != dev.public().to_hex())),
        "events name the device by its pseudonymous address only"
    );

    let rec = device(&net.state, &addr).unwrap().unwrap();
    assert_eq!(
        (rec.org.as_str(), rec.status),
        ("hospital", DeviceStatus::Active)
    );
    assert_eq!(rec.attributes[0].key, "firmware", "stored sorted");
    assert!(is_authorised(&net.state, &addr).unwrap());
    match net.resolve(&dev.public()) {
        Ok(Principal::Device {
            address,
            org,
            class,
            ..
        }) => {
            assert_eq!(
                (address, org.as_str(), class),
                (addr, "hospital", DeviceClass::BleBeacon)
            );
        }
        other => panic!("{other:?}"),
    }

    // stored under the device address, and nowhere under the member address of the same key
    let member_addr = Address::of_member(&dev.public());
    assert!(
        net.state
            .map
            .keys()
            .all(|k| !k.windows(20).any(|w| w == member_addr.0))
    );

    let j = net.query("devices", &format!("device/{addr}"), &[]);
    let fields: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "address",
            "attributes",
            "changed_height",
            "class",
            "key",
            "model",
            "org",
            "registered_height",
            "status"
        ],
        "no owner, wearer, location or serial"
    );
}

#[test]
fn personal_data_and_bad_descriptions_are_refused() {
    let mut net = Net::new(&matrix_genesis());
    let op = hospital_op();
    for (attrs, needle) in [
        (vec![attr("owner", "jane-doe")], "not allowed"),
        (vec![attr("patient_id", "12345")], "not allowed"),
        (
            vec![attr("firmware", "belongs to Jane Doe")],
            "no free text",
        ),
        (vec![attr("sampling_interval_s", "often")], "integer"),
        (
            (0..17).map(|i| attr("firmware", &i.to_string())).collect(),
            "at most 16",
        ),
    ] {
        let r = net.fails(&op, register(&kp("d"), attrs), "invalid_argument");
        assert!(
            message(&r).contains(needle),
            "{} should contain {needle}",
            message(&r)
        );
    }
    net.fails(
        &op,
        devices(DevicesCall::Register {
            key: kp("d").public(),
            class: DeviceClass::Thermometer,
            model: "Modèle".into(),
            attributes: vec![],
        }),
        "invalid_argument",
    );
    // a member key cannot become a device key, nor a device key be registered twice
    net.fails(
        &op,
        register(&member("clinic", Role::Auditor), vec![]),
        "already_exists",
    );
    net.ok(&op, register(&kp("d"), vec![]));
    net.fails(
        &member("clinic", Role::Admin),
        register(&kp("d"), vec![]),
        "already_exists",
    );
    // nor become a member key later
    net.fails(
        &member("clinic", Role::Admin),
        orgs(OrgsCall::AddMember {
            key: kp("d").public(),
            role: Role::Operator,
        }),
        "already_exists",
    );
}

#[test]
fn suspension_and_revocation_change_authorisation_and_only_the_owner_may_act() {
    let mut net = Net::new(&matrix_genesis());
    let dev = kp("wearable-7");
    let addr = Address::of_device(&dev.public());
    net.ok(&hospital_op(), register(&dev, vec![]));
    let suspend = devices(DevicesCall::Suspend { device: addr });
    let reinstate = devices(DevicesCall::Reinstate { device: addr });
    let revoke = devices(DevicesCall::Revoke { device: addr });

    // another organisation's admin or operator cannot touch it
    for kind in OrgKind::ALL.into_iter().filter(|k| *k != OrgKind::Hospital) {
        for role in [Role::Admin, Role::Operator] {
            for call in [&suspend, &reinstate, &revoke] {
                let r = net.fails(&member(&org_id(kind), role), call.clone(), "access_denied");
                assert!(
                    message(&r).contains("belongs to \"hospital\""),
                    "{}",
                    message(&r)
                );
            }
        }
    }
    assert!(is_authorised(&net.state, &addr).unwrap());

    net.fails(&hospital_op(), reinstate.clone(), "conflict");
    let r = net.ok(&hospital_op(), suspend.clone());
    assert_eq!(r.events[0].kind, "device_suspended");
    assert!(!is_authorised(&net.state, &addr).unwrap());
    assert_eq!(net.resolve(&dev.public()), Err(Inactive::Suspended));
    net.fails(&hospital_op(), suspend.clone(), "conflict");

    net.ok(&member("hospital", Role::Admin), reinstate.clone());
    assert!(is_authorised(&net.state, &addr).unwrap());

    // its organisation's suspension also stops it
    let ha = member("health-authority", Role::Admin);
    net.ok(
        &ha,
        orgs(OrgsCall::SuspendOrg {
            org_id: "hospital".into(),
        }),
    );
    assert!(!is_authorised(&net.state, &addr).unwrap());
    assert_eq!(
        net.admit(&dev, reinstate.clone()),
        Err(AdmissionError::SuspendedSigner(dev.public()))
    );
    net.ok(
        &ha,
        orgs(OrgsCall::ReinstateOrg {
            org_id: "hospital".into(),
        }),
    );
    assert!(is_authorised(&net.state, &addr).unwrap());

    let r = net.ok(&hospital_op(), revoke.clone());
    assert_eq!(r.events[0].kind, "device_revoked");
    assert!(!is_authorised(&net.state, &addr).unwrap());
    assert_eq!(
        net.admit(&dev, reinstate.clone()),
        Err(AdmissionError::RevokedSigner(dev.public()))
    );
    // revocation is final
    net.fails(&hospital_op(), reinstate, "conflict");
    net.fails(&hospital_op(), revoke, "conflict");
    net.fails(&hospital_op(), suspend, "conflict");
    // and the key is never reusable
    net.fails(&hospital_op(), register(&dev, vec![]), "already_exists");

    // unknown device
    let ghost = devices(DevicesCall::Suspend {
        device: Address([1; 20]),
    });
    net.fails(&hospital_op(), ghost, "not_found");
    assert!(!is_authorised(&net.state, &Address([1; 20])).unwrap());
}

#[test]
fn devices_queries() {
    let mut net = Net::new(&matrix_genesis());
    let mut hospital_addrs = Vec::new();
    for i in 0..5 {
        let k = kp(&format!("h-dev-{i}"));
        hospital_addrs.push(Address::of_device(&k.public()));
        net.ok(&hospital_op(), register(&k, vec![]));
    }
    net.ok(
        &member("clinic", Role::Operator),
        register(&kp("c-dev"), vec![]),
    );
    hospital_addrs.sort();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut params = vec![("org", "hospital"), ("limit", "2")];
        if let Some(a) = &after {
            params.push(("after", a));
        }
        let page = net.query("devices", "list", &params);
        for d in page["devices"].as_array().unwrap() {
            assert_eq!(d["org"], "hospital");
            seen.push(d["address"].as_str().unwrap().parse::<Address>().unwrap());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, hospital_addrs);
    let all = net.query("devices", "list", &[]);
    assert_eq!(all["devices"].as_array().unwrap().len(), 6);

    let a = hospital_addrs[0];
    assert_eq!(
        net.query("devices", &format!("authorised/{a}"), &[])["authorised"],
        true
    );
    net.ok(&hospital_op(), devices(DevicesCall::Suspend { device: a }));
    assert_eq!(
        net.query("devices", &format!("authorised/{a}"), &[])["authorised"],
        false
    );
    assert_eq!(
        net.query("devices", &format!("device/{a}"), &[])["status"],
        "suspended"
    );
    assert!(
        net.try_query("devices", "device/not-an-address", &[])
            .is_err()
    );
    assert!(
        net.try_query("devices", &format!("device/{}", Address([3; 20])), &[])
            .is_err()
    );
    assert!(
        net.try_query("devices", "list", &[("org", "Bad Org")])
            .is_err()
    );
}
