//! Aerosol alerts delivered to devices, and a confirmed case's presences on the ledger
//! (issue 5 §3–§4): one validator, an edge node with MQTT, `[aerosol]` and `[tracing]`; an
//! air-quality device publishes a simulated day of a room with ventilation failures (and
//! another of a clean room); the alerts land on the ledger and are pushed over MQTT on
//! `te/v1/notices/aerosol/<day>`. Three simulated phones decide locally from the venue ids
//! their beacons gave them: the one in the failing room during an alert is alerted, the one
//! in the clean room at the same time is not, nor the one in the failing room hours away
//! from any alert. The alerted phone is then confirmed: its keys are relayed, and its
//! visits during alerts (clipped to the alert windows) are relayed as
//! `aerosol.report_case_presence` and land on the ledger, signed by the edge's key.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_aerosol::alert::{VenueId, VenueSecret};
use trustedge_aerosol::risk::Reading;
use trustedge_aerosol::sim::{SimConfig, simulate};
use trustedge_contracts::aerosol::{
    AerosolAlertTx, AlertKind, AlertRecord, CaseVisit, DAY_S, PresenceRecord,
};
use trustedge_contracts::diagnosis::{VerificationCertificate, keys_digest};
use trustedge_contracts::genesis::{GenesisMember, GenesisOrg};
use trustedge_device::DeviceIdentity;
use trustedge_distance::channel::DEVICE_MODELS;
use trustedge_edge::aerosol::{AerosolEdgeConfig, AerosolEngine, RoomConfig};
use trustedge_execution::{OrgKind, Role as MemberRole};
use trustedge_node::aerosol_worker::{
    AIR_QUALITY_KIND, AerosolConfig, AerosolRoom, encode_air_quality, parse_alert,
};
use trustedge_node::devsim::SimPhone;
use trustedge_node::devsim::aerosol::VenueBeacon;
use trustedge_node::mqtt::{DeviceClient, DeviceClientOptions, MqttConfig};
use trustedge_node::tracing_worker::TracingConfig;
use trustedge_node::{Client, NodeOptions, Role, save_key, start_node};
use trustedge_tracing::ReportType;
use trustedge_types::{Address, Hash, Keypair};

use crate::common::{
    CHAIN_ID, WAIT, committed, genesis, keys, reach_height, register_device, start_home, write_home,
};

fn secret(label: &str) -> [u8; 32] {
    Hash::sha256(label.as_bytes()).0
}

fn options() -> DeviceClientOptions {
    DeviceClientOptions {
        ack_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        notice_queue: 4096,
        ..DeviceClientOptions::default()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
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

/// One simulated day of a room, moved to `day`, a reading every 5 minutes.
fn day_series(failures: bool, seed: u64, day: u64) -> Vec<Reading> {
    let cfg = SimConfig {
        ventilation_failure_probability: if failures { 1.0 } else { 0.0 },
        particle_spike_probability: 0.0,
        step_s: 300,
        ..SimConfig::default()
    };
    let mut s = simulate(&cfg, seed, 1).unwrap();
    for r in &mut s.readings {
        r.t_s += day * DAY_S;
    }
    s.readings
}

async fn publish_series(
    addr: std::net::SocketAddr,
    token: &str,
    key: Keypair,
    readings: Vec<Reading>,
) {
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

/// What a phone's listener received: (wall-clock ms, alert).
type Inbox = Arc<Mutex<Vec<(u64, AlertRecord)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_reach_the_phones_that_were_there_and_a_cases_presence_lands_on_the_ledger() {
    let k = keys();
    let publisher = Keypair::from_seed([81; 32]);
    let tracer = Keypair::from_seed([82; 32]);
    let lab = Keypair::from_seed([83; 32]);
    let mut g = genesis();
    for key in [&publisher, &tracer] {
        g.organisations[1].members.push(GenesisMember {
            public_key: key.public(),
            role: MemberRole::Operator,
        });
    }
    g.organisations.push(GenesisOrg {
        id: "lab".into(),
        name: "Laboratory".into(),
        kind: OrgKind::Laboratory,
        members: vec![
            GenesisMember {
                public_key: Keypair::from_seed([84; 32]).public(),
                role: MemberRole::Admin,
            },
            GenesisMember {
                public_key: lab.public(),
                role: MemberRole::Clinician,
            },
        ],
    });
    let vhome = write_home(&g, Role::Validator, Some(&k.validator), &[], |_| {});
    let validator = start_home(vhome, None).await;

    // Two air-quality devices (one per room) and three phones, registered.
    let mut last = None;
    let mut device_keys = Vec::new();
    for i in 0..5u8 {
        let (reg, dk) = register_device(&k.edge_admin, u64::from(i) + 1, 120 + i);
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
    let home = write_home(&g, Role::Edge, Some(&k.operator), &[validator.url()], |c| {
        let mut m = MqttConfig::new("127.0.0.1:0");
        m.anchor_interval_ms = 500;
        c.mqtt = Some(m);
        c.aerosol = Some(aerosol.clone());
        c.tracing = Some(TracingConfig {
            key_path: Some("tracing-key.json".into()),
            poll_interval_ms: 20,
            ..TracingConfig::default()
        });
    });
    save_key(&home.path().join("aerosol-key.json"), &publisher).unwrap();
    save_key(&home.path().join("tracing-key.json"), &tracer).unwrap();
    let edge = start_node(home.path(), NodeOptions::default())
        .await
        .unwrap();
    let edge_client = Client::new(edge.url());
    reach_height(&edge_client, height).await;
    let addr = edge.mqtt_addr().unwrap();

    // A weekday two days ago; what the pure engine alerts on the failing room's series.
    let now_s = now_ms() / 1000;
    let day = now_s / DAY_S - 2;
    let failing = day_series(true, 11, day);
    let clean = day_series(false, 12, day);
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
    let lab_beacon = VenueBeacon::new(VenueSecret(secret("lab 2")));
    let hall_beacon = VenueBeacon::new(VenueSecret(secret("hall")));
    let lab_venue = VenueId::derive(&VenueSecret(secret("lab 2")), day as u32).0;
    let target: AerosolAlertTx = *expected
        .iter()
        .filter(|a: &&AerosolAlertTx| a.kind == AlertKind::VentilationFailure)
        .min_by_key(|a| a.start_s)
        .expect("the engine found no ventilation failure");
    assert!(expected.iter().all(|a| a.venue == lab_venue));

    // Phones: 0 in the lab around the target alert, 1 in the hall at the same time, 2 in
    // the lab for half an hour at least 2 h away from every alert.
    let day_start = day * DAY_S;
    let from = target.start_s.saturating_sub(1800).max(day_start);
    let until = (target.end_s + 1800).min(day_start + DAY_S - 1);
    let quiet = (0..48)
        .map(|h| day_start + h * 1800)
        .find(|t| {
            expected
                .iter()
                .all(|a| *t + 1800 + 7200 <= a.start_s || *t >= a.end_s + 7200)
                && *t + 1800 < day_start + DAY_S
        })
        .expect("no quiet half hour in the lab");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut phones: Vec<SimPhone> = (0..3)
        .map(|i| {
            SimPhone::new(
                i,
                device_keys[2 + i].clone(),
                DEVICE_MODELS[i],
                format!("ph-{i}-q7"),
            )
            .unwrap()
        })
        .collect();
    for t in (from..until).step_by(300) {
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        // Phone 0 broadcasts while there (its keys will cover the day).
        phones[0].broadcaster.advertise(t, random).unwrap();
        phones[0].hear_beacon(&lab_beacon, t);
        phones[1].hear_beacon(&hall_beacon, t);
    }
    for t in (quiet..quiet + 1800).step_by(300) {
        phones[2].hear_beacon(&lab_beacon, t);
    }
    assert_eq!(phones[0].presence.len(), 1);

    // Phones listen for notices on their own tasks, stamping arrivals.
    let mut inboxes: Vec<Inbox> = Vec::new();
    let mut listeners = Vec::new();
    for p in phones.iter_mut() {
        p.connect(addr, options()).await.unwrap();
        let mut client = p.take_client().unwrap();
        let inbox: Inbox = Arc::default();
        inboxes.push(inbox.clone());
        listeners.push(tokio::spawn(async move {
            while let Some(n) = client.next_notice(WAIT * 6).await {
                if let Some(a) = parse_alert(&n.topic, &n.payload) {
                    inbox.lock().unwrap().push((now_ms(), a));
                }
            }
        }));
    }

    // The rooms' devices publish their day.
    tokio::join!(
        publish_series(addr, "aq-lab-2", device_keys[0].clone(), failing.clone()),
        publish_series(addr, "aq-hall-2", device_keys[1].clone(), clean.clone()),
    );

    // The ledger gets exactly the engine's alerts.
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
            "{} of {} alerts",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(on_ledger, expected);

    // Every phone receives every alert (a broadcast), each once.
    let deadline = Instant::now() + WAIT;
    loop {
        let counts: Vec<usize> = inboxes.iter().map(|i| i.lock().unwrap().len()).collect();
        if counts.iter().all(|c| *c >= expected.len()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alerts pushed per phone: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received: Vec<Vec<(u64, AlertRecord)>> =
        inboxes.iter().map(|i| i.lock().unwrap().clone()).collect();
    for r in &received {
        let got: HashSet<AerosolAlertTx> = r.iter().map(|(_, a)| a.alert()).collect();
        assert_eq!(got, expected);
        assert_eq!(r.len(), expected.len(), "an alert was pushed twice");
    }

    // Each phone decides alone.
    let mine: Vec<Vec<AlertRecord>> = phones
        .iter()
        .zip(&received)
        .map(|(p, r)| p.aerosol_alerts_for_me(r.iter().map(|(_, a)| a), 0))
        .collect();
    assert!(
        mine[0].iter().any(|a| a.alert() == target),
        "the phone in the failing room was not alerted: {:?}",
        mine[0]
    );
    assert!(mine[0].iter().all(|a| a.start_s < until && from < a.end_s));
    assert_eq!(mine[1], vec![], "the phone in the clean room was alerted");
    assert_eq!(mine[2], vec![], "the phone there hours away was alerted");

    // Delivery latency: block sealed -> alert on the phone.
    let mut latency_ms = BTreeMap::new();
    for (t, a) in &received[0] {
        let block = edge_client.block(a.height).await.unwrap();
        latency_ms.insert(a.id, t.saturating_sub(block.header.time_ms));
    }
    let lat: Vec<u64> = latency_ms.values().copied().collect();
    println!(
        "aerosol delivery: {} alerts; block sealed -> alert on phone over MQTT: min {} ms, max {} ms",
        lat.len(),
        lat.iter().min().unwrap(),
        lat.iter().max().unwrap()
    );

    // Phone 0 is confirmed: its keys and its visits during alerts, relayed by the edge.
    let case_keys = phones[0].diagnosis_keys(now_s).unwrap();
    assert!(!case_keys.is_empty());
    let upload = keys_digest(&case_keys);
    let cert = VerificationCertificate::issue(
        &lab,
        CHAIN_ID,
        [9; 16],
        &case_keys,
        ReportType::ConfirmedTest,
        now_s,
        3600,
    );
    // Signed in the order sent (the edge refuses a device's readings out of sequence).
    let presence = phones[0]
        .case_presence_reading(upload, &mine[0], now_ms())
        .unwrap()
        .expect("no visit during an alert");
    let diag = phones[0]
        .diagnosis_reading(case_keys, cert, now_ms())
        .unwrap();
    let visits = phones[0].presence.case_visits(&mine[0]);
    assert!(
        visits
            .iter()
            .all(|v| v.venue == lab_venue && from <= v.start_s && v.end_s <= until)
    );
    // Nothing else about the phone's day reaches the ledger: only alerted windows.
    for v in &visits {
        assert!(
            mine[0]
                .iter()
                .any(|a| a.start_s <= v.start_s && v.end_s <= a.end_s)
        );
    }
    let mut up = DeviceClient::connect(addr, "ph-0-up", options())
        .await
        .unwrap();
    // The presence goes first: the edge holds it until the upload is committed.
    for r in [&presence, &diag] {
        let ack = up.publish_reading(r).await.unwrap();
        assert!(ack.accepted, "{ack:?}");
    }
    up.disconnect().await;

    let deadline = Instant::now() + WAIT * 2;
    let recorded = loop {
        let v = validator
            .client
            .query("aerosol", "presence", &[("upload", &upload.to_hex())])
            .await
            .unwrap();
        let got: Vec<PresenceRecord> = serde_json::from_value(v["presences"].clone()).unwrap();
        if got.len() >= visits.len() {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} case visits on the ledger",
            got.len(),
            visits.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got: HashSet<CaseVisit> = recorded
        .iter()
        .map(|r| CaseVisit {
            venue: r.venue,
            start_s: r.start_s,
            end_s: r.end_s,
        })
        .collect();
    assert_eq!(got, visits.iter().copied().collect::<HashSet<_>>());
    assert!(
        recorded
            .iter()
            .all(|r| r.upload == upload && !r.alerts.is_empty())
    );
    // The edge counts them once its replica has the block (it may trail the validator).
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = edge_client.metrics().await.unwrap();
        if metric(&text, "trustedge_aerosol_presences_relayed_total") >= visits.len() as u64 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "relayed visits not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric(&text, "trustedge_aerosol_presences_relayed_total"),
        visits.len() as u64
    );
    assert_eq!(metric(&text, "trustedge_aerosol_presence_errors_total"), 0);
    assert!(metric(&text, "trustedge_aerosol_alerts_pushed_total") >= expected.len() as u64);
    // The relay is signed by the edge's aerosol key, never by the phone.
    let events = validator
        .client
        .events(&trustedge_node::api::types::EventsQuery {
            module: Some("aerosol".into()),
            kind: Some("case_presence".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.events.len(), visits.len());
    for ev in &events.events {
        let block = validator.client.block(ev.height).await.unwrap();
        let tx = &block.txs[ev.tx_index as usize];
        assert_eq!(tx.tx.body.signer, publisher.public());
    }

    for l in listeners {
        l.abort();
    }
}
