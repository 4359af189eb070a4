//! The epidemic model.
//!
//! Parameters and their sources are on [`EpiParams`]; the defaults aim at an early-phase
//! SARS-CoV-2-like epidemic (R about 2–3 before isolation effects, overdispersed, ~30 %
//! asymptomatic, test and confirmation delays of days).
//!
//! - **Timeline.** Incubation is lognormal (mean [`EpiParams::incubation_mean_d`], σ of
//!   the log [`EpiParams::incubation_sigma`], Lauer et al. 2020). Infectiousness runs from
//!   `onset − presymptomatic_d` (but at least one day after infection) to `onset +
//!   infectious_after_onset_d`, with relative infectiousness `w(t) = ν · exp(−τ²/2σ²)`, τ
//!   the days from onset (peaking around onset, as He et al. 2020), × `asymptomatic_infectiousness`
//!   for asymptomatic infections.
//! - **Overdispersion.** `ν` is the person's individual infectiousness, drawn once per
//!   infection from a gamma distribution with mean 1 and shape [`EpiParams::dispersion_k`]
//!   (Lloyd-Smith et al. 2005, *Nature* 438:355): a few infectors emit most of the dose, and
//!   in badly ventilated rooms one of them infects many (superspreading).
//! - **Testing.** Symptomatic people are tested with probability `test_symptomatic`, a
//!   lognormal delay after onset; asymptomatic ones with probability `test_asymptomatic`,
//!   3–10 days after infection; confirmation follows the test after a lognormal delay (at
//!   least 6 h). Confirmed people stay home `isolation_d` days.
//! - **Close-range dose.** Over an interval of `m` minutes at distance `d` with an
//!   infector of relative infectiousness `w`: dose = `beta_contact_per_min · w · m ·
//!   min(1, (1 m / d)²)` (inverse-square dilution of the exhaled jet beyond 1 m), and the
//!   probability of infection is `1 − e^(−dose)`.
//! - **Airborne.** Each room is a continuously mixed box (loss rate ACH + 0.62 h⁻¹ decay +
//!   0.3 h⁻¹ deposition, [`trustedge_aerosol::risk`]) with emission `quanta_per_h · Σ w`
//!   of the infectious people present; a susceptible inhales `C̄ · B · t` quanta per window
//!   and is infected with probability `1 − e^(−n)` over the day (Wells–Riley).
//! - **Index cases.** [`crate::CityConfig::seed_cases`] imported infections at times spread
//!   uniformly over [`crate::CityConfig::seed_first_day`] ..
//!   [`crate::CityConfig::seed_last_day`] (before day 0: already infected when the
//!   simulation starts), each in a random person, so clusters start at different places
//!   and times. An index case's course is moved later if one of its clinical events
//!   (onset, test, confirmation) would fall before day 0 (see [`seed_course`]).

use rand_core::RngCore;
use rand_distr::{Distribution, Gamma};

use crate::rng::{chance, int, lognormal_mean, u01};
use crate::truth::PersonEpi;
use crate::{DAY_S, EpiParams, PersonId};

/// Draws the course of an infection at `infected_s`.
pub fn draw_course<R: RngCore + ?Sized>(
    p: &EpiParams,
    person: PersonId,
    infected_s: u64,
    rng: &mut R,
) -> PersonEpi {
    let day = DAY_S as f64;
    let incubation = lognormal_mean(rng, p.incubation_mean_d, p.incubation_sigma) * day;
    let onset_s = infected_s + incubation.round() as u64;
    let from = (onset_s as f64 - p.presymptomatic_d * day).max(infected_s as f64 + day);
    let infectious_from_s = from.round() as u64;
    let infectious_until_s =
        (onset_s + (p.infectious_after_onset_d * day).round() as u64).max(infectious_from_s + 3600);
    let symptomatic = chance(rng, p.symptomatic_fraction);
    let factor = individual_infectiousness(p, rng);
    let tested_s = if symptomatic {
        chance(rng, p.test_symptomatic).then(|| {
            onset_s
                + (lognormal_mean(rng, p.onset_to_test_mean_d, 0.5) * day)
                    .round()
                    .max(3600.0) as u64
        })
    } else {
        chance(rng, p.test_asymptomatic).then(|| infected_s + int(rng, 3 * DAY_S, 10 * DAY_S))
    };
    let confirmed_s = tested_s.map(|t| {
        t + (lognormal_mean(rng, p.test_to_confirm_mean_d, 0.5) * day)
            .round()
            .max(6.0 * 3600.0) as u64
    });
    PersonEpi {
        person,
        infected_s,
        infectious_from_s,
        infectious_until_s,
        onset_s,
        symptomatic,
        infectiousness_factor: factor as f32,
        tested_s,
        confirmed_s,
    }
}

/// Draws a person's individual infectiousness `ν`: gamma with mean 1 and shape
/// [`EpiParams::dispersion_k`] (1 when the shape is not a positive finite number).
pub fn individual_infectiousness<R: RngCore + ?Sized>(p: &EpiParams, rng: &mut R) -> f64 {
    match Gamma::new(p.dispersion_k, 1.0 / p.dispersion_k) {
        Ok(g) if p.dispersion_k.is_finite() && p.dispersion_k > 0.0 => {
            // the gamma's tail is unbounded; 50× the mean keeps doses finite and is far
            // beyond the 99.9 % quantile for k ≥ 0.1
            g.sample(rng).clamp(0.0, 50.0)
        }
        _ => 1.0,
    }
}

/// The course of an index case infected at `infected_s` (possibly before `start_s`): as
/// [`draw_course`], moved later when needed so that no clinical event (onset of a
/// symptomatic case, test, confirmation) happens before `start_s` — the simulation only
/// observes from day 0, and a case confirmed before it would already be isolated.
pub fn seed_course<R: RngCore + ?Sized>(
    p: &EpiParams,
    person: PersonId,
    infected_s: u64,
    start_s: u64,
    rng: &mut R,
) -> PersonEpi {
    let mut e = draw_course(p, person, infected_s, rng);
    let first = [e.observed_onset_s(), e.tested_s, e.confirmed_s]
        .into_iter()
        .flatten()
        .min();
    let min_allowed = start_s + 60;
    if let Some(first) = first
        && first < min_allowed
    {
        e = e.shifted(min_allowed - first);
    }
    e
}

/// Relative infectiousness of `e` at `t_s` (0 outside the infectious period).
pub fn infectiousness(p: &EpiParams, e: &PersonEpi, t_s: u64) -> f64 {
    if t_s < e.infectious_from_s || t_s >= e.infectious_until_s {
        return 0.0;
    }
    let tau = (t_s as f64 - e.onset_s as f64) / DAY_S as f64;
    let w = (-tau * tau / (2.0 * p.infectiousness_sigma_d * p.infectiousness_sigma_d)).exp()
        * f64::from(e.infectiousness_factor);
    if e.symptomatic {
        w
    } else {
        w * p.asymptomatic_infectiousness
    }
}

/// Close-range dose over `minutes` at `distance_m` with relative infectiousness `w`.
pub fn contact_dose(p: &EpiParams, w: f64, minutes: f64, distance_m: f64) -> f64 {
    let d = distance_m.max(0.1);
    p.beta_contact_per_min * w * minutes * (1.0 / (d * d)).min(1.0)
}

/// Whether `1 − e^(−dose)` fires.
pub fn fires<R: RngCore + ?Sized>(dose: f64, rng: &mut R) -> bool {
    dose > 0.0 && u01(rng) < -(-dose).exp_m1()
}
