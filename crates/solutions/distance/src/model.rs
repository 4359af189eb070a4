//! A learned BLE distance model: features of a window of attenuations, a smartcore random
//! forest regressing `log10(distance)`, and [`DistanceEstimator`], the service the edge
//! calls for each encounter.
//!
//! The forest is fitted with `keep_samples` so its out-of-bag predictions give an honest
//! residual σ (in log10 m, used as the estimate's uncertainty) and an honest decision
//! threshold: the predicted distance at which "close" (≤ 1.8 m) minimises nDCF on the
//! training set's out-of-bag predictions.

use rand_core::RngCore;
use serde::Serialize;
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::calibration::{
    CalibrationRegistry, KalmanConfig, LinkCalibration, kalman_smooth, quantile,
};
use crate::channel::{DEVICE_MODELS, Environment, LinkContext, SessionConfig, generate_session};
use crate::fusion::{DistanceEstimate, RangingSource};
use crate::{DistanceError, eval};

/// Names of the window features, in [`WindowFeatures::values`] order.
pub const FEATURE_NAMES: [&str; 14] = [
    "kalman_median_db",
    "kalman_last_db",
    "min_db",
    "p25_db",
    "median_db",
    "mean_db",
    "p75_db",
    "max_db",
    "std_db",
    "scan_min_median_db",
    "samples",
    "duration_s",
    "calibration_confidence",
    "calibration_uncertainty_db",
];

/// Number of features.
pub const N_FEATURES: usize = FEATURE_NAMES.len();

/// Samples within this many seconds of the previous one belong to the same scan.
pub const SCAN_GAP_S: u64 = 10;

/// Most samples a window's features are computed from (the latest are kept).
pub const MAX_WINDOW_SAMPLES: usize = 4096;

/// The features of one window of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowFeatures {
    /// Values in [`FEATURE_NAMES`] order.
    pub values: [f64; N_FEATURES],
}

impl WindowFeatures {
    /// The median attenuation of the window (GAEN-style summary), dB.
    pub fn median_attenuation_db(&self) -> f64 {
        self.values[4]
    }
}

/// Features of a window of `(time s, rssi dBm)` samples on a calibrated link. Samples must
/// be in time order (they are sorted if not). Errors if there is no sample.
pub fn window_features(
    samples: &[(u64, i8)],
    link: &LinkCalibration,
    kalman: KalmanConfig,
) -> Result<WindowFeatures, DistanceError> {
    if samples.is_empty() {
        return Err(DistanceError::NoSamples);
    }
    let start = samples.len().saturating_sub(MAX_WINDOW_SAMPLES);
    let mut att: Vec<(u64, f64)> = samples[start..]
        .iter()
        .map(|&(t, r)| (t, link.attenuation_db(r)))
        .collect();
    att.sort_by_key(|&(t, _)| t);
    let smoothed = kalman_smooth(&att, kalman);
    let mut sm = smoothed.clone();
    let kalman_median = quantile(&mut sm, 0.5);
    let kalman_last = smoothed.last().copied().unwrap_or(f64::NAN);
    let mut vals: Vec<f64> = att.iter().map(|&(_, a)| a).collect();
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let min = quantile(&mut vals, 0.0);
    let p25 = quantile(&mut vals, 0.25);
    let median = quantile(&mut vals, 0.5);
    let p75 = quantile(&mut vals, 0.75);
    let max = quantile(&mut vals, 1.0);
    // per-scan minimum attenuation (the strongest advert of each scan escapes deep fades)
    let mut scan_mins = Vec::new();
    let mut last_t: Option<u64> = None;
    for &(t, a) in &att {
        match (last_t, scan_mins.last_mut()) {
            (Some(lt), Some(m)) if t.saturating_sub(lt) <= SCAN_GAP_S => {
                if a < *m {
                    *m = a;
                }
            }
            _ => scan_mins.push(a),
        }
        last_t = Some(t);
    }
    let scan_min_median = quantile(&mut scan_mins, 0.5);
    let duration = att.last().map_or(0, |l| l.0) - att.first().map_or(0, |f| f.0);
    Ok(WindowFeatures {
        values: [
            kalman_median,
            kalman_last,
            min,
            p25,
            median,
            mean,
            p75,
            max,
            var.sqrt(),
            scan_min_median,
            n,
            duration as f64,
            f64::from(link.confidence().number()),
            link.uncertainty_db(),
        ],
    })
}

/// One labelled window: features and the true distance, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledWindow {
    /// The window's features.
    pub features: WindowFeatures,
    /// True distance, m.
    pub distance_m: f64,
    /// Advertiser model.
    pub tx_model: &'static str,
    /// Scanner model.
    pub rx_model: &'static str,
    /// Environment of the session.
    pub environment: Environment,
}

/// Hyper-parameters of the forest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelParams {
    /// Trees in the forest.
    pub n_trees: u16,
    /// Deepest tree.
    pub max_depth: u16,
    /// Fewest samples in a leaf.
    pub min_samples_leaf: usize,
    /// Features tried per split (`None`: smartcore's default).
    pub features_per_split: Option<usize>,
    /// The close-contact distance of the decision, m (TC4TL: 1.8 m).
    pub close_threshold_m: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            n_trees: 100,
            max_depth: 8,
            min_samples_leaf: 40,
            features_per_split: Some(3),
            close_threshold_m: eval::CLOSE_THRESHOLD_M,
        }
    }
}

type Forest = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

/// A fitted distance model.
#[derive(Debug)]
pub struct DistanceModel {
    forest: Forest,
    params: ModelParams,
    residual_sigma_log10: f64,
    decision_log10: f64,
    train_windows: usize,
}

fn model_err(e: smartcore::error::Failed) -> DistanceError {
    DistanceError::Model(e.to_string())
}

fn matrix(rows: &[WindowFeatures]) -> Result<DenseMatrix<f64>, DistanceError> {
    let data: Vec<Vec<f64>> = rows.iter().map(|f| f.values.to_vec()).collect();
    DenseMatrix::from_2d_vec(&data).map_err(model_err)
}

impl DistanceModel {
    /// Fits the forest on labelled windows; deterministic for a given `seed`.
    pub fn fit(
        train: &[LabelledWindow],
        params: &ModelParams,
        seed: u64,
    ) -> Result<Self, DistanceError> {
        if train.len() < 10 {
            return Err(DistanceError::NotEnoughData("fewer than 10 windows"));
        }
        if params.n_trees == 0 || params.max_depth == 0 || params.min_samples_leaf == 0 {
            return Err(DistanceError::InvalidConfig(
                "n_trees, max_depth, min_samples_leaf must be > 0",
            ));
        }
        if !(params.close_threshold_m.is_finite() && params.close_threshold_m > 0.0) {
            return Err(DistanceError::InvalidConfig(
                "close_threshold_m must be > 0",
            ));
        }
        for w in train {
            if !(w.distance_m.is_finite() && w.distance_m > 0.0) {
                return Err(DistanceError::InvalidMeasurement(
                    "training distance must be > 0",
                ));
            }
            if w.features.values.iter().any(|v| !v.is_finite()) {
                return Err(DistanceError::InvalidMeasurement(
                    "training feature not finite",
                ));
            }
        }
        let feats: Vec<WindowFeatures> = train.iter().map(|w| w.features).collect();
        let x = matrix(&feats)?;
        let y: Vec<f64> = train.iter().map(|w| w.distance_m.log10()).collect();
        let mut rf = RandomForestRegressorParameters::default()
            .with_n_trees(usize::from(params.n_trees))
            .with_max_depth(params.max_depth)
            .with_min_samples_leaf(params.min_samples_leaf)
            .with_keep_samples(true)
            .with_seed(seed);
        if let Some(m) = params.features_per_split {
            rf = rf.with_m(m.clamp(1, N_FEATURES));
        }
        let forest = Forest::fit(&x, &y, rf).map_err(model_err)?;
        let oob = forest.predict_oob(&x).map_err(model_err)?;
        let n = y.len() as f64;
        let residual_sigma_log10 = (oob
            .iter()
            .zip(&y)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / n)
            .sqrt();
        // decision threshold on the OOB predictions that minimises nDCF on training data
        let truth: Vec<bool> = train
            .iter()
            .map(|w| w.distance_m <= params.close_threshold_m)
            .collect();
        let decision_log10 =
            eval::best_threshold(&oob, &truth).unwrap_or_else(|| params.close_threshold_m.log10());
        Ok(DistanceModel {
            forest,
            params: *params,
            residual_sigma_log10: residual_sigma_log10.max(1e-3),
            decision_log10,
            train_windows: train.len(),
        })
    }

    /// Predicted `log10(distance / 1 m)` of each window.
    pub fn predict_log10(&self, windows: &[WindowFeatures]) -> Result<Vec<f64>, DistanceError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        if windows
            .iter()
            .any(|w| w.values.iter().any(|v| !v.is_finite()))
        {
            return Err(DistanceError::InvalidMeasurement("feature not finite"));
        }
        self.forest.predict(&matrix(windows)?).map_err(model_err)
    }

    /// The distance estimate of one window (σ from the out-of-bag residuals: a factor
    /// 10^σ either way, mapped to metres at the estimate).
    pub fn estimate(&self, window: &WindowFeatures) -> Result<DistanceEstimate, DistanceError> {
        let p = self
            .predict_log10(std::slice::from_ref(window))?
            .first()
            .copied()
            .ok_or(DistanceError::NoSamples)?;
        let meters = 10f64.powf(p);
        Ok(DistanceEstimate {
            meters,
            sigma_m: meters * self.residual_sigma_log10 * std::f64::consts::LN_10,
            source: RangingSource::Ble,
        })
    }

    /// Whether each window is a close contact (predicted log-distance at or under the
    /// tuned decision threshold).
    pub fn classify(&self, windows: &[WindowFeatures]) -> Result<Vec<bool>, DistanceError> {
        Ok(self
            .predict_log10(windows)?
            .into_iter()
            .map(|p| p <= self.decision_log10)
            .collect())
    }

    /// Out-of-bag residual σ, log10 m.
    pub fn residual_sigma_log10(&self) -> f64 {
        self.residual_sigma_log10
    }

    /// Decision threshold for "close", as a predicted distance, m.
    pub fn decision_threshold_m(&self) -> f64 {
        10f64.powf(self.decision_log10)
    }

    /// The hyper-parameters it was fitted with.
    pub fn params(&self) -> &ModelParams {
        &self.params
    }

    /// Number of training windows.
    pub fn train_windows(&self) -> usize {
        self.train_windows
    }
}

/// How to generate labelled training data with the channel simulator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainingConfig {
    /// Sessions to simulate.
    pub sessions: usize,
    /// Shortest session distance, m (distances are log-uniform).
    pub min_distance_m: f64,
    /// Longest session distance, m.
    pub max_distance_m: f64,
    /// Shortest session, s (durations uniform between the two).
    pub min_duration_s: u64,
    /// Longest session, s.
    pub max_duration_s: u64,
    /// How each session is scanned (its duration is overridden).
    pub session: SessionConfig,
    /// Kalman smoothing of the features.
    pub kalman: KalmanConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            sessions: 3000,
            min_distance_m: 0.3,
            max_distance_m: 8.0,
            min_duration_s: 120,
            max_duration_s: 900,
            session: SessionConfig::default(),
            kalman: KalmanConfig::default(),
        }
    }
}

impl TrainingConfig {
    /// Most sessions one call may simulate.
    pub const MAX_SESSIONS: usize = 1_000_000;

    pub(crate) fn validate(&self) -> Result<(), DistanceError> {
        if self.sessions > Self::MAX_SESSIONS {
            return Err(DistanceError::InvalidConfig("more than MAX_SESSIONS"));
        }
        if !(self.min_distance_m > 0.0 && self.max_distance_m > self.min_distance_m) {
            return Err(DistanceError::InvalidConfig(
                "need 0 < min_distance_m < max_distance_m",
            ));
        }
        if self.max_duration_s < self.min_duration_s {
            return Err(DistanceError::InvalidConfig(
                "max_duration_s < min_duration_s",
            ));
        }
        Ok(())
    }
}

/// Simulates `cfg.sessions` labelled windows between random pairs of the given models
/// (each session: random context, log-uniform distance, uniform duration), with features
/// computed through `registry`'s calibrations. Sessions that lost every packet are skipped.
pub fn simulate_windows<R: RngCore + ?Sized>(
    models: &[&'static crate::channel::DeviceModel],
    registry: &CalibrationRegistry,
    cfg: &TrainingConfig,
    rng: &mut R,
) -> Result<Vec<LabelledWindow>, DistanceError> {
    cfg.validate()?;
    if models.is_empty() {
        return Err(DistanceError::NotEnoughData("no device models"));
    }
    let mut out = Vec::with_capacity(cfg.sessions);
    let (lo, hi) = (cfg.min_distance_m.ln(), cfg.max_distance_m.ln());
    for _ in 0..cfg.sessions {
        let pick = |rng: &mut R| {
            let i = crate::channel::uniform(0.0, models.len() as f64, rng) as usize;
            *models[i.min(models.len() - 1)]
        };
        let tx = pick(rng);
        let rx = pick(rng);
        let ctx = LinkContext::random(tx, rx, rng);
        let distance_m = crate::channel::uniform(lo, hi, rng).exp();
        let duration_s = crate::channel::uniform(
            cfg.min_duration_s as f64,
            cfg.max_duration_s as f64 + 1.0,
            rng,
        ) as u64;
        let session = SessionConfig {
            duration_s,
            ..cfg.session
        };
        let samples = generate_session(distance_m, &ctx, &session, 0, rng)?;
        if samples.is_empty() {
            continue;
        }
        let features = window_features(&samples, &registry.link(tx.name, rx.name), cfg.kalman)?;
        out.push(LabelledWindow {
            features,
            distance_m,
            tx_model: tx.name,
            rx_model: rx.name,
            environment: ctx.environment,
        });
    }
    Ok(out)
}

/// The distance service of an edge node: calibration registry, smoothing, learned model.
#[derive(Debug)]
pub struct DistanceEstimator {
    /// Calibrations per phone model.
    pub registry: CalibrationRegistry,
    /// Smoothing of the features.
    pub kalman: KalmanConfig,
    /// The fitted model.
    pub model: DistanceModel,
}

impl DistanceEstimator {
    /// Trains an estimator on simulated data from every synthetic model (the registry is
    /// [`CalibrationRegistry::synthetic`] drawn from the same seed). Deterministic.
    pub fn train_synthetic(
        seed: u64,
        cfg: &TrainingConfig,
        params: &ModelParams,
    ) -> Result<Self, DistanceError> {
        use rand_core::SeedableRng as _;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let registry = CalibrationRegistry::synthetic(&mut rng);
        let models: Vec<_> = DEVICE_MODELS.iter().collect();
        let windows = simulate_windows(&models, &registry, cfg, &mut rng)?;
        let model = DistanceModel::fit(&windows, params, seed)?;
        Ok(DistanceEstimator {
            registry,
            kalman: cfg.kalman,
            model,
        })
    }

    /// Distance of an encounter window from its `(time s, rssi dBm)` samples, the
    /// advertiser's and the scanner's model names.
    pub fn estimate(
        &self,
        samples: &[(u64, i8)],
        tx_model: &str,
        rx_model: &str,
    ) -> Result<DistanceEstimate, DistanceError> {
        self.estimate_with(samples, &self.registry.link(tx_model, rx_model))
    }

    /// As [`DistanceEstimator::estimate`], with an explicit link calibration (e.g. the TX
    /// power read from the advertiser's decrypted metadata).
    pub fn estimate_with(
        &self,
        samples: &[(u64, i8)],
        link: &LinkCalibration,
    ) -> Result<DistanceEstimate, DistanceError> {
        let f = window_features(samples, link, self.kalman)?;
        self.model.estimate(&f)
    }
}
