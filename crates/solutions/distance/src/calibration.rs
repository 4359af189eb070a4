//! Per-device-model calibration and smoothing over time.
//!
//! GAEN defines the attenuation of one advertisement as
//! `attenuation = tx_power − (rssi + rssi_correction)`: `tx_power` is the advertiser's
//! calibrated radiated power (carried in its metadata), `rssi_correction` the scanner's
//! model correction, both from a calibration table per phone model. A model missing from
//! the table gets [`DEFAULT_CALIBRATION`], whose larger uncertainty and lowest confidence
//! the distance model sees as features.

use std::collections::BTreeMap;

use rand_core::RngCore;
use serde::Serialize;

use crate::DistanceError;
use crate::channel::{DEVICE_MODELS, gaussian};

/// GAEN's calibration confidence of an exposure window (0 = lowest … 3 = high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationConfidence {
    /// No calibration data for the model: defaults used.
    Lowest = 0,
    /// Calibration extrapolated from a similar model.
    Low = 1,
    /// Calibrated by the manufacturer, not independently checked.
    Medium = 2,
    /// Measured calibration.
    High = 3,
}

impl CalibrationConfidence {
    /// The GAEN number (0–3).
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// The calibration of one phone model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// Calibrated radiated TX power, dBm (GAEN `tx_power`).
    pub tx_power_dbm: f64,
    /// Correction added to the reported RSSI, dB (GAEN `rssi_correction`).
    pub rssi_offset_db: f64,
    /// How far the two values may be off, 1σ, dB.
    pub uncertainty_db: f64,
    /// Confidence class reported in exposure windows.
    pub confidence: CalibrationConfidence,
}

/// Calibration of a model missing from the table: the middle of the table's TX powers
/// (−10 dBm) and RSSI offsets (+4 dB), with 6 dB uncertainty (about the table's spread)
/// and the lowest confidence.
pub const DEFAULT_CALIBRATION: Calibration = Calibration {
    tx_power_dbm: -10.0,
    rssi_offset_db: 4.0,
    uncertainty_db: 6.0,
    confidence: CalibrationConfidence::Lowest,
};

/// GAEN attenuation of one sample, dB: `tx_power − (rssi + rssi_offset)`.
pub fn attenuation_db(tx_power_dbm: f64, rssi_dbm: f64, rssi_offset_db: f64) -> f64 {
    tx_power_dbm - (rssi_dbm + rssi_offset_db)
}

/// The calibrations of an advertiser (TX) and a scanner (RX).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkCalibration {
    /// The advertiser's model calibration (its TX power is used).
    pub tx: Calibration,
    /// The scanner's model calibration (its RSSI offset is used).
    pub rx: Calibration,
}

impl LinkCalibration {
    /// Attenuation of a reported RSSI on this link, dB.
    pub fn attenuation_db(&self, rssi_dbm: i8) -> f64 {
        attenuation_db(
            self.tx.tx_power_dbm,
            f64::from(rssi_dbm),
            self.rx.rssi_offset_db,
        )
    }

    /// The window's confidence: the lower of the two.
    pub fn confidence(&self) -> CalibrationConfidence {
        self.tx.confidence.min(self.rx.confidence)
    }

    /// 1σ uncertainty of the attenuation's calibration, dB (independent errors add in
    /// quadrature).
    pub fn uncertainty_db(&self) -> f64 {
        self.tx.uncertainty_db.hypot(self.rx.uncertainty_db)
    }
}

/// Calibration per model name, with a default for unknown models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationRegistry {
    entries: BTreeMap<String, Calibration>,
    default: Calibration,
}

impl Default for CalibrationRegistry {
    fn default() -> Self {
        CalibrationRegistry::new(DEFAULT_CALIBRATION)
    }
}

impl CalibrationRegistry {
    /// Most models a registry holds (GAEN's table had a few thousand rows).
    pub const MAX_MODELS: usize = 100_000;

    /// An empty registry with this default for unknown models.
    pub fn new(default: Calibration) -> Self {
        CalibrationRegistry {
            entries: BTreeMap::new(),
            default,
        }
    }

    /// Adds or replaces a model's calibration; returns the previous one.
    pub fn insert(
        &mut self,
        model: &str,
        calibration: Calibration,
    ) -> Result<Option<Calibration>, DistanceError> {
        if !self.entries.contains_key(model) && self.entries.len() >= Self::MAX_MODELS {
            return Err(DistanceError::RegistryFull(Self::MAX_MODELS));
        }
        Ok(self.entries.insert(model.to_string(), calibration))
    }

    /// The model's calibration, or the default when it is unknown.
    pub fn get(&self, model: &str) -> Calibration {
        self.entries.get(model).copied().unwrap_or(self.default)
    }

    /// Whether the model has its own entry.
    pub fn is_known(&self, model: &str) -> bool {
        self.entries.contains_key(model)
    }

    /// The calibration of a TX model → RX model link.
    pub fn link(&self, tx_model: &str, rx_model: &str) -> LinkCalibration {
        LinkCalibration {
            tx: self.get(tx_model),
            rx: self.get(rx_model),
        }
    }

    /// Number of models with their own entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no model has its own entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The published table of the synthetic [`DEVICE_MODELS`]: each model with
    /// `in_calibration_table` gets its true values plus a measurement error of σ = 1 dB
    /// (drawn from `rng`), confidence High (or Medium for every third model, σ 2 dB).
    pub fn synthetic<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut registry = CalibrationRegistry::default();
        for (i, m) in DEVICE_MODELS
            .iter()
            .filter(|m| m.in_calibration_table)
            .enumerate()
        {
            let (sigma, confidence) = if i % 3 == 2 {
                (2.0, CalibrationConfidence::Medium)
            } else {
                (1.0, CalibrationConfidence::High)
            };
            let cal = Calibration {
                tx_power_dbm: gaussian(m.tx_power_dbm, sigma, rng),
                rssi_offset_db: gaussian(m.rssi_offset_db, sigma, rng),
                uncertainty_db: sigma * std::f64::consts::SQRT_2,
                confidence,
            };
            // the synthetic table has 12 rows, far below MAX_MODELS
            let _ = registry.insert(m.name, cal);
        }
        registry
    }
}

/// A 1-D Kalman filter on attenuation (random-walk state): smooths fading without lagging
/// behind a real change of distance for longer than about `sqrt(r / q)` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KalmanConfig {
    /// Process noise: variance growth of the true attenuation per second, dB²/s.
    pub process_var_db2_per_s: f64,
    /// Measurement noise of one sample (fading), dB².
    pub measurement_var_db2: f64,
}

impl Default for KalmanConfig {
    fn default() -> Self {
        // fading of one packet is ~5 dB (1σ); people move a few dB per minute
        KalmanConfig {
            process_var_db2_per_s: 0.05,
            measurement_var_db2: 25.0,
        }
    }
}

/// A running 1-D Kalman filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kalman1d {
    cfg: KalmanConfig,
    state: Option<(f64, f64, u64)>,
}

impl Kalman1d {
    /// A filter with no sample yet.
    pub fn new(cfg: KalmanConfig) -> Self {
        Kalman1d { cfg, state: None }
    }

    /// Feeds one sample at `time_s`; returns the filtered value. Samples out of time order
    /// are taken as simultaneous with the last one.
    pub fn update(&mut self, time_s: u64, value: f64) -> f64 {
        let (x, p) = match self.state {
            None => (value, self.cfg.measurement_var_db2),
            Some((x, p, t)) => {
                let dt = time_s.saturating_sub(t) as f64;
                let p_pred = p + self.cfg.process_var_db2_per_s * dt;
                let gain = p_pred / (p_pred + self.cfg.measurement_var_db2);
                (x + gain * (value - x), (1.0 - gain) * p_pred)
            }
        };
        let t = self.state.map_or(time_s, |(_, _, t)| t.max(time_s));
        self.state = Some((x, p, t));
        x
    }

    /// Current estimate and its variance, if any sample was seen.
    pub fn estimate(&self) -> Option<(f64, f64)> {
        self.state.map(|(x, p, _)| (x, p))
    }
}

/// Kalman-filtered series of `(time s, value)` samples (in time order).
pub fn kalman_smooth(samples: &[(u64, f64)], cfg: KalmanConfig) -> Vec<f64> {
    let mut k = Kalman1d::new(cfg);
    samples.iter().map(|&(t, v)| k.update(t, v)).collect()
}

/// Trailing sliding median over the last `window_s` seconds (inclusive) of each sample.
pub fn sliding_median(samples: &[(u64, f64)], window_s: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples.len());
    let mut start = 0;
    let mut buf = Vec::new();
    for (i, &(t, _)) in samples.iter().enumerate() {
        while start < i && samples[start].0 + window_s < t {
            start += 1;
        }
        buf.clear();
        buf.extend(samples[start..=i].iter().map(|&(_, v)| v));
        out.push(median(&mut buf));
    }
    out
}

/// Median of the values (the mean of the two middle ones for an even count; NaN if empty).
pub fn median(values: &mut [f64]) -> f64 {
    quantile(values, 0.5)
}

/// Linear-interpolated quantile `q` in [0, 1] of the values (sorts them; NaN if empty).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    values[lo] * (1.0 - frac) + values[hi] * frac
}
