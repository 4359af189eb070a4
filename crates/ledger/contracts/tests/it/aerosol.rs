//! The `aerosol` module: alerts published by edge nodes, every refusal with its code, the
//! queries, and the privacy invariant (an alert carries only a per-day venue pseudonym, a
//! window, a risk and a kind).

use trustedge_contracts::aerosol::{
    DAY_S, MAX_ALERT_AGE_DAYS, MAX_ALERTS_PER_CALL, MAX_FUTURE_SKEW_S, MAX_VISITS_PER_CALL,
    alert_id, presence_id,
};
use trustedge_contracts::{AerosolAlertTx, AerosolCall, AlertKind, CaseVisit};
use trustedge_execution::Role;
use trustedge_types::{Hash, Keypair, Payload};

use crate::diagnosis::{dkey, revoked, upload_ok};

use crate::harness::*;

pub fn aerosol(call: AerosolCall) -> Payload {
    Payload::new("aerosol", &call)
}

/// The edge node's operator key, which publishes alerts.
fn edge() -> Keypair {
    member("edge-operator", Role::Operator)
}

/// Unix seconds of the next block.
fn now_s(net: &Net) -> u64 {
    net.next_time_ms() / 1000
}

/// An alert of `venue` for the quarter hour starting at `hour` o'clock of UTC `day`.
fn alert(venue: u8, day: u32, hour: u64, kind: AlertKind) -> AerosolAlertTx {
    let start = u64::from(day) * DAY_S + hour * 3600;
    AerosolAlertTx {
        venue: [venue; 16],
        start_s: start,
        end_s: start + 900,
        risk_ppm: 15_000,
        kind,
    }
}

fn publish(alerts: Vec<AerosolAlertTx>) -> Payload {
    aerosol(AerosolCall::PublishAlerts { alerts })
}

fn today(net: &Net) -> u32 {
    (now_s(net) / DAY_S) as u32
}

fn refused(net: &mut Net, alerts: Vec<AerosolAlertTx>, code: &str, sub: &str) {
    let before = net.query("aerosol", "stats", &[]);
    let r = net.fails(&edge(), publish(alerts), code);
    assert!(
        message(&r).contains(&format!("{sub}: ")),
        "expected {sub}, got {}",
        message(&r)
    );
    assert_eq!(net.query("aerosol", "stats", &[]), before);
}

#[test]
fn edge_publishes_alerts_devices_find_them_by_day_and_venue() {
    let mut net = Net::new(&matrix_genesis());
    let d = today(&net) - 1;
    let a = alert(1, d, 10, AlertKind::VentilationFailure);
    let b = alert(2, d, 11, AlertKind::ElevatedRisk);
    let c = alert(1, d - 1, 9, AlertKind::ParticleSpike);
    let r = net.ok(&edge(), publish(vec![a, b, c]));
    assert_eq!(r.events.len(), 3);
    for (e, x) in r.events.iter().zip([a, b, c]) {
        assert_eq!(e.module, "aerosol");
        assert_eq!(e.kind, "alert_published");
        assert_eq!(e.attr("day"), Some(x.day().to_string().as_str()));
        let id = alert_id(&x.venue, x.start_s, x.end_s, x.kind).to_hex();
        assert_eq!(e.attr("alert_id"), Some(id.as_str()));
        assert_eq!(e.attributes.len(), 2);
    }
    let day = net.query("aerosol", "alerts", &[("day", &d.to_string())]);
    let listed = day["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(day["next"].is_null());
    let mut venues: Vec<&str> = listed
        .iter()
        .map(|x| x["venue"].as_str().unwrap())
        .collect();
    venues.sort_unstable();
    assert_eq!(venues, ["01".repeat(16), "02".repeat(16)]);
    // by venue: only that venue's alerts of that day
    let v1 = "01".repeat(16);
    let by = net.query(
        "aerosol",
        "by_venue",
        &[("venue", &v1), ("day", &d.to_string())],
    );
    let list = by["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "ventilation_failure");
    assert_eq!(list[0]["start_s"], a.start_s);
    assert_eq!(list[0]["end_s"], a.end_s);
    assert_eq!(list[0]["risk_ppm"], 15_000);
    assert_eq!(list[0]["height"], net.height);
    let other = net.query(
        "aerosol",
        "by_venue",
        &[("venue", &v1), ("day", &(d - 1).to_string())],
    );
    assert_eq!(other["alerts"][0]["kind"], "particle_spike");
    // one alert by id
    let id = a.id().to_hex();
    let one = net.query("aerosol", &format!("alert/{id}"), &[]);
    assert_eq!(one, list[0]);
    assert_eq!(
        net.query("aerosol", "stats", &[]),
        serde_json::json!({"alerts": 3, "elevated_risk": 1, "ventilation_failure": 1, "particle_spike": 1, "case_presences": 0})
    );
}

#[test]
fn day_listing_pages() {
    let mut net = Net::new(&matrix_genesis());
    let d = today(&net) - 1;
    let alerts: Vec<_> = (0..5u64)
        .map(|h| alert(3, d, h, AlertKind::ElevatedRisk))
        .collect();
    net.ok(&edge(), publish(alerts.clone()));
    let ds = d.to_string();
    let p1 = net.query("aerosol", "alerts", &[("day", &ds), ("limit", "3")]);
    assert_eq!(p1["alerts"].as_array().unwrap().len(), 3);
    let next = p1["next"].as_str().unwrap().to_string();
    let p2 = net.query(
        "aerosol",
        "alerts",
        &[("day", &ds), ("limit", "3"), ("after", &next)],
    );
    assert_eq!(p2["alerts"].as_array().unwrap().len(), 2);
    assert!(p2["next"].is_null());
    let mut got: Vec<u64> = p1["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["alerts"].as_array().unwrap())
        .map(|a| a["start_s"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    let want: Vec<u64> = alerts.iter().map(|a| a.start_s).collect();
    assert_eq!(got, want);
    // the venue index pages the same way
    let v = "03".repeat(16);
    let q = net.query(
        "aerosol",
        "by_venue",
        &[("venue", &v), ("day", &ds), ("limit", "4")],
    );
    assert_eq!(q["alerts"].as_array().unwrap().len(), 4);
    assert!(q["next"].is_string());
}

#[test]
fn every_refusal_has_its_code() {
    let mut net = Net::new(&matrix_genesis());
    let d = today(&net) - 1;
    let ok = alert(5, d, 8, AlertKind::ElevatedRisk);
    refused(&mut net, vec![], "invalid_argument", "no_alerts");
    let many: Vec<_> = (0..MAX_ALERTS_PER_CALL as u64 + 1)
        .map(|i| {
            let mut a = ok;
            a.start_s += i * 60;
            a.end_s = a.start_s + 60;
            a
        })
        .collect();
    refused(&mut net, many, "invalid_argument", "too_many_alerts");
    let mut zero = ok;
    zero.venue = [0; 16];
    refused(&mut net, vec![ok, zero], "invalid_argument", "zero_venue");
    let mut reversed = ok;
    reversed.end_s = reversed.start_s;
    refused(
        &mut net,
        vec![reversed],
        "invalid_argument",
        "invalid_window",
    );
    let mut crossing = ok;
    crossing.start_s = u64::from(d) * DAY_S - 600;
    crossing.end_s = u64::from(d) * DAY_S + 600;
    refused(
        &mut net,
        vec![crossing],
        "invalid_argument",
        "invalid_window",
    );
    let mut long = ok;
    long.start_s = u64::from(d - 2) * DAY_S;
    long.end_s = long.start_s + DAY_S + 1;
    refused(&mut net, vec![long], "invalid_argument", "invalid_window");
    let mut future = ok;
    let now = now_s(&net);
    future.start_s = now;
    future.end_s = now + MAX_FUTURE_SKEW_S + 60;
    refused(
        &mut net,
        vec![future],
        "invalid_argument",
        "alert_in_future",
    );
    let old = alert(
        5,
        today(&net) - MAX_ALERT_AGE_DAYS - 1,
        8,
        AlertKind::ElevatedRisk,
    );
    refused(&mut net, vec![old], "invalid_argument", "alert_too_old");
    let mut risky = ok;
    risky.risk_ppm = 1_000_001;
    refused(
        &mut net,
        vec![risky],
        "invalid_argument",
        "risk_out_of_range",
    );
    // the same window twice in one call, then again later with another risk
    refused(&mut net, vec![ok, ok], "already_exists", "duplicate_alert");
    net.ok(&edge(), publish(vec![ok]));
    let mut again = ok;
    again.risk_ppm = 999;
    refused(&mut net, vec![again], "already_exists", "duplicate_alert");
    // another kind for the same window is another alert
    let mut other_kind = ok;
    other_kind.kind = AlertKind::VentilationFailure;
    net.ok(&edge(), publish(vec![other_kind]));
    // boundaries that are accepted: a window ending within the skew, the oldest day, risk 1
    let mut edge_cases = vec![alert(
        6,
        today(&net) - MAX_ALERT_AGE_DAYS,
        0,
        AlertKind::ElevatedRisk,
    )];
    let mut whole = alert(6, d - 3, 0, AlertKind::ElevatedRisk);
    whole.end_s = whole.start_s + DAY_S;
    whole.risk_ppm = 1_000_000;
    edge_cases.push(whole);
    let now = now_s(&net);
    if now % DAY_S > 3600 {
        edge_cases.push(AerosolAlertTx {
            venue: [6; 16],
            start_s: now - 1800,
            end_s: now + MAX_FUTURE_SKEW_S,
            risk_ppm: 1,
            kind: AlertKind::ParticleSpike,
        });
    }
    net.ok(&edge(), publish(edge_cases));
}

#[test]
fn queries_refuse_bad_parameters() {
    let net = Net::new(&matrix_genesis());
    for (path, params, sub) in [
        ("alerts", vec![], "day is required"),
        ("alerts", vec![("day", "x")], "day must be"),
        (
            "alerts",
            vec![("day", "1"), ("room", "a")],
            "unknown parameter",
        ),
        ("alerts", vec![("day", "1"), ("after", "zz")], "after"),
        ("by_venue", vec![("day", "1")], "venue is required"),
        ("by_venue", vec![("day", "1"), ("venue", "abcd")], "venue"),
        (
            "by_venue",
            vec![("venue", &"01".repeat(16))],
            "day is required",
        ),
        ("stats", vec![("day", "1")], "unknown parameter"),
    ] {
        let e = net.try_query("aerosol", path, &params).unwrap_err();
        assert!(e.to_string().contains(sub), "{path} {params:?}: {e}");
    }
    assert!(net.try_query("aerosol", "alert/00", &[]).is_err());
    let missing = format!("alert/{}", "00".repeat(32));
    assert!(
        net.try_query("aerosol", &missing, &[])
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
    assert!(net.try_query("aerosol", "rooms", &[]).is_err());
    assert_eq!(
        net.query("aerosol", "alerts", &[("day", "5")])["alerts"],
        serde_json::json!([])
    );
}

/// The privacy invariant: the call refuses any field beyond the five, and what is stored
/// and answered is only venue id, window, risk, kind (plus the id, day and height it is
/// indexed by).
#[test]
fn an_alert_carries_no_room_place_occupancy_or_sensor_data() {
    let rt = trustedge_contracts::runtime(CHAIN);
    let m = rt.module("aerosol").unwrap();
    let good = serde_json::json!({"publish_alerts": {"alerts": [
        {"venue": "ab".repeat(16), "start_s": 0, "end_s": 900, "risk_ppm": 5, "kind": "elevated_risk"}
    ]}});
    let bytes = m.call_from_json(good.clone()).unwrap();
    assert_eq!(m.call_to_json(&bytes).unwrap(), good);
    for (field, value) in [
        ("room", serde_json::json!("Room 101")),
        ("location", serde_json::json!("52.1,4.3")),
        ("occupancy", serde_json::json!(24)),
        ("co2_ppm", serde_json::json!([900, 950])),
        ("device", serde_json::json!("te1...")),
    ] {
        let mut bad = good.clone();
        bad["publish_alerts"]["alerts"][0][field] = value;
        assert!(m.call_from_json(bad).is_err(), "{field} was accepted");
    }
    // what the ledger keeps
    let mut net = Net::new(&matrix_genesis());
    let d = today(&net) - 1;
    net.ok(
        &edge(),
        publish(vec![alert(9, d, 12, AlertKind::ElevatedRisk)]),
    );
    let rec = &net.query("aerosol", "alerts", &[("day", &d.to_string())])["alerts"][0];
    let mut keys: Vec<&str> = rec
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "day", "end_s", "height", "id", "kind", "risk_ppm", "start_s", "venue"
        ]
    );
    // every state key of the module is one of the documented indexes
    for k in net.state.map.keys() {
        let Some(rest) = k.strip_prefix(b"aerosol/") else {
            continue;
        };
        assert!(
            rest.starts_with(b"alert/")
                || rest.starts_with(b"day/")
                || rest.starts_with(b"venue/")
                || rest == b"stats"
                || rest.starts_with(b"presence/")
                || rest.starts_with(b"pupload/")
                || rest.starts_with(b"pday/")
                || rest == b"pstats",
            "{}",
            String::from_utf8_lossy(k)
        );
    }
}

// ---- case presences ----

fn report(upload: Hash, visits: Vec<CaseVisit>) -> Payload {
    aerosol(AerosolCall::ReportCasePresence { upload, visits })
}

/// A visit to `venue` from `from_s` to `to_s` seconds after the start of UTC `day`.
fn visit(venue: u8, day: u32, from_s: u64, to_s: u64) -> CaseVisit {
    let d = u64::from(day) * DAY_S;
    CaseVisit {
        venue: [venue; 16],
        start_s: d + from_s,
        end_s: d + to_s,
    }
}

/// A case with keys for `day - 1` and `day`, an alert of venue 1 at 10:00–10:15 and of
/// venue 2 at 11:00–11:15 on `day`.
fn case_and_alerts(net: &mut Net, label: &str) -> (u32, Hash, AerosolAlertTx, AerosolAlertTx) {
    let d = today(net) - 1;
    let up = upload_ok(
        net,
        label,
        &[
            dkey(&format!("{label}-a"), d - 1),
            dkey(&format!("{label}-b"), d),
        ],
    );
    let a1 = alert(1, d, 10, AlertKind::VentilationFailure);
    let a2 = alert(2, d, 11, AlertKind::ElevatedRisk);
    net.ok(&edge(), publish(vec![a1, a2]));
    (d, up, a1, a2)
}

fn presence_refused(net: &mut Net, upload: Hash, visits: Vec<CaseVisit>, code: &str, sub: &str) {
    let before = net.query("aerosol", "stats", &[]);
    let r = net.fails(&edge(), report(upload, visits), code);
    assert!(
        message(&r).contains(&format!("{sub}: ")),
        "expected {sub}, got {}",
        message(&r)
    );
    assert_eq!(net.query("aerosol", "stats", &[]), before);
}

#[test]
fn a_confirmed_case_reports_presences_that_overlap_alerts() {
    let mut net = Net::new(&matrix_genesis());
    let (d, up, a1, a2) = case_and_alerts(&mut net, "case-1");
    // 09:50–10:05 overlaps the 10:00 alert of venue 1; 11:10–11:40 the 11:00 alert of venue 2
    let v1 = visit(1, d, 9 * 3600 + 3000, 10 * 3600 + 300);
    let v2 = visit(2, d, 11 * 3600 + 600, 11 * 3600 + 2400);
    let r = net.ok(&edge(), report(up, vec![v1, v2]));
    assert_eq!(r.events.len(), 2);
    for (e, v) in r.events.iter().zip([v1, v2]) {
        assert_eq!(e.module, "aerosol");
        assert_eq!(e.kind, "case_presence");
        assert_eq!(e.attr("day"), Some(d.to_string().as_str()));
        assert_eq!(e.attr("upload"), Some(up.to_hex().as_str()));
        let id = presence_id(&up, &v).to_hex();
        assert_eq!(e.attr("presence_id"), Some(id.as_str()));
        assert_eq!(e.attributes.len(), 3);
    }
    let by_case = net.query("aerosol", "presence", &[("upload", &up.to_hex())]);
    let list = by_case["presences"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(by_case["next"].is_null());
    let rec1 = list.iter().find(|p| p["venue"] == "01".repeat(16)).unwrap();
    assert_eq!(rec1["start_s"], v1.start_s);
    assert_eq!(rec1["end_s"], v1.end_s);
    assert_eq!(rec1["day"], d);
    assert_eq!(rec1["upload"], up.to_hex());
    assert_eq!(rec1["alerts"], serde_json::json!([a1.id().to_hex()]));
    assert_eq!(rec1["height"], net.height);
    let rec2 = list.iter().find(|p| p["venue"] == "02".repeat(16)).unwrap();
    assert_eq!(rec2["alerts"], serde_json::json!([a2.id().to_hex()]));
    // by day, and one by id
    let by_day = net.query("aerosol", "presence", &[("day", &d.to_string())]);
    assert_eq!(by_day["presences"].as_array().unwrap().len(), 2);
    let other_day = net.query("aerosol", "presence", &[("day", &(d - 1).to_string())]);
    assert_eq!(other_day["presences"], serde_json::json!([]));
    let id = presence_id(&up, &v1).to_hex();
    assert_eq!(&net.query("aerosol", &format!("presence/{id}"), &[]), rec1);
    assert_eq!(net.query("aerosol", "stats", &[])["case_presences"], 2);
    // another case's presences are listed under its own upload only
    let other = upload_ok(&mut net, "case-2", &[dkey("case-2", d)]);
    net.ok(
        &edge(),
        report(other, vec![visit(1, d, 10 * 3600 + 600, 10 * 3600 + 700)]),
    );
    assert_eq!(
        net.query("aerosol", "presence", &[("upload", &other.to_hex())])["presences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        net.query("aerosol", "presence", &[("upload", &up.to_hex())])["presences"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // a visit spanning two alerts of its venue names both
    let a3 = alert(1, d, 12, AlertKind::ElevatedRisk);
    let a4 = alert(1, d, 12, AlertKind::ParticleSpike);
    net.ok(&edge(), publish(vec![a3, a4]));
    let v3 = visit(1, d, 12 * 3600, 13 * 3600);
    net.ok(&edge(), report(up, vec![v3]));
    let rec3 = net.query(
        "aerosol",
        &format!("presence/{}", presence_id(&up, &v3).to_hex()),
        &[],
    );
    let mut got: Vec<&str> = rec3["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    got.sort_unstable();
    let (h3, h4) = (a3.id().to_hex(), a4.id().to_hex());
    let mut want = vec![h3.as_str(), h4.as_str()];
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn every_case_presence_refusal_has_its_code() {
    let mut net = Net::new(&matrix_genesis());
    let (d, up, _, _) = case_and_alerts(&mut net, "case-r");
    let ok = visit(1, d, 10 * 3600, 10 * 3600 + 600);
    presence_refused(&mut net, up, vec![], "invalid_argument", "no_visits");
    let many: Vec<_> = (0..MAX_VISITS_PER_CALL as u64 + 1)
        .map(|i| visit(1, d, 10 * 3600 + i, 10 * 3600 + i + 1))
        .collect();
    presence_refused(&mut net, up, many, "invalid_argument", "too_many_visits");
    presence_refused(
        &mut net,
        Hash([0x33; 32]),
        vec![ok],
        "not_found",
        "unknown_upload",
    );
    let mut zero = ok;
    zero.venue = [0; 16];
    presence_refused(
        &mut net,
        up,
        vec![ok, zero],
        "invalid_argument",
        "zero_venue",
    );
    let mut reversed = ok;
    reversed.end_s = reversed.start_s;
    presence_refused(
        &mut net,
        up,
        vec![reversed],
        "invalid_argument",
        "invalid_window",
    );
    let crossing = CaseVisit {
        venue: [1; 16],
        start_s: u64::from(d) * DAY_S - 60,
        end_s: u64::from(d) * DAY_S + 60,
    };
    presence_refused(
        &mut net,
        up,
        vec![crossing],
        "invalid_argument",
        "invalid_window",
    );
    let now = now_s(&net);
    let future = CaseVisit {
        venue: [1; 16],
        start_s: now,
        end_s: now + MAX_FUTURE_SKEW_S + 60,
    };
    presence_refused(
        &mut net,
        up,
        vec![future],
        "invalid_argument",
        "alert_in_future",
    );
    let old = visit(1, today(&net) - MAX_ALERT_AGE_DAYS - 1, 0, 60);
    presence_refused(&mut net, up, vec![old], "invalid_argument", "alert_too_old");
    // the case's keys are for d-1 and d: d-3 is outside even with the ±1 day of slack
    let before_keys = visit(1, d - 3, 10 * 3600, 10 * 3600 + 600);
    presence_refused(
        &mut net,
        up,
        vec![before_keys],
        "invalid_argument",
        "visit_not_in_upload",
    );
    // minimal disclosure: a presence must overlap an alert of the same venue id
    let before_alert = visit(1, d, 9 * 3600, 10 * 3600); // ends exactly when the alert starts
    presence_refused(
        &mut net,
        up,
        vec![ok, before_alert],
        "invalid_argument",
        "no_alert_in_window",
    );
    let after_alert = visit(1, d, 10 * 3600 + 900, 11 * 3600);
    presence_refused(
        &mut net,
        up,
        vec![after_alert],
        "invalid_argument",
        "no_alert_in_window",
    );
    let wrong_venue = visit(3, d, 10 * 3600, 10 * 3600 + 600);
    presence_refused(
        &mut net,
        up,
        vec![wrong_venue],
        "invalid_argument",
        "no_alert_in_window",
    );
    // venue 2's alert is at 11:00; venue 1 has none then
    let other_venues_window = visit(1, d, 11 * 3600, 11 * 3600 + 600);
    presence_refused(
        &mut net,
        up,
        vec![other_venues_window],
        "invalid_argument",
        "no_alert_in_window",
    );
    // the same visit twice in a call, then again later: refused, not silently accepted
    presence_refused(
        &mut net,
        up,
        vec![ok, ok],
        "already_exists",
        "duplicate_presence",
    );
    net.ok(&edge(), report(up, vec![ok]));
    presence_refused(
        &mut net,
        up,
        vec![ok],
        "already_exists",
        "duplicate_presence",
    );
    // a different window at the same venue is another presence
    net.ok(
        &edge(),
        report(up, vec![visit(1, d, 10 * 3600, 10 * 3600 + 601)]),
    );
    // a revocation upload is not a case; once revoked, the original is not either
    let k1 = dkey("case-r-a", d - 1);
    let k2 = dkey("case-r-b", d);
    let revocation = upload_ok(&mut net, "case-r-revoked", &[revoked(k1), revoked(k2)]);
    presence_refused(&mut net, revocation, vec![ok], "conflict", "not_a_case");
    let fresh = visit(1, d, 10 * 3600 + 5, 10 * 3600 + 10);
    presence_refused(&mut net, up, vec![fresh], "conflict", "not_a_case");
    // only edge operators' operators may report (the access matrix checks every role)
    let r = net.exec(
        &member("laboratory", Role::Operator),
        report(up, vec![fresh]),
    );
    assert_eq!(code(&r), "access_denied");
}

#[test]
fn presence_listings_page_and_refuse_bad_parameters() {
    let mut net = Net::new(&matrix_genesis());
    let (d, up, _, _) = case_and_alerts(&mut net, "case-p");
    let visits: Vec<_> = (0..5u64)
        .map(|i| visit(1, d, 10 * 3600 + i * 60, 10 * 3600 + i * 60 + 30))
        .collect();
    net.ok(&edge(), report(up, visits.clone()));
    let ds = d.to_string();
    let uh = up.to_hex();
    for (k, v) in [("day", ds.as_str()), ("upload", uh.as_str())] {
        let p1 = net.query("aerosol", "presence", &[(k, v), ("limit", "3")]);
        assert_eq!(p1["presences"].as_array().unwrap().len(), 3);
        let next = p1["next"].as_str().unwrap().to_string();
        let p2 = net.query(
            "aerosol",
            "presence",
            &[(k, v), ("limit", "3"), ("after", &next)],
        );
        assert_eq!(p2["presences"].as_array().unwrap().len(), 2);
        assert!(p2["next"].is_null());
        let mut got: Vec<u64> = p1["presences"]
            .as_array()
            .unwrap()
            .iter()
            .chain(p2["presences"].as_array().unwrap())
            .map(|p| p["start_s"].as_u64().unwrap())
            .collect();
        got.sort_unstable();
        let want: Vec<u64> = visits.iter().map(|v| v.start_s).collect();
        assert_eq!(got, want);
    }
    for (params, sub) in [
        (vec![], "exactly one of"),
        (
            vec![("day", ds.as_str()), ("upload", uh.as_str())],
            "exactly one of",
        ),
        (vec![("upload", "abcd")], "upload"),
        (vec![("day", "x")], "day must be"),
        (vec![("day", "1"), ("venue", "a")], "unknown parameter"),
        (vec![("day", "1"), ("after", "zz")], "after"),
        (vec![("day", "1"), ("limit", "0")], "limit"),
    ] {
        let e = net.try_query("aerosol", "presence", &params).unwrap_err();
        assert!(e.to_string().contains(sub), "{params:?}: {e}");
    }
    let missing = format!("presence/{}", "00".repeat(32));
    assert!(
        net.try_query("aerosol", &missing, &[])
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
    assert!(net.try_query("aerosol", "presence/zz", &[]).is_err());
}

/// The privacy invariant of presences: the call takes only an upload id and visits of
/// exactly (venue id, start, end); what is stored adds only the ids it is indexed by, the
/// overlapped alerts and the height. No device address, RPI, name or place.
#[test]
fn a_presence_carries_only_the_case_the_venue_pseudonym_and_the_window() {
    let rt = trustedge_contracts::runtime(CHAIN);
    let m = rt.module("aerosol").unwrap();
    let good = serde_json::json!({"report_case_presence": {"upload": "11".repeat(32), "visits": [
        {"venue": "ab".repeat(16), "start_s": 0, "end_s": 900}
    ]}});
    let bytes = m.call_from_json(good.clone()).unwrap();
    assert_eq!(m.call_to_json(&bytes).unwrap(), good);
    for (field, value) in [
        ("device", serde_json::json!("te1...")),
        ("rpi", serde_json::json!("22".repeat(16))),
        ("room", serde_json::json!("Room 101")),
        ("location", serde_json::json!("52.1,4.3")),
        ("name", serde_json::json!("Jane")),
        ("risk_ppm", serde_json::json!(5)),
    ] {
        let mut bad = good.clone();
        bad["report_case_presence"]["visits"][0][field] = value.clone();
        assert!(m.call_from_json(bad).is_err(), "visit {field} was accepted");
        let mut bad = good.clone();
        bad["report_case_presence"][field] = value;
        assert!(m.call_from_json(bad).is_err(), "call {field} was accepted");
    }
    let mut net = Net::new(&matrix_genesis());
    let (d, up, _, _) = case_and_alerts(&mut net, "case-priv");
    let r = net.ok(
        &edge(),
        report(up, vec![visit(1, d, 10 * 3600, 10 * 3600 + 600)]),
    );
    let mut attrs: Vec<&str> = r.events[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    attrs.sort_unstable();
    assert_eq!(attrs, ["day", "presence_id", "upload"]);
    let rec = &net.query("aerosol", "presence", &[("upload", &up.to_hex())])["presences"][0];
    let mut keys: Vec<&str> = rec
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alerts", "day", "end_s", "height", "id", "start_s", "upload", "venue"
        ]
    );
}
