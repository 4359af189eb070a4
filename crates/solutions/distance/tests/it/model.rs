use trustedge_distance::calibration::{
    Calibration, CalibrationConfidence, CalibrationRegistry, KalmanConfig, LinkCalibration,
};
use trustedge_distance::channel::DEVICE_MODELS;
use trustedge_distance::model::{
    DistanceEstimator, DistanceModel, FEATURE_NAMES, ModelParams, TrainingConfig, simulate_windows,
    window_features,
};
use trustedge_distance::{DistanceError, RangingSource};

use crate::rng;

fn flat_link() -> LinkCalibration {
    let cal = Calibration {
        tx_power_dbm: 0.0,
        rssi_offset_db: 0.0,
        uncertainty_db: 1.0,
        confidence: CalibrationConfidence::Medium,
    };
    LinkCalibration { tx: cal, rx: cal }
}

fn feature(f: &trustedge_distance::model::WindowFeatures, name: &str) -> f64 {
    let i = FEATURE_NAMES.iter().position(|n| *n == name).unwrap();
    f.values[i]
}

#[test]
fn window_features_by_hand() {
    // attenuation = −rssi on a flat link: scans at 0 s (50, 60) and 60 s (40, 70), one at 200 s (55)
    let samples = [(0u64, -50i8), (1, -60), (60, -40), (61, -70), (200, -55)];
    let f = window_features(&samples, &flat_link(), KalmanConfig::default()).unwrap();
    assert_eq!(feature(&f, "min_db"), 40.0);
    assert_eq!(feature(&f, "max_db"), 70.0);
    assert_eq!(feature(&f, "median_db"), 55.0);
    assert_eq!(feature(&f, "mean_db"), 55.0);
    assert_eq!(feature(&f, "samples"), 5.0);
    assert_eq!(feature(&f, "duration_s"), 200.0);
    // per-scan minima 50, 40, 55 → median 50
    assert_eq!(feature(&f, "scan_min_median_db"), 50.0);
    assert_eq!(feature(&f, "calibration_confidence"), 2.0);
    assert!((feature(&f, "calibration_uncertainty_db") - 2f64.sqrt()).abs() < 1e-12);
    let std = feature(&f, "std_db");
    assert!((std - (500.0f64 / 5.0).sqrt()).abs() < 1e-9, "{std}");
    assert_eq!(f.median_attenuation_db(), 55.0);
    // order does not matter
    let mut rev = samples;
    rev.reverse();
    assert_eq!(
        window_features(&rev, &flat_link(), KalmanConfig::default()).unwrap(),
        f
    );
    assert_eq!(
        window_features(&[], &flat_link(), KalmanConfig::default()),
        Err(DistanceError::NoSamples)
    );
}

fn small_training() -> TrainingConfig {
    TrainingConfig {
        sessions: 300,
        ..TrainingConfig::default()
    }
}

fn small_params() -> ModelParams {
    ModelParams {
        n_trees: 15,
        ..ModelParams::default()
    }
}

#[test]
fn the_model_is_deterministic_given_the_seed() {
    let reg = CalibrationRegistry::synthetic(&mut rng(1));
    let models: Vec<_> = DEVICE_MODELS.iter().collect();
    let train = simulate_windows(&models, &reg, &small_training(), &mut rng(2)).unwrap();
    let again = simulate_windows(&models, &reg, &small_training(), &mut rng(2)).unwrap();
    assert_eq!(train, again);
    let probe: Vec<_> = train.iter().take(50).map(|w| w.features).collect();
    let a = DistanceModel::fit(&train, &small_params(), 7).unwrap();
    let b = DistanceModel::fit(&train, &small_params(), 7).unwrap();
    let c = DistanceModel::fit(&train, &small_params(), 8).unwrap();
    let pa = a.predict_log10(&probe).unwrap();
    assert_eq!(pa, b.predict_log10(&probe).unwrap());
    assert_ne!(pa, c.predict_log10(&probe).unwrap());
    assert_eq!(a.residual_sigma_log10(), b.residual_sigma_log10());
    assert_eq!(a.decision_threshold_m(), b.decision_threshold_m());
    assert!(a.residual_sigma_log10() > 0.0 && a.residual_sigma_log10() < 0.5);
}

#[test]
fn the_estimator_ranks_near_sessions_closer_than_far_ones() {
    let est = DistanceEstimator::train_synthetic(3, &small_training(), &small_params()).unwrap();
    use trustedge_distance::channel::{LinkContext, SessionConfig, generate_session};
    let mut r = rng(4);
    let (mut near, mut far) = (Vec::new(), Vec::new());
    for i in 0..40 {
        let tx = DEVICE_MODELS[i % 16];
        let rx = DEVICE_MODELS[(i * 7 + 3) % 16];
        let ctx = LinkContext::random(tx, rx, &mut r);
        for (d, out) in [(0.5, &mut near), (6.0, &mut far)] {
            let s = generate_session(d, &ctx, &SessionConfig::default(), 0, &mut r).unwrap();
            if s.is_empty() {
                continue;
            }
            let e = est.estimate(&s, tx.name, rx.name).unwrap();
            assert_eq!(e.source, RangingSource::Ble);
            assert!(e.meters > 0.0 && e.sigma_m > 0.0);
            out.push(e.meters);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (n, f) = (med(&mut near), med(&mut far));
    assert!(n < 1.5 && f > 2.5, "median near {n} m, far {f} m");
    assert_eq!(
        est.estimate(&[], "aurora-a1", "aurora-a2"),
        Err(DistanceError::NoSamples)
    );
}

#[test]
fn fitting_refuses_bad_input() {
    assert!(matches!(
        DistanceModel::fit(&[], &small_params(), 1),
        Err(DistanceError::NotEnoughData(_))
    ));
    let reg = CalibrationRegistry::default();
    let models: Vec<_> = DEVICE_MODELS.iter().collect();
    let cfg = TrainingConfig {
        sessions: 20,
        ..TrainingConfig::default()
    };
    let mut w = simulate_windows(&models, &reg, &cfg, &mut rng(5)).unwrap();
    let zero = ModelParams {
        n_trees: 0,
        ..small_params()
    };
    assert!(DistanceModel::fit(&w, &zero, 1).is_err());
    w[0].distance_m = -1.0;
    assert!(DistanceModel::fit(&w, &small_params(), 1).is_err());
    let bad = TrainingConfig {
        min_distance_m: 3.0,
        max_distance_m: 1.0,
        ..cfg
    };
    assert!(simulate_windows(&models, &reg, &bad, &mut rng(5)).is_err());
    assert!(simulate_windows(&[], &reg, &cfg, &mut rng(5)).is_err());
}
