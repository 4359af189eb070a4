//! A seeded synthetic city with a known ground truth, for driving and scoring TrustEdge.
//!
//! [`City::generate`] builds, from a [`CityConfig`] and a seed:
//! - a **population** ([`population`]): households, workplaces, schools, venues (shops,
//!   restaurants, gyms, places of worship) and bus lines; each room has a volume, an air
//!   exchange rate (a configurable fraction badly ventilated) and maybe an air-quality
//!   sensor; each person has a phone model from [`trustedge_distance::channel::DEVICE_MODELS`]
//!   and an app-adoption flag;
//! - **daily schedules** ([`plan`]): per person per day a sequence of visits covering the
//!   day (weekday / weekend variation, isolation after confirmation); within a room each
//!   visit is split into *stints* at 2-D positions (desks, tables, seats, free positions),
//!   so the pairwise distance of two co-present people is piecewise constant and close
//!   contacts are a minority of co-presence;
//! - an **SEIR epidemic** ([`epidemic`]) through the same contacts and rooms, with the true
//!   transmission tree, symptom onsets, tests and confirmations;
//! - the **ground truth** ([`truth::Truth`]) to score against: close contacts per pair-day
//!   under the 15 min / 2 m rule, exposures of confirmed cases' contacts, room risk windows,
//!   clusters and their origins.
//!
//! The signals themselves are produced lazily by [`City::hours`]: one chunk of time-ordered
//! [`Event`]s per simulated hour (BLE sightings with RSSI from true distances via
//! [`trustedge_distance::channel`], air-quality readings from a CO₂/PM2.5 box model, venue
//! visits, onsets, confirmations), regenerated from the seed day by day so memory stays
//! bounded. Scoring helpers for the headless run's metrics live in [`score`].
//!
//! Pure: no clock, no I/O; all randomness derives from the seed (ChaCha8 streams keyed by
//! purpose, day and ids), so every output is reproducible.

pub mod epidemic;
pub mod events;
pub mod evidence;
pub mod plan;
pub mod population;
pub mod score;
pub mod truth;

mod city;
mod rng;

pub use city::City;
pub use events::{AirReading, Event, EventKind, Hour, Hours, SightingBatch, Summary};
pub use plan::{EncounterPiece, Stint, Visit};
pub use population::{Person, Place, PlaceKind, Population, Room};
pub use truth::{
    CloseContact, Cluster, Infection, PersonEpi, RiskBasis, RiskWindowTruth, Route, Truth,
};

use serde::{Deserialize, Serialize};

/// A person of the city (index into [`Population::people`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersonId(pub u32);

/// A room of the city (index into [`Population::rooms`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoomId(pub u32);

/// Seconds in a day.
pub const DAY_S: u64 = 86_400;

/// Errors of the simulation.
#[derive(Debug, thiserror::Error)]
pub enum CityError {
    /// A configuration value is out of range.
    #[error("invalid city configuration: {0}")]
    InvalidConfig(&'static str),
    /// The BLE channel simulator rejected a session.
    #[error("BLE channel: {0}")]
    Distance(#[from] trustedge_distance::DistanceError),
    /// The aerosol box model rejected an input.
    #[error("aerosol model: {0}")]
    Aerosol(#[from] trustedge_aerosol::AerosolError),
}

/// Everything that shapes a city. [`Default`] is a 10,000-person city over 14 days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CityConfig {
    /// Number of people (1 ..= 1,000,000).
    pub population: u32,
    /// Simulated days (1 ..= 60).
    pub days: u32,
    /// Unix time of the start of day 0 (must be a UTC midnight). Default: Monday
    /// 2024-03-04 00:00 UTC. Only a time base: the city generated from one seed is the same
    /// for every start, shifted in time (random streams are keyed by time since the start,
    /// and the week follows [`CityConfig::first_weekday`], not the calendar).
    pub start_s: u64,
    /// Day of the week of day 0, 0 = Monday ..= 6 = Sunday (weekends change schedules).
    /// Default 0.
    #[serde(default)]
    pub first_weekday: u32,
    /// Probability a person runs the tracing app.
    pub app_adoption: f64,
    /// Fraction of rooms that are badly ventilated (their ACH is ×0.15).
    pub bad_ventilation_fraction: f64,
    /// Fraction of non-home rooms with an air-quality sensor.
    pub sensor_fraction: f64,
    /// Index cases (imported infections), at times spread uniformly over
    /// `seed_first_day ..= seed_last_day` in random people (see [`epidemic`]).
    pub seed_cases: u32,
    /// Earliest index-case infection, in days from day 0 (negative: already infected when
    /// the simulation starts; -14 ..= `seed_last_day`).
    pub seed_first_day: f64,
    /// Latest index-case infection, in days from day 0 (`seed_first_day` ..= `days`).
    pub seed_last_day: f64,
    /// BLE sightings are generated for pairs at most this far apart, m.
    pub ble_range_m: f64,
    /// Seconds between two BLE scans of a device.
    pub scan_interval_s: u64,
    /// Advertisements of a peer heard (RSSI reported) per scan, 1..=16 (a GAEN scan lasts
    /// about 4 s against a ~250 ms advertising interval). Default 3.
    #[serde(default = "default_adverts_per_scan")]
    pub adverts_per_scan: u32,
    /// Whether [`City::hours`] materialises the RSSI samples ([`Event::Sightings`]) or only
    /// emits encounter descriptors ([`Event::Encounter`], samples via [`City::sightings`]).
    pub materialize_sightings: bool,
    /// Seconds between two air-quality readings of a sensor (divides 3600).
    pub air_step_s: u64,
    /// Length of the ground-truth room risk windows, s (divides 3600).
    pub window_s: u64,
    /// The epidemic's parameters.
    pub epi: EpiParams,
    /// The close-contact rule of the ground truth.
    pub rule_min_minutes: f64,
    /// Distance bound of the close-contact rule, m.
    pub rule_max_distance_m: f64,
}

impl Default for CityConfig {
    fn default() -> Self {
        CityConfig {
            population: 10_000,
            days: 14,
            start_s: 1_709_510_400,
            first_weekday: 0,
            app_adoption: 0.6,
            bad_ventilation_fraction: 0.2,
            sensor_fraction: 0.3,
            // 10,000 people: 50 importations over 9 days give ~45 clusters, most with
            // several confirmed cases within 14 days
            seed_cases: 110,
            seed_first_day: -7.0,
            seed_last_day: 2.0,
            ble_range_m: 8.0,
            scan_interval_s: 60,
            adverts_per_scan: default_adverts_per_scan(),
            materialize_sightings: true,
            air_step_s: 300,
            window_s: 900,
            epi: EpiParams::default(),
            rule_min_minutes: 15.0,
            rule_max_distance_m: 2.0,
        }
    }
}

fn default_adverts_per_scan() -> u32 {
    3
}

impl CityConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), CityError> {
        let frac = |v: f64| (0.0..=1.0).contains(&v);
        if !(1..=1_000_000).contains(&self.population) {
            return Err(CityError::InvalidConfig(
                "population must be in 1..=1000000",
            ));
        }
        if !(1..=60).contains(&self.days) {
            return Err(CityError::InvalidConfig("days must be in 1..=60"));
        }
        if !self.start_s.is_multiple_of(DAY_S) {
            return Err(CityError::InvalidConfig("start_s must be a UTC midnight"));
        }
        if self.first_weekday > 6 {
            return Err(CityError::InvalidConfig("first_weekday must be in 0..=6"));
        }
        if !frac(self.app_adoption)
            || !frac(self.bad_ventilation_fraction)
            || !frac(self.sensor_fraction)
        {
            return Err(CityError::InvalidConfig("fractions must be in [0, 1]"));
        }
        if self.seed_cases == 0 || self.seed_cases > self.population {
            return Err(CityError::InvalidConfig(
                "seed_cases must be in 1..=population",
            ));
        }
        if !(self.seed_first_day.is_finite()
            && self.seed_last_day.is_finite()
            && self.seed_first_day >= -14.0
            && self.seed_first_day <= self.seed_last_day
            && self.seed_last_day <= f64::from(self.days))
        {
            return Err(CityError::InvalidConfig(
                "seeding days must satisfy -14 <= seed_first_day <= seed_last_day <= days",
            ));
        }
        if !(self.ble_range_m > 0.0 && self.ble_range_m <= 100.0) {
            return Err(CityError::InvalidConfig("ble_range_m must be in (0, 100]"));
        }
        if !(12..=3600).contains(&self.scan_interval_s) {
            return Err(CityError::InvalidConfig(
                "scan_interval_s must be in 12..=3600",
            ));
        }
        if !(1..=16).contains(&self.adverts_per_scan) {
            return Err(CityError::InvalidConfig(
                "adverts_per_scan must be in 1..=16",
            ));
        }
        for (v, what) in [
            (
                self.air_step_s,
                "air_step_s must divide 3600 and be a multiple of 60",
            ),
            (
                self.window_s,
                "window_s must divide 3600 and be a multiple of 60",
            ),
        ] {
            if v == 0 || 3600 % v != 0 || v % 60 != 0 {
                return Err(CityError::InvalidConfig(what));
            }
        }
        if !(self.rule_min_minutes >= 0.0 && self.rule_max_distance_m > 0.0) {
            return Err(CityError::InvalidConfig(
                "rule must have minutes >= 0, distance > 0",
            ));
        }
        self.epi.validate()
    }

    /// The configured close-contact rule.
    pub fn rule(&self) -> trustedge_distance::exposure::CloseContactRule {
        trustedge_distance::exposure::CloseContactRule {
            min_minutes_per_day: self.rule_min_minutes,
            max_distance_m: self.rule_max_distance_m,
        }
    }
}

/// Epidemiological parameters (see [`epidemic`] for the model they feed).
///
/// The defaults describe an early-phase SARS-CoV-2-like epidemic. Sources (cited from
/// memory, not re-retrieved in this session; the figures are the published point
/// estimates as remembered):
/// - incubation: Lauer et al. 2020, *Ann. Intern. Med.* 172:577 — lognormal, log-mean
///   1.621, log-σ 0.418 (median 5.1 d, mean 5.5 d); the same fit `trustedge-origin` uses;
/// - infectiousness around onset: He et al. 2020, *Nat. Med.* 26:672 — infectiousness from
///   about 2–3 d before onset, peaking at onset, mostly over within 7 d; ~44 % of
///   transmission presymptomatic (here ≈ 40 %);
/// - asymptomatic share and infectiousness: Buitrago-Garcia et al. 2020, *PLoS Med.*
///   17:e1003346 — 31 % (95 % CI 26–37 %) never develop symptoms, relative infectiousness
///   0.35 (0.10–1.27); CDC planning scenarios (2020) 0.75; here 30 % and 0.5;
/// - overdispersion: Endo et al. 2020, *Wellcome Open Res.* 5:67 — k ≈ 0.1; Adam et al.
///   2020, *Nat. Med.* 26:1714 (Hong Kong clusters) — k ≈ 0.43, 20 % of cases caused 80 %
///   of transmission; here k = 0.3;
/// - early-phase reproduction number: Li et al. 2020, *NEJM* 382:1199 — R0 2.2 (Wuhan);
///   Flaxman et al. 2020, *Nature* 584:257 — R0 ≈ 3.3 across Europe before interventions.
///   The contact and airborne rates below are calibrated so that index cases of the default
///   10,000-person city cause about 2–2.5 secondary infections each, with isolation after
///   confirmation (`EpiSummary::r_index`; measured with the `generate` example);
/// - testing delays: onset → test ≈ 2–3 d and test → result ≈ 1 d (UK NHS Test and Trace
///   and Kretzschmar et al. 2020, *Lancet Public Health* 5:e452, testing-delay scenarios
///   of 0–3 d); ~70 % of symptomatic people tested (ascertainment of roughly half of all
///   infections, as in seroprevalence-vs-cases comparisons of 2020–21);
/// - airborne emission: Buonanno et al. 2020, *Environ. Int.* 141:105794 — an infectious
///   person emits ~1–10 quanta/h breathing and speaking at rest, up to 100+ when loud;
///   Miller et al. 2020 (Skagit choir) ~970 q/h singing. Here 10 q/h at peak (ν = 1),
///   with the individual factor ν making the rare emitter of tens to hundreds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpiParams {
    /// Incubation period (infection → onset) is lognormal with this mean, days.
    pub incubation_mean_d: f64,
    /// σ of the incubation's log.
    pub incubation_sigma: f64,
    /// Infectiousness starts this long before onset, days (but ≥ 1 day after infection).
    pub presymptomatic_d: f64,
    /// Infectiousness ends this long after onset, days.
    pub infectious_after_onset_d: f64,
    /// σ of the Gaussian infectiousness profile around onset, days.
    pub infectiousness_sigma_d: f64,
    /// Relative infectiousness of asymptomatic infections.
    pub asymptomatic_infectiousness: f64,
    /// Shape `k` of the gamma-distributed individual infectiousness (mean 1): small `k`
    /// means a few superspreaders (see [`epidemic`]).
    pub dispersion_k: f64,
    /// Probability an infection is symptomatic.
    pub symptomatic_fraction: f64,
    /// Probability a symptomatic person gets tested.
    pub test_symptomatic: f64,
    /// Probability an asymptomatic person gets tested (screening, 3–10 days after infection).
    pub test_asymptomatic: f64,
    /// Mean onset → test delay (lognormal, σ 0.5), days.
    pub onset_to_test_mean_d: f64,
    /// Mean test → confirmation delay (lognormal, σ 0.5, at least 6 h), days.
    pub test_to_confirm_mean_d: f64,
    /// Days a confirmed case stays home after confirmation.
    pub isolation_d: f64,
    /// Contact dose rate per minute at 1 m at peak infectiousness (dose model in [`epidemic`]).
    pub beta_contact_per_min: f64,
    /// Quanta emitted per hour by one infector at peak infectiousness (airborne route).
    pub quanta_per_h: f64,
    /// Breathing rate of susceptibles, m³/h.
    pub breathing_m3_per_h: f64,
    /// Quanta/h assumed by the conditional risk of the room windows (one infector speaking).
    pub window_quanta_per_h: f64,
}

impl Default for EpiParams {
    fn default() -> Self {
        EpiParams {
            // Lauer et al. 2020: exp(1.621 + 0.418²/2) = 5.5 d
            incubation_mean_d: 5.5,
            incubation_sigma: 0.418,
            presymptomatic_d: 2.5,
            infectious_after_onset_d: 7.0,
            infectiousness_sigma_d: 2.0,
            asymptomatic_infectiousness: 0.5,
            dispersion_k: 0.4,
            symptomatic_fraction: 0.7,
            test_symptomatic: 0.75,
            test_asymptomatic: 0.1,
            onset_to_test_mean_d: 2.0,
            test_to_confirm_mean_d: 1.0,
            isolation_d: 10.0,
            beta_contact_per_min: 4e-4,
            quanta_per_h: 5.0,
            breathing_m3_per_h: 0.72,
            window_quanta_per_h: 25.0,
        }
    }
}

impl EpiParams {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), CityError> {
        let pos = [
            self.incubation_mean_d,
            self.incubation_sigma,
            self.infectious_after_onset_d,
            self.infectiousness_sigma_d,
            self.dispersion_k,
            self.onset_to_test_mean_d,
            self.test_to_confirm_mean_d,
        ];
        if pos.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(CityError::InvalidConfig("epidemic durations must be > 0"));
        }
        let nonneg = [
            self.presymptomatic_d,
            self.isolation_d,
            self.beta_contact_per_min,
            self.quanta_per_h,
            self.breathing_m3_per_h,
            self.window_quanta_per_h,
        ];
        if nonneg.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(CityError::InvalidConfig("epidemic rates must be >= 0"));
        }
        let fr = [
            self.asymptomatic_infectiousness,
            self.symptomatic_fraction,
            self.test_symptomatic,
            self.test_asymptomatic,
        ];
        if fr.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(CityError::InvalidConfig(
                "epidemic fractions must be in [0, 1]",
            ));
        }
        Ok(())
    }
}
