//! Fusing BLE with other ranging technologies (UWB, Wi-Fi RTT) into one distance.
//!
//! The domain is log-distance: a BLE estimate's error is multiplicative (a factor, from
//! log-normal shadowing), and for the time-of-flight technologies a σ in metres at distance
//! d is σ/d in log-distance to first order. Estimates are combined by inverse-variance
//! weighting of `ln d`; before that, a χ² gate drops inconsistent ones: while the
//! estimates disagree by more than `gate_sigmas` (normalised by their combined σ), the one
//! flagged NLOS goes first, else the one with the larger σ — a time-of-flight range that
//! disagrees with BLE is far more likely right than a BLE estimate that is off by a large
//! factor (bag, body), unless the range itself is flagged as non-line-of-sight.

use rand_core::RngCore;
use serde::Serialize;

use crate::DistanceError;
use crate::channel::{gaussian, uniform};

/// Which technology an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RangingSource {
    /// BLE RSSI (the learned model).
    Ble,
    /// Ultra-wideband two-way ranging.
    Uwb,
    /// Wi-Fi round-trip time (IEEE 802.11mc FTM).
    WifiRtt,
    /// A fusion of several.
    Fused,
}

/// A distance with its 1σ uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DistanceEstimate {
    /// Estimated distance, m.
    pub meters: f64,
    /// 1σ uncertainty, m.
    pub sigma_m: f64,
    /// Where it came from.
    pub source: RangingSource,
}

impl DistanceEstimate {
    fn check(&self) -> Result<(), DistanceError> {
        if !(self.meters.is_finite() && self.meters > 0.0) {
            return Err(DistanceError::InvalidMeasurement("meters must be > 0"));
        }
        if !(self.sigma_m.is_finite() && self.sigma_m > 0.0) {
            return Err(DistanceError::InvalidMeasurement("sigma_m must be > 0"));
        }
        Ok(())
    }
}

/// One range measurement offered to [`fuse`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RangeObservation {
    /// The estimate.
    pub estimate: DistanceEstimate,
    /// The radio flagged the range as likely non-line-of-sight (e.g. UWB first-path vs
    /// total power); such ranges are gated out first.
    pub nlos_suspected: bool,
}

impl From<DistanceEstimate> for RangeObservation {
    fn from(estimate: DistanceEstimate) -> Self {
        RangeObservation {
            estimate,
            nlos_suspected: false,
        }
    }
}

/// Fusion settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FusionConfig {
    /// Largest normalised disagreement kept, in σ (3 keeps 99.7 % of consistent pairs).
    pub gate_sigmas: f64,
    /// σ of `ln d` is floored at this (no technology is better than 1 % at any distance).
    pub min_sigma_ln: f64,
    /// Added in quadrature to the σ of a range flagged NLOS, m (the bias it may carry).
    pub nlos_extra_sigma_m: f64,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            gate_sigmas: 3.0,
            min_sigma_ln: 0.01,
            nlos_extra_sigma_m: 0.5,
        }
    }
}

/// The result of a fusion: the estimate, and which inputs were gated out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fused {
    /// The fused estimate (source `Fused` when more than one input was used, else that
    /// input's source).
    pub estimate: DistanceEstimate,
    /// Indices of the inputs dropped by the gate.
    pub rejected: Vec<usize>,
}

/// Most observations fused at once.
pub const MAX_OBSERVATIONS: usize = 64;

fn combine(items: &[(usize, f64, f64)]) -> (f64, f64) {
    let mut wsum = 0.0;
    let mut xsum = 0.0;
    for &(_, x, s) in items {
        let w = 1.0 / (s * s);
        wsum += w;
        xsum += w * x;
    }
    (xsum / wsum, (1.0 / wsum).sqrt())
}

/// Fuses the observations into one distance with an uncertainty (see the module doc).
pub fn fuse(obs: &[RangeObservation], cfg: &FusionConfig) -> Result<Fused, DistanceError> {
    if obs.is_empty() {
        return Err(DistanceError::NoSamples);
    }
    if obs.len() > MAX_OBSERVATIONS {
        return Err(DistanceError::InvalidConfig("more than MAX_OBSERVATIONS"));
    }
    if !(cfg.gate_sigmas > 0.0 && cfg.min_sigma_ln > 0.0 && cfg.nlos_extra_sigma_m >= 0.0) {
        return Err(DistanceError::InvalidConfig(
            "gate_sigmas and min_sigma_ln must be > 0, nlos_extra_sigma_m >= 0",
        ));
    }
    for o in obs {
        o.estimate.check()?;
    }
    // (index, ln d, σ of ln d)
    let mut kept: Vec<(usize, f64, f64)> = obs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let sigma_m = if o.nlos_suspected {
                o.estimate.sigma_m.hypot(cfg.nlos_extra_sigma_m)
            } else {
                o.estimate.sigma_m
            };
            let sigma_ln = (sigma_m / o.estimate.meters).max(cfg.min_sigma_ln);
            (i, o.estimate.meters.ln(), sigma_ln)
        })
        .collect();
    let mut rejected = Vec::new();
    while kept.len() >= 2 {
        // normalised innovation of each against the fusion of the others
        let mut worst: Option<(usize, f64)> = None;
        for k in 0..kept.len() {
            let others: Vec<_> = kept
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .map(|(_, &v)| v)
                .collect();
            let (m, s) = combine(&others);
            let (_, x, sx) = kept[k];
            let z = (x - m).abs() / s.hypot(sx);
            // rank: NLOS-flagged first, then the larger σ, then the larger innovation
            let rank = if obs[kept[k].0].nlos_suspected {
                1e6
            } else {
                0.0
            } + sx * 1e3
                + z;
            if z > cfg.gate_sigmas && worst.is_none_or(|(_, r)| rank > r) {
                worst = Some((k, rank));
            }
        }
        match worst {
            Some((k, _)) => rejected.push(kept.remove(k).0),
            None => break,
        }
    }
    let (m, s) = combine(&kept);
    let meters = m.exp();
    let source = if kept.len() == 1 {
        obs[kept[0].0].estimate.source
    } else {
        RangingSource::Fused
    };
    rejected.sort_unstable();
    Ok(Fused {
        estimate: DistanceEstimate {
            meters,
            sigma_m: meters * s,
            source,
        },
        rejected,
    })
}

/// Error model of a time-of-flight ranging technology, for simulation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RangingErrorModel {
    /// Which technology.
    pub source: RangingSource,
    /// 1σ of the line-of-sight range error, m.
    pub sigma_m: f64,
    /// Probability that a range is non-line-of-sight.
    pub nlos_probability: f64,
    /// NLOS ranges are longer by a bias uniform in this interval, m (the first path is
    /// blocked; the radio sees a reflection).
    pub nlos_bias_m: (f64, f64),
    /// Probability that the radio flags an NLOS range as such.
    pub nlos_detection: f64,
}

impl RangingErrorModel {
    /// UWB two-way ranging: σ 0.1 m, 15 % NLOS with +0.3…1.5 m bias, 70 % of NLOS flagged.
    pub const UWB: RangingErrorModel = RangingErrorModel {
        source: RangingSource::Uwb,
        sigma_m: 0.1,
        nlos_probability: 0.15,
        nlos_bias_m: (0.3, 1.5),
        nlos_detection: 0.7,
    };

    /// Wi-Fi RTT (802.11mc): σ 1.5 m, 20 % NLOS with +1…4 m bias, never flagged.
    pub const WIFI_RTT: RangingErrorModel = RangingErrorModel {
        source: RangingSource::WifiRtt,
        sigma_m: 1.5,
        nlos_probability: 0.2,
        nlos_bias_m: (1.0, 4.0),
        nlos_detection: 0.0,
    };

    /// One simulated range at the true distance (at least 5 cm).
    pub fn simulate<R: RngCore + ?Sized>(&self, true_m: f64, rng: &mut R) -> RangeObservation {
        let nlos = uniform(0.0, 1.0, rng) < self.nlos_probability;
        let bias = if nlos {
            uniform(self.nlos_bias_m.0, self.nlos_bias_m.1, rng)
        } else {
            0.0
        };
        let flagged = nlos && uniform(0.0, 1.0, rng) < self.nlos_detection;
        let meters = (true_m + bias + gaussian(0.0, self.sigma_m, rng)).max(0.05);
        RangeObservation {
            estimate: DistanceEstimate {
                meters,
                sigma_m: self.sigma_m,
                source: self.source,
            },
            nlos_suspected: flagged,
        }
    }
}
