use trustedge_distance::calibration::{
    Calibration, CalibrationConfidence, CalibrationRegistry, DEFAULT_CALIBRATION, Kalman1d,
    KalmanConfig, attenuation_db, kalman_smooth, median, quantile, sliding_median,
};
use trustedge_distance::channel::{DEVICE_MODELS, gaussian};

use crate::{mean_std, rng};

#[test]
fn attenuation_is_gaen_tx_power_minus_corrected_rssi() {
    // GAEN: attenuation = TX_power − (RSSI_measured + RSSI_correction)
    assert_eq!(attenuation_db(-10.0, -70.0, 5.0), 55.0);
    assert_eq!(attenuation_db(0.0, -40.0, 0.0), 40.0);
    let mut reg = CalibrationRegistry::default();
    let cal = Calibration {
        tx_power_dbm: -8.0,
        rssi_offset_db: 3.0,
        uncertainty_db: 1.0,
        confidence: CalibrationConfidence::High,
    };
    assert_eq!(reg.insert("phone-a", cal).unwrap(), None);
    let link = reg.link("phone-a", "phone-a");
    assert_eq!(link.attenuation_db(-60), -8.0 - (-60.0 + 3.0));
    assert_eq!(link.confidence(), CalibrationConfidence::High);
    assert!((link.uncertainty_db() - 2f64.sqrt()).abs() < 1e-12);
}

#[test]
fn unknown_models_get_the_default_with_larger_uncertainty() {
    let mut reg = CalibrationRegistry::default();
    let cal = Calibration {
        tx_power_dbm: -8.0,
        rssi_offset_db: 3.0,
        uncertainty_db: 1.0,
        confidence: CalibrationConfidence::High,
    };
    reg.insert("known", cal).unwrap();
    assert!(reg.is_known("known") && !reg.is_known("stranger"));
    assert_eq!(reg.get("stranger"), DEFAULT_CALIBRATION);
    let link = reg.link("known", "stranger");
    assert_eq!(link.tx, cal);
    assert_eq!(link.rx, DEFAULT_CALIBRATION);
    assert_eq!(link.confidence(), CalibrationConfidence::Lowest);
    assert!(link.uncertainty_db() > cal.uncertainty_db * 2.0);
    assert!(DEFAULT_CALIBRATION.uncertainty_db > cal.uncertainty_db);
    // replacing returns the old entry
    let newer = Calibration {
        tx_power_dbm: -9.0,
        ..cal
    };
    assert_eq!(reg.insert("known", newer).unwrap(), Some(cal));
    assert_eq!(reg.len(), 1);
}

#[test]
fn the_synthetic_table_is_close_to_the_truth_and_seeded() {
    let a = CalibrationRegistry::synthetic(&mut rng(1));
    let b = CalibrationRegistry::synthetic(&mut rng(1));
    let c = CalibrationRegistry::synthetic(&mut rng(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let listed = DEVICE_MODELS.iter().filter(|m| m.in_calibration_table);
    assert_eq!(a.len(), listed.clone().count());
    for m in DEVICE_MODELS {
        assert_eq!(a.is_known(m.name), m.in_calibration_table, "{}", m.name);
        if m.in_calibration_table {
            let cal = a.get(m.name);
            // 5σ of the per-value error (σ ≤ 2 dB)
            assert!((cal.tx_power_dbm - m.tx_power_dbm).abs() < 10.0);
            assert!((cal.rssi_offset_db - m.rssi_offset_db).abs() < 10.0);
            assert!(cal.confidence >= CalibrationConfidence::Medium);
        }
    }
}

fn noisy_constant(seed: u64) -> Vec<(u64, f64)> {
    let mut r = rng(seed);
    (0..2000u64)
        .map(|i| (i * 20, gaussian(60.0, 5.0, &mut r)))
        .collect()
}

#[test]
fn smoothing_reduces_variance() {
    let raw = noisy_constant(3);
    let raw_v: Vec<f64> = raw.iter().map(|&(_, v)| v).collect();
    let (raw_mean, raw_std) = mean_std(&raw_v);
    let k = kalman_smooth(&raw, KalmanConfig::default());
    let (k_mean, k_std) = mean_std(&k[50..]);
    assert!(k_std < raw_std / 2.0, "kalman {k_std} vs raw {raw_std}");
    assert!((k_mean - raw_mean).abs() < 0.5);
    let m = sliding_median(&raw, 300);
    let (m_mean, m_std) = mean_std(&m[20..]);
    assert!(m_std < raw_std / 2.0, "median {m_std} vs raw {raw_std}");
    assert!((m_mean - 60.0).abs() < 0.5);
}

#[test]
fn kalman_follows_a_real_change() {
    let mut k = Kalman1d::new(KalmanConfig::default());
    for t in 0..30 {
        k.update(t * 60, 50.0);
    }
    assert!((k.estimate().unwrap().0 - 50.0).abs() < 1e-9);
    let mut last = 0.0;
    for t in 30..90 {
        last = k.update(t * 60, 70.0);
    }
    assert!((last - 70.0).abs() < 1.0, "{last}");
    // out-of-order samples do not panic and count as simultaneous
    let v = k.update(0, 70.0);
    assert!(v.is_finite());
}

#[test]
fn quantiles_and_medians_by_hand() {
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(quantile(&mut [10.0, 20.0, 30.0, 40.0, 50.0], 0.25), 20.0);
    assert_eq!(quantile(&mut [10.0, 20.0], 1.0), 20.0);
    assert!(median(&mut []).is_nan());
    // trailing window: the third sample's window [t-10, t] holds samples 2 and 3 only
    let s = [(0u64, 1.0), (15, 5.0), (20, 9.0)];
    assert_eq!(sliding_median(&s, 10), vec![1.0, 5.0, 7.0]);
}
