//! Aerosol alerts at an edge node (issue 5 §1/§3): air-quality readings from the edge store
//! fed to [`trustedge_edge::aerosol::AerosolEngine`] per room, and the alerts it emits
//! published with `aerosol.publish_alerts`.
//!
//! Configured by the `[aerosol]` table ([`AerosolConfig`]); runs on edge nodes with
//! `[mqtt]`. A room's air-quality device(s) publish readings of kind [`AIR_QUALITY_KIND`]
//! on `te/v1/up/air_quality/<client>`; the payload is the JSON form of
//! [`trustedge_aerosol::risk::Reading`] ([`encode_air_quality`]):
//! `{"t_s":…,"co2_ppm":…,"pm25_ug_m3":…,"temperature_c":…,"humidity_pct":…,"occupancy":…}`.
//! The ingest verifies and stores them like any reading; this worker then reads the store in
//! record order, maps each reading's device address to its room, and feeds the engine
//! (readings of an unknown device, undecodable, invalid or out of time order are refused,
//! counted by reason in `aerosol_refused`). Every [`AerosolConfig::close_interval_ms`] it
//! closes the windows that ended before now of the rooms fed nothing during that interval
//! (their devices went quiet). Alerts are submitted in
//! batches of at most 64, signed with the aerosol key; an alert already on the ledger is
//! left out, a refused batch is retried a few times.
//!
//! No room name, reading or occupancy leaves the edge: an alert carries the venue id of the
//! day, the window, the risk and the kind only (see `trustedge_contracts::aerosol`).
//!
//! # Delivery to devices (§3)
//! The worker follows the replica's `aerosol/alert_published` events (its own alerts and any
//! other edge's) and pushes each committed alert of the last [`MAX_ALERT_AGE_DAYS`] days,
//! once, on `te/v1/notices/aerosol/<day>` ([`aerosol_topic`]; devices already subscribe to
//! `te/v1/notices/#`): the JSON of the ledger's [`AlertRecord`],
//! `{"id":"<64 hex>","venue":"<32 hex>","start_s":…,"end_s":…,"risk_ppm":…,
//! "kind":"ventilation_failure","day":…,"height":…}` ([`parse_alert`]). A device decides
//! locally, from the venue ids its beacons gave it, whether it was there
//! (`crate::devsim::aerosol::PresenceLog::alerts_for_me`); nothing about it leaves it.
//!
//! # Case presences (§4, for origin inference)
//! A confirmed case's device, after its diagnosis upload, may send a reading of kind
//! [`CASE_PRESENCE_KIND`] on `te/v1/up/case_presence/<client>` whose payload is the Borsh
//! `AerosolCall::ReportCasePresence { upload, visits }` ([`encode_case_presence`]): the
//! upload id (the keys digest) and the visits it heard that overlap committed alerts. The
//! worker waits (up to [`PRESENCE_WAIT`]) until the upload is on the ledger and each visit
//! overlaps a committed alert of its venue id, leaves out visits already recorded, and
//! submits `aerosol.report_case_presence` signed with the aerosol key, so the case's device
//! never appears on the ledger.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, MqttOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use trustedge_aerosol::alert::VenueSecret;
use trustedge_aerosol::risk::Reading;
use trustedge_chain::Ledger;
use trustedge_contracts::aerosol::{
    self, AerosolAlertTx, AerosolCall, AlertRecord, CaseVisit, MAX_ALERT_AGE_DAYS,
    MAX_ALERTS_PER_CALL, MAX_VISITS_PER_CALL,
};
use trustedge_contracts::diagnosis;
use trustedge_edge::aerosol::{
    AerosolEdgeConfig, AerosolEdgeError, AerosolEngine, RECENT_DECISIONS, RoomConfig,
    WindowDecision, batches,
};
use trustedge_store::{EventCursor, EventFilter};
use trustedge_types::{Address, Hash, Height, Keypair, Payload};

use crate::client::Client;
use crate::edge_store::EdgeStore;
use crate::metrics::Metrics;
pub use crate::submit::{COMMIT_TIMEOUT, EXPIRY_BLOCKS};

/// The reading kind of an air-quality device.
pub const AIR_QUALITY_KIND: &str = "air_quality";
/// Attempts at publishing one alert before it is dropped (and counted an error).
pub const MAX_PUBLISH_ATTEMPTS: u32 = 5;
/// The reading kind of a confirmed case's presences, relayed by the edge.
pub const CASE_PRESENCE_KIND: &str = "case_presence";
/// Prefix of the topics committed aerosol alerts are pushed on (`…/<day>`).
pub const AEROSOL_TOPIC_PREFIX: &str = "te/v1/notices/aerosol/";
/// How long a case's presences wait for its upload (and their alerts) to be committed.
pub const PRESENCE_WAIT: Duration = Duration::from_secs(600);
/// Most records read from the store per step: what arrived since the last step, unless the
/// worker is far behind (a busy edge, a restart); as the tracing worker's, whose reads of
/// 4096 a step fell minutes behind a busy edge's store.
const SCAN_BATCH: usize = 1 << 16;
/// Most events read per page.
const EVENTS_PAGE: usize = 500;
/// Most case-presence readings waiting at once (further ones are dropped and counted).
const MAX_PENDING_PRESENCES: usize = 4096;

/// The topic committed aerosol alerts of `day` are pushed on.
pub fn aerosol_topic(day: u32) -> String {
    format!("{AEROSOL_TOPIC_PREFIX}{day}")
}

/// Device side: the alert of a message received on `te/v1/notices/…`: `Some` for an
/// aerosol alert (on `te/v1/notices/aerosol/<day>`, of that day).
pub fn parse_alert(topic: &str, payload: &[u8]) -> Option<AlertRecord> {
    let day: u32 = topic.strip_prefix(AEROSOL_TOPIC_PREFIX)?.parse().ok()?;
    let rec: AlertRecord = serde_json::from_slice(payload).ok()?;
    (rec.day == day && rec.id == rec.alert().id()).then_some(rec)
}

/// The payload a confirmed case's device puts in a [`CASE_PRESENCE_KIND`] reading: the
/// Borsh `AerosolCall::ReportCasePresence { upload, visits }`.
pub fn encode_case_presence(upload: Hash, visits: Vec<CaseVisit>) -> Vec<u8> {
    trustedge_types::codec::encode(&AerosolCall::ReportCasePresence { upload, visits })
}

/// The upload id and visits of a [`CASE_PRESENCE_KIND`] payload (1..=64 visits).
pub fn decode_case_presence(payload: &[u8]) -> Result<(Hash, Vec<CaseVisit>), String> {
    let call: AerosolCall =
        trustedge_types::codec::decode(payload, trustedge_device::MAX_READING_PAYLOAD_BYTES)
            .map_err(|e| format!("not a case presence: {e}"))?;
    match call {
        AerosolCall::ReportCasePresence { upload, visits }
            if !visits.is_empty() && visits.len() <= MAX_VISITS_PER_CALL =>
        {
            Ok((upload, visits))
        }
        AerosolCall::ReportCasePresence { .. } => Err(format!(
            "a case presence carries 1..={MAX_VISITS_PER_CALL} visits"
        )),
        AerosolCall::PublishAlerts { .. } => Err("not a case presence: publish_alerts".into()),
    }
}

/// The payload a device puts in an `air_quality` reading: the JSON form of `reading`.
pub fn encode_air_quality(reading: &Reading) -> Vec<u8> {
    // Serializing plain numbers to JSON cannot fail; an empty payload is refused later.
    serde_json::to_vec(reading).unwrap_or_default()
}

/// The reading of an `air_quality` payload.
pub fn decode_air_quality(payload: &[u8]) -> Result<Reading, String> {
    serde_json::from_slice(payload).map_err(|e| format!("not an air-quality reading: {e}"))
}

/// One monitored room of the `[aerosol]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AerosolRoom {
    /// A local label (never published), 1..=64 printable ASCII characters.
    pub name: String,
    /// Volume, m³.
    pub volume_m3: f64,
    /// Nominal (commissioned) air changes per hour; without it no ventilation-failure
    /// detection, and the ACH is estimated from CO₂.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nominal_ach: Option<f64>,
    /// The venue's 32-byte secret (64 hex digits): its daily venue ids derive from it.
    pub venue_secret_hex: String,
    /// Addresses of the room's air-quality devices.
    pub devices: Vec<Address>,
}

/// The `[aerosol]` table. Paths are relative to the node's home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AerosolConfig {
    /// Whether the node scores rooms and publishes alerts.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// The rooms.
    #[serde(default)]
    pub rooms: Vec<AerosolRoom>,
    /// The member key that signs alerts (an operator of an edge-operator organisation);
    /// the `[tracing]` key when absent, else the node's `key_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// How often the worker reads the store, ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often windows ended before now are closed, ms.
    #[serde(default = "defaults::close_interval_ms")]
    pub close_interval_ms: u64,
}

mod defaults {
    pub fn enabled() -> bool {
        true
    }
    pub fn poll_interval_ms() -> u64 {
        200
    }
    pub fn close_interval_ms() -> u64 {
        10_000
    }
}

impl Default for AerosolConfig {
    fn default() -> Self {
        AerosolConfig {
            enabled: defaults::enabled(),
            rooms: Vec::new(),
            key_path: None,
            poll_interval_ms: defaults::poll_interval_ms(),
            close_interval_ms: defaults::close_interval_ms(),
        }
    }
}

// `validate` (through the engine) refuses NaN volumes and ACHs, so equality is reflexive on
// every configuration a node accepts (NodeConfig compares configurations).
impl Eq for AerosolConfig {}

impl AerosolConfig {
    /// The engine with every room registered, and the room of each device address.
    pub fn engine(&self) -> Result<(AerosolEngine, HashMap<Address, String>), String> {
        let mut engine = AerosolEngine::new(AerosolEdgeConfig::default())
            .map_err(|e| format!("aerosol: {e}"))?;
        let mut by_device = HashMap::new();
        for room in &self.rooms {
            let secret: [u8; 32] = hex::decode(&room.venue_secret_hex)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    format!(
                        "aerosol room {:?}: venue_secret_hex must be 64 hex digits",
                        room.name
                    )
                })?;
            engine
                .add_room(
                    &room.name,
                    RoomConfig {
                        volume_m3: room.volume_m3,
                        nominal_ach_per_h: room.nominal_ach,
                        secret: VenueSecret(secret),
                    },
                )
                .map_err(|e| format!("aerosol room {:?}: {e}", room.name))?;
            if room.devices.is_empty() {
                return Err(format!("aerosol room {:?} lists no devices", room.name));
            }
            for d in &room.devices {
                if by_device.insert(*d, room.name.clone()).is_some() {
                    return Err(format!("aerosol: device {d} is listed in two rooms"));
                }
            }
        }
        Ok((engine, by_device))
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("close_interval_ms", self.close_interval_ms),
        ] {
            if !crate::config::INTERVAL_MS_RANGE.contains(&v) {
                return Err(format!("aerosol.{name} must be in 1..=3600000"));
            }
        }
        self.engine().map(|_| ())
    }
}

/// Labels of refused readings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// `unknown_room`, `undecodable`, `out_of_order`, `invalid`.
    pub reason: String,
}

/// Metrics of aerosol alerting.
#[derive(Default)]
pub struct AerosolMetrics {
    /// Air-quality readings fed to the engine.
    pub readings: Counter,
    /// Readings refused, by reason.
    pub refused: Family<RefusalLabels, Counter>,
    /// Alerts committed on the ledger.
    pub alerts_published: Counter,
    /// Alert transactions refused or failed (and alerts dropped after the last attempt).
    pub publish_errors: Counter,
    /// Committed alerts pushed to devices over MQTT.
    pub alerts_pushed: Counter,
    /// Case visits relayed with `aerosol.report_case_presence` (committed).
    pub presences_relayed: Counter,
    /// Case-presence readings or visits that could not be relayed (undecodable, upload or
    /// alert never committed, transaction refused after the last attempt).
    pub presence_errors: Counter,
}

impl AerosolMetrics {
    /// Registers these metrics (names prefixed `aerosol_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "aerosol_readings",
            "Air-quality readings fed to the aerosol engine",
            self.readings.clone(),
        );
        r.register(
            "aerosol_refused",
            "Air-quality readings refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "aerosol_alerts_published",
            "Aerosol alerts committed on the ledger",
            self.alerts_published.clone(),
        );
        r.register(
            "aerosol_publish_errors",
            "Aerosol alert transactions refused or failed",
            self.publish_errors.clone(),
        );
        r.register(
            "aerosol_alerts_pushed",
            "Committed aerosol alerts pushed to devices over MQTT",
            self.alerts_pushed.clone(),
        );
        r.register(
            "aerosol_presences_relayed",
            "Case visits relayed with aerosol.report_case_presence",
            self.presences_relayed.clone(),
        );
        r.register(
            "aerosol_presence_errors",
            "Case presences that could not be relayed",
            self.presence_errors.clone(),
        );
    }

    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
            })
            .inc();
    }
}

/// One closed window of a room, as `GET /v1/aerosol/rooms` shows it (local data of the
/// edge, never on the ledger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoomWindowView {
    /// Window start, Unix seconds.
    pub start_s: u64,
    /// Window end, Unix seconds.
    pub end_s: u64,
    /// Infection probability of a susceptible present for the window (0..=1).
    pub probability: f64,
    /// Mean occupancy over the window.
    pub mean_occupancy: f64,
    /// Whether the ventilation-failure detector was alarming.
    pub ventilation_failure: bool,
    /// Whether the PM2.5-spike detector alarmed in it.
    pub particle_spike: bool,
    /// Whether an alert was emitted for it.
    pub alerted: bool,
}

impl From<&WindowDecision> for RoomWindowView {
    fn from(d: &WindowDecision) -> Self {
        RoomWindowView {
            start_s: d.start_s,
            end_s: d.end_s,
            probability: d.probability,
            mean_occupancy: d.mean_occupancy,
            ventilation_failure: d.ventilation_failure,
            particle_spike: d.particle_spike,
            alerted: d.alert.is_some(),
        }
    }
}

/// One monitored room and its last closed windows, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoomRiskView {
    /// The room's local name (from `[aerosol]`).
    pub room: String,
    /// Volume, m³.
    pub volume_m3: f64,
    /// Nominal air changes per hour, if configured.
    pub ach: Option<f64>,
    /// Its last closed windows (at most [`RECENT_DECISIONS`]), oldest first.
    pub windows: Vec<RoomWindowView>,
}

/// The answer of `GET /v1/aerosol/rooms`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AerosolRoomsResponse {
    /// Every configured room, in name order.
    pub rooms: Vec<RoomRiskView>,
}

/// The rooms' last closed windows, shared between the worker (which appends what it
/// closes) and the API (which reads them). Bounded: at most [`RECENT_DECISIONS`] windows
/// per configured room.
#[derive(Clone, Debug, Default)]
pub struct AerosolRooms(Arc<RwLock<BTreeMap<String, RoomRiskView>>>);

impl AerosolRooms {
    /// Every room of `config`, with no window yet.
    pub fn new(config: &AerosolConfig) -> Self {
        let rooms = config
            .rooms
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    RoomRiskView {
                        room: r.name.clone(),
                        volume_m3: r.volume_m3,
                        ach: r.nominal_ach,
                        windows: Vec::new(),
                    },
                )
            })
            .collect();
        AerosolRooms(Arc::new(RwLock::new(rooms)))
    }

    /// Appends `room`'s windows that end after its last one known (a room not configured
    /// is ignored), keeping the last [`RECENT_DECISIONS`].
    pub fn publish(&self, room: &str, decisions: &[WindowDecision]) {
        let mut rooms = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let Some(view) = rooms.get_mut(room) else {
            return;
        };
        let last = view.windows.last().map(|w| w.end_s);
        view.windows.extend(
            decisions
                .iter()
                .filter(|d| last.is_none_or(|e| d.end_s > e))
                .map(RoomWindowView::from),
        );
        let excess = view.windows.len().saturating_sub(RECENT_DECISIONS);
        view.windows.drain(..excess);
    }

    /// The end of `room`'s last window known, if any.
    fn last_end(&self, room: &str) -> Option<u64> {
        let rooms = self.0.read().unwrap_or_else(PoisonError::into_inner);
        rooms.get(room)?.windows.last().map(|w| w.end_s)
    }

    /// Every room, with its windows that end after `since_s` (all with `None`).
    pub fn snapshot(&self, since_s: Option<u64>) -> AerosolRoomsResponse {
        let rooms = self.0.read().unwrap_or_else(PoisonError::into_inner);
        AerosolRoomsResponse {
            rooms: rooms
                .values()
                .map(|r| RoomRiskView {
                    room: r.room.clone(),
                    volume_m3: r.volume_m3,
                    ach: r.ach,
                    windows: r
                        .windows
                        .iter()
                        .filter(|w| since_s.is_none_or(|s| w.end_s > s))
                        .cloned()
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The inputs of the aerosol worker.
pub struct AerosolWorker {
    /// Settings.
    pub config: AerosolConfig,
    /// The edge store.
    pub store: Arc<EdgeStore>,
    /// The node's replica.
    pub ledger: Arc<Ledger>,
    /// The aerosol member key.
    pub key: Keypair,
    /// The node's own API (transactions are admitted and forwarded there).
    pub api: Client,
    /// The edge's MQTT broker (alerts are pushed there).
    pub broker: SocketAddr,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where the rooms' closed windows are published (read by `GET /v1/aerosol/rooms`).
    pub rooms: AerosolRooms,
}

/// A case's presences waiting to be relayed.
struct PendingPresence {
    upload: Hash,
    visits: Vec<CaseVisit>,
    since: Instant,
    attempts: u32,
}

struct State {
    engine: AerosolEngine,
    by_device: HashMap<Address, String>,
    next_record: Option<u64>,
    /// Alerts to publish, with the attempts made.
    pending: Vec<(AerosolAlertTx, u32)>,
    last_close: Instant,
    /// When each room was last fed a reading.
    last_fed: HashMap<String, Instant>,
    /// Position in the replica's aerosol events.
    event_from: Height,
    event_cursor: Option<EventCursor>,
    /// Committed alert windows by venue id: (day, start, end), the last 14 days.
    committed: HashMap<[u8; 16], Vec<(u32, u64, u64)>>,
    /// Alerts already pushed.
    pushed: HashSet<Hash>,
    /// Case presences to relay.
    presences: Vec<PendingPresence>,
    /// The nonce after the last one this worker signed (a transaction it stopped waiting
    /// for may still be in a mempool, ahead of the replica's last nonce).
    next_nonce: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AerosolWorker {
    /// Runs until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (engine, by_device) = match self.config.engine() {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot start aerosol alerting");
                return;
            }
        };
        let mut options = MqttOptions::new(
            "trustedge-edge-aerosol",
            self.broker.ip().to_string(),
            self.broker.port(),
        );
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        let (mqtt, mut eventloop) = crate::mqtt::low_latency_client(options, 1024);
        let mut mqtt_stop = stop.clone();
        let poller = tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = mqtt_stop.wait_for(|s| *s) => break,
                    e = eventloop.poll() => e,
                };
                if let Err(e) = event {
                    tracing::debug!(error = %e, "aerosol MQTT publisher reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let mut state = State {
            engine,
            by_device,
            next_record: None,
            pending: Vec::new(),
            last_close: Instant::now(),
            last_fed: HashMap::new(),
            event_from: 0,
            event_cursor: None,
            committed: HashMap::new(),
            pushed: HashSet::new(),
            presences: Vec::new(),
            next_nonce: 0,
        };
        let tick = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(tick) => {}
            }
            // A stop cuts a step short: it may be waiting for commits that will never
            // come once the node's follower has stopped (30 s each). The worker reads
            // its store from the start again on the next start, and what is already on
            // the ledger is not published twice; devices read the ledger too.
            let result = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.step(&mut state, &mqtt) => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "aerosol step failed");
            }
        }
        let _ = mqtt.try_disconnect();
        let _ = poller.await;
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EdgeStore, &Ledger) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || f(&store, &ledger))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn step(&self, state: &mut State, mqtt: &AsyncClient) -> Result<(), String> {
        // 1. New air-quality readings, in record order; case presences to relay.
        let from = state.next_record;
        let (next, readings, presences) = self.blocking(move |s, _| scan_records(s, from)).await?;
        state.next_record = Some(next);
        let m = &self.metrics.aerosol;
        for payload in presences {
            match decode_case_presence(&payload) {
                Ok((upload, visits)) if state.presences.len() < MAX_PENDING_PRESENCES => {
                    state.presences.push(PendingPresence {
                        upload,
                        visits,
                        since: Instant::now(),
                        attempts: 0,
                    });
                }
                Ok(_) => {
                    m.presence_errors.inc();
                    tracing::warn!("too many case presences waiting; one dropped");
                }
                Err(e) => {
                    m.presence_errors.inc();
                    tracing::debug!(error = %e, "a stored case-presence reading does not decode");
                }
            }
        }
        for (device, payload) in readings {
            let Some(room) = state.by_device.get(&device) else {
                m.refuse("unknown_room");
                tracing::debug!(%device, "air-quality reading of a device in no room");
                continue;
            };
            let reading = match decode_air_quality(&payload) {
                Ok(r) => r,
                Err(e) => {
                    m.refuse("undecodable");
                    tracing::debug!(%device, error = %e, "air-quality reading refused");
                    continue;
                }
            };
            match state.engine.push(room, &reading) {
                Ok(alerts) => {
                    m.readings.inc();
                    state.last_fed.insert(room.clone(), Instant::now());
                    state.pending.extend(alerts.into_iter().map(|a| (a, 0)));
                }
                Err(e) => {
                    m.refuse(refusal_reason(&e));
                    tracing::debug!(%device, error = %e, "air-quality reading refused");
                }
            }
        }
        // 2. Windows that ended while their devices were quiet: rooms fed nothing for a
        // close interval (a room still catching up on a backlog is left to its readings,
        // or its open window would be cut short).
        let interval = Duration::from_millis(self.config.close_interval_ms);
        if state.last_close.elapsed() >= interval {
            state.last_close = Instant::now();
            let now = now_s();
            let quiet: Vec<String> = state
                .engine
                .rooms()
                .filter(|r| {
                    state
                        .last_fed
                        .get(*r)
                        .is_none_or(|t| t.elapsed() >= interval)
                })
                .map(str::to_string)
                .collect();
            for room in quiet {
                match state.engine.close_until(&room, now) {
                    Ok(alerts) => state.pending.extend(alerts.into_iter().map(|a| (a, 0))),
                    Err(e) => tracing::warn!(%room, error = %e, "closing aerosol windows failed"),
                }
            }
        }
        // The windows closed by readings or by the clock, for the API.
        for room in state.engine.rooms() {
            let decisions = state.engine.recent_decisions(room);
            if decisions.last().map(|d| d.end_s) != self.rooms.last_end(room) {
                self.rooms.publish(room, decisions);
            }
        }
        // 3. Publish.
        if !state.pending.is_empty() {
            self.publish(state).await?;
        }
        // 4. Committed alerts (any edge's): remembered, and pushed to devices.
        self.push_committed(state, mqtt).await?;
        // 5. Case presences whose upload and alerts are on the ledger.
        if !state.presences.is_empty() {
            self.relay_presences(state).await?;
        }
        Ok(())
    }

    async fn push_committed(&self, state: &mut State, mqtt: &AsyncClient) -> Result<(), String> {
        let (from_height, cursor) = (state.event_from, state.event_cursor);
        let (records, cursor, from_height) = self
            .blocking(move |_, l| new_alerts(l, from_height, cursor))
            .await?;
        state.event_cursor = cursor;
        state.event_from = from_height;
        let today = day_now();
        let oldest = today.saturating_sub(MAX_ALERT_AGE_DAYS);
        for rec in records {
            if rec.day < oldest || !state.pushed.insert(rec.id) {
                continue;
            }
            state
                .committed
                .entry(rec.venue)
                .or_default()
                .push((rec.day, rec.start_s, rec.end_s));
            // Waits for room in the client's queue (a batch of alerts can fill it); one not
            // queued in time is not counted as pushed (devices also read the ledger).
            if let Ok(body) = serde_json::to_vec(&rec)
                && crate::mqtt::push(mqtt, aerosol_topic(rec.day), body).await
            {
                self.metrics.aerosol.alerts_pushed.inc();
            }
        }
        // Forget what is older than the contract keeps accepting.
        state.committed.retain(|_, w| {
            w.retain(|(day, _, _)| *day >= oldest);
            !w.is_empty()
        });
        if state.pushed.len() > 4 * MAX_PENDING_PRESENCES {
            // Ids of alerts older than the window are never seen again (events move on).
            state.pushed.clear();
        }
        Ok(())
    }

    /// Whether `v` overlaps a committed alert window of its venue id.
    fn overlaps_alert(state: &State, v: &CaseVisit) -> bool {
        state.committed.get(&v.venue).is_some_and(|w| {
            w.iter()
                .any(|(_, start, end)| *start < v.end_s && v.start_s < *end)
        })
    }

    async fn relay_presences(&self, state: &mut State) -> Result<(), String> {
        let m = &self.metrics.aerosol;
        // What the ledger has already: the uploads, and visits recorded.
        let queries: Vec<(Hash, Vec<CaseVisit>)> = state
            .presences
            .iter()
            .map(|p| (p.upload, p.visits.clone()))
            .collect();
        let known = self
            .blocking(move |_, l| {
                let snap = l.store().snapshot().map_err(|e| e.to_string())?;
                let mut out = Vec::with_capacity(queries.len());
                for (upload, visits) in queries {
                    let has_upload = diagnosis::upload(&snap, &upload)
                        .map_err(|e| e.to_string())?
                        .is_some();
                    let mut recorded = Vec::with_capacity(visits.len());
                    for v in &visits {
                        let id = aerosol::presence_id(&upload, v);
                        recorded.push(
                            aerosol::presence(&snap, &id)
                                .map_err(|e| e.to_string())?
                                .is_some(),
                        );
                    }
                    out.push((has_upload, recorded));
                }
                Ok(out)
            })
            .await?;
        let pending = std::mem::take(&mut state.presences);
        let mut keep = Vec::new();
        let mut calls: Vec<(PendingPresence, Vec<CaseVisit>)> = Vec::new();
        for (mut p, (has_upload, recorded)) in pending.into_iter().zip(known) {
            let expired = p.since.elapsed() >= PRESENCE_WAIT;
            p.visits = p
                .visits
                .into_iter()
                .zip(recorded)
                .filter(|(_, done)| !done)
                .map(|(v, _)| v)
                .collect();
            if p.visits.is_empty() {
                continue;
            }
            if !has_upload {
                if expired {
                    m.presence_errors.inc();
                    tracing::warn!(upload = %p.upload, "case presences dropped: the upload never reached the ledger");
                } else {
                    keep.push(p);
                }
                continue;
            }
            let (ready, waiting): (Vec<CaseVisit>, Vec<CaseVisit>) = p
                .visits
                .iter()
                .partition(|v| Self::overlaps_alert(state, v));
            if !waiting.is_empty() {
                if expired {
                    m.presence_errors.inc_by(waiting.len() as u64);
                    tracing::warn!(upload = %p.upload, visits = waiting.len(), "case visits dropped: no committed alert overlaps them");
                } else {
                    keep.push(PendingPresence {
                        upload: p.upload,
                        visits: waiting,
                        since: p.since,
                        attempts: p.attempts,
                    });
                }
            }
            if !ready.is_empty() {
                calls.push((p, ready));
            }
        }
        state.presences = keep;
        if calls.is_empty() {
            return Ok(());
        }
        let payloads = calls
            .iter()
            .map(|(p, visits)| {
                Payload::new(
                    aerosol::NAME,
                    &AerosolCall::ReportCasePresence {
                        upload: p.upload,
                        visits: visits.clone(),
                    },
                )
            })
            .collect();
        let results = match self.sign_and_submit(&mut state.next_nonce, payloads).await {
            Ok(r) => r,
            Err(e) => vec![Err(e); calls.len()],
        };
        for ((mut p, visits), r) in calls.into_iter().zip(
            results
                .into_iter()
                .chain(std::iter::repeat(Err("not submitted".to_string()))),
        ) {
            let outcome = match r {
                Ok(h) => self.await_commit(h).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(height) => {
                    m.presences_relayed.inc_by(visits.len() as u64);
                    tracing::info!(upload = %p.upload, visits = visits.len(), height, "relayed case presences");
                }
                Err(e) => {
                    p.attempts += 1;
                    tracing::warn!(upload = %p.upload, error = %e, "a case-presence transaction was refused or failed");
                    if p.attempts < MAX_PUBLISH_ATTEMPTS {
                        p.visits = visits;
                        state.presences.push(p);
                    } else {
                        m.presence_errors.inc_by(visits.len() as u64);
                    }
                }
            }
        }
        Ok(())
    }

    async fn publish(&self, state: &mut State) -> Result<(), String> {
        let m = &self.metrics.aerosol;
        // Leave out alerts already on the ledger (a restart re-reads the store).
        let pending = std::mem::take(&mut state.pending);
        let mut fresh = self
            .blocking(move |_, l| {
                let snap = l.store().snapshot().map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for (a, n) in pending {
                    if aerosol::alert(&snap, &a.id())
                        .map_err(|e| e.to_string())?
                        .is_none()
                    {
                        out.push((a, n));
                    }
                }
                Ok(out)
            })
            .await?;
        if fresh.is_empty() {
            return Ok(());
        }
        let alerts: Vec<AerosolAlertTx> = fresh.iter().map(|(a, _)| *a).collect();
        let calls = batches(&alerts, MAX_ALERTS_PER_CALL);
        let payloads = calls
            .iter()
            .map(|c| Payload::new(aerosol::NAME, c))
            .collect();
        let results = match self.sign_and_submit(&mut state.next_nonce, payloads).await {
            Ok(r) => r,
            Err(e) => vec![Err(e); calls.len()],
        };
        let mut retry = Vec::new();
        for (chunk, r) in fresh.chunks_mut(MAX_ALERTS_PER_CALL).zip(
            results
                .into_iter()
                .chain(std::iter::repeat(Err(String::new()))),
        ) {
            let outcome = match r {
                Ok(h) => self.await_commit(h).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(height) => {
                    m.alerts_published.inc_by(chunk.len() as u64);
                    tracing::info!(alerts = chunk.len(), height, "published aerosol alerts");
                }
                Err(e) => {
                    m.publish_errors.inc();
                    tracing::warn!(error = %e, "an aerosol alert transaction was refused or failed");
                    for (a, n) in chunk.iter_mut() {
                        *n += 1;
                        if *n < MAX_PUBLISH_ATTEMPTS {
                            retry.push((*a, *n));
                        }
                    }
                }
            }
        }
        state.pending = retry;
        Ok(())
    }

    /// Signs and submits `payloads` from `next_nonce` on (see [`crate::submit::submit_from`])
    /// and advances it.
    async fn sign_and_submit(
        &self,
        next_nonce: &mut u64,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Result<Hash, String>>, String> {
        let r =
            crate::submit::submit_from(&self.ledger, &self.api, &self.key, payloads, *next_nonce)
                .await?;
        *next_nonce = r.next_nonce;
        Ok(r.results)
    }

    async fn await_commit(&self, hash: Hash) -> Result<u64, String> {
        crate::submit::await_commit(&self.ledger, hash).await
    }
}

/// The metric label of an engine refusal.
fn refusal_reason(e: &AerosolEdgeError) -> &'static str {
    match e {
        AerosolEdgeError::UnknownRoom(_) => "unknown_room",
        AerosolEdgeError::OutOfOrder { .. } => "out_of_order",
        _ => "invalid",
    }
}

/// Reads the store from `from` (the first record kept when `None`): the device address and
/// payload of each air-quality reading, the payload of each case-presence reading, and the
/// next id to read.
#[allow(clippy::type_complexity, reason = "one private call site")]
fn scan_records(
    store: &EdgeStore,
    from: Option<u64>,
) -> Result<(u64, Vec<(Address, Vec<u8>)>, Vec<Vec<u8>>), String> {
    let mut id = match from {
        Some(id) => id,
        None => store
            .range_by_time(0, u64::MAX, 1)
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .unwrap_or(0),
    };
    let mut out = Vec::new();
    let mut presences = Vec::new();
    for _ in 0..SCAN_BATCH {
        let Some(meta) = store.meta(id).map_err(|e| e.to_string())? else {
            break;
        };
        if meta.kind == AIR_QUALITY_KIND
            && let Some(rec) = store.get(id).map_err(|e| e.to_string())?
        {
            out.push((rec.reading.device_address(), rec.reading.payload));
        } else if meta.kind == CASE_PRESENCE_KIND
            && let Some(rec) = store.get(id).map_err(|e| e.to_string())?
        {
            presences.push(rec.reading.payload);
        }
        id += 1;
    }
    Ok((id, out, presences))
}

/// Today's UTC day number.
fn day_now() -> u32 {
    aerosol::day_of(now_s())
}

/// Alerts published since the cursor (their records), the new cursor and its height floor.
#[allow(clippy::type_complexity, reason = "one private call site")]
fn new_alerts(
    ledger: &Ledger,
    from_height: Height,
    mut cursor: Option<EventCursor>,
) -> Result<(Vec<AlertRecord>, Option<EventCursor>, Height), String> {
    let filter = EventFilter {
        module: Some(aerosol::NAME.into()),
        kind: Some("alert_published".into()),
        from_height: Some(from_height),
        ..EventFilter::default()
    };
    let mut out = Vec::new();
    let mut from = from_height;
    loop {
        let page = ledger
            .events(&filter, cursor, EVENTS_PAGE)
            .map_err(|e| e.to_string())?;
        // Taken after the page: it holds every alert the page names (alerts are never
        // removed).
        let snap = ledger.store().snapshot().map_err(|e| e.to_string())?;
        for ev in &page.events {
            from = from.max(ev.height);
            let id = ev
                .event
                .attributes
                .iter()
                .find(|a| a.key == "alert_id")
                .and_then(|a| Hash::from_hex(&a.value).ok());
            if let Some(id) = id
                && let Some(rec) = aerosol::alert(&snap, &id).map_err(|e| e.to_string())?
            {
                out.push(rec);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => {
                if let Some(last) = page.events.last() {
                    cursor = Some(EventCursor {
                        height: last.height,
                        tx_index: last.tx_index,
                        event_index: last.event_index.saturating_add(1),
                    });
                }
                break;
            }
        }
    }
    Ok((out, cursor, from))
}

/// Spawns the worker. The key is `[aerosol] key_path`, else the `[tracing]` one, else the
/// node's.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all parts of the node"
)]
pub async fn start_worker(
    home: &Path,
    node: &crate::NodeConfig,
    config: &AerosolConfig,
    store: Arc<EdgeStore>,
    ledger: Arc<Ledger>,
    broker: SocketAddr,
    api: SocketAddr,
    metrics: Arc<Metrics>,
    rooms: AerosolRooms,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, crate::NodeError> {
    let tracing_key = node
        .tracing
        .as_ref()
        .filter(|t| t.enabled)
        .and_then(|t| t.key_path.as_ref());
    let key_path = config
        .key_path
        .as_ref()
        .or(tracing_key)
        .or(node.key_path.as_ref())
        .ok_or_else(|| crate::NodeError::Role("[aerosol] needs a key (key_path)".into()))?;
    if config.key_path.is_none() {
        // Another loop signs with this key too; each reads the last nonce from the ledger
        // on its own, so their transactions may take the same nonce (a refused batch is
        // retried).
        tracing::warn!(
            "[aerosol] shares its signing key with another worker: their nonces may collide; \
             give [aerosol] its own key_path"
        );
    }
    let key = crate::load_key(&crate::NodeConfig::resolve(home, key_path))?;
    let worker = AerosolWorker {
        config: config.clone(),
        store,
        ledger,
        key,
        api: Client::new(format!("http://{api}")),
        broker,
        metrics,
        rooms,
    };
    Ok(tokio::spawn(worker.run(stop)))
}
