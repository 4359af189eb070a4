//! TrustEdge edge intelligence: a unified distance service for contact tracing.
//!
//! Pure: no clock, no I/O; every random draw comes from a caller-seeded RNG (`rand_core`
//! 0.6 `RngCore`, e.g. `rand_chacha::ChaCha8Rng`), so every figure replays from its seed.
//!
//! - [`channel`]: a BLE RSSI channel simulator (log-distance path loss, log-normal
//!   shadowing, body / carry / orientation loss, Rician/Rayleigh multipath, per-model TX
//!   power and RSSI offset) that generates labelled sessions;
//! - [`calibration`]: per-device-model calibration (GAEN's `tx_power` / `rssi_correction`),
//!   attenuation, and smoothing over time (1-D Kalman filter, sliding median);
//! - [`model`]: window features and a learned distance model (smartcore random forest on
//!   log-distance), and [`model::DistanceEstimator`], the service the edge calls;
//! - [`eval`]: NIST TC4TL's nDCF at 1.8 m for the learned model, GAEN's attenuation
//!   threshold and a path-loss inversion, on device models held out of training;
//! - [`fusion`]: BLE + UWB / Wi-Fi RTT fusion into one [`DistanceEstimate`] with NLOS gating;
//! - [`exposure`]: GAEN v2 exposure windows, scan instances, window scores, daily
//!   summaries, and the configurable close-contact rule.

pub mod calibration;
pub mod channel;
pub mod eval;
pub mod exposure;
pub mod fusion;
pub mod model;

pub use fusion::{DistanceEstimate, RangingSource};

/// Everything that can go wrong in the distance service.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistanceError {
    /// No RSSI samples (or none usable) to estimate from.
    #[error("no usable RSSI samples")]
    NoSamples,
    /// A configuration value is out of its range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A distance or a measurement is not a finite positive number.
    #[error("invalid measurement: {0}")]
    InvalidMeasurement(&'static str),
    /// Training data is empty or has only one class / one value.
    #[error("not enough training data: {0}")]
    NotEnoughData(&'static str),
    /// The ML library refused to fit or predict.
    #[error("model: {0}")]
    Model(String),
    /// The calibration registry is full.
    #[error("calibration registry is full ({0} models)")]
    RegistryFull(usize),
}
