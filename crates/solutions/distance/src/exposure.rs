//! GAEN v2 exposure windows and scoring, and the close-contact rule.
//!
//! Scoring follows the Exposure Notifications v2 `DailySummariesConfig` semantics:
//!
//! - each [`ScanInstance`] falls in a bucket by its `typical_attenuation_db`: immediate
//!   (≤ t0), near (≤ t1), medium (≤ t2), other;
//! - a window's weighted duration = Σ `seconds_since_last_scan` × bucket weight;
//! - its score = weighted duration × infectiousness weight × report-type weight;
//!   windows with infectiousness `None` contribute nothing;
//! - windows scoring under `minimum_window_score` are dropped; per day (and per report
//!   type) the summary holds the maximum score, the score sum and the weighted-duration sum.
//!
//! The API has no built-in thresholds (apps must set them). [`ScoringConfig::default`]
//! uses thresholds 56 / 62 / 70 dB with bucket weights 1.0 / 1.0 / 0.3 / 0.0, infectiousness
//! weights standard 1.0 / high 2.0 and report-type weights 1.0 (recursive 0), minimum
//! window score 0 (the value GAEN recommends): the configuration of a public GAEN v2 app
//! (PathCheck's, "upweight attenuations indicating very close exposures, downweight those
//! where distance is less certain").
//!
//! Windows are built as GAEN builds them: samples closer than [`WindowConfig::scan_gap_s`]
//! form one scan; windows are 30-minute slots of Unix time (so none crosses midnight UTC).

use std::collections::BTreeMap;

use serde::Serialize;
use trustedge_tracing::ReportType;

use crate::DistanceError;
use crate::calibration::{CalibrationConfidence, LinkCalibration};
use crate::fusion::DistanceEstimate;

/// Seconds in a day.
pub const DAY_S: u64 = 86_400;

/// Infectiousness of the case on the day of the exposure (from days since onset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Infectiousness {
    /// Not infectious: the window is ignored.
    None,
    /// Standard infectiousness.
    Standard,
    /// High infectiousness.
    High,
}

/// One scan in which the key was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ScanInstance {
    /// Mean attenuation of the scan's advertisements (dB domain), dB.
    pub typical_attenuation_db: u8,
    /// Lowest attenuation of the scan, dB.
    pub min_attenuation_db: u8,
    /// Seconds since the previous scan (the scan's share of exposure time).
    pub seconds_since_last_scan: u32,
}

/// Up to 30 minutes of sightings of one key on one day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ExposureWindow {
    /// Day of the window, days since the Unix epoch (UTC).
    pub day: u32,
    /// Report type of the matched diagnosis key.
    pub report_type: ReportType,
    /// Infectiousness on that day.
    pub infectiousness: Infectiousness,
    /// The lower of the two phones' calibration confidences.
    pub calibration_confidence: CalibrationConfidence,
    /// Its scans, in time order.
    pub scan_instances: Vec<ScanInstance>,
}

/// Weights per report type (types without a weight — unknown, revoked — weigh 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReportTypeWeights {
    /// CONFIRMED_TEST.
    pub confirmed_test: f64,
    /// CONFIRMED_CLINICAL_DIAGNOSIS.
    pub confirmed_clinical_diagnosis: f64,
    /// SELF_REPORT.
    pub self_report: f64,
    /// RECURSIVE (reserved by GAEN).
    pub recursive: f64,
}

impl ReportTypeWeights {
    /// The weight of a report type.
    pub fn weight(&self, report_type: ReportType) -> f64 {
        match report_type {
            ReportType::ConfirmedTest => self.confirmed_test,
            ReportType::ConfirmedClinicalDiagnosis => self.confirmed_clinical_diagnosis,
            ReportType::SelfReport => self.self_report,
            ReportType::Recursive => self.recursive,
            ReportType::Unknown | ReportType::Revoked => 0.0,
        }
    }
}

/// GAEN v2 daily-summary configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoringConfig {
    /// Immediate / near / medium upper edges, dB, strictly increasing.
    pub attenuation_bucket_thresholds_db: [u8; 3],
    /// Weights of the immediate, near, medium and other buckets (0–2.5).
    pub attenuation_bucket_weights: [f64; 4],
    /// Weights of standard and high infectiousness (0–2.5).
    pub infectiousness_weights: [f64; 2],
    /// Weights per report type (0–2.5).
    pub report_type_weights: ReportTypeWeights,
    /// Windows scoring lower are left out of the daily summaries.
    pub minimum_window_score: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            attenuation_bucket_thresholds_db: [56, 62, 70],
            attenuation_bucket_weights: [1.0, 1.0, 0.3, 0.0],
            infectiousness_weights: [1.0, 2.0],
            report_type_weights: ReportTypeWeights {
                confirmed_test: 1.0,
                confirmed_clinical_diagnosis: 1.0,
                self_report: 1.0,
                recursive: 0.0,
            },
            minimum_window_score: 0.0,
        }
    }
}

/// GAEN's bound on every weight.
pub const MAX_WEIGHT: f64 = 2.5;

fn weight_ok(w: f64) -> bool {
    (0.0..=MAX_WEIGHT).contains(&w)
}

impl ScoringConfig {
    /// Checks GAEN's rules: increasing thresholds, weights in 0–2.5, a finite minimum
    /// score ≥ 0.
    pub fn validate(&self) -> Result<(), DistanceError> {
        let [a, b, c] = self.attenuation_bucket_thresholds_db;
        if !(a < b && b < c) {
            return Err(DistanceError::InvalidConfig(
                "attenuation thresholds must increase",
            ));
        }
        let r = &self.report_type_weights;
        let all_ok = self
            .attenuation_bucket_weights
            .iter()
            .all(|&w| weight_ok(w))
            && self.infectiousness_weights.iter().all(|&w| weight_ok(w))
            && [
                r.confirmed_test,
                r.confirmed_clinical_diagnosis,
                r.self_report,
                r.recursive,
            ]
            .iter()
            .all(|&w| weight_ok(w));
        if !all_ok {
            return Err(DistanceError::InvalidConfig("weights must be in 0..=2.5"));
        }
        if !(self.minimum_window_score.is_finite() && self.minimum_window_score >= 0.0) {
            return Err(DistanceError::InvalidConfig(
                "minimum_window_score must be >= 0",
            ));
        }
        Ok(())
    }

    /// Bucket index of an attenuation: 0 immediate, 1 near, 2 medium, 3 other.
    pub fn bucket(&self, attenuation_db: u8) -> usize {
        self.attenuation_bucket_thresholds_db
            .iter()
            .position(|&t| attenuation_db <= t)
            .unwrap_or(3)
    }

    /// Σ seconds × bucket weight over the window's scans.
    pub fn weighted_duration_s(&self, window: &ExposureWindow) -> f64 {
        window
            .scan_instances
            .iter()
            .map(|s| {
                f64::from(s.seconds_since_last_scan)
                    * self.attenuation_bucket_weights[self.bucket(s.typical_attenuation_db)]
            })
            .sum()
    }

    /// Infectiousness weight (0 for `None`).
    pub fn infectiousness_weight(&self, i: Infectiousness) -> f64 {
        match i {
            Infectiousness::None => 0.0,
            Infectiousness::Standard => self.infectiousness_weights[0],
            Infectiousness::High => self.infectiousness_weights[1],
        }
    }

    /// Weighted duration × infectiousness weight × report-type weight.
    pub fn window_score(&self, window: &ExposureWindow) -> f64 {
        self.weighted_duration_s(window)
            * self.infectiousness_weight(window.infectiousness)
            * self.report_type_weights.weight(window.report_type)
    }
}

/// GAEN's ExposureSummaryData.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ExposureSummaryData {
    /// Highest window score.
    pub maximum_score: f64,
    /// Sum of window scores.
    pub score_sum: f64,
    /// Sum of window weighted durations, s.
    pub weighted_duration_sum: f64,
}

impl ExposureSummaryData {
    fn add(&mut self, score: f64, weighted_duration: f64) {
        self.maximum_score = self.maximum_score.max(score);
        self.score_sum += score;
        self.weighted_duration_sum += weighted_duration;
    }
}

/// GAEN's DailySummary: one day, over all report types and per report type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailySummary {
    /// Days since the Unix epoch.
    pub day: u32,
    /// Over all report types.
    pub summary: ExposureSummaryData,
    /// Per report type (only types with a counted window).
    pub by_report_type: BTreeMap<i32, ExposureSummaryData>,
}

/// Daily summaries of the windows, in day order (days without a counted window are
/// absent). Windows with infectiousness `None`, and windows under the minimum score, are
/// left out.
pub fn daily_summaries(
    windows: &[ExposureWindow],
    cfg: &ScoringConfig,
) -> Result<Vec<DailySummary>, DistanceError> {
    cfg.validate()?;
    let mut days: BTreeMap<u32, DailySummary> = BTreeMap::new();
    for w in windows {
        if w.infectiousness == Infectiousness::None {
            continue;
        }
        let score = cfg.window_score(w);
        if score < cfg.minimum_window_score {
            continue;
        }
        let wd = cfg.weighted_duration_s(w);
        let day = days.entry(w.day).or_insert_with(|| DailySummary {
            day: w.day,
            summary: ExposureSummaryData::default(),
            by_report_type: BTreeMap::new(),
        });
        day.summary.add(score, wd);
        day.by_report_type
            .entry(w.report_type.number())
            .or_default()
            .add(score, wd);
    }
    Ok(days.into_values().collect())
}

/// How samples are grouped into scans and windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowConfig {
    /// Samples within this many seconds of the previous one are one scan.
    pub scan_gap_s: u64,
    /// Window length: windows are slots of this many seconds of Unix time (GAEN: 1800).
    pub window_s: u64,
    /// Credit of a scan with no previous scan in the encounter, s (the nominal scan period).
    pub first_scan_credit_s: u32,
    /// A scan's credit is capped at this, s (a gap longer than this is not exposure).
    pub max_scan_credit_s: u32,
    /// Scan-cadence-aware credit: when an encounter has two or more scans, its cadence is
    /// the median gap between scans (gaps up to `max_scan_credit_s`), and the first scan
    /// and each scan after a gap longer than twice the cadence (a new meeting) are credited
    /// one cadence instead of `first_scan_credit_s` / the capped gap. Each scan then
    /// stands for the scan period it samples, so the summed credit estimates the
    /// encounter's duration without the bias of one missing period per meeting (≈ 3.5 min
    /// at GAEN's 4.5-minute cadence, which made 15–20-minute contacts fall under 15).
    pub cadence_credit: bool,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            scan_gap_s: 10,
            window_s: 1800,
            first_scan_credit_s: 60,
            max_scan_credit_s: 300,
            cadence_credit: true,
        }
    }
}

impl WindowConfig {
    fn validate(&self) -> Result<(), DistanceError> {
        if self.window_s == 0 || !DAY_S.is_multiple_of(self.window_s) {
            return Err(DistanceError::InvalidConfig(
                "window_s must divide a day and be > 0",
            ));
        }
        Ok(())
    }
}

/// One scan of an encounter: its time span, samples and exposure credit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scan {
    /// Time of the scan's first sample, Unix s.
    pub start_s: u64,
    /// Seconds credited to the scan (since the previous scan, capped).
    pub credit_s: u32,
    /// Index range of its samples in the (time-sorted) input.
    pub samples: std::ops::Range<usize>,
}

/// Groups time-sorted `(time s, rssi)` samples into scans with their credits.
pub fn scans(samples: &[(u64, i8)], cfg: &WindowConfig) -> Vec<Scan> {
    let mut out: Vec<Scan> = Vec::new();
    let mut prev_t: Option<u64> = None;
    for (i, &(t, _)) in samples.iter().enumerate() {
        let same = prev_t.is_some_and(|p| t.saturating_sub(p) <= cfg.scan_gap_s);
        if same {
            if let Some(last) = out.last_mut() {
                last.samples.end = i + 1;
            }
        } else {
            let credit = match out.last() {
                Some(prev) => u32::try_from(t.saturating_sub(prev.start_s)).unwrap_or(u32::MAX),
                None => cfg.first_scan_credit_s,
            };
            out.push(Scan {
                start_s: t,
                credit_s: credit.min(cfg.max_scan_credit_s),
                samples: i..i + 1,
            });
        }
        prev_t = Some(t);
    }
    if cfg.cadence_credit {
        let raw: Vec<u64> = (1..out.len())
            .map(|k| out[k].start_s.saturating_sub(out[k - 1].start_s))
            .collect();
        let mut gaps: Vec<u64> = raw
            .iter()
            .copied()
            .filter(|g| *g <= u64::from(cfg.max_scan_credit_s))
            .collect();
        if !gaps.is_empty() {
            gaps.sort_unstable();
            let cadence = gaps[gaps.len() / 2].clamp(1, u64::from(cfg.max_scan_credit_s));
            let credit = u32::try_from(cadence).unwrap_or(cfg.max_scan_credit_s);
            out[0].credit_s = credit;
            for (scan, g) in out.iter_mut().skip(1).zip(raw) {
                if g > 2 * cadence {
                    scan.credit_s = credit;
                }
            }
        }
    }
    out
}

fn sorted(samples: &[(u64, i8)]) -> Vec<(u64, i8)> {
    let mut s = samples.to_vec();
    s.sort_by_key(|&(t, _)| t);
    s
}

fn to_db(a: f64) -> u8 {
    // GAEN attenuations are whole dB in 0..=255; the clamp also maps NaN to 0
    a.round().clamp(0.0, 255.0) as u8
}

/// Builds the exposure windows of one matched encounter from its `(time s, rssi dBm)`
/// samples (any order) and the link's calibration.
pub fn build_windows(
    samples: &[(u64, i8)],
    link: &LinkCalibration,
    report_type: ReportType,
    infectiousness: Infectiousness,
    cfg: &WindowConfig,
) -> Result<Vec<ExposureWindow>, DistanceError> {
    cfg.validate()?;
    let samples = sorted(samples);
    let mut windows: Vec<(u64, ExposureWindow)> = Vec::new();
    for scan in scans(&samples, cfg) {
        let att: Vec<f64> = samples[scan.samples.clone()]
            .iter()
            .map(|&(_, r)| link.attenuation_db(r))
            .collect();
        if att.is_empty() {
            continue;
        }
        let typical = att.iter().sum::<f64>() / att.len() as f64;
        let min = att.iter().copied().fold(f64::INFINITY, f64::min);
        let instance = ScanInstance {
            typical_attenuation_db: to_db(typical),
            min_attenuation_db: to_db(min),
            seconds_since_last_scan: scan.credit_s,
        };
        let slot = scan.start_s / cfg.window_s;
        match windows.last_mut() {
            Some((s, w)) if *s == slot => w.scan_instances.push(instance),
            _ => windows.push((
                slot,
                ExposureWindow {
                    day: u32::try_from(scan.start_s / DAY_S).unwrap_or(u32::MAX),
                    report_type,
                    infectiousness,
                    calibration_confidence: link.confidence(),
                    scan_instances: vec![instance],
                },
            )),
        }
    }
    Ok(windows.into_iter().map(|(_, w)| w).collect())
}

/// Exposure time at an estimated distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ContactInterval {
    /// Start, Unix s.
    pub start_s: u64,
    /// Length, s.
    pub duration_s: u32,
    /// The distance over the interval.
    pub distance: DistanceEstimate,
}

/// Splits an encounter into chunks of about `chunk_s` seconds (whole scans), estimates the
/// distance of each with `estimate`, and credits each chunk with its scans' credits.
pub fn contact_intervals<F>(
    samples: &[(u64, i8)],
    chunk_s: u64,
    cfg: &WindowConfig,
    mut estimate: F,
) -> Result<Vec<ContactInterval>, DistanceError>
where
    F: FnMut(&[(u64, i8)]) -> Result<DistanceEstimate, DistanceError>,
{
    if chunk_s == 0 {
        return Err(DistanceError::InvalidConfig("chunk_s must be > 0"));
    }
    let samples = sorted(samples);
    let mut out = Vec::new();
    let all = scans(&samples, cfg);
    let mut i = 0;
    while i < all.len() {
        let start = all[i].start_s;
        let mut j = i;
        let mut credit = 0u32;
        while j < all.len() && all[j].start_s < start + chunk_s {
            credit = credit.saturating_add(all[j].credit_s);
            j += 1;
        }
        let range = all[i].samples.start..all[j - 1].samples.end;
        out.push(ContactInterval {
            start_s: start,
            duration_s: credit,
            distance: estimate(&samples[range])?,
        });
        i = j;
    }
    Ok(out)
}

/// The close-contact rule: at least `min_minutes_per_day` minutes in one day within
/// `max_distance_m` (both bounds inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CloseContactRule {
    /// Minutes within the distance needed in one day.
    pub min_minutes_per_day: f64,
    /// Distance bound, m.
    pub max_distance_m: f64,
}

impl Default for CloseContactRule {
    fn default() -> Self {
        CloseContactRule {
            min_minutes_per_day: 15.0,
            max_distance_m: 2.0,
        }
    }
}

/// Minutes within the rule's distance on one day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DayContact {
    /// Days since the Unix epoch.
    pub day: u32,
    /// Cumulative minutes at or within the distance that day.
    pub minutes_within: f64,
    /// Whether the day meets the rule.
    pub close_contact: bool,
}

impl CloseContactRule {
    /// Per-day minutes within the distance (intervals crossing midnight are split),
    /// in day order; days with no interval within the distance are absent.
    pub fn evaluate(&self, intervals: &[ContactInterval]) -> Vec<DayContact> {
        let mut secs: BTreeMap<u64, u64> = BTreeMap::new();
        for iv in intervals {
            // NaN distances never count
            if iv.distance.meters.is_nan() || iv.distance.meters > self.max_distance_m {
                continue;
            }
            let mut t = iv.start_s;
            let end = iv.start_s.saturating_add(u64::from(iv.duration_s));
            while t < end {
                let day = t / DAY_S;
                let day_end = (day + 1) * DAY_S;
                let until = end.min(day_end);
                *secs.entry(day).or_default() += until - t;
                t = until;
            }
        }
        secs.into_iter()
            .map(|(day, s)| {
                let minutes = s as f64 / 60.0;
                DayContact {
                    day: u32::try_from(day).unwrap_or(u32::MAX),
                    minutes_within: minutes,
                    close_contact: minutes >= self.min_minutes_per_day,
                }
            })
            .collect()
    }

    /// Whether any day meets the rule.
    pub fn is_close_contact(&self, intervals: &[ContactInterval]) -> bool {
        self.evaluate(intervals).iter().any(|d| d.close_contact)
    }
}
