//! What a device hears: the sighting log, on-device filtering and encounters.
//!
//! Each BLE scan yields [`Sighting`]s (RPI, AEM, RSSI, time). A [`SightingLog`] drops the
//! useless ones as they arrive (too weak, outside the retention window), aggregates the
//! rest per RPI and hands out [`Encounter`]s that pass the duration and scan-count rules
//! of its [`SightingFilter`]. Memory is bounded: at most
//! [`SightingFilter::max_rpis`] RPIs, each with at most
//! [`SightingFilter::max_samples`] RSSI samples (older samples are merged pairwise when
//! the cap is reached).
//!
//! When the device has other ranging radios (UWB, Wi-Fi RTT) and ranges a peer it also
//! hears over BLE, [`SightingLog::record_range`] attaches the range to that peer's RPI;
//! the encounter then carries [`RangeSample`]s (at most [`MAX_RANGES_PER_ENCOUNTER`]) that
//! the edge fuses with the BLE distance.

use std::collections::HashMap;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::matching::{Observation, RpiIndex};
use crate::{Aem, Rpi};

/// Seconds in the retention window: 14 days, as GAEN keeps its scan records.
pub const RETENTION_S: u64 = 14 * 24 * 3600;

/// One advertisement heard in one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sighting {
    /// The RPI heard.
    pub rpi: Rpi,
    /// The AEM heard beside it (decryptable only with the sender's diagnosis key).
    pub aem: Aem,
    /// Received signal strength, in dBm.
    pub rssi_dbm: i8,
    /// Unix time of the scan, in seconds.
    pub time_s: u64,
}

/// One RSSI sample of an encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct RssiSample {
    /// Seconds after the encounter's `first_seen_s`.
    pub offset_s: u32,
    /// Received signal strength, in dBm.
    pub rssi_dbm: i8,
}

/// Most ranging samples kept per encounter (and accepted per encounter in an upload).
/// 64: one range every ~20 s over a 20-minute RPI; beyond it, every other one is dropped.
pub const MAX_RANGES_PER_ENCOUNTER: usize = 64;

/// Longest range accepted, in cm (500 m: beyond any UWB or Wi-Fi RTT link, and far
/// beyond any contact distance).
pub const MAX_RANGE_CM: u32 = 50_000;

/// The radio a [`RangeSample`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum RangeSource {
    /// Ultra-wideband two-way ranging.
    Uwb,
    /// Wi-Fi round-trip time (IEEE 802.11mc FTM).
    WifiRtt,
}

/// One range to the peer measured by another radio during an encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct RangeSample {
    /// Seconds after the encounter's `first_seen_s`.
    pub offset_s: u32,
    /// Measured distance, in cm (1..=[`MAX_RANGE_CM`]).
    pub distance_cm: u32,
    /// Which radio measured it.
    pub source: RangeSource,
}

/// Everything heard of one RPI: its time span and RSSI samples (in time order).
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Encounter {
    /// The RPI heard.
    pub rpi: Rpi,
    /// The AEM heard with it (the first one).
    pub aem: Aem,
    /// Unix time of the first sighting.
    pub first_seen_s: u64,
    /// Unix time of the last sighting.
    pub last_seen_s: u64,
    /// RSSI samples, offsets non-decreasing, at most [`SightingFilter::max_samples`].
    pub samples: Vec<RssiSample>,
    /// Ranges from the device's other radios (UWB, Wi-Fi RTT), offsets non-decreasing and
    /// within the span, at most [`MAX_RANGES_PER_ENCOUNTER`]; empty without such radios.
    pub ranges: Vec<RangeSample>,
}

impl Encounter {
    /// Seconds from the first to the last sighting.
    pub fn duration_s(&self) -> u64 {
        self.last_seen_s.saturating_sub(self.first_seen_s)
    }
}

/// Rules of on-device filtering and the log's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SightingFilter {
    /// Sightings weaker than this are dropped on arrival. Default −90 dBm: with typical
    /// phone TX powers and GAEN calibration, weaker signals mean well beyond the 2–4 m that
    /// matter, and near the noise floor of phone radios.
    pub min_rssi_dbm: i8,
    /// Encounters shorter than this (first to last sighting) are not reported. Default
    /// 120 s: GAEN scans every 3.5–5 minutes, so a contact this short was at most glimpsed
    /// twice, and even the strictest risk rules count minutes (15 min in a day).
    pub min_duration_s: u64,
    /// Encounters with fewer scans than this are not reported. Default 2: one scan says
    /// nothing about duration.
    pub min_scans: u32,
    /// Sightings older than this before "now" are dropped. Default [`RETENTION_S`].
    pub retention_s: u64,
    /// Most RPIs the log holds. Default 50 000 (a dense crowd of ~25 new RPIs an hour,
    /// around the clock for 14 days, is 8 400; this leaves room for bursts).
    pub max_rpis: usize,
    /// Most RSSI samples kept per RPI. Default 32: enough to smooth one RPI's ≤ 20 min at
    /// one scan a minute; beyond it, neighbouring samples are merged.
    pub max_samples: usize,
}

impl Default for SightingFilter {
    fn default() -> Self {
        SightingFilter {
            min_rssi_dbm: -90,
            min_duration_s: 120,
            min_scans: 2,
            retention_s: RETENTION_S,
            max_rpis: 50_000,
            max_samples: 32,
        }
    }
}

/// Why the log did not take a sighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SightingError {
    /// Weaker than [`SightingFilter::min_rssi_dbm`].
    #[error("RSSI {rssi_dbm} dBm is below the minimum of {min_rssi_dbm} dBm")]
    TooWeak {
        /// The sighting's RSSI.
        rssi_dbm: i8,
        /// The filter's minimum.
        min_rssi_dbm: i8,
    },
    /// Older than the retention window, or later than "now".
    #[error("sighting time {time_s} s is outside the window ending at {now_s} s")]
    OutOfWindow {
        /// The sighting's time.
        time_s: u64,
        /// The time the log was told is now.
        now_s: u64,
    },
    /// The log holds [`SightingFilter::max_rpis`] RPIs and none can be evicted (every one
    /// already qualifies as an encounter).
    #[error("sighting log is full ({capacity} RPIs, all qualifying encounters)")]
    Full {
        /// The log's capacity, in RPIs.
        capacity: usize,
    },
    /// A filter bound is zero where at least one is needed.
    #[error("invalid filter: {0}")]
    InvalidFilter(&'static str),
    /// A range for an RPI the log holds no BLE sighting of (a range alone cannot be
    /// attributed to a pseudonym).
    #[error("range for an RPI not heard over BLE")]
    UnknownRpi,
    /// A range of zero or over [`MAX_RANGE_CM`].
    #[error("range of {distance_cm} cm is outside 1..={MAX_RANGE_CM} cm")]
    InvalidRange {
        /// The range given.
        distance_cm: u32,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    aem: Aem,
    first_seen_s: u64,
    last_seen_s: u64,
    scans: u32,
    /// (time, rssi), in arrival order.
    samples: Vec<(u64, i8)>,
    /// (time, cm, source), in arrival order.
    ranges: Vec<(u64, u32, RangeSource)>,
}

/// The bounded, filtered log of sightings, per RPI.
#[derive(Debug, Clone)]
pub struct SightingLog {
    filter: SightingFilter,
    entries: HashMap<Rpi, Entry>,
}

impl SightingLog {
    /// An empty log with these rules.
    pub fn new(filter: SightingFilter) -> Result<Self, SightingError> {
        if filter.max_rpis == 0 {
            return Err(SightingError::InvalidFilter("max_rpis must be at least 1"));
        }
        if filter.max_samples < 2 {
            return Err(SightingError::InvalidFilter(
                "max_samples must be at least 2",
            ));
        }
        Ok(SightingLog {
            filter,
            entries: HashMap::new(),
        })
    }

    /// The rules in force.
    pub fn filter(&self) -> &SightingFilter {
        &self.filter
    }

    /// Number of RPIs held (qualifying or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Logs one sighting heard at `sighting.time_s`, `now_s` being the device's time.
    /// Too-weak and out-of-window sightings are refused with the reason. When the log is
    /// full it first drops expired RPIs, then the least recently seen RPI that does not
    /// (yet) qualify as an encounter, so a flood of one-off RPIs cannot push real
    /// contacts out.
    pub fn record(&mut self, sighting: Sighting, now_s: u64) -> Result<(), SightingError> {
        let f = self.filter;
        if sighting.rssi_dbm < f.min_rssi_dbm {
            return Err(SightingError::TooWeak {
                rssi_dbm: sighting.rssi_dbm,
                min_rssi_dbm: f.min_rssi_dbm,
            });
        }
        if sighting.time_s > now_s || now_s - sighting.time_s > f.retention_s {
            return Err(SightingError::OutOfWindow {
                time_s: sighting.time_s,
                now_s,
            });
        }
        if !self.entries.contains_key(&sighting.rpi) && self.entries.len() >= f.max_rpis {
            self.prune(now_s);
            if self.entries.len() >= f.max_rpis {
                let victim = self
                    .entries
                    .iter()
                    .filter(|(_, e)| !qualifies(&f, e))
                    .min_by_key(|(rpi, e)| (e.last_seen_s, **rpi))
                    .map(|(rpi, _)| *rpi);
                match victim {
                    Some(rpi) => {
                        self.entries.remove(&rpi);
                    }
                    None => {
                        return Err(SightingError::Full {
                            capacity: f.max_rpis,
                        });
                    }
                }
            }
        }
        let entry = self.entries.entry(sighting.rpi).or_insert_with(|| Entry {
            aem: sighting.aem,
            first_seen_s: sighting.time_s,
            last_seen_s: sighting.time_s,
            scans: 0,
            samples: Vec::new(),
            ranges: Vec::new(),
        });
        entry.first_seen_s = entry.first_seen_s.min(sighting.time_s);
        entry.last_seen_s = entry.last_seen_s.max(sighting.time_s);
        entry.scans = entry.scans.saturating_add(1);
        if entry.samples.len() >= f.max_samples {
            downsample(&mut entry.samples);
        }
        entry.samples.push((sighting.time_s, sighting.rssi_dbm));
        Ok(())
    }

    /// Logs a range to the peer broadcasting `rpi`, measured at `time_s` by another radio
    /// (`now_s` being the device's time). The RPI must already be in the log (heard over
    /// BLE); ranges outside the RPI's first-to-last BLE sighting when encounters are
    /// taken are left out. At most [`MAX_RANGES_PER_ENCOUNTER`] are kept per RPI (when
    /// full, every other one is dropped, so the whole span stays covered).
    pub fn record_range(
        &mut self,
        rpi: Rpi,
        time_s: u64,
        distance_cm: u32,
        source: RangeSource,
        now_s: u64,
    ) -> Result<(), SightingError> {
        if distance_cm == 0 || distance_cm > MAX_RANGE_CM {
            return Err(SightingError::InvalidRange { distance_cm });
        }
        if time_s > now_s || now_s - time_s > self.filter.retention_s {
            return Err(SightingError::OutOfWindow { time_s, now_s });
        }
        let entry = self
            .entries
            .get_mut(&rpi)
            .ok_or(SightingError::UnknownRpi)?;
        if entry.ranges.len() >= MAX_RANGES_PER_ENCOUNTER {
            entry.ranges.sort_by_key(|r| r.0);
            let mut i = 0usize;
            entry.ranges.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        entry.ranges.push((time_s, distance_cm, source));
        Ok(())
    }

    /// Drops every RPI last seen before the retention window ending at `now_s`.
    pub fn prune(&mut self, now_s: u64) {
        let cutoff = now_s.saturating_sub(self.filter.retention_s);
        self.entries.retain(|_, e| e.last_seen_s >= cutoff);
    }

    /// The encounters that pass the filter at `now_s` (long enough, enough scans, last
    /// seen within the window), ordered by first sighting then RPI.
    pub fn encounters(&self, now_s: u64) -> Vec<Encounter> {
        let cutoff = now_s.saturating_sub(self.filter.retention_s);
        let mut out: Vec<Encounter> = self
            .entries
            .iter()
            .filter(|(_, e)| e.last_seen_s >= cutoff && qualifies(&self.filter, e))
            .map(|(rpi, e)| {
                let mut samples: Vec<(u64, i8)> = e.samples.clone();
                samples.sort_by_key(|s| s.0);
                Encounter {
                    rpi: *rpi,
                    aem: e.aem,
                    first_seen_s: e.first_seen_s,
                    last_seen_s: e.last_seen_s,
                    samples: samples
                        .into_iter()
                        .map(|(t, rssi_dbm)| RssiSample {
                            // Within the 14-day window: fits u32 (saturate regardless).
                            offset_s: u32::try_from(t - e.first_seen_s).unwrap_or(u32::MAX),
                            rssi_dbm,
                        })
                        .collect(),
                    ranges: ranges_of(e),
                }
            })
            .collect();
        out.sort_by_key(|e| (e.first_seen_s, e.rpi));
        out
    }

    /// Pure GAEN mode: the qualifying encounters at `now_s` and an [`RpiIndex`] over them,
    /// to match downloaded diagnosis keys with [`crate::matching::match_keys`]. The
    /// observation id of a match is the encounter's position in the returned vector; the
    /// observation time is the encounter's first sighting.
    pub fn index(&self, now_s: u64) -> (Vec<Encounter>, RpiIndex) {
        let encounters = self.encounters(now_s);
        let index = RpiIndex::new(
            encounters
                .iter()
                .enumerate()
                .map(|(i, e)| Observation {
                    rpi: e.rpi,
                    time_s: e.first_seen_s,
                    id: i as u64,
                })
                .collect(),
        );
        (encounters, index)
    }
}

/// The entry's ranges within its BLE span, in time order.
fn ranges_of(e: &Entry) -> Vec<RangeSample> {
    let mut ranges: Vec<(u64, u32, RangeSource)> = e
        .ranges
        .iter()
        .copied()
        .filter(|r| (e.first_seen_s..=e.last_seen_s).contains(&r.0))
        .collect();
    ranges.sort_by_key(|r| r.0);
    ranges
        .into_iter()
        .map(|(t, distance_cm, source)| RangeSample {
            offset_s: u32::try_from(t - e.first_seen_s).unwrap_or(u32::MAX),
            distance_cm,
            source,
        })
        .collect()
}

fn qualifies(f: &SightingFilter, e: &Entry) -> bool {
    e.scans >= f.min_scans && e.last_seen_s - e.first_seen_s >= f.min_duration_s
}

/// Halves a sample list by merging neighbours (time of the first, mean RSSI in dBm),
/// so the whole span stays covered at a coarser step.
fn downsample(samples: &mut Vec<(u64, i8)>) {
    samples.sort_by_key(|s| s.0);
    let merged: Vec<(u64, i8)> = samples
        .chunks(2)
        .map(|pair| {
            let sum: i32 = pair.iter().map(|s| i32::from(s.1)).sum();
            let n = pair.len() as i32;
            // The mean of i8 values is an i8.
            let mean = i8::try_from(sum.div_euclid(n)).unwrap_or(i8::MIN);
            (pair[0].0, mean)
        })
        .collect();
    *samples = merged;
}
