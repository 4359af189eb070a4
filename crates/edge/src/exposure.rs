//! Exposure matching at the edge: from the encounter uploads an edge node holds and the
//! diagnosis keys released on the ledger, the exposure notices to publish.
//!
//! A pure state machine ([`ExposureEngine`]): the node feeds it the encounter uploads it
//! stored ([`ExposureEngine::add_upload`], each with the [`DeviceLink`] of the device key
//! that signed it — local knowledge that never leaves the edge) and, for each diagnosis
//! upload committed on the ledger, its released keys ([`ExposureEngine::process`]). It
//! answers with the notices to publish, already grouped into transactions. No clock, no
//! I/O: times come from the uploads, the shuffle seed from the caller.
//!
//! # Steps of [`ExposureEngine::process`]
//! 1. An [`RpiIndex`] of every RPI the held uploads observed (in runs: uploads added since
//!    the last match become a new run, merged with older ones as a log-structured merge
//!    tree does, see `IndexRuns`), and [`match_keys`] with ±`skew_s` (GAEN's 2 h by
//!    default).
//! 2. Each match names an encounter; its RSSI samples are scored by the
//!    [`ExposureScorer`] (GAEN v2 exposure windows and the close-contact rule, see
//!    `trustedge_distance`), with the transmitter's TX power decrypted from the
//!    encounter's AEM with the case's key (as GAEN does) and the receiver's device model
//!    from the upload (per-model calibration).
//! 3. Matches are grouped by exposed device (the local [`DeviceLink`]) and UTC day; the
//!    scorer's rule decides on the day's summary whether that device was a close contact.
//! 4. For a close contact, ONE notice for that device and day: one of its own RPIs that was
//!    on air during a matched encounter (the `own_rpi` of an upload holding one; the one
//!    that carried most of the score), with the day's score. The device recognises any of
//!    its RPIs, so one is enough; publishing every one of them (up to 144 a day) cost the
//!    ledger one notice each and told more.
//!
//! # Late encounters
//! A phone uploads what it heard in the last hour, so encounters with a case can reach the
//! edge after the case's keys were matched. The engine keeps every RPI of the keys it has
//! seen; an upload added later that observed one of them names that diagnosis upload in
//! [`ExposureEngine::take_rematch`], and the caller runs [`ExposureEngine::process`] for it
//! again with no new keys: only device-days not yet notified are published. Keys (and their RPIs)
//! are forgotten by [`ExposureEngine::prune_before`] once they can match nothing.
//!
//! # Privacy
//! The decision uses the local linkage; what is published is unlinkable: a notice carries
//! exactly one RPI, and notices are grouped into transactions ([`NoticeBatch`]) so that no
//! transaction carries two notices of one device; the order of notices within a
//! transaction and of transactions is shuffled with the caller's seed, so order links
//! nothing either. An RPI of the case (a matched RPI) or a key's data is never put in a
//! notice (the `exposure` contract refuses those too), and a device-day is notified at
//! most once per diagnosis upload (later releases of the same upload's keys only add
//! device-days not yet notified).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_contracts::exposure::{ExposureNotice, MAX_NOTICES_PER_CALL};
use trustedge_tracing::matching::{DEFAULT_SKEW_S, Observation, RpiIndex, match_keys};
use trustedge_tracing::sightings::{Encounter, RangeSample, RangeSource, RssiSample};
use trustedge_tracing::upload::EncounterUpload;
use trustedge_tracing::{DiagnosisKey, ReportType, Rpi};
use trustedge_types::Hash;

/// Seconds in a UTC day.
const DAY_S: u64 = 86_400;

/// Most encounters one upload may add (an upload is ≤ 4 KiB, ≥ 40 bytes an encounter).
const MAX_ENCOUNTERS_PER_UPLOAD: usize = 1 << 16;

/// The edge's local name for the device that signed an upload (e.g. its public key): it
/// links the device's uploads together and never leaves the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceLink(pub [u8; 32]);

/// What the scorer is told about one matched encounter.
#[derive(Debug, Clone, Copy)]
pub struct EncounterInput<'a> {
    /// The receiving (exposed) device's model, from its upload.
    pub rx_model: &'a str,
    /// The receiving device's own TX power, from its upload (dBm).
    pub rx_tx_power_dbm: i8,
    /// The transmitting (case) device's TX power, decrypted from the AEM with the case's
    /// key (dBm).
    pub tx_power_dbm: i8,
    /// Unix time of the first sighting.
    pub first_seen_s: u64,
    /// Unix time of the last sighting.
    pub last_seen_s: u64,
    /// RSSI samples (offsets from `first_seen_s`).
    pub samples: &'a [RssiSample],
    /// Ranges from the receiver's other radios (UWB, Wi-Fi RTT; offsets from
    /// `first_seen_s`), empty when it has none.
    pub ranges: &'a [RangeSample],
    /// The case key's report type.
    pub report_type: ReportType,
    /// The case key's days since symptom onset, when known.
    pub days_since_onset: Option<i32>,
}

/// The scorer's view of one encounter: its exposure window score and how long it was
/// within the close-contact distance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowScore {
    /// The window's score (GAEN v2 weighted duration, in seconds); 0 below the minimum
    /// window score.
    pub score: f64,
    /// Seconds estimated within the close-contact rule's distance.
    pub close_s: u64,
}

/// One exposed device's day, summed over its matched encounters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DaySummary {
    /// Sum of window scores.
    pub score_sum: f64,
    /// Largest window score.
    pub max_score: f64,
    /// Sum of seconds within the close-contact distance.
    pub close_s: u64,
    /// Matched encounters.
    pub encounters: usize,
}

/// Scoring and the close-contact rule: the distance service (`trustedge_distance`'s GAEN
/// v2 scoring and `CloseContactRule`) behind a small interface.
pub trait ExposureScorer {
    /// Scores one matched encounter.
    fn score(&self, encounter: &EncounterInput<'_>) -> WindowScore;
    /// Whether a device with this day was a close contact.
    fn is_close_contact(&self, day: &DaySummary) -> bool;
}

/// Settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Clock skew accepted between an RPI's interval and its observation, in seconds.
    pub skew_s: u64,
    /// Most encounters held. An upload that would go past it first evicts the oldest
    /// uploads held (at least a tenth of the limit's worth at once, so that evictions and
    /// the index rebuilds they cause stay rare): the newest encounters are the ones keys
    /// still to come will match. An upload larger than the limit by itself is refused.
    pub max_encounters: usize,
    /// Most notices in one transaction (at most the contract's 64).
    pub max_notices_per_tx: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            skew_s: DEFAULT_SKEW_S,
            // 14 days of an edge serving about 5,000 phones: the 10,000-person city's two
            // edges each received about 5.3 M encounters in 14 days (2 M, the limit
            // before, filled by day 4 and refused the rest).
            max_encounters: 8_000_000,
            max_notices_per_tx: MAX_NOTICES_PER_CALL,
        }
    }
}

/// Errors of the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExposureError {
    /// This upload alone has more encounters than [`EngineConfig::max_encounters`].
    #[error("the engine holds {held} encounters; {adding} more exceed the limit of {max}")]
    Full {
        /// Encounters held.
        held: usize,
        /// Encounters in the refused upload.
        adding: usize,
        /// The limit.
        max: usize,
    },
    /// The upload has more encounters than an upload may carry.
    #[error("an upload with {0} encounters is over the limit")]
    UploadTooLarge(usize),
    /// A configuration value is out of range.
    #[error("invalid engine configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Notices for one transaction: at most one per exposed device, in shuffled order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeBatch {
    /// The notices, 1..=[`EngineConfig::max_notices_per_tx`].
    pub notices: Vec<ExposureNotice>,
}

/// One exposed device's decision, for the edge's own logs and metrics (never published:
/// it holds the local linkage).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDecision {
    /// The device.
    pub device: DeviceLink,
    /// UTC day.
    pub day: u32,
    /// Its day summary.
    pub summary: DaySummary,
    /// Whether it was a close contact.
    pub close_contact: bool,
    /// The own RPI notified in this round (none when not a close contact or the device-day
    /// was notified before).
    pub notified: Vec<Rpi>,
}

/// What one [`ExposureEngine::process`] produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessOutcome {
    /// Transactions to submit, in the order to submit them.
    pub batches: Vec<NoticeBatch>,
    /// Decisions per exposed device and day (local only).
    pub decisions: Vec<LocalDecision>,
    /// Keys expanded (not skipped).
    pub keys_expanded: usize,
    /// Observations matched.
    pub matches: usize,
}

impl ProcessOutcome {
    /// Every notice, batch after batch.
    pub fn notices(&self) -> impl Iterator<Item = &ExposureNotice> {
        self.batches.iter().flat_map(|b| b.notices.iter())
    }
}

#[derive(Debug, Clone)]
struct Held {
    device: DeviceLink,
    upload: EncounterUpload,
}

/// The edge's exposure state machine. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct ExposureEngine {
    config: EngineConfig,
    uploads: Vec<Held>,
    encounters: usize,
    /// Uploads evicted to stay within `max_encounters`, since the engine started.
    evicted: u64,
    /// The RPI index, in runs over consecutive uploads (see [`IndexRuns`]).
    index: IndexRuns,
    /// Keys seen per diagnosis upload (accumulated over releases).
    keys: BTreeMap<Hash, Vec<DiagnosisKey>>,
    /// Device-days notified per diagnosis upload.
    notified: HashMap<Hash, HashSet<(DeviceLink, u32)>>,
    /// Every RPI of the keys seen, with the diagnosis uploads whose keys derive it: an
    /// upload added later that observed one of them must be matched again.
    key_rpis: HashMap<Rpi, Vec<Hash>>,
    /// Diagnosis uploads whose keys' RPIs an upload added since the last
    /// [`ExposureEngine::take_rematch`] observed.
    rematch: BTreeSet<Hash>,
}

fn observation_id(upload: usize, encounter: usize) -> u64 {
    ((upload as u64) << 16) | encounter as u64
}

fn split_id(id: u64) -> (usize, usize) {
    ((id >> 16) as usize, (id & 0xffff) as usize)
}

/// The RPI index of the held uploads as runs, each an [`RpiIndex`] over consecutive
/// uploads, oldest first, their sizes falling geometrically.
///
/// Uploads arrive all the time and keys are matched often (every release, and every
/// rematch), so one index rebuilt over everything held at each match would sort every
/// observation again each time: on a busy edge, millions for a handful of new ones. Here
/// the uploads added since the last match become a new run; a run is merged (rebuilt)
/// with the one before while it is at least half that one's size, as in a log-structured
/// merge tree. Each observation is sorted O(log n) times over the life of the engine and
/// a match looks in O(log n) runs. Matching the runs one after another finds what one
/// index over all of them finds: every observation is in exactly one run.
#[derive(Debug, Clone, Default)]
struct IndexRuns {
    /// `(first upload, past the last upload, index)`, in upload order, contiguous from 0.
    runs: Vec<(usize, usize, RpiIndex)>,
}

impl IndexRuns {
    /// Uploads covered.
    fn covered(&self) -> usize {
        self.runs.last().map_or(0, |r| r.1)
    }

    /// Indexes the uploads not covered yet, merging runs as needed.
    fn cover(&mut self, uploads: &[Held]) {
        let end = uploads.len();
        let mut start = self.covered();
        let Some(new) = uploads.get(start..end).filter(|n| !n.is_empty()) else {
            return;
        };
        let mut size: usize = new.iter().map(|h| h.upload.encounters.len()).sum();
        if size == 0
            && let Some(last) = self.runs.last_mut()
        {
            // Uploads with no encounter: nothing to index.
            last.1 = end;
            return;
        }
        while let Some(last) = self.runs.last() {
            if size * 2 < last.2.len() {
                break;
            }
            size += last.2.len();
            start = last.0;
            self.runs.pop();
        }
        let observations: Vec<Observation> = uploads
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .flat_map(|(k, h)| {
                h.upload
                    .encounters
                    .iter()
                    .enumerate()
                    .map(move |(e, enc)| Observation {
                        rpi: enc.rpi,
                        time_s: enc.first_seen_s,
                        id: observation_id(start + k, e),
                    })
            })
            .collect();
        self.runs.push((start, end, RpiIndex::new(observations)));
    }

    /// [`match_keys`] over every run: the matches of all runs, keys skipped as the first
    /// run (any run) reports them.
    fn match_keys(
        &self,
        keys: &[DiagnosisKey],
        skew_s: u64,
    ) -> trustedge_tracing::matching::MatchReport {
        let mut runs = self.runs.iter();
        let Some(first) = runs.next() else {
            return match_keys(keys, &RpiIndex::new(Vec::new()), skew_s);
        };
        let mut report = match_keys(keys, &first.2, skew_s);
        for run in runs {
            report
                .matches
                .extend(match_keys(keys, &run.2, skew_s).matches);
        }
        report
    }
}

impl ExposureEngine {
    /// An empty engine.
    pub fn new(config: EngineConfig) -> Result<ExposureEngine, ExposureError> {
        if config.max_notices_per_tx == 0 || config.max_notices_per_tx > MAX_NOTICES_PER_CALL {
            return Err(ExposureError::InvalidConfig(
                "max_notices_per_tx must be in 1..=64",
            ));
        }
        Ok(ExposureEngine {
            config,
            uploads: Vec::new(),
            encounters: 0,
            evicted: 0,
            index: IndexRuns::default(),
            keys: BTreeMap::new(),
            notified: HashMap::new(),
            key_rpis: HashMap::new(),
            rematch: BTreeSet::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Uploads held.
    pub fn uploads(&self) -> usize {
        self.uploads.len()
    }

    /// Encounters held.
    pub fn encounters(&self) -> usize {
        self.encounters
    }

    /// Holds an encounter upload signed by `device`.
    pub fn add_upload(
        &mut self,
        device: DeviceLink,
        upload: EncounterUpload,
    ) -> Result<(), ExposureError> {
        let n = upload.encounters.len();
        if n > MAX_ENCOUNTERS_PER_UPLOAD {
            return Err(ExposureError::UploadTooLarge(n));
        }
        let max = self.config.max_encounters;
        if n > max {
            return Err(ExposureError::Full {
                held: self.encounters,
                adding: n,
                max,
            });
        }
        if self.encounters + n > max {
            self.evict_oldest((self.encounters + n - max).max(max / 10));
        }
        self.encounters += n;
        for e in &upload.encounters {
            if let Some(sources) = self.key_rpis.get(&e.rpi) {
                self.rematch.extend(sources.iter().copied());
            }
        }
        // Indexed by the next `process` (a run of the uploads added since).
        self.uploads.push(Held { device, upload });
        Ok(())
    }

    /// Uploads evicted (oldest first) to stay within [`EngineConfig::max_encounters`] since
    /// the engine started.
    pub fn evicted_uploads(&self) -> u64 {
        self.evicted
    }

    /// Evicts the oldest uploads until at least `encounters` encounters are freed (or none
    /// is left).
    fn evict_oldest(&mut self, encounters: usize) {
        let mut freed = 0;
        let k = self
            .uploads
            .iter()
            .take_while(|h| {
                let go = freed < encounters;
                freed += h.upload.encounters.len();
                go
            })
            .count();
        self.uploads.drain(..k);
        self.encounters = self.uploads.iter().map(|h| h.upload.encounters.len()).sum();
        self.evicted += k as u64;
        // Positions moved: every run is built again.
        self.index = IndexRuns::default();
    }

    /// The diagnosis uploads to match again with [`ExposureEngine::process`] (with no new
    /// keys) because uploads added since the last call observed RPIs of their keys:
    /// encounters that reach the edge after a case's keys were matched (a phone uploads
    /// what it heard in the last hour) are matched too. Each is named once; a later
    /// `process` publishes only what was not notified before.
    pub fn take_rematch(&mut self) -> Vec<Hash> {
        std::mem::take(&mut self.rematch).into_iter().collect()
    }

    /// Drops the uploads whose encounters all ended before `cutoff_s`, and the state of
    /// diagnosis uploads none of whose keys' RPIs can match them any more.
    pub fn prune_before(&mut self, cutoff_s: u64) {
        let before = self.uploads.len();
        self.uploads.retain(|h| {
            h.upload
                .encounters
                .iter()
                .any(|e| e.last_seen_s >= cutoff_s)
        });
        if self.uploads.len() != before {
            self.encounters = self.uploads.iter().map(|h| h.upload.encounters.len()).sum();
            // Positions moved: every run is built again.
            self.index = IndexRuns::default();
        }
        let skew = self.config.skew_s;
        let stale: Vec<Hash> = self
            .keys
            .iter()
            .filter(|(_, keys)| {
                keys.iter().all(|k| {
                    u64::from(k.end_interval_number()) * trustedge_tracing::INTERVAL_LENGTH_S + skew
                        < cutoff_s
                })
            })
            .map(|(h, _)| *h)
            .collect();
        if !stale.is_empty() {
            let gone: HashSet<Hash> = stale.iter().copied().collect();
            self.key_rpis.retain(|_, sources| {
                sources.retain(|h| !gone.contains(h));
                !sources.is_empty()
            });
            self.rematch.retain(|h| !gone.contains(h));
        }
        for h in stale {
            self.keys.remove(&h);
            self.notified.remove(&h);
        }
    }

    /// Matches the keys released for diagnosis upload `source_upload` (added to those seen
    /// before for it) against the held encounters, and returns the notices not yet
    /// published for it, in transactions shuffled with `seed`.
    pub fn process(
        &mut self,
        source_upload: Hash,
        released: &[DiagnosisKey],
        scorer: &dyn ExposureScorer,
        seed: [u8; 32],
    ) -> ProcessOutcome {
        let keys = self.keys.entry(source_upload).or_default();
        let mut fresh_keys = Vec::new();
        for k in released {
            if !keys.iter().any(|x| x.key_data == k.key_data) {
                keys.push(*k);
                fresh_keys.push(*k);
            }
        }
        let keys = keys.clone();
        // Remember the new keys' RPIs, so that uploads arriving later are matched too.
        for k in &fresh_keys {
            let period = k.rolling_period.min(trustedge_tracing::TEK_ROLLING_PERIOD) as usize;
            let Ok(rpis) = k.tek().rpis(trustedge_tracing::EnIntervalNumber(
                k.rolling_start_interval_number,
            )) else {
                continue;
            };
            for (_, rpi) in rpis.into_iter().take(period) {
                let sources = self.key_rpis.entry(rpi).or_default();
                if !sources.contains(&source_upload) {
                    sources.push(source_upload);
                }
            }
        }
        let skew_s = self.config.skew_s;
        self.index.cover(&self.uploads);
        let report = self.index.match_keys(&keys, skew_s);
        let mut outcome = ProcessOutcome {
            keys_expanded: keys.len() - report.skipped.len(),
            matches: report.matches.len(),
            ..ProcessOutcome::default()
        };
        // Per-key AEMKs, to read the transmitter's TX power from the AEM.
        let aemks: Vec<Option<trustedge_tracing::Aemk>> =
            keys.iter().map(|k| k.tek().aemk().ok()).collect();
        let case_rpis: HashSet<Rpi> = report.matches.iter().map(|m| m.rpi).collect();
        let case_keys: HashSet<[u8; 16]> = keys.iter().map(|k| k.key_data).collect();

        // (device, day) → summary, and own RPI → score.
        let mut days: BTreeMap<(DeviceLink, u32), DaySummary> = BTreeMap::new();
        let mut per_rpi: BTreeMap<(DeviceLink, u32), BTreeMap<Rpi, f64>> = BTreeMap::new();
        // An encounter may be matched once per key at most; count each once.
        let mut seen: BTreeSet<u64> = BTreeSet::new();
        // The encounters of one case key seen by one device on one day are one contact
        // session (the case's RPIs rotate every 10 minutes): they are merged and scored
        // together, so chunks and scan credits run across RPI changes.
        let mut sessions: BTreeMap<(DeviceLink, u32, usize), Vec<(usize, usize)>> = BTreeMap::new();
        for m in &report.matches {
            if !seen.insert(m.observation_id) {
                continue;
            }
            let (u, e) = split_id(m.observation_id);
            let (Some(held), true) = (self.uploads.get(u), m.key_index < keys.len()) else {
                continue;
            };
            let Some(enc) = held.upload.encounters.get(e) else {
                continue;
            };
            let day = u32::try_from(enc.first_seen_s / DAY_S).unwrap_or(u32::MAX);
            sessions
                .entry((held.device, day, m.key_index))
                .or_default()
                .push((u, e));
        }
        for ((device, day, key_index), members) in sessions {
            let (Some(key), Some(&(u0, e0))) = (keys.get(key_index), members.first()) else {
                continue;
            };
            let (Some(held), Some(enc)) = (
                self.uploads.get(u0),
                self.uploads
                    .get(u0)
                    .and_then(|h| h.upload.encounters.get(e0)),
            ) else {
                continue;
            };
            let tx_power_dbm = aemks
                .get(key_index)
                .copied()
                .flatten()
                .map(|a| a.decrypt(&enc.rpi, &enc.aem).tx_power_dbm)
                .unwrap_or(held.upload.tx_power_dbm);
            let parts: Vec<(&Held, &Encounter)> = members
                .iter()
                .filter_map(|&(u, e)| {
                    let h = self.uploads.get(u)?;
                    Some((h, h.upload.encounters.get(e)?))
                })
                .collect();
            let encs: Vec<&Encounter> = parts.iter().map(|p| p.1).collect();
            let Some(merged) = merge_key_encounters(&encs) else {
                continue;
            };
            let w = scorer.score(&EncounterInput {
                rx_model: &held.upload.device_model,
                rx_tx_power_dbm: held.upload.tx_power_dbm,
                tx_power_dbm,
                first_seen_s: merged.first_seen_s,
                last_seen_s: merged.last_seen_s,
                samples: &merged.samples,
                ranges: &merged.ranges,
                report_type: key.report_type,
                days_since_onset: key.days_since_onset,
            });
            let group = (device, day);
            let s = days.entry(group).or_default();
            s.score_sum += w.score;
            s.max_score = s.max_score.max(w.score);
            s.close_s = s.close_s.saturating_add(w.close_s);
            s.encounters += parts.len();
            // Each own RPI's score: the session's score shared by samples heard under it.
            let total: usize = parts
                .iter()
                .map(|p| p.1.samples.len())
                .sum::<usize>()
                .max(1);
            for (h, e) in &parts {
                *per_rpi
                    .entry(group)
                    .or_default()
                    .entry(h.upload.own_rpi)
                    .or_default() += w.score * e.samples.len() as f64 / total as f64;
            }
        }

        let notified = self.notified.entry(source_upload).or_default();
        // Each exposed device's notices, kept apart so that no transaction gets two.
        let mut by_device: BTreeMap<DeviceLink, Vec<ExposureNotice>> = BTreeMap::new();
        for (group, summary) in days {
            let close_contact = scorer.is_close_contact(&summary);
            let mut fresh = Vec::new();
            if close_contact && !notified.contains(&group) {
                // One notice per exposed device and day: the device recognises any of its
                // own RPIs, so one is enough, and fewer published pseudonyms tell less. It
                // names the RPI that carried most of the day's score and the day's score.
                let eligible: Vec<(Rpi, f64)> = per_rpi
                    .remove(&group)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(rpi, _)| !case_rpis.contains(rpi) && !case_keys.contains(&rpi.0))
                    .collect();
                let best = eligible
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.0.cmp(&a.0.0)))
                    .map(|(rpi, _)| *rpi);
                if let Some(rpi) = best {
                    let score: f64 = eligible.iter().map(|(_, s)| s).sum();
                    notified.insert(group);
                    fresh.push(rpi);
                    by_device.entry(group.0).or_default().push(ExposureNotice {
                        rpis: vec![rpi.0],
                        risk_score: score_to_u32(score),
                        day: group.1,
                        source_upload,
                    });
                }
            }
            outcome.decisions.push(LocalDecision {
                device: group.0,
                day: group.1,
                summary,
                close_contact,
                notified: fresh,
            });
        }
        outcome.batches = batches(by_device, self.config.max_notices_per_tx, seed);
        outcome
    }
}

/// The distance service as the engine's scorer: GAEN v2 exposure windows and window scores
/// (`trustedge_distance::exposure`), and the close-contact rule on distances estimated by
/// the learned model over chunks of each encounter.
///
/// When the encounter carries ranges from other radios (UWB, Wi-Fi RTT), each chunk's
/// BLE distance is fused with the ranges that fall in the chunk
/// (`trustedge_distance::fusion::fuse`, σ from `RangingErrorModel::{UWB, WIFI_RTT}`), so
/// the close-contact rule sees the fused distance; see [`fuse_chunk`]. Without ranges the
/// BLE distance is used as is.
///
/// The link's calibration is the receiver's model from the registry with the
/// transmitter's TX power read from its decrypted AEM. Infectiousness is high for keys
/// from 2 days before to 5 days after symptom onset and standard otherwise (and when the
/// onset is unknown), as in GAEN's recommended mapping.
#[derive(Debug)]
pub struct DistanceScorer {
    /// The distance service (calibration registry, smoothing, learned model).
    pub estimator: trustedge_distance::model::DistanceEstimator,
    /// GAEN v2 scoring.
    pub scoring: trustedge_distance::exposure::ScoringConfig,
    /// Scans and windows.
    pub windows: trustedge_distance::exposure::WindowConfig,
    /// The close-contact rule.
    pub rule: trustedge_distance::exposure::CloseContactRule,
    /// Length of the chunks an encounter is split into for distance estimation, s.
    pub chunk_s: u64,
}

impl DistanceScorer {
    /// The encounter's contact intervals: chunks of [`DistanceScorer::chunk_s`] with the
    /// seconds each is credited and its distance (BLE, fused with the chunk's ranges when
    /// the encounter has any, see [`fuse_chunk`]). Empty when no sample is usable.
    pub fn intervals(
        &self,
        e: &EncounterInput<'_>,
    ) -> Vec<trustedge_distance::exposure::ContactInterval> {
        use trustedge_distance::exposure::contact_intervals;
        let samples: Vec<(u64, i8)> = e
            .samples
            .iter()
            .map(|s| (e.first_seen_s + u64::from(s.offset_s), s.rssi_dbm))
            .collect();
        let link = self.link(e);
        let Ok(mut intervals) = contact_intervals(&samples, self.chunk_s, &self.windows, |s| {
            self.estimator.estimate_with(s, &link)
        }) else {
            return Vec::new();
        };
        if !e.ranges.is_empty() {
            let ranges: Vec<(u64, u32, RangeSource)> = e
                .ranges
                .iter()
                .map(|r| {
                    (
                        e.first_seen_s + u64::from(r.offset_s),
                        r.distance_cm,
                        r.source,
                    )
                })
                .collect();
            // Chunk k covers [its start, the next chunk's start); the last one runs
            // to the last sighting.
            let starts: Vec<u64> = intervals.iter().map(|i| i.start_s).collect();
            for (k, iv) in intervals.iter_mut().enumerate() {
                let end = starts.get(k + 1).copied();
                let within: Vec<(u32, RangeSource)> = ranges
                    .iter()
                    .filter(|r| r.0 >= iv.start_s && end.map_or(r.0 <= e.last_seen_s, |x| r.0 < x))
                    .map(|r| (r.1, r.2))
                    .collect();
                iv.distance = fuse_chunk(iv.distance, &within);
            }
        }
        intervals
    }

    fn link(&self, e: &EncounterInput<'_>) -> trustedge_distance::calibration::LinkCalibration {
        let mut link = self.estimator.registry.link(e.rx_model, e.rx_model);
        link.tx.tx_power_dbm = f64::from(e.tx_power_dbm);
        link
    }
}

impl ExposureScorer for DistanceScorer {
    fn score(&self, e: &EncounterInput<'_>) -> WindowScore {
        use trustedge_distance::exposure::{Infectiousness, build_windows};
        let samples: Vec<(u64, i8)> = e
            .samples
            .iter()
            .map(|s| (e.first_seen_s + u64::from(s.offset_s), s.rssi_dbm))
            .collect();
        let link = self.link(e);
        let infectiousness = match e.days_since_onset {
            Some(d) if (-2..=5).contains(&d) => Infectiousness::High,
            _ => Infectiousness::Standard,
        };
        let mut out = WindowScore::default();
        if let Ok(windows) = build_windows(
            &samples,
            &link,
            e.report_type,
            infectiousness,
            &self.windows,
        ) {
            out.score = windows
                .iter()
                .map(|w| self.scoring.window_score(w))
                .filter(|s| *s >= self.scoring.minimum_window_score)
                .sum();
        }
        let max_m = self.rule.max_distance_m;
        out.close_s = self
            .intervals(e)
            .iter()
            .filter(|i| i.distance.meters <= max_m)
            .map(|i| u64::from(i.duration_s))
            .sum();
        out
    }

    fn is_close_contact(&self, day: &DaySummary) -> bool {
        day.close_s as f64 / 60.0 >= self.rule.min_minutes_per_day
    }
}

/// The encounters of one case key heard by one device (its RPIs of one day, in any
/// order) as one encounter: samples and ranges in time order with offsets from the
/// earliest first sighting (a sample or range repeated by overlapping uploads counted
/// once). `None` when there is none. The RPI and AEM are the earliest encounter's.
pub fn merge_key_encounters(parts: &[&Encounter]) -> Option<Encounter> {
    let first = parts.iter().min_by_key(|e| (e.first_seen_s, e.rpi))?;
    let start = first.first_seen_s;
    let last = parts.iter().map(|e| e.last_seen_s).max().unwrap_or(start);
    let mut samples: Vec<(u64, i8)> = Vec::new();
    let mut ranges: Vec<(u64, u32, RangeSource)> = Vec::new();
    for e in parts {
        samples.extend(
            e.samples
                .iter()
                .map(|s| (e.first_seen_s + u64::from(s.offset_s), s.rssi_dbm)),
        );
        ranges.extend(e.ranges.iter().map(|r| {
            (
                e.first_seen_s + u64::from(r.offset_s),
                r.distance_cm,
                r.source,
            )
        }));
    }
    samples.sort_unstable();
    samples.dedup();
    ranges.sort_unstable_by_key(|r| (r.0, r.1, r.2 == RangeSource::WifiRtt));
    ranges.dedup();
    let offset = |t: u64| u32::try_from(t - start).unwrap_or(u32::MAX);
    Some(Encounter {
        rpi: first.rpi,
        aem: first.aem,
        first_seen_s: start,
        last_seen_s: last,
        samples: samples
            .into_iter()
            .map(|(t, rssi_dbm)| RssiSample {
                offset_s: offset(t),
                rssi_dbm,
            })
            .collect(),
        ranges: ranges
            .into_iter()
            .map(|(t, distance_cm, source)| RangeSample {
                offset_s: offset(t),
                distance_cm,
                source,
            })
            .collect(),
    })
}

/// Seed of the default distance model's synthetic training.
pub const DEFAULT_MODEL_SEED: u64 = 1;
/// Simulated sessions the default distance model is trained on.
pub const DEFAULT_MODEL_SESSIONS: usize = 3000;
/// Trees of the default distance model's forest.
pub const DEFAULT_MODEL_TREES: u16 = 60;
/// Default length of the chunks an encounter is split into, s.
pub const DEFAULT_CHUNK_S: u64 = 300;

/// The edge's default scorer: the distance model trained with [`DEFAULT_MODEL_SEED`],
/// [`DEFAULT_MODEL_SESSIONS`] and [`DEFAULT_MODEL_TREES`], default GAEN v2 scoring and
/// windows, the 15 min / 2 m rule and [`DEFAULT_CHUNK_S`] chunks (what `trustedge tracing
/// city-eval` measures; CPU-bound, a few seconds).
pub fn default_scorer() -> Result<DistanceScorer, trustedge_distance::DistanceError> {
    use trustedge_distance::model::{DistanceEstimator, ModelParams, TrainingConfig};
    let estimator = DistanceEstimator::train_synthetic(
        DEFAULT_MODEL_SEED,
        &TrainingConfig {
            sessions: DEFAULT_MODEL_SESSIONS,
            ..TrainingConfig::default()
        },
        &ModelParams {
            n_trees: DEFAULT_MODEL_TREES,
            ..ModelParams::default()
        },
    )?;
    Ok(DistanceScorer {
        estimator,
        scoring: Default::default(),
        windows: Default::default(),
        rule: Default::default(),
        chunk_s: DEFAULT_CHUNK_S,
    })
}

/// One chunk's distance: the BLE estimate fused with the chunk's ranges (distance in cm,
/// source). Ranges of one source within a chunk share their geometry (and any NLOS
/// bias), so they are not independent: each source contributes ONE observation, the
/// median of its ranges, with that technology's single-range σ
/// (`RangingErrorModel::{UWB, WIFI_RTT}`) — the median drops the occasional outlier
/// without claiming a √n gain. The fusion's gate drops whichever disagrees beyond 3σ
/// (usually BLE when a phone is in a bag). Without ranges, or if fusion fails, the BLE
/// estimate is returned unchanged.
pub fn fuse_chunk(
    ble: trustedge_distance::DistanceEstimate,
    ranges: &[(u32, RangeSource)],
) -> trustedge_distance::DistanceEstimate {
    use trustedge_distance::fusion::{FusionConfig, RangeObservation, RangingErrorModel, fuse};
    if ranges.is_empty() {
        return ble;
    }
    let mut obs = vec![RangeObservation::from(ble)];
    for (source, model) in [
        (RangeSource::Uwb, RangingErrorModel::UWB),
        (RangeSource::WifiRtt, RangingErrorModel::WIFI_RTT),
    ] {
        let mut cm: Vec<u32> = ranges
            .iter()
            .filter(|r| r.1 == source)
            .map(|r| r.0)
            .collect();
        if cm.is_empty() {
            continue;
        }
        cm.sort_unstable();
        let mid = cm.len() / 2;
        let median_cm = if cm.len() % 2 == 1 {
            f64::from(cm[mid])
        } else {
            (f64::from(cm[mid - 1]) + f64::from(cm[mid])) / 2.0
        };
        obs.push(RangeObservation::from(
            trustedge_distance::DistanceEstimate {
                meters: median_cm / 100.0,
                sigma_m: model.sigma_m,
                source: model.source,
            },
        ));
    }
    fuse(&obs, &FusionConfig::default()).map_or(ble, |f| f.estimate)
}

fn score_to_u32(score: f64) -> u32 {
    if score.is_finite() && score > 0.0 {
        // Saturates at u32::MAX by `as` semantics for large values.
        score.round() as u32
    } else {
        0
    }
}

/// Fisher–Yates with the engine's seeded RNG.
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Round `r` takes the `r`-th notice of every device (after shuffling each device's
/// notices and the devices), so no transaction holds two notices of one device; rounds are
/// cut to `max` notices and each transaction is shuffled.
fn batches(
    by_device: BTreeMap<DeviceLink, Vec<ExposureNotice>>,
    max: usize,
    seed: [u8; 32],
) -> Vec<NoticeBatch> {
    let mut rng = ChaCha8Rng::from_seed(seed);
    let mut lists: Vec<Vec<ExposureNotice>> = by_device.into_values().collect();
    for l in &mut lists {
        shuffle(l, &mut rng);
    }
    shuffle(&mut lists, &mut rng);
    let rounds = lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for r in 0..rounds {
        let round: Vec<ExposureNotice> = lists.iter().filter_map(|l| l.get(r).cloned()).collect();
        for chunk in round.chunks(max.max(1)) {
            let mut notices = chunk.to_vec();
            shuffle(&mut notices, &mut rng);
            out.push(NoticeBatch { notices });
        }
    }
    shuffle(&mut out, &mut rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustedge_tracing::broadcast::Broadcaster;
    use trustedge_tracing::sightings::{Encounter, RssiSample};
    use trustedge_tracing::{Aem, EnIntervalNumber, TemporaryExposureKey};

    /// Close when the attenuation is at most 60 dB; score = weighted seconds (1.0 below
    /// 60 dB, 0.5 below 70 dB, 0 above); close contact from 15 minutes close a day.
    struct ThresholdScorer;

    impl ExposureScorer for ThresholdScorer {
        fn score(&self, e: &EncounterInput<'_>) -> WindowScore {
            let span = (e.last_seen_s - e.first_seen_s) as f64;
            let n = e.samples.len().max(1) as f64;
            let per = span / n;
            let mut w = WindowScore::default();
            for s in e.samples {
                let att = i32::from(e.tx_power_dbm) - i32::from(s.rssi_dbm);
                if att <= 60 {
                    w.score += per;
                    w.close_s += per as u64;
                } else if att <= 70 {
                    w.score += per * 0.5;
                }
            }
            w
        }
        fn is_close_contact(&self, d: &DaySummary) -> bool {
            d.close_s >= 15 * 60
        }
    }

    const T0: u64 = 1_700_006_400; // a day boundary: 1_700_006_400 / 86_400 = 19_676.

    fn rnd(i: u64) -> [u8; 32] {
        let mut r = [0u8; 32];
        r[..8].copy_from_slice(&i.to_le_bytes());
        r[8..16].copy_from_slice(&(i ^ 0x5555).to_le_bytes());
        r[16..24].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        r
    }

    /// A device: a broadcaster advertising every minute from `T0` for `minutes`.
    fn device(seed: u64, minutes: u64) -> Broadcaster {
        let mut b = Broadcaster::new(-10);
        for m in 0..minutes {
            b.advertise(T0 + 60 * m, rnd(seed * 1000 + m)).unwrap();
        }
        b
    }

    /// What `rx` heard of `tx` from minute `from` to `to` (exclusive) at `rssi`: one
    /// encounter per RPI of `tx`, filed under `rx`'s own RPI of first sighting.
    fn heard(
        rx: &Broadcaster,
        tx: &Broadcaster,
        from: u64,
        to: u64,
        rssi: i8,
    ) -> Vec<EncounterUpload> {
        let mut encounters: BTreeMap<Rpi, Encounter> = BTreeMap::new();
        for m in from..to {
            let t = T0 + 60 * m;
            let r = tx.log().at(t).unwrap();
            let aem = tx_aem(tx, r.rpi, r.enin);
            let e = encounters.entry(r.rpi).or_insert(Encounter {
                rpi: r.rpi,
                aem,
                first_seen_s: t,
                last_seen_s: t,
                samples: vec![],
                ranges: vec![],
            });
            e.last_seen_s = t;
            e.samples.push(RssiSample {
                offset_s: (t - e.first_seen_s) as u32,
                rssi_dbm: rssi,
            });
        }
        trustedge_tracing::upload::uploads_by_own_rpi(
            rx.log(),
            encounters.into_values().collect(),
            "Pixel 4",
            -10,
        )
        .unwrap()
    }

    fn tx_aem(tx: &Broadcaster, rpi: Rpi, enin: EnIntervalNumber) -> Aem {
        let (tek, _) = tx
            .keys()
            .find(|(_, start)| start.0 == enin.rolling_start().0)
            .unwrap();
        let _ = TemporaryExposureKey::rpik;
        tek.aemk().unwrap().encrypt(&rpi, tx.metadata())
    }

    fn link(i: u8) -> DeviceLink {
        DeviceLink([i; 32])
    }

    fn keys_of(b: &Broadcaster) -> Vec<DiagnosisKey> {
        b.diagnosis_keys(T0 + 86_399, ReportType::ConfirmedTest, None)
            .unwrap()
    }

    fn engine_with(
        case: &Broadcaster,
        contacts: &[(u8, &Broadcaster, u64, u64, i8)],
    ) -> ExposureEngine {
        let mut engine = ExposureEngine::new(EngineConfig::default()).unwrap();
        for (i, rx, from, to, rssi) in contacts {
            for u in heard(rx, case, *from, *to, *rssi) {
                engine.add_upload(link(*i), u).unwrap();
            }
        }
        engine
    }

    #[test]
    fn a_close_contact_gets_one_notice_per_day_and_far_or_short_ones_none() {
        let case = device(1, 120);
        let near = device(2, 120);
        let far = device(3, 120);
        let short = device(4, 120);
        // near: 40 min at −60 dBm (attenuation 50); far: 60 min at −85 (75 dB);
        // short: 10 min at −55.
        let mut engine = engine_with(
            &case,
            &[
                (2, &near, 0, 40, -60),
                (3, &far, 0, 60, -85),
                (4, &short, 50, 60, -55),
            ],
        );
        let source = Hash::sha256(b"upload");
        let out = engine.process(source, &keys_of(&case), &ThresholdScorer, [7; 32]);
        assert_eq!(out.keys_expanded, 1);
        assert!(out.matches > 0);
        let notices: Vec<_> = out.notices().cloned().collect();
        assert!(!notices.is_empty());
        let near_rpis: HashSet<[u8; 16]> = near.log().records().map(|r| r.rpi.0).collect();
        let case_rpis: HashSet<[u8; 16]> = case.log().records().map(|r| r.rpi.0).collect();
        for n in &notices {
            assert_eq!(n.rpis.len(), 1);
            assert!(near_rpis.contains(&n.rpis[0]), "notice for someone else");
            assert!(!case_rpis.contains(&n.rpis[0]));
            assert_eq!(u64::from(n.day), T0 / DAY_S);
            assert_eq!(n.source_upload, source);
            assert!(n.risk_score > 0);
        }
        // One notice for `near`'s day, naming one of its own RPIs with a matched encounter.
        let expected: HashSet<[u8; 16]> = heard(&near, &case, 0, 40, -60)
            .iter()
            .map(|u| u.own_rpi.0)
            .collect();
        assert!(expected.len() > 1, "the encounter spans several own RPIs");
        assert_eq!(notices.len(), 1);
        assert!(expected.contains(&notices[0].rpis[0]));
        let close = out.decisions.iter().find(|d| d.close_contact).unwrap();
        assert_eq!(close.notified, vec![Rpi(notices[0].rpis[0])]);
        // Decisions: near close; far and short matched but not close.
        let close: Vec<_> = out.decisions.iter().filter(|d| d.close_contact).collect();
        assert_eq!(close.len(), 1);
        assert_eq!(close[0].device, link(2));
        assert!(
            out.decisions
                .iter()
                .any(|d| d.device == link(3) && !d.close_contact)
        );
        assert!(
            out.decisions
                .iter()
                .any(|d| d.device == link(4) && !d.close_contact)
        );
        // No transaction carries two notices of one device.
        for b in &out.batches {
            let n = b
                .notices
                .iter()
                .filter(|n| near_rpis.contains(&n.rpis[0]))
                .count();
            assert!(n <= 1);
        }
    }

    #[test]
    fn a_second_release_notifies_only_new_rpis_and_repeats_nothing() {
        let case = device(1, 60);
        let near = device(2, 60);
        let mut engine = engine_with(&case, &[(2, &near, 0, 60, -50)]);
        let source = Hash::sha256(b"u");
        let keys = keys_of(&case);
        let first = engine.process(source, &keys, &ThresholdScorer, [1; 32]);
        assert!(first.notices().count() > 0);
        let again = engine.process(source, &keys, &ThresholdScorer, [2; 32]);
        assert_eq!(again.notices().count(), 0);
        // Another upload (another case with the same keys cannot exist; but the rule is
        // per upload id) is notified afresh.
        let other = engine.process(Hash::sha256(b"v"), &keys, &ThresholdScorer, [3; 32]);
        assert_eq!(other.notices().count(), first.notices().count());
    }

    #[test]
    fn encounters_that_arrive_after_the_keys_are_matched_again() {
        let case = device(1, 120);
        let early = device(2, 120);
        let late = device(3, 120);
        let unrelated = device(4, 120);
        // `early` uploaded before the keys were matched; `late` was as close for as long but
        // uploaded after; `unrelated` heard someone else.
        let mut engine = engine_with(&case, &[(2, &early, 0, 40, -60)]);
        let source = Hash::sha256(b"case");
        let first = engine.process(source, &keys_of(&case), &ThresholdScorer, [1; 32]);
        assert!(first.notices().count() > 0);
        assert!(engine.take_rematch().is_empty(), "nothing arrived late yet");
        for u in heard(&unrelated, &early, 0, 40, -60) {
            engine.add_upload(link(4), u).unwrap();
        }
        assert!(
            engine.take_rematch().is_empty(),
            "no RPI of the case's keys"
        );
        for u in heard(&late, &case, 60, 100, -60) {
            engine.add_upload(link(3), u).unwrap();
        }
        assert_eq!(engine.take_rematch(), vec![source]);
        assert!(engine.take_rematch().is_empty(), "named once");
        // Matched again with no new keys: only `late`'s RPIs, `early`'s are not repeated.
        let again = engine.process(source, &[], &ThresholdScorer, [2; 32]);
        let late_rpis: HashSet<[u8; 16]> = late.log().records().map(|r| r.rpi.0).collect();
        let got: Vec<[u8; 16]> = again.notices().map(|n| n.rpis[0]).collect();
        assert!(!got.is_empty());
        assert!(got.iter().all(|r| late_rpis.contains(r)), "{got:?}");
        // Once the keys are too old to match, their RPIs are forgotten.
        engine.prune_before(T0 + 10 * DAY_S);
        for u in heard(&late, &case, 100, 110, -60) {
            engine.add_upload(link(3), u).unwrap();
        }
        assert!(engine.take_rematch().is_empty());
    }

    #[test]
    fn matching_between_uploads_finds_what_one_match_over_all_finds() {
        let case = device(1, 120);
        let other = device(99, 120);
        let contacts: Vec<Broadcaster> = (2..26).map(|i| device(i, 120)).collect();
        let mut uploads = Vec::new();
        for (i, rx) in contacts.iter().enumerate() {
            let i = i as u64;
            let (from, rssi) = (i % 5 * 10, -50 - (i % 4) as i8 * 8);
            for u in heard(rx, &case, from, from + 20 + i % 30, rssi) {
                uploads.push((link(i as u8 + 2), u));
            }
            for u in heard(rx, &other, 0, 30, -55) {
                uploads.push((link(i as u8 + 2), u));
            }
        }
        let mut all_at_once = ExposureEngine::new(EngineConfig::default()).unwrap();
        let mut stepwise = all_at_once.clone();
        for (i, (l, u)) in uploads.iter().enumerate() {
            all_at_once.add_upload(*l, u.clone()).unwrap();
            stepwise.add_upload(*l, u.clone()).unwrap();
            // Another case matched between uploads: the index grows in runs.
            if i % 3 == 0 {
                stepwise.process(
                    Hash::sha256(b"other"),
                    &keys_of(&other),
                    &ThresholdScorer,
                    [0; 32],
                );
            }
        }
        let source = Hash::sha256(b"case");
        let a = all_at_once.process(source, &keys_of(&case), &ThresholdScorer, [5; 32]);
        let b = stepwise.process(source, &keys_of(&case), &ThresholdScorer, [5; 32]);
        assert!(a.notices().count() > 0 && a.matches > 0);
        assert_eq!(a, b);
        // The runs cover every upload once, in order, their sizes falling geometrically.
        let runs = &stepwise.index.runs;
        assert!(runs.len() > 1, "one run: nothing was merged incrementally");
        assert_eq!(runs.first().map(|r| r.0), Some(0));
        assert_eq!(runs.last().map(|r| r.1), Some(uploads.len()));
        for w in runs.windows(2) {
            assert_eq!(w[0].1, w[1].0);
            assert!(
                w[1].2.len() * 2 < w[0].2.len(),
                "{} then {}",
                w[0].2.len(),
                w[1].2.len()
            );
        }
        let observations: usize = runs.iter().map(|r| r.2.len()).sum();
        assert_eq!(observations, stepwise.encounters());
    }

    #[test]
    fn revoked_and_unrelated_keys_match_nothing() {
        let case = device(1, 60);
        let near = device(2, 60);
        let mut engine = engine_with(&case, &[(2, &near, 0, 60, -50)]);
        let mut keys = keys_of(&case);
        keys[0].report_type = ReportType::Revoked;
        let out = engine.process(Hash::sha256(b"r"), &keys, &ThresholdScorer, [0; 32]);
        assert_eq!(
            (out.keys_expanded, out.matches, out.notices().count()),
            (0, 0, 0)
        );
        let stranger = device(9, 60);
        let out = engine.process(
            Hash::sha256(b"s"),
            &keys_of(&stranger),
            &ThresholdScorer,
            [0; 32],
        );
        assert_eq!((out.matches, out.notices().count()), (0, 0));
    }

    #[test]
    fn transactions_never_hold_two_notices_of_one_device_and_the_seed_decides_order() {
        let case = device(1, 140);
        let contacts: Vec<Broadcaster> = (2..8).map(|i| device(i, 140)).collect();
        let rows: Vec<(u8, &Broadcaster, u64, u64, i8)> = contacts
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u8 + 2, b, 0, 140, -50))
            .collect();
        let mut engine = ExposureEngine::new(EngineConfig {
            max_notices_per_tx: 4,
            ..EngineConfig::default()
        })
        .unwrap();
        for (i, rx, from, to, rssi) in &rows {
            for u in heard(rx, &case, *from, *to, *rssi) {
                engine.add_upload(link(*i), u).unwrap();
            }
        }
        let base = engine.clone();
        let keys = keys_of(&case);
        let a = engine.process(Hash::sha256(b"x"), &keys, &ThresholdScorer, [1; 32]);
        let owner: HashMap<[u8; 16], usize> = contacts
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                b.log()
                    .records()
                    .map(move |r| (r.rpi.0, i))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(a.batches.len() > 1);
        for b in &a.batches {
            assert!(!b.notices.is_empty() && b.notices.len() <= 4);
            let devices: HashSet<usize> = b.notices.iter().map(|n| owner[&n.rpis[0]]).collect();
            assert_eq!(
                devices.len(),
                b.notices.len(),
                "two notices of one device in a tx"
            );
        }
        // Same seed, same order; another seed, another order (same set).
        let mut e2 = base.clone();
        let b = e2.process(Hash::sha256(b"x"), &keys, &ThresholdScorer, [1; 32]);
        assert_eq!(a.batches, b.batches);
        let mut e3 = base;
        let c = e3.process(Hash::sha256(b"x"), &keys, &ThresholdScorer, [2; 32]);
        assert_ne!(a.batches, c.batches);
        let set = |o: &ProcessOutcome| o.notices().map(|n| n.rpis[0]).collect::<BTreeSet<_>>();
        assert_eq!(set(&a), set(&c));
    }

    /// A small learned model (fast to train in a debug build).
    pub(crate) fn small_scorer() -> DistanceScorer {
        use trustedge_distance::model::{DistanceEstimator, ModelParams, TrainingConfig};
        let estimator = DistanceEstimator::train_synthetic(
            7,
            &TrainingConfig {
                sessions: 1500,
                ..TrainingConfig::default()
            },
            &ModelParams {
                n_trees: 20,
                ..ModelParams::default()
            },
        )
        .unwrap();
        DistanceScorer {
            estimator,
            scoring: Default::default(),
            windows: Default::default(),
            rule: Default::default(),
            chunk_s: 300,
        }
    }

    #[test]
    fn the_distance_scorer_tells_near_from_far() {
        use rand_core::SeedableRng;
        use trustedge_distance::channel::{DEVICE_MODELS, LinkContext, sample_rssi};
        let scorer = small_scorer();
        let m = DEVICE_MODELS[0];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ctx = LinkContext::random(m, m, &mut rng);
        let mut at = |d: f64| -> Vec<RssiSample> {
            (0..20)
                .map(|i| RssiSample {
                    offset_s: i * 60,
                    rssi_dbm: sample_rssi(d, &ctx, &mut rng),
                })
                .collect()
        };
        let (near, far) = (at(0.5), at(8.0));
        let input = |samples: &'static [RssiSample]| EncounterInput {
            rx_model: m.name,
            rx_tx_power_dbm: m.tx_power_dbm as i8,
            tx_power_dbm: m.tx_power_dbm as i8,
            first_seen_s: T0,
            last_seen_s: T0 + 19 * 60,
            samples,
            ranges: &[],
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        };
        let near: &'static [RssiSample] = Box::leak(near.into_boxed_slice());
        let far: &'static [RssiSample] = Box::leak(far.into_boxed_slice());
        let wn = scorer.score(&input(near));
        let wf = scorer.score(&input(far));
        assert!(wn.close_s >= 15 * 60, "{wn:?}");
        assert!(wf.close_s < 15 * 60, "{wf:?}");
        assert!(wn.score > wf.score, "{wn:?} {wf:?}");
        let day = DaySummary {
            close_s: wn.close_s,
            ..DaySummary::default()
        };
        assert!(scorer.is_close_contact(&day));
        assert!(!scorer.is_close_contact(&DaySummary {
            close_s: wf.close_s,
            ..DaySummary::default()
        }));
    }

    /// 20 one-minute RSSI samples at `d` m on one link, `extra_loss_db` weaker (a phone
    /// in a bag), and `ranges` one every 30 s over the same 19 minutes.
    fn ranged(
        seed: u64,
        d: f64,
        extra_loss_db: i8,
        range_cm: Option<(u32, RangeSource)>,
    ) -> (Vec<RssiSample>, Vec<RangeSample>) {
        use rand_core::SeedableRng;
        use trustedge_distance::channel::{DEVICE_MODELS, LinkContext, sample_rssi};
        let m = DEVICE_MODELS[0];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ctx = LinkContext::random(m, m, &mut rng);
        let samples = (0..20)
            .map(|i| RssiSample {
                offset_s: i * 60,
                rssi_dbm: sample_rssi(d, &ctx, &mut rng).saturating_sub(extra_loss_db),
            })
            .collect();
        let ranges = range_cm
            .map(|(cm, source)| {
                (0..39)
                    .map(|i| RangeSample {
                        offset_s: i * 30,
                        distance_cm: cm,
                        source,
                    })
                    .collect()
            })
            .unwrap_or_default();
        (samples, ranges)
    }

    fn close_s_of(scorer: &DistanceScorer, samples: &[RssiSample], ranges: &[RangeSample]) -> u64 {
        let m = trustedge_distance::channel::DEVICE_MODELS[0];
        scorer
            .score(&EncounterInput {
                rx_model: m.name,
                rx_tx_power_dbm: m.tx_power_dbm as i8,
                tx_power_dbm: m.tx_power_dbm as i8,
                first_seen_s: T0,
                last_seen_s: T0 + 19 * 60,
                samples,
                ranges,
                report_type: ReportType::ConfirmedTest,
                days_since_onset: None,
            })
            .close_s
    }

    #[test]
    fn ranges_from_other_radios_are_fused_into_the_close_contact_distance() {
        let scorer = small_scorer();
        let close = |s: u64| {
            scorer.is_close_contact(&DaySummary {
                close_s: s,
                ..DaySummary::default()
            })
        };
        // Phone in a bag: 1 m apart, BLE 25 dB weaker, so BLE alone says far…
        let (bag, uwb_1m) = ranged(5, 1.0, 25, Some((100, RangeSource::Uwb)));
        assert!(!close(close_s_of(&scorer, &bag, &[])));
        // …but UWB says 1 m for the whole 19 minutes: a close contact.
        let fused = close_s_of(&scorer, &bag, &uwb_1m);
        assert!(close(fused), "close_s {fused}");
        // BLE says near, UWB says 8 m: not a close contact.
        let (near, uwb_8m) = ranged(6, 0.5, 0, Some((800, RangeSource::Uwb)));
        assert!(close(close_s_of(&scorer, &near, &[])));
        assert!(!close(close_s_of(&scorer, &near, &uwb_8m)));
        // Wi-Fi RTT (σ 1.5 m) is weak evidence at 1 m (σ/d = 1.5 in log-distance: it only
        // pulls the bag's BLE distance closer) but strong at 8 m (σ/d ≈ 0.19): it
        // overrides a BLE "near".
        let (_, rtt_8m) = ranged(6, 0.5, 0, Some((800, RangeSource::WifiRtt)));
        assert!(!close(close_s_of(&scorer, &near, &rtt_8m)));
        // Ranges only in the first 5 minutes fix only that part: not 15 minutes close.
        let early: Vec<RangeSample> = uwb_1m
            .iter()
            .copied()
            .filter(|r| r.offset_s < 300)
            .collect();
        assert!(!close(close_s_of(&scorer, &bag, &early)));
    }

    #[test]
    fn fuse_chunk_takes_one_median_per_source_and_keeps_ble_without_ranges() {
        use trustedge_distance::{DistanceEstimate, RangingSource};
        let ble = DistanceEstimate {
            meters: 6.0,
            sigma_m: 4.0,
            source: RangingSource::Ble,
        };
        assert_eq!(fuse_chunk(ble, &[]), ble);
        // One NLOS-like outlier (+3 m) among five UWB ranges at 1 m: the median ignores it.
        let uwb: Vec<(u32, RangeSource)> = [100, 101, 400, 99, 100]
            .into_iter()
            .map(|cm| (cm, RangeSource::Uwb))
            .collect();
        let f = fuse_chunk(ble, &uwb);
        assert!((f.meters - 1.0).abs() < 0.05, "{f:?}");
        assert!(f.sigma_m < 0.2, "{f:?}");
    }

    #[test]
    fn the_engine_passes_an_encounters_ranges_to_the_scorer() {
        let scorer = small_scorer();
        let case = device(1, 60);
        let rx = device(2, 60);
        // 40 minutes heard at −95 dBm: far by BLE.
        let far = heard(&rx, &case, 0, 40, -95);
        let run = |uploads: Vec<EncounterUpload>| {
            let mut engine = ExposureEngine::new(EngineConfig::default()).unwrap();
            for u in uploads {
                engine.add_upload(link(2), u).unwrap();
            }
            let out = engine.process(Hash::sha256(b"r"), &keys_of(&case), &scorer, [3; 32]);
            assert!(out.matches > 0);
            out.decisions.iter().any(|d| d.close_contact)
        };
        assert!(!run(far.clone()));
        let with_uwb: Vec<EncounterUpload> = far
            .into_iter()
            .map(|mut u| {
                for e in &mut u.encounters {
                    e.ranges = e
                        .samples
                        .iter()
                        .map(|s| RangeSample {
                            offset_s: s.offset_s,
                            distance_cm: 90,
                            source: RangeSource::Uwb,
                        })
                        .collect();
                }
                u
            })
            .collect();
        assert!(run(with_uwb));
    }

    #[test]
    fn limits_and_pruning() {
        assert!(
            ExposureEngine::new(EngineConfig {
                max_notices_per_tx: 65,
                ..EngineConfig::default()
            })
            .is_err()
        );
        let case = device(1, 60);
        let near = device(2, 60);
        let uploads = heard(&near, &case, 0, 60, -50);
        let total: usize = uploads.iter().map(|u| u.encounters.len()).sum();
        let largest = uploads.iter().map(|u| u.encounters.len()).max().unwrap();
        let limit = total - 1;
        assert!(largest <= limit);
        let mut engine = ExposureEngine::new(EngineConfig {
            max_encounters: limit,
            ..EngineConfig::default()
        })
        .unwrap();
        for u in uploads.iter().cloned() {
            engine.add_upload(link(2), u).unwrap();
        }
        // Full: the oldest uploads made room for the newest, which are all held.
        assert!(engine.evicted_uploads() >= 1);
        assert!(engine.encounters() <= limit);
        assert_eq!(
            engine.uploads() as u64 + engine.evicted_uploads(),
            uploads.len() as u64
        );
        let newest = uploads.last().unwrap();
        assert_eq!(engine.uploads.last().map(|h| &h.upload), Some(newest));
        assert_eq!(
            engine.uploads.first().map(|h| &h.upload),
            uploads.get(engine.evicted_uploads() as usize)
        );
        // An upload larger than the limit by itself is refused.
        let mut tiny = ExposureEngine::new(EngineConfig {
            max_encounters: largest - 1,
            ..EngineConfig::default()
        })
        .unwrap();
        let big = uploads
            .iter()
            .find(|u| u.encounters.len() == largest)
            .unwrap();
        assert!(matches!(
            tiny.add_upload(link(2), big.clone()),
            Err(ExposureError::Full { .. })
        ));
        assert_eq!(tiny.uploads(), 0);
        engine.prune_before(T0 + 10 * DAY_S);
        assert_eq!((engine.uploads(), engine.encounters()), (0, 0));
        let out = engine.process(
            Hash::sha256(b"p"),
            &keys_of(&case),
            &ThresholdScorer,
            [0; 32],
        );
        assert_eq!(out.matches, 0);
    }
}
