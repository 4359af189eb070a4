use trustedge_distance::channel::{
    self, Carry, DEVICE_MODELS, Environment, LinkContext, REFERENCE_LOSS_1M_DB, SessionConfig,
    generate_session, mean_rssi_dbm, sample_rssi,
};

use crate::{mean_std, rng};

fn los(env: Environment) -> LinkContext {
    LinkContext::line_of_sight(env, DEVICE_MODELS[0], DEVICE_MODELS[1])
}

fn mean_sample(d: f64, ctx: &LinkContext, n: usize, seed: u64) -> (f64, f64) {
    let mut r = rng(seed);
    let v: Vec<f64> = (0..n)
        .map(|_| f64::from(sample_rssi(d, ctx, &mut r)))
        .collect();
    mean_std(&v)
}

#[test]
fn mean_path_loss_follows_the_log_distance_law() {
    for env in Environment::ALL {
        let ctx = los(env);
        let n = env.params().path_loss_exponent;
        let (at_1m, _) = mean_sample(1.0, &ctx, 40_000, 1);
        // absolute level at 1 m: tx − PL(1 m) − rx offset, up to the fading's mean in dB
        // (between 0 and −2.5 dB for Rician/Rayleigh) and sampling error
        let expected = ctx.tx.tx_power_dbm - REFERENCE_LOSS_1M_DB - ctx.rx.rssi_offset_db;
        assert!(
            at_1m <= expected + 0.3 && at_1m >= expected - 3.0,
            "{env:?}: mean {at_1m} vs {expected}"
        );
        for (i, d) in [2.0f64, 4.0, 8.0].into_iter().enumerate() {
            let (at_d, _) = mean_sample(d, &ctx, 40_000, 10 + i as u64);
            let drop = at_1m - at_d;
            let want = 10.0 * n * d.log10();
            assert!(
                (drop - want).abs() < 0.35,
                "{env:?} at {d} m: drop {drop:.2} dB, law says {want:.2} dB"
            );
        }
    }
}

#[test]
fn spread_is_shadowing_plus_fading() {
    let ctx = los(Environment::Office);
    let sigma = Environment::Office.params().shadowing_sigma_db;
    let (_, std) = mean_sample(2.0, &ctx, 40_000, 3);
    // independent shadowing (6 dB) and Rician K=3 dB fading (~3-4 dB) add in quadrature
    assert!(std > sigma && std < sigma + 2.5, "std {std}");
}

#[test]
fn body_carry_and_orientation_losses_lower_the_mean() {
    let base = los(Environment::Home);
    let worse = LinkContext {
        tx_carry: Carry::Bag,
        rx_carry: Carry::Pocket,
        body_between: true,
        orientation_loss_db: 3.0,
        ..base
    };
    let diff = mean_rssi_dbm(2.0, &base) - mean_rssi_dbm(2.0, &worse);
    let want = Carry::Bag.mean_loss_db()
        + Carry::Pocket.mean_loss_db()
        + channel::BODY_BETWEEN_LOSS_DB
        + 3.0;
    assert!((diff - want).abs() < 1e-9);
    let (m_base, _) = mean_sample(2.0, &base, 20_000, 4);
    let (m_worse, _) = mean_sample(2.0, &worse, 20_000, 5);
    assert!((m_base - m_worse - want).abs() < 0.5, "{m_base} {m_worse}");
}

#[test]
fn device_models_are_distinct_and_some_are_uncalibrated() {
    let mut pairs: Vec<(i64, i64)> = DEVICE_MODELS
        .iter()
        .map(|m| (m.tx_power_dbm as i64, m.rssi_offset_db as i64))
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), DEVICE_MODELS.len());
    assert!(DEVICE_MODELS.iter().any(|m| !m.in_calibration_table));
    assert_eq!(
        channel::device_model("ember-3").map(|m| m.tx_power_dbm),
        Some(-9.0)
    );
    assert!(channel::device_model("no-such-phone").is_none());
}

#[test]
fn sessions_are_seeded_ordered_and_bounded() {
    let ctx = LinkContext::random(DEVICE_MODELS[2], DEVICE_MODELS[5], &mut rng(7));
    let cfg = SessionConfig::default();
    let a = generate_session(1.5, &ctx, &cfg, 1_000, &mut rng(8)).unwrap();
    let b = generate_session(1.5, &ctx, &cfg, 1_000, &mut rng(8)).unwrap();
    let c = generate_session(1.5, &ctx, &cfg, 1_000, &mut rng(9)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(!a.is_empty());
    let scans = cfg.duration_s / cfg.scan_interval_s + 1;
    assert!(a.len() as u64 <= scans * u64::from(cfg.adverts_per_scan));
    assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(
        a.iter()
            .all(|&(t, _)| (1_000..=1_000 + cfg.duration_s).contains(&t))
    );
    // far beyond radio range every packet is lost
    let far = generate_session(5_000.0, &ctx, &cfg, 0, &mut rng(8)).unwrap();
    assert!(far.is_empty());
    // a session's samples are correlated: its mean sits away from the law by the
    // session's shadowing, and the spread within it is smaller than across sessions
    let within: Vec<f64> = a.iter().map(|&(_, r)| f64::from(r)).collect();
    let (_, s_within) = mean_std(&within);
    let (_, s_across) = mean_sample(1.5, &ctx, 5_000, 10);
    assert!(s_within < s_across, "{s_within} vs {s_across}");
}

#[test]
fn session_config_is_checked() {
    let ctx = los(Environment::Outdoor);
    let bad = SessionConfig {
        scan_interval_s: 0,
        ..SessionConfig::default()
    };
    assert!(generate_session(1.0, &ctx, &bad, 0, &mut rng(1)).is_err());
    let jitter = SessionConfig {
        scan_jitter_s: 40,
        ..SessionConfig::default()
    };
    assert!(generate_session(1.0, &ctx, &jitter, 0, &mut rng(1)).is_err());
    assert!(generate_session(-1.0, &ctx, &SessionConfig::default(), 0, &mut rng(1)).is_err());
    assert!(generate_session(f64::NAN, &ctx, &SessionConfig::default(), 0, &mut rng(1)).is_err());
}

#[test]
fn moving_sessions_get_weaker_as_people_walk_apart() {
    let ctx = los(Environment::Outdoor);
    let cfg = SessionConfig {
        duration_s: 1200,
        slow_sigma_db: 0.0,
        ..SessionConfig::default()
    };
    let s =
        channel::generate_session_with(|t| 0.5 + (t as f64) / 100.0, &ctx, &cfg, 0, &mut rng(2))
            .unwrap();
    let (first, last) = s.split_at(s.len() / 2);
    let m = |v: &[(u64, i8)]| mean_std(&v.iter().map(|x| f64::from(x.1)).collect::<Vec<_>>()).0;
    assert!(m(first) > m(last) + 6.0, "{} {}", m(first), m(last));
}
