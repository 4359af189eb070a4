use trustedge_origin::{EvalSpec, OutbreakSpec, evaluate, generate_outbreak};

#[test]
fn outbreaks_are_reproducible_and_consistent() {
    let spec = OutbreakSpec::default();
    let mut sizes = Vec::new();
    for seed in 0..30u64 {
        let o = generate_outbreak(&spec, seed);
        assert_eq!(o, generate_outbreak(&spec, seed));
        assert_eq!(o.infections[0].id, o.index_case);
        assert_eq!(o.infections[0].infector, None);
        for (k, inf) in o.infections.iter().enumerate().skip(1) {
            let by = inf.infector.unwrap();
            let parent = o.infections[..k].iter().find(|p| p.id == by);
            let parent =
                parent.unwrap_or_else(|| panic!("infector of {} not infected before", inf.id));
            assert!(parent.infection_s < inf.infection_s);
        }
        let confirmed = o.infections.iter().filter(|i| i.confirmed).count();
        assert_eq!(confirmed, o.cases.len());
        for e in &o.encounters {
            let conf = |id| o.cases.iter().find(|c| c.id == id).unwrap().confirmation_s;
            assert!(e.start_s < conf(e.a) && e.start_s < conf(e.b));
        }
        for w in &o.rooms {
            assert!(w.cases.len() >= 2);
            assert!(w.validate().is_ok());
            assert!(w.probability >= spec.room_alert_threshold);
        }
        sizes.push(o.infections.len());
    }
    assert!(
        sizes.iter().any(|&s| s >= 20),
        "some outbreaks grow: {sizes:?}"
    );
    assert_ne!(generate_outbreak(&spec, 1), generate_outbreak(&spec, 2));
}

#[test]
fn box_model_matches_a_hand_computation() {
    // 200 m³, 0.5 ACH: λ = 1.42 /h, λT = 2.84, bracket 1 − (1 − e^−2.84)/2.84 = 0.6680,
    // C̄ = 25 / 284 · 0.6680 = 0.05880, n = C̄ · 0.52 · 2 = 0.06115, P = 1 − e^−n = 0.05932.
    let p = trustedge_origin::outbreak::box_model_probability(200.0, 0.5, 25.0, 0.52, 2.0);
    assert!((p - 0.05932).abs() < 2e-4, "{p}");
    let better = trustedge_origin::outbreak::box_model_probability(200.0, 6.0, 25.0, 0.52, 2.0);
    assert!(better < p / 2.0);
}

#[test]
fn evaluation_reports_rates() {
    let spec = EvalSpec {
        rank: trustedge_origin::RankParams {
            samples: 200,
            explain_top: 0,
            ..Default::default()
        },
        ..EvalSpec::default()
    };
    let r = evaluate(&spec, 3, 8).unwrap();
    assert_eq!(r.outbreaks, 8);
    for x in [r.top1, r.top3, r.baseline_top1, r.baseline_top3] {
        assert!((0.0..=1.0).contains(&x));
    }
    assert!(r.top1 <= r.top3 && r.baseline_top1 <= r.baseline_top3);
    assert!(r.mean_cluster_cases >= 5.0 && r.mean_cases >= r.mean_cluster_cases);
    assert_eq!(r, evaluate(&spec, 3, 8).unwrap());
}
