//! The `exposure` module: notices published by edge nodes, their checks, queries and the
//! privacy invariant (a notice never carries the confirmed case's keys or RPIs).

use std::collections::BTreeSet;

use trustedge_contracts::{ExposureCall, ExposureNotice};
use trustedge_execution::Role;
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, TemporaryExposureKey};
use trustedge_types::{Hash, Payload};

use crate::diagnosis::{dkey, lab, relay, revoked, today, upload_ok};
use crate::harness::*;

/// The edge node's operator key, which publishes notices.
fn edge() -> trustedge_types::Keypair {
    member("edge-operator", Role::Operator)
}

/// `n` RPIs an exposed (unconfirmed) device broadcast on `day`, from its own TEK.
fn exposed_rpis(device: &str, day: u32, n: u32) -> Vec<[u8; 16]> {
    let mut tek = [0u8; 16];
    tek.copy_from_slice(&Hash::sha256(device.as_bytes()).0[..16]);
    let rpik = TemporaryExposureKey(tek).rpik().unwrap();
    (0..n)
        .map(|i| rpik.rpi(EnIntervalNumber(day * 144 + i * 7)).0)
        .collect()
}

/// Every RPI a diagnosis key produced.
fn case_rpis(k: &DiagnosisKey) -> Vec<[u8; 16]> {
    let rpik = k.tek().rpik().unwrap();
    (0..k.rolling_period)
        .map(|i| {
            rpik.rpi(EnIntervalNumber(k.rolling_start_interval_number + i))
                .0
        })
        .collect()
}

fn notice(rpis: Vec<[u8; 16]>, day: u32, source_upload: Hash) -> ExposureNotice {
    ExposureNotice {
        rpis,
        risk_score: 1200,
        day,
        source_upload,
    }
}

fn notices(n: Vec<ExposureNotice>) -> Payload {
    exposure(ExposureCall::PublishNotices { notices: n })
}

fn refused(net: &mut Net, n: Vec<ExposureNotice>, code: &str, sub: &str) {
    let before = net.query("exposure", "stats", &[]);
    let r = net.fails(&edge(), notices(n), code);
    assert!(
        message(&r).contains(&format!("{sub}: ")),
        "expected {sub}, got {}",
        message(&r)
    );
    assert_eq!(net.query("exposure", "stats", &[]), before);
}

/// A net with one published upload of the case's keys of the two previous days.
fn with_case() -> (Net, Hash, [DiagnosisKey; 2], u32) {
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net);
    let keys = [dkey("case/d-1", day - 1), dkey("case/d-2", day - 2)];
    let up = upload_ok(&mut net, "case", &keys);
    (net, up, keys, day)
}

#[test]
fn edge_publishes_notices_devices_find_them() {
    let (mut net, up, _, day) = with_case();
    let alice = exposed_rpis("alice", day - 1, 1);
    let bob = exposed_rpis("bob", day - 2, 1);
    let r = net.ok(
        &edge(),
        notices(vec![
            notice(alice.clone(), day - 1, up),
            notice(bob.clone(), day - 2, up),
        ]),
    );
    assert_eq!(r.events.len(), 2);
    assert_eq!(r.events[0].kind, "notice_published");
    assert_eq!(r.events[0].module, "exposure");
    assert_eq!(
        r.events[0].attr("day"),
        Some((day - 1).to_string().as_str())
    );
    let alice_id = r.events[0].attr("notice_id").unwrap().to_string();
    let keys: Vec<&str> = r.events[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(keys, ["day", "notice_id"]);

    // a device fetches its day's notices and finds its own RPI
    let page = net.query("exposure", "notices", &[("day", &(day - 1).to_string())]);
    let listed = page["notices"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], alice_id);
    assert_eq!(listed[0]["rpis"][0], hex::encode(alice[0]));
    assert_eq!(listed[0]["risk_score"], 1200);
    assert_eq!(listed[0]["source_upload"], up.to_hex());
    assert!(page["next"].is_null());
    // or asks by one of its RPIs
    let mine = net.query("exposure", "by_rpi", &[("rpi", &hex::encode(bob[0]))]);
    assert_eq!(mine["notices"].as_array().unwrap().len(), 1);
    assert_eq!(mine["notices"][0]["day"], day - 2);
    let nobody = net.query("exposure", "by_rpi", &[("rpi", &"00".repeat(16))]);
    assert!(nobody["notices"].as_array().unwrap().is_empty());
    let one = net.query("exposure", &format!("notice/{alice_id}"), &[]);
    assert_eq!(one["day"], day - 1);
    assert_eq!(net.query("exposure", "stats", &[])["notices"], 2);
    assert!(net.try_query("exposure", "notices", &[]).is_err());
    assert!(
        net.try_query("exposure", "by_rpi", &[("rpi", "zz")])
            .is_err()
    );
}

#[test]
fn notices_of_a_day_page() {
    let (mut net, up, _, day) = with_case();
    let batch: Vec<ExposureNotice> = (0..5)
        .map(|i| notice(exposed_rpis(&format!("d{i}"), day - 1, 1), day - 1, up))
        .collect();
    net.ok(&edge(), notices(batch));
    let mut ids = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let d = (day - 1).to_string();
        let mut p = vec![("day", d.as_str()), ("limit", "2")];
        if let Some(a) = &after {
            p.push(("after", a.as_str()));
        }
        let page = net.query("exposure", "notices", &p);
        for n in page["notices"].as_array().unwrap() {
            assert!(ids.insert(n["id"].as_str().unwrap().to_string()));
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
}

#[test]
fn every_refusal_has_its_reason() {
    let (mut net, up, keys, day) = with_case();
    let rpis = exposed_rpis("carol", day - 1, 3);

    refused(&mut net, vec![], "invalid_argument", "no_notices");
    let many: Vec<ExposureNotice> = (0..65)
        .map(|i| notice(exposed_rpis(&format!("m{i}"), day - 1, 1), day - 1, up))
        .collect();
    refused(&mut net, many, "invalid_argument", "too_many_notices");
    refused(
        &mut net,
        vec![notice(vec![], day - 1, up)],
        "invalid_argument",
        "rpi_count",
    );
    // two RPIs in one notice would link two pseudonyms of the exposed device
    let two_rpis: Vec<[u8; 16]> = (0..2u32)
        .map(|i| {
            TemporaryExposureKey([9; 16])
                .rpik()
                .unwrap()
                .rpi(EnIntervalNumber(i))
                .0
        })
        .collect();
    refused(
        &mut net,
        vec![notice(two_rpis, day - 1, up)],
        "invalid_argument",
        "rpi_count",
    );
    // day window: not in the future, not older than 14 days
    refused(
        &mut net,
        vec![notice(vec![rpis[0]], day + 1, up)],
        "invalid_argument",
        "notice_day_out_of_window",
    );
    refused(
        &mut net,
        vec![notice(vec![rpis[0]], day - 15, up)],
        "invalid_argument",
        "notice_day_out_of_window",
    );
    // within a day of the upload's keys (days day-2 and day-1)
    refused(
        &mut net,
        vec![notice(vec![rpis[0]], day - 4, up)],
        "invalid_argument",
        "notice_day_not_in_upload",
    );
    // the source upload must exist and not be a revocation
    refused(
        &mut net,
        vec![notice(vec![rpis[0]], day - 1, Hash([7; 32]))],
        "not_found",
        "unknown_upload",
    );
    // privacy: the case's key, or one of the case's RPIs, is refused
    refused(
        &mut net,
        vec![notice(vec![keys[0].key_data], day - 1, up)],
        "invalid_argument",
        "notice_carries_case_key",
    );
    let case = case_rpis(&keys[1]);
    refused(
        &mut net,
        vec![notice(vec![case[77]], day - 2, up)],
        "invalid_argument",
        "notice_carries_case_rpi",
    );
    // a bad notice anywhere in the call refuses the whole call
    refused(
        &mut net,
        vec![
            notice(vec![rpis[2]], day - 1, up),
            notice(vec![case[0]], day - 2, up),
        ],
        "invalid_argument",
        "notice_carries_case_rpi",
    );

    // duplicates: the same notice, or an RPI already notified for the upload
    net.ok(&edge(), notices(vec![notice(vec![rpis[0]], day - 1, up)]));
    let mut rescored = notice(vec![rpis[0]], day - 1, up);
    rescored.risk_score = 1;
    refused(
        &mut net,
        vec![rescored],
        "already_exists",
        "duplicate_notice",
    );
    refused(
        &mut net,
        vec![notice(vec![rpis[0]], day - 2, up)],
        "already_exists",
        "rpi_already_notified",
    );
    let fresh = exposed_rpis("dave", day - 1, 1);
    refused(
        &mut net,
        vec![
            notice(fresh.clone(), day - 1, up),
            notice(fresh, day - 1, up),
        ],
        "already_exists",
        "duplicate_notice",
    );

    // a revocation upload triggers no notice
    let rev = [revoked(keys[0])];
    let rev_id = upload_ok(&mut net, "revoke", &rev);
    refused(
        &mut net,
        vec![notice(exposed_rpis("erin", day - 1, 1), day - 1, rev_id)],
        "invalid_argument",
        "revocation_upload",
    );
}

#[test]
fn notices_carry_only_the_exposed_partys_own_rpis() {
    // A mixed history: several cases, embargoed and released keys, many notices.
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net);
    let mut case_keys = Vec::new();
    let mut uploads = Vec::new();
    for c in 0..3 {
        let keys: Vec<DiagnosisKey> = (0..3)
            .map(|d| dkey(&format!("case{c}/{d}"), day - d))
            .collect();
        uploads.push(upload_ok(&mut net, &format!("case{c}"), &keys));
        case_keys.extend(keys);
    }
    for (u, up) in uploads.iter().enumerate() {
        let batch = (0..4)
            .map(|i| {
                notice(
                    exposed_rpis(&format!("exposed{u}/{i}"), day - 1, 1),
                    day - 1,
                    *up,
                )
            })
            .collect();
        net.ok(&edge(), notices(batch));
    }
    // Every RPI any notice on the ledger carries is disjoint from every diagnosis key and
    // from every RPI a diagnosis key produced.
    let mut forbidden: BTreeSet<[u8; 16]> = BTreeSet::new();
    for k in &case_keys {
        forbidden.insert(k.key_data);
        forbidden.extend(case_rpis(k));
    }
    let mut carried = 0;
    for (k, v) in &net.state.map {
        if !k.starts_with(b"exposure/notice/") {
            continue;
        }
        let rec: trustedge_contracts::NoticeRecord = borsh::from_slice(v).unwrap();
        assert_eq!(rec.rpis.len(), 1, "a notice carries exactly one RPI");
        for rpi in &rec.rpis {
            assert!(
                !forbidden.contains(rpi),
                "notice {} carries a case value",
                rec.id
            );
            carried += 1;
        }
        // and a notice holds only these fields: no key, no address, no location
        let json = serde_json::to_value(&rec).unwrap();
        let fields: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from(["id", "rpis", "risk_score", "day", "source_upload", "height"])
        );
    }
    assert_eq!(carried, 3 * 4, "one RPI per notice, 4 notices per upload");
    // the same contract refuses each case value when an edge tries to publish it
    for k in case_keys.iter().step_by(4) {
        let rpi = case_rpis(k)[5];
        let up = uploads[case_keys.iter().position(|c| c == k).unwrap() / 3];
        let r = net.exec(
            &edge(),
            notices(vec![notice(
                vec![rpi],
                k.rolling_start_interval_number / 144,
                up,
            )]),
        );
        assert_eq!(code(&r), "invalid_argument", "{}", message(&r));
    }
}

#[test]
fn only_edge_operators_publish() {
    let (mut net, up, _, day) = with_case();
    let n = vec![notice(exposed_rpis("frank", day - 1, 1), day - 1, up)];
    for signer in [
        member("edge-operator", Role::Admin),
        member("hospital", Role::Operator),
        lab(),
        relay(),
    ] {
        let r = net.exec(&signer, notices(n.clone()));
        let expected = if signer.public() == edge().public() {
            "ok"
        } else {
            "access_denied"
        };
        assert_eq!(code(&r), expected, "{}", message(&r));
    }
}

#[test]
fn notice_json_form() {
    let net = Net::new(&matrix_genesis());
    let json = serde_json::json!({"publish_notices": {"notices": [{
        "rpis": ["ab".repeat(16)],
        "risk_score": 3,
        "day": 19_675,
        "source_upload": Hash([4; 32]).to_hex(),
    }]}});
    let m = net.rt.module("exposure").unwrap();
    let bytes = m.call_from_json(json.clone()).unwrap();
    assert_eq!(m.call_to_json(&bytes).unwrap(), json);
    assert_eq!(m.call_kinds(), ["publish_notices"]);
}
