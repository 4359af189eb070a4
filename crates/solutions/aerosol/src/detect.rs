//! Online change detection on a room's live streams, as pure streaming state machines:
//! each detector takes one reading at a time (`push(&reading) -> Option<Alarm>`) and keeps
//! O(1) state.
//!
//! Both detectors turn each reading into a standardized residual `z` (≈ N(0, 1) while the
//! room behaves normally), clip it to `±z_clip` so that one sensor glitch cannot raise an
//! alarm alone, and feed it to a one-sided control chart ([`Chart`]):
//! - CUSUM (Page 1954): `S ← max(0, S + z − k)`, alarm when `S > h`;
//! - EWMA (Roberts 1959): `E ← λ·z + (1 − λ)·E`, alarm when `E > L·√(λ / (2 − λ))`.
//!
//! After an alarm the chart restarts and further alarms of that detector are held off for
//! `holdoff_s` (one alarm per incident, not one per reading).
//!
//! **Ventilation failure** ([`VentilationDetector`]): CO₂ is predicted one step ahead from
//! the box model with the room's nominal ventilation and the occupancy just counted:
//! `C_pred = C_ss + (C_prev − C_ss)·e^(−ACH·Δt)` with `C_ss = C₀ + N·G / (ACH·V)`. The
//! residual `C − C_pred` is centred while ventilation is nominal, whatever the occupancy,
//! and turns positive when ACH drops (CO₂ rises above its occupancy-expected level). It is
//! standardized by the sensor noise: `σ_r = σ·√(1 + e^(−2·ACH·Δt))` (the prediction carries
//! the previous reading's noise). A slow sensor drift `d` moves the residual by only
//! `d·(1 − e^(−ACH·Δt))`. An empty room produces no CO₂, so a failure while empty is not
//! detectable from CO₂ (and carries no risk).
//!
//! **Particle spike** ([`ParticleDetector`]): PM2.5 against a slowly tracking baseline (an
//! EWMA whose updates are clipped to `±z_clip·σ`, so a spike does not drag it up), residual
//! standardized by the sensor noise.

use serde::{Deserialize, Serialize};

use crate::risk::{CO2_GENERATION_M3_PER_H_PER_PERSON, OUTDOOR_CO2_PPM, Reading};
use crate::{AerosolError, non_negative, positive};

/// What an alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// CO₂ above its occupancy-expected level: ventilation lower than nominal.
    VentilationFailure,
    /// PM2.5 above its baseline.
    ParticleSpike,
}

/// An alarm raised by a detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// What was detected.
    pub kind: AlarmKind,
    /// Time of the reading that raised it, Unix seconds.
    pub t_s: u64,
    /// The chart statistic when it crossed its limit.
    pub statistic: f64,
}

/// A one-sided control chart's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "chart", rename_all = "snake_case")]
pub enum Chart {
    /// Upper CUSUM with reference value `k` and decision interval `h` (in σ units).
    Cusum {
        /// Reference value (allowance), σ units: half the shift to detect, typically.
        k: f64,
        /// Decision interval, σ units.
        h: f64,
    },
    /// Upper EWMA with smoothing `lambda` in (0, 1] and limit `l` (in asymptotic σ units).
    Ewma {
        /// Smoothing weight of the newest residual.
        lambda: f64,
        /// Control limit, multiples of the EWMA's asymptotic standard deviation.
        l: f64,
    },
}

impl Chart {
    fn validate(&self) -> Result<(), AerosolError> {
        match *self {
            Chart::Cusum { k, h } => {
                non_negative("k", k)?;
                positive("h", h)?;
            }
            Chart::Ewma { lambda, l } => {
                positive("lambda", lambda)?;
                if lambda > 1.0 {
                    return Err(AerosolError::OutOfRange {
                        name: "lambda",
                        rule: "in (0, 1]",
                        value: lambda,
                    });
                }
                positive("l", l)?;
            }
        }
        Ok(())
    }
}

/// The running state of a [`Chart`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartState {
    chart: Chart,
    statistic: f64,
}

impl ChartState {
    /// A chart at rest.
    pub fn new(chart: Chart) -> Result<Self, AerosolError> {
        chart.validate()?;
        Ok(Self {
            chart,
            statistic: 0.0,
        })
    }

    /// Adds one standardized residual; returns the statistic when it crosses the limit
    /// (and restarts the chart). A non-finite residual is ignored.
    pub fn update(&mut self, z: f64) -> Option<f64> {
        if !z.is_finite() {
            return None;
        }
        let (statistic, limit) = match self.chart {
            Chart::Cusum { k, h } => ((self.statistic + z - k).max(0.0), h),
            Chart::Ewma { lambda, l } => (
                lambda * z + (1.0 - lambda) * self.statistic,
                l * (lambda / (2.0 - lambda)).sqrt(),
            ),
        };
        if statistic > limit {
            self.statistic = 0.0;
            Some(statistic)
        } else {
            self.statistic = statistic;
            None
        }
    }

    /// The current statistic.
    pub fn statistic(&self) -> f64 {
        self.statistic
    }

    /// Restarts the chart.
    pub fn reset(&mut self) {
        self.statistic = 0.0;
    }
}

/// Configuration of the [`VentilationDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VentilationConfig {
    /// Room volume, m³.
    pub volume_m3: f64,
    /// Nominal (commissioned) air changes per hour.
    pub nominal_ach_per_h: f64,
    /// Outdoor CO₂, ppm.
    pub outdoor_co2_ppm: f64,
    /// CO₂ generation per person, m³/h.
    pub co2_generation_m3_per_h_per_person: f64,
    /// CO₂ sensor noise (standard deviation), ppm.
    pub noise_sd_ppm: f64,
    /// Standardized residuals are clipped to ±this before the chart.
    pub z_clip: f64,
    /// The chart.
    pub chart: Chart,
    /// No second alarm within this many seconds of an alarm.
    pub holdoff_s: u64,
    /// A gap between readings longer than this restarts the prediction.
    pub max_gap_s: u64,
}

impl VentilationConfig {
    /// Defaults for a room of `volume_m3` ventilated at `nominal_ach_per_h`: NDIR sensor
    /// noise 15 ppm, CUSUM k = 0.75, h = 6 (in-control run length ≈ 4·10⁴ iid readings,
    /// about a month at one reading a minute), 2 h hold-off.
    pub fn new(volume_m3: f64, nominal_ach_per_h: f64) -> Self {
        Self {
            volume_m3,
            nominal_ach_per_h,
            outdoor_co2_ppm: OUTDOOR_CO2_PPM,
            co2_generation_m3_per_h_per_person: CO2_GENERATION_M3_PER_H_PER_PERSON,
            noise_sd_ppm: 15.0,
            z_clip: 4.0,
            chart: Chart::Cusum { k: 0.75, h: 6.0 },
            holdoff_s: 2 * 3600,
            max_gap_s: 15 * 60,
        }
    }

    fn validate(&self) -> Result<(), AerosolError> {
        positive("volume_m3", self.volume_m3)?;
        positive("nominal_ach_per_h", self.nominal_ach_per_h)?;
        non_negative("outdoor_co2_ppm", self.outdoor_co2_ppm)?;
        non_negative(
            "co2_generation_m3_per_h_per_person",
            self.co2_generation_m3_per_h_per_person,
        )?;
        positive("noise_sd_ppm", self.noise_sd_ppm)?;
        positive("z_clip", self.z_clip)?;
        self.chart.validate()
    }
}

/// Detects ventilation failure: CO₂ rising above its occupancy-expected level.
#[derive(Debug, Clone)]
pub struct VentilationDetector {
    cfg: VentilationConfig,
    chart: ChartState,
    /// The previous usable reading: time, CO₂, occupancy.
    prev: Option<(u64, f64, u32)>,
    holdoff_until_s: Option<u64>,
}

impl VentilationDetector {
    /// A detector with no history.
    pub fn new(cfg: VentilationConfig) -> Result<Self, AerosolError> {
        cfg.validate()?;
        Ok(Self {
            chart: ChartState::new(cfg.chart)?,
            cfg,
            prev: None,
            holdoff_until_s: None,
        })
    }

    /// The CO₂ expected at `t_s` from the previous reading, if there is one close enough.
    pub fn predicted_co2_ppm(&self, t_s: u64) -> Option<f64> {
        let (t0, c0, n0) = self.prev?;
        if t_s <= t0 || t_s - t0 > self.cfg.max_gap_s {
            return None;
        }
        let dt_h = (t_s - t0) as f64 / 3600.0;
        let a = self.cfg.nominal_ach_per_h;
        let c_ss = self.cfg.outdoor_co2_ppm
            + f64::from(n0) * self.cfg.co2_generation_m3_per_h_per_person * 1e6
                / (a * self.cfg.volume_m3);
        Some(c_ss + (c0 - c_ss) * (-a * dt_h).exp())
    }

    /// Feeds one reading. Readings with a non-finite or negative CO₂ are ignored; a reading
    /// out of time order restarts the prediction.
    pub fn push(&mut self, r: &Reading) -> Option<Alarm> {
        if !(r.co2_ppm.is_finite() && r.co2_ppm >= 0.0) {
            return None;
        }
        let predicted = self.predicted_co2_ppm(r.t_s);
        let dt_s = self.prev.map(|(t0, _, _)| r.t_s.saturating_sub(t0));
        self.prev = Some((r.t_s, r.co2_ppm, r.occupancy));
        let (predicted, dt_s) = (predicted?, dt_s?);
        let decay = (-self.cfg.nominal_ach_per_h * dt_s as f64 / 3600.0).exp();
        let sd = self.cfg.noise_sd_ppm * (1.0 + decay * decay).sqrt();
        let z = ((r.co2_ppm - predicted) / sd).clamp(-self.cfg.z_clip, self.cfg.z_clip);
        alarm_after(
            &mut self.chart,
            &mut self.holdoff_until_s,
            self.cfg.holdoff_s,
            z,
            r.t_s,
            AlarmKind::VentilationFailure,
        )
    }

    /// The chart's current statistic.
    pub fn statistic(&self) -> f64 {
        self.chart.statistic()
    }
}

/// Runs the chart and the hold-off; shared by both detectors.
fn alarm_after(
    chart: &mut ChartState,
    holdoff_until_s: &mut Option<u64>,
    holdoff_s: u64,
    z: f64,
    t_s: u64,
    kind: AlarmKind,
) -> Option<Alarm> {
    if let Some(until) = *holdoff_until_s {
        if t_s < until {
            chart.reset();
            return None;
        }
        *holdoff_until_s = None;
    }
    let statistic = chart.update(z)?;
    *holdoff_until_s = Some(t_s.saturating_add(holdoff_s));
    Some(Alarm {
        kind,
        t_s,
        statistic,
    })
}

/// Configuration of the [`ParticleDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParticleConfig {
    /// PM2.5 sensor noise (standard deviation), µg/m³.
    pub noise_sd_ug_m3: f64,
    /// Weight of a new reading in the baseline EWMA (per reading).
    pub baseline_weight: f64,
    /// Standardized residuals (and baseline updates, in σ) are clipped to ±this.
    pub z_clip: f64,
    /// The chart.
    pub chart: Chart,
    /// No second alarm within this many seconds of an alarm.
    pub holdoff_s: u64,
}

impl Default for ParticleConfig {
    /// Low-cost optical sensor noise 1.5 µg/m³, baseline time constant ≈ 50 readings,
    /// CUSUM k = 1, h = 6, 1 h hold-off.
    fn default() -> Self {
        Self {
            noise_sd_ug_m3: 1.5,
            baseline_weight: 0.02,
            z_clip: 4.0,
            chart: Chart::Cusum { k: 1.0, h: 6.0 },
            holdoff_s: 3600,
        }
    }
}

impl ParticleConfig {
    fn validate(&self) -> Result<(), AerosolError> {
        positive("noise_sd_ug_m3", self.noise_sd_ug_m3)?;
        positive("baseline_weight", self.baseline_weight)?;
        if self.baseline_weight > 1.0 {
            return Err(AerosolError::OutOfRange {
                name: "baseline_weight",
                rule: "in (0, 1]",
                value: self.baseline_weight,
            });
        }
        positive("z_clip", self.z_clip)?;
        self.chart.validate()
    }
}

/// Detects particle spikes: PM2.5 above its slowly tracking baseline.
#[derive(Debug, Clone)]
pub struct ParticleDetector {
    cfg: ParticleConfig,
    chart: ChartState,
    baseline_ug_m3: Option<f64>,
    holdoff_until_s: Option<u64>,
}

impl ParticleDetector {
    /// A detector with no history (its first reading sets the baseline).
    pub fn new(cfg: ParticleConfig) -> Result<Self, AerosolError> {
        cfg.validate()?;
        Ok(Self {
            chart: ChartState::new(cfg.chart)?,
            cfg,
            baseline_ug_m3: None,
            holdoff_until_s: None,
        })
    }

    /// The current baseline, µg/m³.
    pub fn baseline_ug_m3(&self) -> Option<f64> {
        self.baseline_ug_m3
    }

    /// Feeds one reading; readings with a non-finite or negative PM2.5 are ignored.
    pub fn push(&mut self, r: &Reading) -> Option<Alarm> {
        let x = r.pm25_ug_m3;
        if !(x.is_finite() && x >= 0.0) {
            return None;
        }
        let Some(b) = self.baseline_ug_m3 else {
            self.baseline_ug_m3 = Some(x);
            return None;
        };
        let sd = self.cfg.noise_sd_ug_m3;
        let z = ((x - b) / sd).clamp(-self.cfg.z_clip, self.cfg.z_clip);
        self.baseline_ug_m3 = Some(b + self.cfg.baseline_weight * z * sd);
        alarm_after(
            &mut self.chart,
            &mut self.holdoff_until_s,
            self.cfg.holdoff_s,
            z,
            r.t_s,
            AlarmKind::ParticleSpike,
        )
    }

    /// The chart's current statistic.
    pub fn statistic(&self) -> f64 {
        self.chart.statistic()
    }
}
