//! Contact tracing at an edge node: the relay of confirmed cases' diagnosis keys, exposure
//! matching over the edge store, notices published on the ledger and pushed to devices
//! over MQTT, and the signing key of the GAEN exports the API serves.
//!
//! Configured by the `[tracing]` table ([`TracingConfig`]). The worker runs on edge nodes
//! with `[mqtt]`; any node with `[tracing]` serves exports (`crate::api::tracing`).
//!
//! # Relay (issue 4 §4)
//! A confirmed device publishes a reading of kind [`DIAGNOSIS_KIND`] whose payload is the
//! Borsh `DiagnosisCall::PublishKeys {keys, certificate}` on `te/v1/up/diagnosis/<client>`.
//! The ingest verifies and stores it like any reading (acknowledging it on
//! `te/v1/ack/<client>`); this worker then submits `diagnosis.publish_keys` signed with
//! the edge's tracing key, so the patient's device never appears on the ledger, waits for
//! the outcome and publishes a [`RelayOutcome`] on `te/v1/notices/relay/<upload id>` (the
//! upload id is the certificate's keys digest, which the device computes itself).
//!
//! # Matching and notices (§5)
//! Encounter uploads (kind `encounters`) are fed, with the device key that signed them
//! (the local linkage, never shared), to [`trustedge_edge::exposure::ExposureEngine`].
//! For every `diagnosis/keys_published` (with released keys) and `diagnosis/keys_released`
//! event, the worker reads the upload's released keys from its replica, runs the engine
//! (scored by the distance service, [`trustedge_edge::exposure::DistanceScorer`]),
//! submits the notice transactions (no transaction holds two notices of one device) and,
//! once each is committed, publishes each notice alone as a [`NoticeMessage`] on
//! `te/v1/notices/exposure/<day>`. Devices match them with
//! `trustedge_tracing::matching::match_notices`. Encounters with a case's RPIs stored after
//! its keys were matched (phones upload hourly) make the engine name that case again
//! (`ExposureEngine::take_rematch`); the worker matches it again at most every
//! `REMATCH_INTERVAL` (5 s), publishing only notices not published before. A notice in
//! doubt — its transaction refused, failed or not committed within `COMMIT_TIMEOUT`, or its
//! push refused by the broker's queue — has its upload matched again at the next rematch,
//! which pushes what has committed since and publishes what never will (`Deliveries`);
//! after a restart, committed notices are pushed again as their uploads are matched. Uploads no key
//! can match any more (older than `MAX_KEY_AGE_DAYS` + 1 days before the ledger tip) are
//! dropped from the engine.
//!
//! One worker submits everything the tracing key signs, one transaction sequence at a
//! time, so its nonces never race; give it its own key (`[tracing] key_path`) so they do
//! not race the anchoring loop's either.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, MqttOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use trustedge_chain::Ledger;
use trustedge_contracts::diagnosis::{self, DiagnosisCall};
use trustedge_contracts::exposure::{self, ExposureCall, ExposureNotice};
use trustedge_device::SignedReading;
use trustedge_edge::exposure::{
    DeviceLink, DistanceScorer, EngineConfig, ExposureEngine, ExposureScorer,
};
use trustedge_gaen_export::p256::ecdsa::{SigningKey, VerifyingKey};
use trustedge_store::EventFilter;
use trustedge_tracing::upload::{
    BATCH_READING_KIND as ENCOUNTER_BATCH_KIND, EncounterBatch, EncounterUpload,
    READING_KIND as ENCOUNTERS_KIND,
};
use trustedge_tracing::{DiagnosisKey, ReportType};
use trustedge_types::{Hash, Keypair, Payload};

use crate::client::Client;
use crate::edge_store::{EdgeStore, IndexKeys};
use crate::ingest::ReadingIndexer;
use crate::metrics::Metrics;
use crate::mqtt::topics;
pub use crate::submit::{COMMIT_TIMEOUT, EXPIRY_BLOCKS};

/// The reading kind of a diagnosis upload relayed by the edge.
pub const DIAGNOSIS_KIND: &str = "diagnosis";
/// Prefix of the topics exposure notices are pushed on (`…/<day>`).
pub const EXPOSURE_TOPIC_PREFIX: &str = "te/v1/notices/exposure/";
/// Prefix of the topics relay outcomes are pushed on (`…/<upload id hex>`).
pub const RELAY_TOPIC_PREFIX: &str = "te/v1/notices/relay/";
/// Most records read from the store per step: what arrived since the last step, unless the
/// worker is far behind (a busy edge, a restart). 4096 was too few: while steps ran long
/// (matching, commits), the reads fell minutes behind what the edge stored, and a late
/// read is a late match.
const SCAN_BATCH: usize = 1 << 16;
/// Most events read per tick.
const EVENTS_PAGE: usize = 500;

/// The topic of exposure notices for `day`.
pub fn exposure_topic(day: u32) -> String {
    format!("{EXPOSURE_TOPIC_PREFIX}{day}")
}

/// The topic of the relay outcome of diagnosis upload `upload_id`.
pub fn relay_topic(upload_id: &Hash) -> String {
    format!("{RELAY_TOPIC_PREFIX}{}", upload_id.to_hex())
}

/// The `[tracing]` table. Paths are relative to the node's home.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// Whether the node traces (relays, matches, publishes and serves exports).
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Clock skew accepted by matching, s (GAEN: 7200).
    #[serde(default = "defaults::skew_s")]
    pub skew_s: u64,
    /// Close-contact rule: minutes in a day ...
    #[serde(default = "defaults::min_minutes_per_day")]
    pub min_minutes_per_day: f64,
    /// ... within this distance, m.
    #[serde(default = "defaults::max_distance_m")]
    pub max_distance_m: f64,
    /// GAEN v2 attenuation bucket thresholds (immediate, near, medium), dB.
    #[serde(default = "defaults::attenuation_thresholds_db")]
    pub attenuation_thresholds_db: [u8; 3],
    /// GAEN v2 bucket weights (immediate, near, medium, other).
    #[serde(default = "defaults::attenuation_weights")]
    pub attenuation_weights: [f64; 4],
    /// GAEN v2 minimum window score.
    #[serde(default)]
    pub minimum_window_score: f64,
    /// Length of the chunks an encounter is split into for distance estimation, s.
    #[serde(default = "defaults::chunk_s")]
    pub chunk_s: u64,
    /// Seed of the learned distance model's synthetic training (deterministic).
    #[serde(default = "defaults::model_seed")]
    pub model_seed: u64,
    /// Simulated sessions the distance model is trained on at start.
    #[serde(default = "defaults::model_sessions")]
    pub model_sessions: usize,
    /// Trees of the distance model's forest.
    #[serde(default = "defaults::model_trees")]
    pub model_trees: u16,
    /// The P-256 key that signs exports (PEM, created at first start with mode 0600).
    #[serde(default = "defaults::export_key_path")]
    pub export_key_path: PathBuf,
    /// Region written into exports.
    #[serde(default = "defaults::export_region")]
    pub export_region: String,
    /// The member key that signs relayed uploads and notices (an operator of an
    /// edge-operator organisation); the node's `key_path` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// How often the worker looks at the store and the ledger, ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Most encounters the exposure engine holds in memory; past it the oldest uploads are
    /// evicted (counted in `tracing_uploads_evicted`), see
    /// [`trustedge_edge::exposure::EngineConfig::max_encounters`].
    #[serde(default = "defaults::max_encounters")]
    pub max_encounters: usize,
}

mod defaults {
    use std::path::PathBuf;
    pub fn enabled() -> bool {
        true
    }
    pub fn skew_s() -> u64 {
        trustedge_tracing::matching::DEFAULT_SKEW_S
    }
    pub fn min_minutes_per_day() -> f64 {
        15.0
    }
    pub fn max_distance_m() -> f64 {
        2.0
    }
    pub fn attenuation_thresholds_db() -> [u8; 3] {
        [56, 62, 70]
    }
    pub fn attenuation_weights() -> [f64; 4] {
        [1.0, 1.0, 0.3, 0.0]
    }
    pub fn chunk_s() -> u64 {
        300
    }
    pub fn model_seed() -> u64 {
        1
    }
    pub fn model_sessions() -> usize {
        3000
    }
    pub fn model_trees() -> u16 {
        60
    }
    pub fn export_key_path() -> PathBuf {
        PathBuf::from("tracing-export-key.pem")
    }
    pub fn export_region() -> String {
        "TE".into()
    }
    pub fn poll_interval_ms() -> u64 {
        100
    }
    pub fn max_encounters() -> usize {
        trustedge_edge::exposure::EngineConfig::default().max_encounters
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: defaults::enabled(),
            skew_s: defaults::skew_s(),
            min_minutes_per_day: defaults::min_minutes_per_day(),
            max_distance_m: defaults::max_distance_m(),
            attenuation_thresholds_db: defaults::attenuation_thresholds_db(),
            attenuation_weights: defaults::attenuation_weights(),
            minimum_window_score: 0.0,
            chunk_s: defaults::chunk_s(),
            model_seed: defaults::model_seed(),
            model_sessions: defaults::model_sessions(),
            model_trees: defaults::model_trees(),
            export_key_path: defaults::export_key_path(),
            export_region: defaults::export_region(),
            key_path: None,
            poll_interval_ms: defaults::poll_interval_ms(),
            max_encounters: defaults::max_encounters(),
        }
    }
}

// `validate` refuses NaN in every float field, so equality is reflexive on every
// configuration a node accepts (NodeConfig compares configurations).
impl Eq for TracingConfig {}

impl TracingConfig {
    fn scoring(&self) -> trustedge_distance::exposure::ScoringConfig {
        trustedge_distance::exposure::ScoringConfig {
            attenuation_bucket_thresholds_db: self.attenuation_thresholds_db,
            attenuation_bucket_weights: self.attenuation_weights,
            minimum_window_score: self.minimum_window_score,
            ..Default::default()
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.skew_s > 24 * 3600 {
            return Err("tracing.skew_s must be at most 86400".into());
        }
        if !(self.min_minutes_per_day >= 0.0 && self.min_minutes_per_day <= 1440.0) {
            return Err("tracing.min_minutes_per_day must be in 0..=1440".into());
        }
        if !(self.max_distance_m > 0.0 && self.max_distance_m <= 100.0) {
            return Err("tracing.max_distance_m must be in (0, 100]".into());
        }
        self.scoring()
            .validate()
            .map_err(|e| format!("tracing scoring: {e}"))?;
        if !(1..=86_400).contains(&self.chunk_s) {
            return Err("tracing.chunk_s must be in 1..=86400".into());
        }
        if !(1000..=1_000_000_000).contains(&self.max_encounters) {
            return Err("tracing.max_encounters must be in 1000..=1000000000".into());
        }
        if !(10..=1_000_000).contains(&self.model_sessions) {
            return Err("tracing.model_sessions must be in 10..=1000000".into());
        }
        if !(1..=1000).contains(&self.model_trees) {
            return Err("tracing.model_trees must be in 1..=1000".into());
        }
        let region_ok = !self.export_region.is_empty()
            && self.export_region.len() <= 16
            && self
                .export_region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !region_ok {
            return Err("tracing.export_region must be 1..=16 ASCII letters or digits".into());
        }
        if !crate::config::INTERVAL_MS_RANGE.contains(&self.poll_interval_ms) {
            return Err("tracing.poll_interval_ms must be in 1..=3600000".into());
        }
        Ok(())
    }

    /// Trains the distance service and assembles the scorer (CPU-bound: call it on a
    /// blocking thread).
    pub fn scorer(&self) -> Result<DistanceScorer, String> {
        use trustedge_distance::model::{DistanceEstimator, ModelParams, TrainingConfig};
        let estimator = DistanceEstimator::train_synthetic(
            self.model_seed,
            &TrainingConfig {
                sessions: self.model_sessions,
                ..TrainingConfig::default()
            },
            &ModelParams {
                n_trees: self.model_trees,
                ..ModelParams::default()
            },
        )
        .map_err(|e| format!("training the distance model: {e}"))?;
        Ok(DistanceScorer {
            estimator,
            scoring: self.scoring(),
            windows: Default::default(),
            rule: trustedge_distance::exposure::CloseContactRule {
                min_minutes_per_day: self.min_minutes_per_day,
                max_distance_m: self.max_distance_m,
            },
            chunk_s: self.chunk_s,
        })
    }
}

/// The node's export signing key and its public form.
#[derive(Clone)]
pub struct ExportSigner {
    /// The signing key.
    pub signing_key: SigningKey,
    /// Its public key as PEM (`PUBLIC KEY`).
    pub public_pem: String,
    /// Region written into exports.
    pub region: String,
}

impl std::fmt::Debug for ExportSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSigner")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ExportSigner {
    /// The verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.signing_key.verifying_key()
    }
}

/// Loads the export key at `path`, creating it (mode 0600) with `random` bytes when absent.
pub fn load_or_create_export_key(
    path: &Path,
    region: &str,
    random: impl FnOnce() -> [u8; 32],
) -> Result<ExportSigner, String> {
    use trustedge_gaen_export::{parse_signing_key_pem, public_key_to_pem, signing_key_to_pem};
    let err = |m: String| format!("export key {}: {m}", path.display());
    let signing_key = if path.exists() {
        let pem = crate::config::read_small(path).map_err(err)?;
        parse_signing_key_pem(&pem).map_err(|e| err(e.to_string()))?
    } else {
        // A random scalar is a valid key except with negligible probability; retry then.
        let key = SigningKey::from_bytes(&random().into())
            .map_err(|e| err(format!("cannot create a key: {e}")))?;
        let pem = signing_key_to_pem(&key).map_err(|e| err(e.to_string()))?;
        write_private(path, pem.as_bytes()).map_err(err)?;
        key
    };
    let public_pem =
        public_key_to_pem(signing_key.verifying_key()).map_err(|e| err(e.to_string()))?;
    Ok(ExportSigner {
        signing_key,
        public_pem,
        region: region.to_string(),
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| e.to_string())?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| e.to_string())
}

/// Indexes `encounters` readings by the uploader's own RPI and the RPIs it heard, checks
/// `encounter_batch` and `diagnosis` readings decode, and keeps every other kind by time
/// only. A batch gets no index keys: its metadata is stored in the clear, and listing the
/// own RPIs of several uploads there would link them.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingIndexer;

impl ReadingIndexer for TracingIndexer {
    fn index_keys(&self, _client: &str, reading: &SignedReading) -> Result<IndexKeys, String> {
        match reading.kind.as_str() {
            ENCOUNTERS_KIND => {
                let u = EncounterUpload::from_bytes(&reading.payload).map_err(|e| e.to_string())?;
                Ok(IndexKeys {
                    own: u.own_rpi.0.to_vec(),
                    observed: u.encounters.iter().map(|e| e.rpi.0.to_vec()).collect(),
                })
            }
            ENCOUNTER_BATCH_KIND => {
                EncounterBatch::from_bytes(&reading.payload).map_err(|e| e.to_string())?;
                Ok(IndexKeys::default())
            }
            DIAGNOSIS_KIND => {
                decode_diagnosis(&reading.payload)?;
                Ok(IndexKeys::default())
            }
            _ => Ok(IndexKeys::default()),
        }
    }
}

/// The keys and certificate of a diagnosis reading's payload.
pub fn decode_diagnosis(
    payload: &[u8],
) -> Result<(Vec<DiagnosisKey>, diagnosis::VerificationCertificate), String> {
    let call: DiagnosisCall =
        trustedge_types::codec::decode(payload, trustedge_device::MAX_READING_PAYLOAD_BYTES)
            .map_err(|e| format!("not a diagnosis upload: {e}"))?;
    let DiagnosisCall::PublishKeys { keys, certificate } = call;
    if keys.is_empty() || keys.len() > diagnosis::MAX_KEYS_PER_UPLOAD {
        return Err(format!(
            "a diagnosis upload carries 1..={} keys",
            diagnosis::MAX_KEYS_PER_UPLOAD
        ));
    }
    Ok((keys, certificate))
}

/// The payload a device puts in a diagnosis reading.
pub fn encode_diagnosis(
    keys: Vec<DiagnosisKey>,
    certificate: diagnosis::VerificationCertificate,
) -> Vec<u8> {
    trustedge_types::codec::encode(&DiagnosisCall::PublishKeys { keys, certificate })
}

/// What the edge pushes on `te/v1/notices/relay/<upload id>` after relaying an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOutcome {
    /// The upload id (the certificate's keys digest).
    pub upload_id: Hash,
    /// The relaying transaction.
    pub tx_hash: Option<Hash>,
    /// Whether the ledger accepted the keys.
    pub accepted: bool,
    /// The block that committed it.
    pub height: Option<u64>,
    /// Why not, when refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One exposure notice as pushed on `te/v1/notices/exposure/<day>`: one RPI per message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeMessage {
    /// The exposed device's RPI (hex).
    pub rpi: String,
    /// Risk score.
    pub risk_score: u32,
    /// UTC day of the exposure.
    pub day: u32,
    /// The diagnosis upload that triggered it.
    pub source_upload: Hash,
    /// The notice's id on the ledger.
    pub notice_id: Hash,
    /// The block that committed it.
    pub height: u64,
}

/// Metrics of tracing.
pub struct TracingMetrics {
    /// Diagnosis uploads relayed and accepted.
    pub relayed: Counter,
    /// Diagnosis uploads whose relay was refused or failed.
    pub relay_errors: Counter,
    /// Diagnosis keys matched (expanded and looked up).
    pub keys_matched: Counter,
    /// Observations matched by a key.
    pub matches: Counter,
    /// Notices published (committed).
    pub notices_published: Counter,
    /// Notice transactions refused or failed.
    pub notice_errors: Counter,
    /// Time of one matching run, s.
    pub match_seconds: Histogram,
    /// Encounter uploads held by the engine.
    pub uploads_held: Counter,
    /// Encounter uploads dropped from the engine as too old to match any key.
    pub uploads_pruned: Counter,
    /// Encounter uploads evicted from the engine, oldest first, to stay within
    /// `[tracing] max_encounters`.
    pub uploads_evicted: Counter,
    /// Diagnosis uploads matched again because encounters with their RPIs arrived later.
    pub rematches: Counter,
    /// Notices and relay outcomes not pushed over MQTT (queue full for `mqtt::PUSH_TIMEOUT`;
    /// a dropped notice is pushed again at a later rematch).
    pub pushes_dropped: Counter,
    /// Committed notices pushed after their transaction's step: it committed after the
    /// wait ran out, an earlier push was dropped, or the worker restarted.
    pub notices_repushed: Counter,
}

impl Default for TracingMetrics {
    fn default() -> Self {
        TracingMetrics {
            relayed: Counter::default(),
            relay_errors: Counter::default(),
            keys_matched: Counter::default(),
            matches: Counter::default(),
            notices_published: Counter::default(),
            notice_errors: Counter::default(),
            notices_repushed: Counter::default(),
            // 100 µs to ~3 s.
            match_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 16),
            ),
            uploads_held: Counter::default(),
            uploads_pruned: Counter::default(),
            uploads_evicted: Counter::default(),
            rematches: Counter::default(),
            pushes_dropped: Counter::default(),
        }
    }
}

impl TracingMetrics {
    /// Registers these metrics (names prefixed `tracing_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tracing_relayed",
            "Diagnosis uploads relayed and accepted",
            self.relayed.clone(),
        );
        r.register(
            "tracing_relay_errors",
            "Diagnosis uploads whose relay was refused or failed",
            self.relay_errors.clone(),
        );
        r.register(
            "tracing_keys_matched",
            "Diagnosis keys expanded and matched against the edge's encounters",
            self.keys_matched.clone(),
        );
        r.register(
            "tracing_matches",
            "Observations matched by a diagnosis key",
            self.matches.clone(),
        );
        r.register(
            "tracing_notices_published",
            "Exposure notices committed on the ledger",
            self.notices_published.clone(),
        );
        r.register(
            "tracing_notice_errors",
            "Exposure notice transactions refused or failed",
            self.notice_errors.clone(),
        );
        r.register(
            "tracing_match_seconds",
            "Time of one matching run",
            self.match_seconds.clone(),
        );
        r.register(
            "tracing_uploads_held",
            "Encounter uploads fed to the exposure engine",
            self.uploads_held.clone(),
        );
        r.register(
            "tracing_uploads_pruned",
            "Encounter uploads dropped from the exposure engine as too old to match any key",
            self.uploads_pruned.clone(),
        );
        r.register(
            "tracing_uploads_evicted",
            "Encounter uploads evicted from the exposure engine, oldest first, to stay within [tracing] max_encounters",
            self.uploads_evicted.clone(),
        );
        r.register(
            "tracing_rematches",
            "Diagnosis uploads matched again because encounters with their RPIs arrived later",
            self.rematches.clone(),
        );
        r.register(
            "tracing_pushes_dropped",
            "Notices and relay outcomes not pushed to devices over MQTT (queue full too long)",
            self.pushes_dropped.clone(),
        );
        r.register(
            "tracing_notices_repushed",
            "Committed notices pushed after their own step (late commit, dropped push, restart)",
            self.notices_repushed.clone(),
        );
    }
}

/// The inputs of the tracing worker.
pub struct TracingWorker {
    /// Settings.
    pub config: TracingConfig,
    /// The edge store.
    pub store: Arc<EdgeStore>,
    /// The node's replica.
    pub ledger: Arc<Ledger>,
    /// The tracing member key.
    pub key: Keypair,
    /// The node's own API (transactions are admitted and forwarded there).
    pub api: Client,
    /// The broker devices are connected to.
    pub broker: SocketAddr,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The trained scorer.
    pub scorer: Arc<dyn ExposureScorer + Send + Sync>,
}

/// Least time between two runs matching cases again for encounters that arrived after their
/// keys were matched (each run re-indexes every encounter the engine holds).
pub const REMATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The cutoff to prune the engine's uploads to when the ledger's tip has time `tip_s` and
/// the last prune was to `last_s`: encounters that ended more than `MAX_KEY_AGE_DAYS` + 1
/// days plus the skew before the tip cannot match a key the ledger still accepts. `None`
/// until that cutoff is an hour past the last one.
fn prune_cutoff(tip_s: u64, skew_s: u64, last_s: u64) -> Option<u64> {
    let keep_s = (u64::from(diagnosis::MAX_KEY_AGE_DAYS) + 1) * 86_400 + skew_s;
    let cutoff = tip_s.checked_sub(keep_s)?;
    (cutoff >= last_s.saturating_add(3600)).then_some(cutoff)
}

/// Most times the notices of one upload are submitted again after their transaction was
/// refused or failed (a notice the contract refuses for good must not be retried forever).
const MAX_FAILED_ATTEMPTS: u32 = 3;

/// What happens to a matched notice ([`Deliveries::sort`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    /// Not on the ledger and not in flight: submit it.
    Publish,
    /// Committed at this height but not pushed by this run: push it.
    Push(u64),
    /// Pushed already, or in a transaction that may still commit.
    Skip,
}

/// The worker's account of its notices from submission to the devices, so that none is
/// lost between the ledger and MQTT: a transaction that commits after the worker stopped
/// waiting, a push the broker's queue refused, a step cut short, a restart. Pure
/// bookkeeping; the worker feeds it what the ledger says.
///
/// Uploads with a notice in doubt go to `retry`; the worker matches them again at the next
/// rematch, and [`Deliveries::sort`] then says, from the ledger, what is left to do.
/// Delivery is at least once (devices and the simulation driver key notices by RPI and
/// case, so a second push is harmless): after a restart, each upload's committed notices are
/// pushed once more when it is first matched.
#[derive(Debug, Default)]
struct Deliveries {
    /// Submitted, not seen on the ledger: notice id → (source upload, last height its
    /// transaction can commit at).
    in_flight: std::collections::HashMap<Hash, (Hash, u64)>,
    /// Pushed to devices by this run: notice id → its day. Forgotten once the engine has
    /// pruned every encounter of that day ([`Deliveries::forget_before`]): no match can name
    /// the notice again.
    pushed: std::collections::HashMap<Hash, u32>,
    /// Uploads to match again.
    retry: BTreeSet<Hash>,
    /// Refused or failed submissions per upload.
    failed: std::collections::HashMap<Hash, u32>,
    /// The nonce after the last one this run signed (steps do not wait for every commit,
    /// so the replica's last nonce may lag behind it).
    next_nonce: u64,
}

impl Deliveries {
    /// What to do with notice `id` of `upload`, matched again; `committed_at`: the height
    /// the ledger holds it at, if it does; `tip`: the ledger's height.
    fn sort(&mut self, id: Hash, upload: Hash, committed_at: Option<u64>, tip: u64) -> Disposition {
        if let Some(h) = committed_at {
            self.in_flight.remove(&id);
            return if self.pushed.contains_key(&id) {
                Disposition::Skip
            } else {
                Disposition::Push(h)
            };
        }
        match self.in_flight.get(&id) {
            Some(&(_, last)) if last > tip => {
                // Its transaction may still commit: look again later.
                self.retry.insert(upload);
                Disposition::Skip
            }
            _ => {
                self.in_flight.remove(&id);
                Disposition::Publish
            }
        }
    }

    /// Notices submitted in one transaction valid up to height `last`.
    fn submitted(&mut self, ids: impl IntoIterator<Item = (Hash, Hash)>, last: u64) {
        for (id, upload) in ids {
            self.in_flight.insert(id, (upload, last));
        }
    }

    /// The transaction committed: its notices are on the ledger.
    fn committed(&mut self, id: &Hash) {
        self.in_flight.remove(id);
    }

    /// The worker stopped waiting for the transaction (it may still commit).
    fn unsure(&mut self, upload: Hash) {
        self.retry.insert(upload);
    }

    /// The transaction was refused at submission (a stale nonce, a full mempool: worth
    /// another try) or, `executed`, committed as failed (the contract refused it: tried
    /// again at most [`MAX_FAILED_ATTEMPTS`] times). Its notices are not on the ledger.
    /// Returns false when the upload has failed too often to be tried again.
    fn failed(&mut self, id: &Hash, upload: Hash, executed: bool) -> bool {
        self.in_flight.remove(id);
        let n = self.failed.entry(upload).or_insert(0);
        if executed {
            *n += 1;
        }
        if *n <= MAX_FAILED_ATTEMPTS {
            self.retry.insert(upload);
            true
        } else {
            false
        }
    }

    /// A push of notice `id` of `day` was queued (`ok`) or refused by the broker's queue.
    fn push_outcome(&mut self, id: Hash, upload: Hash, day: u32, ok: bool) {
        if ok {
            self.pushed.insert(id, day);
        } else {
            self.retry.insert(upload);
        }
    }

    /// The engine dropped every encounter before UTC day `day`: notices of earlier days can
    /// no longer be matched, so what was pushed of them need not be remembered.
    fn forget_before(&mut self, day: u32) {
        self.pushed.retain(|_, d| *d >= day);
    }

    /// The uploads to match again now.
    fn take_retry(&mut self) -> BTreeSet<Hash> {
        std::mem::take(&mut self.retry)
    }
}

struct State {
    next_record: Option<u64>,
    event_from: trustedge_types::Height,
    event_cursor: Option<trustedge_store::EventCursor>,
    engine: Arc<Mutex<ExposureEngine>>,
    relayed: BTreeSet<Hash>,
    /// The cutoff of the last prune of the engine, Unix s.
    pruned_to_s: u64,
    /// When cases were last matched again for late encounters.
    last_rematch: Option<Instant>,
    /// Uploads the engine had evicted at the last look (its count is cumulative).
    evicted: u64,
    /// Notices between submission and the devices.
    deliveries: Deliveries,
}

impl TracingWorker {
    /// Runs until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let engine = match ExposureEngine::new(EngineConfig {
            skew_s: self.config.skew_s,
            max_encounters: self.config.max_encounters,
            ..EngineConfig::default()
        }) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot start exposure matching");
                return;
            }
        };
        let mut options = MqttOptions::new(
            "trustedge-edge-tracing",
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
                    tracing::debug!(error = %e, "tracing MQTT publisher reconnecting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let mut state = State {
            next_record: None,
            event_from: 0,
            event_cursor: None,
            engine: Arc::new(Mutex::new(engine)),
            relayed: BTreeSet::new(),
            pruned_to_s: 0,
            last_rematch: None,
            evicted: 0,
            deliveries: Deliveries::default(),
        };
        let tick = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(tick) => {}
            }
            // A stop cuts a step short: it may be waiting for commits that will never
            // come once the node's follower has stopped (30 s each). The worker reads
            // its store from the start again on the next start: what is already on the
            // ledger is not published twice, and is pushed again (see `Deliveries`).
            let result = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                r = self.step(&mut state, &mqtt) => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "tracing step failed");
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
        // 1. New records: encounter uploads into the engine, diagnosis uploads to relay;
        //    then, in the same blocking call, uploads no key can match any more are dropped
        //    (see `prune_cutoff`; by the ledger tip's time, so every edge prunes alike).
        let from = state.next_record;
        let engine = state.engine.clone();
        let (skew_s, last) = (self.config.skew_s, state.pruned_to_s);
        let ((next, diagnoses, added), pruned, evicted) = self
            .blocking(move |s, l| {
                let scanned = scan_records(s, from, &engine)?;
                let tip_s = l
                    .latest_header()
                    .map_err(|e| e.to_string())?
                    .map_or(0, |h| h.time_ms / 1000);
                let pruned = match prune_cutoff(tip_s, skew_s, last) {
                    Some(cutoff) => {
                        let mut e = engine.lock().map_err(|_| "engine poisoned".to_string())?;
                        let before = e.uploads();
                        e.prune_before(cutoff);
                        Some((cutoff, (before - e.uploads()) as u64))
                    }
                    None => None,
                };
                let evicted = engine
                    .lock()
                    .map_err(|_| "engine poisoned".to_string())?
                    .evicted_uploads();
                Ok((scanned, pruned, evicted))
            })
            .await?;
        state.next_record = Some(next);
        self.metrics.tracing.uploads_held.inc_by(added);
        self.metrics
            .tracing
            .uploads_evicted
            .inc_by(evicted.saturating_sub(state.evicted));
        state.evicted = evicted;
        if let Some((cutoff, dropped)) = pruned {
            state.pruned_to_s = cutoff;
            // Encounters ending before the cutoff are gone; a day before the cutoff's day
            // has none left.
            state
                .deliveries
                .forget_before(u32::try_from(cutoff / 86_400).unwrap_or(u32::MAX));
            self.metrics.tracing.uploads_pruned.inc_by(dropped);
        }
        for reading in diagnoses {
            self.relay(state, mqtt, reading).await;
        }
        // 2. Diagnosis events: uploads with newly released keys.
        let (uploads, cursor, from_height) = {
            let cursor = state.event_cursor;
            let from_height = state.event_from;
            self.blocking(move |_, l| new_releases(l, from_height, cursor))
                .await?
        };
        state.event_cursor = cursor;
        state.event_from = from_height;
        let mut uploads: BTreeSet<Hash> = uploads.into_iter().collect();
        // 3. Cases whose keys' RPIs newly stored encounters observed (they reached the edge
        //    after the keys were matched): matched again, at most every REMATCH_INTERVAL
        //    (each run re-indexes every encounter held).
        if state
            .last_rematch
            .is_none_or(|t| t.elapsed() >= REMATCH_INTERVAL)
        {
            let again = state
                .engine
                .lock()
                .map(|mut e| e.take_rematch())
                .unwrap_or_default();
            if !again.is_empty() {
                self.metrics.tracing.rematches.inc_by(again.len() as u64);
            }
            uploads.extend(again);
            uploads.extend(state.deliveries.take_retry());
            state.last_rematch = Some(Instant::now());
        }
        // Every case's notices are submitted together and their commits awaited together:
        // one round of blocks for the lot, not one per case (a step matching dozens of
        // cases again waited for dozens of blocks in turn).
        let mut matched = Matched::default();
        for upload in uploads {
            let m = self.match_upload(state, upload).await?;
            matched.publish.extend(m.publish);
            matched.push.extend(m.push);
        }
        self.publish_notices(&mut state.deliveries, mqtt, matched)
            .await
    }

    async fn await_commit(&self, hash: Hash) -> Result<u64, String> {
        crate::submit::await_commit(&self.ledger, hash).await
    }

    async fn relay(&self, state: &mut State, mqtt: &AsyncClient, reading: SignedReading) {
        let (keys, certificate) = match decode_diagnosis(&reading.payload) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "a stored diagnosis reading does not decode");
                return;
            }
        };
        let upload_id = diagnosis::keys_digest(&keys);
        if !state.relayed.insert(upload_id) {
            return;
        }
        let exists = self
            .blocking(move |_, l| {
                let snap = l.store().snapshot().map_err(|e| e.to_string())?;
                diagnosis::upload(&snap, &upload_id).map_err(|e| e.to_string())
            })
            .await;
        let outcome = match exists {
            Ok(Some(rec)) => RelayOutcome {
                upload_id,
                tx_hash: Some(rec.tx_hash),
                accepted: true,
                height: Some(rec.height),
                error: None,
            },
            _ => {
                let payload = Payload::new(
                    diagnosis::NAME,
                    &DiagnosisCall::PublishKeys { keys, certificate },
                );
                let submitted = crate::submit::submit_from(
                    &self.ledger,
                    &self.api,
                    &self.key,
                    vec![payload],
                    state.deliveries.next_nonce,
                )
                .await;
                let hash = match submitted {
                    Ok(mut r) => {
                        state.deliveries.next_nonce = r.next_nonce;
                        r.results.pop().unwrap_or_else(|| Err("no result".into()))
                    }
                    Err(e) => Err(e),
                };
                match hash {
                    Ok(h) => match self.await_commit(h).await {
                        Ok(height) => RelayOutcome {
                            upload_id,
                            tx_hash: Some(h),
                            accepted: true,
                            height: Some(height),
                            error: None,
                        },
                        Err(e) => RelayOutcome {
                            upload_id,
                            tx_hash: Some(h),
                            accepted: false,
                            height: None,
                            error: Some(e),
                        },
                    },
                    Err(e) => RelayOutcome {
                        upload_id,
                        tx_hash: None,
                        accepted: false,
                        height: None,
                        error: Some(e),
                    },
                }
            }
        };
        if outcome.accepted {
            self.metrics.tracing.relayed.inc();
            tracing::info!(upload = %upload_id, tx = ?outcome.tx_hash, "relayed a diagnosis upload");
        } else {
            self.metrics.tracing.relay_errors.inc();
            tracing::warn!(upload = %upload_id, error = ?outcome.error, "diagnosis relay refused");
        }
        let pushed = match serde_json::to_vec(&outcome) {
            Ok(body) => crate::mqtt::push(mqtt, relay_topic(&upload_id), body).await,
            Err(_) => false,
        };
        if !pushed {
            self.metrics.tracing.pushes_dropped.inc();
        }
    }

    /// Matches diagnosis upload `upload`'s released keys: its notices not yet on the
    /// ledger, one transaction's worth each.
    async fn match_upload(&self, state: &mut State, upload: Hash) -> Result<Matched, String> {
        let keys = self.blocking(move |_, l| released_keys(l, &upload)).await?;
        if keys.is_empty() {
            return Ok(Matched::default());
        }
        let engine = state.engine.clone();
        let scorer = self.scorer.clone();
        let mut seed = [0u8; 32];
        {
            use rand_core::RngCore;
            rand_core::OsRng.fill_bytes(&mut seed);
        }
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut e = engine
                .lock()
                .map_err(|_| "exposure engine poisoned".to_string())?;
            Ok::<_, String>(e.process(upload, &keys, scorer.as_ref(), seed))
        })
        .await
        .map_err(|e| e.to_string())??;
        let m = &self.metrics.tracing;
        m.match_seconds.observe(started.elapsed().as_secs_f64());
        m.keys_matched.inc_by(outcome.keys_expanded as u64);
        m.matches.inc_by(outcome.matches as u64);
        let close = outcome.decisions.iter().filter(|d| d.close_contact).count();
        tracing::info!(
            %upload,
            keys = outcome.keys_expanded,
            matches = outcome.matches,
            exposed_device_days = outcome.decisions.len(),
            close_contacts = close,
            "matched released diagnosis keys"
        );
        // What the ledger already holds (a restart or a rematch matches old uploads again)
        // is pushed if this run has not pushed it, not published twice.
        let batches = outcome.batches;
        let (looked_up, tip) = self
            .blocking(move |_, l| {
                let snap = l.store().snapshot().map_err(|e| e.to_string())?;
                let tip = l.height().map_err(|e| e.to_string())?;
                let mut out = Vec::with_capacity(batches.len());
                for b in batches {
                    let mut batch = Vec::with_capacity(b.notices.len());
                    for n in b.notices {
                        let id = exposure::notice_id(&n.source_upload, n.day, &n.rpis);
                        let on_ledger = exposure::notice(&snap, &id)
                            .map_err(|e| e.to_string())?
                            .map(|r| r.height);
                        batch.push((n, id, on_ledger));
                    }
                    out.push(batch);
                }
                Ok((out, tip))
            })
            .await?;
        let mut matched = Matched::default();
        for b in looked_up {
            let mut fresh = Vec::new();
            for (n, id, on_ledger) in b {
                match state.deliveries.sort(id, n.source_upload, on_ledger, tip) {
                    Disposition::Publish => fresh.push((id, n)),
                    Disposition::Push(height) => matched.push.push((id, n, height)),
                    Disposition::Skip => {}
                }
            }
            if !fresh.is_empty() {
                matched.publish.push(fresh);
            }
        }
        Ok(matched)
    }

    /// Pushes the committed notices this run has not pushed, then submits each batch of
    /// new notices as one transaction, all signed and in flight at once, awaits each commit
    /// and pushes the committed notices to devices. Whatever is left in doubt goes to
    /// [`Deliveries`] for the next rematch.
    async fn publish_notices(
        &self,
        deliveries: &mut Deliveries,
        mqtt: &AsyncClient,
        matched: Matched,
    ) -> Result<(), String> {
        let m = &self.metrics.tracing;
        for (id, n, height) in matched.push {
            self.push(deliveries, mqtt, id, &n, height).await;
            m.notices_repushed.inc();
        }
        let batches = matched.publish;
        if batches.is_empty() {
            return Ok(());
        }
        let payloads = batches
            .iter()
            .map(|notices| {
                Payload::new(
                    exposure::NAME,
                    &ExposureCall::PublishNotices {
                        notices: notices.iter().map(|(_, n)| n.clone()).collect(),
                    },
                )
            })
            .collect();
        let (expiry, results) = match crate::submit::submit_from(
            &self.ledger,
            &self.api,
            &self.key,
            payloads,
            deliveries.next_nonce,
        )
        .await
        {
            Ok(r) => {
                deliveries.next_nonce = r.next_nonce;
                (r.expiry_height, r.results)
            }
            Err(e) => (0, vec![Err(e); batches.len()]),
        };
        let results = results
            .into_iter()
            .chain(std::iter::repeat(Err("not submitted".to_string())));
        let mut submitted = Vec::with_capacity(batches.len());
        for (notices, r) in batches.into_iter().zip(results) {
            match r {
                Ok(hash) => {
                    deliveries
                        .submitted(notices.iter().map(|(id, n)| (*id, n.source_upload)), expiry);
                    submitted.push((notices, hash));
                }
                Err(e) => self.notices_failed(deliveries, &notices, &e, false),
            }
        }
        // One wait for the lot: a stalled chain holds the step (and the relays and matches
        // of the next one) for one COMMIT_TIMEOUT, not one per transaction; what has not
        // committed by then is in doubt and looked at again at the next rematch.
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        for (notices, hash) in submitted {
            match self.await_commit_status(hash, deadline).await {
                Commit::Committed(height) => {
                    m.notices_published.inc_by(notices.len() as u64);
                    for (id, n) in notices {
                        deliveries.committed(&id);
                        self.push(deliveries, mqtt, id, &n, height).await;
                    }
                }
                Commit::Failed(e) => self.notices_failed(deliveries, &notices, &e, true),
                Commit::NotYet(e) => {
                    m.notice_errors.inc();
                    tracing::warn!(error = %e, "a notice transaction has not committed yet; its uploads will be looked at again");
                    for (_, n) in &notices {
                        deliveries.unsure(n.source_upload);
                    }
                }
            }
        }
        Ok(())
    }

    /// Pushes committed notice `id` to devices and records the outcome.
    async fn push(
        &self,
        deliveries: &mut Deliveries,
        mqtt: &AsyncClient,
        id: Hash,
        n: &ExposureNotice,
        height: u64,
    ) {
        let ok = publish_notice(mqtt, id, n, height).await;
        if !ok {
            self.metrics.tracing.pushes_dropped.inc();
        }
        deliveries.push_outcome(id, n.source_upload, n.day, ok);
    }

    fn notices_failed(
        &self,
        deliveries: &mut Deliveries,
        notices: &[(Hash, ExposureNotice)],
        e: &str,
        executed: bool,
    ) {
        self.metrics.tracing.notice_errors.inc();
        tracing::warn!(error = %e, "a notice transaction was refused or failed");
        let mut given_up = BTreeSet::new();
        for (id, n) in notices {
            if !deliveries.failed(id, n.source_upload, executed) {
                given_up.insert(n.source_upload);
            }
        }
        for upload in given_up {
            tracing::warn!(%upload, attempts = MAX_FAILED_ATTEMPTS, "giving up publishing notices of an upload");
        }
    }

    /// Waits for `hash` until `deadline`, telling a failure (its notices are not on the
    /// ledger) from a wait that ran out (they may still be).
    async fn await_commit_status(&self, hash: Hash, deadline: Instant) -> Commit {
        match crate::submit::await_commit_until(&self.ledger, hash, deadline).await {
            Ok(Some(h)) => Commit::Committed(h),
            Ok(None) => Commit::NotYet(format!("transaction {hash} not committed in time")),
            Err(e) => Commit::Failed(e),
        }
    }
}

/// The notices of one match, with their ids: to submit (one transaction per batch), and
/// committed ones to push (with their height).
#[derive(Default)]
struct Matched {
    publish: Vec<Vec<(Hash, ExposureNotice)>>,
    push: Vec<(Hash, ExposureNotice, u64)>,
}

/// How the wait for a notice transaction ended.
enum Commit {
    Committed(u64),
    Failed(String),
    NotYet(String),
}

/// Pushes committed notice `id` to devices; false when it could not be queued within
/// `mqtt::PUSH_TIMEOUT` (its upload is then matched again and the notice pushed again).
async fn publish_notice(mqtt: &AsyncClient, id: Hash, n: &ExposureNotice, height: u64) -> bool {
    let Some(rpi) = n.rpis.first() else {
        return true;
    };
    let msg = NoticeMessage {
        rpi: hex::encode(rpi),
        risk_score: n.risk_score,
        day: n.day,
        source_upload: n.source_upload,
        notice_id: id,
        height,
    };
    match serde_json::to_vec(&msg) {
        Ok(body) => crate::mqtt::push(mqtt, exposure_topic(n.day), body).await,
        Err(_) => false,
    }
}

/// Reads the store from `from` (the first record kept when `None`): feeds encounter
/// uploads to the engine, returns diagnosis readings, the next id to read and how many
/// uploads were added.
fn scan_records(
    store: &EdgeStore,
    from: Option<u64>,
    engine: &Mutex<ExposureEngine>,
) -> Result<(u64, Vec<SignedReading>, u64), String> {
    let mut id = match from {
        Some(id) => id,
        None => store
            .range_by_time(0, u64::MAX, 1)
            .map_err(|e| e.to_string())?
            .first()
            .copied()
            .unwrap_or(0),
    };
    let mut diagnoses = Vec::new();
    let mut added = 0u64;
    let mut engine = engine
        .lock()
        .map_err(|_| "exposure engine poisoned".to_string())?;
    for _ in 0..SCAN_BATCH {
        let Some(meta) = store.meta(id).map_err(|e| e.to_string())? else {
            break;
        };
        let wanted = meta.kind == ENCOUNTERS_KIND
            || meta.kind == ENCOUNTER_BATCH_KIND
            || meta.kind == DIAGNOSIS_KIND;
        let record = if wanted {
            store.get(id).map_err(|e| e.to_string())?
        } else {
            None
        };
        if let Some(rec) = record {
            if meta.kind == DIAGNOSIS_KIND {
                diagnoses.push(rec.reading);
            } else {
                // Stored readings passed the indexer, so they decode; one that does not
                // (a store written by another version) adds nothing.
                let uploads = if meta.kind == ENCOUNTER_BATCH_KIND {
                    EncounterBatch::from_bytes(&rec.reading.payload)
                        .map(|b| b.uploads)
                        .unwrap_or_default()
                } else {
                    EncounterUpload::from_bytes(&rec.reading.payload)
                        .map(|u| vec![u])
                        .unwrap_or_default()
                };
                for u in uploads {
                    match engine.add_upload(DeviceLink(rec.reading.device.0), u) {
                        Ok(()) => added += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "exposure engine refused an upload");
                        }
                    }
                }
            }
        }
        id += 1;
    }
    Ok((id, diagnoses, added))
}

/// Uploads with keys released since the cursor, the new cursor and its height floor.
#[allow(clippy::type_complexity, reason = "one private call site")]
fn new_releases(
    ledger: &Ledger,
    from_height: trustedge_types::Height,
    mut cursor: Option<trustedge_store::EventCursor>,
) -> Result<
    (
        Vec<Hash>,
        Option<trustedge_store::EventCursor>,
        trustedge_types::Height,
    ),
    String,
> {
    let filter = EventFilter {
        module: Some(diagnosis::NAME.into()),
        from_height: Some(from_height),
        ..EventFilter::default()
    };
    let mut out: Vec<Hash> = Vec::new();
    let mut from = from_height;
    loop {
        let page = ledger
            .events(&filter, cursor, EVENTS_PAGE)
            .map_err(|e| e.to_string())?;
        for ev in &page.events {
            from = from.max(ev.height);
            let attr = |k: &str| {
                ev.event
                    .attributes
                    .iter()
                    .find(|a| a.key == k)
                    .map(|a| a.value.clone())
            };
            let released = match ev.event.kind.as_str() {
                "keys_published" => attr("released").is_some_and(|r| r != "0"),
                "keys_released" => true,
                _ => false,
            };
            if let Some(id) = attr("upload_id").and_then(|h| Hash::from_hex(&h).ok())
                && released
                && !out.contains(&id)
            {
                out.push(id);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => {
                // Nothing more now: keep the position after the last event seen.
                if let Some(last) = page.events.last() {
                    cursor = Some(trustedge_store::EventCursor {
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

/// The released, unrevoked keys of diagnosis upload `id`.
fn released_keys(ledger: &Ledger, id: &Hash) -> Result<Vec<DiagnosisKey>, String> {
    let snap = ledger.store().snapshot().map_err(|e| e.to_string())?;
    let Some(rec) = diagnosis::upload(&snap, id).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    if rec.report_type == ReportType::Revoked {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for kd in &rec.keys {
        if let Some(k) = diagnosis::published_key(&snap, kd).map_err(|e| e.to_string())?
            && k.released
            && k.revoked_by.is_none()
        {
            keys.push(k.key);
        }
    }
    Ok(keys)
}

/// Device side: the topic filter of every exposure notice.
pub const EXPOSURE_FILTER: &str = "te/v1/notices/exposure/#";

/// Device side: parses a message received on `te/v1/notices/…`: `Some` for an exposure
/// notice.
pub fn parse_notice(topic: &str, payload: &[u8]) -> Option<NoticeMessage> {
    if !topic.starts_with(EXPOSURE_TOPIC_PREFIX) || !topic.starts_with(topics::NOTICES_PREFIX) {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// Device side: parses a relay outcome received on `te/v1/notices/relay/<id>`.
pub fn parse_relay_outcome(topic: &str, payload: &[u8]) -> Option<RelayOutcome> {
    if !topic.starts_with(RELAY_TOPIC_PREFIX) {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

fn random32() -> [u8; 32] {
    use rand_core::RngCore;
    let mut b = [0; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    b
}

/// Loads (or creates, at first start) the node's export key.
pub async fn start_export_signer(
    home: &Path,
    config: &TracingConfig,
) -> Result<ExportSigner, crate::NodeError> {
    let path = crate::NodeConfig::resolve(home, &config.export_key_path);
    let region = config.export_region.clone();
    let p = path.clone();
    tokio::task::spawn_blocking(move || load_or_create_export_key(&p, &region, random32))
        .await
        .map_err(|e| crate::NodeError::Task {
            task: "tracing export key",
            message: e.to_string(),
        })?
        .map_err(|message| crate::NodeError::Config { path, message })
}

/// Trains the scorer (on a blocking thread) and spawns the worker.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all parts of the node"
)]
pub async fn start_worker(
    home: &Path,
    node: &crate::NodeConfig,
    config: &TracingConfig,
    store: Arc<EdgeStore>,
    ledger: Arc<Ledger>,
    broker: SocketAddr,
    api: SocketAddr,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, crate::NodeError> {
    let key_path = config
        .key_path
        .as_ref()
        .or(node.key_path.as_ref())
        .ok_or_else(|| crate::NodeError::Role("[tracing] needs a key (key_path)".into()))?;
    if config.key_path.is_none() {
        // The anchoring loop signs with the node key too; each reads the last nonce from
        // the ledger on its own, so their transactions may take the same nonce.
        tracing::warn!(
            "[tracing] signs with the node key, as anchoring does: their nonces may collide; \
             give [tracing] its own key_path (`trustedge init --tracing-edges` does)"
        );
    }
    let key = crate::load_key(&crate::NodeConfig::resolve(home, key_path))?;
    let c = config.clone();
    let started = Instant::now();
    let scorer = tokio::task::spawn_blocking(move || c.scorer())
        .await
        .map_err(|e| crate::NodeError::Task {
            task: "train the distance model",
            message: e.to_string(),
        })?
        .map_err(|message| crate::NodeError::Config {
            path: home.join(crate::config::CONFIG_FILE),
            message,
        })?;
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        sessions = config.model_sessions,
        "trained the distance model"
    );
    let worker = TracingWorker {
        config: config.clone(),
        store,
        ledger,
        key,
        api: Client::new(format!("http://{api}")),
        broker,
        metrics,
        scorer: Arc::new(scorer),
    };
    Ok(tokio::spawn(worker.run(stop)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexer_keys_single_uploads_and_leaves_batches_unkeyed() {
        use trustedge_tracing::sightings::{Encounter, RssiSample};
        use trustedge_tracing::{Aem, EnIntervalNumber, Rpi};
        let upload = |own: u8, heard: u8| EncounterUpload {
            own_rpi: Rpi([own; 16]),
            own_interval: EnIntervalNumber(2_900_000 + u32::from(own)),
            device_model: "TE-Phone".into(),
            tx_power_dbm: -8,
            encounters: vec![Encounter {
                rpi: Rpi([heard; 16]),
                aem: Aem([0; 4]),
                first_seen_s: 1_700_000_000,
                last_seen_s: 1_700_000_060,
                samples: vec![RssiSample {
                    offset_s: 0,
                    rssi_dbm: -60,
                }],
                ranges: vec![],
            }],
        };
        let mut device =
            trustedge_device::DeviceIdentity::new(trustedge_types::Keypair::from_seed([5; 32]), 0);
        let single = device
            .sign_reading(1, ENCOUNTERS_KIND, upload(1, 9).to_bytes().unwrap())
            .unwrap();
        let keys = TracingIndexer.index_keys("tok", &single).unwrap();
        assert_eq!(keys.own, vec![1; 16]);
        assert_eq!(keys.observed, vec![vec![9; 16]]);
        let batch = EncounterBatch {
            uploads: vec![upload(1, 9), upload(2, 8)],
        };
        let batched = device
            .sign_reading(2, ENCOUNTER_BATCH_KIND, batch.to_bytes().unwrap())
            .unwrap();
        // Two own RPIs of one device must not meet in the clear metadata.
        let keys = TracingIndexer.index_keys("tok", &batched).unwrap();
        assert!(keys.own.is_empty() && keys.observed.is_empty());
        // A batch that does not decode is refused (the edge answers with the reason).
        let garbage = device
            .sign_reading(3, ENCOUNTER_BATCH_KIND, vec![1, 0, 0, 0, 7])
            .unwrap();
        assert!(TracingIndexer.index_keys("tok", &garbage).is_err());
        let linked = EncounterBatch {
            uploads: vec![upload(1, 9), upload(2, 9)],
        };
        let linked = device
            .sign_reading(4, ENCOUNTER_BATCH_KIND, borsh::to_vec(&linked).unwrap())
            .unwrap();
        assert!(TracingIndexer.index_keys("tok", &linked).is_err());
    }

    #[test]
    fn no_notice_is_lost_between_the_ledger_and_the_devices() {
        let h = |b: u8| Hash([b; 32]);
        let (upload, n1, n2) = (h(1), h(10), h(11));
        let mut d = Deliveries::default();
        // New: publish. Submitted in a transaction valid up to height 110.
        assert_eq!(d.sort(n1, upload, None, 10), Disposition::Publish);
        d.submitted([(n1, upload), (n2, upload)], 110);
        // The wait ran out: the upload is looked at again; while the transaction may still
        // commit, nothing is published twice, and the upload stays in doubt.
        d.unsure(upload);
        assert_eq!(d.take_retry(), BTreeSet::from([upload]));
        assert_eq!(d.sort(n1, upload, None, 50), Disposition::Skip);
        assert_eq!(d.take_retry(), BTreeSet::from([upload]));
        // It committed late: pushed once, then never again in this run.
        assert_eq!(d.sort(n1, upload, Some(60), 61), Disposition::Push(60));
        d.push_outcome(n1, upload, 7, true);
        assert_eq!(d.sort(n1, upload, Some(60), 70), Disposition::Skip);
        assert!(d.take_retry().is_empty());
        // The other notice never committed: once the transaction expired, published again.
        assert_eq!(d.sort(n2, upload, None, 110), Disposition::Publish);
        // A push the broker refused is retried from the ledger.
        d.submitted([(n2, upload)], 220);
        d.committed(&n2);
        d.push_outcome(n2, upload, 7, false);
        assert_eq!(d.take_retry(), BTreeSet::from([upload]));
        assert_eq!(d.sort(n2, upload, Some(130), 131), Disposition::Push(130));
        // A restart (a fresh account) pushes committed notices once more.
        let mut fresh = Deliveries::default();
        assert_eq!(fresh.sort(n1, upload, Some(60), 300), Disposition::Push(60));
        // A submission refused (stale nonce, full mempool) is always tried again; a
        // transaction the contract failed, a bounded number of times.
        let other = h(2);
        let n3 = h(12);
        for _ in 0..10 {
            assert!(d.failed(&n3, other, false));
            assert_eq!(d.take_retry(), BTreeSet::from([other]));
        }
        for _ in 0..MAX_FAILED_ATTEMPTS {
            d.submitted([(n3, other)], 400);
            assert!(d.failed(&n3, other, true));
            assert_eq!(d.take_retry(), BTreeSet::from([other]));
            assert_eq!(d.sort(n3, other, None, 300), Disposition::Publish);
        }
        assert!(!d.failed(&n3, other, true));
        assert!(!d.failed(&n3, other, false));
        assert!(d.take_retry().is_empty());
        assert!(d.in_flight.is_empty());
        // Once the engine pruned day 7, its pushed notices are forgotten (a later match,
        // were one possible, would push again: at least once); day 8's are kept.
        let n4 = h(13);
        d.push_outcome(n4, upload, 8, true);
        d.forget_before(7);
        assert_eq!(d.pushed.len(), 2);
        d.forget_before(8);
        assert_eq!(d.pushed.keys().copied().collect::<Vec<_>>(), vec![n4]);
        assert_eq!(d.sort(n1, upload, Some(60), 400), Disposition::Push(60));
    }

    #[test]
    fn the_engine_keeps_what_a_key_could_still_match() {
        const DAY: u64 = 86_400;
        let tip = 1_800_000_000;
        let keep = 15 * DAY + 120;
        // A young ledger: nothing is old enough.
        assert_eq!(prune_cutoff(keep - 1, 120, 0), None);
        // Keys reach back MAX_KEY_AGE_DAYS (14) days; the engine keeps 15 days plus the skew.
        assert_eq!(prune_cutoff(tip, 120, 0), Some(tip - keep));
        // At most once per hour of ledger time.
        assert_eq!(prune_cutoff(tip + 3599, 120, tip - keep), None);
        assert_eq!(
            prune_cutoff(tip + 3600, 120, tip - keep),
            Some(tip - keep + 3600)
        );
    }
}
