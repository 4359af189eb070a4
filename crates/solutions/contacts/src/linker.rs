//! From ledger records to [`Encounter`]s between confirmed cases.
//!
//! Everything the cloud needs is already public on the ledger, and no edge shares anything
//! new for it:
//!
//! - a `diagnosis` upload is one confirmed case; its released keys expand to the RPIs the
//!   case broadcast ([`ContactLinker::add_keys`]);
//! - an `exposure` notice names the upload that triggered it (`source_upload`, a case) and
//!   one RPI the *exposed* device broadcast ([`ContactLinker::add_notice`]).
//!
//! When that exposed device later becomes a confirmed case itself, its keys are published and
//! the notice's RPI is one of its RPIs: the notice is then a close contact between the two
//! cases. The linker finds these in either order: a notice whose RPI belongs to no known
//! case waits (bounded, see below) until a case's keys claim it; keys published first are
//! kept as `RPI → case` so that a later notice links at once. Notices whose RPI never
//! becomes a case stay unlinked: the cloud learns nothing about people who were not confirmed
//! beyond what the ledger already shows.
//!
//! # Cases
//! Upload ids are assigned dense [`CaseId`]s (0, 1, 2 …) in the order the linker first sees
//! them (as a notice's source or with keys); [`ContactLinker::case`] and
//! [`ContactLinker::upload`] translate.
//!
//! # Encounters, dedupe and time
//! One [`Encounter`] per (source case, exposed case, exposure day): `a` is the source case,
//! `b` the exposed one, `score` the sum of the risk scores of the notices of that pair and
//! day (edges publish one notice per exposed device and day, with the day's score; a pair-day
//! with several notices, from several edges or a restart, adds them up). The same notice (by
//! id) counts once, the same key once.
//!
//! Notices carry only a UTC day, by design (nothing finer is published), so times have day
//! resolution: `start_s` is the day's start (Unix seconds) plus [`DAY_ANCHOR_S`] (noon), and
//! `duration_s` is 0 (unknown). Two contacts on the same day therefore compare equal in
//! time, which time-respecting queries accept in both directions (conservative: a same-day
//! chain is never ruled out).
//!
//! # Revocation
//! [`ContactLinker::revoke`] (a GAEN `REVOKED` upload withdrawing keys of the case) removes
//! the case: its encounters are deleted, its RPIs no longer link, notices naming it as source
//! are ignored, and queries about it answer "revoked". The ids stay assigned.
//!
//! # Bounds
//! The `RPI → case` map holds released keys whose day is within `retention_days` of the
//! latest day passed to [`ContactLinker::advance_day`] (a notice is published at most 14
//! days after the exposure, and matching allows a day of skew, so 16 days keeps every key a
//! future notice can name), and at most `max_rpis` RPIs (144 per key): past that, the oldest
//! days go first. Waiting notices are bounded the same way (`retention_days`,
//! `max_pending`). Linked encounters are the result and are kept (16 bytes per direction in
//! the graph).
//!
//! # Feeding a graph
//! Added encounters are queued; [`ContactLinker::sync`] inserts them into a
//! [`LiveContactGraph`], or rebuilds it when a stored encounter changed (a later notice of
//! the same pair and day raised its score) or was removed (revocation).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};
use trustedge_tracing::{DiagnosisKey, EnIntervalNumber, TemporaryExposureKey};

use crate::ContactError;
use crate::graph::{CaseId, ContactGraph, Encounter};
use crate::live::LiveContactGraph;

/// A diagnosis upload id (the ledger's 32-byte upload hash).
pub type UploadId = [u8; 32];

/// Seconds after a day's start used as the time of that day's contacts (noon UTC).
pub const DAY_ANCHOR_S: u64 = 12 * 3600;

/// Seconds in a day.
const DAY_S: u64 = 86_400;

/// 10-minute intervals in a day.
const INTERVALS_PER_DAY: u32 = 144;

/// Bounds of a [`ContactLinker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkerConfig {
    /// Keys and waiting notices older than this many days before the latest
    /// [`ContactLinker::advance_day`] are dropped.
    pub retention_days: u32,
    /// Most RPIs kept (144 per key of a full day).
    pub max_rpis: usize,
    /// Most waiting notices kept.
    pub max_pending: usize,
}

impl Default for LinkerConfig {
    fn default() -> Self {
        LinkerConfig {
            retention_days: 16,
            max_rpis: 4_000_000,
            max_pending: 1_000_000,
        }
    }
}

/// An exposure notice as the linker needs it (one RPI: notices carry exactly one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoticeInput {
    /// The notice's id (for dedupe).
    pub id: [u8; 32],
    /// The exposed device's RPI.
    pub rpi: [u8; 16],
    /// UTC day of the exposure (days since the Unix epoch).
    pub day: u32,
    /// The notice's risk score.
    pub risk_score: u32,
    /// The diagnosis upload that triggered it (the source case).
    pub source_upload: UploadId,
}

/// What one call changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkOutcome {
    /// Encounters created.
    pub created: usize,
    /// Stored encounters whose score grew.
    pub updated: usize,
    /// Whether the input was ignored (seen before, revoked case, self-contact, too old).
    pub ignored: bool,
}

/// What [`ContactLinker::sync`] did to the graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Encounters inserted into the delta.
    pub inserted: usize,
    /// Whether the graph was rebuilt from every stored encounter.
    pub rebuilt: bool,
}

/// Counters of a linker's contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkerStats {
    /// Cases (upload ids) known, revoked included.
    pub cases: usize,
    /// Revoked cases.
    pub revoked: usize,
    /// Keys held.
    pub keys: usize,
    /// RPIs held.
    pub rpis: usize,
    /// Notices waiting for their RPI's case.
    pub pending: usize,
    /// Encounters stored.
    pub encounters: usize,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    source: CaseId,
    day: u32,
    score: u32,
}

type EdgeKey = (CaseId, CaseId, u32);

#[derive(Clone, Copy, Debug)]
struct HeldKey {
    case: CaseId,
    start: u32,
    period: u32,
}

/// Links exposure notices to confirmed cases: see the module documentation.
#[derive(Clone, Debug)]
pub struct ContactLinker {
    config: LinkerConfig,
    cases: FxHashMap<UploadId, CaseId>,
    uploads: Vec<UploadId>,
    revoked: FxHashSet<CaseId>,
    /// Key data → what is needed to drop its RPIs.
    keys: FxHashMap<[u8; 16], HeldKey>,
    /// Key day → key data, for eviction.
    keys_by_day: BTreeMap<u32, Vec<[u8; 16]>>,
    rpis: FxHashMap<[u8; 16], CaseId>,
    /// Notice ids seen, with their day (for eviction).
    notices: FxHashMap<[u8; 32], u32>,
    pending: FxHashMap<[u8; 16], Vec<Pending>>,
    pending_by_day: BTreeMap<u32, Vec<[u8; 16]>>,
    pending_len: usize,
    edges: BTreeMap<EdgeKey, u64>,
    /// Edges created since the last sync.
    fresh: BTreeSet<EdgeKey>,
    rebuild: bool,
    today: u32,
}

impl Default for ContactLinker {
    fn default() -> Self {
        ContactLinker::new(LinkerConfig::default())
    }
}

impl ContactLinker {
    /// An empty linker.
    pub fn new(config: LinkerConfig) -> ContactLinker {
        ContactLinker {
            config,
            cases: FxHashMap::default(),
            uploads: Vec::new(),
            revoked: FxHashSet::default(),
            keys: FxHashMap::default(),
            keys_by_day: BTreeMap::new(),
            rpis: FxHashMap::default(),
            notices: FxHashMap::default(),
            pending: FxHashMap::default(),
            pending_by_day: BTreeMap::new(),
            pending_len: 0,
            edges: BTreeMap::new(),
            fresh: BTreeSet::new(),
            rebuild: false,
            today: 0,
        }
    }

    /// The case of `upload`, if known.
    pub fn case(&self, upload: &UploadId) -> Option<CaseId> {
        self.cases.get(upload).copied()
    }

    /// The upload of `case`, if assigned.
    pub fn upload(&self, case: CaseId) -> Option<&UploadId> {
        self.uploads.get(case.0 as usize)
    }

    /// Whether `case` was revoked.
    pub fn is_revoked(&self, case: CaseId) -> bool {
        self.revoked.contains(&case)
    }

    /// Counters.
    pub fn stats(&self) -> LinkerStats {
        LinkerStats {
            cases: self.uploads.len(),
            revoked: self.revoked.len(),
            keys: self.keys.len(),
            rpis: self.rpis.len(),
            pending: self.pending_len,
            encounters: self.edges.len(),
        }
    }

    /// Every stored encounter, in (source, exposed, day) order.
    pub fn encounters(&self) -> impl Iterator<Item = Encounter> + '_ {
        self.edges.iter().map(|(&k, &s)| encounter(k, s))
    }

    fn case_or_assign(&mut self, upload: &UploadId) -> Result<CaseId, ContactError> {
        if let Some(&c) = self.cases.get(upload) {
            return Ok(c);
        }
        let id = u32::try_from(self.uploads.len())
            .map_err(|_| ContactError::InvalidQuery("more than 2^32 cases"))?;
        let c = CaseId(id);
        self.cases.insert(*upload, c);
        self.uploads.push(*upload);
        Ok(c)
    }

    /// Adds released keys of confirmed case `upload`: their RPIs now identify the case, and
    /// waiting notices that carry one of them become encounters. Keys seen before, keys of
    /// a revoked case and keys older than the retention are ignored.
    ///
    /// Errors: a key whose RPIs cannot be derived (rolling period past the interval range).
    pub fn add_keys(
        &mut self,
        upload: &UploadId,
        keys: &[DiagnosisKey],
    ) -> Result<LinkOutcome, ContactError> {
        let case = self.case_or_assign(upload)?;
        let mut out = LinkOutcome::default();
        if self.revoked.contains(&case) {
            out.ignored = true;
            return Ok(out);
        }
        let oldest = self.today.saturating_sub(self.config.retention_days);
        for k in keys {
            let day = k.rolling_start_interval_number / INTERVALS_PER_DAY;
            if day < oldest || self.keys.contains_key(&k.key_data) {
                continue;
            }
            let rpik = TemporaryExposureKey(k.key_data)
                .rpik()
                .map_err(|_| ContactError::InvalidQuery("cannot derive a key's RPIK"))?;
            let period = k.rolling_period.min(INTERVALS_PER_DAY);
            let start = k.rolling_start_interval_number;
            if start.checked_add(period).is_none() {
                return Err(ContactError::InvalidQuery(
                    "a key's rolling period runs past the last interval",
                ));
            }
            self.keys.insert(
                k.key_data,
                HeldKey {
                    case,
                    start,
                    period,
                },
            );
            self.keys_by_day.entry(day).or_default().push(k.key_data);
            for i in 0..period {
                let rpi = rpik.rpi(EnIntervalNumber(start + i)).0;
                self.rpis.insert(rpi, case);
                if let Some(waiting) = self.pending.remove(&rpi) {
                    self.pending_len -= waiting.len();
                    for p in waiting {
                        self.link(p.source, case, p.day, p.score, &mut out);
                    }
                }
            }
        }
        self.enforce_rpi_bound();
        Ok(out)
    }

    /// Adds an exposure notice: an encounter at once if its RPI belongs to a known case,
    /// otherwise it waits for that case's keys. Ignored: a notice seen before (by id), one
    /// older than the retention, one whose source or exposed case is revoked, one whose RPI
    /// is the source case's own.
    ///
    /// Errors: none in practice (only past 2^32 cases).
    pub fn add_notice(&mut self, n: &NoticeInput) -> Result<LinkOutcome, ContactError> {
        let mut out = LinkOutcome {
            ignored: true,
            ..LinkOutcome::default()
        };
        let oldest = self.today.saturating_sub(self.config.retention_days);
        if self.notices.contains_key(&n.id) || n.day < oldest {
            return Ok(out);
        }
        let source = self.case_or_assign(&n.source_upload)?;
        self.notices.insert(n.id, n.day);
        if self.revoked.contains(&source) {
            return Ok(out);
        }
        out.ignored = false;
        match self.rpis.get(&n.rpi) {
            Some(&exposed) => self.link(source, exposed, n.day, n.risk_score, &mut out),
            None => {
                self.pending.entry(n.rpi).or_default().push(Pending {
                    source,
                    day: n.day,
                    score: n.risk_score,
                });
                self.pending_by_day.entry(n.day).or_default().push(n.rpi);
                self.pending_len += 1;
                self.enforce_pending_bound();
            }
        }
        Ok(out)
    }

    fn link(
        &mut self,
        source: CaseId,
        exposed: CaseId,
        day: u32,
        score: u32,
        out: &mut LinkOutcome,
    ) {
        if source == exposed || self.revoked.contains(&source) || self.revoked.contains(&exposed) {
            out.ignored = true;
            return;
        }
        let key = (source, exposed, day);
        match self.edges.get_mut(&key) {
            Some(s) => {
                *s = s.saturating_add(u64::from(score));
                if !self.fresh.contains(&key) {
                    self.rebuild = true;
                }
                out.updated += 1;
            }
            None => {
                self.edges.insert(key, u64::from(score));
                self.fresh.insert(key);
                out.created += 1;
            }
        }
    }

    /// Revokes the case of `upload` (see the module documentation). Returns whether it was
    /// a known case not revoked before.
    pub fn revoke(&mut self, upload: &UploadId) -> bool {
        let Some(case) = self.case(upload) else {
            return false;
        };
        if !self.revoked.insert(case) {
            return false;
        }
        let before = self.edges.len();
        self.edges.retain(|&(a, b, _), _| a != case && b != case);
        self.fresh.retain(|&(a, b, _)| a != case && b != case);
        if self.edges.len() != before {
            self.rebuild = true;
        }
        for waiting in self.pending.values_mut() {
            let n = waiting.len();
            waiting.retain(|p| p.source != case);
            self.pending_len -= n - waiting.len();
        }
        self.pending.retain(|_, w| !w.is_empty());
        true
    }

    /// Sets the current UTC day (it only moves forward) and drops keys, RPIs and waiting
    /// notices older than the retention.
    pub fn advance_day(&mut self, today: u32) {
        if today <= self.today {
            return;
        }
        self.today = today;
        let oldest = today.saturating_sub(self.config.retention_days);
        while let Some((&day, _)) = self.keys_by_day.first_key_value() {
            if day >= oldest {
                break;
            }
            self.evict_key_day();
        }
        while let Some((&day, _)) = self.pending_by_day.first_key_value() {
            if day >= oldest {
                break;
            }
            self.evict_pending_day();
        }
        self.notices.retain(|_, d| *d >= oldest);
    }

    fn evict_key_day(&mut self) {
        let Some((_, keys)) = self.keys_by_day.pop_first() else {
            return;
        };
        for kd in keys {
            let Some(k) = self.keys.remove(&kd) else {
                continue;
            };
            // Re-derive the key's RPIs to drop them (cheaper than storing them twice).
            if let Ok(rpik) = TemporaryExposureKey(kd).rpik() {
                for i in 0..k.period {
                    let rpi = rpik.rpi(EnIntervalNumber(k.start.saturating_add(i))).0;
                    if self.rpis.get(&rpi) == Some(&k.case) {
                        self.rpis.remove(&rpi);
                    }
                }
            }
        }
    }

    fn evict_pending_day(&mut self) {
        let Some((day, rpis)) = self.pending_by_day.pop_first() else {
            return;
        };
        for rpi in rpis {
            if let Some(w) = self.pending.get_mut(&rpi) {
                let n = w.len();
                w.retain(|p| p.day != day);
                self.pending_len -= n - w.len();
                if w.is_empty() {
                    self.pending.remove(&rpi);
                }
            }
        }
    }

    fn enforce_rpi_bound(&mut self) {
        while self.rpis.len() > self.config.max_rpis && self.keys_by_day.len() > 1 {
            self.evict_key_day();
        }
    }

    fn enforce_pending_bound(&mut self) {
        while self.pending_len > self.config.max_pending && !self.pending_by_day.is_empty() {
            self.evict_pending_day();
        }
    }

    /// Brings `graph` up to date: inserts the encounters created since the last sync, or
    /// rebuilds it from every stored encounter (keeping its filter) when one changed or was
    /// removed.
    ///
    /// Errors: as [`LiveContactGraph::insert`] and [`ContactGraph::build`]; the next sync
    /// then rebuilds.
    pub fn sync(&mut self, graph: &mut LiveContactGraph) -> Result<SyncReport, ContactError> {
        if self.rebuild {
            let all: Vec<Encounter> = self.encounters().collect();
            let filter = *graph.base().filter();
            *graph = LiveContactGraph::from_graph(ContactGraph::build(&all, filter)?);
            self.rebuild = false;
            self.fresh.clear();
            return Ok(SyncReport {
                inserted: 0,
                rebuilt: true,
            });
        }
        let mut inserted = 0;
        let fresh = std::mem::take(&mut self.fresh);
        for key in fresh {
            if let Some(&s) = self.edges.get(&key) {
                if let Err(e) = graph.insert(encounter(key, s)) {
                    // Rebuild next time rather than lose the rest of the queue.
                    self.rebuild = true;
                    return Err(e);
                }
                inserted += 1;
            }
        }
        Ok(SyncReport {
            inserted,
            rebuilt: false,
        })
    }
}

fn encounter((a, b, day): EdgeKey, score: u64) -> Encounter {
    Encounter {
        a,
        b,
        start_s: u64::from(day) * DAY_S + DAY_ANCHOR_S,
        duration_s: 0,
        // Scores are sums of u32 risk scores; f32 holds them to 24 bits of precision.
        score: score as f32,
    }
}

/// The time [`ContactLinker`] gives the contacts of UTC `day`.
pub fn day_time_s(day: u32) -> u64 {
    u64::from(day) * DAY_S + DAY_ANCHOR_S
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{ChainQuery, Direction};
    use trustedge_tracing::ReportType;

    const DAY: u32 = 20_000;

    fn key(seed: u8, day: u32) -> DiagnosisKey {
        DiagnosisKey {
            key_data: [seed; 16],
            rolling_start_interval_number: day * 144,
            rolling_period: 144,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        }
    }

    fn rpi_of(k: &DiagnosisKey, i: u32) -> [u8; 16] {
        TemporaryExposureKey(k.key_data)
            .rpik()
            .unwrap()
            .rpi(EnIntervalNumber(k.rolling_start_interval_number + i))
            .0
    }

    fn notice(id: u8, rpi: [u8; 16], day: u32, score: u32, source: u8) -> NoticeInput {
        NoticeInput {
            id: [id; 32],
            rpi,
            day,
            risk_score: score,
            source_upload: [source; 32],
        }
    }

    fn edges(l: &ContactLinker) -> Vec<(UploadId, UploadId, u64, f32)> {
        l.encounters()
            .map(|e| {
                (
                    *l.upload(e.a).unwrap(),
                    *l.upload(e.b).unwrap(),
                    e.start_s,
                    e.score,
                )
            })
            .collect()
    }

    #[test]
    fn notice_first_then_keys_links() {
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 2);
        let kb = key(2, DAY);
        l.add_keys(&[1; 32], &[key(1, DAY)]).unwrap();
        let o = l
            .add_notice(&notice(9, rpi_of(&kb, 30), DAY, 120, 1))
            .unwrap();
        assert_eq!((o.created, o.ignored), (0, false));
        assert_eq!(l.stats().pending, 1);
        assert!(edges(&l).is_empty());
        let o = l.add_keys(&[2; 32], &[kb]).unwrap();
        assert_eq!(o.created, 1);
        assert_eq!(l.stats().pending, 0);
        assert_eq!(edges(&l), vec![([1; 32], [2; 32], day_time_s(DAY), 120.0)]);
        assert_eq!(day_time_s(DAY), u64::from(DAY) * 86_400 + 43_200);
    }

    #[test]
    fn keys_first_then_notice_links_the_same() {
        let kb = key(2, DAY);
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 2);
        l.add_keys(&[2; 32], &[kb]).unwrap();
        let o = l
            .add_notice(&notice(9, rpi_of(&kb, 30), DAY, 120, 1))
            .unwrap();
        assert_eq!(o.created, 1);
        assert_eq!(edges(&l), vec![([1; 32], [2; 32], day_time_s(DAY), 120.0)]);
    }

    #[test]
    fn duplicates_count_once_and_same_day_notices_add_up() {
        let kb = key(2, DAY);
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 2);
        l.add_keys(&[2; 32], &[kb]).unwrap();
        let n = notice(9, rpi_of(&kb, 30), DAY, 100, 1);
        l.add_notice(&n).unwrap();
        assert!(l.add_notice(&n).unwrap().ignored);
        // The same keys again link nothing new.
        assert_eq!(l.add_keys(&[2; 32], &[kb]).unwrap().created, 0);
        // A second RPI of B, same source and day: one encounter, scores summed.
        let o = l
            .add_notice(&notice(10, rpi_of(&kb, 31), DAY, 50, 1))
            .unwrap();
        assert_eq!((o.created, o.updated), (0, 1));
        assert_eq!(edges(&l), vec![([1; 32], [2; 32], day_time_s(DAY), 150.0)]);
        // Another day is another encounter.
        let kb2 = key(3, DAY + 1);
        l.add_keys(&[2; 32], &[kb2]).unwrap();
        l.add_notice(&notice(11, rpi_of(&kb2, 0), DAY + 1, 7, 1))
            .unwrap();
        assert_eq!(l.stats().encounters, 2);
        assert_eq!(l.stats().cases, 2);
    }

    #[test]
    fn unknown_rpis_and_self_contacts_are_not_linked() {
        let ka = key(1, DAY);
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 2);
        l.add_keys(&[1; 32], &[ka]).unwrap();
        // An RPI no case broadcast: waits, never becomes an encounter.
        l.add_notice(&notice(9, [0xee; 16], DAY, 100, 1)).unwrap();
        // A notice naming the source case's own RPI (the contract refuses it; the linker too).
        let o = l
            .add_notice(&notice(10, rpi_of(&ka, 5), DAY, 100, 1))
            .unwrap();
        assert!(o.ignored);
        l.add_keys(&[2; 32], &[key(2, DAY)]).unwrap();
        assert_eq!(l.stats().encounters, 0);
        assert_eq!(l.stats().pending, 1);
    }

    #[test]
    fn revocation_removes_the_case_and_rebuilds_the_graph() {
        let (kb, kc) = (key(2, DAY), key(3, DAY + 1));
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 3);
        l.add_keys(&[2; 32], &[kb]).unwrap();
        l.add_notice(&notice(9, rpi_of(&kb, 1), DAY, 100, 1))
            .unwrap();
        l.add_keys(&[3; 32], &[kc]).unwrap();
        l.add_notice(&notice(10, rpi_of(&kc, 1), DAY + 1, 80, 2))
            .unwrap();
        let mut g = LiveContactGraph::default();
        assert_eq!(l.sync(&mut g).unwrap().inserted, 2);
        let a = l.case(&[1; 32]).unwrap();
        let q = ChainQuery::default();
        let chains = g.chains(a, &q).unwrap();
        assert_eq!(chains.chains.len(), 2);
        assert_eq!(chains.chains[1].hops.len(), 2);

        assert!(l.revoke(&[2; 32]));
        assert!(!l.revoke(&[2; 32]));
        assert!(!l.revoke(&[7; 32]));
        let b = l.case(&[2; 32]).unwrap();
        assert!(l.is_revoked(b));
        assert_eq!(l.stats().encounters, 0);
        assert!(l.sync(&mut g).unwrap().rebuilt);
        assert_eq!(g.encounter_count(), 0);
        assert!(g.chains(a, &q).is_err());
        // Later notices naming the revoked case as source, or its RPIs, are ignored.
        assert!(
            l.add_notice(&notice(11, rpi_of(&kc, 2), DAY + 1, 5, 2))
                .unwrap()
                .ignored
        );
        assert!(
            l.add_notice(&notice(12, rpi_of(&kb, 2), DAY, 5, 1))
                .unwrap()
                .ignored
        );
        assert_eq!(l.stats().encounters, 0);
    }

    #[test]
    fn sync_inserts_then_rebuilds_on_score_change() {
        let kb = key(2, DAY);
        let mut l = ContactLinker::default();
        l.advance_day(DAY + 1);
        l.add_keys(&[2; 32], &[kb]).unwrap();
        l.add_notice(&notice(9, rpi_of(&kb, 1), DAY, 100, 1))
            .unwrap();
        // Updated before the sync: still a plain insert.
        l.add_notice(&notice(10, rpi_of(&kb, 2), DAY, 10, 1))
            .unwrap();
        let mut g = LiveContactGraph::default();
        assert_eq!(
            l.sync(&mut g).unwrap(),
            SyncReport {
                inserted: 1,
                rebuilt: false
            }
        );
        l.add_notice(&notice(11, rpi_of(&kb, 3), DAY, 1, 1))
            .unwrap();
        assert!(l.sync(&mut g).unwrap().rebuilt);
        let a = l.case(&[1; 32]).unwrap();
        let q = ChainQuery {
            direction: Direction::Forward,
            ..ChainQuery::default()
        };
        assert_eq!(g.chains(a, &q).unwrap().chains[0].score, 111.0);
    }

    #[test]
    fn retention_and_bounds_drop_old_keys_and_notices() {
        let kb = key(2, DAY);
        let mut l = ContactLinker::new(LinkerConfig {
            retention_days: 16,
            max_rpis: 144 * 2,
            max_pending: 2,
        });
        l.advance_day(DAY + 1);
        l.add_keys(&[2; 32], &[kb]).unwrap();
        assert_eq!(l.stats().rpis, 144);
        // Past max_rpis, the oldest day goes.
        l.add_keys(&[3; 32], &[key(3, DAY + 1), key(4, DAY + 1)])
            .unwrap();
        assert_eq!(l.stats().keys, 2);
        assert_eq!(l.stats().rpis, 288);
        assert_eq!(
            l.add_notice(&notice(9, rpi_of(&kb, 1), DAY, 1, 1))
                .unwrap()
                .created,
            0
        );
        // Pending notices are bounded too.
        for i in 0..4u8 {
            l.add_notice(&notice(20 + i, [i; 16], DAY + 1, 1, 1))
                .unwrap();
        }
        assert!(l.stats().pending <= 2);
        // Moving the day past the retention drops everything older.
        l.advance_day(DAY + 1 + 17);
        assert_eq!(
            (l.stats().keys, l.stats().rpis, l.stats().pending),
            (0, 0, 0)
        );
        // A notice older than the retention is ignored.
        assert!(
            l.add_notice(&notice(30, [1; 16], DAY, 1, 1))
                .unwrap()
                .ignored
        );
    }
}
