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
    mut stop: watch::Receiver<bool>,
) {
    let Some(first) = nodes.first().cloned() else {
        return;
    };
    let mut signers = Vec::new();
    for (org, classes) in REGISTRARS {
        let Some(key) = net.admin(org) else { continue };
        match Signer::new(org, key.clone(), &first.client).await {
            Ok(s) => signers.push((s, *classes)),
            Err(e) => shared.event(format!("!! cannot read the nonce of {org}: {e}")),
        }
    }
    if signers.is_empty() {
        shared.event("!! no organisation admin keys: no devices are registered".into());
        return;
    }
    let per_tick = (rate as usize).div_ceil(4).max(1);
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
        let n_signers = signers.len();
        for i in 0..per_tick {
            let k = (round + i) % n_signers;
            let (signer, classes) = &mut signers[k];
            let class = classes[(round / n_signers + i) % classes.len()];
            let device = crate::keys::generate();
            let call = DevicesCall::Register {
                key: device.public(),
                class,
                model: model_of(class).to_string(),
                attributes: vec![
                    DeviceAttribute {
                        key: "firmware".into(),
                        value: "1.4.2".into(),
                    },
                    DeviceAttribute {
                        key: "protocol".into(),
                        value: "ble5".into(),
                    },
                ],
            };
            txs.push(signer.sign(
                &head,
                Payload::new(trustedge_contracts::devices::NAME, &call),
            ));
            devices.push((k, class, device));
        }
        round += per_tick;
        // Spread the load over every node: followers forward to the validator.
        let node = &nodes[round / per_tick % nodes.len()];
        match node.client.submit_batch(&txs).await {
            Ok(resp) => {
                let mut resync = Vec::new();
                for ((item, (k, class, device)), _) in resp.results.iter().zip(devices).zip(&txs) {
                    match &item.error {
                        None => {
                            let mut s = shared.stats();
                            s.submitted += 1;
                            let list = s.devices.entry(class_name(class)).or_default();
                            if list.len() < MAX_DEVICES_PER_CLASS {
                                list.push(device);
                            }
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
    let labels: Vec<String> = signers.iter().map(|(s, _)| s.label.clone()).collect();
    tracing::debug!(?labels, "registrations stopped");
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

/// A reading as a device signs it: canonical (device address, time, record type, value).
pub(super) fn reading(
    device: &Keypair,
    time_ms: u64,
    record_type: &str,
    value_milli: i64,
) -> Vec<u8> {
    let body = encode(&(
        Address::of_device(&device.public()),
        time_ms,
        record_type,
        value_milli,
    ));
    let sig = device.sign(&body);
    encode(&(body, sig))
}

/// An anchored batch waiting for its transaction to commit, with one record to prove.
pub(super) struct PendingAnchor {
    pub(super) tx: Hash,
    pub(super) root: Hash,
    pub(super) record: Vec<u8>,
    pub(super) proof: MerkleProof,
}

pub(super) async fn anchoring(
    shared: Arc<Shared>,
    net: Network,
    nodes: Vec<DemoNode>,
    mut stop: watch::Receiver<bool>,
) {
    // The edge node's own key is an operator of the edge-operator organisation.
    let edge = nodes
        .iter()
        .find(|n| n.role == NodeRole::Edge)
        .or(nodes.first())
        .cloned();
    let Some(edge) = edge else { return };
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
    let mut signer = match Signer::new("edge", key, &edge.client).await {
        Ok(s) => s,
        Err(e) => {
            shared.event(format!("!! cannot read the edge key's nonce: {e}"));
            return;
        }
    };
    let mut last_to: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pending: VecDeque<PendingAnchor> = VecDeque::new();
    let mut tick: u64 = 0;
    while !wait_or_stop(&mut stop, ANCHOR_EVERY).await {
        tick += 1;
        prove_committed(&shared, &edge.client, &mut pending).await;
        let head = match remote::head(&edge.client).await {
            Ok(h) => h,
            Err(_) => continue,
        };
        let now = init::now_ms();
        for (record_type, class) in RECORD_TYPES {
            let devices: Vec<Keypair> = shared
                .stats()
                .devices
                .get(&class_name(*class))
                .map(|d| {
                    d.iter()
                        .rev()
                        .take(MAX_REPORTING_DEVICES)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if devices.is_empty() {
                continue;
            }
            let from = last_to
                .get(record_type)
                .map_or(now.saturating_sub(2_000), |t| t + 1);
            if from >= now {
                continue;
            }
            // Each device reports a few readings spread over the window.
            let mut records = Vec::new();
            for (i, d) in devices.iter().enumerate() {
                for j in 0..3u64 {
                    let t = from + (now - from) * (j + 1) / 4;
                    let value = 36_500 + ((i as i64 * 37 + j as i64 * 11 + tick as i64) % 900);
                    records.push(reading(d, t, record_type, value));
                }
            }
            let tree = MerkleTree::from_leaves(
                records
                    .iter()
                    .map(|r| trustedge_contracts::record_leaf(r).0),
            );
            let root = tree.root();
            let sample = (tick as usize) % records.len();
            let Some(proof) = tree.proof(sample as u64) else {
                continue;
            };
            let call = AnchorCall::AnchorBatch {
                record_type: record_type.to_string(),
                merkle_root: root,
                count: records.len() as u64,
                from_ms: from,
                to_ms: now,
            };
            let tx = signer.sign(
                &head,
                Payload::new(trustedge_contracts::anchor::NAME, &call),
            );
            match remote::call(edge.client.submit_tx(&tx)).await {
                Ok(id) => {
                    last_to.insert(record_type, now);
                    shared.stats().batches_submitted += 1;
                    shared.stats().submitted += 1;
                    pending.push_back(PendingAnchor {
                        tx: id,
                        root,
                        record: records.swap_remove(sample),
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

/// Proves one record of each committed batch against the root the ledger holds.
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
        match anchored {
            Some(a) => match trustedge_contracts::verify_record_anchored(&p.record, &p.proof, &a) {
                Ok(()) => shared.stats().records_proven += 1,
                Err(e) => {
                    shared.problem(format!("record proof against batch {} failed: {e}", a.id))
                }
            },
            None => {
                // Committed but failed (e.g. a refused batch): nothing to prove against.
            }
        }
    }
    *pending = keep;
}
