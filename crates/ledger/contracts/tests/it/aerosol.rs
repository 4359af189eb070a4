//! The `aerosol` module: alerts published by edge nodes, every refusal with its code, the
//! queries, and the privacy invariant (an alert carries only a per-day venue pseudonym, a
//! window, a risk and a kind).

use trustedge_contracts::aerosol::{
    DAY_S, MAX_ALERT_AGE_DAYS, MAX_ALERTS_PER_CALL, MAX_FUTURE_SKEW_S, alert_id,
};
use trustedge_contracts::{AerosolAlertTx, AerosolCall, AlertKind};
use trustedge_execution::Role;
use trustedge_types::{Keypair, Payload};

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
        serde_json::json!({"alerts": 3, "elevated_risk": 1, "ventilation_failure": 1, "particle_spike": 1})
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
                || rest == b"stats",
            "{}",
            String::from_utf8_lossy(k)
        );
    }
}
