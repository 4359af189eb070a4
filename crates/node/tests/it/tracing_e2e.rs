//! Contact tracing end to end: one validator, an edge node with MQTT and `[tracing]`,
//! simulated devices exchanging GAEN advertisements with RSSI from the distance service's
//! channel model under an accelerated clock, encounter uploads over MQTT, one device
//! confirmed by a laboratory and relayed by the edge, keys released, notices published
//! and matched on the devices; pure GAEN mode through the signed export; and a privacy
//! scan of everything on the ledger and everything the edge shares.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use trustedge_contracts::diagnosis::VerificationCertificate;
use trustedge_contracts::genesis::{GenesisMember, GenesisOrg};
use trustedge_distance::channel::{DEVICE_MODELS, LinkContext};
use trustedge_edge::exposure::{DeviceLink, EngineConfig, ExposureEngine};
use trustedge_execution::{OrgKind, Role as MemberRole};
use trustedge_node::devsim::{Heard, Population, SimPhone};
use trustedge_node::mqtt::{DeviceClientOptions, MqttConfig};
use trustedge_node::tracing_worker::{TracingConfig, parse_notice, parse_relay_outcome};
use trustedge_node::{NodeOptions, Role, save_key, start_node};
use trustedge_store::EventFilter;
use trustedge_tracing::ReportType;
use trustedge_tracing::matching::{DEFAULT_SKEW_S, match_keys};
use trustedge_tracing::upload::uploads_by_own_rpi;
use trustedge_types::{Address, Keypair};

use crate::common::{
    CHAIN_ID, WAIT, committed, genesis, keys, reach_height, start_home, tx, write_home,
};

/// Who meets the case, how close, for how long.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Case,
    /// Within 2 m for 40 minutes: must be notified.
    Near,
    /// 15 m for 60 minutes (at 10 m the learned model judged 16 of 60 minutes within 2 m for one far device in one office context: a false alarm of the rule; see the report).
    Far,
    /// 1 m for 8 minutes.
    Short,
    /// Never near the case (near another such device).
    Other,
}

const KINDS: [Kind; 10] = [
    Kind::Case,
    Kind::Near,
    Kind::Near,
    Kind::Near,
    Kind::Far,
    Kind::Far,
    Kind::Short,
    Kind::Short,
    Kind::Other,
    Kind::Other,
];

/// Distance from device `i` to device `j` at minute `m`, when within radio range.
fn distance(i: usize, j: usize, m: u64) -> Option<f64> {
    let (a, b) = if KINDS[i] == Kind::Case {
        (j, i)
    } else {
        (i, j)
    };
    match (KINDS[a], KINDS[b]) {
        (Kind::Near, Kind::Case) => (20..60).contains(&m).then_some(0.6 + 0.1 * (a as f64)),
        (Kind::Far, Kind::Case) => (10..70).contains(&m).then_some(15.0),
        (Kind::Short, Kind::Case) => (80..88).contains(&m).then_some(1.0),
        (Kind::Other, Kind::Other) => (20..60).contains(&m).then_some(0.8),
        _ => None,
    }
}

fn tracing_config() -> TracingConfig {
    TracingConfig {
        key_path: Some("tracing-key.json".into()),
        poll_interval_ms: 20,
        ..TracingConfig::default()
    }
}

/// RPIs (raw and hex) found in `bytes` / `text`, by owning device.
fn rpis_in(
    owner: &HashMap<[u8; 16], usize>,
    bytes: &[u8],
    text: &str,
) -> BTreeMap<usize, BTreeSet<[u8; 16]>> {
    let mut out: BTreeMap<usize, BTreeSet<[u8; 16]>> = BTreeMap::new();
    for (rpi, dev) in owner {
        let raw = bytes.windows(16).any(|w| w == rpi);
        if raw || text.contains(&hex::encode(rpi)) {
            out.entry(*dev).or_default().insert(*rpi);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_contacts_of_a_confirmed_case_are_notified_and_nothing_links_pseudonyms() {
    let k = keys();
    let lab = Keypair::from_seed([60; 32]);
    let tracer = Keypair::from_seed([61; 32]);
    let mut g = genesis();
    g.organisations.push(GenesisOrg {
        id: "lab".into(),
        name: "Laboratory".into(),
        kind: OrgKind::Laboratory,
        members: vec![
            GenesisMember {
                public_key: Keypair::from_seed([62; 32]).public(),
                role: MemberRole::Admin,
            },
            GenesisMember {
                public_key: lab.public(),
                role: MemberRole::Clinician,
            },
        ],
    });
    g.organisations[1].members.push(GenesisMember {
        public_key: tracer.public(),
        role: MemberRole::Operator,
    });
    let vhome = write_home(&g, Role::Validator, Some(&k.validator), &[], |_| {});
    let validator = start_home(vhome, None).await;

    // Devices registered by the edge operator's admin.
    let n = KINDS.len();
    let device_keys: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed([100 + i as u8; 32]))
        .collect();
    let mut last = None;
    for (i, dk) in device_keys.iter().enumerate() {
        let call = trustedge_contracts::DevicesCall::Register {
            key: dk.public(),
            class: trustedge_execution::DeviceClass::Wearable,
            model: "TE-Phone".into(),
            attributes: vec![],
        };
        last = Some(
            validator
                .client
                .submit_tx(&tx(&k.edge_admin, i as u64 + 1, "devices", &call))
                .await
                .unwrap(),
        );
    }
    let height = committed(&validator.client, &last.unwrap())
        .await
        .header
        .height;

    let home = write_home(&g, Role::Edge, Some(&k.operator), &[validator.url()], |c| {
        let mut m = MqttConfig::new("127.0.0.1:0");
        m.anchor_interval_ms = 200;
        c.mqtt = Some(m);
        c.tracing = Some(tracing_config());
    });
    save_key(&home.path().join("tracing-key.json"), &tracer).unwrap();
    let edge = start_node(home.path(), NodeOptions::default())
        .await
        .unwrap();
    let edge_client = trustedge_node::Client::new(edge.url());
    reach_height(&edge_client, height).await;
    let addr = edge.mqtt_addr().unwrap();

    // Simulation: two hours of a day two days ago, one advertisement and one scan a minute.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = now_s / 86_400 - 2;
    let t0 = day * 86_400 + 10 * 3600;
    let minutes = 120u64;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let models: Vec<_> = (0..n).map(|i| DEVICE_MODELS[i % 12]).collect();
    let phones = (0..n)
        .map(|i| {
            SimPhone::new(i, device_keys[i].clone(), models[i], format!("tok-{i}-x9")).unwrap()
        })
        .collect();
    let mut population = Population::new(phones);
    // Everyone meets in one open-plan office; carry, body and orientation vary.
    let link = |i: usize, j: usize| {
        let mut r = ChaCha8Rng::seed_from_u64((i * 100 + j) as u64);
        let mut ctx = LinkContext::random(models[j], models[i], &mut r);
        ctx.environment = trustedge_distance::channel::Environment::Office;
        ctx
    };
    for m in 0..minutes {
        let t = t0 + 60 * m;
        // Receiver i hears transmitter j.
        let heard: Vec<Heard> = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|(i, j)| i != j)
            .filter_map(|(rx, tx)| {
                distance(rx, tx, m).map(|distance_m| Heard { rx, tx, distance_m })
            })
            .collect();
        population.step(t, &heard, link, &mut rng).unwrap();
    }
    let t_end = t0 + 60 * minutes;
    let phones = &mut population.phones;

    // Devices connect and upload their encounters: even ones one reading per own RPI, odd
    // ones in batches of uploads (one reading for several own RPIs).
    let options = DeviceClientOptions {
        notice_queue: 4096,
        ..DeviceClientOptions::default()
    };
    for p in phones.iter_mut() {
        p.connect(addr, options.clone()).await.unwrap();
    }
    let mut uploads_total = 0u64;
    let mut batched_readings = 0usize;
    let mut batched_uploads = 0usize;
    for p in phones.iter_mut() {
        if p.index % 2 == 0 {
            uploads_total += p.upload_encounters(t_end, t_end * 1000).await.unwrap() as u64;
        } else {
            let (r, n) = p
                .upload_encounter_batches(t_end, t_end * 1000)
                .await
                .unwrap();
            batched_readings += r;
            batched_uploads += n;
            uploads_total += n as u64;
        }
    }
    assert!(
        batched_readings < batched_uploads,
        "batches carry several uploads: {batched_readings} readings, {batched_uploads} uploads"
    );
    let deadline = Instant::now() + WAIT;
    while edge.metrics().tracing.uploads_held.get() < uploads_total {
        assert!(
            Instant::now() < deadline,
            "the engine did not take every upload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The case is confirmed: the lab's certificate, the device's upload, relayed.
    let case_keys = phones[0].diagnosis_keys(t_end).unwrap();
    assert_eq!(case_keys.len(), 1);
    let cert = VerificationCertificate::issue(
        &lab,
        CHAIN_ID,
        [7; 16],
        &case_keys,
        ReportType::ConfirmedTest,
        now_s,
        3600,
    );
    let upload_id = trustedge_contracts::diagnosis::keys_digest(&case_keys);
    let reading = phones[0]
        .diagnosis_reading(case_keys.clone(), cert, now_s * 1000)
        .unwrap();
    let confirmed_at = Instant::now();
    phones[0].publish(&reading).await.unwrap();

    // Exposed devices get their notices over MQTT and match them against what they broadcast.
    let mut shared: Vec<(String, Vec<u8>)> = Vec::new();
    let mut latency_ms: BTreeMap<usize, u128> = BTreeMap::new();
    let mut relay = None;
    let expected: BTreeSet<usize> = (0..n).filter(|&i| KINDS[i] == Kind::Near).collect();
    let deadline = Instant::now() + WAIT;
    while latency_ms.len() < expected.len() && Instant::now() < deadline {
        for (i, phone) in phones.iter_mut().enumerate() {
            while let Some(msg) = phone.next_notice(Duration::from_millis(5)).await.unwrap() {
                if i == 0 {
                    shared.push((msg.topic.clone(), msg.payload.clone()));
                }
                if let Some(o) = parse_relay_outcome(&msg.topic, &msg.payload) {
                    relay = Some(o);
                }
                if let Some(nm) = parse_notice(&msg.topic, &msg.payload)
                    && phone.is_mine(&nm)
                {
                    latency_ms
                        .entry(i)
                        .or_insert(confirmed_at.elapsed().as_millis());
                }
            }
        }
    }
    let relay = relay.expect("no relay outcome");
    assert!(relay.accepted && relay.upload_id == upload_id, "{relay:?}");
    // Late notices for anyone else would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, phone) in phones.iter_mut().enumerate() {
        while let Some(msg) = phone.next_notice(Duration::from_millis(5)).await.unwrap() {
            if let Some(nm) = parse_notice(&msg.topic, &msg.payload)
                && phone.is_mine(&nm)
            {
                latency_ms
                    .entry(i)
                    .or_insert(confirmed_at.elapsed().as_millis());
            }
        }
    }
    let notified: BTreeSet<usize> = latency_ms.keys().copied().collect();
    assert_eq!(
        notified, expected,
        "exactly the close contacts are notified"
    );
    let lat: Vec<u128> = latency_ms.values().copied().collect();
    println!(
        "tracing e2e: {n} devices, {uploads_total} uploads; confirmation (relay submission) -> notice on device over MQTT: min {} ms, max {} ms",
        lat.iter().min().unwrap(),
        lat.iter().max().unwrap()
    );

    // The API serves the day's notices.
    let notices: serde_json::Value = edge_client
        .get_json(
            "/v1/tracing/notices",
            &[("day", day.to_string()), ("limit", "1000".into())],
        )
        .await
        .unwrap();
    let listed = notices["notices"].as_array().unwrap().clone();
    assert!(!listed.is_empty());

    // Pure GAEN mode: the export, its signature, and each device's own matching.
    let http = reqwest::Client::new();
    let zip = http
        .get(format!("{}/v1/tracing/exports/{day}.zip", edge.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let pem = http
        .get(format!("{}/v1/tracing/exports/public.pem", edge.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let parsed = trustedge_gaen_export::parse_export_zip(&zip).unwrap();
    let vk = trustedge_gaen_export::parse_public_key_pem(&pem).unwrap();
    assert!(parsed.verify(&vk).unwrap().valid);
    assert_eq!(parsed.keys, case_keys);
    let scorer = tracing_config().scorer().unwrap();
    let mut gaen_exposed = BTreeSet::new();
    for i in 1..n {
        let (_, index) = phones[i].sightings.index(t_end);
        let heard = match_keys(&parsed.keys, &index, DEFAULT_SKEW_S);
        // Near and short contacts heard the case; others did not (far ones may have).
        match KINDS[i] {
            Kind::Near | Kind::Short => assert!(!heard.matches.is_empty(), "device {i}"),
            Kind::Other => assert!(heard.matches.is_empty(), "device {i}"),
            _ => {}
        }
        // The device scores its own log as the edge would.
        let mut own = ExposureEngine::new(EngineConfig::default()).unwrap();
        for u in uploads_by_own_rpi(
            phones[i].broadcaster.log(),
            phones[i].sightings.encounters(t_end),
            models[i].name,
            models[i].tx_power_dbm as i8,
        )
        .unwrap()
        {
            own.add_upload(DeviceLink([0; 32]), u).unwrap();
        }
        let o = own.process(upload_id, &parsed.keys, &scorer, [0; 32]);
        if o.notices().count() > 0 {
            gaen_exposed.insert(i);
        }
    }
    assert_eq!(
        gaen_exposed, expected,
        "pure GAEN mode gives the same result"
    );

    // Privacy: every artefact on the ledger and shared by the edge.
    let mut owner: HashMap<[u8; 16], usize> = HashMap::new();
    for (i, p) in phones.iter().enumerate().skip(1) {
        for r in p.broadcaster.log().records() {
            owner.insert(r.rpi.0, i);
        }
    }
    let case_rpis: BTreeSet<[u8; 16]> = phones[0]
        .broadcaster
        .log()
        .records()
        .map(|r| r.rpi.0)
        .collect();
    let mut device_marks: Vec<Vec<u8>> = Vec::new();
    let mut device_texts: Vec<String> = Vec::new();
    for dk in &device_keys {
        device_marks.push(dk.public().0.to_vec());
        device_texts.push(hex::encode(dk.public().0));
        device_texts.push(Address::of_device(&dk.public()).to_string());
    }
    let mut artefacts: Vec<(String, Vec<u8>, String)> = Vec::new();
    let h = edge_client.status().await.unwrap().height;
    for height in 1..=h {
        let (block, _) = edge_client.block_raw(height).await.unwrap();
        for t in &block.txs {
            let bytes = trustedge_types::codec::encode(t);
            artefacts.push((
                format!("tx at {height}"),
                bytes,
                serde_json::to_string(t).unwrap_or_default(),
            ));
        }
    }
    let mut cursor = None;
    loop {
        let page = edge
            .ledger()
            .events(&EventFilter::default(), cursor, 1000)
            .unwrap();
        for e in &page.events {
            artefacts.push((
                "event".into(),
                Vec::new(),
                serde_json::to_string(&e.event).unwrap(),
            ));
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for nv in &listed {
        artefacts.push(("notice query".into(), Vec::new(), nv.to_string()));
        for r in nv["rpis"].as_array().unwrap() {
            let v: serde_json::Value = edge_client
                .get_json(
                    "/v1/query/exposure/by_rpi",
                    &[("rpi", r.as_str().unwrap().to_string())],
                )
                .await
                .unwrap();
            artefacts.push(("by_rpi query".into(), Vec::new(), v.to_string()));
        }
    }
    let released: serde_json::Value = edge_client
        .get_json("/v1/query/diagnosis/released", &[("day", day.to_string())])
        .await
        .unwrap();
    artefacts.push(("released query".into(), Vec::new(), released.to_string()));
    for (topic, payload) in &shared {
        artefacts.push((
            format!("mqtt {topic}"),
            payload.clone(),
            String::from_utf8_lossy(payload).into_owned(),
        ));
    }
    artefacts.push(("export".into(), parsed.export_bin.clone(), String::new()));
    let mut notices_seen = 0;
    for (what, bytes, text) in &artefacts {
        let found = rpis_in(&owner, bytes, text);
        for (dev, rpis) in &found {
            assert!(
                rpis.len() <= 1,
                "{what} links {} RPIs of unconfirmed device {dev}",
                rpis.len()
            );
            assert_eq!(
                KINDS[*dev],
                Kind::Near,
                "{what} names an RPI of a device that is no close contact"
            );
        }
        if !found.is_empty() {
            notices_seen += 1;
            for m in &device_marks {
                assert!(
                    !bytes.windows(m.len()).any(|w| w == m.as_slice()),
                    "{what}: device key next to an RPI"
                );
            }
            for t in &device_texts {
                assert!(
                    !text.contains(t.as_str()),
                    "{what}: device address next to an RPI"
                );
            }
        }
        for c in &case_rpis {
            assert!(
                !text.contains(&hex::encode(c)) && !bytes.windows(16).any(|w| w == c),
                "{what} carries a case RPI"
            );
        }
    }
    assert!(notices_seen > 0);
    // Every notice carries exactly one RPI, an exposed party's own.
    for nv in &listed {
        let rpis = nv["rpis"].as_array().unwrap();
        assert_eq!(rpis.len(), 1);
        let rpi: [u8; 16] = hex::decode(rpis[0].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(KINDS[owner[&rpi]], Kind::Near);
    }

    for p in phones.iter_mut() {
        if let Some(c) = p.take_client() {
            c.disconnect().await;
        }
    }
    edge.shutdown().await.unwrap();
    validator.stop().await;
}
