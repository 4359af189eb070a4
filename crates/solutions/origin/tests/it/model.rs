use trustedge_contacts::CaseId;
use trustedge_origin::model::DAY_S;
use trustedge_origin::{Case, EpiModel};

#[test]
fn incubation_is_the_lauer_lognormal() {
    let m = EpiModel::default();
    // Integrate the density by the midpoint rule: total mass 1, median exp(1.621) = 5.06 d,
    // mean exp(1.621 + 0.418^2 / 2) = 5.52 d.
    let h = 0.001;
    let (mut mass, mut mean, mut below_median) = (0.0, 0.0, 0.0);
    let mut x = h / 2.0;
    while x < 60.0 {
        let f = m.incubation_density(x) * h;
        mass += f;
        mean += x * f;
        if x < 1.621f64.exp() {
            below_median += f;
        }
        x += h;
    }
    assert!((mass - 1.0).abs() < 1e-4, "{mass}");
    assert!((below_median - 0.5).abs() < 1e-3, "{below_median}");
    assert!((mean - 5.52).abs() < 0.01, "{mean}");
    assert_eq!(m.incubation_density(0.0), 0.0);
    assert_eq!(m.incubation_density(-1.0), 0.0);
    assert_eq!(m.incubation_density(f64::NAN), 0.0);
}

#[test]
fn infectiousness_peaks_at_onset_and_starts_before_it() {
    let m = EpiModel::default();
    let mut best = (f64::NEG_INFINITY, 0.0);
    let mut t = -12.0;
    while t < 12.0 {
        let r = m.relative_infectiousness(t);
        assert!((0.0..=1.0).contains(&r));
        if r > best.0 {
            best = (r, t);
        }
        t += 0.01;
    }
    assert!((best.0 - 1.0).abs() < 1e-4, "{}", best.0);
    assert!(best.1.abs() < 0.05, "peak at {} d", best.1);
    // Presymptomatic: two days before onset still 3/4 of the peak (hand-computed 0.750);
    // a week before or ten days after, almost nothing; none before the shift.
    assert!((m.relative_infectiousness(-2.0) - 0.750).abs() < 1e-3);
    assert!(m.relative_infectiousness(-8.0) < 1e-3);
    assert_eq!(m.relative_infectiousness(-13.0), 0.0);
    assert!(m.relative_infectiousness(10.0) < 0.02);
}

fn case(id: u32, onset_day: Option<f64>, confirm_day: f64) -> Case {
    Case {
        id: CaseId(id),
        symptom_onset_s: onset_day.map(|d| (d * DAY_S) as u64),
        confirmation_s: (confirm_day * DAY_S) as u64,
    }
}

#[test]
fn evidence_weight_respects_time_order() {
    let m = EpiModel {
        onset_sd_days: 0.0,
        ..EpiModel::default()
    };
    let u = case(1, Some(10.0), 12.0);
    let v = case(2, Some(15.0), 17.0);
    let at = |day: f64| (day * DAY_S) as u64;
    // u near its onset, v's onset 5 days later: plausible.
    let forward = m.evidence_weight(&u, &v, at(10.0), 0.3);
    assert!(forward > 0.0);
    // The reverse: v would infect u, whose onset precedes the contact: impossible.
    assert_eq!(m.evidence_weight(&v, &u, at(10.0), 0.3), 0.0);
    // After the infectee's onset: impossible.
    assert_eq!(m.evidence_weight(&u, &v, at(15.5), 0.3), 0.0);
    // At or after a confirmation (isolation): none.
    assert_eq!(m.evidence_weight(&u, &v, at(12.0), 0.3), 0.0);
    // More than max_incubation_days before the infector's onset: none.
    let early = case(3, Some(30.0), 31.0);
    assert_eq!(m.evidence_weight(&early, &v, at(10.0), 0.3), 0.0);
    // Monotone in the event's chance, zero for no chance.
    assert!(m.evidence_weight(&u, &v, at(10.0), 0.6) > forward);
    assert_eq!(m.evidence_weight(&u, &v, at(10.0), 0.0), 0.0);
    assert_eq!(m.evidence_weight(&u, &v, at(10.0), f64::NAN), 0.0);
}

#[test]
fn missing_onsets_are_latent_before_confirmation() {
    let m = EpiModel::default();
    let u = case(1, None, 13.0);
    let v = case(2, None, 18.0);
    let at = |day: f64| (day * DAY_S) as u64;
    let w = m.evidence_weight(&u, &v, at(10.0), 0.3);
    assert!(w.is_finite() && w > 0.0);
    // Asymptomatic infectors count at half strength.
    let us = case(1, Some(10.0), 13.0);
    let onset_u = m.onset_estimate_s(&u);
    assert!(
        (onset_u - 10.0 * DAY_S).abs() < 1.0,
        "confirmation minus the 3-day median"
    );
    assert!(m.evidence_weight(&us, &v, at(10.0), 0.3) > w);
    // The latent points lie before confirmation.
    assert!(
        m.onset_points(&u)
            .points()
            .iter()
            .all(|&p| p < 13.0 * DAY_S)
    );
    let sum: f64 = m.onset_points(&u).weights().iter().sum();
    assert!((sum - 1.0).abs() < 1e-12);
}

#[test]
fn invalid_models_are_refused() {
    let bad = [
        EpiModel {
            incubation_sigma: 0.0,
            ..EpiModel::default()
        },
        EpiModel {
            import_weight_per_day: f64::NAN,
            ..EpiModel::default()
        },
        EpiModel {
            asymptomatic_infectiousness: 1.5,
            ..EpiModel::default()
        },
        EpiModel {
            onset_sd_days: -1.0,
            ..EpiModel::default()
        },
    ];
    for m in bad {
        assert!(m.validate().is_err(), "{m:?}");
    }
    assert!(EpiModel::default().validate().is_ok());
}
