//! Outbreak-origin inference served by a cloud node (issue 5 §4).
//!
//! Configured by the `[origin]` table ([`OriginConfig`]) on a full node (a `cloud` follower
//! in practice; `trustedge init` turns it on there). Like [`crate::contacts_service`], it asks
//! nothing new of edges: the worker follows the committed events of the node's own replica
//! and builds the inputs of [`trustedge_origin::rank_origins`] from ledger data alone:
//!
//! - **confirmed cases**: diagnosis uploads (`diagnosis/keys_published`, not revocations).
//!   Confirmation time = the upload's block time; symptom onset = the day a key's
//!   `days_since_onset` points to (filled by the contract from the certificate's onset day
//!   when the upload left it out), at noon UTC; none if no key carries one. A revocation
//!   (`keys_revoked`) removes the cases it revokes.
//! - **close contacts between cases**: exposure notices whose RPI belongs to a later- (or
//!   earlier-) confirmed case, linked by a [`ContactLinker`] exactly as the contact index
//!   does (`exposure/notice_published` + the cases' released keys); the encounter's score is
//!   the sum of the notices' risk scores for that pair and day (GAEN weighted seconds),
//!   in weighted minutes as the model reads it; times have day resolution
//!   (noon UTC).
//! - **room evidence**: case presences (`aerosol/case_presence`, see
//!   `trustedge_contracts::aerosol`) grouped by the alert windows they overlapped: one
//!   [`RoomWindow`] per (venue id, window) with the cases present and the alert's risk
//!   (the highest, if several kinds alerted the same window) as its probability.
//!
//! The worker recomputes the ranking (deterministic seed, [`OriginConfig::seed`]) at most
//! every [`OriginConfig::min_interval_ms`] when the inputs changed, on the blocking pool, and
//! caches the answer ([`OriginView`]) that `GET /v1/origin` serves (`?refresh=true`
//! recomputes first). The inputs live in memory and are rebuilt from the replica's events at
//! start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::Ledger;
use trustedge_contacts::{
    CaseId, ContactGraph, ContactLinker, Encounter, EncounterFilter, LinkerConfig, NoticeInput,
};
use trustedge_contracts::aerosol::AlertRecord;
use trustedge_contracts::{aerosol, diagnosis, exposure};
use trustedge_execution::StateRead;
use trustedge_origin::{
    Case, EvidenceRef, OriginReport, RankParams, RoomWindow, TreeEdge, VenueId, rank_origins,
};
use trustedge_store::{EventCursor, EventFilter};
use trustedge_tracing::ReportType;
use trustedge_types::Hash;

use crate::metrics::Metrics;

/// Most events read per page.
const EVENTS_PAGE: usize = 500;
/// Seconds in a day.
const DAY_S: u64 = 86_400;
/// Seconds after a day's start used as the time of an onset day (noon UTC).
const NOON_S: u64 = 12 * 3600;

/// The `[origin]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Whether the node infers outbreak origins and serves `GET /v1/origin`.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// How often the worker reads new events, ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Shortest time between two recomputations, ms (a recomputation runs only when the
    /// inputs changed).
    #[serde(default = "defaults::min_interval_ms")]
    pub min_interval_ms: u64,
    /// Transmission trees sampled per cluster.
    #[serde(default = "defaults::samples")]
    pub samples: u32,
    /// Seed of the tree sampling: the same ledger and seed give the same answer.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Candidates explained per cluster.
    #[serde(default = "defaults::explain_top")]
    pub explain_top: usize,
    /// Most confirmed cases one inference takes (the newest are dropped past it).
    #[serde(default = "defaults::max_cases")]
    pub max_cases: usize,
    /// Days of keys and waiting notices kept for linking contacts (as `[contacts]`).
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,
    /// What a cluster is: `tree_imports` (default: components of the evidence split at
    /// the imports of their most likely tree, so a false close contact does not merge two
    /// outbreaks) or `components` (any link joins).
    #[serde(default)]
    pub clusters: trustedge_origin::ClusterRule,
}

mod defaults {
    pub fn enabled() -> bool {
        true
    }
    pub fn poll_interval_ms() -> u64 {
        200
    }
    pub fn min_interval_ms() -> u64 {
        2_000
    }
    pub fn samples() -> u32 {
        2_000
    }
    pub fn seed() -> u64 {
        0x0419_1715
    }
    pub fn explain_top() -> usize {
        3
    }
    pub fn max_cases() -> usize {
        100_000
    }
    pub fn retention_days() -> u32 {
        16
    }
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            enabled: defaults::enabled(),
            poll_interval_ms: defaults::poll_interval_ms(),
            min_interval_ms: defaults::min_interval_ms(),
            samples: defaults::samples(),
            seed: defaults::seed(),
            explain_top: defaults::explain_top(),
            max_cases: defaults::max_cases(),
            retention_days: defaults::retention_days(),
            clusters: trustedge_origin::ClusterRule::default(),
        }
    }
}

impl OriginConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !crate::config::INTERVAL_MS_RANGE.contains(&self.poll_interval_ms) {
            return Err("origin.poll_interval_ms must be in 1..=3600000".into());
        }
        if !(0..=86_400_000).contains(&self.min_interval_ms) {
            return Err("origin.min_interval_ms must be in 0..=86400000".into());
        }
        if !(1..=trustedge_origin::rank::MAX_SAMPLES).contains(&self.samples) {
            return Err("origin.samples must be in 1..=1000000".into());
        }
        if !(1..=100).contains(&self.explain_top) {
            return Err("origin.explain_top must be in 1..=100".into());
        }
        if !(1..=trustedge_origin::graph::MAX_CASES).contains(&self.max_cases) {
            return Err("origin.max_cases must be in 1..=1000000".into());
        }
        if !(15..=366).contains(&self.retention_days) {
            return Err("origin.retention_days must be in 15..=366".into());
        }
        Ok(())
    }

    fn params(&self) -> RankParams {
        RankParams {
            samples: self.samples,
            explain_top: self.explain_top,
            clusters: self.clusters,
            ..RankParams::default()
        }
    }
}

/// Metrics of the origin service (names prefixed `origin_`).
pub struct OriginMetrics {
    /// Ledger events applied.
    pub events: Counter,
    /// Confirmed cases in the last inference.
    pub cases: Gauge,
    /// Clusters of two or more cases in the last inference.
    pub clusters: Gauge,
    /// Close contacts between cases in the last inference.
    pub contacts: Gauge,
    /// Room windows shared by cases in the last inference.
    pub rooms: Gauge,
    /// Inferences run.
    pub runs: Counter,
    /// Errors while indexing or inferring.
    pub errors: Counter,
    /// Time of one inference, s.
    pub run_seconds: Histogram,
}

impl Default for OriginMetrics {
    fn default() -> Self {
        OriginMetrics {
            events: Counter::default(),
            cases: Gauge::default(),
            clusters: Gauge::default(),
            contacts: Gauge::default(),
            rooms: Gauge::default(),
            runs: Counter::default(),
            errors: Counter::default(),
            // 100 µs to ~100 s.
            run_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.5, 16),
            ),
        }
    }
}

impl OriginMetrics {
    /// Registers these metrics.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "origin_events",
            "Ledger events applied to the origin inputs",
            self.events.clone(),
        );
        r.register(
            "origin_cases",
            "Confirmed cases in the last origin inference",
            self.cases.clone(),
        );
        r.register(
            "origin_clusters",
            "Clusters of two or more linked cases in the last origin inference",
            self.clusters.clone(),
        );
        r.register(
            "origin_contacts",
            "Close contacts between confirmed cases in the last origin inference",
            self.contacts.clone(),
        );
        r.register(
            "origin_rooms",
            "Alerted room windows with confirmed cases in the last origin inference",
            self.rooms.clone(),
        );
        r.register("origin_runs", "Origin inferences run", self.runs.clone());
        r.register(
            "origin_errors",
            "Errors while indexing or inferring origins",
            self.errors.clone(),
        );
        r.register(
            "origin_run_seconds",
            "Time of one origin inference",
            self.run_seconds.clone(),
        );
    }
}

// ---------------------------------------------------------------------------------------
// The answer
// ---------------------------------------------------------------------------------------

/// The answer of `GET /v1/origin`: every cluster of linked confirmed cases with its ranked
/// origin candidates, the most likely transmission tree and the earliest-onset baseline.
/// Cases are named by their diagnosis upload id (64 hex digits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OriginView {
    /// Ledger height the inputs were read at.
    pub height: u64,
    /// Confirmed cases considered.
    pub cases: usize,
    /// Close contacts between them.
    pub contacts: usize,
    /// Alerted room windows they shared.
    pub rooms: usize,
    /// The seed of the tree sampling.
    pub seed: u64,
    /// Clusters, largest first (singletons last).
    pub clusters: Vec<OriginCluster>,
    /// The "earliest symptom onset" baseline's origin of each cluster, in cluster order.
    pub baseline: Vec<String>,
    /// Evidence naming a case not among the confirmed ones (skipped).
    pub ignored_evidence: usize,
}

/// One cluster of linked cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OriginCluster {
    /// Its cases (upload ids), ascending.
    pub cases: Vec<String>,
    /// The connected component of the evidence it belongs to (largest first). Clusters
    /// sharing it were split where the most likely tree imports a case: some evidence, too
    /// weak to be the likely route, links them.
    #[serde(default)]
    pub component: u32,
    /// Trees sampled.
    pub samples: u32,
    /// Origin candidates, most probable first.
    pub candidates: Vec<OriginCandidateView>,
    /// The most likely transmission tree: one edge per case (`from` null: imported).
    pub tree: Vec<TreeEdgeView>,
    /// The "earliest symptom onset" ranking, earliest first.
    pub baseline: Vec<String>,
}

/// One origin candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OriginCandidateView {
    /// The case (upload id).
    pub case: String,
    /// Posterior probability that it started the cluster.
    pub probability: f64,
    /// Its symptom onset (noon UTC of the onset day), if known.
    pub onset_s: Option<u64>,
    /// When it was confirmed (the upload's block time), Unix seconds.
    pub confirmation_s: u64,
    /// What supports it (for the leading candidates).
    pub explanation: Option<ExplanationView>,
}

/// What supports a candidate as origin: the evidence of the edges of the most likely tree
/// with it as the only import.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplanationView {
    /// Close contacts behind that tree's edges (the heaviest of each edge).
    pub contacts: Vec<ContactEvidenceView>,
    /// Room windows behind that tree's edges (the heaviest of each edge).
    pub rooms: Vec<RoomEvidenceView>,
    /// The tree's edges.
    pub subtree: Vec<TreeEdgeView>,
    /// Cases of the cluster the tree could not attach below the candidate.
    pub unexplained: Vec<String>,
    /// Close-contact encounters behind the subtree (all, not only the heaviest).
    pub contact_count: u32,
    /// Room windows behind the subtree (all).
    pub room_count: u32,
    /// Forward close-contact chains from the candidate: each a list of upload ids, the
    /// candidate first.
    pub chains: Vec<Vec<String>>,
}

/// A close contact supporting a transmission edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactEvidenceView {
    /// Infector (upload id).
    pub from: String,
    /// Infectee (upload id).
    pub to: String,
    /// Time of the contact (noon UTC of its day: notices carry only a day), Unix seconds.
    pub start_s: u64,
    /// Its score in GAEN weighted minutes (the sum of the notices' risk scores, which are
    /// weighted seconds, ÷ 60).
    pub score: f32,
}

/// Notice risk scores are GAEN weighted seconds; [`trustedge_origin::EpiModel`] reads
/// weighted minutes.
const SECONDS_PER_MINUTE: f32 = 60.0;

/// A shared alerted room window supporting a transmission edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoomEvidenceView {
    /// Infector (upload id).
    pub from: String,
    /// Infectee (upload id).
    pub to: String,
    /// The venue's pseudonymous id of that day (32 hex).
    pub venue: String,
    /// Window start, Unix seconds.
    pub start_s: u64,
    /// Window end, Unix seconds.
    pub end_s: u64,
    /// The alert's infection probability.
    pub probability: f64,
}

/// An edge of a transmission tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TreeEdgeView {
    /// Infector (upload id); null: imported (infected outside the confirmed cases).
    pub from: Option<String>,
    /// Infectee (upload id).
    pub to: String,
    /// The edge's weight (sum over its evidence of the model's weights).
    pub weight: f64,
    /// Fraction of sampled trees with this edge.
    pub posterior: f64,
    /// `contact`, `room` (kind of its heaviest evidence) or `import`.
    pub kind: String,
    /// Close contacts behind it.
    pub contacts: u32,
    /// Room windows behind it.
    pub rooms: u32,
}

// ---------------------------------------------------------------------------------------
// The inputs
// ---------------------------------------------------------------------------------------

/// A confirmed case as the ledger shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CaseInfo {
    confirmation_s: u64,
    onset_s: Option<u64>,
}

/// Everything read from the ledger so far, and the linker that turns notices into contacts.
pub struct OriginInputs {
    linker: ContactLinker,
    cases: BTreeMap<Hash, CaseInfo>,
    revoked: BTreeSet<Hash>,
    /// Presence id → (upload, alerts it overlapped).
    presences: BTreeMap<Hash, (Hash, Vec<Hash>)>,
    alerts: BTreeMap<Hash, AlertRecord>,
    height: u64,
    version: u64,
}

impl OriginInputs {
    /// Empty inputs; contacts are linked with `retention_days` of keys kept.
    pub fn new(retention_days: u32) -> OriginInputs {
        OriginInputs {
            linker: ContactLinker::new(LinkerConfig {
                retention_days,
                ..LinkerConfig::default()
            }),
            cases: BTreeMap::new(),
            revoked: BTreeSet::new(),
            presences: BTreeMap::new(),
            alerts: BTreeMap::new(),
            height: 0,
            version: 0,
        }
    }

    /// Confirmed, unrevoked cases known.
    pub fn case_count(&self) -> usize {
        self.cases.len()
    }

    /// Runs the inference on the current inputs.
    pub fn infer(&self, config: &OriginConfig) -> Result<(OriginView, Counts), String> {
        // Dense case ids in upload-id order; past max_cases, the latest confirmed go.
        let mut chosen: Vec<(&Hash, &CaseInfo)> = self.cases.iter().collect();
        if chosen.len() > config.max_cases {
            chosen.sort_by_key(|(h, c)| (c.confirmation_s, **h));
            chosen.truncate(config.max_cases);
            chosen.sort_by_key(|(h, _)| **h);
        }
        let uploads: Vec<Hash> = chosen.iter().map(|(h, _)| **h).collect();
        let id_of: BTreeMap<Hash, CaseId> = uploads
            .iter()
            .enumerate()
            .map(|(i, h)| (*h, CaseId(i as u32)))
            .collect();
        let cases: Vec<Case> = chosen
            .iter()
            .enumerate()
            .map(|(i, (_, c))| Case {
                id: CaseId(i as u32),
                symptom_onset_s: c.onset_s,
                confirmation_s: c.confirmation_s,
            })
            .collect();
        let info: Vec<CaseInfo> = chosen.iter().map(|(_, c)| **c).collect();
        // Contacts: the linker's encounters between two of the chosen cases. Their scores
        // are sums of notice risk scores, GAEN weighted *seconds*; the model's transmission
        // chance is per weighted minute.
        let encounters: Vec<Encounter> = self
            .linker
            .encounters()
            .filter_map(|e| {
                let a = id_of.get(&Hash(*self.linker.upload(e.a)?))?;
                let b = id_of.get(&Hash(*self.linker.upload(e.b)?))?;
                Some(Encounter {
                    a: *a,
                    b: *b,
                    score: e.score / SECONDS_PER_MINUTE,
                    ..e
                })
            })
            .collect();
        let graph = ContactGraph::build(&encounters, EncounterFilter::default())
            .map_err(|e| format!("contact graph: {e}"))?;
        // Rooms: one window per (venue, start, end) of the alerts the presences overlapped.
        let mut windows: BTreeMap<WindowKey, (u32, BTreeSet<CaseId>)> = BTreeMap::new();
        for (upload, alerts) in self.presences.values() {
            let Some(&case) = id_of.get(upload) else {
                continue;
            };
            for a in alerts.iter().filter_map(|id| self.alerts.get(id)) {
                let w = windows
                    .entry((a.venue, a.start_s, a.end_s))
                    .or_insert((0, BTreeSet::new()));
                w.0 = w.0.max(a.risk_ppm);
                w.1.insert(case);
            }
        }
        let rooms: Vec<RoomWindow> = windows
            .into_iter()
            .filter(|(_, (_, cs))| cs.len() >= 2)
            .map(|((venue, start_s, end_s), (risk, cs))| RoomWindow {
                venue: VenueId(venue),
                start_s,
                end_s,
                probability: f64::from(risk.min(1_000_000)) / 1e6,
                cases: cs
                    .into_iter()
                    .take(trustedge_origin::model::MAX_CASES_PER_WINDOW)
                    .collect(),
            })
            .collect();
        let report = rank_origins(&cases, &graph, &rooms, &config.params(), config.seed)
            .map_err(|e| e.to_string())?;
        let counts = Counts {
            cases: cases.len(),
            contacts: encounters.len(),
            rooms: rooms.len(),
            clusters: report
                .clusters
                .iter()
                .filter(|c| c.cases.len() >= 2)
                .count(),
        };
        let view = to_view(&report, &uploads, &info, self.height, config.seed, &counts);
        Ok((view, counts))
    }

    /// Applies one input.
    fn apply(&mut self, input: Input) -> Result<(), String> {
        self.version += 1;
        match input {
            Input::Case {
                upload,
                info,
                released,
            } => {
                if !self.revoked.contains(&upload) {
                    self.cases.insert(upload, info);
                    if !released.is_empty() {
                        self.linker
                            .add_keys(&upload.0, &released)
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Input::Released(upload, keys) => {
                if !self.revoked.contains(&upload) && !keys.is_empty() {
                    self.linker
                        .add_keys(&upload.0, &keys)
                        .map_err(|e| e.to_string())?;
                }
            }
            Input::Revoke(uploads) => {
                for up in uploads {
                    self.linker.revoke(&up.0);
                    self.cases.remove(&up);
                    self.revoked.insert(up);
                }
            }
            Input::Notice(n) => {
                self.linker.add_notice(&n).map_err(|e| e.to_string())?;
            }
            Input::Presence { id, upload, alerts } => {
                for a in &alerts {
                    self.alerts.insert(a.id, a.clone());
                }
                self.presences
                    .insert(id, (upload, alerts.iter().map(|a| a.id).collect()));
            }
        }
        Ok(())
    }
}

/// Sizes of the last inference's inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Confirmed cases.
    pub cases: usize,
    /// Close contacts between them.
    pub contacts: usize,
    /// Alerted room windows with two or more of them.
    pub rooms: usize,
    /// Clusters of two or more cases.
    pub clusters: usize,
}

fn to_view(
    report: &OriginReport,
    uploads: &[Hash],
    info: &[CaseInfo],
    height: u64,
    seed: u64,
    counts: &Counts,
) -> OriginView {
    let hex = |c: CaseId| {
        uploads
            .get(c.0 as usize)
            .map(Hash::to_hex)
            .unwrap_or_default()
    };
    let edge = |e: &TreeEdge| TreeEdgeView {
        from: e.infector.map(hex),
        to: hex(e.infectee),
        weight: e.weight,
        posterior: e.posterior,
        kind: match e.evidence {
            None => "import",
            Some(EvidenceRef::Contact { .. }) => "contact",
            Some(EvidenceRef::Room { .. }) => "room",
        }
        .into(),
        contacts: e.contacts,
        rooms: e.rooms,
    };
    let clusters: Vec<OriginCluster> = report
        .clusters
        .iter()
        .map(|cl| OriginCluster {
            cases: cl.cases.iter().map(|&c| hex(c)).collect(),
            component: cl.component,
            samples: cl.samples,
            candidates: cl
                .candidates
                .iter()
                .map(|cand| {
                    let i = info.get(cand.case.0 as usize).copied();
                    OriginCandidateView {
                        case: hex(cand.case),
                        probability: cand.probability,
                        onset_s: i.and_then(|i| i.onset_s),
                        confirmation_s: i.map_or(0, |i| i.confirmation_s),
                        explanation: cand.explanation.as_ref().map(|x| {
                            let mut contacts = Vec::new();
                            let mut rooms = Vec::new();
                            for e in &x.subtree {
                                let Some(from) = e.infector else { continue };
                                match e.evidence {
                                    Some(EvidenceRef::Contact { start_s, score, .. }) => {
                                        contacts.push(ContactEvidenceView {
                                            from: hex(from),
                                            to: hex(e.infectee),
                                            start_s,
                                            score,
                                        });
                                    }
                                    Some(EvidenceRef::Room {
                                        venue,
                                        start_s,
                                        end_s,
                                        probability,
                                    }) => rooms.push(RoomEvidenceView {
                                        from: hex(from),
                                        to: hex(e.infectee),
                                        venue: venue.to_string(),
                                        start_s,
                                        end_s,
                                        probability,
                                    }),
                                    None => {}
                                }
                            }
                            ExplanationView {
                                contacts,
                                rooms,
                                subtree: x.subtree.iter().map(edge).collect(),
                                unexplained: x.unexplained.iter().map(|&c| hex(c)).collect(),
                                contact_count: x.contacts,
                                room_count: x.rooms,
                                chains: x
                                    .chains
                                    .iter()
                                    .map(|ch| {
                                        let mut path = vec![hex(cand.case)];
                                        path.extend(ch.hops.iter().map(|h| hex(h.to)));
                                        path
                                    })
                                    .collect(),
                            }
                        }),
                    }
                })
                .collect(),
            tree: cl.tree.iter().map(edge).collect(),
            baseline: cl.baseline.iter().map(|&c| hex(c)).collect(),
        })
        .collect();
    OriginView {
        height,
        cases: counts.cases,
        contacts: counts.contacts,
        rooms: counts.rooms,
        seed,
        baseline: clusters
            .iter()
            .map(|c| c.baseline.first().cloned().unwrap_or_default())
            .collect(),
        clusters,
        ignored_evidence: report.ignored_evidence,
    }
}

// ---------------------------------------------------------------------------------------
// Following the ledger
// ---------------------------------------------------------------------------------------

/// One thing read from the replica.
enum Input {
    /// A confirmed case, with its keys already released.
    Case {
        upload: Hash,
        info: CaseInfo,
        released: Vec<trustedge_tracing::DiagnosisKey>,
    },
    /// Keys of a case released later.
    Released(Hash, Vec<trustedge_tracing::DiagnosisKey>),
    /// Uploads revoked.
    Revoke(Vec<Hash>),
    /// An exposure notice.
    Notice(NoticeInput),
    /// A case presence, with the alerts it overlapped.
    Presence {
        id: Hash,
        upload: Hash,
        alerts: Vec<AlertRecord>,
    },
}

/// An event's position: height, transaction index, event index.
type Pos = (u64, u32, u32);

/// An event as read: position, module, kind, attributes.
type RawEvent = (Pos, String, String, Vec<(String, String)>);

/// A room window: venue id of the day, start, end.
type WindowKey = ([u8; 16], u64, u64);

/// Where the worker is in the ledger.
#[derive(Default)]
struct Cursor {
    /// The next height to read events from.
    next_height: u64,
}

struct Shared {
    inputs: OriginInputs,
    cursor: Cursor,
}

struct Cached {
    view: Arc<OriginView>,
    version: u64,
}

/// Why no answer can be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OriginServiceError {
    /// The inference failed.
    #[error("origin inference failed: {0}")]
    Inference(String),
    /// The service's state is unusable (a panic while it was held).
    #[error("origin service state poisoned")]
    Poisoned,
}

/// The origin service shared by the worker and the API.
#[derive(Clone)]
pub struct OriginHandle {
    shared: Arc<Mutex<Shared>>,
    cached: Arc<RwLock<Option<Cached>>>,
    config: Arc<OriginConfig>,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
}

impl OriginHandle {
    /// The last computed answer, computing one first if there is none yet (or if `refresh`:
    /// after reading the ledger's newest events). Blocking: call it on the blocking pool.
    pub fn view(&self, refresh: bool) -> Result<Arc<OriginView>, OriginServiceError> {
        if !refresh
            && let Some(c) = self
                .cached
                .read()
                .map_err(|_| OriginServiceError::Poisoned)?
                .as_ref()
        {
            return Ok(c.view.clone());
        }
        if refresh && let Err(e) = self.read_ledger() {
            self.metrics.origin.errors.inc();
            tracing::warn!(error = %e, "origin: reading the ledger failed");
        }
        self.recompute(true)
    }

    /// Reads the new events into the inputs; whether anything changed.
    fn read_ledger(&self) -> Result<bool, String> {
        let mut shared = self.shared.lock().map_err(|_| "poisoned".to_string())?;
        let Shared { inputs, cursor } = &mut *shared;
        let before = inputs.version;
        step(&self.ledger, inputs, cursor, &self.metrics)?;
        Ok(inputs.version != before)
    }

    /// Recomputes if the inputs changed since the cached answer (or `force`).
    fn recompute(&self, force: bool) -> Result<Arc<OriginView>, OriginServiceError> {
        let shared = self
            .shared
            .lock()
            .map_err(|_| OriginServiceError::Poisoned)?;
        if let Some(c) = self
            .cached
            .read()
            .map_err(|_| OriginServiceError::Poisoned)?
            .as_ref()
            && (c.version == shared.inputs.version
                && (!force || c.view.height == shared.inputs.height))
        {
            return Ok(c.view.clone());
        }
        let started = Instant::now();
        let m = &self.metrics.origin;
        let (view, counts) = shared.inputs.infer(&self.config).map_err(|e| {
            m.errors.inc();
            OriginServiceError::Inference(e)
        })?;
        let version = shared.inputs.version;
        drop(shared);
        m.runs.inc();
        m.run_seconds.observe(started.elapsed().as_secs_f64());
        m.cases.set(gauge(counts.cases));
        m.contacts.set(gauge(counts.contacts));
        m.rooms.set(gauge(counts.rooms));
        m.clusters.set(gauge(counts.clusters));
        let view = Arc::new(view);
        *self
            .cached
            .write()
            .map_err(|_| OriginServiceError::Poisoned)? = Some(Cached {
            view: view.clone(),
            version,
        });
        Ok(view)
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Starts the worker; returns the handle the API asks and the task.
pub fn start(
    config: &OriginConfig,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> (OriginHandle, JoinHandle<()>) {
    let handle = OriginHandle {
        shared: Arc::new(Mutex::new(Shared {
            inputs: OriginInputs::new(config.retention_days),
            cursor: Cursor::default(),
        })),
        cached: Arc::new(RwLock::new(None)),
        config: Arc::new(config.clone()),
        ledger,
        metrics: metrics.clone(),
    };
    let h = handle.clone();
    let tick = Duration::from_millis(config.poll_interval_ms);
    let min_interval = Duration::from_millis(config.min_interval_ms);
    let task = tokio::spawn(async move {
        let mut last_run: Option<Instant> = None;
        let mut pending = false;
        loop {
            let hh = h.clone();
            let due = pending && last_run.is_none_or(|t| t.elapsed() >= min_interval);
            let r = tokio::task::spawn_blocking(move || {
                let changed = hh.read_ledger()?;
                if due {
                    hh.recompute(false).map_err(|e| e.to_string())?;
                }
                Ok::<bool, String>(changed)
            })
            .await;
            match r {
                Ok(Ok(changed)) => {
                    if due {
                        last_run = Some(Instant::now());
                        pending = false;
                    }
                    pending |= changed;
                }
                Ok(Err(e)) => {
                    metrics.origin.errors.inc();
                    tracing::warn!(error = %e, "origin step failed");
                }
                Err(e) => {
                    metrics.origin.errors.inc();
                    tracing::error!(error = %e, "origin step panicked");
                }
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(tick) => {}
            }
        }
    });
    (handle, task)
}

/// Reads the events of the three modules up to the replica's current height, in ledger
/// order, from one snapshot, and applies them.
fn step(
    ledger: &Ledger,
    inputs: &mut OriginInputs,
    cursor: &mut Cursor,
    metrics: &Metrics,
) -> Result<(), String> {
    let snap = ledger.store().snapshot().map_err(|e| e.to_string())?;
    let height = snap.height();
    if height < cursor.next_height {
        return Ok(());
    }
    let mut raw: Vec<RawEvent> = Vec::new();
    for module in [diagnosis::NAME, exposure::NAME, aerosol::NAME] {
        let filter = EventFilter {
            module: Some(module.into()),
            from_height: Some(cursor.next_height),
            to_height: Some(height),
            ..EventFilter::default()
        };
        let mut page_cursor: Option<EventCursor> = None;
        loop {
            let page = ledger
                .events(&filter, page_cursor, EVENTS_PAGE)
                .map_err(|e| e.to_string())?;
            for ev in &page.events {
                raw.push((
                    (ev.height, ev.tx_index, ev.event_index),
                    module.to_string(),
                    ev.event.kind.clone(),
                    ev.event
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), a.value.clone()))
                        .collect(),
                ));
            }
            match page.next {
                Some(next) => page_cursor = Some(next),
                None => break,
            }
        }
    }
    raw.sort_by_key(|(pos, ..)| *pos);
    let mut days: BTreeMap<u64, u64> = BTreeMap::new();
    let mut block_time = |h: u64| -> Result<u64, String> {
        if let Some(&t) = days.get(&h) {
            return Ok(t);
        }
        let t = ledger
            .store()
            .header(h)
            .map_err(|e| e.to_string())?
            .map_or(0, |hd| hd.time_ms / 1000);
        days.insert(h, t);
        Ok(t)
    };
    for (pos, module, kind, attrs) in raw {
        let attr = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| Hash::from_hex(v).ok())
        };
        let t = block_time(pos.0)?;
        inputs
            .linker
            .advance_day(u32::try_from(t / DAY_S).unwrap_or(u32::MAX));
        let input = match (module.as_str(), kind.as_str()) {
            (diagnosis::NAME, "keys_published") => {
                let Some(id) = attr("upload_id") else {
                    continue;
                };
                read_case(&snap, &id, t)?
            }
            (diagnosis::NAME, "keys_released") => {
                let Some(id) = attr("upload_id") else {
                    continue;
                };
                Some(Input::Released(id, released_keys(&snap, &id)?))
            }
            (diagnosis::NAME, "keys_revoked") => {
                let Some(id) = attr("upload_id") else {
                    continue;
                };
                Some(Input::Revoke(revoked_uploads(&snap, &id)?))
            }
            (exposure::NAME, "notice_published") => {
                let Some(id) = attr("notice_id") else {
                    continue;
                };
                exposure::notice(&snap, &id)
                    .map_err(|e| e.to_string())?
                    .and_then(|n| {
                        n.rpis.first().map(|rpi| {
                            Input::Notice(NoticeInput {
                                id: id.0,
                                rpi: *rpi,
                                day: n.day,
                                risk_score: n.risk_score,
                                source_upload: n.source_upload.0,
                            })
                        })
                    })
            }
            (aerosol::NAME, "case_presence") => {
                let Some(id) = attr("presence_id") else {
                    continue;
                };
                match aerosol::presence(&snap, &id).map_err(|e| e.to_string())? {
                    Some(p) => {
                        let mut alerts = Vec::with_capacity(p.alerts.len());
                        for a in &p.alerts {
                            if let Some(rec) =
                                aerosol::alert(&snap, a).map_err(|e| e.to_string())?
                            {
                                alerts.push(rec);
                            }
                        }
                        Some(Input::Presence {
                            id,
                            upload: p.upload,
                            alerts,
                        })
                    }
                    None => None,
                }
            }
            _ => None,
        };
        metrics.origin.events.inc();
        if let Some(input) = input
            && let Err(e) = inputs.apply(input)
        {
            metrics.origin.errors.inc();
            tracing::warn!(error = %e, "origin: input skipped");
        }
    }
    cursor.next_height = height + 1;
    inputs.height = height;
    Ok(())
}

/// A published (not revocation) upload as a case, with its released, unrevoked keys.
fn read_case(snap: &dyn StateRead, id: &Hash, block_s: u64) -> Result<Option<Input>, String> {
    let Some(rec) = diagnosis::upload(snap, id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if rec.report_type == ReportType::Revoked {
        return Ok(None);
    }
    let mut onset_day: Option<i64> = None;
    let mut released = Vec::new();
    for kd in &rec.keys {
        let Some(k) = diagnosis::published_key(snap, kd).map_err(|e| e.to_string())? else {
            continue;
        };
        if onset_day.is_none()
            && let Some(dso) = k.key.days_since_onset
        {
            onset_day = Some(i64::from(diagnosis::key_day(&k.key)) - i64::from(dso));
        }
        if k.released && k.revoked_by.is_none() {
            released.push(k.key);
        }
    }
    let onset_s = onset_day
        .and_then(|d| u64::try_from(d).ok())
        .map(|d| d * DAY_S + NOON_S);
    Ok(Some(Input::Case {
        upload: *id,
        info: CaseInfo {
            confirmation_s: block_s,
            onset_s,
        },
        released,
    }))
}

/// The released, unrevoked keys of diagnosis upload `id`.
fn released_keys(
    snap: &dyn StateRead,
    id: &Hash,
) -> Result<Vec<trustedge_tracing::DiagnosisKey>, String> {
    let Some(rec) = diagnosis::upload(snap, id).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    if rec.report_type == ReportType::Revoked {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    for kd in &rec.keys {
        if let Some(k) = diagnosis::published_key(snap, kd).map_err(|e| e.to_string())?
            && k.released
            && k.revoked_by.is_none()
        {
            keys.push(k.key);
        }
    }
    Ok(keys)
}

/// The uploads whose keys revocation upload `id` revoked.
fn revoked_uploads(snap: &dyn StateRead, id: &Hash) -> Result<Vec<Hash>, String> {
    let Some(rec) = diagnosis::upload(snap, id).map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for kd in &rec.keys {
        if let Some(k) = diagnosis::published_key(snap, kd).map_err(|e| e.to_string())?
            && !out.contains(&k.upload_id)
        {
            out.push(k.upload_id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use trustedge_contracts::AlertKind;

    use super::*;

    fn alert(venue: u8, start_s: u64, kind: AlertKind, risk_ppm: u32) -> AlertRecord {
        AlertRecord {
            id: aerosol::alert_id(&[venue; 16], start_s, start_s + 900, kind),
            venue: [venue; 16],
            start_s,
            end_s: start_s + 900,
            risk_ppm,
            kind,
            day: u32::try_from(start_s / DAY_S).unwrap(),
            height: 1,
        }
    }

    fn case(inputs: &mut OriginInputs, b: u8, onset_day: u64) -> Hash {
        let h = Hash([b; 32]);
        inputs
            .apply(Input::Case {
                upload: h,
                info: CaseInfo {
                    confirmation_s: 20_010 * DAY_S,
                    onset_s: Some(onset_day * DAY_S + NOON_S),
                },
                released: vec![],
            })
            .unwrap();
        h
    }

    #[test]
    fn config_defaults_are_valid_and_each_bound_is_named() {
        assert_eq!(OriginConfig::default().validate(), Ok(()));
        for (c, field) in [
            (
                OriginConfig {
                    samples: 0,
                    ..OriginConfig::default()
                },
                "origin.samples",
            ),
            (
                OriginConfig {
                    poll_interval_ms: 0,
                    ..OriginConfig::default()
                },
                "origin.poll_interval_ms",
            ),
            (
                OriginConfig {
                    max_cases: 0,
                    ..OriginConfig::default()
                },
                "origin.max_cases",
            ),
            (
                OriginConfig {
                    explain_top: 0,
                    ..OriginConfig::default()
                },
                "origin.explain_top",
            ),
            (
                OriginConfig {
                    retention_days: 3,
                    ..OriginConfig::default()
                },
                "origin.retention_days",
            ),
        ] {
            assert!(c.validate().unwrap_err().starts_with(field), "{field}");
        }
        // The cluster rule: tree imports unless the table says otherwise; a misspelt rule
        // is refused when the table is read.
        let read = |t: &str| toml::from_str::<OriginConfig>(t);
        assert_eq!(
            read("").unwrap().clusters,
            trustedge_origin::ClusterRule::TreeImports
        );
        assert_eq!(
            read("clusters = \"components\"").unwrap().clusters,
            trustedge_origin::ClusterRule::Components
        );
        assert!(read("clusters = \"trees\"").is_err());
    }

    /// Presences are grouped by alert window: two kinds alerting the same window make one
    /// room with the higher risk; a window with one case is no evidence between cases; a
    /// revoked case's presences are dropped.
    #[test]
    fn rooms_come_from_presences_grouped_by_alert_window() {
        let mut inputs = OriginInputs::new(16);
        let a = case(&mut inputs, 1, 20_000);
        let c = case(&mut inputs, 3, 20_005);
        let x = case(&mut inputs, 9, 20_004);
        let t = 20_001 * DAY_S + 36_000;
        let vent = alert(7, t, AlertKind::VentilationFailure, 30_000);
        let risk = alert(7, t, AlertKind::ElevatedRisk, 90_000);
        let lonely = alert(8, t, AlertKind::ElevatedRisk, 50_000);
        for (i, (up, alerts)) in [
            (a, vec![vent.clone(), risk.clone()]),
            (c, vec![vent.clone()]),
            (a, vec![lonely.clone()]),
            (x, vec![risk.clone()]),
        ]
        .into_iter()
        .enumerate()
        {
            inputs
                .apply(Input::Presence {
                    id: Hash([100 + i as u8; 32]),
                    upload: up,
                    alerts,
                })
                .unwrap();
        }
        let config = OriginConfig {
            samples: 200,
            ..OriginConfig::default()
        };
        let (v, counts) = inputs.infer(&config).unwrap();
        assert_eq!((counts.cases, counts.rooms, counts.contacts), (3, 1, 0));
        let mut all = vec![a.to_hex(), c.to_hex(), x.to_hex()];
        all.sort();
        assert_eq!(v.clusters.len(), 1);
        assert_eq!(v.clusters[0].cases, all);
        assert_eq!(v.clusters[0].candidates[0].case, a.to_hex());
        let rooms = &v.clusters[0].candidates[0]
            .explanation
            .as_ref()
            .unwrap()
            .rooms;
        assert_eq!(rooms.len(), 2);
        assert!(rooms.iter().all(|r| r.venue == "07".repeat(16)
            && r.from == a.to_hex()
            && (r.probability - 0.09).abs() < 1e-12));
        // Revoking x leaves a and c, still linked by the room.
        inputs.apply(Input::Revoke(vec![x])).unwrap();
        let (v, counts) = inputs.infer(&config).unwrap();
        assert_eq!((counts.cases, counts.rooms), (2, 1));
        assert_eq!(v.clusters[0].cases.len(), 2);
        // A case arriving after its revocation stays out.
        case(&mut inputs, 9, 20_004);
        assert_eq!(inputs.case_count(), 2);
    }
}
