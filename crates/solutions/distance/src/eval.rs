//! Evaluation with NIST TC4TL's metric: nDCF at 1.8 m = P_miss + P_false_alarm (unit
//! weights), where a "positive" is a window whose true distance is at most 1.8 m.
//!
//! Device models are held out: the training windows use only the training models (as
//! advertiser and scanner), the test windows only held-out models, so the score is that
//! of phones the model never saw. Three methods are scored on the same test windows:
//!
//! - `learned`: [`DistanceModel`], close when its predicted distance is at or under the
//!   decision threshold tuned on its out-of-bag training predictions;
//! - `gaen_attenuation_threshold`: GAEN's bucket rule reduced to one decision — close when
//!   the window's median attenuation is at or under a threshold T (at least half its
//!   samples in the immediate + near buckets), with T the integer dB that minimises nDCF
//!   on the training windows (GAEN apps chose such thresholds, e.g. 55 / 63 dB, from
//!   calibration measurements);
//! - `path_loss_inversion`: `A = PL0 + 10·n·log10(d)` fitted by least squares on the
//!   training windows' median attenuation, inverted, and close when `d̂ ≤ 1.8 m`.

use rand_core::{RngCore, SeedableRng as _};
use serde::Serialize;

use crate::DistanceError;
use crate::calibration::CalibrationRegistry;
use crate::channel::{DEVICE_MODELS, DeviceModel, uniform};
use crate::model::{DistanceModel, LabelledWindow, ModelParams, TrainingConfig, simulate_windows};

/// TC4TL's close-contact distance, m.
pub const CLOSE_THRESHOLD_M: f64 = 1.8;

/// Miss and false-alarm rates of a detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetectionCost {
    /// Positives (true distance ≤ threshold) declared not close, over all positives.
    pub p_miss: f64,
    /// Negatives declared close, over all negatives.
    pub p_false_alarm: f64,
    /// `p_miss + p_false_alarm`.
    pub ndcf: f64,
    /// Number of positives.
    pub positives: usize,
    /// Number of negatives.
    pub negatives: usize,
}

/// nDCF of decisions (`true` = declared close) against the truth (`true` = really close).
/// Errors if the lengths differ or either class is empty (a rate would be undefined).
pub fn detection_cost(decisions: &[bool], truth: &[bool]) -> Result<DetectionCost, DistanceError> {
    if decisions.len() != truth.len() {
        return Err(DistanceError::InvalidConfig(
            "decisions and truth differ in length",
        ));
    }
    let positives = truth.iter().filter(|&&t| t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(DistanceError::NotEnoughData(
            "nDCF needs both positives and negatives",
        ));
    }
    let misses = decisions
        .iter()
        .zip(truth)
        .filter(|&(&d, &t)| t && !d)
        .count();
    let false_alarms = decisions
        .iter()
        .zip(truth)
        .filter(|&(&d, &t)| !t && d)
        .count();
    let p_miss = misses as f64 / positives as f64;
    let p_false_alarm = false_alarms as f64 / negatives as f64;
    Ok(DetectionCost {
        p_miss,
        p_false_alarm,
        ndcf: p_miss + p_false_alarm,
        positives,
        negatives,
    })
}

/// The threshold `τ` minimising nDCF of the rule "close iff score ≤ τ" (scores: lower =
/// closer), among midpoints between consecutive distinct scores and the two ends. `None`
/// when a class is empty or a score is not finite.
pub fn best_threshold(scores: &[f64], truth: &[bool]) -> Option<f64> {
    if scores.len() != truth.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let positives = truth.iter().filter(|&&t| t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<(f64, bool)> = scores.iter().copied().zip(truth.iter().copied()).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    // threshold below everything: every positive missed, no false alarm
    let (mut tp, mut fp) = (0usize, 0usize);
    let cost = |tp: usize, fp: usize| {
        (positives - tp) as f64 / positives as f64 + fp as f64 / negatives as f64
    };
    let mut best = (cost(0, 0), order[0].0 - 1.0);
    let mut i = 0;
    while i < order.len() {
        let v = order[i].0;
        while i < order.len() && order[i].0 == v {
            if order[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let next = order.get(i).map_or(v + 1.0, |n| n.0);
        let c = cost(tp, fp);
        if c < best.0 {
            best = (c, (v + next) / 2.0);
        }
    }
    Some(best.1)
}

/// A least-squares fit `A = pl0 + 10·n·log10(d)` of attenuation against distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PathLossFit {
    /// Attenuation at 1 m, dB.
    pub pl0_db: f64,
    /// Path-loss exponent.
    pub n: f64,
}

impl PathLossFit {
    /// Fits on `(distance m, attenuation dB)` pairs.
    pub fn fit(points: &[(f64, f64)]) -> Result<Self, DistanceError> {
        if points.len() < 2 {
            return Err(DistanceError::NotEnoughData("path-loss fit needs 2 points"));
        }
        let n = points.len() as f64;
        let xs: Vec<f64> = points.iter().map(|p| 10.0 * p.0.log10()).collect();
        let mx = xs.iter().sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs
            .iter()
            .zip(points)
            .map(|(x, p)| (x - mx) * (p.1 - my))
            .sum();
        if sxx <= 0.0 || !sxx.is_finite() || !sxy.is_finite() {
            return Err(DistanceError::NotEnoughData("distances do not vary"));
        }
        let slope = sxy / sxx;
        Ok(PathLossFit {
            pl0_db: my - slope * mx,
            n: slope,
        })
    }

    /// The distance whose fitted attenuation is `attenuation_db`, m.
    pub fn invert(&self, attenuation_db: f64) -> f64 {
        10f64.powf((attenuation_db - self.pl0_db) / (10.0 * self.n))
    }
}

/// What to generate and fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalConfig {
    /// Training data (its `sessions` are the training sessions).
    pub train: TrainingConfig,
    /// Test sessions (same distance, duration and scanning settings as training).
    pub test_sessions: usize,
    /// Device models held out of training.
    pub held_out_models: usize,
    /// The forest's hyper-parameters.
    pub model: ModelParams,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            train: TrainingConfig::default(),
            test_sessions: 1500,
            held_out_models: 5,
            model: ModelParams::default(),
        }
    }
}

/// Training and held-out test windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// Windows between training models only.
    pub train: Vec<LabelledWindow>,
    /// Windows between held-out models only.
    pub test: Vec<LabelledWindow>,
    /// Models used in training.
    pub train_models: Vec<&'static str>,
    /// Models held out (never in training).
    pub held_out_models: Vec<&'static str>,
}

/// Generates the dataset of a seed: the calibration table, the held-out split (a seeded
/// shuffle of [`DEVICE_MODELS`]), the training and the test sessions.
pub fn generate(cfg: &EvalConfig, seed: u64) -> Result<Dataset, DistanceError> {
    if cfg.held_out_models == 0 || cfg.held_out_models >= DEVICE_MODELS.len() {
        return Err(DistanceError::InvalidConfig(
            "held_out_models must be in 1..models",
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let registry = CalibrationRegistry::synthetic(&mut rng);
    let mut models: Vec<&'static DeviceModel> = DEVICE_MODELS.iter().collect();
    shuffle(&mut models, &mut rng);
    let (held, trained) = models.split_at(cfg.held_out_models);
    let mut held = held.to_vec();
    let mut trained = trained.to_vec();
    held.sort_by_key(|m| m.name);
    trained.sort_by_key(|m| m.name);
    let train = simulate_windows(&trained, &registry, &cfg.train, &mut rng)?;
    let test_cfg = TrainingConfig {
        sessions: cfg.test_sessions,
        ..cfg.train
    };
    let test = simulate_windows(&held, &registry, &test_cfg, &mut rng)?;
    Ok(Dataset {
        train,
        test,
        train_models: trained.iter().map(|m| m.name).collect(),
        held_out_models: held.iter().map(|m| m.name).collect(),
    })
}

fn shuffle<T, R: RngCore + ?Sized>(items: &mut [T], rng: &mut R) {
    for i in (1..items.len()).rev() {
        let j = (uniform(0.0, (i + 1) as f64, rng) as usize).min(i);
        items.swap(i, j);
    }
}

/// The score of one method on the test windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    /// Method name.
    pub name: &'static str,
    /// Its detection cost.
    pub cost: DetectionCost,
    /// The decision rule, in words (with the tuned value).
    pub rule: String,
}

/// The evaluation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Close-contact distance, m.
    pub close_threshold_m: f64,
    /// Training windows.
    pub train_sessions: usize,
    /// Test windows.
    pub test_sessions: usize,
    /// Models used in training.
    pub train_models: Vec<&'static str>,
    /// Models held out.
    pub held_out_models: Vec<&'static str>,
    /// One result per method: learned, GAEN threshold, path-loss inversion.
    pub methods: Vec<MethodResult>,
}

impl EvalReport {
    /// The result of a method by name.
    pub fn method(&self, name: &str) -> Option<&MethodResult> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// Scores the fitted model and the two baselines on the dataset's test windows.
pub fn evaluate(dataset: &Dataset, model: &DistanceModel) -> Result<EvalReport, DistanceError> {
    let close = model.params().close_threshold_m;
    let truth_of =
        |ws: &[LabelledWindow]| -> Vec<bool> { ws.iter().map(|w| w.distance_m <= close).collect() };
    let test_truth = truth_of(&dataset.test);
    let train_truth = truth_of(&dataset.train);
    let test_features: Vec<_> = dataset.test.iter().map(|w| w.features).collect();

    let learned = detection_cost(&model.classify(&test_features)?, &test_truth)?;

    let train_att: Vec<f64> = dataset
        .train
        .iter()
        .map(|w| w.features.median_attenuation_db())
        .collect();
    let test_att: Vec<f64> = dataset
        .test
        .iter()
        .map(|w| w.features.median_attenuation_db())
        .collect();
    // GAEN thresholds are whole dB: tune over integers
    let mut best_t = (f64::INFINITY, 0.0);
    for t in 20..=110 {
        let t = f64::from(t);
        let d: Vec<bool> = train_att.iter().map(|&a| a <= t).collect();
        let c = detection_cost(&d, &train_truth)?.ndcf;
        if c < best_t.0 {
            best_t = (c, t);
        }
    }
    let gaen_threshold = best_t.1;
    let gaen = detection_cost(
        &test_att
            .iter()
            .map(|&a| a <= gaen_threshold)
            .collect::<Vec<_>>(),
        &test_truth,
    )?;

    let fit = PathLossFit::fit(
        &dataset
            .train
            .iter()
            .zip(&train_att)
            .map(|(w, &a)| (w.distance_m, a))
            .collect::<Vec<_>>(),
    )?;
    let inversion = detection_cost(
        &test_att
            .iter()
            .map(|&a| fit.invert(a) <= close)
            .collect::<Vec<_>>(),
        &test_truth,
    )?;

    Ok(EvalReport {
        close_threshold_m: close,
        train_sessions: dataset.train.len(),
        test_sessions: dataset.test.len(),
        train_models: dataset.train_models.clone(),
        held_out_models: dataset.held_out_models.clone(),
        methods: vec![
            MethodResult {
                name: "learned",
                cost: learned,
                rule: format!(
                    "random forest ({} trees) on log10 distance; close when predicted <= {:.2} m (tuned on out-of-bag training predictions)",
                    model.params().n_trees,
                    model.decision_threshold_m()
                ),
            },
            MethodResult {
                name: "gaen_attenuation_threshold",
                cost: gaen,
                rule: format!(
                    "close when median attenuation <= {gaen_threshold:.0} dB (tuned on training windows)"
                ),
            },
            MethodResult {
                name: "path_loss_inversion",
                cost: inversion,
                rule: format!(
                    "attenuation = {:.1} dB + 10 * {:.2} * log10(d), inverted; close when d <= {close} m",
                    fit.pl0_db, fit.n
                ),
            },
        ],
    })
}
