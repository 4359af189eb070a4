//! A seeded simulator of one room's sensor series with injected events at known times, and
//! the evaluation of the detectors on it (detection delay, false alarms per day).
//!
//! The room: CO₂ follows the box model exactly over each step (piecewise-constant occupancy
//! and ventilation: `C ← C_ss + (C − C_ss)·e^(−ACH·Δt)`, `C_ss = C₀ + N·G / (ACH·V)`);
//! weekday office occupancy (arrivals 08:00–09:30, departures 16:30–18:00, lunch out for
//! half the people), occasional small weekend gatherings; ventilation varies a little from
//! day to day. PM2.5 is an outdoor baseline with a diurnal cycle plus indoor sources that
//! decay with ventilation and deposition.
//!
//! The sensors: Gaussian noise, a random-walk CO₂ offset (calibration drift), and rare
//! single-reading glitches on both channels (low-cost sensors do this).
//!
//! The events: ventilation failures (ACH falls to 10–30 % of nominal for 1–3 h during
//! occupied weekday hours) and PM2.5 sources (10–30 min, 30–120 µg/m³ asymptote) at any hour.
//!
//! Everything is drawn from `ChaCha8Rng::seed_from_u64(seed)`: a run replays from its seed.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::detect::{
    AlarmKind, Chart, ParticleConfig, ParticleDetector, VentilationConfig, VentilationDetector,
};
use crate::risk::{CO2_GENERATION_M3_PER_H_PER_PERSON, OUTDOOR_CO2_PPM, Reading};
use crate::{AerosolError, positive};

const DAY_S: u64 = 86_400;
const HOUR_S: f64 = 3600.0;

/// The simulated room and sensors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Seconds between readings.
    pub step_s: u64,
    /// Room volume, m³.
    pub volume_m3: f64,
    /// Nominal air changes per hour.
    pub nominal_ach_per_h: f64,
    /// Relative day-to-day variation of the actual ACH (standard deviation).
    pub ach_day_jitter: f64,
    /// Largest weekday headcount (each weekday draws one in `[max/2, max]`).
    pub max_occupancy: u32,
    /// CO₂ sensor noise, ppm.
    pub co2_noise_sd_ppm: f64,
    /// CO₂ calibration drift, ppm per √day (random walk).
    pub co2_drift_ppm_per_sqrt_day: f64,
    /// Mean outdoor-driven PM2.5 baseline, µg/m³.
    pub pm_baseline_ug_m3: f64,
    /// Amplitude of its diurnal cycle, µg/m³.
    pub pm_diurnal_ug_m3: f64,
    /// PM2.5 sensor noise, µg/m³.
    pub pm_noise_sd_ug_m3: f64,
    /// PM2.5 deposition rate, per hour.
    pub pm_deposition_per_h: f64,
    /// Probability of a single-reading glitch, per reading and channel.
    pub glitch_probability: f64,
    /// Probability that a weekday has a ventilation failure.
    pub ventilation_failure_probability: f64,
    /// Probability that a day has an indoor particle source.
    pub particle_spike_probability: f64,
}

impl Default for SimConfig {
    /// A 250 m³ meeting room / classroom at 3 ACH, up to 24 people, one reading a minute.
    fn default() -> Self {
        Self {
            step_s: 60,
            volume_m3: 250.0,
            nominal_ach_per_h: 3.0,
            ach_day_jitter: 0.05,
            max_occupancy: 24,
            co2_noise_sd_ppm: 15.0,
            co2_drift_ppm_per_sqrt_day: 10.0,
            pm_baseline_ug_m3: 8.0,
            pm_diurnal_ug_m3: 3.0,
            pm_noise_sd_ug_m3: 1.5,
            pm_deposition_per_h: 0.5,
            glitch_probability: 0.0005,
            ventilation_failure_probability: 0.4,
            particle_spike_probability: 0.6,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), AerosolError> {
        if self.step_s == 0 || self.step_s > 3600 {
            return Err(AerosolError::OutOfRange {
                name: "step_s",
                rule: "in [1, 3600]",
                value: self.step_s as f64,
            });
        }
        positive("volume_m3", self.volume_m3)?;
        positive("nominal_ach_per_h", self.nominal_ach_per_h)?;
        crate::non_negative("ach_day_jitter", self.ach_day_jitter)?;
        crate::non_negative("co2_noise_sd_ppm", self.co2_noise_sd_ppm)?;
        crate::non_negative(
            "co2_drift_ppm_per_sqrt_day",
            self.co2_drift_ppm_per_sqrt_day,
        )?;
        crate::non_negative("pm_baseline_ug_m3", self.pm_baseline_ug_m3)?;
        crate::non_negative("pm_diurnal_ug_m3", self.pm_diurnal_ug_m3)?;
        crate::non_negative("pm_noise_sd_ug_m3", self.pm_noise_sd_ug_m3)?;
        crate::non_negative("pm_deposition_per_h", self.pm_deposition_per_h)?;
        crate::fraction("glitch_probability", self.glitch_probability)?;
        crate::fraction(
            "ventilation_failure_probability",
            self.ventilation_failure_probability,
        )?;
        crate::fraction(
            "particle_spike_probability",
            self.particle_spike_probability,
        )?;
        Ok(())
    }
}

/// An injected event: the ground truth the detectors are scored against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: AlarmKind,
    /// Start, seconds from the start of the series.
    pub start_s: u64,
    /// End (exclusive).
    pub end_s: u64,
}

/// A simulated series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSeries {
    /// The readings, one per `step_s`, from t = 0 (a Monday, 00:00).
    pub readings: Vec<Reading>,
    /// The injected events, in time order.
    pub events: Vec<Event>,
}

/// Bound on simulated days (a year of minute readings is ~0.5 M readings).
pub const MAX_SIM_DAYS: u32 = 3660;

/// Uniform in `[lo, hi)`.
fn uniform(rng: &mut impl RngCore, lo: f64, hi: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    lo + (hi - lo) * u
}

/// A standard normal draw (Box–Muller; one of the pair is discarded to keep the stream
/// simple: the simulator is not sampling-bound).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // u1 in (0, 1]: ln(u1) is finite.
    let u1 = 1.0 - uniform(rng, 0.0, 1.0);
    let u2 = uniform(rng, 0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Simulates `days` days of one room from `seed`.
pub fn simulate(cfg: &SimConfig, seed: u64, days: u32) -> Result<SimSeries, AerosolError> {
    cfg.validate()?;
    if days == 0 || days > MAX_SIM_DAYS {
        return Err(AerosolError::OutOfRange {
            name: "days",
            rule: "in [1, 3660]",
            value: f64::from(days),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let steps_per_day = DAY_S / cfg.step_s;
    let dt_h = cfg.step_s as f64 / HOUR_S;
    let mut readings =
        Vec::with_capacity(usize::try_from(steps_per_day * u64::from(days)).unwrap_or(0));
    let mut events = Vec::new();
    let mut co2 = OUTDOOR_CO2_PPM;
    let mut pm_indoor = 0.0f64;
    let mut offset_ppm = 0.0f64;
    let drift_step_sd = cfg.co2_drift_ppm_per_sqrt_day * (cfg.step_s as f64 / DAY_S as f64).sqrt();
    for day in 0..u64::from(days) {
        let day_start = day * DAY_S;
        let weekday = day % 7 < 5;
        let ach_day =
            cfg.nominal_ach_per_h * (1.0 + cfg.ach_day_jitter * normal(&mut rng)).max(0.2);
        // Who is in: (arrive, leave, lunch out, lunch back) in seconds of the day.
        let mut people: Vec<(f64, f64, f64, f64)> = Vec::new();
        if weekday {
            let lo = f64::from(cfg.max_occupancy / 2);
            let n = uniform(&mut rng, lo, f64::from(cfg.max_occupancy) + 1.0).floor() as u32;
            for _ in 0..n {
                let arrive = uniform(&mut rng, 8.0, 9.5) * HOUR_S;
                let leave = uniform(&mut rng, 16.5, 18.0) * HOUR_S;
                let (out, back) = if uniform(&mut rng, 0.0, 1.0) < 0.5 {
                    let out = uniform(&mut rng, 12.0, 12.5) * HOUR_S;
                    (out, out + uniform(&mut rng, 0.75, 1.0) * HOUR_S)
                } else {
                    (0.0, 0.0)
                };
                people.push((arrive, leave, out, back));
            }
        } else if uniform(&mut rng, 0.0, 1.0) < 0.3 {
            let n = uniform(&mut rng, 3.0, 9.0).floor() as u32;
            for _ in 0..n {
                people.push((10.0 * HOUR_S, 14.0 * HOUR_S, 0.0, 0.0));
            }
        }
        let mut failure: Option<(u64, u64, f64)> = None;
        if weekday && uniform(&mut rng, 0.0, 1.0) < cfg.ventilation_failure_probability {
            let start = day_start + (uniform(&mut rng, 9.5, 14.5) * HOUR_S) as u64;
            let end = start + (uniform(&mut rng, 1.0, 3.0) * HOUR_S) as u64;
            failure = Some((start, end, uniform(&mut rng, 0.1, 0.3)));
            events.push(Event {
                kind: AlarmKind::VentilationFailure,
                start_s: start,
                end_s: end,
            });
        }
        let mut spike: Option<(u64, u64, f64)> = None;
        if uniform(&mut rng, 0.0, 1.0) < cfg.particle_spike_probability {
            let start = day_start + (uniform(&mut rng, 0.0, 23.0) * HOUR_S) as u64;
            let end = start + (uniform(&mut rng, 10.0, 30.0) * 60.0) as u64;
            spike = Some((start, end, uniform(&mut rng, 30.0, 120.0)));
            events.push(Event {
                kind: AlarmKind::ParticleSpike,
                start_s: start,
                end_s: end,
            });
        }
        for step in 0..steps_per_day {
            let t = day_start + step * cfg.step_s;
            let tod = (t - day_start) as f64;
            let occupancy = people
                .iter()
                .filter(|&&(a, l, o, b)| tod >= a && tod < l && !(tod >= o && tod < b))
                .count() as u32;
            let ach = match failure {
                Some((s, e, f)) if t >= s && t < e => ach_day * f,
                _ => ach_day,
            };
            // True CO₂ at t: exact box-model step over the previous interval.
            let c_ss = OUTDOOR_CO2_PPM
                + f64::from(occupancy) * CO2_GENERATION_M3_PER_H_PER_PERSON * 1e6
                    / (ach * cfg.volume_m3);
            co2 = c_ss + (co2 - c_ss) * (-ach * dt_h).exp();
            let k_pm = ach + cfg.pm_deposition_per_h;
            let pm_target = match spike {
                Some((s, e, a)) if t >= s && t < e => a,
                _ => 0.0,
            };
            pm_indoor = pm_target + (pm_indoor - pm_target) * (-k_pm * dt_h).exp();
            offset_ppm += drift_step_sd * normal(&mut rng);
            let phase = std::f64::consts::TAU * (tod / DAY_S as f64 - 0.25);
            let pm_base = cfg.pm_baseline_ug_m3 + cfg.pm_diurnal_ug_m3 * phase.sin();
            let mut co2_read = co2 + offset_ppm + cfg.co2_noise_sd_ppm * normal(&mut rng);
            let mut pm_read = pm_base + pm_indoor + cfg.pm_noise_sd_ug_m3 * normal(&mut rng);
            if uniform(&mut rng, 0.0, 1.0) < cfg.glitch_probability {
                co2_read += uniform(&mut rng, 100.0, 400.0);
            }
            if uniform(&mut rng, 0.0, 1.0) < cfg.glitch_probability {
                pm_read += uniform(&mut rng, 20.0, 80.0);
            }
            readings.push(Reading {
                t_s: t,
                co2_ppm: co2_read.max(0.0),
                pm25_ug_m3: pm_read.max(0.0),
                temperature_c: 21.0 + 1.5 * phase.sin() + 0.2 * normal(&mut rng),
                humidity_pct: 40.0 + 5.0 * phase.cos() + normal(&mut rng),
                occupancy,
            });
        }
    }
    events.sort_by_key(|e| e.start_s);
    Ok(SimSeries { readings, events })
}

/// Detectors and scoring used by [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// The simulated room.
    pub sim: SimConfig,
    /// The ventilation detector.
    pub ventilation: VentilationConfig,
    /// The particle detector.
    pub particle: ParticleConfig,
    /// An alarm up to this long after an event's end still detects it (the room takes
    /// 1/ACH hours to recover); later ones are false alarms.
    pub grace_s: u64,
}

impl EvalConfig {
    /// The default room with detectors matched to it, on the given chart family.
    pub fn with_chart(family: ChartFamily) -> Self {
        let sim = SimConfig::default();
        let mut ventilation = VentilationConfig::new(sim.volume_m3, sim.nominal_ach_per_h);
        ventilation.noise_sd_ppm = sim.co2_noise_sd_ppm;
        let mut particle = ParticleConfig {
            noise_sd_ug_m3: sim.pm_noise_sd_ug_m3,
            ..ParticleConfig::default()
        };
        if family == ChartFamily::Ewma {
            ventilation.chart = Chart::Ewma {
                lambda: 0.1,
                l: 4.0,
            };
            particle.chart = Chart::Ewma {
                lambda: 0.3,
                l: 4.5,
            };
        }
        Self {
            sim,
            ventilation,
            particle,
            grace_s: 3600,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self::with_chart(ChartFamily::Cusum)
    }
}

/// Which chart family [`EvalConfig::with_chart`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartFamily {
    /// One-sided CUSUM.
    Cusum,
    /// One-sided EWMA.
    Ewma,
}

/// Summary of detection delays, minutes (0 when nothing was detected).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelayStats {
    /// Mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
}

impl DelayStats {
    /// Statistics of `delays_min` (any order).
    pub fn of(delays_min: &[f64]) -> Self {
        if delays_min.is_empty() {
            return Self {
                mean: 0.0,
                p50: 0.0,
                p95: 0.0,
            };
        }
        let mut d = delays_min.to_vec();
        d.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len()) - 1;
            d[i]
        };
        Self {
            mean: d.iter().sum::<f64>() / d.len() as f64,
            p50: rank(0.5),
            p95: rank(0.95),
        }
    }
}

/// The score of one kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    /// Events injected.
    pub events: u32,
    /// Events with an alarm between their start and end + grace.
    pub detected: u32,
    /// Delay from event start to its first alarm, minutes.
    pub detection_delay_min: DelayStats,
    /// Alarms outside every event of this kind (with grace).
    pub false_alarms: u32,
    /// False alarms per simulated day.
    pub false_alarms_per_day: f64,
}

/// The evaluation of both detectors over a simulated series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The seed.
    pub seed: u64,
    /// Days simulated.
    pub days: u32,
    /// Chart family of both detectors.
    pub chart: ChartFamily,
    /// Readings processed.
    pub readings: u64,
    /// Events injected (both kinds).
    pub events: u32,
    /// Events detected (both kinds).
    pub detected: u32,
    /// Detection delay over all detected events, minutes.
    pub detection_delay_min: DelayStats,
    /// False alarms of both detectors.
    pub false_alarms: u32,
    /// False alarms per day, both detectors.
    pub false_alarms_per_day: f64,
    /// Ventilation failures alone.
    pub ventilation: KindReport,
    /// Particle spikes alone.
    pub particle: KindReport,
}

/// Simulates `days` days from `seed`, runs both detectors over the series and scores them.
pub fn evaluate(cfg: &EvalConfig, seed: u64, days: u32) -> Result<EvalReport, AerosolError> {
    let series = simulate(&cfg.sim, seed, days)?;
    let mut vent = VentilationDetector::new(cfg.ventilation)?;
    let mut pm = ParticleDetector::new(cfg.particle)?;
    let mut alarms = Vec::new();
    for r in &series.readings {
        alarms.extend(vent.push(r));
        alarms.extend(pm.push(r));
    }
    let chart = match cfg.ventilation.chart {
        Chart::Cusum { .. } => ChartFamily::Cusum,
        Chart::Ewma { .. } => ChartFamily::Ewma,
    };
    let score = |kind: AlarmKind| -> (KindReport, Vec<f64>) {
        let events: Vec<&Event> = series.events.iter().filter(|e| e.kind == kind).collect();
        let times: Vec<u64> = alarms
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.t_s)
            .collect();
        let mut delays = Vec::new();
        for e in &events {
            let until = e.end_s.saturating_add(cfg.grace_s);
            if let Some(t) = times.iter().find(|&&t| t >= e.start_s && t <= until) {
                delays.push((t - e.start_s) as f64 / 60.0);
            }
        }
        let false_alarms = times
            .iter()
            .filter(|&&t| {
                !events
                    .iter()
                    .any(|e| t >= e.start_s && t <= e.end_s.saturating_add(cfg.grace_s))
            })
            .count() as u32;
        (
            KindReport {
                events: events.len() as u32,
                detected: delays.len() as u32,
                detection_delay_min: DelayStats::of(&delays),
                false_alarms,
                false_alarms_per_day: f64::from(false_alarms) / f64::from(days),
            },
            delays,
        )
    };
    let (ventilation, mut delays) = score(AlarmKind::VentilationFailure);
    let (particle, pm_delays) = score(AlarmKind::ParticleSpike);
    delays.extend(pm_delays);
    let false_alarms = ventilation.false_alarms + particle.false_alarms;
    Ok(EvalReport {
        seed,
        days,
        chart,
        readings: series.readings.len() as u64,
        events: ventilation.events + particle.events,
        detected: ventilation.detected + particle.detected,
        detection_delay_min: DelayStats::of(&delays),
        false_alarms,
        false_alarms_per_day: f64::from(false_alarms) / f64::from(days),
        ventilation,
        particle,
    })
}
