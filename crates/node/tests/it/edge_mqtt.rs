//! Edge ingest over MQTT: a single validator, an edge node with an embedded broker, devices
//! publishing signed readings; storage encrypted at rest, lookups, refusals, anchoring and
//! record proofs, restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use trustedge_device::{DeviceIdentity, SignedReading};
use trustedge_edge::store::record_digest;
use trustedge_node::api::edge::EdgeRecordProofResponse;
use trustedge_node::edge_store::IndexKeys;
use trustedge_node::ingest::ReadingIndexer;
use trustedge_node::mqtt::{DeviceClient, DeviceClientOptions, MqttConfig, RefusalReason};
use trustedge_node::{NodeOptions, Role, RunningNode, start_node};
use trustedge_types::Keypair;

use crate::common::{
    TestNode, WAIT, committed, genesis, get_raw, keys, reach_height, register_device, sealer,
    write_home,
};

/// Test payload format: `n ‖ own (16) ‖ n × observed (16) ‖ free text`.
struct TestIndexer;

impl ReadingIndexer for TestIndexer {
    fn index_keys(&self, _client: &str, r: &SignedReading) -> Result<IndexKeys, String> {
        let p = &r.payload;
        let n = *p.first().ok_or("empty")? as usize;
        if p.len() < 1 + 16 * (n + 1) {
            return Err("short".into());
        }
        Ok(IndexKeys {
            own: p[1..17].to_vec(),
            observed: (0..n)
                .map(|i| p[17 + 16 * i..33 + 16 * i].to_vec())
                .collect(),
        })
    }
}

fn payload(own: u8, observed: &[u8], text: &str) -> Vec<u8> {
    let mut p = vec![observed.len() as u8];
    p.extend_from_slice(&[own; 16]);
    for o in observed {
        p.extend_from_slice(&[*o; 16]);
    }
    p.extend_from_slice(text.as_bytes());
    p
}

/// A validator with one device registered by the edge operator's admin, the device's key,
/// the height that committed it, and an edge home with `mqtt` following the validator.
async fn validator_device_and_edge_home(
    mqtt: MqttConfig,
) -> (
    TestNode,
    Keypair,
    trustedge_types::Height,
    tempfile::TempDir,
) {
    let k = keys();
    let validator = sealer().await;
    let (reg, device_key) = register_device(&k.edge_admin, 1, 60);
    let h = validator.client.submit_tx(&reg).await.unwrap();
    let height = committed(&validator.client, &h).await.header.height;
    let home = write_home(
        &genesis(),
        Role::Edge,
        Some(&k.operator),
        &[validator.url()],
        |c| c.mqtt = Some(mqtt),
    );
    (validator, device_key, height, home)
}

async fn start_edge(home: &std::path::Path) -> RunningNode {
    let options = NodeOptions {
        indexer: Arc::new(TestIndexer),
        ..NodeOptions::default()
    };
    start_node(home, options).await.unwrap()
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

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readings_are_stored_encrypted_indexed_anchored_and_refused_by_reason() {
    let mut m = MqttConfig::new("127.0.0.1:0");
    m.anchor_interval_ms = 200;
    m.anchor_max_records = 100;
    let (validator, device_key, height, home) = validator_device_and_edge_home(m).await;
    let edge = start_edge(home.path()).await;
    let edge_client = trustedge_node::Client::new(edge.url());
    reach_height(&edge_client, height).await;
    let addr = edge.mqtt_addr().unwrap();

    // Accepted readings.
    let mut device = DeviceIdentity::new(device_key.clone(), 0);
    let mut client = DeviceClient::connect(addr, "tok-a", options())
        .await
        .unwrap();
    let r0 = device
        .sign_reading(
            1,
            "encounters",
            payload(1, &[7, 8], "PLAINTEXT-MARKER-zero"),
        )
        .unwrap();
    let r1 = device
        .sign_reading(2, "encounters", payload(2, &[7], "PLAINTEXT-MARKER-one"))
        .unwrap();
    let a0 = client.publish_reading(&r0).await.unwrap();
    assert!(a0.accepted, "{a0:?}");
    assert_eq!((a0.seq, a0.record_id), (Some(0), Some(0)));
    let a1 = client.publish_reading(&r1).await.unwrap();
    assert_eq!((a1.accepted, a1.record_id), (true, Some(1)));
    // A retry of the last reading (its ack lost) is accepted again, not stored twice.
    let again = client.publish_reading(&r1).await.unwrap();
    assert_eq!((again.accepted, again.record_id), (true, Some(1)));

    // Each record carries the indexer's keys: its own RPI and the RPIs heard.
    let store = edge.edge_store().unwrap().clone();
    let keys = |id| store.get(id).unwrap().unwrap().meta.keys;
    assert_eq!(
        keys(0),
        IndexKeys {
            own: vec![1; 16],
            observed: vec![vec![7; 16], vec![8; 16]]
        }
    );
    assert_eq!(
        keys(1),
        IndexKeys {
            own: vec![2; 16],
            observed: vec![vec![7; 16]]
        }
    );
    assert_eq!(store.get(1).unwrap().unwrap().reading, r1);

    // Encrypted at rest: the plaintext is nowhere in the file (nor the device key).
    let raw = std::fs::read(store.path()).unwrap();
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(
        !has(b"PLAINTEXT-MARKER"),
        "plaintext found in the redb file"
    );
    assert!(
        has(&[7; 16]),
        "index keys are stored in the clear, by design"
    );
    let data_key = home.path().join("data/edge-store.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Refusals, each acknowledged with its reason.
    let mut tampered = device
        .sign_reading(3, "encounters", payload(3, &[], "x"))
        .unwrap();
    tampered.payload[10] ^= 1;
    let mut stranger = DeviceIdentity::new(Keypair::from_seed([61; 32]), 0);
    let unregistered = stranger
        .sign_reading(1, "encounters", payload(4, &[], "x"))
        .unwrap();
    let mut replayer = DeviceIdentity::new(device_key.clone(), 0);
    let replayed = replayer
        .sign_reading(9, "encounters", payload(5, &[], "x"))
        .unwrap();
    let wrong_kind = device
        .sign_reading(4, "temperature", b"36.6".to_vec())
        .unwrap();
    let bad_payload = device.sign_reading(5, "encounters", vec![9]).unwrap();
    let cases: Vec<(&str, Vec<u8>, RefusalReason)> = vec![
        (
            "encounters",
            tampered.to_bytes(),
            RefusalReason::BadSignature,
        ),
        (
            "encounters",
            unregistered.to_bytes(),
            RefusalReason::Unregistered,
        ),
        ("encounters", replayed.to_bytes(), RefusalReason::Replayed),
        ("encounters", vec![0xAB; 5_000], RefusalReason::TooLarge),
        (
            "encounters",
            b"garbage, not a reading".to_vec(),
            RefusalReason::Malformed,
        ),
        (
            "encounters",
            wrong_kind.to_bytes(),
            RefusalReason::KindMismatch,
        ),
        (
            "encounters",
            bad_payload.to_bytes(),
            RefusalReason::BadPayload,
        ),
    ];
    for (kind, bytes, reason) in &cases {
        let ack = client.publish_raw(kind, bytes.clone()).await.unwrap();
        assert!(!ack.accepted && !ack.retry, "{reason}: {ack:?}");
        assert_eq!(ack.reason, Some(*reason));
    }

    // The broker survives a client speaking garbage, and keeps serving.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xFF; 512]).await.unwrap();
        let _ = s.shutdown().await;
    }
    let r2 = device
        .sign_reading(6, "encounters", payload(6, &[9], "after"))
        .unwrap();
    let a2 = client.publish_reading(&r2).await.unwrap();
    assert!(a2.accepted, "{a2:?}");

    let text = edge_client.metrics().await.unwrap();
    for (_, _, reason) in &cases {
        let line = format!("trustedge_edge_mqtt_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), 1, "{line}\n{text}");
    }
    assert_eq!(metric(&text, "trustedge_edge_mqtt_accepted_total"), 4);
    assert_eq!(metric(&text, "trustedge_edge_mqtt_duplicates_total"), 1);
    assert_eq!(
        metric(&text, "trustedge_edge_mqtt_received_total"),
        4 + cases.len() as u64
    );

    // Anchoring lands on the ledger, and a record proof verifies against the anchor.
    wait_until("the batch to be anchored", async || {
        let t = edge_client.metrics().await.unwrap();
        store.pending_batches().unwrap().is_empty()
            && metric(&t, "trustedge_edge_anchors_committed_total") >= 1
            && store.stats().unwrap().unbatched == 0
    })
    .await;
    let (status, body) = get_raw(&edge.url(), "/v1/edge/records/1/proof").await;
    assert_eq!(status, 200, "{body}");
    let resp: EdgeRecordProofResponse = serde_json::from_value(body).unwrap();
    assert!(resp.anchored_height.is_some());
    assert_eq!(resp.proof.record, record_digest(&r1.to_bytes()).0.to_vec());
    let snap = validator.node.ledger().store().snapshot().unwrap();
    let anchor = trustedge_contracts::anchor::batch_by_root(&snap, &resp.merkle_root)
        .unwrap()
        .expect("anchored on the validator's ledger");
    assert_eq!(anchor.count, resp.count);
    resp.proof.verify(&anchor).unwrap();
    let mut forged = resp.proof.clone();
    forged.record = record_digest(&r0.to_bytes()).0.to_vec();
    assert!(forged.verify(&anchor).is_err());
    let (status, _) = get_raw(&edge.url(), "/v1/edge/records/999/proof").await;
    assert_eq!(status, 404);
    let (status, _) = get_raw(&validator.url(), "/v1/edge/records/0/proof").await;
    assert_eq!(status, 404);

    // Restart: records, indexes and sequence numbers survive.
    client.disconnect().await;
    drop(store);
    edge.shutdown().await.unwrap();
    let edge = start_edge(home.path()).await;
    let store = edge.edge_store().unwrap().clone();
    assert_eq!(store.get(0).unwrap().unwrap().reading, r0);
    assert_eq!(
        store.get(2).unwrap().unwrap().meta.keys.observed,
        [vec![9; 16]]
    );
    let mut client = DeviceClient::connect(edge.mqtt_addr().unwrap(), "tok-a", options())
        .await
        .unwrap();
    let ack = client.publish_reading(&r0).await.unwrap();
    assert_eq!(ack.reason, Some(RefusalReason::Replayed));
    let r3 = device
        .sign_reading(7, "encounters", payload(7, &[], "x"))
        .unwrap();
    let a3 = client.publish_reading(&r3).await.unwrap();
    assert_eq!((a3.accepted, a3.record_id), (true, Some(3)));

    // Pipelined: 70 readings (more than two windows) answered in order, one replayed
    // reading and one with a broken signature in the middle refused without holding back
    // the others (the edge verifies a drained batch's signatures together), and a repeat
    // of the window's last accepted reading acknowledged as that record.
    let mut batch: Vec<SignedReading> = (0..40u64)
        .map(|i| {
            device
                .sign_reading(100 + i, "encounters", payload(i as u8, &[1], "p"))
                .unwrap()
        })
        .collect();
    batch[20].payload[3] ^= 1; // its signature no longer verifies
    batch.push(r3.clone()); // seq 7 < 139: replayed
    batch.extend((40..69u64).map(|i| {
        device
            .sign_reading(100 + i, "encounters", payload(i as u8, &[1], "p"))
            .unwrap()
    }));
    batch.push(batch[69].clone()); // the last reading again: a duplicate
    let acks = client.publish_readings(&batch).await;
    assert_eq!(acks.len(), 71);
    let acks: Vec<_> = acks.into_iter().map(Result::unwrap).collect();
    for (i, a) in acks.iter().enumerate() {
        match i {
            20 => assert_eq!(a.reason, Some(RefusalReason::BadSignature), "{a:?}"),
            40 => assert_eq!(a.reason, Some(RefusalReason::Replayed), "{a:?}"),
            _ => assert!(a.accepted, "{i}: {a:?}"),
        }
    }
    let ids: Vec<u64> = acks.iter().filter_map(|a| a.record_id).collect::<Vec<_>>();
    // 68 new records after id 3, in order; the duplicate names the last one again.
    let expected: Vec<u64> = (4..72).chain([71]).collect();
    assert_eq!(ids, expected);
    client.disconnect().await;
    drop(store);
    edge.shutdown().await.unwrap();
    validator.stop().await;
}

/// Holds every reading in the indexer until `open`: the edge's ingest worker stalls.
struct GateIndexer {
    entered: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl ReadingIndexer for GateIndexer {
    fn index_keys(&self, _client: &str, _r: &SignedReading) -> Result<IndexKeys, String> {
        use std::sync::atomic::Ordering;
        self.entered.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + WAIT;
        while !self.open.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(IndexKeys::default())
    }
}

/// A full ingest queue answers each message it drops with a `busy` refusal to retry, at
/// once, instead of leaving the device to wait out its acknowledgement timeout; what was
/// queued before is still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_ingest_queue_answers_busy_at_once() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    use std::sync::atomic::{AtomicBool, Ordering};
    use trustedge_node::mqtt::{Ack, INGEST_BATCH, INGEST_QUEUE, topics};

    let (_validator, device_key, height, home) =
        validator_device_and_edge_home(MqttConfig::new("127.0.0.1:0")).await;
    let entered = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicBool::new(false));
    let edge = start_node(
        home.path(),
        NodeOptions {
            indexer: Arc::new(GateIndexer {
                entered: entered.clone(),
                open: open.clone(),
            }),
            ..NodeOptions::default()
        },
    )
    .await
    .unwrap();
    let edge_client = trustedge_node::Client::new(edge.url());
    reach_height(&edge_client, height).await;
    let addr = edge.mqtt_addr().unwrap();

    // A valid reading stalls the ingest worker in the indexer.
    let mut device = DeviceIdentity::new(device_key, 0);
    let held = device
        .sign_reading(1, "encounters", payload(1, &[], "held"))
        .unwrap();
    let mut client = DeviceClient::connect(
        addr,
        "tok-held",
        DeviceClientOptions {
            ack_timeout: WAIT,
            ..options()
        },
    )
    .await
    .unwrap();
    let first = tokio::spawn(async move { client.publish_reading(&held).await });
    wait_until("the ingest worker to stall", async || {
        entered.load(Ordering::SeqCst)
    })
    .await;

    // A flood beyond the queue's room: the overflow is answered busy.
    let mut opts = MqttOptions::new("tok-flood", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (flood, mut eventloop) = AsyncClient::new(opts, 64);
    flood
        .subscribe(topics::ack("tok-flood"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let n = INGEST_QUEUE + INGEST_BATCH + 64;
    let publisher = {
        let flood = flood.clone();
        tokio::spawn(async move {
            for i in 0..n {
                let body = format!("not a reading {i}").into_bytes();
                let topic = topics::upload("encounters", "tok-flood");
                if flood
                    .publish(topic, QoS::AtLeastOnce, false, body)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let started = Instant::now();
    let busy = loop {
        assert!(started.elapsed() < WAIT, "no busy acknowledgement came");
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("the flood's connection went quiet")
            .unwrap();
        if let Event::Incoming(Packet::Publish(p)) = event {
            let ack: Ack = serde_json::from_slice(&p.payload).unwrap();
            if ack.reason == Some(RefusalReason::Busy) {
                break ack;
            }
        }
    };
    assert!(!busy.accepted && busy.retry, "{busy:?}");
    // Answered while the worker is still stalled: not after a timeout, not by the worker.
    assert!(!open.load(Ordering::SeqCst));
    let metrics = edge_client.metrics().await.unwrap();
    assert!(
        metric(
            &metrics,
            "trustedge_edge_mqtt_refused_total{reason=\"busy\"}"
        ) > 0,
        "{metrics}"
    );

    // Released, the stalled reading is stored and acknowledged.
    open.store(true, Ordering::SeqCst);
    let ack = first.await.unwrap().unwrap();
    assert!(ack.accepted, "{ack:?}");
    publisher.abort();
}
