//! Detectors on clean steps and stationary noise, and the simulator's evaluation.

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use trustedge_aerosol::detect::{
    AlarmKind, Chart, ChartState, ParticleConfig, ParticleDetector, VentilationConfig,
    VentilationDetector,
};
use trustedge_aerosol::risk::{CO2_GENERATION_M3_PER_H_PER_PERSON, OUTDOOR_CO2_PPM, Reading};
use trustedge_aerosol::sim::{ChartFamily, EvalConfig, SimConfig, evaluate, simulate};

/// A standard normal from a seeded RNG (Box–Muller), independent of the crate's sampler.
fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u = |rng: &mut ChaCha8Rng| ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let (u1, u2) = (u(rng), u(rng));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn reading(t_s: u64, co2_ppm: f64, pm25_ug_m3: f64, occupancy: u32) -> Reading {
    Reading {
        t_s,
        co2_ppm,
        pm25_ug_m3,
        temperature_c: 21.0,
        humidity_pct: 40.0,
        occupancy,
    }
}

/// Simulates CO₂ of a 250 m³ room with 20 people, ACH 3 until `fail_at_min`, then
/// `ach_after`, noise 15 ppm; returns the readings (one a minute).
fn co2_series(minutes: u64, fail_at_min: u64, ach_after: f64, seed: u64) -> Vec<Reading> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (v, n) = (250.0, 20.0);
    let mut c = OUTDOOR_CO2_PPM + n * CO2_GENERATION_M3_PER_H_PER_PERSON * 1e6 / (3.0 * v);
    (0..minutes)
        .map(|m| {
            let ach = if m >= fail_at_min { ach_after } else { 3.0 };
            let c_ss = OUTDOOR_CO2_PPM + n * CO2_GENERATION_M3_PER_H_PER_PERSON * 1e6 / (ach * v);
            c = c_ss + (c - c_ss) * (-ach / 60.0f64).exp();
            reading(m * 60, c + 15.0 * gauss(&mut rng), 8.0, 20)
        })
        .collect()
}

#[test]
fn ventilation_failure_on_a_clean_step_is_detected_within_minutes() {
    for chart in [
        Chart::Cusum { k: 0.75, h: 6.0 },
        Chart::Ewma {
            lambda: 0.1,
            l: 4.0,
        },
    ] {
        let mut delays = Vec::new();
        for seed in 0..20 {
            let mut cfg = VentilationConfig::new(250.0, 3.0);
            cfg.chart = chart;
            let mut d = VentilationDetector::new(cfg).unwrap();
            let series = co2_series(240, 120, 0.6, seed);
            let alarms: Vec<_> = series.iter().filter_map(|r| d.push(r)).collect();
            // No alarm before the failure, one soon after it.
            let first = alarms.first().expect("failure detected");
            assert_eq!(first.kind, AlarmKind::VentilationFailure);
            assert!(
                first.t_s >= 120 * 60,
                "{chart:?} seed {seed}: alarm before failure"
            );
            delays.push((first.t_s - 120 * 60) / 60);
        }
        let max = *delays.iter().max().unwrap();
        assert!(max <= 30, "{chart:?}: delays {delays:?}");
    }
}

#[test]
fn stationary_noise_raises_few_false_alarms() {
    // 30 days of a steadily occupied, nominally ventilated room: CO₂ at its steady state
    // plus 15 ppm noise, PM2.5 at 8 ± 1.5 µg/m³. The CUSUM settings are chosen for an
    // in-control run length of ~4·10⁴ readings: expect ≲ 1 alarm a month per detector.
    let minutes = 30 * 1440;
    let series = co2_series(minutes, u64::MAX, 3.0, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut v = VentilationDetector::new(VentilationConfig::new(250.0, 3.0)).unwrap();
    let mut p = ParticleDetector::new(ParticleConfig::default()).unwrap();
    let (mut fa_v, mut fa_p) = (0, 0);
    for r in &series {
        let r = Reading {
            pm25_ug_m3: 8.0 + 1.5 * gauss(&mut rng),
            ..*r
        };
        fa_v += usize::from(v.push(&r).is_some());
        fa_p += usize::from(p.push(&r).is_some());
    }
    let per_day = |n: usize| n as f64 / 30.0;
    assert!(
        per_day(fa_v) <= 0.2,
        "ventilation: {fa_v} false alarms in 30 days"
    );
    assert!(
        per_day(fa_p) <= 0.2,
        "particles: {fa_p} false alarms in 30 days"
    );
}

#[test]
fn a_particle_spike_is_detected_and_a_single_glitch_is_not() {
    let mut p = ParticleDetector::new(ParticleConfig::default()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut alarms = Vec::new();
    for m in 0..300u64 {
        let mut x = 8.0 + 1.5 * gauss(&mut rng);
        if m == 60 {
            x += 60.0; // one glitch
        }
        if (200..215).contains(&m) {
            x += 40.0; // a 15-min source
        }
        alarms.extend(p.push(&reading(m * 60, 500.0, x, 0)));
    }
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0].kind, AlarmKind::ParticleSpike);
    assert!((200 * 60..=203 * 60).contains(&alarms[0].t_s), "{alarms:?}");
}

#[test]
fn cusum_accumulates_and_restarts() {
    let mut c = ChartState::new(Chart::Cusum { k: 0.5, h: 4.0 }).unwrap();
    assert_eq!(c.update(1.5), None); // S = 1
    assert_eq!(c.update(-3.0), None); // S = 0 (floored)
    assert_eq!(c.statistic(), 0.0);
    for _ in 0..4 {
        assert_eq!(c.update(1.5), None); // S = 1, 2, 3, 4 (not > h)
    }
    assert_eq!(c.update(1.5), Some(5.0));
    assert_eq!(c.statistic(), 0.0);
    assert_eq!(c.update(f64::NAN), None);
    assert!(
        ChartState::new(Chart::Ewma {
            lambda: 1.5,
            l: 3.0
        })
        .is_err()
    );
    assert!(
        ChartState::new(Chart::Cusum {
            k: 0.5,
            h: f64::NAN
        })
        .is_err()
    );
}

#[test]
fn detectors_ignore_garbage_and_gaps_without_panicking() {
    let mut v = VentilationDetector::new(VentilationConfig::new(250.0, 3.0)).unwrap();
    let mut p = ParticleDetector::new(ParticleConfig::default()).unwrap();
    for (t, c, x) in [
        (0, f64::NAN, f64::INFINITY),
        (60, -5.0, -1.0),
        (120, 500.0, 8.0),
        (60, 5000.0, 8.0),          // out of order
        (10_000_000, 1e308, 1e308), // a long gap, absurd values
    ] {
        let r = reading(t, c, x, u32::MAX);
        let _ = v.push(&r);
        let _ = p.push(&r);
    }
    assert!(v.statistic().is_finite() && p.statistic().is_finite());
}

#[test]
fn evaluation_detects_most_events_with_few_false_alarms_and_replays_from_its_seed() {
    let cfg = EvalConfig::default();
    let a = evaluate(&cfg, 11, 28).unwrap();
    let b = evaluate(&cfg, 11, 28).unwrap();
    assert_eq!(a, b, "same seed, same report");
    assert!(a.events >= 10, "{a:?}");
    assert!(f64::from(a.detected) >= 0.9 * f64::from(a.events), "{a:?}");
    assert!(a.false_alarms_per_day <= 0.3, "{a:?}");
    assert!(a.detection_delay_min.p50 <= a.detection_delay_min.p95);
    assert!(a.detection_delay_min.p95 <= 60.0, "{a:?}");
    let c = evaluate(&cfg, 12, 28).unwrap();
    assert_ne!(a, c, "another seed, another series");
    let e = evaluate(&EvalConfig::with_chart(ChartFamily::Ewma), 11, 28).unwrap();
    assert_eq!(e.chart, ChartFamily::Ewma);
    assert!(f64::from(e.detected) >= 0.8 * f64::from(e.events), "{e:?}");
}

#[test]
fn simulator_places_events_and_occupancy_as_documented() {
    let s = simulate(&SimConfig::default(), 5, 14).unwrap();
    assert_eq!(s.readings.len(), 14 * 1440);
    for e in &s.events {
        assert!(e.start_s < e.end_s);
        if e.kind == AlarmKind::VentilationFailure {
            let day = e.start_s / 86_400;
            assert!(day % 7 < 5, "failures on weekdays only");
        }
    }
    // Weekend nights are empty; weekday mid-mornings are occupied.
    assert_eq!(s.readings[5 * 1440 + 3 * 60].occupancy, 0);
    assert!(s.readings[11 * 60].occupancy > 0);
    assert!(simulate(&SimConfig::default(), 5, 0).is_err());
    assert!(
        simulate(
            &SimConfig {
                step_s: 0,
                ..SimConfig::default()
            },
            5,
            1
        )
        .is_err()
    );
}

proptest! {
    #[test]
    fn arbitrary_readings_never_panic(
        t in any::<u64>(), c in any::<f64>(), x in any::<f64>(), n in any::<u32>(),
        t2 in any::<u64>(), c2 in any::<f64>(),
    ) {
        let mut v = VentilationDetector::new(VentilationConfig::new(250.0, 3.0)).unwrap();
        let mut p = ParticleDetector::new(ParticleConfig::default()).unwrap();
        for r in [reading(t, c, x, n), reading(t2, c2, x, n), reading(t2.saturating_add(60), c, c2, n)] {
            let _ = v.push(&r);
            let _ = p.push(&r);
        }
    }
}
