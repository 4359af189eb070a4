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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use trustedge_aerosol::alert::VenueSecret;
use trustedge_aerosol::risk::Reading;
use trustedge_chain::Ledger;
use trustedge_contracts::aerosol::{self, AerosolAlertTx, MAX_ALERTS_PER_CALL};
use trustedge_edge::aerosol::{
    AerosolEdgeConfig, AerosolEdgeError, AerosolEngine, RoomConfig, batches,
};
use trustedge_types::{Address, Hash, Keypair, Payload};

use crate::client::Client;
use crate::edge_store::EdgeStore;
use crate::metrics::Metrics;
pub use crate::submit::{COMMIT_TIMEOUT, EXPIRY_BLOCKS};

/// The reading kind of an air-quality device.
pub const AIR_QUALITY_KIND: &str = "air_quality";
/// Attempts at publishing one alert before it is dropped (and counted an error).
pub const MAX_PUBLISH_ATTEMPTS: u32 = 5;
/// Most records read from the store per tick.
const SCAN_BATCH: usize = 4096;

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
    }

    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
            })
            .inc();
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
    /// Metrics.
    pub metrics: Arc<Metrics>,
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
        let mut state = State {
            engine,
            by_device,
            next_record: None,
            pending: Vec::new(),
            last_close: Instant::now(),
            last_fed: HashMap::new(),
        };
        let tick = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(tick) => {}
            }
            if let Err(e) = self.step(&mut state).await {
                tracing::warn!(error = %e, "aerosol step failed");
            }
        }
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

    async fn step(&self, state: &mut State) -> Result<(), String> {
        // 1. New air-quality readings, in record order.
        let from = state.next_record;
        let (next, readings) = self.blocking(move |s, _| scan_records(s, from)).await?;
        state.next_record = Some(next);
        let m = &self.metrics.aerosol;
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
        // 3. Publish.
        if !state.pending.is_empty() {
            self.publish(state).await?;
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
        let results = match self.sign_and_submit(payloads).await {
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

    async fn sign_and_submit(
        &self,
        payloads: Vec<Payload>,
    ) -> Result<Vec<Result<Hash, String>>, String> {
        crate::submit::sign_and_submit(&self.ledger, &self.api, &self.key, payloads).await
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
/// payload of each air-quality reading, and the next id to read.
#[allow(clippy::type_complexity, reason = "one private call site")]
fn scan_records(
    store: &EdgeStore,
    from: Option<u64>,
) -> Result<(u64, Vec<(Address, Vec<u8>)>), String> {
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
    for _ in 0..SCAN_BATCH {
        let Some(meta) = store.meta(id).map_err(|e| e.to_string())? else {
            break;
        };
        if meta.kind == AIR_QUALITY_KIND
            && let Some(rec) = store.get(id).map_err(|e| e.to_string())?
        {
            out.push((rec.reading.device_address(), rec.reading.payload));
        }
        id += 1;
    }
    Ok((id, out))
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
    api: std::net::SocketAddr,
    metrics: Arc<Metrics>,
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
        metrics,
    };
    Ok(tokio::spawn(worker.run(stop)))
}
