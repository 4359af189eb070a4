//! Aerosol alerts end to end: one validator, an edge node with MQTT and `[aerosol]`, two
//! registered air-quality devices publishing a simulated day of their rooms (one with
//! ventilation failures injected, one clean); the edge's worker scores the rooms and
//! publishes exactly the alerts the pure engine computes on the same series: a
//! `ventilation_failure` for the failing room's venue id, nothing for the clean room.
//! Readings of a device in no room and out of time order are refused and counted.
//! `GET /v1/aerosol/rooms` shows each room's closed windows with the probabilities the pure
//! engine computes (filtered by `since_s`); a node without `[aerosol]` answers 404.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use trustedge_aerosol::alert::{VenueId, VenueSecret};
use trustedge_aerosol::risk::Reading;
use trustedge_aerosol::sim::{SimConfig, simulate};
use trustedge_contracts::aerosol::{AerosolAlertTx, AlertKind, AlertRecord, DAY_S};
use trustedge_contracts::genesis::GenesisMember;
use trustedge_device::DeviceIdentity;
use trustedge_edge::aerosol::{AerosolEdgeConfig, AerosolEngine, RoomConfig};
use trustedge_execution::Role as MemberRole;
use trustedge_node::aerosol_worker::{
    AIR_QUALITY_KIND, AerosolConfig, AerosolRoom, encode_air_quality,
};
use trustedge_node::mqtt::{DeviceClient, DeviceClientOptions, MqttConfig};
use trustedge_node::{Client, NodeOptions, Role, save_key, start_node};
use trustedge_types::{Address, Hash, Keypair};

use crate::common::{
    WAIT, committed, genesis, get_raw, keys, reach_height, register_device, write_home,
};

fn secret(label: &str) -> [u8; 32] {
    Hash::sha256(label.as_bytes()).0
}

fn options() -> DeviceClientOptions {
    DeviceClientOptions {
        ack_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        ..DeviceClientOptions::default()
    }
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every alert of `day` on the ledger, following pages.
async fn alerts_of_day(c: &Client, day: u32) -> Vec<AlertRecord> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let day_s = day.to_string();
        let mut params = vec![("day", day_s.as_str())];
        if let Some(a) = &after {
            params.push(("after", a.as_str()));
        }
        let v = c.query("aerosol", "alerts", &params).await.unwrap();
        let page: Vec<AlertRecord> = serde_json::from_value(v["alerts"].clone()).unwrap();
        out.extend(page);
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// One simulated day of a room, moved to `day`.
fn day_series(failures: bool, seed: u64, day: u64) -> Vec<Reading> {
    let cfg = SimConfig {
        ventilation_failure_probability: if failures { 1.0 } else { 0.0 },
        particle_spike_probability: 0.0,
        // One reading every 5 minutes keeps the day short to publish.
        step_s: 300,
        ..SimConfig::default()
    };
    let mut s = simulate(&cfg, seed, 1).unwrap();
    for r in &mut s.readings {
        r.t_s += day * DAY_S;
    }
    s.readings
}

async fn publish(addr: std::net::SocketAddr, token: &str, key: Keypair, readings: Vec<Reading>) {
    let mut device = DeviceIdentity::new(key, 0);
    let mut client = DeviceClient::connect(addr, token, options()).await.unwrap();
    for r in readings {
        let signed = device
            .sign_reading(r.t_s * 1000, AIR_QUALITY_KIND, encode_air_quality(&r))
            .unwrap();
        let ack = client.publish_reading(&signed).await.unwrap();
        assert!(ack.accepted, "{ack:?}");
    }
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_room_alerts_on_the_ledger_and_a_clean_room_does_not() {
    let k = keys();
    let publisher = Keypair::from_seed([71; 32]);
    let mut g = genesis();
    g.organisations[1].members.push(GenesisMember {
        public_key: publisher.public(),
        role: MemberRole::Operator,
    });
    let vhome = write_home(&g, Role::Validator, Some(&k.validator), &[], |_| {});
    let validator = crate::common::start_home(vhome, None).await;

    // Three air-quality devices: one per room and one in no room.
    let mut last = None;
    let mut device_keys = Vec::new();
    for i in 0..3u8 {
        let (reg, dk) = register_device(&k.edge_admin, u64::from(i) + 1, 90 + i);
        last = Some(validator.client.submit_tx(&reg).await.unwrap());
        device_keys.push(dk);
    }
    let height = committed(&validator.client, &last.unwrap())
        .await
        .header
        .height;
    let addr_of = |kp: &Keypair| Address::of_device(&kp.public());

    let rooms = vec![
        AerosolRoom {
            name: "lab 2".into(),
            volume_m3: 250.0,
            nominal_ach: Some(3.0),
            venue_secret_hex: hex::encode(secret("lab 2")),
            devices: vec![addr_of(&device_keys[0])],
        },
        AerosolRoom {
            name: "hall".into(),
            volume_m3: 250.0,
            nominal_ach: Some(3.0),
            venue_secret_hex: hex::encode(secret("hall")),
            devices: vec![addr_of(&device_keys[1])],
        },
    ];
    let aerosol = AerosolConfig {
        rooms: rooms.clone(),
        key_path: Some("aerosol-key.json".into()),
        poll_interval_ms: 20,
        close_interval_ms: 1000,
        ..AerosolConfig::default()
    };
    aerosol.validate().unwrap();
    let home = write_home(&g, Role::Edge, Some(&k.operator), &[validator.url()], |c| {
        let mut m = MqttConfig::new("127.0.0.1:0");
        m.anchor_interval_ms = 500;
        c.mqtt = Some(m);
        c.aerosol = Some(aerosol.clone());
    });
    save_key(&home.path().join("aerosol-key.json"), &publisher).unwrap();
    let edge = start_node(home.path(), NodeOptions::default())
        .await
        .unwrap();
    let edge_client = Client::new(edge.url());
    reach_height(&edge_client, height).await;
    let addr = edge.mqtt_addr().unwrap();

    // Before any reading: both rooms, no window.
    let empty = edge_client.aerosol_rooms(None).await.unwrap();
    let names: Vec<&str> = empty.rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(names, ["hall", "lab 2"]);
    assert!(empty.rooms.iter().all(|r| r.windows.is_empty()));
    assert_eq!(empty.rooms[0].volume_m3, 250.0);
    assert_eq!(empty.rooms[0].ach, Some(3.0));

    // A day two days ago (a Monday of the simulation: a weekday, occupied).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = now_s / DAY_S - 2;
    let failing = day_series(true, 11, day);
    let clean = day_series(false, 12, day);

    // What the pure engine decides on the same series.
    let mut engine = AerosolEngine::new(AerosolEdgeConfig::default()).unwrap();
    for r in &rooms {
        engine
            .add_room(
                &r.name,
                RoomConfig {
                    volume_m3: r.volume_m3,
                    nominal_ach_per_h: r.nominal_ach,
                    secret: VenueSecret(secret(&r.name)),
                },
            )
            .unwrap();
    }
    let mut expected = HashSet::new();
    for (name, series) in [("lab 2", &failing), ("hall", &clean)] {
        for r in series.iter() {
            expected.extend(engine.push(name, r).unwrap());
        }
        expected.extend(engine.close_until(name, now_s).unwrap());
    }
    let lab_venue = VenueId::derive(&VenueSecret(secret("lab 2")), day as u32).0;
    let hall_venue = VenueId::derive(&VenueSecret(secret("hall")), day as u32).0;
    assert!(
        expected
            .iter()
            .any(|a: &AerosolAlertTx| a.kind == AlertKind::VentilationFailure
                && a.venue == lab_venue),
        "the engine found no ventilation failure: {expected:?}"
    );
    assert!(
        expected.iter().all(|a| a.venue == lab_venue),
        "{expected:?}"
    );

    // The devices publish their day.
    tokio::join!(
        publish(addr, "aq-lab-1", device_keys[0].clone(), failing.clone()),
        publish(addr, "aq-hall-1", device_keys[1].clone(), clean.clone()),
    );
    // A device in no room, and a reading of the lab older than its last.
    publish(
        addr,
        "aq-stray",
        device_keys[2].clone(),
        failing[..1].to_vec(),
    )
    .await;
    let mut lab = DeviceIdentity::new(device_keys[0].clone(), failing.len() as u64);
    let old = failing[10];
    let signed = lab
        .sign_reading(now_s * 1000, AIR_QUALITY_KIND, encode_air_quality(&old))
        .unwrap();
    let mut c = DeviceClient::connect(addr, "aq-lab-1", options())
        .await
        .unwrap();
    assert!(c.publish_reading(&signed).await.unwrap().accepted);
    c.disconnect().await;

    // The ledger ends up with exactly the engine's alerts.
    let deadline = Instant::now() + WAIT * 3;
    let on_ledger = loop {
        let got: HashSet<AerosolAlertTx> = alerts_of_day(&edge_client, day as u32)
            .await
            .iter()
            .map(AlertRecord::alert)
            .collect();
        if got.len() >= expected.len() {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} alerts on the ledger",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(on_ledger, expected);
    assert!(
        on_ledger
            .iter()
            .any(|a| a.kind == AlertKind::VentilationFailure && a.venue == lab_venue)
    );
    assert!(on_ledger.iter().all(|a| a.venue != hall_venue));
    let by_venue = validator
        .client
        .query(
            "aerosol",
            "by_venue",
            &[
                ("venue", &hex::encode(hall_venue)),
                ("day", &day.to_string()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(by_venue["alerts"], serde_json::json!([]));

    // The edge's own view of its rooms: every closed window, as the pure engine decided it.
    let deadline = Instant::now() + WAIT;
    let rooms_view = loop {
        let v = edge_client.aerosol_rooms(None).await.unwrap();
        let done = v.rooms.iter().all(|r| {
            r.windows.last().map(|w| w.end_s)
                == engine.recent_decisions(&r.room).last().map(|d| d.end_s)
        });
        if done {
            break v;
        }
        assert!(Instant::now() < deadline, "windows not all closed: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for r in &rooms_view.rooms {
        let want = engine.recent_decisions(&r.room);
        assert!(want.len() >= 90, "{} windows of {}", want.len(), r.room);
        assert_eq!(r.windows.len(), want.len(), "{}", r.room);
        for (got, d) in r.windows.iter().zip(want) {
            assert_eq!((got.start_s, got.end_s), (d.start_s, d.end_s));
            assert!(
                (got.probability - d.probability).abs() < 1e-12,
                "{got:?} {d:?}"
            );
            assert!((got.mean_occupancy - d.mean_occupancy).abs() < 1e-9);
            assert_eq!(got.ventilation_failure, d.ventilation_failure);
            assert_eq!(got.particle_spike, d.particle_spike);
            assert_eq!(got.alerted, d.alert.is_some());
        }
    }
    let lab_view = &rooms_view.rooms[1];
    assert_eq!(lab_view.room, "lab 2");
    assert!(
        lab_view
            .windows
            .iter()
            .any(|w| w.ventilation_failure && w.alerted)
    );
    assert!(lab_view.windows.iter().any(|w| w.probability > 0.0));
    assert!(rooms_view.rooms[0].windows.iter().all(|w| !w.alerted));
    // since_s: only the windows ending after it.
    let since = lab_view.windows[40].end_s;
    let later = edge_client.aerosol_rooms(Some(since)).await.unwrap();
    assert_eq!(later.rooms.len(), 2);
    assert_eq!(later.rooms[1].windows, lab_view.windows[41..]);
    assert!(later.rooms[0].windows.iter().all(|w| w.end_s > since));
    let last = lab_view.windows.last().unwrap().end_s;
    let none = edge_client.aerosol_rooms(Some(last)).await.unwrap();
    assert!(none.rooms.iter().all(|r| r.windows.is_empty()));
    // Refusals: malformed and unknown parameters, and a node without [aerosol].
    for path in [
        "/v1/aerosol/rooms?since_s=soon",
        "/v1/aerosol/rooms?since_s=-1",
        "/v1/aerosol/rooms?room=hall",
    ] {
        let (status, raw) = get_raw(&edge.url(), path).await;
        assert_eq!(
            (status, raw["code"].as_str()),
            (400, Some("invalid_query")),
            "{path}: {raw}"
        );
    }
    let (status, raw) = get_raw(&validator.url(), "/v1/aerosol/rooms").await;
    assert_eq!(
        (status, raw["code"].as_str()),
        (404, Some("aerosol_disabled"))
    );

    let n = (failing.len() + clean.len()) as u64;
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = edge_client.metrics().await.unwrap();
        if metric(
            &text,
            "trustedge_aerosol_refused_total{reason=\"out_of_order\"}",
        ) > 0
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the late reading was not refused:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(metric(&text, "trustedge_aerosol_readings_total"), n);
    assert_eq!(
        metric(&text, "trustedge_aerosol_alerts_published_total"),
        expected.len() as u64
    );
    assert_eq!(
        metric(
            &text,
            "trustedge_aerosol_refused_total{reason=\"unknown_room\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "trustedge_aerosol_refused_total{reason=\"out_of_order\"}"
        ),
        1
    );
    assert_eq!(metric(&text, "trustedge_aerosol_publish_errors_total"), 0);
}
