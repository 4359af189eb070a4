use trustedge_distance::channel::gaussian;
use trustedge_distance::fusion::{
    DistanceEstimate, FusionConfig, RangeObservation, RangingErrorModel, RangingSource, fuse,
};

use crate::rng;

fn est(meters: f64, sigma_m: f64, source: RangingSource) -> RangeObservation {
    DistanceEstimate {
        meters,
        sigma_m,
        source,
    }
    .into()
}

#[test]
fn fusing_consistent_estimates_lowers_the_uncertainty() {
    let ble = est(2.0, 1.0, RangingSource::Ble);
    let rtt = est(2.5, 1.5, RangingSource::WifiRtt);
    let f = fuse(&[ble, rtt], &FusionConfig::default()).unwrap();
    assert!(f.rejected.is_empty());
    assert_eq!(f.estimate.source, RangingSource::Fused);
    assert!(f.estimate.sigma_m < 1.0, "{:?}", f.estimate);
    assert!(f.estimate.meters > 2.0 && f.estimate.meters < 2.5);
    // inverse-variance in ln d by hand: σ_ln 0.5 and 0.6
    let (w1, w2) = (1.0 / 0.25, 1.0 / 0.36);
    let m = (w1 * 2f64.ln() + w2 * 2.5f64.ln()) / (w1 + w2);
    assert!((f.estimate.meters - m.exp()).abs() < 1e-9);
    assert!((f.estimate.sigma_m - m.exp() / (w1 + w2).sqrt()).abs() < 1e-9);

    let uwb = est(2.1, 0.1, RangingSource::Uwb);
    let f = fuse(&[ble, rtt, uwb], &FusionConfig::default()).unwrap();
    assert!(f.rejected.is_empty());
    assert!(f.estimate.sigma_m < 0.1);
    assert!((f.estimate.meters - 2.1).abs() < 0.05);
}

#[test]
fn one_estimate_is_returned_as_is() {
    let uwb = est(3.0, 0.1, RangingSource::Uwb);
    let f = fuse(&[uwb], &FusionConfig::default()).unwrap();
    assert_eq!(f.estimate.source, RangingSource::Uwb);
    assert!((f.estimate.meters - 3.0).abs() < 1e-12);
    assert!((f.estimate.sigma_m - 0.1).abs() < 1e-12);
}

#[test]
fn the_gate_drops_an_nlos_range_first() {
    let ble = est(1.5, 0.7, RangingSource::Ble);
    let uwb_los = est(1.4, 0.1, RangingSource::Uwb);
    let mut uwb_nlos = est(4.0, 0.1, RangingSource::Uwb);
    uwb_nlos.nlos_suspected = true;
    let f = fuse(&[ble, uwb_los, uwb_nlos], &FusionConfig::default()).unwrap();
    assert_eq!(f.rejected, vec![2]);
    assert!((f.estimate.meters - 1.4).abs() < 0.05);

    // two that disagree: the precise unflagged range wins over BLE
    let ble_far = est(10.0, 5.0, RangingSource::Ble);
    let uwb = est(1.0, 0.1, RangingSource::Uwb);
    let f = fuse(&[ble_far, uwb], &FusionConfig::default()).unwrap();
    assert_eq!(f.rejected, vec![0]);
    assert_eq!(f.estimate.source, RangingSource::Uwb);
    // …unless the range is flagged NLOS
    let mut flagged = uwb;
    flagged.nlos_suspected = true;
    let f = fuse(&[ble_far, flagged], &FusionConfig::default()).unwrap();
    assert_eq!(f.rejected, vec![1]);
    assert_eq!(f.estimate.source, RangingSource::Ble);
}

#[test]
fn invalid_inputs_are_errors() {
    let cfg = FusionConfig::default();
    assert!(fuse(&[], &cfg).is_err());
    assert!(fuse(&[est(0.0, 1.0, RangingSource::Ble)], &cfg).is_err());
    assert!(fuse(&[est(1.0, 0.0, RangingSource::Ble)], &cfg).is_err());
    assert!(fuse(&[est(f64::NAN, 1.0, RangingSource::Ble)], &cfg).is_err());
    let bad = FusionConfig {
        gate_sigmas: 0.0,
        ..cfg
    };
    assert!(fuse(&[est(1.0, 1.0, RangingSource::Ble)], &bad).is_err());
}

#[test]
fn fusion_beats_ble_alone_on_simulated_ranges() {
    // BLE: log-normal error, factor e^0.5; UWB with NLOS; Wi-Fi RTT with NLOS
    let mut r = rng(11);
    let cfg = FusionConfig::default();
    let (mut err_ble, mut err_fused, mut err_rtt_fused) = (0.0, 0.0, 0.0);
    let n = 3000;
    for i in 0..n {
        let truth = 0.5 + (i % 60) as f64 * 0.1;
        let ble_m = truth * gaussian(0.0, 0.5, &mut r).exp();
        let ble = est(ble_m, ble_m * 0.5, RangingSource::Ble);
        let uwb = RangingErrorModel::UWB.simulate(truth, &mut r);
        let rtt = RangingErrorModel::WIFI_RTT.simulate(truth, &mut r);
        let fused = fuse(&[ble, uwb], &cfg).unwrap();
        let f = fused.estimate;
        let g = fuse(&[ble, rtt], &cfg).unwrap().estimate;
        if fused.rejected.is_empty() {
            // with both kept, the relative (log-domain) σ is below either input's
            let rel = f.sigma_m / f.meters;
            let uwb_sigma = if uwb.nlos_suspected {
                uwb.estimate.sigma_m.hypot(cfg.nlos_extra_sigma_m)
            } else {
                uwb.estimate.sigma_m
            };
            let uwb_rel = (uwb_sigma / uwb.estimate.meters).max(cfg.min_sigma_ln);
            assert!(
                rel < 0.5 && rel < uwb_rel,
                "{rel} vs BLE 0.5, UWB {uwb_rel}"
            );
        }
        err_ble += (ble_m - truth).powi(2);
        err_fused += (f.meters - truth).powi(2);
        err_rtt_fused += (g.meters - truth).powi(2);
    }
    let rms = |e: f64| (e / n as f64).sqrt();
    assert!(
        rms(err_fused) < rms(err_ble) / 3.0,
        "{} {}",
        rms(err_fused),
        rms(err_ble)
    );
    assert!(
        rms(err_rtt_fused) < rms(err_ble),
        "{} {}",
        rms(err_rtt_fused),
        rms(err_ble)
    );
}
