//! `trustedge tracing simulate --devices N --seed S [--json]`: contact tracing end to end,
//! reproducibly, on loopback.
//!
//! Lays out a network with `trustedge init --tracing-edges` in a temporary home, starts
//! its validator and its edge (MQTT + `[tracing]`) in this process, registers N simulated
//! phones ([`trustedge_node::devsim`]) and plays a seeded day of proximity at one step a
//! minute: device 0 is the case; about a tenth of the others are close contacts (20–60
//! minutes within 0.5–1.8 m), a tenth are far (30–90 minutes at 12–20 m), a tenth are
//! short encounters (3–8 minutes within 1.5 m); every other device, and each of these too,
//! meets one random non-case device. Everyone meets in an open-plan office (the channel
//! model's `Office`), with per-link carry, body and orientation drawn from the seed.
//! Phones upload their encounters over MQTT, the laboratory's clinician certifies the
//! case's keys, the case asks the edge to relay them, and the command waits for the
//! notices the edge pushes over MQTT.
//!
//! Truth: a device is a true close contact when it spent at least 15 minutes within 2 m
//! of the case in the schedule. Latency: from the case's relay request to the first
//! notice naming one of a device's RPIs arriving at that device. Pure GAEN mode: each
//! device matches the signed export of the day (fetched from the edge and verified)
//! against its own sightings and scores its own encounters as the edge would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_contracts::DevicesCall;
use trustedge_contracts::diagnosis::{VerificationCertificate, keys_digest};
use trustedge_distance::channel::{DEVICE_MODELS, DeviceModel, Environment, LinkContext};
use trustedge_edge::exposure::{DeviceLink, EngineConfig, ExposureEngine};
use trustedge_execution::DeviceClass;
use trustedge_node::devsim::{Heard, Population, SimPhone};
use trustedge_node::mqtt::DeviceClientOptions;
use trustedge_node::tracing_worker::{parse_notice, parse_relay_outcome};
use trustedge_node::{Client, NodeConfig, NodeOptions, RunningNode, start_with_config};
use trustedge_tracing::matching::{DEFAULT_SKEW_S, match_keys};
use trustedge_tracing::upload::uploads_by_own_rpi;
use trustedge_types::{Keypair, Payload, TxBody};

use crate::init::{self, InitArgs};

/// Arguments of `trustedge tracing simulate`.
#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Number of simulated phones (device 0 is the confirmed case).
    #[arg(long, default_value_t = 50)]
    pub devices: usize,
    /// Seed of the scenario, the radio channel and the phones' keys.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for notices after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
}

/// Most phones a run simulates.
const MAX_DEVICES: usize = 20_000;
/// Minutes of the simulated day.
const DAY_MINUTES: u64 = 1440;
/// The close-contact rule the truth is judged by: minutes ...
const CLOSE_MINUTES: u64 = 15;
/// ... within this distance, m.
const CLOSE_DISTANCE_M: f64 = 2.0;
/// Phones uploading at once.
const UPLOAD_CONCURRENCY: usize = 64;

/// One meeting of two phones.
#[derive(Clone, Copy, Debug)]
struct Meeting {
    a: usize,
    b: usize,
    start_min: u64,
    minutes: u64,
    distance_m: f64,
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n.max(1)
}

/// The seeded schedule: meetings, and the true close contacts of device 0.
fn schedule(n: usize, rng: &mut ChaCha8Rng) -> (Vec<Meeting>, BTreeSet<usize>) {
    let mut others: Vec<usize> = (1..n).collect();
    // Fisher-Yates with the seeded RNG.
    for i in (1..others.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        others.swap(i, j);
    }
    let tenth = (n - 1) / 10;
    let n_close = tenth.max(1).min(n - 1);
    let mut meetings = Vec::new();
    let at = |rng: &mut ChaCha8Rng, a, minutes: (u64, u64), d: (f64, f64)| {
        let minutes = minutes.0 + below(rng, minutes.1 - minutes.0 + 1);
        Meeting {
            a,
            b: 0,
            start_min: 8 * 60 + below(rng, 12 * 60 - minutes),
            minutes,
            distance_m: uniform(rng, d.0, d.1),
        }
    };
    for (k, &d) in others.iter().enumerate() {
        let m = if k < n_close {
            at(rng, d, (20, 60), (0.5, 1.8))
        } else if k < n_close + tenth {
            at(rng, d, (30, 90), (12.0, 20.0))
        } else if k < n_close + 2 * tenth {
            at(rng, d, (3, 8), (0.5, 1.5))
        } else {
            continue;
        };
        meetings.push(m);
    }
    // Everyone but the case meets one random other phone.
    if n > 2 {
        for &d in &others {
            let mut peer = d;
            while peer == d {
                peer = 1 + below(rng, n as u64 - 1) as usize;
            }
            let minutes = 5 + below(rng, 56);
            meetings.push(Meeting {
                a: d,
                b: peer,
                start_min: below(rng, DAY_MINUTES - minutes),
                minutes,
                distance_m: uniform(rng, 0.5, 5.0),
            });
        }
    }
    let mut close_minutes: BTreeMap<usize, u64> = BTreeMap::new();
    for m in &meetings {
        if m.b == 0 && m.distance_m <= CLOSE_DISTANCE_M {
            *close_minutes.entry(m.a).or_default() += m.minutes;
        }
    }
    let truth = close_minutes
        .into_iter()
        .filter(|(_, mins)| *mins >= CLOSE_MINUTES)
        .map(|(d, _)| d)
        .collect();
    (meetings, truth)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn progress(len: u64, json: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:<28} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    // The bar draws on stderr only when it is a terminal; JSON goes to stdout either way.
    let _ = json;
    bar
}

/// Runs `trustedge tracing simulate`.
pub async fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    if args.devices < 2 || args.devices > MAX_DEVICES {
        anyhow::bail!("--devices must be 2..={MAX_DEVICES}");
    }
    let home = std::env::temp_dir().join(format!(
        "trustedge-tracing-sim-{}-{}",
        std::process::id(),
        args.seed
    ));
    if home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("cannot clear {}", home.display()))?;
    }
    let result = simulate(args, home.clone()).await;
    let _ = std::fs::remove_dir_all(&home);
    let out = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} devices: {} true close contacts, {} notified (precision {:.3}, recall {:.3})",
            out["devices"],
            out["true_close_contacts"],
            out["notified"],
            out["precision"].as_f64().unwrap_or(0.0),
            out["recall"].as_f64().unwrap_or(0.0),
        );
        println!(
            "latency relay -> notice on device: p50 {} ms, p95 {} ms, max {} ms",
            out["latency_ms"]["p50"], out["latency_ms"]["p95"], out["latency_ms"]["max"]
        );
        println!(
            "pure GAEN mode agrees: {}; ledger transactions: {}; wall {} s",
            out["pure_gaen_mode_agrees"], out["ledger_txs"], out["wall_s"]
        );
    }
    Ok(())
}

async fn start(home: PathBuf, mut config: NodeConfig) -> anyhow::Result<RunningNode> {
    // Any free port: nothing outside this process talks to these nodes.
    config.api_listen = "127.0.0.1:0".into();
    config.block_interval_ms = 20;
    config.empty_block_interval_ms = 1000;
    config.follow_interval_ms = 20;
    if let Some(m) = config.mqtt.as_mut() {
        m.listen = "127.0.0.1:0".into();
        m.anchor_interval_ms = 1000;
    }
    if let Some(t) = config.tracing.as_mut() {
        t.poll_interval_ms = 20;
    }
    start_with_config(&home, config, NodeOptions::default())
        .await
        .with_context(|| format!("cannot start the node in {}", home.display()))
}

async fn wait_committed(client: &Client, hash: &trustedge_types::Hash) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client.tx_status(hash).await? {
            trustedge_chain::TxStatus::Committed(_) => return Ok(()),
            _ if Instant::now() > deadline => anyhow::bail!("transaction {hash} not committed"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn simulate(args: &SimulateArgs, home: PathBuf) -> anyhow::Result<serde_json::Value> {
    let wall = Instant::now();
    let n = args.devices;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let chain_id = "trustedge-sim";
    let net = init::create(&InitArgs {
        validators: 1,
        edges: 1,
        clouds: 0,
        home: home.clone(),
        chain_id: chain_id.into(),
        base_port: 40_000,
        health_authorities: None,
        light_edges: false,
        tracing_edges: true,
        aerosol_edges: false,
    })?;
    let lab = crate::keys::load(&home.join("keys").join(init::LAB_CLINICIAN_KEY_FILE))?;
    let edge_admin = net
        .admin(init::EDGE_OPERATOR_ORG)
        .context("no edge operator admin")?
        .clone();
    let [v, e] = [&net.nodes[0], &net.nodes[1]];
    let validator = start(v.home.clone(), NodeConfig::load(&v.home)?).await?;
    let mut edge_config = NodeConfig::load(&e.home)?;
    edge_config.upstream = vec![validator.url()];
    let tracing_config = edge_config.tracing.clone().unwrap_or_default();
    // The devices' own scorer (pure GAEN mode) trains while the day is played.
    let scorer = {
        let c = tracing_config.clone();
        tokio::task::spawn_blocking(move || c.scorer())
    };
    let edge = start(e.home.clone(), edge_config).await?;
    let vclient = Client::new(validator.url());
    let eclient = Client::new(edge.url());
    let broker = edge.mqtt_addr().context("the edge runs no broker")?;

    // Phones and their registration by the edge operator's admin.
    let models: Vec<DeviceModel> = (0..n)
        .map(|_| DEVICE_MODELS[below(&mut rng, 12) as usize])
        .collect();
    let mut phones = Vec::with_capacity(n);
    let mut txs = Vec::with_capacity(n);
    for (i, model) in models.iter().enumerate() {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let key = Keypair::from_seed(seed);
        let mut token = [0u8; 12];
        rng.fill_bytes(&mut token);
        txs.push(
            TxBody {
                chain_id: chain_id.into(),
                signer: edge_admin.public(),
                nonce: i as u64 + 1,
                expiry_height: 1_000_000,
                payload: Payload::new(
                    "devices",
                    &DevicesCall::Register {
                        key: key.public(),
                        class: DeviceClass::Wearable,
                        model: model.name.into(),
                        attributes: vec![],
                    },
                ),
            }
            .sign(&edge_admin),
        );
        phones.push(SimPhone::new(i, key, *model, hex::encode(token))?);
    }
    let mut last = None;
    for chunk in txs.chunks(500) {
        vclient.submit_batch(chunk).await?;
        last = chunk.last().map(|t| t.hash());
    }
    if let Some(h) = last {
        wait_committed(&vclient, &h).await?;
        let height = vclient.status().await?.height;
        while eclient.status().await?.height < height {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The day.
    let (meetings, truth) = schedule(n, &mut rng);
    let now_s = init::now_ms() / 1000;
    let day = now_s / 86_400 - 2;
    let t0 = day * 86_400;
    let t_end = t0 + 60 * DAY_MINUTES;
    let mut active: Vec<Vec<usize>> = vec![Vec::new(); DAY_MINUTES as usize];
    for (k, m) in meetings.iter().enumerate() {
        for minute in m.start_min..(m.start_min + m.minutes).min(DAY_MINUTES) {
            active[minute as usize].push(k);
        }
    }
    let link_seed = args.seed;
    let link = |rx: usize, tx: usize| {
        let mut r =
            ChaCha8Rng::seed_from_u64(link_seed ^ ((rx as u64) << 32 | tx as u64).rotate_left(7));
        let mut ctx = LinkContext::random(models[tx], models[rx], &mut r);
        ctx.environment = Environment::Office;
        ctx
    };
    let mut population = Population::new(phones);
    let bar = progress(DAY_MINUTES, args.json);
    bar.set_message("day of proximity (minutes)");
    for minute in 0..DAY_MINUTES {
        let heard: Vec<Heard> = active[minute as usize]
            .iter()
            .flat_map(|&k| {
                let m = meetings[k];
                [(m.a, m.b), (m.b, m.a)].map(|(rx, tx)| Heard {
                    rx,
                    tx,
                    distance_m: m.distance_m,
                })
            })
            .collect();
        population.step(t0 + 60 * minute, &heard, link, &mut rng)?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Uploads over MQTT, UPLOAD_CONCURRENCY phones at a time.
    let options = DeviceClientOptions {
        notice_queue: 8192,
        ack_timeout: Duration::from_secs(20),
        ..DeviceClientOptions::default()
    };
    let bar = progress(n as u64, args.json);
    bar.set_message("phones uploading");
    let mut phones = std::mem::take(&mut population.phones);
    let mut uploads = 0usize;
    let mut connected = Vec::with_capacity(n);
    while !phones.is_empty() {
        let rest = phones.split_off(phones.len().min(UPLOAD_CONCURRENCY));
        let batch = std::mem::replace(&mut phones, rest);
        let mut tasks = Vec::new();
        for mut p in batch {
            let options = options.clone();
            tasks.push(tokio::spawn(async move {
                p.connect(broker, options).await?;
                let k = p.upload_encounters(t_end, t_end * 1000).await?;
                Ok::<_, trustedge_node::devsim::DevSimError>((p, k))
            }));
        }
        for t in tasks {
            let (p, k) = t.await.context("upload task")??;
            uploads += k;
            connected.push(p);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    connected.sort_by_key(|p| p.index);
    let mut phones = connected;
    let metrics = edge.metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    while metrics.tracing.uploads_held.get() < uploads as u64 {
        if Instant::now() > deadline {
            anyhow::bail!("the edge's engine did not take every upload in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The case: certified by the laboratory, relayed by the edge.
    let case_keys = phones[0].diagnosis_keys(t_end)?;
    let mut cert_id = [0u8; 16];
    rng.fill_bytes(&mut cert_id);
    let cert = VerificationCertificate::issue(
        &lab,
        chain_id,
        cert_id,
        &case_keys,
        trustedge_tracing::ReportType::ConfirmedTest,
        now_s,
        3600,
    );
    let upload_id = keys_digest(&case_keys);
    let reading = phones[0].diagnosis_reading(case_keys.clone(), cert, now_s * 1000)?;

    // Every phone listens for notices on its own task.
    let (notice_tx, mut notice_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut listeners = Vec::new();
    let confirmed_at = Instant::now();
    phones[0].publish(&reading).await?;
    for p in phones.iter_mut() {
        let Some(mut client) = p.take_client() else {
            continue;
        };
        let (i, tx, stop) = (p.index, notice_tx.clone(), stop_rx.clone());
        listeners.push(tokio::spawn(async move {
            while !*stop.borrow() {
                if let Some(msg) = client.next_notice(Duration::from_millis(100)).await {
                    let _ = tx.send((i, msg, Instant::now()));
                }
            }
            client.disconnect().await;
        }));
    }
    drop(notice_tx);
    let bar = progress(truth.len() as u64, args.json);
    bar.set_message("true contacts notified");
    let mut latency: BTreeMap<usize, u64> = BTreeMap::new();
    let mut relay = None;
    let mut last_arrival = Instant::now();
    let mut all_since: Option<Instant> = None;
    loop {
        if Instant::now() > deadline {
            break;
        }
        if all_since.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
            break;
        }
        // Once something arrived, a long silence means the edge is done.
        if !latency.is_empty() && last_arrival.elapsed() > Duration::from_secs(10) {
            break;
        }
        let Ok(Some((i, msg, at))) =
            tokio::time::timeout(Duration::from_millis(100), notice_rx.recv()).await
        else {
            continue;
        };
        if let Some(o) = parse_relay_outcome(&msg.topic, &msg.payload) {
            if o.upload_id == upload_id {
                if !o.accepted {
                    anyhow::bail!("the edge could not relay the case's keys: {o:?}");
                }
                relay = Some(o);
            }
            continue;
        }
        let Some(nm) = parse_notice(&msg.topic, &msg.payload) else {
            continue;
        };
        if phones[i].is_mine(&nm) && !latency.contains_key(&i) {
            latency.insert(i, at.duration_since(confirmed_at).as_millis() as u64);
            last_arrival = Instant::now();
            if truth.contains(&i) {
                bar.inc(1);
            }
            if all_since.is_none() && truth.iter().all(|t| latency.contains_key(t)) {
                all_since = Some(Instant::now());
            }
        }
    }
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    for l in listeners {
        let _ = l.await;
    }
    if relay.is_none() {
        anyhow::bail!("no relay outcome for the case's upload arrived");
    }
    let notified: BTreeSet<usize> = latency.keys().copied().collect();
    let hits = notified.intersection(&truth).count();
    let precision = if notified.is_empty() {
        1.0
    } else {
        hits as f64 / notified.len() as f64
    };
    let recall = if truth.is_empty() {
        1.0
    } else {
        hits as f64 / truth.len() as f64
    };
    let mut lat: Vec<u64> = latency.values().copied().collect();
    lat.sort_unstable();

    // Pure GAEN mode: the signed export of the day, matched and scored on each device.
    let http = reqwest::Client::new();
    let zip = http
        .get(format!("{}/v1/tracing/exports/{day}.zip", edge.url()))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let pem = http
        .get(format!("{}/v1/tracing/exports/public.pem", edge.url()))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let parsed = trustedge_gaen_export::parse_export_zip(&zip)?;
    let vk = trustedge_gaen_export::parse_public_key_pem(&pem)?;
    let signature_valid = parsed.verify(&vk).is_some_and(|v| v.valid);
    let scorer = scorer
        .await
        .context("training the distance model")?
        .map_err(|e| anyhow::anyhow!("distance model: {e}"))?;
    let mut gaen_exposed = BTreeSet::new();
    for p in phones.iter().skip(1) {
        let (_, index) = p.sightings.index(t_end);
        if match_keys(&parsed.keys, &index, DEFAULT_SKEW_S)
            .matches
            .is_empty()
        {
            continue;
        }
        let mut own = ExposureEngine::new(EngineConfig {
            skew_s: tracing_config.skew_s,
            ..EngineConfig::default()
        })?;
        for u in uploads_by_own_rpi(
            p.broadcaster.log(),
            p.sightings.encounters(t_end),
            p.model.name,
            p.model.tx_power_dbm as i8,
        )? {
            own.add_upload(DeviceLink([0; 32]), u)?;
        }
        if own
            .process(upload_id, &parsed.keys, &scorer, [0; 32])
            .notices()
            .count()
            > 0
        {
            gaen_exposed.insert(p.index);
        }
    }
    let gaen_agrees = signature_valid && parsed.keys == case_keys && gaen_exposed == notified;

    // Transactions on the ledger.
    let height = vclient.status().await?.height;
    let mut ledger_txs = 0usize;
    for h in 1..=height {
        ledger_txs += vclient.block(h).await?.txs.len();
    }
    edge.shutdown().await?;
    validator.shutdown().await?;
    let wall_s = wall.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "devices": n,
        "seed": args.seed,
        "uploads": uploads,
        "true_close_contacts": truth.len(),
        "notified": notified.len(),
        "notified_true": hits,
        "precision": precision,
        "recall": recall,
        "latency_ms": {
            "p50": percentile(&lat, 50.0),
            "p95": percentile(&lat, 95.0),
            "max": lat.last().copied().unwrap_or(0),
        },
        "pure_gaen_mode_agrees": gaen_agrees,
        "pure_gaen_mode_notified": gaen_exposed.len(),
        "export_signature_valid": signature_valid,
        "ledger_txs": ledger_txs,
        "wall_s": (wall_s * 100.0).round() / 100.0,
    }))
}
