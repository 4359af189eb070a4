//! Contact chains among confirmed cases, served by a cloud node (issue 4 §7).
//!
//! Configured by the `[contacts]` table ([`ContactsConfig`]) on a full node (a `cloud`
//! follower in practice; validators and full edge nodes may run it too). Nothing new is asked
//! of edges: the worker follows the committed events of the node's own replica,
//!
//! - `diagnosis/keys_published` (with released keys) and `diagnosis/keys_released`: the
//!   upload's released, unrevoked keys are read from the replica and given to the
//!   [`ContactLinker`] (one upload = one confirmed case; its keys' RPIs identify it);
//! - `diagnosis/keys_revoked`: every upload whose keys the revocation names is revoked in the
//!   linker (its encounters are removed);
//! - `exposure/notice_published`: the notice (source upload, one exposed RPI, day, score) is
//!   read and given to the linker, which turns it into an encounter between the source case
//!   and the case that broadcast the RPI, now or once that case's keys are published;
//!
//! and keeps a [`LiveContactGraph`] in step ([`ContactLinker::sync`]), compacting it when
//! its delta passes `compact_every` encounters. `GET /v1/contacts/chains` answers k-hop
//! chain queries over it ([`crate::api::contacts`]). Times have day resolution (see
//! [`trustedge_contacts::linker`]). The index lives in memory and is rebuilt from the
//! replica's events at start.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use trustedge_chain::Ledger;
use trustedge_contacts::{
    CaseId, ChainQuery, ContactChains, ContactError, ContactLinker, EncounterFilter, LinkerConfig,
    LiveContactGraph, NoticeInput,
};
use trustedge_contracts::{diagnosis, exposure};
use trustedge_store::{EventCursor, EventFilter};
use trustedge_tracing::ReportType;
use trustedge_types::Hash;

use crate::metrics::Metrics;

/// Most events read per page.
const EVENTS_PAGE: usize = 500;

/// The `[contacts]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsConfig {
    /// Whether the node indexes contact chains and serves `GET /v1/contacts/chains`.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Days of keys and waiting notices kept for linking.
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,
    /// Most RPIs held for linking (144 per key).
    #[serde(default = "defaults::max_rpis")]
    pub max_rpis: usize,
    /// Most notices waiting for their case's keys.
    #[serde(default = "defaults::max_pending")]
    pub max_pending: usize,
    /// Compact the graph once this many encounters wait in its delta.
    #[serde(default = "defaults::compact_every")]
    pub compact_every: usize,
    /// How often the worker reads new events, ms.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
}

mod defaults {
    pub fn enabled() -> bool {
        true
    }
    pub fn retention_days() -> u32 {
        16
    }
    pub fn max_rpis() -> usize {
        4_000_000
    }
    pub fn max_pending() -> usize {
        1_000_000
    }
    pub fn compact_every() -> usize {
        10_000
    }
    pub fn poll_interval_ms() -> u64 {
        200
    }
}

impl Default for ContactsConfig {
    fn default() -> Self {
        ContactsConfig {
            enabled: defaults::enabled(),
            retention_days: defaults::retention_days(),
            max_rpis: defaults::max_rpis(),
            max_pending: defaults::max_pending(),
            compact_every: defaults::compact_every(),
            poll_interval_ms: defaults::poll_interval_ms(),
        }
    }
}

impl ContactsConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(15..=366).contains(&self.retention_days) {
            return Err("contacts.retention_days must be in 15..=366".into());
        }
        if !(144..=1_000_000_000).contains(&self.max_rpis) {
            return Err("contacts.max_rpis must be in 144..=1000000000".into());
        }
        if !(1..=100_000_000).contains(&self.max_pending) {
            return Err("contacts.max_pending must be in 1..=100000000".into());
        }
        if !(1..=100_000_000).contains(&self.compact_every) {
            return Err("contacts.compact_every must be in 1..=100000000".into());
        }
        if !crate::config::INTERVAL_MS_RANGE.contains(&self.poll_interval_ms) {
            return Err("contacts.poll_interval_ms must be in 1..=3600000".into());
        }
        Ok(())
    }
}

/// Metrics of the contact index (names prefixed `contacts_`).
pub struct ContactsMetrics {
    /// Ledger events applied.
    pub events: Counter,
    /// Confirmed cases known.
    pub cases: Gauge,
    /// Encounters stored.
    pub encounters: Gauge,
    /// Notices waiting for their case.
    pub pending: Gauge,
    /// Graph rebuilds and compactions.
    pub rebuilds: Counter,
    /// Errors while indexing.
    pub errors: Counter,
    /// Time of one chain query, s.
    pub query_seconds: Histogram,
}

impl Default for ContactsMetrics {
    fn default() -> Self {
        ContactsMetrics {
            events: Counter::default(),
            cases: Gauge::default(),
            encounters: Gauge::default(),
            pending: Gauge::default(),
            rebuilds: Counter::default(),
            errors: Counter::default(),
            // 1 µs to ~30 ms.
            query_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1e-6, 2.0, 16),
            ),
        }
    }
}

impl ContactsMetrics {
    /// Registers these metrics.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "contacts_events",
            "Ledger events applied to the contact index",
            self.events.clone(),
        );
        r.register(
            "contacts_cases",
            "Confirmed cases known to the contact index",
            self.cases.clone(),
        );
        r.register(
            "contacts_encounters",
            "Encounters between confirmed cases stored",
            self.encounters.clone(),
        );
        r.register(
            "contacts_pending",
            "Exposure notices waiting for their case's keys",
            self.pending.clone(),
        );
        r.register(
            "contacts_rebuilds",
            "Contact graph rebuilds and compactions",
            self.rebuilds.clone(),
        );
        r.register(
            "contacts_errors",
            "Errors while indexing contacts",
            self.errors.clone(),
        );
        r.register(
            "contacts_query_seconds",
            "Time of one contact-chain query",
            self.query_seconds.clone(),
        );
    }
}

/// Why a chain query has no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainsError {
    /// The upload is not a confirmed case known here (unknown, embargoed, or not yet indexed).
    #[error("upload {0} is not a confirmed case known to this node")]
    UnknownCase(Hash),
    /// The case's keys were revoked.
    #[error("the case of upload {0} was revoked")]
    Revoked(Hash),
    /// The query was refused by the index.
    #[error("{0}")]
    Query(ContactError),
}

/// One hop of an answer, with upload ids.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedHop {
    /// Upload of the case nearer the source.
    pub from: Hash,
    /// Upload of the case farther from it.
    pub to: Hash,
    /// Time of the contact (day start + 12 h), Unix seconds.
    pub start_s: u64,
    /// Its score (sum of the notices' risk scores for that pair and day).
    pub score: f32,
}

/// One chain of an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedChain {
    /// Direction the chain was found in.
    pub direction: trustedge_contacts::Direction,
    /// Hops from the source outward.
    pub hops: Vec<ResolvedHop>,
    /// Weakest hop's score.
    pub score: f32,
}

/// The answer to a chain query, with upload ids.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedChains {
    /// The chains, in the index's result order.
    pub chains: Vec<ResolvedChain>,
    /// Whether a bound cut the answer short.
    pub truncated: bool,
    /// Stored edges looked at.
    pub edges_scanned: u64,
}

struct Index {
    linker: ContactLinker,
    graph: LiveContactGraph,
}

/// The contact index shared by the worker and the API.
#[derive(Clone)]
pub struct ContactsHandle {
    index: Arc<RwLock<Index>>,
    metrics: Arc<Metrics>,
}

impl ContactsHandle {
    fn new(config: &ContactsConfig, metrics: Arc<Metrics>) -> ContactsHandle {
        ContactsHandle {
            index: Arc::new(RwLock::new(Index {
                linker: ContactLinker::new(LinkerConfig {
                    retention_days: config.retention_days,
                    max_rpis: config.max_rpis,
                    max_pending: config.max_pending,
                }),
                graph: LiveContactGraph::new(EncounterFilter::default()),
            })),
            metrics,
        }
    }

    /// The chains of the case of upload `upload`.
    pub fn chains(&self, upload: &Hash, q: &ChainQuery) -> Result<ResolvedChains, ChainsError> {
        let started = std::time::Instant::now();
        let index = self
            .index
            .read()
            .map_err(|_| ChainsError::Query(ContactError::InvalidQuery("index poisoned")))?;
        let case = index
            .linker
            .case(&upload.0)
            .ok_or(ChainsError::UnknownCase(*upload))?;
        if index.linker.is_revoked(case) {
            return Err(ChainsError::Revoked(*upload));
        }
        let found = match index.graph.chains(case, q) {
            Ok(c) => c,
            // A confirmed case without a stored contact: no chain.
            Err(ContactError::UnknownCase(_)) => ContactChains {
                source: case,
                chains: Vec::new(),
                truncated: false,
                edges_scanned: 0,
            },
            Err(e) => return Err(ChainsError::Query(e)),
        };
        let up = |c: CaseId| Hash(index.linker.upload(c).copied().unwrap_or([0; 32]));
        let out = ResolvedChains {
            chains: found
                .chains
                .iter()
                .map(|c| ResolvedChain {
                    direction: c.direction,
                    score: c.score,
                    hops: c
                        .hops
                        .iter()
                        .map(|h| ResolvedHop {
                            from: up(h.from),
                            to: up(h.to),
                            start_s: h.start_s,
                            score: h.score,
                        })
                        .collect(),
                })
                .collect(),
            truncated: found.truncated,
            edges_scanned: found.edges_scanned,
        };
        self.metrics
            .contacts
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }
}

/// One thing read from the replica for the linker.
enum Input {
    Keys(Hash, Vec<trustedge_tracing::DiagnosisKey>),
    Notice(NoticeInput),
    Revoke(Vec<Hash>),
}

/// Where the worker is in each module's events.
#[derive(Default)]
struct Cursors {
    diagnosis: Option<EventCursor>,
    exposure: Option<EventCursor>,
}

/// Starts the worker; returns the handle the API queries and the task.
pub fn start(
    config: &ContactsConfig,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> (ContactsHandle, JoinHandle<()>) {
    let handle = ContactsHandle::new(config, metrics.clone());
    let h = handle.clone();
    let tick = Duration::from_millis(config.poll_interval_ms);
    let compact_every = config.compact_every;
    let task = tokio::spawn(async move {
        let mut cursors = Cursors::default();
        loop {
            let l = ledger.clone();
            let hh = h.clone();
            let mut c = std::mem::take(&mut cursors);
            let r = tokio::task::spawn_blocking(move || {
                let r = step(&l, &hh, &mut c, compact_every);
                (c, r)
            })
            .await;
            match r {
                Ok((c, Ok(()))) => cursors = c,
                Ok((c, Err(e))) => {
                    cursors = c;
                    metrics.contacts.errors.inc();
                    tracing::warn!(error = %e, "contact index step failed");
                }
                Err(e) => {
                    metrics.contacts.errors.inc();
                    tracing::error!(error = %e, "contact index step panicked");
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

/// Reads the new events of both modules, applies them, and syncs the graph.
fn step(
    ledger: &Ledger,
    handle: &ContactsHandle,
    cursors: &mut Cursors,
    compact_every: usize,
) -> Result<(), String> {
    // Both modules' events in ledger order, each with its block's UTC day (which bounds what
    // the linker keeps, so that a replay from genesis keeps what live indexing kept).
    let mut inputs = read_inputs(ledger, diagnosis::NAME, &mut cursors.diagnosis)?;
    inputs.extend(read_inputs(ledger, exposure::NAME, &mut cursors.exposure)?);
    inputs.sort_by_key(|(pos, _)| *pos);
    let mut days: std::collections::BTreeMap<u64, u32> = std::collections::BTreeMap::new();
    for (pos, _) in &inputs {
        if let std::collections::btree_map::Entry::Vacant(e) = days.entry(pos.0) {
            let header = ledger.store().header(pos.0).map_err(|e| e.to_string())?;
            if let Some(h) = header {
                e.insert(u32::try_from(h.time_ms / 1000 / 86_400).unwrap_or(u32::MAX));
            }
        }
    }
    let m = &handle.metrics.contacts;
    let mut index = handle
        .index
        .write()
        .map_err(|_| "contact index poisoned".to_string())?;
    let Index { linker, graph } = &mut *index;
    for (pos, input) in &inputs {
        m.events.inc();
        if let Some(&day) = days.get(&pos.0) {
            linker.advance_day(day);
        }
        let r = match input {
            Input::Keys(up, keys) => linker.add_keys(&up.0, keys).map(|_| ()),
            Input::Notice(n) => linker.add_notice(n).map(|_| ()),
            Input::Revoke(ups) => {
                for up in ups {
                    linker.revoke(&up.0);
                }
                Ok(())
            }
        };
        if let Err(e) = r {
            m.errors.inc();
            tracing::warn!(error = %e, "contact index: input skipped");
        }
    }
    let report = linker.sync(graph).map_err(|e| e.to_string())?;
    if report.rebuilt {
        m.rebuilds.inc();
    }
    if graph.delta_len() >= compact_every {
        graph.compact().map_err(|e| e.to_string())?;
        m.rebuilds.inc();
    }
    let s = linker.stats();
    m.cases.set(i64::try_from(s.cases).unwrap_or(i64::MAX));
    m.encounters
        .set(i64::try_from(s.encounters).unwrap_or(i64::MAX));
    m.pending.set(i64::try_from(s.pending).unwrap_or(i64::MAX));
    Ok(())
}

/// An event's position: height, transaction index, event index.
type Pos = (u64, u32, u32);

/// The new events of `module` since `cursor`, turned into linker inputs (read from the
/// replica's current state), with their positions.
fn read_inputs(
    ledger: &Ledger,
    module: &str,
    cursor: &mut Option<EventCursor>,
) -> Result<Vec<(Pos, Input)>, String> {
    let filter = EventFilter {
        module: Some(module.into()),
        ..EventFilter::default()
    };
    // Events first, then the state: every event read is committed in the snapshot.
    let mut raw: Vec<(Pos, String, Option<Hash>)> = Vec::new();
    loop {
        let page = ledger
            .events(&filter, *cursor, EVENTS_PAGE)
            .map_err(|e| e.to_string())?;
        for ev in &page.events {
            let attr = |k: &str| {
                ev.event
                    .attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| Hash::from_hex(&a.value).ok())
            };
            let id = attr("upload_id").or_else(|| attr("notice_id"));
            raw.push((
                (ev.height, ev.tx_index, ev.event_index),
                ev.event.kind.clone(),
                id,
            ));
        }
        match page.next {
            Some(next) => *cursor = Some(next),
            None => {
                if let Some(last) = page.events.last() {
                    *cursor = Some(EventCursor {
                        height: last.height,
                        tx_index: last.tx_index,
                        event_index: last.event_index.saturating_add(1),
                    });
                }
                break;
            }
        }
    }
    let snap = ledger.store().snapshot().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (pos, kind, id) in raw {
        let Some(id) = id else { continue };
        match (module, kind.as_str()) {
            (diagnosis::NAME, "keys_published" | "keys_released") => {
                let keys = released_keys(&snap, &id)?;
                if !keys.is_empty() {
                    out.push((pos, Input::Keys(id, keys)));
                }
            }
            (diagnosis::NAME, "keys_revoked") => {
                out.push((pos, Input::Revoke(revoked_uploads(&snap, &id)?)));
            }
            (exposure::NAME, "notice_published") => {
                if let Some(n) = exposure::notice(&snap, &id).map_err(|e| e.to_string())?
                    && let Some(rpi) = n.rpis.first()
                {
                    out.push((
                        pos,
                        Input::Notice(NoticeInput {
                            id: id.0,
                            rpi: *rpi,
                            day: n.day,
                            risk_score: n.risk_score,
                            source_upload: n.source_upload.0,
                        }),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The released, unrevoked keys of diagnosis upload `id`.
fn released_keys(
    snap: &dyn trustedge_execution::StateRead,
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
fn revoked_uploads(
    snap: &dyn trustedge_execution::StateRead,
    id: &Hash,
) -> Result<Vec<Hash>, String> {
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
