//! TrustEdge aerosol surveillance (issue 5, sections 1–3), pure: no I/O, no clock; the
//! simulator's randomness comes from a caller-given seed.
//!
//! - [`risk`]: the probability of airborne infection in a room. The well-mixed box model of
//!   the Jimenez / Miller et al. estimator ([`risk::box_model`]), the Rudnick–Milton
//!   rebreathed-fraction form when only CO₂ is known ([`risk::rudnick_milton`]), and a
//!   per-window estimator over a room's sensor series ([`risk::estimate_windows`]).
//! - [`detect`]: streaming change detection (`push(reading) -> Option<Alarm>`): ventilation
//!   failure from CO₂ against its occupancy-expected level ([`detect::VentilationDetector`]),
//!   and particle spikes in PM2.5 ([`detect::ParticleDetector`]), each on a one-sided CUSUM or
//!   EWMA chart of standardized residuals.
//! - [`sim`]: a seeded simulator of sensor series (box model for CO₂ with occupancy schedules,
//!   sensor noise, drift, glitches, injected ventilation failures and PM spikes at known
//!   times) and the evaluation of the detectors on it (detection delay, false alarms per day).
//! - [`alert`]: the pure rule "elevated-risk window → alert event" under a pseudonymous,
//!   per-day venue id, and how a device matches its own presence against an alert.
//!
//! Units go last in names: `_ppm`, `_ug_m3` (µg/m³), `_m3`, `_per_h`, `_s`, `_h`.

pub mod alert;
pub mod detect;
pub mod risk;
pub mod sim;

/// Why an aerosol computation refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AerosolError {
    /// A number is NaN or infinite.
    #[error("{name} must be a finite number, got {value}")]
    NotFinite {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A number is outside its allowed range.
    #[error("{name} must be {rule}, got {value}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// The rule, e.g. "> 0" or "in [0, 1]".
        rule: &'static str,
        /// The value given.
        value: f64,
    },
    /// The inputs are valid but so large that a result is not a finite number.
    #[error("{what} is not a finite number: the inputs are too large")]
    Overflow {
        /// The quantity that overflowed.
        what: &'static str,
    },
    /// Readings are not in time order.
    #[error("readings must be in time order: reading {index} at {t_s} s follows one at {prev_s} s")]
    Unordered {
        /// Index of the offending reading.
        index: usize,
        /// Its time.
        t_s: u64,
        /// The previous reading's time.
        prev_s: u64,
    },
    /// More items than the bound.
    #[error("too many {what}: {len} > {max}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many were given.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A time window is empty, reversed or crosses a day boundary.
    #[error("invalid window {start_s}..{end_s} s: {reason}")]
    InvalidWindow {
        /// Start, Unix seconds.
        start_s: u64,
        /// End, Unix seconds.
        end_s: u64,
        /// Why.
        reason: &'static str,
    },
}

/// Checks that `value` is finite and `>= 0`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<f64, AerosolError> {
    finite(name, value)?;
    if value < 0.0 {
        return Err(AerosolError::OutOfRange {
            name,
            rule: ">= 0",
            value,
        });
    }
    Ok(value)
}

/// Checks that `value` is finite and `> 0`.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64, AerosolError> {
    finite(name, value)?;
    if value <= 0.0 {
        return Err(AerosolError::OutOfRange {
            name,
            rule: "> 0",
            value,
        });
    }
    Ok(value)
}

/// Checks that `value` is a fraction in `[0, 1]`.
pub(crate) fn fraction(name: &'static str, value: f64) -> Result<f64, AerosolError> {
    finite(name, value)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(AerosolError::OutOfRange {
            name,
            rule: "in [0, 1]",
            value,
        });
    }
    Ok(value)
}

/// Checks that `value` is finite.
pub(crate) fn finite(name: &'static str, value: f64) -> Result<f64, AerosolError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(AerosolError::NotFinite { name, value })
    }
}
