use trustedge_distance::calibration::{Calibration, CalibrationConfidence, LinkCalibration};
use trustedge_distance::exposure::{
    CloseContactRule, ContactInterval, DAY_S, ExposureWindow, Infectiousness, ScanInstance,
    ScoringConfig, WindowConfig, build_windows, contact_intervals, daily_summaries,
};
use trustedge_distance::{DistanceEstimate, RangingSource};
use trustedge_tracing::ReportType;

fn scan(att: u8, secs: u32) -> ScanInstance {
    ScanInstance {
        typical_attenuation_db: att,
        min_attenuation_db: att.saturating_sub(3),
        seconds_since_last_scan: secs,
    }
}

fn window(
    day: u32,
    rt: ReportType,
    inf: Infectiousness,
    scans: Vec<ScanInstance>,
) -> ExposureWindow {
    ExposureWindow {
        day,
        report_type: rt,
        infectiousness: inf,
        calibration_confidence: CalibrationConfidence::High,
        scan_instances: scans,
    }
}

#[test]
fn buckets_follow_the_thresholds_inclusively() {
    let cfg = ScoringConfig::default();
    assert_eq!(cfg.attenuation_bucket_thresholds_db, [56, 62, 70]);
    for (att, bucket) in [
        (0, 0),
        (56, 0),
        (57, 1),
        (62, 1),
        (63, 2),
        (70, 2),
        (71, 3),
        (255, 3),
    ] {
        assert_eq!(cfg.bucket(att), bucket, "{att} dB");
    }
}

#[test]
fn window_score_by_hand() {
    let cfg = ScoringConfig::default();
    // 300 s immediate + 300 s near + 120 s medium (×0.3) + 300 s other (×0) = 636 s
    let w = window(
        19_000,
        ReportType::ConfirmedTest,
        Infectiousness::High,
        vec![scan(50, 300), scan(60, 300), scan(65, 120), scan(80, 300)],
    );
    assert!((cfg.weighted_duration_s(&w) - 636.0).abs() < 1e-9);
    // × high infectiousness 2.0 × confirmed test 1.0
    assert!((cfg.window_score(&w) - 1272.0).abs() < 1e-9);
    let revoked = ExposureWindow {
        report_type: ReportType::Revoked,
        ..w.clone()
    };
    assert_eq!(cfg.window_score(&revoked), 0.0);
    let none = ExposureWindow {
        infectiousness: Infectiousness::None,
        ..w
    };
    assert_eq!(cfg.window_score(&none), 0.0);
}

#[test]
fn daily_summaries_by_hand() {
    let cfg = ScoringConfig {
        minimum_window_score: 200.0,
        ..ScoringConfig::default()
    };
    let windows = vec![
        // day 10: 600 s immediate, standard, test → 600
        window(
            10,
            ReportType::ConfirmedTest,
            Infectiousness::Standard,
            vec![scan(40, 300), scan(50, 300)],
        ),
        // day 10: 300 s near, high, self report → 300 × 2 = 600, weighted duration 300
        window(
            10,
            ReportType::SelfReport,
            Infectiousness::High,
            vec![scan(60, 300)],
        ),
        // day 10: 120 s immediate → 120 < minimum 200: left out
        window(
            10,
            ReportType::ConfirmedTest,
            Infectiousness::Standard,
            vec![scan(40, 120)],
        ),
        // day 10: not infectious: left out
        window(
            10,
            ReportType::ConfirmedTest,
            Infectiousness::None,
            vec![scan(40, 900)],
        ),
        // day 11: 300 s medium ×0.3 = 90 → left out; 900 s immediate → 900
        window(
            11,
            ReportType::ConfirmedClinicalDiagnosis,
            Infectiousness::Standard,
            vec![scan(66, 300)],
        ),
        window(
            11,
            ReportType::ConfirmedClinicalDiagnosis,
            Infectiousness::Standard,
            vec![scan(30, 900)],
        ),
    ];
    let days = daily_summaries(&windows, &cfg).unwrap();
    assert_eq!(days.len(), 2);
    let d10 = &days[0];
    assert_eq!(d10.day, 10);
    assert_eq!(d10.summary.maximum_score, 600.0);
    assert_eq!(d10.summary.score_sum, 1200.0);
    assert_eq!(d10.summary.weighted_duration_sum, 900.0);
    let test = d10.by_report_type[&ReportType::ConfirmedTest.number()];
    assert_eq!((test.score_sum, test.weighted_duration_sum), (600.0, 600.0));
    let selfr = d10.by_report_type[&ReportType::SelfReport.number()];
    assert_eq!(
        (selfr.score_sum, selfr.weighted_duration_sum),
        (600.0, 300.0)
    );
    assert_eq!(d10.by_report_type.len(), 2);
    let d11 = &days[1];
    assert_eq!(
        (d11.day, d11.summary.score_sum, d11.summary.maximum_score),
        (11, 900.0, 900.0)
    );
}

#[test]
fn scoring_config_is_validated() {
    let ok = ScoringConfig::default();
    assert!(ok.validate().is_ok());
    let unordered = ScoringConfig {
        attenuation_bucket_thresholds_db: [60, 60, 70],
        ..ok
    };
    assert!(daily_summaries(&[], &unordered).is_err());
    let heavy = ScoringConfig {
        attenuation_bucket_weights: [3.0, 1.0, 0.5, 0.0],
        ..ok
    };
    assert!(heavy.validate().is_err());
    let negative = ScoringConfig {
        minimum_window_score: -1.0,
        ..ok
    };
    assert!(negative.validate().is_err());
}

fn flat_link(confidence: CalibrationConfidence) -> LinkCalibration {
    let cal = Calibration {
        tx_power_dbm: 0.0,
        rssi_offset_db: 0.0,
        uncertainty_db: 1.0,
        confidence,
    };
    LinkCalibration {
        tx: cal,
        rx: Calibration {
            confidence: CalibrationConfidence::Low,
            ..cal
        },
    }
}

#[test]
fn windows_are_built_from_scans_and_slots() {
    // attenuation = −rssi. Day 20 000 starts at 1 728 000 000 s; slot of 1800 s.
    let t0 = 20_000 * DAY_S;
    let samples = [
        (t0 + 100, -50i8),
        (t0 + 102, -54),
        (t0 + 400, -60),
        (t0 + 1000, -70), // gap of 600 s: credit capped at 300
        (t0 + 1801, -40), // next slot
        (t0 + 1805, -45),
    ];
    let mut shuffled = samples;
    shuffled.swap(0, 4);
    let ws = build_windows(
        &shuffled,
        &flat_link(CalibrationConfidence::High),
        ReportType::ConfirmedTest,
        Infectiousness::Standard,
        &WindowConfig {
            cadence_credit: false,
            ..WindowConfig::default()
        },
    )
    .unwrap();
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0].day, 20_000);
    assert_eq!(ws[0].calibration_confidence, CalibrationConfidence::Low);
    let s = &ws[0].scan_instances;
    assert_eq!(s.len(), 3);
    assert_eq!(
        (
            s[0].typical_attenuation_db,
            s[0].min_attenuation_db,
            s[0].seconds_since_last_scan
        ),
        (52, 50, 60)
    );
    assert_eq!(
        (s[1].typical_attenuation_db, s[1].seconds_since_last_scan),
        (60, 300)
    );
    assert_eq!(
        (s[2].typical_attenuation_db, s[2].seconds_since_last_scan),
        (70, 300)
    );
    let s = &ws[1].scan_instances;
    assert_eq!(s.len(), 1);
    // 1801 − 1000 = 801 s since the last scan, capped at 300
    assert_eq!(
        (
            s[0].typical_attenuation_db,
            s[0].min_attenuation_db,
            s[0].seconds_since_last_scan
        ),
        (43, 40, 300)
    );
    // weighted duration of the first window: 60 + 300 (near) + 300 × 0.3 (medium)
    let cfg = ScoringConfig::default();
    assert!((cfg.weighted_duration_s(&ws[0]) - 450.0).abs() < 1e-9);
    assert!(
        build_windows(
            &[],
            &flat_link(CalibrationConfidence::High),
            ReportType::ConfirmedTest,
            Infectiousness::High,
            &WindowConfig::default()
        )
        .unwrap()
        .is_empty()
    );
    let bad = WindowConfig {
        window_s: 7,
        ..WindowConfig::default()
    };
    assert!(
        build_windows(
            &samples,
            &flat_link(CalibrationConfidence::High),
            ReportType::ConfirmedTest,
            Infectiousness::High,
            &bad
        )
        .is_err()
    );
}

fn at(start_s: u64, duration_s: u32, meters: f64) -> ContactInterval {
    ContactInterval {
        start_s,
        duration_s,
        distance: DistanceEstimate {
            meters,
            sigma_m: 0.5,
            source: RangingSource::Ble,
        },
    }
}

#[test]
fn close_contact_rule_boundaries() {
    let rule = CloseContactRule::default();
    assert_eq!((rule.min_minutes_per_day, rule.max_distance_m), (15.0, 2.0));
    let day = 19_500 * DAY_S;
    // exactly 15 minutes at exactly 2.0 m: close
    assert!(rule.is_close_contact(&[at(day + 3600, 600, 2.0), at(day + 7200, 300, 1.0)]));
    // one second short: not close
    assert!(!rule.is_close_contact(&[at(day + 3600, 600, 2.0), at(day + 7200, 299, 1.0)]));
    // just beyond 2 m does not count
    assert!(!rule.is_close_contact(&[at(day + 3600, 900, 2.01)]));
    // 10 + 10 minutes on two days: no day reaches 15
    let split = [at(day + 100, 600, 1.0), at(day + DAY_S + 100, 600, 1.0)];
    assert!(!rule.is_close_contact(&split));
    // an interval across midnight is split between the two days
    let across = rule.evaluate(&[at(day + DAY_S - 600, 1200, 1.0)]);
    assert_eq!(across.len(), 2);
    assert_eq!((across[0].day, across[0].minutes_within), (19_500, 10.0));
    assert_eq!((across[1].day, across[1].minutes_within), (19_501, 10.0));
    // a stricter rule is configurable
    let strict = CloseContactRule {
        min_minutes_per_day: 5.0,
        max_distance_m: 1.0,
    };
    let ds = strict.evaluate(&[at(day, 300, 1.0), at(day + 400, 600, 1.5)]);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].minutes_within, 5.0);
    assert!(ds[0].close_contact);
}

#[test]
fn contact_intervals_chunk_whole_scans() {
    let samples: Vec<(u64, i8)> = (0..20u64).map(|i| (i * 60, -50)).collect();
    let mut calls = Vec::new();
    let ivs = contact_intervals(&samples, 300, &WindowConfig::default(), |chunk| {
        calls.push(chunk.len());
        Ok(DistanceEstimate {
            meters: 1.0,
            sigma_m: 0.3,
            source: RangingSource::Ble,
        })
    })
    .unwrap();
    // 20 scans a minute apart in chunks of 5 minutes: 4 chunks of 5 scans
    assert_eq!(calls, vec![5, 5, 5, 5]);
    assert_eq!(ivs.len(), 4);
    assert_eq!(ivs[0].start_s, 0);
    assert_eq!(ivs[1].start_s, 300);
    // credit: 60 s for the first scan, then 60 s each
    assert!(ivs.iter().all(|iv| iv.duration_s == 300));
    assert!(CloseContactRule::default().is_close_contact(&ivs));
    assert!(contact_intervals(&samples, 0, &WindowConfig::default(), |_| unreachable!()).is_err());
}

#[test]
fn cadence_aware_credit_counts_each_scan_as_one_period() {
    // GAEN cadence: a scan every 270 s for 16 minutes (4 scans), then a second meeting
    // two hours later with 2 scans.
    let t0 = 20_000 * DAY_S;
    let mut samples: Vec<(u64, i8)> = (0..4).map(|k| (t0 + 270 * k, -60)).collect();
    samples.extend((0..2).map(|k| (t0 + 7200 + 270 * k, -60)));
    let legacy = WindowConfig {
        cadence_credit: false,
        ..WindowConfig::default()
    };
    let credits = |cfg: &WindowConfig| -> Vec<u32> {
        trustedge_distance::exposure::scans(&samples, cfg)
            .iter()
            .map(|s| s.credit_s)
            .collect()
    };
    // legacy: 60 s for the first scan, the capped 300 s for the scan after the break
    assert_eq!(credits(&legacy), vec![60, 270, 270, 270, 300, 270]);
    // cadence-aware: every scan stands for one 270 s period
    assert_eq!(credits(&WindowConfig::default()), vec![270; 6]);
    // 4 scans of a 16-minute contact: 18 minutes credited, over the 15-minute rule
    let first: u32 = credits(&WindowConfig::default())[..4].iter().sum();
    assert!(first >= 15 * 60);
    let legacy_first: u32 = credits(&legacy)[..4].iter().sum();
    assert!(legacy_first < 15 * 60);
}
