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
    /// 2024-03-04 00:00 UTC.
    pub start_s: u64,
    /// Probability a person runs the tracing app.
    pub app_adoption: f64,
    /// Fraction of rooms that are badly ventilated (their ACH is ×0.15).
    pub bad_ventilation_fraction: f64,
    /// Fraction of non-home rooms with an air-quality sensor.
    pub sensor_fraction: f64,
    /// Index cases infected on day 0.
    pub seed_cases: u32,
    /// BLE sightings are generated for pairs at most this far apart, m.
    pub ble_range_m: f64,
    /// Seconds between two BLE scans of a device.
    pub scan_interval_s: u64,
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
            app_adoption: 0.6,
            bad_ventilation_fraction: 0.2,
            sensor_fraction: 0.3,
            seed_cases: 5,
            ble_range_m: 8.0,
            scan_interval_s: 60,
            materialize_sightings: true,
            air_step_s: 300,
            window_s: 900,
            epi: EpiParams::default(),
            rule_min_minutes: 15.0,
            rule_max_distance_m: 2.0,
        }
    }
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
        if !(self.ble_range_m > 0.0 && self.ble_range_m <= 100.0) {
            return Err(CityError::InvalidConfig("ble_range_m must be in (0, 100]"));
        }
        if !(12..=3600).contains(&self.scan_interval_s) {
            return Err(CityError::InvalidConfig(
                "scan_interval_s must be in 12..=3600",
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
            incubation_mean_d: 5.0,
            incubation_sigma: 0.45,
            presymptomatic_d: 2.0,
            infectious_after_onset_d: 8.0,
            infectiousness_sigma_d: 2.0,
            asymptomatic_infectiousness: 0.5,
            symptomatic_fraction: 0.65,
            test_symptomatic: 0.75,
            test_asymptomatic: 0.1,
            onset_to_test_mean_d: 2.0,
            test_to_confirm_mean_d: 1.0,
            isolation_d: 10.0,
            beta_contact_per_min: 4e-4,
            quanta_per_h: 3.0,
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
