//! The `diagnosis` module: certificate-authorised uploads of diagnosis keys, GAEN's server
//! rules, the embargo of still-valid keys, revocation, queries.

use trustedge_contracts::{DiagnosisCall, VerificationCertificate, keys_digest};
use trustedge_execution::{OrgKind, Role};
use trustedge_tracing::{DiagnosisKey, ReportType};
use trustedge_types::{Hash, Keypair, Payload, TxResult};

use crate::harness::*;

/// Block time of the next block, Unix seconds.
pub fn now_s(net: &Net) -> u64 {
    net.next_time_ms() / 1000
}

/// UTC day of the next block.
pub fn today(net: &Net) -> u32 {
    u32::try_from(now_s(net) / 86_400).unwrap()
}

/// A whole-day confirmed-test key of `day`, with key data derived from `seed`.
pub fn dkey(seed: &str, day: u32) -> DiagnosisKey {
    let mut key_data = [0u8; 16];
    key_data.copy_from_slice(&Hash::sha256(seed.as_bytes()).0[..16]);
    DiagnosisKey {
        key_data,
        rolling_start_interval_number: day * 144,
        rolling_period: 144,
        report_type: ReportType::ConfirmedTest,
        days_since_onset: None,
    }
}

/// The same key as a revocation.
pub fn revoked(k: DiagnosisKey) -> DiagnosisKey {
    DiagnosisKey {
        report_type: ReportType::Revoked,
        ..k
    }
}

/// The fixture laboratory's clinician, an issuer.
pub fn lab() -> Keypair {
    member("laboratory", Role::Clinician)
}

/// The fixture edge node that relays uploads.
pub fn relay() -> Keypair {
    member("edge-operator", Role::Operator)
}

pub fn cert_id(label: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&Hash::sha256(label.as_bytes()).0[16..]);
    id
}

/// A certificate from `issuer` for `keys`, issued at the next block's time, valid 1 h.
pub fn certify(
    net: &Net,
    issuer: &Keypair,
    label: &str,
    keys: &[DiagnosisKey],
) -> VerificationCertificate {
    VerificationCertificate::issue(
        issuer,
        CHAIN,
        cert_id(label),
        keys,
        keys[0].report_type,
        now_s(net),
        3600,
    )
}

pub fn publish(keys: &[DiagnosisKey], certificate: VerificationCertificate) -> Payload {
    diagnosis(DiagnosisCall::PublishKeys {
        keys: keys.to_vec(),
        certificate,
    })
}

/// Publishes `keys` with a fresh lab certificate, relayed by the edge node; the upload id.
pub fn upload_ok(net: &mut Net, label: &str, keys: &[DiagnosisKey]) -> Hash {
    let cert = certify(net, &lab(), label, keys);
    let r = net.ok(&relay(), publish(keys, cert));
    let ev = r
        .events
        .iter()
        .find(|e| e.kind == "keys_published" || e.kind == "keys_revoked")
        .unwrap();
    let id = Hash::from_hex(ev.attr("upload_id").unwrap()).unwrap();
    assert_eq!(id, keys_digest(keys));
    id
}

/// Asserts a refusal with the transaction code `code` and the module's sub-code `sub`.
fn refused(net: &mut Net, payload: Payload, code: &str, sub: &str) -> TxResult {
    let before = net.query("diagnosis", "stats", &[]);
    let r = net.fails(&relay(), payload, code);
    assert!(
        message(&r).contains(&format!("{sub}: ")),
        "expected {sub}, got {}",
        message(&r)
    );
    assert_eq!(
        net.query("diagnosis", "stats", &[]),
        before,
        "a refusal changes nothing"
    );
    r
}

fn released_keys(net: &Net, day: u32) -> Vec<serde_json::Value> {
    net.query("diagnosis", "released", &[("day", &day.to_string())])["keys"]
        .as_array()
        .unwrap()
        .clone()
}

/// Sets the clock so that the next block's time is `at_s`.
fn jump_to(net: &mut Net, at_s: u64) {
    net.clock_offset_ms = 0;
    net.clock_offset_ms = (at_s * 1000).checked_sub(net.next_time_ms()).unwrap();
}

#[test]
fn lab_certified_upload_is_relayed_embargoed_and_released() {
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net);
    let old = dkey("case-1/old", day - 3);
    let yesterday = dkey("case-1/yesterday", day - 1);
    let current = dkey("case-1/today", day);
    let keys = [old, yesterday, current];
    let cert = certify(&net, &lab(), "c1", &keys);
    let r = net.ok(&relay(), publish(&keys, cert));
    let ev = &r.events[0];
    assert_eq!(
        (ev.module.as_str(), ev.kind.as_str()),
        ("diagnosis", "keys_published")
    );
    let attrs: Vec<(&str, &str)> = ev
        .attributes
        .iter()
        .map(|a| (a.key.as_str(), a.value.as_str()))
        .collect();
    let upload_id = keys_digest(&keys).to_hex();
    let days = format!("{},{},{day}", day - 3, day - 1);
    assert_eq!(
        attrs,
        [
            ("upload_id", upload_id.as_str()),
            ("issuer_org", "laboratory"),
            ("report_type", "CONFIRMED_TEST"),
            ("count", "3"),
            ("released", "2"),
            ("embargoed", "1"),
            ("days", days.as_str()),
        ],
        "no patient identifier, no relay address: only the upload's facts"
    );

    // the two finished keys are listed at once, under their own days
    let listed = released_keys(&net, day - 1);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key_data"], hex::encode(yesterday.key_data));
    assert_eq!(listed[0]["rolling_period"], 144);
    assert_eq!(listed[0]["report_type"], "CONFIRMED_TEST");
    assert_eq!(listed[0]["upload_id"], upload_id);
    let as_key: DiagnosisKey = serde_json::from_value(listed[0].clone()).unwrap();
    assert_eq!(as_key, yesterday);
    assert_eq!(released_keys(&net, day - 3).len(), 1);
    // the current key is embargoed: not listed, not answered, not in the upload's keys
    assert!(released_keys(&net, day).is_empty());
    let hex_current = hex::encode(current.key_data);
    let e = net
        .try_query("diagnosis", "key", &[("key_data", &hex_current)])
        .unwrap_err();
    assert!(e.to_string().contains("embargo"), "{e}");
    let up = net.query("diagnosis", &format!("upload/{upload_id}"), &[]);
    assert_eq!(up["count"], 3);
    assert_eq!(up["keys"].as_array().unwrap().len(), 2);
    assert_eq!(up["issuer_org"], "laboratory");
    let stats = net.query("diagnosis", "stats", &[]);
    assert_eq!(
        (
            stats["keys"].as_u64(),
            stats["released"].as_u64(),
            stats["embargoed"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );

    // one second before the key's validity ends it is still under embargo
    let end_s = u64::from(current.end_interval_number()) * 600;
    jump_to(&mut net, end_s - 1);
    let out = net.block(&[]).unwrap();
    assert!(out.block_events.is_empty(), "{:?}", out.block_events);
    assert!(released_keys(&net, day).is_empty());
    // the first block at or after the end releases it
    jump_to(&mut net, end_s);
    let out = net.block(&[]).unwrap();
    assert_eq!(out.block_events.len(), 1);
    let rel = &out.block_events[0];
    assert_eq!(rel.kind, "keys_released");
    assert_eq!(rel.attr("upload_id"), Some(upload_id.as_str()));
    assert_eq!(rel.attr("day"), Some(day.to_string().as_str()));
    assert_eq!(rel.attr("count"), Some("1"));
    let listed = released_keys(&net, day);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key_data"], hex_current);
    let rec = net.query("diagnosis", "key", &[("key_data", &hex_current)]);
    assert_eq!(rec["released"], true);
    assert_eq!(rec["issuer_org"], "laboratory");
    let stats = net.query("diagnosis", "stats", &[]);
    assert_eq!(
        (stats["released"].as_u64(), stats["embargoed"].as_u64()),
        (Some(3), Some(0))
    );
    // released once only
    assert!(net.block(&[]).unwrap().block_events.is_empty());
}

#[test]
fn released_keys_page_by_key_data() {
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net) - 1;
    let keys: Vec<DiagnosisKey> = (0..5).map(|i| dkey(&format!("p{i}"), day)).collect();
    // different keys of one day: one upload each (a device has one key a day)
    for (i, k) in keys.iter().enumerate() {
        upload_ok(&mut net, &format!("page-{i}"), std::slice::from_ref(k));
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = day.to_string();
        let mut params = vec![("day", d.as_str()), ("limit", "2")];
        if let Some(a) = &after {
            params.push(("after", a.as_str()));
        }
        let page = net.query("diagnosis", "released", &params);
        for k in page["keys"].as_array().unwrap() {
            seen.push(k["key_data"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let mut expected: Vec<String> = keys.iter().map(|k| hex::encode(k.key_data)).collect();
    expected.sort();
    assert_eq!(seen, expected, "every key exactly once, in key order");
    assert!(
        net.try_query("diagnosis", "released", &[]).is_err(),
        "day is required"
    );
    assert!(
        net.try_query("diagnosis", "released", &[("day", "x")])
            .is_err()
    );
    assert!(
        net.try_query("diagnosis", "key", &[("key_data", "abcd")])
            .is_err()
    );
    assert!(net.try_query("diagnosis", "nothing", &[]).is_err());
}

#[test]
fn onset_day_fills_days_since_onset() {
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net);
    let k = dkey("onset", day - 2);
    let cert = VerificationCertificate::issue_with_onset(
        &lab(),
        CHAIN,
        cert_id("onset"),
        &[k],
        ReportType::ConfirmedTest,
        Some(day - 4),
        now_s(&net)..now_s(&net) + 600,
    );
    net.ok(&relay(), publish(&[k], cert));
    let listed = released_keys(&net, day - 2);
    assert_eq!(listed[0]["days_since_onset"], 2);
}

#[test]
fn health_authority_operators_issue_too() {
    let mut net = Net::new(&matrix_genesis());
    let k = [dkey("ha-issued", today(&net) - 1)];
    let cert = certify(&net, &member("health-authority", Role::Operator), "ha", &k);
    // relayed by a hospital clinician this time: any active member may relay
    net.ok(&member("hospital", Role::Clinician), publish(&k, cert));
}

#[test]
fn every_rejection_has_its_reason() {
    let genesis = matrix_genesis();
    let fresh = || Net::new(&genesis);

    // certificate: expired, not yet valid, validity window
    let mut net = fresh();
    let k = [dkey("r", today(&net) - 1)];
    let now = now_s(&net);
    let expired = VerificationCertificate::issue(
        &lab(),
        CHAIN,
        cert_id("x"),
        &k,
        ReportType::ConfirmedTest,
        now - 700,
        600,
    );
    refused(
        &mut net,
        publish(&k, expired),
        "invalid_argument",
        "certificate_expired",
    );
    let future = VerificationCertificate::issue(
        &lab(),
        CHAIN,
        cert_id("x"),
        &k,
        ReportType::ConfirmedTest,
        now_s(&net) + 301,
        600,
    );
    refused(
        &mut net,
        publish(&k, future),
        "invalid_argument",
        "certificate_not_yet_valid",
    );
    // a little clock skew is tolerated
    let skewed = VerificationCertificate::issue(
        &lab(),
        CHAIN,
        cert_id("skew"),
        &k,
        ReportType::ConfirmedTest,
        now_s(&net) + 300,
        600,
    );
    net.ok(&relay(), publish(&k, skewed));
    let mut net = fresh();
    let now = now_s(&net);
    let week = VerificationCertificate::issue(
        &lab(),
        CHAIN,
        cert_id("x"),
        &k,
        ReportType::ConfirmedTest,
        now,
        8 * 86_400,
    );
    refused(
        &mut net,
        publish(&k, week),
        "invalid_argument",
        "certificate_validity",
    );

    // certificate: single use
    let mut net = fresh();
    let day = today(&net);
    let cert = certify(&net, &lab(), "once", &k);
    net.ok(&relay(), publish(&k, cert));
    let other = [dkey("other", day - 1)];
    let reused = certify(&net, &lab(), "once", &other);
    refused(
        &mut net,
        publish(&other, reused),
        "already_exists",
        "certificate_reused",
    );

    // certificate: bound to the upload (a key swapped, added or dropped)
    let mut net = fresh();
    let pair = [dkey("a", day - 1), dkey("b", day - 2)];
    let cert = certify(&net, &lab(), "bound", &pair);
    refused(
        &mut net,
        publish(&pair[..1], cert.clone()),
        "invalid_argument",
        "certificate_binding",
    );
    let swapped = [pair[0], dkey("c", day - 2)];
    refused(
        &mut net,
        publish(&swapped, cert.clone()),
        "invalid_argument",
        "certificate_binding",
    );
    let mut altered = pair;
    altered[1].rolling_period = 100;
    refused(
        &mut net,
        publish(&altered, cert.clone()),
        "invalid_argument",
        "certificate_binding",
    );
    // reordering keeps the binding
    net.ok(&relay(), publish(&[pair[1], pair[0]], cert));

    // issuer: forged, outsider, wrong role, unknown, suspended, revoked
    let mut net = fresh();
    let mut forged = certify(&net, &kp("mallory"), "forged", &k);
    forged.issuer = lab().public();
    refused(
        &mut net,
        publish(&k, forged),
        "access_denied",
        "certificate_signature",
    );
    let hospital = certify(&net, &member("hospital", Role::Clinician), "h", &k);
    refused(
        &mut net,
        publish(&k, hospital),
        "access_denied",
        "issuer_org_kind",
    );
    let edge = certify(&net, &member("edge-operator", Role::Operator), "e", &k);
    refused(
        &mut net,
        publish(&k, edge),
        "access_denied",
        "issuer_org_kind",
    );
    for role in [Role::Admin, Role::Auditor] {
        let c = certify(&net, &member("laboratory", role), "role", &k);
        refused(&mut net, publish(&k, c), "access_denied", "issuer_role");
    }
    let stranger = certify(&net, &kp("stranger"), "s", &k);
    refused(
        &mut net,
        publish(&k, stranger),
        "access_denied",
        "issuer_unknown",
    );
    let mut net = fresh();
    net.ok(
        &member("health-authority", Role::Admin),
        orgs(trustedge_contracts::OrgsCall::SuspendOrg {
            org_id: org_id(OrgKind::Laboratory),
        }),
    );
    let c = certify(&net, &lab(), "susp", &k);
    refused(
        &mut net,
        publish(&k, c),
        "access_denied",
        "issuer_org_suspended",
    );
    let mut net = fresh();
    net.ok(
        &member("laboratory", Role::Admin),
        orgs(trustedge_contracts::OrgsCall::RevokeKey {
            key: lab().public(),
        }),
    );
    let c = certify(&net, &lab(), "rev", &k);
    refused(&mut net, publish(&k, c), "access_denied", "issuer_inactive");

    // upload size
    let mut net = fresh();
    let c = certify(&net, &lab(), "none", &k);
    refused(&mut net, publish(&[], c), "invalid_argument", "no_keys");
    let many: Vec<DiagnosisKey> = (0..31)
        .map(|i| dkey(&format!("m{i}"), day - 1 - i % 14))
        .collect();
    let c = certify(&net, &lab(), "many", &many);
    refused(
        &mut net,
        publish(&many, c),
        "invalid_argument",
        "too_many_keys",
    );
    let thirty = &many[..30];
    let c = certify(&net, &lab(), "thirty", thirty);
    net.ok(&relay(), publish(thirty, c));

    // GAEN key rules
    let mut net = fresh();
    let check = |net: &mut Net, label: &str, key: DiagnosisKey, sub: &str| {
        let c = certify(net, &lab(), label, &[key]);
        refused(net, publish(&[key], c), "invalid_argument", sub);
    };
    for period in [0, 145] {
        let mut bad = dkey("period", day - 1);
        bad.rolling_period = period;
        check(&mut net, "period", bad, "rolling_period");
    }
    check(&mut net, "old", dkey("old", day - 15), "key_too_old");
    check(
        &mut net,
        "tomorrow",
        dkey("tomorrow", day + 1),
        "key_in_future",
    );
    let mut later_today = dkey("later", day);
    later_today.rolling_start_interval_number = u32::try_from(now_s(&net) / 600).unwrap() + 1;
    later_today.rolling_period = 10;
    check(&mut net, "later", later_today, "key_in_future");
    let mut onset = dkey("onset", day - 1);
    onset.days_since_onset = Some(15);
    check(&mut net, "onset", onset, "days_since_onset");
    // boundaries are accepted: 14 days old, periods 1 and 144, onset -14
    for (i, (d, period, dso)) in [(day - 14, 144, None), (day - 2, 1, Some(-14))]
        .into_iter()
        .enumerate()
    {
        let mut good = dkey(&format!("edge-{i}"), d);
        good.rolling_period = period;
        good.days_since_onset = dso;
        upload_ok(&mut net, &format!("edge-{i}"), &[good]);
    }

    // report types
    let mut net = fresh();
    let mut self_report = dkey("sr", day - 1);
    self_report.report_type = ReportType::SelfReport;
    let c = VerificationCertificate::issue(
        &lab(),
        CHAIN,
        cert_id("mix"),
        &[self_report],
        ReportType::ConfirmedTest,
        now_s(&net),
        600,
    );
    refused(
        &mut net,
        publish(&[self_report], c),
        "invalid_argument",
        "report_type_mismatch",
    );
    let mut unknown = dkey("unk", day - 1);
    unknown.report_type = ReportType::Unknown;
    let c = certify(&net, &lab(), "unk", &[unknown]);
    refused(
        &mut net,
        publish(&[unknown], c),
        "invalid_argument",
        "report_type_not_allowed",
    );

    // duplicates: within the upload, and with the ledger
    let mut net = fresh();
    let a = dkey("dup", day - 1);
    let mut a_again = a;
    a_again.rolling_start_interval_number -= 144;
    let c = certify(&net, &lab(), "dup-in", &[a, a_again]);
    refused(
        &mut net,
        publish(&[a, a_again], c),
        "invalid_argument",
        "duplicate_in_upload",
    );
    upload_ok(&mut net, "first", &[a]);
    let b = dkey("fresh", day - 2);
    let c = certify(&net, &lab(), "second", &[b, a]);
    let r = refused(
        &mut net,
        publish(&[b, a], c),
        "already_exists",
        "duplicate_key",
    );
    assert!(
        message(&r).contains(&hex::encode(a.key_data)),
        "{}",
        message(&r)
    );
    // and the refused upload left no trace of its fresh key
    assert!(released_keys(&net, day - 2).is_empty());
}

#[test]
fn revocation_marks_published_keys_revoked() {
    let mut net = Net::new(&matrix_genesis());
    let day = today(&net);
    let a = dkey("rv-a", day - 1);
    let b = dkey("rv-b", day - 2);
    let current = dkey("rv-today", day);
    upload_ok(&mut net, "pub", &[a, b, current]);

    let revocation = [revoked(a), revoked(current)];
    let cert = certify(&net, &lab(), "revoke", &revocation);
    let r = net.ok(&relay(), publish(&revocation, cert));
    let ev = &r.events[0];
    assert_eq!(ev.kind, "keys_revoked");
    assert_eq!(ev.attr("count"), Some("2"));
    assert_eq!(
        ev.attr("upload_id"),
        Some(keys_digest(&revocation).to_hex().as_str())
    );
    let listed = released_keys(&net, day - 1);
    assert_eq!(
        listed[0]["report_type"], "REVOKED",
        "exports carry it in revised_keys"
    );
    assert_eq!(
        released_keys(&net, day - 2)[0]["report_type"],
        "CONFIRMED_TEST"
    );
    let stats = net.query("diagnosis", "stats", &[]);
    assert_eq!(
        (stats["revoked"].as_u64(), stats["revocations"].as_u64()),
        (Some(2), Some(1))
    );
    // the embargoed key was revoked too and is released as revoked
    jump_to(&mut net, u64::from(current.end_interval_number()) * 600);
    net.block(&[]).unwrap();
    assert_eq!(released_keys(&net, day)[0]["report_type"], "REVOKED");

    // revoking again, an unknown key, or a key with another validity is refused
    let again = [revoked(a)];
    let c = certify(&net, &lab(), "again", &again);
    let r = net.fails(&relay(), publish(&again, c), "conflict");
    assert!(message(&r).contains("already_revoked: "), "{}", message(&r));
    let unknown = [revoked(dkey("never", day - 1))];
    let c = certify(&net, &lab(), "unknown", &unknown);
    let r = net.fails(&relay(), publish(&unknown, c), "not_found");
    assert!(
        message(&r).contains("revoke_unknown_key: "),
        "{}",
        message(&r)
    );
    let mut shifted = revoked(b);
    shifted.rolling_period = 72;
    let c = certify(&net, &lab(), "shifted", &[shifted]);
    let r = net.fails(&relay(), publish(&[shifted], c), "invalid_argument");
    assert!(message(&r).contains("revoke_mismatch: "), "{}", message(&r));
    // a revoked key can never be published again
    let c = certify(&net, &lab(), "republish", &[a]);
    let r = net.fails(&relay(), publish(&[a], c), "already_exists");
    assert!(message(&r).contains("duplicate_key: "), "{}", message(&r));
}

#[test]
fn upload_json_form_round_trips() {
    let net = Net::new(&matrix_genesis());
    let k = dkey("json", today(&net) - 1);
    let cert = certify(&net, &lab(), "json", &[k]);
    let json = serde_json::json!({"publish_keys": {
        "keys": [{
            "key_data": hex::encode(k.key_data),
            "rolling_start_interval_number": k.rolling_start_interval_number,
            "rolling_period": 144,
            "report_type": "CONFIRMED_TEST",
            "days_since_onset": null,
        }],
        "certificate": {
            "cert_id": hex::encode(cert.cert_id),
            "keys_digest": cert.keys_digest.to_hex(),
            "report_type": "CONFIRMED_TEST",
            "onset_day": null,
            "issued_at_s": cert.issued_at_s,
            "expires_at_s": cert.expires_at_s,
            "issuer": cert.issuer.to_hex(),
            "signature": cert.signature.to_hex(),
        },
    }});
    let m = net.rt.module("diagnosis").unwrap();
    let bytes = m.call_from_json(json.clone()).unwrap();
    assert_eq!(m.call_to_json(&bytes).unwrap(), json);
    assert_eq!(bytes, publish(&[k], cert).call);
    assert_eq!(m.call_kinds(), ["publish_keys"]);
}
