//! Probability of airborne infection in a well-mixed room.
//!
//! # Box model (Jimenez / Miller et al.)
//! The model of the "COVID-19 Aerosol Transmission Estimator" (J. L. Jimenez & Z. Peng,
//! CU Boulder, <https://tinyurl.com/covid-estimator>) and of Miller et al., "Transmission of
//! SARS-CoV-2 by inhalation of respiratory aerosol in the Skagit Valley Chorale
//! superspreading event", Indoor Air 31(2), 2021, doi:10.1111/ina.12751 (their eqs. 1 and 4):
//! - first-order loss rate λ = ACH + 0.62 h⁻¹ (viral decay) + 0.3 h⁻¹ (deposition);
//! - net emission E = quanta/h × infected × (1 − exhalation mask efficiency);
//! - mean quanta concentration over an event of T hours that starts with clean air,
//!   C̄ = E / (λV) · [1 − (1 − e^(−λT)) / (λT)];
//! - quanta inhaled n = C̄ · B · T · (1 − inhalation mask efficiency);
//! - P = 1 − e^(−n).
//!
//! The estimator multiplies each mask efficiency by the fraction of people wearing masks;
//! pass the product here.
//!
//! # Rudnick–Milton (CO₂ only)
//! S. N. Rudnick and D. K. Milton, "Risk of indoor airborne infection transmission estimated
//! from carbon dioxide concentration", Indoor Air 13(3):237–245, 2003 (abstract:
//! <https://www.cdc.gov/niosh/nioshtic-2/20038645.html>). The rebreathed fraction — the part
//! of inhaled air that was exhaled by someone in the room — is read from CO₂:
//! f = (C − C₀) / Cₐ, with C the mean indoor CO₂, C₀ the outdoor CO₂ (≈ 415 ppm today) and
//! Cₐ ≈ 38,000 ppm the CO₂ concentration of exhaled breath. Their Wells–Riley form is
//! P = 1 − exp(−f · I · q · t / n), with I infectors, q quanta/h per infector, t hours and
//! n people in the room. It needs no ventilation rate and no steady state.

use serde::{Deserialize, Serialize};

use crate::{AerosolError, finite, fraction, non_negative, positive};

/// Viral decay rate of SARS-CoV-2 in aerosol used by the estimator, per hour.
pub const VIRAL_DECAY_PER_H: f64 = 0.62;
/// Deposition rate of infectious aerosol onto surfaces used by the estimator, per hour.
pub const DEPOSITION_PER_H: f64 = 0.3;
/// CO₂ concentration of exhaled breath (Rudnick & Milton 2003), ppm.
pub const EXHALED_CO2_PPM: f64 = 38_000.0;
/// Default outdoor CO₂ concentration (global background, early 2020s), ppm.
pub const OUTDOOR_CO2_PPM: f64 = 415.0;
/// CO₂ generation of a seated adult doing office work, m³/h per person: 0.0052 L/s
/// (ASHRAE 62.1 / Persily & de Jonge 2017 give 0.0043–0.0052 L/s for sedentary adults).
pub const CO2_GENERATION_M3_PER_H_PER_PERSON: f64 = 0.0052 * 3.6;

/// Inputs of the box model, in the estimator's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxModelInput {
    /// Room volume, m³ (> 0).
    pub volume_m3: f64,
    /// Ventilation with outdoor air (plus filtration equivalents), air changes per hour (≥ 0).
    pub ach_per_h: f64,
    /// Quanta emission rate of one infected person, quanta/h (≥ 0).
    pub quanta_per_h: f64,
    /// Number of infected people (≥ 0; may be fractional, an expected number).
    pub infected: f64,
    /// Exhalation mask efficiency in [0, 1] (× fraction of people masked).
    pub mask_out: f64,
    /// Inhalation mask efficiency in [0, 1] (× fraction of people masked).
    pub mask_in: f64,
    /// Breathing rate of a susceptible person, m³/h (≥ 0).
    pub breathing_m3_per_h: f64,
    /// Duration of the event, hours (> 0).
    pub hours: f64,
}

/// The box model's result for one susceptible person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskEstimate {
    /// First-order loss rate λ, per hour.
    pub lambda_per_h: f64,
    /// Net emission rate E, quanta/h.
    pub emission_quanta_per_h: f64,
    /// Mean quanta concentration over the event, quanta/m³.
    pub mean_quanta_per_m3: f64,
    /// Quanta inhaled by one susceptible person.
    pub quanta_inhaled: f64,
    /// Probability of infection of one susceptible person, in [0, 1].
    pub probability: f64,
}

impl BoxModelInput {
    /// Checks every field: finite, non-negative, volume and hours > 0, efficiencies in [0, 1].
    pub fn validate(&self) -> Result<(), AerosolError> {
        positive("volume_m3", self.volume_m3)?;
        non_negative("ach_per_h", self.ach_per_h)?;
        non_negative("quanta_per_h", self.quanta_per_h)?;
        non_negative("infected", self.infected)?;
        fraction("mask_out", self.mask_out)?;
        fraction("mask_in", self.mask_in)?;
        non_negative("breathing_m3_per_h", self.breathing_m3_per_h)?;
        positive("hours", self.hours)?;
        Ok(())
    }
}

/// `1 − (1 − e^(−x)) / x` for `x > 0`: the fraction of the steady-state concentration
/// reached on average over an event starting from clean air. Below `x = 1e-3` a Taylor
/// series keeps full precision (the closed form cancels catastrophically there).
pub fn buildup_factor(x: f64) -> f64 {
    if x < 1e-3 {
        // x/2 − x²/6 + x³/24 − x⁴/120; the next term is below 1e-15 relative.
        x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x / 120.0)))
    } else {
        1.0 + (-x).exp_m1() / x
    }
}

/// The box model: probability that one susceptible person in the room is infected.
pub fn box_model(input: &BoxModelInput) -> Result<RiskEstimate, AerosolError> {
    input.validate()?;
    let lambda_per_h = input.ach_per_h + VIRAL_DECAY_PER_H + DEPOSITION_PER_H;
    let emission_quanta_per_h = input.quanta_per_h * input.infected * (1.0 - input.mask_out);
    let mean_quanta_per_m3 = emission_quanta_per_h / (lambda_per_h * input.volume_m3)
        * buildup_factor(lambda_per_h * input.hours);
    let quanta_inhaled =
        mean_quanta_per_m3 * input.breathing_m3_per_h * input.hours * (1.0 - input.mask_in);
    for (what, v) in [
        ("lambda_per_h", lambda_per_h),
        ("emission_quanta_per_h", emission_quanta_per_h),
        ("mean_quanta_per_m3", mean_quanta_per_m3),
        ("quanta_inhaled", quanta_inhaled),
    ] {
        if !v.is_finite() {
            return Err(AerosolError::Overflow { what });
        }
    }
    Ok(RiskEstimate {
        lambda_per_h,
        emission_quanta_per_h,
        mean_quanta_per_m3,
        quanta_inhaled,
        probability: infection_probability(quanta_inhaled),
    })
}

/// The carried quanta concentration of a room under the continuous box model: the same
/// first-order loss as [`box_model`] (λ = ACH + [`VIRAL_DECAY_PER_H`] + [`DEPOSITION_PER_H`]),
/// but the air of a window starts with what the previous windows left instead of clean air.
///
/// Over an interval of `T` hours with a constant emission `E·f` (`E` the net emission of the
/// hypothetical infector, `f` the fraction of the interval the room was occupied: the
/// infector is assumed present whenever anyone is) the exact solution of
/// `dC/dt = E·f/V − λC` from `C₀` is, with `C_ss = E·f/(λV)` and `x = λT`,
/// - `C(T) = C_ss + (C₀ − C_ss)·e^(−x)`,
/// - mean `C̄ = C_ss·[1 − (1 − e^(−x))/x] + C₀·(1 − e^(−x))/x`.
///
/// From clean air (`C₀ = 0`) `C̄` is [`box_model`]'s mean concentration; a room occupied
/// window after window tends to the steady state `E/(λV)`; an empty room decays by
/// `e^(−λT)`. [`CarryOver::step`] returns `C̄` for [`conditional_probability`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CarryOver {
    volume_m3: f64,
    emission_quanta_per_h: f64,
    quanta_per_m3: f64,
}

impl CarryOver {
    /// Clean air in a room of `volume_m3` (> 0) whose hypothetical infector emits
    /// `emission_quanta_per_h` (≥ 0; quanta/h × infectors × (1 − exhalation mask)) while the
    /// room is occupied.
    pub fn new(volume_m3: f64, emission_quanta_per_h: f64) -> Result<Self, AerosolError> {
        Ok(Self {
            volume_m3: positive("volume_m3", volume_m3)?,
            emission_quanta_per_h: non_negative("emission_quanta_per_h", emission_quanta_per_h)?,
            quanta_per_m3: 0.0,
        })
    }

    /// The state of `params`' conditional risk ([`WindowParams::quanta_per_h`] ×
    /// [`WindowParams::infected`] × (1 − [`WindowParams::mask_out`])) in a room of
    /// `volume_m3`.
    pub fn for_params(volume_m3: f64, params: &WindowParams) -> Result<Self, AerosolError> {
        non_negative("quanta_per_h", params.quanta_per_h)?;
        non_negative("infected", params.infected)?;
        fraction("mask_out", params.mask_out)?;
        Self::new(
            volume_m3,
            params.quanta_per_h * params.infected * (1.0 - params.mask_out),
        )
    }

    /// The carried concentration now, quanta/m³.
    pub fn quanta_per_m3(&self) -> f64 {
        self.quanta_per_m3
    }

    /// Back to clean air.
    pub fn reset(&mut self) {
        self.quanta_per_m3 = 0.0;
    }

    /// Advances `hours` (> 0) with the room occupied for `occupied_fraction` (in [0, 1]) of
    /// them at `ach_per_h` (≥ 0) and returns the mean concentration over the interval,
    /// quanta/m³. A refused input changes nothing.
    pub fn step(
        &mut self,
        occupied_fraction: f64,
        ach_per_h: f64,
        hours: f64,
    ) -> Result<f64, AerosolError> {
        fraction("occupied_fraction", occupied_fraction)?;
        non_negative("ach_per_h", ach_per_h)?;
        positive("hours", hours)?;
        let lambda = ach_per_h + VIRAL_DECAY_PER_H + DEPOSITION_PER_H;
        let css = self.emission_quanta_per_h * occupied_fraction / (lambda * self.volume_m3);
        let x = lambda * hours;
        let kept = (-x).exp();
        // (1 − e^(−x)) / x, the mean of e^(−λt) over the interval.
        let mean_kept = 1.0 - buildup_factor(x);
        let mean = css * buildup_factor(x) + self.quanta_per_m3 * mean_kept;
        let end = css + (self.quanta_per_m3 - css) * kept;
        if !(mean.is_finite() && end.is_finite()) {
            return Err(AerosolError::Overflow {
                what: "quanta_per_m3",
            });
        }
        self.quanta_per_m3 = end.max(0.0);
        Ok(mean.max(0.0))
    }

    /// Advances `hours` (≥ 0) of an empty room at `ach_per_h`: the concentration decays by
    /// `e^(−λ·hours)`.
    pub fn decay(&mut self, ach_per_h: f64, hours: f64) -> Result<(), AerosolError> {
        non_negative("hours", hours)?;
        if hours > 0.0 {
            self.step(0.0, ach_per_h, hours)?;
        }
        Ok(())
    }
}

/// Probability of infection of a susceptible present for the whole `hours` at the mean
/// concentration `mean_quanta_per_m3`: `1 − e^(−C̄·B·T·(1 − mask_in))`.
pub fn conditional_probability(
    mean_quanta_per_m3: f64,
    breathing_m3_per_h: f64,
    hours: f64,
    mask_in: f64,
) -> Result<f64, AerosolError> {
    non_negative("mean_quanta_per_m3", mean_quanta_per_m3)?;
    non_negative("breathing_m3_per_h", breathing_m3_per_h)?;
    non_negative("hours", hours)?;
    fraction("mask_in", mask_in)?;
    let n = mean_quanta_per_m3 * breathing_m3_per_h * hours * (1.0 - mask_in);
    if !n.is_finite() {
        return Err(AerosolError::Overflow {
            what: "quanta_inhaled",
        });
    }
    Ok(infection_probability(n))
}

/// `1 − e^(−n)` (Wells–Riley), computed without cancellation for small `n`.
pub fn infection_probability(quanta_inhaled: f64) -> f64 {
    (-(-quanta_inhaled).exp_m1()).clamp(0.0, 1.0)
}

/// The rebreathed fraction `f = (C − C₀) / 38,000 ppm`; 0 when the indoor reading is at or
/// below the outdoor level (no one's breath in the air, or a sensor offset).
pub fn rebreathed_fraction(co2_ppm: f64, outdoor_co2_ppm: f64) -> Result<f64, AerosolError> {
    non_negative("co2_ppm", co2_ppm)?;
    non_negative("outdoor_co2_ppm", outdoor_co2_ppm)?;
    Ok(((co2_ppm - outdoor_co2_ppm) / EXHALED_CO2_PPM).max(0.0))
}

/// Inputs of the Rudnick–Milton form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RudnickMiltonInput {
    /// Mean indoor CO₂ over the exposure, ppm.
    pub mean_co2_ppm: f64,
    /// Outdoor CO₂, ppm (see [`OUTDOOR_CO2_PPM`]).
    pub outdoor_co2_ppm: f64,
    /// Number of infectors I (≥ 0).
    pub infected: f64,
    /// Quanta emission rate of one infector q, quanta/h (≥ 0).
    pub quanta_per_h: f64,
    /// Exposure time t, hours (> 0).
    pub hours: f64,
    /// Number of people n in the room, infectors included (> 0).
    pub people: f64,
}

/// The Rudnick–Milton result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RebreathedEstimate {
    /// Rebreathed fraction f.
    pub rebreathed_fraction: f64,
    /// Quanta inhaled, `f · I · q · t / n`.
    pub quanta_inhaled: f64,
    /// Probability of infection of one susceptible person.
    pub probability: f64,
}

/// Rudnick–Milton: `P = 1 − exp(−f · I · q · t / n)` with `f` from CO₂.
pub fn rudnick_milton(input: &RudnickMiltonInput) -> Result<RebreathedEstimate, AerosolError> {
    let f = rebreathed_fraction(input.mean_co2_ppm, input.outdoor_co2_ppm)?;
    non_negative("infected", input.infected)?;
    non_negative("quanta_per_h", input.quanta_per_h)?;
    positive("hours", input.hours)?;
    positive("people", input.people)?;
    let quanta_inhaled = f * input.infected * input.quanta_per_h * input.hours / input.people;
    if !quanta_inhaled.is_finite() {
        return Err(AerosolError::Overflow {
            what: "quanta_inhaled",
        });
    }
    Ok(RebreathedEstimate {
        rebreathed_fraction: f,
        quanta_inhaled,
        probability: infection_probability(quanta_inhaled),
    })
}

/// Air changes per hour from CO₂ by the steady-state method: at steady state the CO₂
/// generated by `people` equals what ventilation removes, `N·G = Q·(C − C₀)`, so
/// `ACH = N·G / (V · (C − C₀) · 10⁻⁶)`. `None` when the room is empty or the excess over
/// outdoor air is below `min_excess_ppm` (noise would dominate).
///
/// Bias: before steady state (the first ~1/ACH hours after people arrive) C is below its
/// steady level, so ACH is over-estimated and the risk under-estimated; after people leave
/// it is the reverse. Window means over an occupied hour or more keep this small.
pub fn ach_steady_state(
    volume_m3: f64,
    people: f64,
    co2_ppm: f64,
    outdoor_co2_ppm: f64,
    co2_generation_m3_per_h_per_person: f64,
    min_excess_ppm: f64,
) -> Option<f64> {
    let excess_ppm = co2_ppm - outdoor_co2_ppm;
    // Written positively so that NaN inputs fail the test too.
    let usable = volume_m3 > 0.0 && people > 0.0 && excess_ppm >= min_excess_ppm.max(1.0);
    if !usable {
        return None;
    }
    let ach = people * co2_generation_m3_per_h_per_person / (volume_m3 * excess_ppm * 1e-6);
    ach.is_finite().then_some(ach)
}

/// One reading of a room's air-quality device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Time of the reading, Unix seconds.
    pub t_s: u64,
    /// CO₂, ppm.
    pub co2_ppm: f64,
    /// PM2.5, µg/m³.
    pub pm25_ug_m3: f64,
    /// Temperature, °C.
    pub temperature_c: f64,
    /// Relative humidity, %.
    pub humidity_pct: f64,
    /// People counted in the room.
    pub occupancy: u32,
}

/// A room: its volume and, when known, its ventilation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// Volume, m³.
    pub volume_m3: f64,
    /// Air changes per hour if known (commissioning data); else estimated from CO₂.
    pub ach_per_h: Option<f64>,
}

/// Assumptions of the per-window estimator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowParams {
    /// Window length, seconds; windows are aligned to multiples of it.
    pub window_s: u64,
    /// Quanta emission rate of one infector, quanta/h.
    pub quanta_per_h: f64,
    /// Infectors assumed present (the estimator's conditional risk: "if one person in the
    /// room is infectious"); may be fractional, e.g. occupancy × prevalence.
    pub infected: f64,
    /// Breathing rate of susceptibles, m³/h.
    pub breathing_m3_per_h: f64,
    /// Exhalation mask efficiency × fraction masked.
    pub mask_out: f64,
    /// Inhalation mask efficiency × fraction masked.
    pub mask_in: f64,
    /// Outdoor CO₂, ppm.
    pub outdoor_co2_ppm: f64,
    /// CO₂ generation per person, m³/h.
    pub co2_generation_m3_per_h_per_person: f64,
    /// Minimum CO₂ excess over outdoor air to estimate ACH from CO₂, ppm.
    pub min_excess_ppm: f64,
}

impl Default for WindowParams {
    /// 15-minute windows, one infector speaking (25 quanta/h, the order of the estimator's
    /// "speaking" values), sedentary breathing 0.72 m³/h (the estimator's default), no masks.
    fn default() -> Self {
        Self {
            window_s: 900,
            quanta_per_h: 25.0,
            infected: 1.0,
            breathing_m3_per_h: 0.72,
            mask_out: 0.0,
            mask_in: 0.0,
            outdoor_co2_ppm: OUTDOOR_CO2_PPM,
            co2_generation_m3_per_h_per_person: CO2_GENERATION_M3_PER_H_PER_PERSON,
            min_excess_ppm: 50.0,
        }
    }
}

/// Where a window's ventilation rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AchSource {
    /// The room's known ACH.
    Given,
    /// Estimated from the window's mean CO₂ and occupancy (steady-state method).
    Co2SteadyState,
    /// Not available (empty room or CO₂ too close to outdoor air).
    Unavailable,
}

/// The estimated risk of one window of a room.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowRisk {
    /// Window start, Unix seconds (inclusive).
    pub start_s: u64,
    /// Window end, Unix seconds (exclusive).
    pub end_s: u64,
    /// Readings in the window.
    pub readings: u32,
    /// Mean CO₂, ppm.
    pub mean_co2_ppm: f64,
    /// Mean PM2.5, µg/m³.
    pub mean_pm25_ug_m3: f64,
    /// Mean temperature, °C.
    pub mean_temperature_c: f64,
    /// Mean relative humidity, %.
    pub mean_humidity_pct: f64,
    /// Mean occupancy.
    pub mean_occupancy: f64,
    /// Ventilation used, air changes per hour.
    pub ach_per_h: Option<f64>,
    /// Where `ach_per_h` came from.
    pub ach_source: AchSource,
    /// Box-model estimate, when a ventilation rate is available.
    pub box_model: Option<RiskEstimate>,
    /// Rudnick–Milton estimate, when the room is occupied.
    pub rebreathed: Option<RebreathedEstimate>,
    /// The window's risk: the box model's when available, else Rudnick–Milton's; 0 for an
    /// empty room (no one to infect).
    pub probability: f64,
}

/// Bound on the readings of one call (a day of 1 Hz readings is 86,400).
pub const MAX_WINDOW_READINGS: usize = 10_000_000;

/// Per-window risk of a room from its time-ordered readings. Each window is scored as one
/// event of the window's length starting with clean air (as the estimator scores an event),
/// with the window's mean occupancy and CO₂; windows without readings are skipped.
pub fn estimate_windows(
    room: &Room,
    readings: &[Reading],
    params: &WindowParams,
) -> Result<Vec<WindowRisk>, AerosolError> {
    positive("volume_m3", room.volume_m3)?;
    if let Some(ach) = room.ach_per_h {
        non_negative("ach_per_h", ach)?;
    }
    if params.window_s == 0 {
        return Err(AerosolError::OutOfRange {
            name: "window_s",
            rule: "> 0",
            value: 0.0,
        });
    }
    non_negative("outdoor_co2_ppm", params.outdoor_co2_ppm)?;
    positive(
        "co2_generation_m3_per_h_per_person",
        params.co2_generation_m3_per_h_per_person,
    )?;
    non_negative("min_excess_ppm", params.min_excess_ppm)?;
    if readings.len() > MAX_WINDOW_READINGS {
        return Err(AerosolError::TooMany {
            what: "readings",
            len: readings.len(),
            max: MAX_WINDOW_READINGS,
        });
    }
    let hours = params.window_s as f64 / 3600.0;
    let mut out = Vec::new();
    let mut i = 0;
    while i < readings.len() {
        let window = readings[i].t_s / params.window_s;
        let start = i;
        let mut sums = [0.0f64; 5];
        while i < readings.len() && readings[i].t_s / params.window_s == window {
            let r = &readings[i];
            if i > 0 && r.t_s < readings[i - 1].t_s {
                return Err(AerosolError::Unordered {
                    index: i,
                    t_s: r.t_s,
                    prev_s: readings[i - 1].t_s,
                });
            }
            sums[0] += non_negative("co2_ppm", r.co2_ppm)?;
            sums[1] += non_negative("pm25_ug_m3", r.pm25_ug_m3)?;
            sums[2] += finite("temperature_c", r.temperature_c)?;
            sums[3] += finite("humidity_pct", r.humidity_pct)?;
            sums[4] += f64::from(r.occupancy);
            i += 1;
        }
        if i < readings.len() && readings[i].t_s < readings[i - 1].t_s {
            return Err(AerosolError::Unordered {
                index: i,
                t_s: readings[i].t_s,
                prev_s: readings[i - 1].t_s,
            });
        }
        let n = (i - start) as f64;
        let [co2, pm25, temp, rh, occ] = sums.map(|s| s / n);
        let (ach, source) = match room.ach_per_h {
            Some(a) => (Some(a), AchSource::Given),
            None => match ach_steady_state(
                room.volume_m3,
                occ,
                co2,
                params.outdoor_co2_ppm,
                params.co2_generation_m3_per_h_per_person,
                params.min_excess_ppm,
            ) {
                Some(a) => (Some(a), AchSource::Co2SteadyState),
                None => (None, AchSource::Unavailable),
            },
        };
        let occupied = occ > 0.0;
        let box_est = match ach {
            Some(ach_per_h) if occupied => Some(box_model(&BoxModelInput {
                volume_m3: room.volume_m3,
                ach_per_h,
                quanta_per_h: params.quanta_per_h,
                infected: params.infected,
                mask_out: params.mask_out,
                mask_in: params.mask_in,
                breathing_m3_per_h: params.breathing_m3_per_h,
                hours,
            })?),
            _ => None,
        };
        let rebreathed = if occupied {
            Some(rudnick_milton(&RudnickMiltonInput {
                mean_co2_ppm: co2,
                outdoor_co2_ppm: params.outdoor_co2_ppm,
                infected: params.infected,
                quanta_per_h: params.quanta_per_h,
                hours,
                people: occ.max(params.infected).max(1.0),
            })?)
        } else {
            None
        };
        let probability = box_est
            .map(|b| b.probability)
            .or(rebreathed.map(|r| r.probability))
            .unwrap_or(0.0);
        out.push(WindowRisk {
            start_s: window * params.window_s,
            end_s: window.saturating_add(1).saturating_mul(params.window_s),
            readings: u32::try_from(i - start).unwrap_or(u32::MAX),
            mean_co2_ppm: co2,
            mean_pm25_ug_m3: pm25,
            mean_temperature_c: temp,
            mean_humidity_pct: rh,
            mean_occupancy: occ,
            ach_per_h: ach,
            ach_source: source,
            box_model: box_est,
            rebreathed,
            probability,
        });
    }
    Ok(out)
}
