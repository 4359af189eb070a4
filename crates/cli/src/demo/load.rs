//! Synthetic load: device registrations by the founding organisations, and the edge node
//! anchoring Merkle roots of batches of signed device readings.

use super::*;

/// Which founding organisation registers which device classes.
pub(super) const REGISTRARS: &[(&str, &[DeviceClass])] = &[
    (
        "hospital-1",
        &[DeviceClass::Wearable, DeviceClass::BleBeacon],
    ),
    (
        "clinic-1",
        &[DeviceClass::Thermometer, DeviceClass::Wearable],
    ),
    ("laboratory-1", &[DeviceClass::AirQualitySensor]),
    ("distributor-1", &[DeviceClass::ColdChainLogger]),
    (
        "manufacturer-1",
        &[DeviceClass::ColdChainLogger, DeviceClass::Thermometer],
    ),
];

pub(super) fn class_name(c: DeviceClass) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{c:?}"))
}

pub(super) fn model_of(c: DeviceClass) -> &'static str {
    match c {
        DeviceClass::Wearable => "VitalBand 3",
        DeviceClass::Thermometer => "ThermoScan IR-7",
        DeviceClass::BleBeacon => "ProxTag BLE-5",
        DeviceClass::AirQualitySensor => "AirSense CO2-PM",
        DeviceClass::ColdChainLogger => "ColdTrack 2",
        _ => "Generic IoMT",
    }
}

pub(super) async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        r = stop.changed() => r.is_err() || *stop.borrow(),
        () = tokio::time::sleep(d) => false,
    }
}

pub(super) async fn registrations(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    rate: u32,
    devices_out: mpsc::Sender<(DeviceClass, DeviceIdentity)>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(first) = nodes.first().cloned() else {
        return;
    };
    let mut signers = Vec::new();
    for (org, classes) in REGISTRARS {
        let Some(key) = net.admin(org) else { continue };
        match Signer::new(key.clone(), &first.client).await {
            Ok(s) => signers.push((s, *classes)),
            Err(e) => shared.event(format!("!! cannot read the nonce of {org}: {e}")),
        }
    }
    if signers.is_empty() {
        shared.event("!! no organisation admin keys: no devices are registered".into());
        return;
    }
    let per_tick = (rate as usize).div_ceil(4).max(1);
    let n_signers = signers.len();
    let attributes = vec![
        DeviceAttribute {
            key: "firmware".into(),
            value: "1.4.2".into(),
        },
        DeviceAttribute {
            key: "protocol".into(),
            value: "ble5".into(),
        },
    ];
    let mut round = 0usize;
    while !wait_or_stop(&mut stop, REGISTER_TICK).await {
        let head = match remote::head(&first.client).await {
            Ok(h) => h,
            Err(e) => {
                shared.event(format!("!! status: {e}"));
                continue;
            }
        };
        let mut txs = Vec::with_capacity(per_tick);
        let mut devices = Vec::with_capacity(per_tick);
        for i in 0..per_tick {
            let k = (round + i) % n_signers;
            let (signer, classes) = &mut signers[k];
            let class = classes[(round / n_signers + i) % classes.len()];
            let device = DeviceIdentity::generate(&mut rand_core::OsRng);
            let payload = match device.registration(class, model_of(class), attributes.clone()) {
                Ok(p) => p,
                Err(e) => {
                    shared.problem(format!(
                        "device description refused by the device crate: {e}"
                    ));
                    continue;
                }
            };
            txs.push(signer.sign(&head, payload));
            devices.push((k, class, device));
        }
        round += per_tick;
        // Spread the load over every node: followers forward to the validator.
        let node = &nodes[round / per_tick % nodes.len()];
        match node.client.submit_batch(&txs).await {
            Ok(resp) => {
                let mut resync = Vec::new();
                for (item, (k, class, device)) in resp.results.iter().zip(devices) {
                    match &item.error {
                        None => {
                            shared.stats().submitted += 1;
                            // The anchoring task keeps a bounded set; extras are dropped.
                            let _ = devices_out.try_send((class, device));
                        }
                        Some(e) => {
                            shared.refused(&e.code, false);
                            shared.event(format!(
                                "!! registration refused [{}]: {}",
                                e.code,
                                clip(&e.message, 80)
                            ));
                            resync.push(k);
                        }
                    }
                }
                for k in resync {
                    signers[k].0.resync(&first.client).await;
                }
            }
            Err(e) => {
                let f = ApiFailure::from(e);
                shared.refused(&f.code, false);
                shared.event(format!(
                    "!! batch to {} refused [{}]: {}",
                    node.name,
                    f.code,
                    clip(&f.message, 80)
                ));
                for (s, _) in &mut signers {
                    s.resync(&first.client).await;
                }
            }
        }
    }
}

// The edge anchors batches of signed readings.

/// Record types the edge anchors, and the device class that produces each.
pub(super) const RECORD_TYPES: &[(&str, DeviceClass)] = &[
    ("vital_signs", DeviceClass::Wearable),
    ("body_temperature", DeviceClass::Thermometer),
    ("proximity", DeviceClass::BleBeacon),
    ("air_quality", DeviceClass::AirQualitySensor),
    ("cold_chain", DeviceClass::ColdChainLogger),
];

/// An anchored batch waiting for its transaction to commit, with one record to prove.
pub(super) struct PendingAnchor {
    pub(super) tx: Hash,
    pub(super) root: Hash,
    pub(super) proof: RecordProof,
}

/// Devices that report readings, by class, oldest first; bounded.
#[derive(Default)]
struct Fleet {
    by_class: BTreeMap<String, VecDeque<DeviceIdentity>>,
}

impl Fleet {
    fn add(&mut self, class: DeviceClass, d: DeviceIdentity) {
        let list = self.by_class.entry(class_name(class)).or_default();
        list.push_back(d);
        while list.len() > MAX_DEVICES_PER_CLASS {
            list.pop_front();
        }
    }
}

pub(super) async fn anchoring(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    mut devices_in: mpsc::Receiver<(DeviceClass, DeviceIdentity)>,
    mut stop: watch::Receiver<bool>,
) {
    // The edge node's own key is an operator of the edge-operator organisation.
    let edge = nodes
        .iter()
        .find(|n| n.role == NodeRole::Edge)
        .or(nodes.first())
        .cloned();
    let Some(edge) = edge else {
        return;
    };
    let key = net
        .nodes
        .iter()
        .find(|n| n.role == NodeRole::Edge)
        .map(|n| n.key.clone())
        .or_else(|| net.admin(init::EDGE_OPERATOR_ORG).cloned());
    let Some(key) = key else {
        shared.event("!! no edge-operator key: nothing is anchored".into());
        return;
    };
    let mut signer = match Signer::new(key, &edge.client).await {
        Ok(s) => s,
        Err(e) => {
            shared.event(format!("!! cannot read the edge key's nonce: {e}"));
            return;
        }
    };
    let mut fleet = Fleet::default();
    let mut last_to: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pending: VecDeque<PendingAnchor> = VecDeque::new();
    let mut tick: u64 = 0;
    while !wait_or_stop(&mut stop, ANCHOR_EVERY).await {
        tick += 1;
        while let Ok((class, d)) = devices_in.try_recv() {
            fleet.add(class, d);
        }
        prove_committed(&shared, &edge.client, &mut pending).await;
        let head = match remote::head(&edge.client).await {
            Ok(h) => h,
            Err(_) => continue,
        };
        let now = init::now_ms();
        for (record_type, class) in RECORD_TYPES {
            let Some(devices) = fleet.by_class.get_mut(&class_name(*class)) else {
                continue;
            };
            let from = last_to
                .get(record_type)
                .map_or(now.saturating_sub(2_000), |t| t + 1);
            if from >= now {
                continue;
            }
            // Signing and checking readings is CPU work: keep it off the async workers' queue.
            let sealed = match tokio::task::block_in_place(|| {
                collect_readings(record_type, devices, from, now, tick)
            }) {
                Ok(s) => s,
                Err(e) => {
                    shared.problem(format!("edge batch of {record_type}: {e}"));
                    continue;
                }
            };
            let sample = tick % sealed.count();
            let Some(proof) = sealed.proof(sample) else {
                continue;
            };
            let tx = signer.sign(&head, sealed.payload());
            match remote::call(edge.client.submit_tx(&tx)).await {
                Ok(id) => {
                    last_to.insert(record_type, sealed.to_ms());
                    let mut s = shared.stats();
                    s.batches_submitted += 1;
                    s.submitted += 1;
                    drop(s);
                    pending.push_back(PendingAnchor {
                        tx: id,
                        root: sealed.merkle_root(),
                        proof,
                    });
                    while pending.len() > 64 {
                        pending.pop_front();
                    }
                }
                Err(e) => {
                    shared.refused(&e.code, false);
                    shared.event(format!(
                        "!! anchor refused [{}]: {}",
                        e.code,
                        clip(&e.message, 80)
                    ));
                    signer.resync(&edge.client).await;
                }
            }
        }
    }
}

/// The newest devices of a class each sign two readings in `(from, now]`; the edge checks
/// every signature, as it would for readings arriving over the air, and seals the batch.
fn collect_readings(
    record_type: &str,
    devices: &mut VecDeque<DeviceIdentity>,
    from: u64,
    now: u64,
    tick: u64,
) -> anyhow::Result<SealedBatch> {
    let mut batch = RecordBatch::new(record_type, (MAX_REPORTING_DEVICES * 2) as u64)?;
    for (i, d) in devices
        .iter_mut()
        .rev()
        .take(MAX_REPORTING_DEVICES)
        .enumerate()
    {
        for j in 0..2u64 {
            let t = from + (now - from) * (j + 1) / 3;
            let value_milli = 36_500 + ((i as i64 * 37 + j as i64 * 11 + tick as i64) % 900);
            let reading = d.sign_reading(t, record_type, value_milli.to_le_bytes().to_vec())?;
            reading.verify()?;
            batch.push(reading.time_ms, reading.to_bytes())?;
        }
    }
    Ok(batch.seal()?)
}

/// Proves one record of each committed batch against the anchor the ledger holds.
pub(super) async fn prove_committed(
    shared: &Shared,
    client: &Client,
    pending: &mut VecDeque<PendingAnchor>,
) {
    let mut keep = VecDeque::new();
    while let Some(p) = pending.pop_front() {
        let committed = matches!(
            remote::call(client.tx_status(&p.tx)).await,
            Ok(trustedge_chain::TxStatus::Committed(_))
        );
        if !committed {
            keep.push_back(p);
            continue;
        }
        let path = format!("root/{}", p.root.to_hex());
        let anchored: Option<AnchorRecord> = remote::call(client.query("anchor", &path, &[]))
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok());
        // A committed but failed anchor has no record to prove against.
        if let Some(a) = anchored {
            match p.proof.verify(&a) {
                Ok(()) => shared.stats().records_proven += 1,
                Err(e) => {
                    shared.problem(format!("record proof against batch {} failed: {e}", a.id))
                }
            }
        }
    }
    *pending = keep;
}
