//! The city simulation driven through the real stack: `trustedge simulate` and the demo.
//!
//! [`run`] generates a seeded city ([`trustedge_citysim::City`]), starts a network in this
//! process on loopback (4 validators in BFT consensus, 2 edges with MQTT + `[tracing]` +
//! `[aerosol]`, 1 cloud; see [`net`]), registers every app user's phone and every sensor
//! room's air-quality device on the ledger, and plays the city's hourly event stream
//! through them ([`play`]): encounters become sightings on the phones, signed encounter
//! uploads over MQTT to the phone's edge (by household), air readings go to the room's edge,
//! and each confirmation makes the laboratory clinician certify the case's keys and the
//! case's phone ask its edge to relay them; the edges' tracing workers publish notices that
//! come back over MQTT and are recognised by the phones' own RPI tables.
//!
//! **Accelerated clock.** The ledger checks times against its block time, which is real
//! time: keys at most 14 days old, alerts at most 14 days old, certificates issued not
//! after the block time. So the city is placed in the recent past — day 0 starts at the UTC
//! midnight `days` days before today — and played as fast as the stack allows (or at
//! `pace` simulated seconds per wall second). Certificates are issued at the real time of
//! the run; readings carry their simulated times.
//!
//! **Evaluation.** Close contacts are judged on every app-user pair-day by running the
//! edges' pure `ExposureEngine` (same settings) over the uploads the phones sent with every
//! phone's keys — evaluation only, never part of the system. Notifications are the notices
//! the phones actually received; aerosol alerts are those committed on the ledger, mapped
//! back to rooms through each room's venue secret; origin comes from the cloud's
//! `GET /v1/origin` when that endpoint exists (else `null`).

pub mod cmd;
pub mod feed;
pub mod net;
pub mod play;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use trustedge_citysim::score::{InferredCluster, PrecisionRecall, quantile, score_origins};
use trustedge_citysim::{City, CityConfig, PersonId, RiskBasis, RoomId};
use trustedge_node::Client;
use trustedge_node::mqtt::{DeviceClient, DeviceClientOptions, Notice};
use trustedge_node::tracing_worker::{parse_notice, parse_relay_outcome};
use trustedge_tracing::broadcast::MAX_ROTATION_S;
use trustedge_types::Hash;

use feed::{ChainPoint, ContactPoint};
pub use feed::{CityObserver, NoObserver};
use play::{EvalInput, Evaluator, HourWork, Outgoing, Player};

/// Seconds in a day.
const DAY_S: u64 = 86_400;

/// What to run.
#[derive(Clone, Debug)]
pub struct CityRunOptions {
    /// Seed of the city, its devices and their keys.
    pub seed: u64,
    /// People.
    pub population: u32,
    /// Simulated days.
    pub days: u32,
    /// Directory for the network's homes (created; must not hold a network already).
    pub home: PathBuf,
    /// Simulated seconds per wall second; `None` plays as fast as possible.
    pub pace: Option<f64>,
    /// Draw a progress bar over simulated hours on stderr.
    pub progress: bool,
    /// Seconds between two BLE scans of a phone (GAEN: 3.5–5 min).
    pub scan_interval_s: u64,
    /// MQTT connections per edge shared by its devices (each device always uses the same
    /// one; every reading is signed by its own device key).
    pub pool: usize,
    /// Longest wait for notices and alerts after the last hour, s.
    pub drain_timeout_s: u64,
    /// Index cases; `None`: the citysim default scaled to the population (its default is
    /// for 10,000 people).
    pub index_cases: Option<u32>,
    /// Probability a person runs the app; `None`: the citysim default.
    pub app_adoption: Option<f64>,
}

impl Default for CityRunOptions {
    fn default() -> Self {
        CityRunOptions {
            seed: 1,
            population: 10_000,
            days: 14,
            home: std::env::temp_dir().join("trustedge-city"),
            pace: None,
            progress: false,
            scan_interval_s: 240,
            pool: 16,
            drain_timeout_s: 60,
            index_cases: None,
            app_adoption: None,
        }
    }
}

/// Precision / recall / nDCF of the close-contact decision.
#[derive(Clone, Debug, Serialize)]
pub struct CloseContactMetrics {
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// nDCF (P_miss + P_false_alarm).
    pub ndcf: f64,
    /// True app-user close-contact pair-days.
    pub true_pair_days: u64,
    /// Pair-days decided close.
    pub decided_pair_days: u64,
    /// How the decisions were obtained.
    pub method: &'static str,
}

/// Latency quantiles, s.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

/// Exposure notifications received by phones.
#[derive(Clone, Debug, Serialize)]
pub struct NotificationMetrics {
    /// Of (phone, case) pairs notified, the fraction truly exposed (`null` when none was
    /// notified).
    pub precision: Option<f64>,
    /// Of true exposures (app users' close contacts of confirmed app-using cases), the
    /// fraction notified (`null` when there was none).
    pub recall: Option<f64>,
    /// Confirmation (relay request published) → first notice at the phone, wall-clock s.
    pub latency_s: Latency,
    /// True exposures.
    pub true_exposures: u64,
    /// (phone, case) pairs notified.
    pub notified_pairs: u64,
    /// Where the true exposures that were not notified were lost.
    pub missed: MissedExposures,
    /// Notices heard whose phone (own RPI) or case (upload) the driver could not name.
    pub unresolved_notices: u64,
    /// Notices the driver's listening connections dropped because their queue was full
    /// (lost to the measurement, not by the system).
    pub dropped_by_driver: u64,
    /// Notices and relay outcomes the edges gave up pushing over MQTT
    /// (`tracing_pushes_dropped`).
    pub pushes_dropped_by_edges: u64,
    /// Committed notices the edges pushed after their own step: late commits, refused
    /// pushes, restarts (`tracing_notices_repushed`).
    pub repushed_by_edges: u64,
    /// Whether the drain ended at its limit (`--drain-s`) with the edges still working:
    /// notices still on their way were not counted.
    pub drain_timed_out: bool,
}

/// The true exposures no notice reached, by where they were lost. The evaluation engine
/// (the edges' scorer over every upload, see [`CloseContactMetrics::method`]) tells the
/// two apart: what it judged close, the edges should have notified.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MissedExposures {
    /// No pair-day of the case's window was judged close: lost to distance estimation.
    pub not_judged_close: u64,
    /// Judged close on a day of the case's window, yet no notice reached the phone: lost
    /// between the edges' matching and the phone.
    pub judged_close_not_delivered: u64,
}

/// Aerosol alerts on the ledger against the truth's elevated-risk windows.
///
/// Predicted: the sensor-room windows alerted `elevated_risk` or `ventilation_failure` (both
/// claim an elevated airborne risk; `particle_spike` is a PM2.5 event and is not counted).
/// Truth: the occupied sensor-room windows whose conditional risk — one infector present
/// whenever the room is occupied, quanta carried across windows, the room's true ACH
/// ([`trustedge_citysim::RiskWindowTruth::conditional_probability`]) — reaches the edge's
/// alert threshold. The edge scores the same definition with the ACH it believes (its
/// commissioned nominal ACH, which the driver sets to the room's true one, or the CO₂
/// estimate during a ventilation failure) and the occupancy its sensor counts.
#[derive(Clone, Debug, Serialize)]
pub struct AerosolMetrics {
    /// Of the windows alerted `elevated_risk` or `ventilation_failure`, the fraction truly
    /// elevated (`null` when there was no such alert).
    pub precision: Option<f64>,
    /// Of truly elevated windows of sensor rooms, the fraction alerted `elevated_risk` or
    /// `ventilation_failure` (`null` when there was none).
    pub recall: Option<f64>,
    /// Threshold of "elevated" (the edge's alert rule).
    pub threshold: f64,
    /// Truth basis: `conditional_carried` (see the type's docs).
    pub basis: &'static str,
    /// Alerts on the ledger by kind.
    pub alerts_by_kind: BTreeMap<String, u64>,
    /// Truly elevated windows.
    pub true_windows: u64,
}

/// Origin inference accuracy.
#[derive(Clone, Debug, Serialize)]
pub struct OriginMetrics {
    /// Top-1 accuracy over clusters with a true origin (`null` when no cluster was scored:
    /// no confirmed app user relayed keys).
    pub top1: Option<f64>,
    /// Top-3 accuracy.
    pub top3: Option<f64>,
    /// Earliest-onset baseline, top-1.
    pub baseline_top1: Option<f64>,
    /// Earliest-onset baseline, top-3.
    pub baseline_top3: Option<f64>,
    /// Fraction of the scored clusters whose origin lies in the inferred cluster matched to
    /// them: the most any ranking can reach at any k with this evidence.
    pub reachable: Option<f64>,
    /// Fraction of the scored clusters whose confirmed cases the evidence links whole.
    pub linked: Option<f64>,
    /// Clusters scored: true clusters with at least two relayed cases
    /// (`trustedge_citysim::score::score_origins`).
    pub clusters: u64,
}

/// Ledger figures.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerMetrics {
    /// Sum of the committed blocks' encoded sizes.
    pub bytes: u64,
    /// Committed height at the end.
    pub height: u64,
    /// Transactions committed.
    pub txs: u64,
    /// Transactions committed per wall second of the run (network start to end).
    pub tx_per_s: f64,
}

/// Edge figures.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeMetrics {
    /// Bytes of the encrypted readings the edges keep (sealed records, as their stores
    /// count them).
    pub raw_bytes: u64,
    /// Length of the edges' store files (indexes, metadata and space redb grew the file by
    /// ahead of use included).
    pub file_bytes: u64,
    /// Records kept.
    pub records: u64,
    /// Raw bytes the devices' data stands for (scan records 29 B, air readings 48 B, …).
    pub device_raw_bytes: u64,
}

/// Counts of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// People.
    pub people: u64,
    /// App users (phones).
    pub app_users: u64,
    /// Sensor rooms.
    pub sensors: u64,
    /// Encounter pieces between app users.
    pub encounters: u64,
    /// RSSI samples generated.
    pub rssi_samples: u64,
    /// Encounter uploads accepted by the edges.
    pub encounter_uploads: u64,
    /// Signed readings the phones sent them in (each carries a batch of uploads).
    pub encounter_readings: u64,
    /// Air readings accepted.
    pub air_readings: u64,
    /// Confirmed cases (all).
    pub confirmed: u64,
    /// Confirmed app users whose keys were relayed.
    pub confirmed_relayed: u64,
    /// Notices received and recognised by a phone.
    pub notices: u64,
    /// Readings refused by an edge.
    pub refused: u64,
}

/// The metrics of a run (`trustedge simulate --json`).
#[derive(Clone, Debug, Serialize)]
pub struct CityMetrics {
    /// Seed.
    pub seed: u64,
    /// People.
    pub population: u32,
    /// Days.
    pub days: u32,
    /// Unix time of day 0.
    pub start_s: u64,
    /// Close-contact decisions.
    pub close_contact: CloseContactMetrics,
    /// Notifications.
    pub notification: NotificationMetrics,
    /// Aerosol alerts.
    pub aerosol_alerts: AerosolMetrics,
    /// Origin inference (`null` when the cloud serves no `/v1/origin`).
    pub origin: Option<OriginMetrics>,
    /// Ledger.
    pub ledger: LedgerMetrics,
    /// Edges.
    pub edge: EdgeMetrics,
    /// Counts.
    pub counts: Counts,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
    /// Wall-clock seconds by phase.
    pub phases_s: BTreeMap<String, f64>,
}

/// A notice (or relay outcome) that reached a pool connection.
struct Arrival {
    notice: Notice,
    at: Instant,
}

/// A job for a pool connection: publish these readings in order. `items[i]` is how many
/// items reading `i` carries (uploads of a batch); the outcome counts items.
struct Job {
    readings: Vec<trustedge_device::SignedReading>,
    items: Vec<u64>,
    done: tokio::sync::oneshot::Sender<(u64, u64)>,
}

/// Runs a pool connection: publishes jobs in order (it subscribes to no notice; the edge's
/// listening connection hears them, see [`listen`]).
async fn connection(mut client: DeviceClient, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let (mut ok, mut refused) = (0u64, 0u64);
        let results = client.publish_readings(&job.readings).await;
        for (r, &n) in results.into_iter().zip(&job.items) {
            match r {
                Ok(a) if a.accepted => ok += n,
                Ok(a) => {
                    refused += n;
                    tracing::debug!(?a, "reading refused");
                }
                Err(e) => {
                    refused += n;
                    tracing::debug!(error = %e, "publish failed");
                }
            }
        }
        let _ = job.done.send((ok, refused));
    }
    client.disconnect().await;
}

/// Forwards every notice an edge's listening connection receives until `stop`, then what
/// is still queued; returns how many notices its full queue dropped.
async fn listen(
    mut client: DeviceClient,
    arrivals: mpsc::UnboundedSender<Arrival>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            n = client.next_notice(Duration::from_secs(1)) => {
                if let Some(n) = n {
                    let _ = arrivals.send(Arrival { notice: n, at: Instant::now() });
                }
            }
        }
    }
    while let Some(n) = client.next_notice(Duration::ZERO).await {
        let _ = arrivals.send(Arrival {
            notice: n,
            at: Instant::now(),
        });
    }
    let dropped = client.notices_dropped();
    client.disconnect().await;
    dropped
}

/// The pool: `pool` connections per edge.
struct Pool {
    senders: Vec<Vec<mpsc::Sender<Job>>>,
}

/// Readings handed to the pool's connections, whose acknowledgements may still be coming.
#[derive(Default)]
struct Pending {
    jobs: Vec<tokio::sync::oneshot::Receiver<(u64, u64)>>,
}

impl Pending {
    /// Waits for every job's acknowledgements; returns (accepted, refused).
    async fn outcome(self) -> (u64, u64) {
        let (mut ok, mut refused) = (0, 0);
        for w in self.jobs {
            if let Ok((a, r)) = w.await {
                ok += a;
                refused += r;
            }
        }
        (ok, refused)
    }
}

impl Pool {
    /// Hands every reading to its connection's queue of jobs, in order (waiting while a
    /// queue is full), without waiting for acknowledgements. A connection publishes its
    /// jobs one after another, so a device's readings enqueued later are published later.
    async fn enqueue(&self, items: Vec<Outgoing>) -> Pending {
        let mut groups: HashMap<(usize, usize), (Vec<_>, Vec<u64>)> = HashMap::new();
        for o in items {
            let g = groups.entry((o.edge, o.slot)).or_default();
            g.0.push(o.reading);
            g.1.push(o.items);
        }
        let mut pending = Pending::default();
        for ((edge, slot), (readings, items)) in groups {
            let Some(tx) = self.senders.get(edge).and_then(|s| s.get(slot)) else {
                continue;
            };
            let (done, rx) = tokio::sync::oneshot::channel();
            if tx
                .send(Job {
                    readings,
                    items,
                    done,
                })
                .await
                .is_ok()
            {
                pending.jobs.push(rx);
            }
        }
        pending
    }
}

/// One simulated hour's readings in the pool: its encounter uploads, air readings and
/// relay requests.
struct HourInFlight {
    uploads: Pending,
    air: Pending,
    relays: Vec<Pending>,
}

/// Simulated hours whose readings may be in the pool at once. With one, the edges idle
/// while the last acknowledgements of an hour come back and the next hour is handed out;
/// with two, the next hour's readings queue behind the last ones on each connection.
const HOURS_IN_FLIGHT: usize = 2;

/// Simulated hours of uploads queued for the evaluation thread before the city thread
/// waits for it.
const EVAL_QUEUE_HOURS: usize = 4;

impl HourInFlight {
    /// Waits for the hour's acknowledgements and adds them to `counts`.
    async fn settle(self, counts: &mut Counts) {
        let (ok, refused) = self.uploads.outcome().await;
        counts.encounter_uploads += ok;
        counts.refused += refused;
        let (ok, refused) = self.air.outcome().await;
        counts.air_readings += ok;
        counts.refused += refused;
        for r in self.relays {
            let (ok, refused) = r.outcome().await;
            counts.confirmed_relayed += ok;
            counts.refused += refused;
        }
    }
}

/// What the notice listener learned.
#[derive(Default)]
struct Heard {
    /// Own RPI → phone's person.
    own: HashMap<[u8; 16], PersonId>,
    /// Upload id → (case, time its relay request was published).
    cases: HashMap<Hash, (PersonId, Instant)>,
    /// (phone, case) → latency s.
    notified: BTreeMap<(PersonId, PersonId), f64>,
    /// Notices whose case was not (yet) known, kept to resolve later.
    orphans: Vec<([u8; 16], Hash, Instant)>,
    relays_accepted: u64,
    relays_refused: u64,
    last_arrival: Option<Instant>,
}

impl Heard {
    fn take(&mut self, a: Arrival) {
        if let Some(o) = parse_relay_outcome(&a.notice.topic, &a.notice.payload) {
            if o.accepted {
                self.relays_accepted += 1;
            } else {
                self.relays_refused += 1;
            }
            return;
        }
        let Some(n) = parse_notice(&a.notice.topic, &a.notice.payload) else {
            return;
        };
        let Some(rpi) = hex::decode(&n.rpi)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
        else {
            return;
        };
        self.last_arrival = Some(a.at);
        self.resolve(rpi, n.source_upload, a.at);
    }

    fn resolve(&mut self, rpi: [u8; 16], source: Hash, at: Instant) {
        match (self.own.get(&rpi), self.cases.get(&source)) {
            (Some(&phone), Some(&(case, sent))) => {
                self.notified
                    .entry((phone, case))
                    .or_insert_with(|| at.saturating_duration_since(sent).as_secs_f64());
            }
            _ => self.orphans.push((rpi, source, at)),
        }
    }
}

fn bar(opts: &CityRunOptions, len: u64) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:<22} [{bar:30}] {pos}/{len} h {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn now_s() -> u64 {
    crate::init::now_ms() / 1000
}

/// A run stopped by its `stop` future before the city ended (the network was shut down
/// in order first).
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted; no metrics written")
    }
}

impl std::error::Error for Stopped {}

/// Runs the city through the real stack and returns its metrics. When `stop` resolves
/// first, the city stops, the network is shut down node by node (as at the end of a run)
/// and the error is [`Stopped`].
pub async fn run(
    opts: &CityRunOptions,
    observer: Arc<dyn CityObserver>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<CityMetrics> {
    let wall = Instant::now();
    let mut phases = BTreeMap::new();
    let mut mark = Instant::now();
    let phase = |phases: &mut BTreeMap<String, f64>, name: &str, mark: &mut Instant| {
        phases.insert(name.to_string(), round2(mark.elapsed().as_secs_f64()));
        tracing::info!(
            phase = name,
            secs = mark.elapsed().as_secs_f64(),
            "city phase done"
        );
        *mark = Instant::now();
    };
    if opts.days == 0 || opts.days > 14 {
        anyhow::bail!("--days must be 1..=14 (the ledger keeps keys and alerts 14 days)");
    }
    let today = now_s() / DAY_S * DAY_S;
    let start_s = today - u64::from(opts.days) * DAY_S;
    let default = CityConfig::default();
    let scaled = (f64::from(default.seed_cases) * f64::from(opts.population) / 10_000.0).round();
    let cfg = CityConfig {
        population: opts.population,
        days: opts.days,
        start_s,
        materialize_sightings: false,
        scan_interval_s: opts.scan_interval_s,
        seed_last_day: default.seed_last_day.min(f64::from(opts.days)),
        app_adoption: opts.app_adoption.unwrap_or(default.app_adoption),
        seed_cases: opts
            .index_cases
            .unwrap_or(scaled as u32)
            .clamp(1, opts.population.max(1)),
        ..default
    };
    let seed = opts.seed;
    let city = Arc::new(
        tokio::task::spawn_blocking(move || City::generate(&cfg, seed))
            .await
            .context("city generation")??,
    );
    phase(&mut phases, "generate", &mut mark);
    observer.event(format!(
        "city of {} people over {} days generated",
        opts.population, opts.days
    ));

    // Devices and the network.
    std::fs::create_dir_all(&opts.home)
        .with_context(|| format!("cannot create {}", opts.home.display()))?;
    let edges_n = net::LAYOUT.1;
    // The laboratory's key and the edges' skew are set once the network exists.
    let player = Player::new(&city, seed, edges_n, opts.pool, net::CHAIN_ID, now_s())?;
    let rooms: Vec<net::RoomSpec> = player
        .sensors
        .iter()
        .map(|s| {
            let r = city.population().room(s.room);
            net::RoomSpec {
                name: format!("room-{}", s.room.0),
                volume_m3: r.volume_m3,
                ach: r.ach_per_h.max(0.05),
                secret: s.secret.0,
                device: trustedge_types::Address::of_device(&s.key.public()),
                edge: s.edge,
            }
        })
        .collect();
    let net = net::Net::start(&opts.home, seed, &rooms).await?;
    // Dropping the network instead would cancel its nodes' tasks mid-way (the consensus
    // engine's actors panic when their tasks are cancelled under them).
    let result = tokio::select! {
        r = drive(opts, observer, &city, &net, player, wall, &mut phases) => r,
        () = stop => Err(anyhow::Error::new(Stopped)),
    };
    mark = Instant::now();
    net.shutdown().await;
    let mut m = result?;
    phase(&mut phases, "shutdown", &mut mark);
    m.wall_s = round2(wall.elapsed().as_secs_f64());
    m.phases_s.extend(phases);
    Ok(m)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[allow(clippy::too_many_lines)]
async fn drive(
    opts: &CityRunOptions,
    observer: Arc<dyn CityObserver>,
    city: &Arc<City>,
    net: &net::Net,
    mut player: Player,
    wall: Instant,
    phases: &mut BTreeMap<String, f64>,
) -> anyhow::Result<CityMetrics> {
    let mut mark = Instant::now();
    let net_started = Instant::now();
    let start_s = city.config().start_s;
    player.set_lab(net.lab.clone());
    tracing::info!("network up; registering devices");
    net.register(&player.devices()).await?;
    tracing::info!(secs = mark.elapsed().as_secs_f64(), "devices registered");
    phases.insert(
        "network_and_registration".into(),
        round2(mark.elapsed().as_secs_f64()),
    );
    mark = Instant::now();

    // The pool of MQTT connections and the notice listener.
    let (arr_tx, mut arr_rx) = mpsc::unbounded_channel::<Arrival>();
    // The pool's connections only publish; one connection per edge listens to the notices
    // for all the city's phones (every subscriber receives every notice, so 16 listening
    // publishers meant 16 copies of each, and a connection busy publishing an hour's
    // readings let its notice queue overflow).
    let options = DeviceClientOptions {
        ack_timeout: Duration::from_secs(30),
        notices: false,
        ..DeviceClientOptions::default()
    };
    let listen_options = DeviceClientOptions {
        notice_queue: 1 << 20,
        ..DeviceClientOptions::default()
    };
    let (listen_stop_tx, listen_stop_rx) = tokio::sync::watch::channel(false);
    let mut senders = Vec::new();
    let mut conn_tasks = Vec::new();
    let mut listen_tasks = Vec::new();
    for (e, edge) in net.edges.iter().enumerate() {
        let addr = edge.mqtt_addr().context("an edge runs no broker")?;
        let client =
            DeviceClient::connect(addr, &format!("city-{e}-notices"), listen_options.clone())
                .await?;
        listen_tasks.push(tokio::spawn(listen(
            client,
            arr_tx.clone(),
            listen_stop_rx.clone(),
        )));
        let mut row = Vec::new();
        for s in 0..opts.pool.max(1) {
            let client =
                DeviceClient::connect(addr, &format!("city-{e}-{s}"), options.clone()).await?;
            let (tx, rx) = mpsc::channel(4);
            conn_tasks.push(tokio::spawn(connection(client, rx)));
            row.push(tx);
        }
        senders.push(row);
    }
    drop(arr_tx);
    let pool = Pool { senders };
    let heard = Arc::new(Mutex::new(Heard::default()));
    let listener = {
        let heard = heard.clone();
        tokio::spawn(async move {
            while let Some(a) = arr_rx.recv().await {
                if let Ok(mut h) = heard.lock() {
                    h.take(a);
                }
            }
        })
    };

    // The chain sampler: height, transactions and block bytes, about once a second.
    let chain = Arc::new(Mutex::new((0u64, 0u64, 0u64))); // height, txs, bytes
    let sim_now = Arc::new(std::sync::atomic::AtomicU64::new(start_s));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let chain = chain.clone();
        let client = net.validator();
        let observer = observer.clone();
        let sim_now = sim_now.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                let _ = sample_chain(&client, &chain).await;
                let (height, txs, _) = chain.lock().map(|c| *c).unwrap_or_default();
                observer.chain(ChainPoint {
                    wall_s: wall.elapsed().as_secs_f64(),
                    sim_s: sim_now.load(std::sync::atomic::Ordering::Relaxed),
                    height,
                    txs_total: txs,
                });
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    };

    // The hours: played on a blocking thread, one hour ahead of the network.
    let hours_total = u64::from(city.config().days) * 24;
    let (work_tx, mut work_rx) = mpsc::channel::<anyhow::Result<HourWork>>(2);
    // The evaluation of close contacts (measurement only) runs on a thread of its own,
    // beside the city's: it is given each hour's uploads and, as each day's uploads are
    // complete, that day's keys, so it holds about a day of uploads. On the city's thread
    // it took half of that thread's time, and the city thread paced the run.
    let (eval_tx, eval_rx) = std::sync::mpsc::sync_channel::<Vec<EvalInput>>(EVAL_QUEUE_HOURS);
    let scorer_config = net.tracing.clone();
    let evaluator = tokio::task::spawn_blocking(move || -> anyhow::Result<Evaluator> {
        let scorer = scorer_config
            .scorer()
            .map_err(|e| anyhow::anyhow!("training the distance model: {e}"))?;
        let mut evaluator = Evaluator::new(scorer_config.skew_s)?;
        while let Ok(inputs) = eval_rx.recv() {
            for input in inputs {
                evaluator.apply(input, &scorer)?;
            }
        }
        Ok(evaluator)
    });
    let producer = {
        let city = city.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Player> {
            let mut end = start_s;
            for h in city.hours() {
                let h = h?;
                end = h.start_s + 3600;
                let w = player.play_hour(&city, &h);
                let failed = w.is_err();
                if work_tx.blocking_send(w).is_err() || failed {
                    return Ok(player);
                }
                player.evaluate_complete_days(end, start_s)?;
                if eval_tx.send(player.take_eval_inputs()).is_err() {
                    // The evaluation failed; its error is reported when it is joined.
                    return Ok(player);
                }
            }
            let w = player.flush(end);
            let _ = work_tx.blocking_send(w);
            // Every encounter is uploaded now: judge the days left (the last one ends at
            // `end`).
            player.evaluate_complete_days(end + MAX_ROTATION_S, start_s)?;
            let _ = eval_tx.send(player.take_eval_inputs());
            Ok(player)
        })
    };
    let bar = bar(opts, hours_total);
    bar.set_message("simulated hours");
    let mut counts = Counts {
        people: city.population().people.len() as u64,
        app_users: app_users_of(city),
        sensors: city.population().rooms.iter().filter(|r| r.sensor).count() as u64,
        ..Counts::default()
    };
    let mut device_raw = 0u64;
    let mut confirmed_app: BTreeSet<PersonId> = BTreeSet::new();
    let metrics: Vec<_> = net.edges.iter().map(|e| e.metrics().clone()).collect();
    let mut rooms = RoomPoller::new(net);
    let mut in_flight: std::collections::VecDeque<HourInFlight> = Default::default();
    while let Some(w) = work_rx.recv().await {
        let w = w?;
        counts.encounters += w.encounters;
        counts.rssi_samples += w.samples;
        counts.confirmed += (w.confirmations.len() + w.confirmed_without_app.len()) as u64;
        device_raw += w.raw_bytes;
        if let Ok(mut h) = heard.lock() {
            h.own.extend(w.own_rpis.iter().copied());
        }
        counts.encounter_readings += w.uploads.len() as u64;
        let uploads = pool.enqueue(w.uploads).await;
        let air = pool.enqueue(w.air).await;
        let mut relays = Vec::with_capacity(w.confirmations.len());
        for c in w.confirmations {
            observer.event(format!(
                "{} case {} confirmed",
                sim_label(c.time_s, start_s),
                c.person.0
            ));
            confirmed_app.insert(c.person);
            if let Ok(mut h) = heard.lock() {
                h.cases.insert(c.upload_id, (c.person, Instant::now()));
            }
            relays.push(pool.enqueue(vec![c.out]).await);
        }
        in_flight.push_back(HourInFlight {
            uploads,
            air,
            relays,
        });
        while in_flight.len() >= HOURS_IN_FLIGHT {
            if let Some(h) = in_flight.pop_front() {
                h.settle(&mut counts).await;
            }
        }
        sim_now.store(w.end_s, std::sync::atomic::Ordering::Relaxed);
        // The rooms' windows the edges closed so far (those of this hour's readings come
        // with the next poll once the workers have read them).
        rooms.poll(observer.as_ref()).await;
        let (notices, delivered) = heard
            .lock()
            .map(|h| (h.notified.len() as u64, h.notified.len() as u64))
            .unwrap_or_default();
        observer.contacts(ContactPoint {
            wall_s: wall.elapsed().as_secs_f64(),
            sim_s: w.end_s,
            encounters_uploaded: counts.encounter_uploads,
            confirmed_cases: counts.confirmed_relayed,
            notices_committed: metrics
                .iter()
                .map(|m| m.tracing.notices_published.get())
                .sum::<u64>()
                .max(notices),
            notices_delivered: delivered,
            aerosol_alerts: metrics
                .iter()
                .map(|m| m.aerosol.alerts_published.get())
                .sum(),
        });
        bar.inc(1);
        tracing::debug!(
            hour = w.index,
            uploads = counts.encounter_uploads,
            "hour played"
        );
        if w.index % 24 == 23 {
            tracing::info!(
                day = w.index / 24,
                uploads = counts.encounter_uploads,
                air = counts.air_readings,
                wall = wall.elapsed().as_secs_f64(),
                "day played"
            );
        }
        if let Some(p) = opts.pace.filter(|p| *p > 0.0) {
            let due = Duration::from_secs_f64((w.end_s - start_s) as f64 / p);
            let spent = mark.elapsed();
            if due > spent {
                tokio::time::sleep(due - spent).await;
            }
        }
    }
    while let Some(h) = in_flight.pop_front() {
        h.settle(&mut counts).await;
    }
    bar.finish_and_clear();
    let player = producer.await.context("the city thread")??;
    phases.insert("hours".into(), round2(mark.elapsed().as_secs_f64()));
    tracing::info!(
        secs = mark.elapsed().as_secs_f64(),
        "hours played; draining"
    );
    mark = Instant::now();

    // Drain: notices for every relayed case and alerts for every closed window. The edges
    // are done once every relay outcome was heard and neither their tracing and aerosol
    // counters nor the notices heard have moved for `settle`: longer than an edge waits
    // before matching late encounters again (`REMATCH_INTERVAL`), so a rematch the last
    // uploads called for has run and published by then.
    let settle = trustedge_node::tracing_worker::REMATCH_INTERVAL + Duration::from_secs(3);
    let deadline = Instant::now() + Duration::from_secs(opts.drain_timeout_s);
    let edge_work = || -> Vec<u64> {
        metrics
            .iter()
            .flat_map(|m| {
                let t = &m.tracing;
                [
                    t.uploads_held.get(),
                    t.keys_matched.get(),
                    t.rematches.get(),
                    t.notices_published.get(),
                    t.notice_errors.get(),
                    t.relayed.get(),
                    t.relay_errors.get(),
                    m.aerosol.alerts_published.get(),
                ]
            })
            .collect()
    };
    let mut last_work = (edge_work(), Instant::now());
    let mut drain_timed_out = false;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (relays, quiet) = heard
            .lock()
            .map(|h| {
                (
                    h.relays_accepted + h.relays_refused,
                    h.last_arrival.is_none_or(|t| t.elapsed() > settle),
                )
            })
            .unwrap_or((0, true));
        let work = edge_work();
        if work != last_work.0 {
            last_work = (work, Instant::now());
        }
        let settled = last_work.1.elapsed() > settle;
        // Nothing in flight either: a notice transaction waiting in a mempool moves no
        // counter (a round without a proposal can last seconds).
        let in_flight: i64 = net
            .validators
            .iter()
            .chain(&net.edges)
            .map(|n| n.metrics().mempool_txs.get())
            .sum();
        if relays >= counts.confirmed_relayed && quiet && settled && in_flight == 0 {
            break;
        }
        if Instant::now() > deadline {
            drain_timed_out = true;
            tracing::warn!(
                timeout_s = opts.drain_timeout_s,
                "the edges were still working when the drain timed out; notices still on their way are not counted"
            );
            break;
        }
    }
    // The last windows, closed by the edges' clocks once their rooms went quiet.
    rooms.poll(observer.as_ref()).await;
    phases.insert("drain".into(), round2(mark.elapsed().as_secs_f64()));
    mark = Instant::now();
    let _ = stop_tx.send(true);
    let _ = listen_stop_tx.send(true);
    let _ = sampler.await;
    drop(pool);
    for t in conn_tasks {
        let _ = t.await;
    }
    let mut notices_dropped = 0;
    for t in listen_tasks {
        notices_dropped += t.await.unwrap_or(0);
    }
    let _ = listener.await;
    let _ = sample_chain(&net.validator(), &chain).await;
    let (height, txs, bytes) = chain.lock().map(|c| *c).unwrap_or_default();
    let net_wall = net_started.elapsed().as_secs_f64();

    // Evaluation.
    tracing::info!("evaluating");
    let truth = city.truth();
    // The evaluation thread may still be judging the last days; it ran beside the drain.
    let evaluator = evaluator.await.context("the evaluation thread")??;
    let decided = evaluator.decided_close_contacts();
    let true_cc = truth.app_close_contacts();
    let pr = PrecisionRecall::of(decided, &true_cc);
    for fp in decided.difference(&true_cc).take(10) {
        let same_pair: Vec<_> = truth
            .close_contacts
            .iter()
            .filter(|c| c.a == fp.1 && c.b == fp.2)
            .map(|c| (c.day, c.minutes, c.both_app))
            .collect();
        tracing::debug!(?fp, ?same_pair, "close-contact false positive");
    }
    let close_contact = CloseContactMetrics {
        precision: pr.precision,
        recall: pr.recall,
        ndcf: pr.ndcf(truth.close_contact_negatives()),
        true_pair_days: true_cc.len() as u64,
        decided_pair_days: decided.len() as u64,
        method: "pure ExposureEngine with the edges' settings over every upload sent, every app user's key of each day, judged day by day (evaluation only)",
    };

    let (notified, mut lat, unresolved_notices) = {
        let mut h = heard
            .lock()
            .map_err(|_| anyhow::anyhow!("listener poisoned"))?;
        for (rpi, source, at) in std::mem::take(&mut h.orphans) {
            h.resolve(rpi, source, at);
        }
        // Still unresolved: counted, then dropped.
        let unresolved = h.orphans.len() as u64;
        h.orphans.clear();
        let set: BTreeSet<(PersonId, PersonId)> = h.notified.keys().copied().collect();
        let lat: Vec<f64> = h.notified.values().copied().collect();
        (set, lat, unresolved)
    };
    counts.notices = notified.len() as u64;
    lat.sort_by(f64::total_cmp);
    let true_exp: BTreeSet<(PersonId, PersonId)> = truth
        .true_exposures(14, start_s)
        .into_iter()
        .filter(|(_, case)| confirmed_app.contains(case))
        .collect();
    let npr = PrecisionRecall::of(&notified, &true_exp);
    let judged: BTreeSet<(PersonId, PersonId)> = truth
        .exposures_of(decided.iter().copied(), 14, start_s)
        .into_iter()
        .filter(|(_, case)| confirmed_app.contains(case))
        .collect();
    let mut missed = MissedExposures::default();
    for e in true_exp.difference(&notified) {
        if judged.contains(e) {
            missed.judged_close_not_delivered += 1;
        } else {
            missed.not_judged_close += 1;
        }
    }
    let notification = NotificationMetrics {
        precision: npr.precision_defined(),
        recall: npr.recall_defined(),
        latency_s: Latency {
            p50: quantile(&lat, 0.5).map(round3),
            p95: quantile(&lat, 0.95).map(round3),
            max: lat.last().copied().map(round3),
        },
        true_exposures: true_exp.len() as u64,
        notified_pairs: notified.len() as u64,
        missed,
        unresolved_notices,
        dropped_by_driver: notices_dropped,
        pushes_dropped_by_edges: metrics.iter().map(|m| m.tracing.pushes_dropped.get()).sum(),
        repushed_by_edges: metrics
            .iter()
            .map(|m| m.tracing.notices_repushed.get())
            .sum(),
        drain_timed_out,
    };

    let aerosol = aerosol_metrics(net, city, &player, observer.as_ref()).await?;
    let cases: HashMap<Hash, PersonId> = heard
        .lock()
        .map(|h| h.cases.iter().map(|(k, v)| (*k, v.0)).collect())
        .unwrap_or_default();
    let origin = origin_metrics(net, city, &cases, observer.as_ref()).await;

    let mut edge = EdgeMetrics {
        raw_bytes: 0,
        file_bytes: 0,
        records: 0,
        device_raw_bytes: device_raw,
    };
    for e in &net.edges {
        if let Some(s) = e.edge_store()
            && let Ok(st) = s.stats()
        {
            edge.raw_bytes += st.sealed_bytes;
            edge.file_bytes += st.file_bytes;
            edge.records += st.records;
        }
    }
    phases.insert("evaluation".into(), round2(mark.elapsed().as_secs_f64()));
    observer.event(format!(
        "done: {} notices, {} alerts, {} blocks",
        counts.notices,
        aerosol.alerts_by_kind.values().sum::<u64>(),
        height
    ));
    Ok(CityMetrics {
        seed: opts.seed,
        population: opts.population,
        days: opts.days,
        start_s,
        close_contact,
        notification,
        aerosol_alerts: aerosol,
        origin,
        ledger: LedgerMetrics {
            bytes,
            height,
            txs,
            tx_per_s: round2(txs as f64 / net_wall.max(1e-9)),
        },
        edge,
        counts,
        wall_s: 0.0,
        phases_s: BTreeMap::new(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn app_users_of(city: &City) -> u64 {
    city.population().people.iter().filter(|p| p.app).count() as u64
}

fn sim_label(t: u64, start_s: u64) -> String {
    let s = t.saturating_sub(start_s);
    format!(
        "day {} {:02}:{:02}",
        s / DAY_S,
        (s % DAY_S) / 3600,
        (s % 3600) / 60
    )
}

/// Reads the blocks committed since the last sample: height, transactions, bytes.
async fn sample_chain(client: &Client, chain: &Mutex<(u64, u64, u64)>) -> anyhow::Result<()> {
    let height = client.status().await?.height;
    let from = chain.lock().map(|c| c.0).unwrap_or(height) + 1;
    for h in from..=height {
        let (block, cert) = client.block_raw(h).await?;
        let size = borsh::to_vec(&block).map_or(0, |b| b.len()) as u64
            + borsh::to_vec(&cert).map_or(0, |b| b.len()) as u64;
        if let Ok(mut c) = chain.lock() {
            c.0 = h;
            c.1 += block.txs.len() as u64;
            c.2 += size;
        }
    }
    Ok(())
}

/// Follows each edge's `GET /v1/aerosol/rooms` as the city plays: the windows its rooms
/// closed since the last poll, fed to the observer as they come (the edge's room names are
/// the dashboard's `room-<id>` labels). The ledger's alerts come at the end of the run.
struct RoomPoller {
    clients: Vec<Client>,
    /// Per edge: its rooms, and the end of each one's last window fed.
    last: Vec<BTreeMap<String, Option<u64>>>,
}

impl RoomPoller {
    fn new(net: &net::Net) -> Self {
        RoomPoller {
            clients: net.edges.iter().map(|e| Client::new(e.url())).collect(),
            last: vec![BTreeMap::new(); net.edges.len()],
        }
    }

    /// Feeds the windows closed since the last poll (`alert: false`; an edge that does not
    /// answer is asked again next time).
    async fn poll(&mut self, observer: &dyn CityObserver) {
        for (client, last) in self.clients.iter().zip(self.last.iter_mut()) {
            // Rooms advance independently: ask from the room furthest behind (everything
            // kept while a room has no window yet) and leave out what each room had.
            let since = last
                .values()
                .copied()
                .collect::<Option<Vec<u64>>>()
                .and_then(|ends| ends.into_iter().min());
            let view = match client.aerosol_rooms(since).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "aerosol rooms not read");
                    continue;
                }
            };
            for room in view.rooms {
                let seen = last.entry(room.room.clone()).or_default();
                for w in &room.windows {
                    if seen.is_some_and(|end| w.end_s <= end) {
                        continue;
                    }
                    observer.room_risk(feed::RoomRiskPoint {
                        room: room.room.clone(),
                        start_s: w.start_s,
                        end_s: w.end_s,
                        probability: w.probability,
                        alert: false,
                    });
                    *seen = Some(w.end_s);
                }
            }
        }
    }
}

/// Alerts committed on the ledger, mapped back to rooms by their venue ids of the day.
async fn aerosol_metrics(
    net: &net::Net,
    city: &City,
    player: &Player,
    observer: &dyn CityObserver,
) -> anyhow::Result<AerosolMetrics> {
    let client = net.validator();
    let start_s = city.config().start_s;
    let start_day = (start_s / DAY_S) as u32;
    let mut by_venue: HashMap<[u8; 16], RoomId> = HashMap::new();
    for d in 0..city.config().days {
        for s in &player.sensors {
            by_venue.insert(play::venue_of(&s.secret, start_day + d), s.room);
        }
    }
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut alerted: BTreeSet<(RoomId, u64)> = BTreeSet::new();
    for d in 0..city.config().days {
        let day = (start_day + d).to_string();
        let mut after: Option<String> = None;
        loop {
            let mut params = vec![("day", day.as_str()), ("limit", "500")];
            if let Some(a) = after.as_deref() {
                params.push(("after", a));
            }
            let v = client.query("aerosol", "alerts", &params).await?;
            for a in v["alerts"].as_array().into_iter().flatten() {
                let kind = a["kind"].as_str().unwrap_or("?").to_string();
                *kinds.entry(kind.clone()).or_default() += 1;
                let venue = a["venue"]
                    .as_str()
                    .and_then(|s| hex::decode(s).ok())
                    .and_then(|b| <[u8; 16]>::try_from(b).ok());
                if let (Some(v), Some(start)) = (venue, a["start_s"].as_u64())
                    && let Some(room) = by_venue.get(&v)
                {
                    observer.room_risk(feed::RoomRiskPoint {
                        room: format!("room-{}", room.0),
                        start_s: start,
                        end_s: a["end_s"].as_u64().unwrap_or(start),
                        probability: a["risk_ppm"].as_f64().unwrap_or(0.0) / 1e6,
                        alert: true,
                    });
                    if kind == "elevated_risk" || kind == "ventilation_failure" {
                        alerted.insert((*room, start));
                    }
                }
            }
            match v["next"].as_str() {
                Some(n) if !n.is_empty() => after = Some(n.to_string()),
                _ => break,
            }
        }
    }
    let threshold = trustedge_aerosol::alert::AlertRule::default().threshold;
    let truth = city
        .truth()
        .elevated_windows(threshold, RiskBasis::Conditional);
    let pr = PrecisionRecall::of(&alerted, &truth);
    Ok(AerosolMetrics {
        precision: pr.precision_defined(),
        recall: pr.recall_defined(),
        threshold,
        basis: "conditional_carried",
        alerts_by_kind: kinds,
        true_windows: truth.len() as u64,
    })
}

/// Origin accuracy from the cloud's `GET /v1/origin`, `None` when it is not served.
///
/// Each true cluster (an index case's subtree) counted over the cases whose keys were relayed
/// (the only cases the cloud can know), its true origin the earliest-infected of them, is
/// matched to the cloud cluster holding most of its
/// relayed members; its ranking is that cluster's candidates, the baseline its
/// earliest-onset ranking. A true cluster no cloud cluster holds counts as a miss.
async fn origin_metrics(
    net: &net::Net,
    city: &City,
    cases: &HashMap<Hash, PersonId>,
    observer: &dyn CityObserver,
) -> Option<OriginMetrics> {
    let cloud = net.clouds.first()?;
    let client = Client::new(cloud.url());
    let view = client.origin(true, None).await.ok()?;
    let person = |hex_id: &str| -> Option<PersonId> {
        let b: [u8; 32] = hex::decode(hex_id).ok()?.try_into().ok()?;
        cases.get(&Hash(b)).copied()
    };
    let relayed: BTreeSet<PersonId> = cases.values().copied().collect();
    let label = |hex_id: &str| {
        person(hex_id).map_or_else(|| "case ?".to_string(), |p| format!("case {}", p.0))
    };
    let mut tree = feed::TreeView {
        sim_s: city.config().start_s + u64::from(city.config().days) * DAY_S,
        ..feed::TreeView::default()
    };
    for k in &view.clusters {
        for c in &k.candidates {
            tree.nodes.push(feed::TreeNode {
                id: label(&c.case),
                onset_s: c.onset_s,
                origin_probability: c.probability,
            });
        }
        for e in &k.tree {
            if let Some(from) = &e.from {
                tree.edges.push(feed::TreeEdge {
                    from: label(from),
                    to: label(&e.to),
                    weight: e.weight,
                    kind: e.kind.clone(),
                });
            }
        }
        if let Some(top) = k.candidates.first() {
            tree.origins.push(label(&top.case));
        }
    }
    // The true clusters over the cases the cloud can know (those whose keys were relayed):
    // a cluster's origin is its earliest-infected relayed case.
    let clusters = city.truth().clusters_known(|p| relayed.contains(&p));
    tree.true_origins = clusters
        .iter()
        .filter_map(|c| c.origin)
        .map(|o| format!("case {}", o.0))
        .collect();
    observer.tree(tree);
    // One scoring rule for the stack and `trustedge origin eval --city`.
    let inferred: Vec<InferredCluster> = view
        .clusters
        .iter()
        .map(|k| InferredCluster {
            cases: k.cases.iter().filter_map(|h| person(h)).collect(),
            ranking: k
                .candidates
                .iter()
                .filter_map(|x| person(&x.case))
                .collect(),
            baseline: k.baseline.iter().filter_map(|x| person(x)).collect(),
        })
        .collect();
    let s = score_origins(&clusters, &inferred);
    let scored = s.clusters > 0;
    let fraction = |n: u64| n as f64 / s.clusters.max(1) as f64;
    Some(OriginMetrics {
        top1: scored.then_some(s.top1),
        top3: scored.then_some(s.top3),
        baseline_top1: scored.then_some(s.baseline_top1),
        baseline_top3: scored.then_some(s.baseline_top3),
        reachable: scored.then(|| fraction(s.reachable)),
        linked: scored.then(|| fraction(s.linked)),
        clusters: s.clusters,
    })
}
