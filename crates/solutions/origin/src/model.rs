//! The evidence inputs (confirmed cases, aerosol room windows) and the explicit
//! epidemiological model that weights a candidate transmission `u → v` at contact time `t`.
//!
//! # The weight of one piece of evidence
//!
//! ```text
//! w_e(u → v) = p_e · a_u · E[ρ(t − O_u)] · E[f_inc(O_v − t)]
//! ```
//!
//! - `p_e`: the chance the event transmits at peak infectiousness — `1 − exp(−k · score)`
//!   for a close-contact encounter (GAEN-style score, see [`EpiModel::score_risk_per_unit`]),
//!   or the box-model infection probability of an elevated-risk room window.
//! - `ρ(τ)`: infectiousness of `u` at `τ = t − O_u` days from its symptom onset `O_u`, scaled
//!   so that its peak is 1. He et al. (2020, *Nat. Med.* 26:672, "Temporal dynamics in viral
//!   shedding and transmissibility of COVID-19", with the August 2020 author correction)
//!   fitted a shifted gamma: `τ + 12.272481 ~ Gamma(shape 20.516508, rate 1.592124)`. Its mode
//!   lies at onset (−0.01 d), its mean 0.6 d after, 95 % of it within about −5 … +6 d; the
//!   gamma's normalising constant cancels in the peak ratio, so `ρ` needs no Γ function.
//! - `f_inc(d)`: density (per day) of an incubation period of `d` days, lognormal with
//!   `μ = 1.621, σ = 0.418` (Lauer et al. 2020, *Ann. Intern. Med.* 172:577: median 5.1 d,
//!   the fit the LSHTM contact-tracing models and Ferretti et al.'s pooled set use); mean
//!   `exp(μ + σ²/2)` = 5.5 d. Zero for `d <= 0`: nobody shows symptoms before being infected.
//! - `a_u`: relative infectiousness of an asymptomatic infector
//!   ([`EpiModel::asymptomatic_infectiousness`], an assumption: 0.5).
//! - Missing onsets (asymptomatic cases, or onset not reported): the onset is latent,
//!   `O = confirmation − D` with the onset-to-confirmation delay `D` lognormal
//!   ([`EpiModel::delay_mu`], [`EpiModel::delay_sigma`]: median 3 d, a documented assumption
//!   standing for testing delays with active case finding), and the expectations `E[·]` are
//!   taken over `D` by a 5-point equal-weight quadrature at the delay's 10/30/50/70/90 %
//!   quantiles. A reported onset is itself uncertain (recall, day resolution): with
//!   [`EpiModel::onset_sd_days`] > 0 the expectations over it use a 3-point Gauss–Hermite
//!   rule (offsets `±√3·sd`, weights 1/6, 2/3, 1/6).
//! - Hard constraints: no transmission at or after either case's confirmation (isolation,
//!   [`EpiModel::isolate_after_confirmation`]), none more than [`EpiModel::max_incubation_days`]
//!   before the infector's onset (it cannot have been infected yet).
//!
//! Several pieces of evidence between the same ordered pair add up (any of them may be the
//! transmitting one). The weight of "`v` was infected outside the observed cases" (imported,
//! or by an unconfirmed case) is the constant [`EpiModel::import_weight_per_day`].

use serde::{Deserialize, Serialize};
use trustedge_contacts::CaseId;

use crate::OriginError;

/// Seconds per day.
pub const DAY_S: f64 = 86_400.0;

/// A confirmed case as the cloud knows it: a pseudonymous id and two times.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Pseudonymous case number (the contact graph's numbering).
    pub id: CaseId,
    /// Symptom onset, in seconds on the evidence's time base; `None`: asymptomatic or not
    /// reported.
    pub symptom_onset_s: Option<u64>,
    /// When the case was confirmed (positive test), same time base.
    pub confirmation_s: u64,
}

/// A pseudonymous venue id (as published with an aerosol alert; never a name or place).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VenueId(pub [u8; 16]);

impl std::fmt::Display for VenueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Most cases one room window may list (the pairs of a window grow quadratically).
pub const MAX_CASES_PER_WINDOW: usize = 512;

/// Co-presence of confirmed cases in a room during an elevated-risk aerosol window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomWindow {
    /// The venue's pseudonym.
    pub venue: VenueId,
    /// Window start, seconds.
    pub start_s: u64,
    /// Window end, seconds (at or after `start_s`).
    pub end_s: u64,
    /// Infection probability of the window for one person present with one infectious
    /// person (well-mixed box model), in `[0, 1]`.
    pub probability: f64,
    /// Confirmed cases present during the window (at most [`MAX_CASES_PER_WINDOW`]).
    pub cases: Vec<CaseId>,
}

impl RoomWindow {
    /// Checks the window: ordered times, a probability in `[0, 1]`, a bounded case list.
    pub fn validate(&self) -> Result<(), OriginError> {
        if self.end_s < self.start_s {
            return Err(OriginError::InvalidRoomWindow(
                "window ends before it starts",
            ));
        }
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(OriginError::InvalidRoomWindow(
                "probability must be a number in [0, 1]",
            ));
        }
        if self.cases.len() > MAX_CASES_PER_WINDOW {
            return Err(OriginError::InvalidRoomWindow(
                "more than 512 cases in one window",
            ));
        }
        Ok(())
    }

    /// The window's midpoint, taken as its contact time.
    pub fn mid_s(&self) -> u64 {
        self.start_s + (self.end_s - self.start_s) / 2
    }
}

/// The epidemiological model's parameters (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpiModel {
    /// Log-mean of the incubation period in days (Lauer et al. 2020: 1.621).
    pub incubation_mu: f64,
    /// Log-standard deviation of the incubation period (Lauer et al. 2020: 0.418).
    pub incubation_sigma: f64,
    /// Gamma shape of the infectiousness profile (He et al. 2020, corrected: 20.516508).
    pub infectiousness_shape: f64,
    /// Gamma rate per day (He et al. 2020, corrected: 1.592124).
    pub infectiousness_rate_per_day: f64,
    /// Days before onset where infectiousness starts (He et al. 2020, corrected: 12.272481).
    pub infectiousness_shift_days: f64,
    /// Log-mean of the onset-to-confirmation delay in days (ln 3: median 3 d).
    pub delay_mu: f64,
    /// Log-standard deviation of the onset-to-confirmation delay.
    pub delay_sigma: f64,
    /// Standard deviation of a reported onset's error, in days (recall, day resolution); the
    /// expectations over a reported onset use a 3-point Gauss–Hermite rule. 0: exact.
    pub onset_sd_days: f64,
    /// Relative infectiousness of a case without symptom onset.
    pub asymptomatic_infectiousness: f64,
    /// `k` of an encounter's transmission chance `1 − exp(−k · score)` (score in GAEN
    /// weighted minutes: 0.004 makes 60 weighted minutes at peak infectiousness a 21 % chance).
    pub score_risk_per_unit: f64,
    /// Weight (per day, like `f_inc`) of "infected by someone outside the observed cases".
    pub import_weight_per_day: f64,
    /// Longest incubation considered: an infector's contacts more than this many days before
    /// its onset cannot transmit (lognormal 99.9 % quantile ≈ 18 d).
    pub max_incubation_days: f64,
    /// Whether confirmed cases isolate: no transmission at or after either's confirmation.
    pub isolate_after_confirmation: bool,
}

impl Default for EpiModel {
    fn default() -> Self {
        EpiModel {
            incubation_mu: 1.621,
            incubation_sigma: 0.418,
            infectiousness_shape: 20.516_508,
            infectiousness_rate_per_day: 1.592_124,
            infectiousness_shift_days: 12.272_481,
            delay_mu: 3.0f64.ln(),
            delay_sigma: 0.5,
            onset_sd_days: 1.0,
            asymptomatic_infectiousness: 0.5,
            score_risk_per_unit: 0.004,
            import_weight_per_day: 1e-3,
            max_incubation_days: 18.0,
            isolate_after_confirmation: true,
        }
    }
}

/// Standard-normal quantiles at 10, 30, 50, 70 and 90 %: the quadrature nodes for a latent
/// onset.
const QUAD_Z: [f64; 5] = [-1.281_551_6, -0.524_400_5, 0.0, 0.524_400_5, 1.281_551_6];

fn finite_positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl EpiModel {
    /// Checks that every parameter is a finite number in its range.
    pub fn validate(&self) -> Result<(), OriginError> {
        let ok = self.incubation_mu.is_finite()
            && finite_positive(self.incubation_sigma)
            && self.infectiousness_shape.is_finite()
            && self.infectiousness_shape > 1.0
            && finite_positive(self.infectiousness_rate_per_day)
            && finite_positive(self.infectiousness_shift_days)
            && self.delay_mu.is_finite()
            && finite_positive(self.delay_sigma)
            && self.onset_sd_days.is_finite()
            && self.onset_sd_days >= 0.0
            && (0.0..=1.0).contains(&self.asymptomatic_infectiousness)
            && finite_positive(self.score_risk_per_unit)
            && finite_positive(self.import_weight_per_day)
            && finite_positive(self.max_incubation_days);
        if ok {
            Ok(())
        } else {
            Err(OriginError::InvalidModel)
        }
    }

    /// Incubation-period density per day at `d` days (0 for `d <= 0`).
    pub fn incubation_density(&self, d: f64) -> f64 {
        if d.is_nan() || d <= 0.0 {
            return 0.0;
        }
        let z = (d.ln() - self.incubation_mu) / self.incubation_sigma;
        (-0.5 * z * z).exp() / (d * self.incubation_sigma * (2.0 * std::f64::consts::PI).sqrt())
    }

    /// Infectiousness `τ` days after symptom onset, relative to its peak (in `[0, 1]`).
    pub fn relative_infectiousness(&self, tau_days: f64) -> f64 {
        let x = tau_days + self.infectiousness_shift_days;
        if x.is_nan() || x <= 0.0 {
            return 0.0;
        }
        let k = self.infectiousness_shape;
        let r = self.infectiousness_rate_per_day;
        let mode = (k - 1.0) / r;
        ((k - 1.0) * (x / mode).ln() - r * (x - mode))
            .exp()
            .min(1.0)
    }

    /// Transmission chance at peak infectiousness of an encounter with this score.
    pub fn encounter_risk(&self, score: f64) -> f64 {
        if score.is_nan() || score <= 0.0 {
            return 0.0;
        }
        1.0 - (-self.score_risk_per_unit * score).exp()
    }

    /// The onset times (seconds, as f64) over which a case's expectations are taken, with
    /// their weights: the reported onset (3 Gauss–Hermite points if
    /// [`EpiModel::onset_sd_days`] > 0), or 5 equal-weight points before confirmation.
    pub fn onset_points(&self, case: &Case) -> OnsetPoints {
        match case.symptom_onset_s {
            Some(o) if self.onset_sd_days > 0.0 => {
                let h = 3.0f64.sqrt() * self.onset_sd_days * DAY_S;
                let o = o as f64;
                OnsetPoints {
                    points: [o - h, o, o + h, 0.0, 0.0],
                    weights: [1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0, 0.0, 0.0],
                    len: 3,
                }
            }
            Some(o) => OnsetPoints {
                points: [o as f64; 5],
                weights: [1.0; 5],
                len: 1,
            },
            None => {
                let c = case.confirmation_s as f64;
                let mut points = [0.0; 5];
                for (p, z) in points.iter_mut().zip(QUAD_Z) {
                    *p = c - (self.delay_mu + self.delay_sigma * z).exp() * DAY_S;
                }
                OnsetPoints {
                    points,
                    weights: [0.2; 5],
                    len: 5,
                }
            }
        }
    }

    /// The single onset estimate of a case (reported, or confirmation minus the median
    /// delay): what the "earliest onset" baseline sorts by.
    pub fn onset_estimate_s(&self, case: &Case) -> f64 {
        case.symptom_onset_s.map_or_else(
            || case.confirmation_s as f64 - self.delay_mu.exp() * DAY_S,
            |o| o as f64,
        )
    }

    /// The weight of one piece of evidence `u → v` at `t_s` with transmission chance `p`
    /// (see the module documentation). Finite and `>= 0`.
    pub fn evidence_weight(&self, u: &Case, v: &Case, t_s: u64, p: f64) -> f64 {
        if p.is_nan() || p <= 0.0 {
            return 0.0;
        }
        if self.isolate_after_confirmation && (t_s >= u.confirmation_s || t_s >= v.confirmation_s) {
            return 0.0;
        }
        let t = t_s as f64;
        let ou = self.onset_points(u);
        let ov = self.onset_points(v);
        let mut inf = 0.0;
        for (&o, &q) in ou.points().iter().zip(ou.weights()) {
            let tau = (t - o) / DAY_S;
            if tau >= -self.max_incubation_days {
                inf += q * self.relative_infectiousness(tau);
            }
        }
        if inf <= 0.0 {
            return 0.0;
        }
        let mut inc = 0.0;
        for (&o, &q) in ov.points().iter().zip(ov.weights()) {
            inc += q * self.incubation_density((o - t) / DAY_S);
        }
        let a = if u.symptom_onset_s.is_some() {
            1.0
        } else {
            self.asymptomatic_infectiousness
        };
        let w = p.min(1.0) * a * inf * inc;
        if w.is_finite() { w } else { 0.0 }
    }
}

/// Weighted onset points of one case (weights sum to 1): 1 or 3 if reported, 5 if latent.
#[derive(Clone, Copy, Debug)]
pub struct OnsetPoints {
    points: [f64; 5],
    weights: [f64; 5],
    len: usize,
}

impl OnsetPoints {
    /// The points, seconds.
    pub fn points(&self) -> &[f64] {
        &self.points[..self.len]
    }

    /// Their weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights[..self.len]
    }
}
